"""Every backend kind on its real server, built through the factory like the program does."""

from __future__ import annotations

import uuid

import pytest

from core.config import RemoteStorageConfig
from core.storage.factory import open_backend
from servers import (  # noqa: F401 - fixtures
    asyncssh_sftp,
    azurite,
    ftp_server,
    ftps_server,
    moto_s3,
    listen_serve,
    openssh_serve,
    openssh_sftp,
    remote_config,
)

# kind -> (config kind, server fixture)
KINDS = {
    "local": ("local", None),
    "s3": ("s3", "moto_s3"),
    "gcs": ("gcs", "moto_s3"),
    "sftp-asyncssh": ("sftp", "asyncssh_sftp"),
    "sftp-openssh": ("sftp", "openssh_sftp"),
    # `axisor-backup serve` behind OpenSSH forced commands (core/storage/ssh.py, serve.py).
    "ssh": ("ssh", "openssh_serve"),
    # `axisor-backup serve --listen`: the same protocol behind its own asyncssh server.
    "ssh-listen": ("ssh", "listen_serve"),
    "azure": ("azure", "azurite"),
    "ftp": ("ftp", "ftp_server"),
    "ftps": ("ftps", "ftps_server"),
    # Under a bandwidth limit (core/storage/throttle.py), high enough not to slow the tests:
    # the wrapper must keep every promise of the contract, direct reads included.
    "local-limited": ("local", None),
    "sftp-limited": ("sftp", "asyncssh_sftp"),
}
LIMITED_KIB = 256 * 1024  # 256 MiB/s


def config_for(kind: str, request: pytest.FixtureRequest, tmp_path, **extra) -> RemoteStorageConfig:
    conf_kind, fixture = KINDS[kind]
    if kind.endswith("-limited"):
        extra = {"limit_upload": LIMITED_KIB, "limit_download": LIMITED_KIB, **extra}
    if fixture is None:
        return RemoteStorageConfig(provider="local", name=f"nas-{uuid.uuid4().hex[:8]}", path=tmp_path / "nas", **extra)
    return remote_config(conf_kind, request.getfixturevalue(fixture), **extra)


@pytest.fixture(params=list(KINDS))
def kind(request) -> str:
    return request.param


@pytest.fixture
async def backend(kind, request, tmp_path):
    b = open_backend(config_for(kind, request, tmp_path))
    await b.create()
    try:
        yield b
    finally:
        await b.close()
