"""Storing one byte stream as deduplicated chunks: a large file, or a dump read from a pipe.

The stream is cut on a worker thread (``Chunker.take``, about 4 MiB a trip); chunks not
yet in the repository are claimed and sealed on the worker pool, one trip per take, at
most ``slots`` takes in flight, so memory stays flat however long the stream is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any

from core.backup.chunker import WINDOW, Chunker, ReadIntoStream
from core.repository.blobs import SealedBlob
from core.repository.format import BlobType
from core.repository.repository import Repository

TAKE_BYTES = 4 * 1024 * 1024

Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Future]


class StreamWriter:
    def __init__(
        self,
        repo: Repository,
        *,
        slots: int = 3,
        spawn: Spawn | None = None,
        window: int = WINDOW,
        take_executor: Executor | None = None,
    ) -> None:
        self.repo = repo
        # Where the stream is cut and its chunks ided: the repository's worker pool, or a
        # thread of its own (one part of a dump in parts: parts must not queue behind each
        # other's takes in a pool as small as the host's cores).
        self._take_executor = take_executor if take_executor is not None else repo.executor
        self._window = window  # the chunker's read window (memory per stream; boundaries never depend on it)
        self._slots = asyncio.Semaphore(slots)
        self._own: set[asyncio.Future] = set()
        self._spawn = spawn or self._track

    async def store(
        self,
        stream: ReadIntoStream,
        on_bytes: Callable[[int], None] | None = None,
        observe: Callable[[bytearray, int, int], None] | None = None,
    ) -> tuple[tuple[bytes, ...], int]:
        """Read ``stream`` to its end; return its chunk ids and length. Sealing may still be
        running when this returns: the caller drains (``drain`` or its own spawner) and then
        flushes the repository before a snapshot may name these ids."""
        loop = asyncio.get_running_loop()
        ids: list[bytes] = []
        size = 0
        chunker = Chunker(self.repo.config.chunker, stream, observe, window=self._window)
        try:
            while chunks := await loop.run_in_executor(
                self._take_executor, _take_and_id, chunker, self.repo, TAKE_BYTES
            ):
                new = []
                took = 0
                for blob_id, data in chunks:
                    ids.append(blob_id)
                    took += len(data)
                    if self.repo.claim(blob_id):
                        new.append((blob_id, data))
                size += took
                # Only the seal below keeps the new chunks: not this loop while the next take
                # is cut (4 MiB more held per stream).
                chunks.clear()
                del data
                if new:
                    # One worker trip seals a whole take: per-chunk trips cost more
                    # event-loop time than the sealing saved.
                    await self._slots.acquire()
                    self._spawn(self._seal(new))
                if on_bytes:
                    on_bytes(took)
        finally:
            chunker.close()
        return tuple(ids), size

    async def _seal(self, chunks: list[tuple[bytes, bytes]]) -> None:
        try:
            sealed = await asyncio.get_running_loop().run_in_executor(self.repo.executor, _seal_all, self.repo, chunks)
            # The plain chunks are not needed once sealed: free them before waiting for room
            # in a pack (a slow upload holds every take in flight here: 4 MiB each).
            chunks.clear()
            for blob in sealed:
                await self.repo.add_sealed(blob)
        finally:
            self._slots.release()

    def _track(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future:
        task = asyncio.ensure_future(coro)
        self._own.add(task)
        task.add_done_callback(self._own.discard)
        return task

    async def drain(self) -> None:
        """Wait for the seals this writer started itself (without a spawner); raise the first failure."""
        while self._own:
            done = await asyncio.gather(*list(self._own), return_exceptions=True)
            for r in done:
                if isinstance(r, BaseException):
                    for t in list(self._own):
                        t.cancel()
                    raise r


def _seal_all(repo: Repository, chunks: list[tuple[bytes, bytes]]) -> list[SealedBlob]:
    return [repo.seal(BlobType.DATA, blob_id, data) for blob_id, data in chunks]


def _take_and_id(chunker: Chunker, repo: Repository, max_bytes: int) -> list[tuple[bytes, bytes]]:
    return [(repo.cipher.blob_id(c), c) for c in chunker.take(max_bytes)]
