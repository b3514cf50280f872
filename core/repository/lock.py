"""Lock objects: shared for backups, exclusive for prune and key removal.

A lock is a plaintext JSON object under locks/: anyone who can write the storage can
forge one, so nothing in it is believed longer than it can be checked. It is stale when

- it names this host and a process that is not alive: no such pid, or a pid whose kernel
  start time differs from the one recorded (the pid was reused), or an impossible pid;
- it claims a time in the future: ``created`` or ``refreshed`` later than now (beyond
  CLOCK_SKEW between hosts), or an ``expires`` further than LOCK_TTL past the moment it
  says it was written (a holder refreshes every REFRESH_EVERY and never claims more);
- it has expired: a lock of another host is trusted until then and no longer.

Acquisition writes first, then re-lists: two racing exclusive holders both see the other
and both back off, which is safe (restic does the same).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Awaitable, TypeVar

from core.errors import LockHeld, LockUnreadable, StorageFull
from core.proc import have_proc, process_start
from core.repository.format import LOCKS
from core.storage.backend import Backend, ObjectNotFound, ObjectUnreadable, StorageReadOnly

log = logging.getLogger(__name__)

LOCK_TTL = timedelta(minutes=30)
REFRESH_EVERY = timedelta(minutes=5)
CLOCK_SKEW = timedelta(minutes=5)  # how far another host's clock may run ahead of ours


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


_MIN = datetime.min.replace(tzinfo=timezone.utc)
_MAX = datetime.max.replace(tzinfo=timezone.utc)


def _shift(t: datetime, delta: timedelta) -> datetime:
    """``t + delta``, clamped at the ends of the calendar (a lock may name year 1 or 9999)."""
    try:
        return t + delta
    except OverflowError:
        return _MAX if delta > timedelta(0) else _MIN


@dataclass(frozen=True, slots=True)
class LockInfo:
    key: str
    exclusive: bool
    host: str
    pid: int
    operation: str
    created: datetime  # when the holder first took the lock
    expires: datetime
    start: str = ""  # the holder's kernel start time (clock ticks since boot); "" in older locks
    refreshed: datetime | None = None  # when this object was written; None in older locks

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return (
            f"{kind} lock by {self.operation} (pid {self.pid} on {self.host}, since "
            f"{self.created.isoformat(timespec='seconds')})"
        )

    @property
    def written(self) -> datetime:
        """When the lock says this object was written (older locks: ``expires`` - LOCK_TTL)."""
        return self.refreshed if self.refreshed is not None else _shift(self.expires, -LOCK_TTL)

    def trusted_until(self) -> datetime:
        """``expires``, but never later than LOCK_TTL after the object was written."""
        return min(self.expires, _shift(self.written, LOCK_TTL))

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(timezone.utc)) - self.created).total_seconds()

    def stale_reason(self, now: datetime | None = None) -> str | None:
        """Why this lock is stale, or None when its holder may be alive."""
        now = now or datetime.now(timezone.utc)
        ahead = now + CLOCK_SKEW
        if self.created > ahead:
            return f"its creation time {self.created.isoformat(timespec='seconds')} is in the future (forged?)"
        if self.refreshed is not None and self.refreshed > ahead:
            return f"its refresh time {self.refreshed.isoformat(timespec='seconds')} is in the future (forged?)"
        if self.refreshed is None and self.written > ahead:
            return (
                f"its expiry {self.expires.isoformat(timespec='seconds')} is more than "
                f"{int(LOCK_TTL.total_seconds() // 60)} minutes ahead (no holder claims that; forged?)"
            )
        if now > self.trusted_until():
            bounded = " (its own expiry claims later: bounded)" if self.expires > self.trusted_until() else ""
            return f"expired {age_text((now - self.trusted_until()).total_seconds())} ago{bounded}"
        if self.host == socket.gethostname():
            return _dead_here(self.pid, self.start)
        return None

    def is_stale(self, now: datetime | None = None) -> bool:
        return self.stale_reason(now) is not None


def _dead_here(pid: int, start: str) -> str | None:
    """Why process ``pid`` (kernel start time ``start``, "" unknown) is not alive on this host."""
    if pid <= 0:
        return f"pid {pid} cannot hold a lock"  # kill(2) reads 0 and negatives as process groups
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return f"no process {pid} on this host"
    except PermissionError:
        pass  # exists, another user's
    if start and have_proc():
        now_start = process_start(pid)
        if now_start and now_start != start:
            return f"pid {pid} is now another process (started at tick {now_start}, the holder at {start})"
    return None


def _aware(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # a lock written without offset


def _decode(key: str, raw: bytes) -> LockInfo:
    d = json.loads(raw)
    if not isinstance(d, dict):
        raise ValueError("a lock is a JSON object")
    refreshed = d.get("refreshed")
    return LockInfo(
        key=key,
        exclusive=bool(d["exclusive"]),
        host=str(d["host"]),
        pid=int(d["pid"]),
        operation=str(d.get("operation", "?")),
        created=_aware(d["created"]),
        expires=_aware(d["expires"]),
        start=str(d.get("start") or ""),
        refreshed=_aware(refreshed) if isinstance(refreshed, str) else None,
    )


MAX_LOCK = 64 * 1024

T = TypeVar("T")


async def _to_the_end(aw: Awaitable[T]) -> T:
    """Await ``aw`` to its end even if the caller is cancelled meanwhile, then pass the
    cancellation on. A lock's writes and deletes must finish: a write whose thread goes on
    after its awaiter was cancelled leaves a lock nobody releases."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


