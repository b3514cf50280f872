"""Retries, timeouts and a concurrency bound around any Backend.

Remote storage fails in passing: a connection reset, a 503 while a bucket scales, a
request that stalls. ``RetryingBackend`` retries exactly those (backoff with full jitter)
and nothing else: a missing object, an existing object or a refused login is an answer,
not an accident, and is raised at once.

Retrying a write is only safe because objects are immutable and content-named: when a
``put`` whose earlier attempt ended ambiguously (reset or timeout after the bytes left)
meets ``ObjectExists``, the stored object is read back and compared; equal bytes mean
the earlier attempt landed, anything else is a real conflict.
"""

from __future__ import annotations

import builtins
import asyncio
import logging
import errno
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from core.storage.backend import (
    Backend,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    Payload,
    StorageError,
    StorageUsage,
    TempInfo,
    as_bytes,
    backend_usage,
    payload_size,
)

__all__ = [
    "RetryPolicy",
    "RetryingBackend",
    "StorageUnavailable",
    "TransientError",
    "cleanup",
    "is_retryable",
]

T = TypeVar("T")

log = logging.getLogger("axisor.storage")


class TransientError(StorageError):
    """A failure that may pass on its own: throttling, 5xx, a dropped connection, a
    short read. Backends raise it so the retry layer knows to try again."""


class StorageUnavailable(StorageError):
    """Retries ran out (or the failure cannot pass): the location cannot be used now."""


# errno values of network trouble that a new connection may not see again.
_NETWORK_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ENETRESET,
    errno.EAGAIN,
}


async def cleanup(coro: Awaitable[object], timeout: float = 10.0) -> None:
    """Run best-effort cleanup (remove a temp file, abort an upload) to the end even if
    the caller is being cancelled, which is exactly when it matters (a timeout). Its own
    failure is swallowed: the object was never committed, so leftovers are only litter."""
    task = asyncio.ensure_future(asyncio.wait_for(coro, timeout))
    # Retrieve the outcome even when nobody awaits it any more, so asyncio logs nothing.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    try:
        await asyncio.shield(task)
    except Exception as exc:  # noqa: BLE001 - best effort by design, but said, not hidden
        log.debug("cleanup after a failed or cancelled write did not finish: %s", exc)


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed. Answers from the storage are never retried."""
    if isinstance(exc, (ObjectExists, ObjectNotFound)):
        return False
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, StorageError):
        return False  # the backend already decided it is permanent (auth, full, refused)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError, EOFError)):
        return True
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False  # a wrong certificate stays wrong
    if isinstance(exc, ssl.SSLError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _NETWORK_ERRNOS
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 5
    # Seconds one attempt may take; None lets it run (a local disk).
    timeout: float | None = 60.0
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)], so many clients that
        failed together do not come back together."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RetryingBackend:
    """The Backend protocol over ``inner``, with retries, per-attempt timeouts and at
    most ``concurrency`` requests in flight."""

    def __init__(self, inner: Backend, policy: RetryPolicy | None = None, *, concurrency: int = 4) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        # Counted for tests and monitoring: how often a failure was retried.
        self.retried = 0

    def __repr__(self) -> str:
        return f"RetryingBackend({self.inner.location!r})"

    @property
    def location(self) -> str:
        return self.inner.location

    async def _call(
        self,
        what: str,
        attempt_fn: Callable[[int], Awaitable[T]],
    ) -> T:
        last: BaseException | None = None
        attempts = self.policy.retries + 1
        for attempt in range(attempts):
            try:
                async with self._slots:
                    if self.policy.timeout is None:
                        return await attempt_fn(attempt)
                    # asyncio.timeout, not wait_for: on 3.11 wait_for re-raises the inner
                    # task's exception from a frame holding that task, a cycle through the
                    # traceback that kept every caller frame (a whole 16 MiB pack in copy's
                    # stat-then-put) alive until the rarely-run cyclic GC; RSS grew with data.
                    async with asyncio.timeout(self.policy.timeout):
                        return await attempt_fn(attempt)
            except Exception as exc:  # noqa: BLE001 - classified right below
                if not is_retryable(exc):
                    raise
                last = exc
                if attempt + 1 < attempts:
                    self.retried += 1
                    await asyncio.sleep(self.policy.delay(attempt))
        assert last is not None
        raise StorageUnavailable(
            f"{self.location}: {what} failed after {attempts} attempt{'s' if attempts > 1 else ''}: {_describe(last)}"
        ) from None

    # -- the protocol ---------------------------------------------------------------------

    async def put(self, key: str, data: Payload) -> None:
        # Parts are joined once so every attempt (and the read-back compare) sees the same bytes.
        blob = data if isinstance(data, (bytes, bytearray, memoryview)) else as_bytes(data)
        ambiguous = False

        async def attempt(n: int) -> None:
            nonlocal ambiguous
            try:
                await self.inner.put(key, blob)
            except ObjectExists:
                if not ambiguous:
                    raise
                stored = await self.inner.get(key)
                if bytes(stored) != bytes(blob):
                    raise
            except BaseException as exc:
                # A reset or timeout may have hit after the object was committed.
                if isinstance(exc, asyncio.CancelledError) or (isinstance(exc, Exception) and is_retryable(exc)):
                    ambiguous = True
                raise

        await self._call(f"write {key} ({payload_size(blob)} bytes)", attempt)

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        async def attempt(n: int) -> bytes:
            data = await self.inner.get(key, offset, length)
            if length is not None and len(data) != length:
                raise TransientError(
                    f"{self.location}: short read of {key}: wanted {length} bytes at {offset}, got {len(data)}"
                )
            return data

        span = "" if length is None and offset == 0 else f" (bytes {offset}-{offset + (length or 0)})"
        return await self._call(f"read {key}{span}", attempt)

    async def stat(self, key: str) -> ObjectInfo:
        return await self._call(f"stat {key}", lambda n: self.inner.stat(key))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        # Collected per attempt: a listing that broke halfway restarts from the top rather
        # than yield some entries twice.
        async def attempt(n: int) -> list[ObjectInfo]:
            return [info async for info in self.inner.list(prefix)]

        for info in await self._call(f"list {prefix or '/'}", attempt):
            yield info

    async def delete(self, key: str) -> None:
        async def attempt(n: int) -> None:
            try:
                await self.inner.delete(key)
            except ObjectNotFound:
                if n == 0:
                    raise
                # An earlier attempt that failed in passing may have deleted it already.

        await self._call(f"delete {key}", attempt)

    async def exists(self) -> bool:
        return await self._call("check the repository", lambda n: self.inner.exists())

    async def create(self) -> None:
        await self._call("create the repository location", lambda n: self.inner.create())

    async def list_temporary(self) -> builtins.list[TempInfo]:
        """Leftovers of unfinished uploads (core.storage.backend.TempInfo); [] when the
        provider has none of its own kind."""
        from core.storage.backend import list_temporary

        return await self._call("list temporary files", lambda n: list_temporary(self.inner))

    async def delete_temporary(self, key: str) -> None:
        from core.storage.backend import delete_temporary

        await self._call(f"delete {key}", lambda n: delete_temporary(self.inner, key))

    async def usage(self) -> StorageUsage | None:
        return await self._call("measure usage", lambda n: backend_usage(self.inner))

    async def close(self) -> None:
        await self.inner.close()
