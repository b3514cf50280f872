"""One SQLite connection on its own thread: the base of the local state stores.

SQLite calls block, so every query runs on one dedicated thread, never on the event loop.
The job store (core/jobs/store.py) and the scheduler's store (core/schedule/state.py)
share one file, ``jobs.sqlite3`` in the state directory, each with its own tables; WAL
mode and a busy timeout let the daemon and a CLI write at once.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from core.errors import AxisorError, StorageFull

T = TypeVar("T")

SQLITE_FULL = 13
NEARLY_FULL = 128 * 1024  # below this much free space an SQLite I/O error is the full disk's


def _free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class SqliteOnThread:
    SCHEMA = ""  # executed at open (CREATE ... IF NOT EXISTS)
    WHAT = "state database"  # for messages: "cannot open the <WHAT> <path>"
    ROWS_BY_NAME = False  # sqlite3.Row rows instead of tuples
    PRAGMAS: tuple[str, ...] = ("PRAGMA journal_mode=WAL",)

    def __init__(self, path: Path, thread_name: str) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._db: sqlite3.Connection | None = None

    async def _start(self) -> None:
        await self._call(self._connect)

    def _connect(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            if self._full(exc):
                raise self.failure(exc) from None
            raise AxisorError(f"cannot create the state directory {directory}: {exc.strerror or exc}") from None
        try:
            # Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the
            # database file's mode, and a chmod afterwards left them 0644 (job parameters
            # and errors are private).
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            if self.ROWS_BY_NAME:
                db.row_factory = sqlite3.Row
            for pragma in self.PRAGMAS:
                db.execute(pragma)
            db.executescript(self.SCHEMA)
            for path in (
                self.path,
                self.path.with_name(self.path.name + "-wal"),
                self.path.with_name(self.path.name + "-shm"),
            ):
                if path.exists():  # a database from before this was 0644 and its companions too
                    os.chmod(path, 0o600)
        except (OSError, sqlite3.Error) as exc:
            if self._full(exc):
                raise self.failure(exc) from None
            raise AxisorError(f"cannot open the {self.WHAT} {self.path}: {exc}") from None
        self._db = db

    def _full(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the state folder's file system being full."""
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.Error):
            if getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "full" in str(exc):
                return True
            free = _free_bytes(self.path.parent)
            # SQLite reports a failed grow of its -shm map or -wal file as a "disk I/O error".
            return free is not None and free < NEARLY_FULL
        return False

    def failure(self, exc: BaseException) -> AxisorError:
        """One line for a failed open or query: StorageFull (exit 10) naming the state folder
        when its file system is full, else an AxisorError naming the database."""
        if self._full(exc):
            return StorageFull(
                f"the state folder {self.path.parent} is full: cannot write the {self.WHAT} "
                f"({exc}); free space there, or point [engine] state_dir (or "
                "$AXISOR_BACKUP_STATE_DIR) at another folder"
            )
        return AxisorError(f"the {self.WHAT} {self.path} failed: {exc}")

    def _guarded(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            raise self.failure(exc) from None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._guarded, fn, args)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._call(shut)
        self._thread.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, f"the {self.WHAT} is closed"
        return self._db
