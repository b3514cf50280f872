"""A whole repository living on each remote backend: create, back up, reopen through a new
connection, restore, and compare every byte with the source."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.backup.run import run_backup
from core.config import SourceSpec
from core.repository.repository import Repository
from core.restore.files import FileRestorer
from core.storage.factory import open_backend

from .conftest import config_for

PASS = "remote repository passphrase"


def tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("kind", ["s3", "gcs", "sftp-openssh", "azure", "ftp"])
async def test_backup_and_restore_byte_identical(kind, request, tmp_path):
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(6_000_000) + b"z" * 4_000_000)
    (src / "nested" / "notes.txt").write_text("remote copies matter\n" * 1000)
    (src / "nested" / "deeper" / "empty").write_bytes(b"")
    for i in range(30):
        (src / "nested" / f"small{i}.dat").write_bytes(os.urandom(i * 97))
    loc = config_for(kind, request, tmp_path)
    spec = SourceSpec("application/user_data", "application", (src,), (), 30)
    pool = ThreadPoolExecutor(2)
    backend = open_backend(loc)
    try:
        repo = await Repository.create(backend, PASS, pack_size=4 * 1024 * 1024)
        repo.executor = pool
        result = await run_backup(repo, [spec])
        snap = result.results[0].snapshot
        assert snap is not None and not result.partial
        # A second backup of the same data re-stores no file data: dedup works remotely too.
        packs_before = {i.key: i.size async for i in backend.list("data/")}
        await run_backup(repo, [spec])
        packs_after = {i.key: i.size async for i in backend.list("data/")}
        assert packs_before.items() <= packs_after.items()
        assert sum(packs_after.values()) - sum(packs_before.values()) < 100_000
    finally:
        await backend.close()

    fresh = open_backend(loc)  # a new connection, as a restore on another machine would
    try:
        repo2 = await Repository.open(fresh, PASS)
        repo2.executor = pool
        await repo2.load_index()
        out = tmp_path / "out"
        stats = await FileRestorer(repo2, out, executor=pool).restore(snap)
    finally:
        await fresh.close()
        pool.shutdown()
    restored = out / str(src).lstrip("/")
    assert tree_digest(restored) == tree_digest(src)
    assert stats.files == 33
    assert len(packs_before) >= 2  # 10 MB in 4 MiB packs: several objects, ranged reads across them