async def _delete(backend: Backend, key: str) -> None:
    try:
        await backend.delete(key)
    except ObjectNotFound:
        pass


async def list_locks(backend: Backend) -> list[LockInfo]:
    out = []
    async for info in backend.list(f"{LOCKS}/"):
        if info.size > MAX_LOCK:
            continue  # not a lock of ours (about 300 bytes): never read a planted object whole
        try:
            out.append(_decode(info.key, await backend.get(info.key)))
        except ObjectNotFound:
            continue  # released while we listed
        except ObjectUnreadable as exc:
            # Not ignored like one that does not parse: it may be a live lock of another
            # user (a prune). Said as such, with what to do; readers go on without a lock.
            raise LockUnreadable(backend.location, info.key, exc.reason) from None
        except (ValueError, KeyError, TypeError):
            continue  # unreadable: ignored rather than blocking every operation forever
    return out


async def exclusive_holder(backend: Backend) -> LockInfo | None:
    """A live exclusive lock (a prune, an unlock), if one is held: a shared locker will be
    refused. A hint only: the lock may come or go before anyone acts on it."""
    for other in await list_locks(backend):
        if other.exclusive and not other.is_stale():
            return other
    return None


class Lock:
    def __init__(self, backend: Backend, exclusive: bool, operation: str) -> None:
        self.backend = backend
        self.exclusive = exclusive
        self.operation = operation
        self.key = ""
        self._refresher: asyncio.Task | None = None

    def _body(self) -> bytes:
        now = datetime.now(timezone.utc)
        self._created = getattr(self, "_created", None) or now
        return json.dumps(
            {
                "exclusive": self.exclusive,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "start": process_start(os.getpid()),
                "operation": self.operation,
                "created": self._created.isoformat(),
                "refreshed": now.isoformat(),
                "expires": (now + LOCK_TTL).isoformat(),
            }
        ).encode()

    async def acquire(self) -> Lock:
        await self._check_conflicts()
        self.key = f"{LOCKS}/{os.urandom(16).hex()}"
        try:
            await _to_the_end(self.backend.put(self.key, self._body()))
        except (StorageReadOnly, StorageFull) as exc:
            kind = "an exclusive" if self.exclusive else "a shared"
            refused = type(exc)(
                f"{exc}; cannot take {kind} lock for {self.operation} (reading commands: "
                "snapshots, ls, show, restore, verify work without one)"
            )
            refused.__dict__.update(exc.__dict__)  # StorageReadOnly.reason
            raise refused from None
        except BaseException:
            # Cancelled once the lock was written (a console closed mid-read), or a storage
            # error that may have written it anyway: nobody will release it, so undo it now.
            await self._undo()
            raise
        try:
            await self._check_conflicts()
        except BaseException:  # a conflicting lock, a cancellation, a storage error
            await self._undo()
            raise
        self._refresher = asyncio.create_task(self._refresh_loop())
        return self

    async def _check_conflicts(self) -> None:
        for other in await list_locks(self.backend):
            if other.key == self.key or other.is_stale():
                continue
            if self.exclusive or other.exclusive:
                raise LockHeld(
                    f"repository at {self.backend.location} is locked: {other.describe()}. "
                    "Wait for it to finish; if that process is gone, run `axisor-backup unlock`."
                )

    async def _refresh_loop(self) -> None:
        # Write a fresh lock before deleting the old one so there is never a gap. Each write
        # and delete runs to its end even when release() cancels the loop meanwhile, so the
        # key release() deletes is always the last one written.
        delay = REFRESH_EVERY.total_seconds()
        while True:
            await asyncio.sleep(delay)
            new_key = f"{LOCKS}/{os.urandom(16).hex()}"
            try:
                await _to_the_end(self.backend.put(new_key, self._body()))
            except asyncio.CancelledError:
                await _to_the_end(_delete(self.backend, new_key))
                raise
            except Exception:  # storage hiccup: the old lock is valid for ~25 more minutes
                delay = 30
                continue
            delay = REFRESH_EVERY.total_seconds()
            old, self.key = self.key, new_key
            await _to_the_end(_delete(self.backend, old))

    async def _delete(self) -> None:
        await _delete(self.backend, self.key)

    async def _undo(self) -> None:
        """Delete a lock that may or may not have been written, whatever happens meanwhile."""
        try:
            await _to_the_end(self._delete())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The caller's error is the one to report; this one is said beside it, by name.
            log.warning("could not remove lock %s (%s); it expires on its own (LOCK_TTL)", self.key, exc)

    async def release(self) -> None:
        # Runs to its end when cancelled (a console's worker stopped as it closes): a lock
        # left behind by a live process is never stale, and would refuse every prune until
        # that process exits. The cancellation is passed on once the lock is gone.
        cancelled = False
        if self._refresher:
            self._refresher.cancel()
            try:
                await _to_the_end(asyncio.wait([self._refresher]))
            except asyncio.CancelledError:
                cancelled = True
            self._refresher = None
        if self.key:
            try:
                await _to_the_end(self._delete())
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def __aenter__(self) -> Lock:
        return await self.acquire()

    async def __aexit__(self, *exc) -> None:
        await self.release()


@dataclass(frozen=True, slots=True)
class RemovedLock:
    info: LockInfo
    reason: str | None  # why it was judged stale; None: it was live (removed by --all)

    @property
    def stale(self) -> bool:
        return self.reason is not None


async def remove_locks(backend: Backend, *, all_locks: bool = False) -> list[RemovedLock]:
    """Delete the stale locks (every lock with ``all_locks``), each with why."""
    removed = []
    now = datetime.now(timezone.utc)
    for info in await list_locks(backend):
        reason = info.stale_reason(now)
        if all_locks or reason is not None:
            try:
                await backend.delete(info.key)
            except ObjectNotFound:
                continue
            removed.append(RemovedLock(info, reason))
    return removed


async def remove_stale(backend: Backend, *, all_locks: bool = False) -> list[LockInfo]:
    return [r.info for r in await remove_locks(backend, all_locks=all_locks)]
