"""Backup and restore through a backend that offers only the async protocol (no local
fast path), as remote backends will: the ranged-read restore path must work on its own."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from core.backup.run import run_backup
from core.config import SourceSpec
from core.repository.repository import Repository
from core.restore.files import FileRestorer
from core.storage.local import LocalBackend


class AsyncOnly:
    """Delegates the Backend protocol and hides LocalBackend.get_sync."""

    def __init__(self, inner: LocalBackend) -> None:
        self.inner = inner
        self.ranged_reads = 0
        self.whole_reads: list[str] = []

    @property
    def location(self) -> str:
        return "async-only:" + self.inner.location

    async def get(self, key, offset=0, length=None):
        if length is not None:
            self.ranged_reads += 1
        else:
            self.whole_reads.append(key)
        return await self.inner.get(key, offset, length)

    def __getattr__(self, name):
        if name == "get_sync":
            raise AttributeError(name)
        return getattr(self.inner, name)


async def test_roundtrip_through_async_only_backend(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "small.txt").write_text("small\n")
    big = os.urandom(3_000_000) + b"x" * 5_000_000
    (src / "big.bin").write_bytes(big)
    backend = AsyncOnly(LocalBackend(tmp_path / "repo"))
    pool = ThreadPoolExecutor(2)
    try:
        repo = await Repository.create(backend, "pw")
        repo.executor = pool
        spec = SourceSpec("application/user_data", "application", (src,), (), 30)
        result = await run_backup(repo, [spec])
        snap = result.results[0].snapshot
        repo2 = await Repository.open(backend, "pw")
        repo2.executor = pool
        await repo2.load_index()
        before = list(backend.whole_reads)
        stats = await FileRestorer(repo2, tmp_path / "out", executor=pool).restore(snap)
        # A whole restore from remote storage reads each pack it needs once, whole.
        packs = [k for k in backend.whole_reads[len(before) :] if k.startswith("data/")]
        assert packs and len(packs) == len(set(packs))
        # A restore of some files reads only ranges of the packs.
        ranged = backend.ranged_reads
        await FileRestorer(repo2, tmp_path / "some", executor=pool, include=("*/small.txt",)).restore(snap)
        assert backend.ranged_reads > ranged
        assert (tmp_path / "some" / str(src).lstrip("/") / "d" / "small.txt").read_text() == "small\n"
    finally:
        pool.shutdown()
    out = tmp_path / "out" / str(src).lstrip("/")
    assert (out / "big.bin").read_bytes() == big
    assert (out / "d" / "small.txt").read_text() == "small\n"
    assert stats.files == 2
