"""Bandwidth limits: a token bucket per location and direction, shared by every transfer.

``--limit-upload`` / ``--limit-download`` (and ``limit_upload`` / ``limit_download`` of a
location in config.toml) cap the payload bytes of ``put`` and of ``get`` (whole or ranged)
in KiB/s, as restic's options of the same names do. Listing, stat, delete and the like
carry no payload and are not counted.

The Backend protocol hands a backend whole buffers, not streams, so the bytes cannot be
paced on the wire itself: an upload is paid for before it goes out and a download after it
came in, in slices of about a tenth of a second of the rate. Every transfer through a
location takes its slices from the one bucket in turn, so concurrent transfers share the
rate fairly and the total holds over any stretch longer than one object's transfer. The
wrapper sits outside RetryingBackend: waiting for the bucket never counts against a
request's timeout (a 16 MiB pack at 100 KiB/s takes minutes), and a retried attempt is not
paid twice.

The local backend's ``get_sync`` (restore and verify read packs on worker threads) is
throttled there too: the bucket is thread-safe, and a worker thread sleeps, never the
event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from core.storage.backend import (
    Backend,
    ObjectInfo,
    Payload,
    StorageUsage,
    TempInfo,
    backend_usage,
    delete_temporary,
    list_temporary,
    payload_size,
)

__all__ = ["KIB", "ThrottledBackend", "ThrottledLocalBackend", "TokenBucket", "slice_size", "throttled", "ticking"]

KIB = 1024

# Slices are a tenth of a second of the rate: about ten bucket turns a second per
# transfer, whatever the rate; never so small that a slow limit means thousands of
# wake-ups per object, never so large that one transfer holds the bucket for long.
_SLICE_SECONDS = 0.1
_MIN_SLICE = 4 * KIB
_MAX_SLICE = 1024 * KIB


def slice_size(rate: float) -> int:
    """Bytes taken from the bucket at a time at ``rate`` bytes/s."""
    return int(min(_MAX_SLICE, max(_MIN_SLICE, rate * _SLICE_SECONDS)))


class TokenBucket:
    """``rate`` bytes a second, at most ``burst`` of them ahead of time.

    Taking reserves: the balance may go below zero, and the taker waits until it would be
    back at zero. So the bytes granted by any time t never exceed ``burst + rate * t`` (the
    bucket starts full), and takers are served in the order they came, each slice after the
    ones reserved before it. ``reserve`` only computes under a lock; the waiting is the
    caller's (``take`` awaits, ``take_sync`` sleeps its worker thread)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        sleep_sync: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be above zero (got {rate})")
        self.rate = float(rate)
        self.slice = slice_size(self.rate)
        self.burst = float(self.slice if burst is None else burst)
        self._clock = clock
        self._sleep = sleep
        self._sleep_sync = sleep_sync
        self._lock = threading.Lock()  # restore's worker threads and the event loop share it
        self._tokens = self.burst
        self._last = clock()
        # Called after each slice granted (``ticking``): a transfer waiting its turn moves.
        self.ticks: list[Callable[[], None]] = []

    def reserve(self, n: int) -> float:
        """Take ``n`` bytes' worth now; the seconds to wait before they may go."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
            self._last = max(self._last, now)
            self._tokens -= n
            return -self._tokens / self.rate if self._tokens < 0 else 0.0

    def slices(self, n: int) -> Iterator[int]:
        while n > 0:
            part = min(n, self.slice)
            yield part
            n -= part

    async def take(self, n: int) -> None:
        """Wait (never blocking the event loop) until ``n`` more bytes may go."""
        for part in self.slices(n):
            delay = self.reserve(part)
            if delay > 0:
                await self._sleep(delay)
            for tick in self.ticks:
                tick()

    def take_sync(self, n: int) -> None:
        """``take`` for a worker thread: sleeps the calling thread."""
        for part in self.slices(n):
            delay = self.reserve(part)
            if delay > 0:
                self._sleep_sync(delay)
            for tick in self.ticks:
                tick()


class ThrottledBackend:
    """The Backend protocol over ``inner``, with put payloads paced by ``upload`` and get
    payloads by ``download`` (None: that direction is not limited)."""

    def __init__(self, inner: Backend, upload: TokenBucket | None, download: TokenBucket | None) -> None:
        self.inner = inner
        self.upload = upload
        self.download = download
        # Payload bytes through this location, for tests and benchmarks (the lock: restore's
        # worker threads count downloads too).
        self.uploaded = 0
        self.downloaded = 0
        self._count_lock = threading.Lock()

    def _counted(self, data: bytes) -> bytes:
        with self._count_lock:
            self.downloaded += len(data)
        return data

    def __repr__(self) -> str:
        return f"ThrottledBackend({self.inner!r})"

    @property
    def location(self) -> str:
        return self.inner.location

    async def put(self, key: str, data: Payload) -> None:
        size = payload_size(data)
        if self.upload is not None:
            await self.upload.take(size)
        await self.inner.put(key, data)
        self.uploaded += size

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self._counted(await self.inner.get(key, offset, length))
        if self.download is not None:
            await self.download.take(len(data))
        return data

    async def stat(self, key: str) -> ObjectInfo:
        return await self.inner.stat(key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        async for info in self.inner.list(prefix):
            yield info

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def exists(self) -> bool:
        return await self.inner.exists()

    async def create(self) -> None:
        await self.inner.create()

    async def list_temporary(self) -> builtins.list[TempInfo]:
        return await list_temporary(self.inner)

    async def delete_temporary(self, key: str) -> None:
        await delete_temporary(self.inner, key)

    async def usage(self) -> StorageUsage | None:
        return await backend_usage(self.inner)

    async def close(self) -> None:
        await self.inner.close()


class ThrottledLocalBackend(ThrottledBackend):
    """Over a backend with a blocking ``get_sync`` (core/storage/local.py), which restore
    and verify call from worker threads: offered here too, throttled on that thread."""

    def __init__(self, inner: Backend, upload: TokenBucket | None, download: TokenBucket | None) -> None:
        super().__init__(inner, upload, download)
        self._get_sync: Callable[[str, int, int | None], bytes] = getattr(inner, "get_sync")

    def get_sync(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self._counted(self._get_sync(key, offset, length))
        if self.download is not None:
            self.download.take_sync(len(data))
        return data


@contextlib.contextmanager
def ticking(backend: object, tick: Callable[[], None]) -> Iterator[None]:
    """Within the block, ``tick()`` after every slice a transfer through ``backend`` is
    granted (nothing when it has no limit). The backup watchdog counts it as progress: a
    reader held back by uploads waiting for their bandwidth is not a stalled read, and at
    a low limit two 16 MiB packs can take longer than stall_timeout_seconds to go."""
    buckets = [
        b for b in (getattr(backend, "upload", None), getattr(backend, "download", None)) if isinstance(b, TokenBucket)
    ]
    for bucket in buckets:
        bucket.ticks.append(tick)
    try:
        yield
    finally:
        for bucket in buckets:
            bucket.ticks.remove(tick)


def throttled(inner: Backend, limit_upload: int, limit_download: int) -> Backend:
    """``inner`` limited to these KiB/s (0: unlimited), or ``inner`` itself when neither is set."""
    if limit_upload <= 0 and limit_download <= 0:
        return inner
    upload = TokenBucket(limit_upload * KIB) if limit_upload > 0 else None
    download = TokenBucket(limit_download * KIB) if limit_download > 0 else None
    cls = ThrottledLocalBackend if hasattr(inner, "get_sync") else ThrottledBackend
    return cls(inner, upload, download)
