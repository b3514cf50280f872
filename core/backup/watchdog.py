"""The backup watchdog: a file source in which nothing moves for too long fails, naming the file.

Issue 13: a backup could hang forever (a chunker bug spun at 100 % CPU; a read from a hung
network mount or FUSE file system never returns), holding the repository lock. Progress is
any byte read from a file, or a file started or finished; when none happens for
``[engine] stall_timeout_seconds`` (600 by default, 0: never) the archive is cancelled and
the run fails with ``BackupStalled`` (exit 22), naming the file(s) still being read and
the time. The lock is released on the way out and the repository stays valid: nothing
was committed for this source, its uploaded packs are adopted by the next backup.

The read itself cannot be interrupted: it runs on a worker thread, maybe blocked in the
kernel. That thread is abandoned: ``abandoned()`` tells the service not to wait for it
when it closes, and the CLI not to wait for it when the process exits.

The archiver calls two hooks, ``reading(path, stream)`` (large files: every read counts)
and ``small_file(path)`` (a worker thread starts reading a small file; ``None``: done).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from core.errors import BackupStalled

T = TypeVar("T")

DEFAULT_STALL_SECONDS = 600

_abandoned = threading.Event()


def abandoned() -> bool:
    """True once a stalled read was left behind on a worker thread (it may never return)."""
    return _abandoned.is_set()


class FileStream(Protocol):
    """A file being read for the archive: a raw ``readinto`` with the descriptor under it."""

    def readinto(self, buffer: Any, /) -> int | None: ...

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class _Watched:
    """A file being read: every read is progress. Once the archive is over early (stalled,
    cancelled: Ctrl-C, job cancel), the next read fails, so the worker thread gives up the
    file within one read instead of filling the rest of a 16 MiB window from a slow source
    (the service's close waits for it)."""

    def __init__(self, dog: Watchdog, path: bytes, stream: FileStream) -> None:
        self._dog = dog
        self._path = path
        self._stream = stream
        dog._open(path, self)

    def readinto(self, buf: Any) -> int | None:
        if self._dog.stopped is not None:
            raise BackupStalled(f"{os.fsdecode(self._path)}: read stopped: {self._dog.stopped}")
        with self._dog._lock:
            self._dog._reads_in_flight += 1
        try:
            n = self._stream.readinto(buf)
        finally:
            with self._dog._lock:
                self._dog._reads_in_flight -= 1
        self._dog.progress()
        return n

    def fileno(self) -> int:
        return self._stream.fileno()

    def close(self) -> None:
        self._dog._close(self)
        self._stream.close()

    def __enter__(self) -> _Watched:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watchdog:
    """One file source's archive. ``timeout`` <= 0 disables it (the hooks still work)."""

    def __init__(self, timeout: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.fired = False  # the stall was detected
        self.stopped: str | None = None  # why reads must stop now (stalled, cancelled)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()
        self._open_files: dict[int, bytes] = {}  # id(_Watched) -> path
        self._small: dict[int, bytes] = {}  # worker thread id -> the small file it reads
        self._reads_in_flight = 0

    # -- hooks (the archiver; worker threads) ---------------------------------------------

    def progress(self) -> None:
        self._last = self._clock()  # one float store: no lock needed

    def reading(self, path: bytes, stream: FileStream) -> FileStream:
        """``stream`` (opened on ``path``) wrapped so each read counts; closing it ends the file."""
        return _Watched(self, path, stream)

    def small_file(self, path: bytes | None) -> None:
        """The calling worker thread now reads ``path`` (None: it finished its batch)."""
        me = threading.get_ident()
        with self._lock:
            if path is None:
                self._small.pop(me, None)
            else:
                self._small[me] = path
        self.progress()

    def _open(self, path: bytes, watched: _Watched) -> None:
        with self._lock:
            self._open_files[id(watched)] = path
        self.progress()

    def _close(self, watched: _Watched) -> None:
        with self._lock:
            self._open_files.pop(id(watched), None)
        self.progress()

    # -- the watch (event loop) ----------------------------------------------------------

    def stalled_for(self) -> float:
        return self._clock() - self._last

    def reading_now(self) -> list[str]:
        with self._lock:
            paths = [*self._open_files.values(), *self._small.values()]
        return sorted({os.fsdecode(p) for p in paths})

    async def guard(self, work: Awaitable[T]) -> T:
        """Await ``work``; if it stalls, cancel it and raise BackupStalled. (The caller stops
        what ``work`` spawned, as it does on any failure.)"""
        task = asyncio.ensure_future(work)
        if self.timeout <= 0:
            return await task
        # Checked a few times per timeout, at most every 5 s: a stall is reported within
        # about a quarter of the timeout past it.
        interval = min(max(self.timeout / 4, 0.05), 5.0)
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=interval)
                if done:
                    return task.result()
                if self.stalled_for() >= self.timeout:
                    break
        except BaseException:
            self.stopped = "the backup was cancelled"
            task.cancel()  # we were cancelled (Ctrl-C, job cancel): so is the work
            await asyncio.gather(task, return_exceptions=True)
            await self._let_reads_end()
            raise
        error = self._error()
        self.fired = True
        self.stopped = "the backup stalled"
        if self._open_files or self._small:
            _abandoned.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise error

    async def _let_reads_end(self, grace: float = 1.0) -> None:
        """After a cancel: a read still blocked after ``grace`` (a hung mount) is abandoned,
        so that Ctrl-C or ``job cancel`` ends the run in time rather than at the read's end."""
        deadline = time.monotonic() + grace
        while self._reads_in_flight or self._small:
            if time.monotonic() >= deadline:
                _abandoned.set()
                return
            await asyncio.sleep(0.02)

    def _error(self) -> BackupStalled:
        files = self.reading_now()
        seconds = f"{self.timeout:g} s"
        if not files:
            return BackupStalled(
                f"backup stalled: no byte read and no file finished for {seconds} "
                f"([engine] stall_timeout_seconds), while no file was being read"
            )
        more = (
            f" (and {len(files) - 1} more: {', '.join(files[1:4])}{'...' if len(files) > 4 else ''})"
            if len(files) > 1
            else ""
        )
        return BackupStalled(
            f"backup stalled: no byte read from {files[0]}{more} and no file finished for "
            f"{seconds} ([engine] stall_timeout_seconds); the read was abandoned"
        )


class NoWatchdog(Watchdog):
    """What the archiver uses when no watchdog is set: the hooks cost nothing."""

    def __init__(self) -> None:
        super().__init__(0)

    def reading(self, path: bytes, stream: FileStream) -> FileStream:
        return stream

    def small_file(self, path: bytes | None) -> None:
        pass


NO_WATCHDOG = NoWatchdog()
