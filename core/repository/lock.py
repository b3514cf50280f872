"""Lock objects: shared for backups, exclusive for prune and key removal.

A lock is a plaintext JSON object under locks/. It is stale when it has expired
(holders refresh it well before) or when it names this host and a PID that is gone.
Acquisition writes first, then re-lists: two racing exclusive holders both see the other
and both back off, which is safe (restic does the same).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from core.errors import LockHeld
from core.repository.format import LOCKS
from core.storage.backend import Backend, ObjectNotFound

LOCK_TTL = timedelta(minutes=30)
REFRESH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class LockInfo:
    key: str
    exclusive: bool
    host: str
    pid: int
    operation: str
    created: datetime
    expires: datetime

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return (f"{kind} lock by {self.operation} (pid {self.pid} on {self.host}, since "
                f"{self.created.isoformat(timespec='seconds')})")

    def is_stale(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(timezone.utc)
        if now > self.expires:
            return True
        if self.host == socket.gethostname():
            if self.pid <= 0:
                return True  # kill(2) reads 0 and negatives as process groups: never a holder
            try:
                os.kill(self.pid, 0)
            except (ProcessLookupError, OverflowError, ValueError):
                return True  # no such process (or a PID no process can have)
            except PermissionError:
                return False
        return False


def _aware(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # a lock written without offset


def _decode(key: str, raw: bytes) -> LockInfo:
    d = json.loads(raw)
    return LockInfo(
        key=key, exclusive=bool(d["exclusive"]), host=str(d["host"]), pid=int(d["pid"]),
        operation=str(d.get("operation", "?")), created=_aware(d["created"]),
        expires=_aware(d["expires"]),
    )


async def list_locks(backend: Backend) -> list[LockInfo]:
    out = []
    async for info in backend.list(f"{LOCKS}/"):
        try:
            out.append(_decode(info.key, await backend.get(info.key)))
        except ObjectNotFound:
            continue  # released while we listed
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
        return json.dumps({
            "exclusive": self.exclusive, "host": socket.gethostname(), "pid": os.getpid(),
            "operation": self.operation, "created": self._created.isoformat(),
            "expires": (now + LOCK_TTL).isoformat(),
        }).encode()

    async def acquire(self) -> Lock:
        await self._check_conflicts()
        self.key = f"{LOCKS}/{os.urandom(16).hex()}"
        await self.backend.put(self.key, self._body())
        try:
            await self._check_conflicts()
        except LockHeld:
            await self._delete()
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
        # Write a fresh lock before deleting the old one so there is never a gap.
        delay = REFRESH_EVERY.total_seconds()
        while True:
            await asyncio.sleep(delay)
            new_key = f"{LOCKS}/{os.urandom(16).hex()}"
            try:
                await self.backend.put(new_key, self._body())
            except Exception:  # storage hiccup: the old lock is valid for ~25 more minutes
                delay = 30
                continue
            delay = REFRESH_EVERY.total_seconds()
            old, self.key = self.key, new_key
            try:
                await self.backend.delete(old)
            except ObjectNotFound:
                pass

    async def _delete(self) -> None:
        try:
            await self.backend.delete(self.key)
        except ObjectNotFound:
            pass

    async def release(self) -> None:
        if self._refresher:
            self._refresher.cancel()
            try:
                await self._refresher
            except asyncio.CancelledError:
                pass
        if self.key:
            await self._delete()

    async def __aenter__(self) -> Lock:
        return await self.acquire()

    async def __aexit__(self, *exc) -> None:
        await self.release()


async def remove_stale(backend: Backend, *, all_locks: bool = False) -> list[LockInfo]:
    removed = []
    for info in await list_locks(backend):
        if all_locks or info.is_stale():
            try:
                await backend.delete(info.key)
            except ObjectNotFound:
                continue
            removed.append(info)
    return removed
