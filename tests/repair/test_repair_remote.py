"""Repair on a remote location (OpenSSH's sshd serving SFTP): a pack lost at the copy is
dropped from its index, the snapshot that lost its root tree is forgotten there (and named),
a leftover upload older than the safe age goes, and the next backup's copy makes the
location whole again from the primary."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from locations_support import Sites, fill, remote_fields, tree_digest
from servers import moto_s3, openssh_sftp, remote_config  # noqa: F401  (fixtures)


@pytest.fixture
def sites(ws, tmp_path: Path) -> Sites:
    s = Sites(ws, tmp_path / "state")
    fill(ws.src)
    return s


def test_repair_at_an_sftp_location(sites, openssh_sftp, tmp_path):  # noqa: F811
    loc = remote_config("sftp", openssh_sftp)
    sites.add("vault", **remote_fields(loc))
    sites.ok("init")
    first = sites.ok("backup", "--json").json()["snapshots"][0]["id"]
    root = openssh_sftp.root / loc.path_prefix.removeprefix(openssh_sftp.prefix_base).strip("/")
    packs = sorted(p for p in (root / "data").glob("*/*") if not p.name.startswith(".tmp-"))
    assert packs, f"no packs under {root}"
    for p in packs:
        p.unlink()  # the whole copy's data is gone (the primary keeps its own)
    old_tmp = packs[0].parent / ".tmp-0123456789abcdef0123456789abcdef"  # SFTP makes folders on first write
    old_tmp.write_bytes(b"x" * 4096)
    past = time.time() - 7 * 3600
    os.utime(old_tmp, (past, past))

    assert sites.cli("verify", "--from", "vault").code == 6
    r = sites.cli("repair", "index", "--location", "vault", "--json")
    assert r.code == 0, r.err
    (out,) = r.json()["locations"]
    assert out["location"] == "vault" and len(out["packs"]["missing"]) == len(packs)
    assert out["temporary"]["removed"] == [str(old_tmp.relative_to(root))]
    assert not old_tmp.exists()

    r = sites.cli("repair", "snapshots", "--location", "vault", "--json")
    assert r.code == 0, r.err
    (out,) = r.json()["locations"]
    assert [f["id"] for f in out["forgotten"]] == [first] and "root tree" in out["forgotten"][0]["unrecoverable"]
    # The primary was not touched.
    assert sites.ok("verify", "--json").json()["ok"] is True

    # The next backup copies what the vault lacks: the forgotten snapshot comes back whole.
    (sites.ws.src / "after.txt").write_text("after the repair\n")
    copy = sites.ok("backup", "--json").json()["copies"][0]
    assert copy["error"] is None and first in copy["copied"]
    assert sites.ok("verify", "--full", "--from", "vault", "--json").json()["ok"] is True
    r = sites.cli("restore", first, "--from", "vault", "--target", str(tmp_path / "out"))
    assert r.code == 0, r.err
    restored = tree_digest(tmp_path / "out" / str(sites.ws.src).lstrip("/"))
    expected = tree_digest(sites.ws.src)
    expected.pop("after.txt")
    assert restored == expected


async def test_incomplete_s3_uploads_are_aborted_once_old(moto_s3):  # noqa: F811
    """On S3 the leftover of a killed upload is an incomplete multipart upload: listed
    with its start time, kept while young, aborted once old (moto's server, real protocol)."""
    from core.repair.temporary import clean_temporary
    from core.storage.factory import open_backend

    b = open_backend(remote_config("s3", moto_s3))
    await b.create()
    try:
        client = await b.inner._get_client()
        key = b.inner._key("data/ab/" + "ab" * 32)
        up = await client.create_multipart_upload(Bucket=b.inner.bucket, Key=key)
        (found,) = await b.list_temporary()
        assert found.key == f"data/ab/{'ab' * 32}?uploadId={up['UploadId']}"
        # moto reports a fixed start time in 2010; judge age relative to it.
        young = await clean_temporary(b, now=found.modified + 60)
        assert young.removed == [] and young.kept == [found]
        dry = await clean_temporary(b, older_than=0, dry_run=True)
        assert len(dry.removed) == 1
        assert len((await b.list_temporary())) == 1, "a dry run aborts nothing"
        old = await clean_temporary(b, older_than=0)
        assert len(old.removed) == 1
        assert await b.list_temporary() == []
    finally:
        await b.close()
