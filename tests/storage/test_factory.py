"""From config.toml to backends: every provider, in config order, primary first."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, parse_config
from core.storage.azure import AzureBackend
from core.storage.backend import Backend
from core.storage.factory import PRIMARY_NAME, open_location_backends
from core.storage.ftp import FTPBackend
from core.storage.local import LocalBackend
from core.storage.retry import RetryingBackend
from core.storage.s3 import S3Backend
from core.storage.sftp import SFTPBackend


def config(tmp_path: Path, *remotes: dict):
    return parse_config(
        {"storage": {"local_path": str(tmp_path / "primary"), "remote_storage": list(remotes)}}, base_dir=tmp_path
    )


def test_every_provider_in_order_primary_first(tmp_path):
    c = config(
        tmp_path,
        {"provider": "aws-s3", "name": "s3", "bucket_name": "b", "concurrency": 8, "timeout_seconds": 9, "retries": 2},
        {"provider": "gcp-storage", "name": "gcs", "bucket_name": "g"},
        {"provider": "azure-blob", "name": "az", "bucket_name": "c", "endpoint": "https://a.blob.core.windows.net"},
        {"provider": "sftp", "name": "box", "endpoint": "backup.example:2222", "path_prefix": "/srv/b"},
        {"provider": "ftp", "name": "old", "endpoint": "ftps://ftp.example", "username": "u"},
        {"provider": "local", "name": "nas", "path": "nas-mount"},
    )
    found = open_location_backends(c)
    assert [n for n, _ in found] == [PRIMARY_NAME, "s3", "gcs", "az", "box", "old", "nas"]
    backends = dict(found)
    assert isinstance(backends["local"], LocalBackend) and backends["local"].root == tmp_path / "primary"
    # The second disk is unwrapped so restores keep the direct-read fast path.
    assert isinstance(backends["nas"], LocalBackend) and backends["nas"].root == tmp_path / "nas-mount"
    expected = {"s3": S3Backend, "gcs": S3Backend, "az": AzureBackend, "box": SFTPBackend, "old": FTPBackend}
    for name, cls in expected.items():
        b = backends[name]
        assert isinstance(b, RetryingBackend) and isinstance(b.inner, cls), name
        assert isinstance(b, Backend)
    s3 = backends["s3"]
    assert (s3.concurrency, s3.policy.timeout, s3.policy.retries) == (8, 9.0, 2)
    assert backends["box"].location == f"sftp://{__import__('getpass').getuser()}@backup.example:2222/srv/b"
    assert backends["old"].inner.tls is True
    assert backends["old"].location == "ftps://u@ftp.example:21/"


def test_local_provider_needs_a_path_and_the_primary_name_is_reserved(tmp_path):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, {"provider": "local", "name": "local"})
    problems = {p.key: p.message for p in info.value.problems}
    assert problems["storage.remote_storage[0].path"] == "required for provider 'local'"
    assert "primary" in problems["storage.remote_storage[0].name"]


def test_limits_are_validated(tmp_path):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, {"provider": "aws-s3", "name": "s3", "bucket_name": "b", "concurrency": 0, "retries": 99})
    keys = {p.key for p in info.value.problems}
    assert keys == {"storage.remote_storage[0].concurrency", "storage.remote_storage[0].retries"}
