"""The backup's memory budget, asserted by structure rather than by RSS (issue 19: peak RSS
<= 150 MiB on the bench sets; bench/RESULTS.md, "Peak memory (issue 19)").

A pack is held whole in memory from the moment it stops filling until its put returns, so
the packs uploading at once are what storage latency can pile up; a slow fake storage
shows how many there are. Each running stream holds one chunker window."""

from __future__ import annotations

import asyncio
import io
import os
from concurrent.futures import ThreadPoolExecutor

from core.backup.chunker import Chunker
from core.backup.stream import StreamWriter
from core.repository.format import BlobType
from core.repository.repo_config import ChunkerParams
from core.repository.repository import Repository
from core.storage.local import LocalBackend

PACK = 64 * 1024


class SlowStorage:
    """A local backend whose puts take a while; counts the packs in flight and their bytes.
    ``local``: whether it offers ``get_sync`` as local storage does (remote storage does not)."""

    def __init__(self, inner: LocalBackend, *, local: bool) -> None:
        self.inner = inner
        self.local = local
        self.in_flight = 0
        self.bytes_in_flight = 0
        self.most = 0
        self.most_bytes = 0
        self.packs = 0

    @property
    def location(self) -> str:
        return "slow:" + self.inner.location

    async def put(self, key, data) -> None:
        if not key.startswith("data/"):
            return await self.inner.put(key, data)
        size = sum(len(p) for p in data)
        self.in_flight += 1
        self.bytes_in_flight += size
        self.most = max(self.most, self.in_flight)
        self.most_bytes = max(self.most_bytes, self.bytes_in_flight)
        try:
            await asyncio.sleep(0.02)
            await self.inner.put(key, data)
            self.packs += 1
        finally:
            self.in_flight -= 1
            self.bytes_in_flight -= size

    def __getattr__(self, name):
        if name == "get_sync" and not self.local:
            raise AttributeError(name)
        return getattr(self.inner, name)


async def _store_many(tmp_path, *, local: bool) -> SlowStorage:
    storage = SlowStorage(LocalBackend(tmp_path / "repo"), local=local)
    pool = ThreadPoolExecutor(2)
    try:
        repo = await Repository.create(storage, "pw", pack_size=PACK)
        repo.executor = pool
        # Many more packs than upload slots, added faster than the slow storage takes them.
        for _ in range(120):
            await repo.save_blob(BlobType.DATA, os.urandom(16 * 1024))
        await repo.flush()
    finally:
        pool.shutdown()
    assert storage.packs >= 20
    return storage


async def test_local_storage_uploads_one_pack_at_a_time(tmp_path):
    # One pack uploading and one filling: two packs' worth of memory, not three, however
    # slow the disk is.
    storage = await _store_many(tmp_path, local=True)
    assert storage.most == 1
    assert storage.most_bytes <= PACK + 64 * 1024


async def test_remote_storage_keeps_two_uploads_in_flight(tmp_path):
    # Remote storage keeps a second upload going through the first one's round trips.
    storage = await _store_many(tmp_path, local=False)
    assert storage.most == 2


def test_a_stream_holds_one_small_window():
    # Two streams run at once; each holds its window plus one chunk of uncut tail. At
    # 16 MiB + 4 MiB the two windows were 40 MiB of a 185 MiB peak.
    params = ChunkerParams()
    chunker = Chunker(params, io.BytesIO(b""))
    try:
        assert chunker._cap <= 8 * 1024 * 1024
        assert chunker._buf is not None and len(chunker._buf) <= 8 * 1024 * 1024
    finally:
        chunker.close()


async def test_stream_cuts_the_same_with_the_smaller_window(tmp_path):
    # Boundaries never depend on the window: a stream stored with today's window and with
    # a large one yields the same chunk ids.
    data = os.urandom(3 * 1024 * 1024) + bytes(range(256)) * 40_000 + os.urandom(9 * 1024 * 1024)
    pool = ThreadPoolExecutor(2)
    try:
        repo = await Repository.create(LocalBackend(tmp_path / "repo"), "pw")
        repo.executor = pool
        got = []
        for window in (None, 32 * 1024 * 1024):
            writer = StreamWriter(repo) if window is None else StreamWriter(repo, window=window)
            ids, size = await writer.store(io.BytesIO(data))
            await writer.drain()
            got.append((ids, size))
        await repo.flush()
    finally:
        pool.shutdown()
    assert got[0] == got[1]
    assert got[0][1] == len(data)
