"""S3 Object Lock (issue 17, item 2): an aws-s3 location with object_lock writes every object
but locks under a retention date, on a bucket made with Object Lock on; no credentials can
delete a locked version; prune keeps what is still locked and says so; `locations` shows it.
Against the S3 test server (moto), which enforces Object Lock as S3 does."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from core.config import RemoteStorageConfig
from core.storage.backend import ObjectLocked
from core.storage.factory import open_backend
from locations_support import remote_fields
from servers import moto_s3, remote_config  # noqa: F401 - fixture


def _locked_config(moto_s3, **extra) -> RemoteStorageConfig:  # noqa: F811
    return remote_config("s3", moto_s3, object_lock="governance", object_lock_days=2, **extra)


def test_every_object_but_locks_is_locked_and_prune_keeps_what_is_still_locked(sites, moto_s3):  # noqa: F811
    vault = _locked_config(moto_s3)
    sites.add("vault", **remote_fields(vault))
    sites.ok("init")
    first = sites.ok("backup", "--json").json()
    assert not first["copies"][0]["error"], first["copies"]
    (sites.ws.src / "users" / "gina.json").write_text('{"gina": 1}\n')
    sites.ok("backup")

    async def inspect() -> None:
        from aiobotocore.session import get_session

        b = open_backend(vault)
        try:
            snaps = [i.key async for i in b.list("snapshots/")]
            with pytest.raises(ObjectLocked, match="locked by S3 Object Lock"):
                await b.delete(snaps[0])
            await b.put("locks/" + "2" * 32, b"{}")
            await b.delete("locks/" + "2" * 32)  # locks come and go
        finally:
            await b.close()
        # With the bucket's own credentials and the version id: still refused.
        session = get_session()
        async with session.create_client(
            "s3",
            endpoint_url=moto_s3.endpoint,
            region_name="us-east-1",
            aws_access_key_id="AKIATESTKEY",
            aws_secret_access_key="test-secret-key",
        ) as c:
            versions = await c.list_object_versions(Bucket=vault.bucket_name, Prefix="repo/snapshots/")
            v = versions["Versions"][0]
            with pytest.raises(Exception, match="AccessDenied"):
                await c.delete_object(Bucket=vault.bucket_name, Key=v["Key"], VersionId=v["VersionId"])
            head = await c.head_object(Bucket=vault.bucket_name, Key=v["Key"])
            assert head["ObjectLockMode"] == "GOVERNANCE"

    asyncio.run(inspect())

    # A day and a half later, retention would forget the older snapshot: the vault keeps it
    # (its lock runs two days) and says why; the primary forgets it.
    sites.ws.config.write_text(
        f'[application]\nuser_data = ["{sites.ws.src}"]\nretention_days = 1\n'
        f'[storage]\nlocal_path = "{sites.ws.repo}"\n[retention]\nkeep_last = 1\nmin_keep = 1\n' + _remotes(sites)
    )
    vault_plan = _prune_plan(sites, "vault")
    assert sorted(k for k, _ in vault_plan) == [True, True]
    assert any(rs[0].startswith("locked by S3 Object Lock until") for _, rs in vault_plan), vault_plan
    assert sorted(k for k, _ in _prune_plan(sites, None)) == [False, True]
    loc_text = sites.ok("locations").out
    assert "vault: object-lock governance 2d" in loc_text, loc_text


def test_a_bucket_without_object_lock_is_refused_and_other_providers_cannot_ask(sites, moto_s3, tmp_path):  # noqa: F811
    plain = remote_config("s3", moto_s3)
    asyncio.run(_make_bucket(plain))
    locked = RemoteStorageConfig(**{**remote_fields(plain), "name": plain.name, "object_lock": "compliance"})
    sites.add("vault", **remote_fields(locked))
    sites.ok("init")
    r = sites.cli("copy", "--to", "vault")
    assert r.code == 1 and "has no S3 Object Lock" in r.err, r.err
    sites.remove("vault")
    sites.add("nas", provider="local", path=tmp_path / "nas", object_lock="governance")
    r = sites.cli("config", "check")
    assert r.code == 2 and "S3 Object Lock is for provider aws-s3" in r.out + r.err


def _prune_plan(sites, location: str | None) -> list[tuple[bool, tuple[str, ...]]]:
    from datetime import UTC, datetime, timedelta

    from conftest import PASSPHRASE
    from core.config import load_config
    from core.service import BackupService

    async def run():
        svc = BackupService(load_config(sites.ws.config), lambda _c: PASSPHRASE, workers=2)
        try:
            report = await svc.prune(dry_run=True, now=datetime.now(UTC) + timedelta(days=1.5), location=location)
        finally:
            await svc.close()
        return [(d.keep, d.reasons) for d in report.decisions]

    return asyncio.run(run())


async def _make_bucket(loc: RemoteStorageConfig) -> None:
    b = open_backend(loc)
    try:
        await b.create()
    finally:
        await b.close()


def _remotes(sites) -> str:
    from locations_support import remote_toml

    return "\n".join(remote_toml(n, **f) for n, f in sites.remotes.items())


def test_lock_days_default_to_the_longest_retention(tmp_path):
    from core.config.load import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[application]\nuser_data = ["{tmp_path}"]\nretention_days = 45\n[configuration]\nretention_days = 90\n'
        f'[storage]\nlocal_path = "{tmp_path / "r"}"\n[[storage.remote_storage]]\nprovider = "aws-s3"\n'
        f'name = "v"\nbucket_name = "b-{uuid.uuid4().hex[:6]}"\nobject_lock = "governance"\n'
    )
    (loc,) = load_config(cfg).storage.remote_storage
    assert loc.object_lock_days == 90
