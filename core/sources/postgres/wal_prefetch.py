"""wal-fetch ahead of recovery: the next segments fetched in parallel into a spool.

PostgreSQL runs restore_command once per WAL file, one at a time, and waits for each: every
run of ours pays the process start, opening the repository and loading its index before the
first byte is read. So a fetch of segment N also fetches N+1..N+k (same timeline, the ones
archived) ``PREFETCH_PARALLEL`` at a time into a spool beside the destination
(``pg_wal/.axisor-prefetch``: the server's own, private folder, on the same filesystem, so a
spooled file is handed over by a rename). The next runs are answered from the spool without
loading the index; the spool is topped up once it holds fewer than half the window.

A spooled file is never trusted as it is: it is handed over only when its size and SHA-256
equal those of the file's WAL manifest, read from the repository at that moment (sealed, so
the spool cannot forge it); anything else is deleted and fetched again. A segment missing
from the archive ends the window (the end of the archive, or a timeline switch: both normal).
The spool holds at most ``PREFETCH_BYTES``; files for segments before the one asked for (the
server has moved past them) and files older than ``SPOOL_TTL`` are removed on every run, and
so is the folder at the end of a point-in-time restore.

Once the quick wal-fetch (app/wal_fetch_quick.py) answers from the spool before the
imports, replay asks faster than a whole program run per top-up allows: so a *follower*
(wal_follow.py, ``wal-fetch --ahead``), started by that quick path, keeps the window full
in the background while recovery runs, steered by two small files (wal_spool.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from core.errors import AxisorError
from core.repository.repository import Repository
from core.sources.postgres.wal import WalManifest, fetch, is_segment, load_manifest, segment_name, segment_number
from core.sources.postgres import wal_spool
from core.sources.postgres.wal_markers import file_digest

DIR_NAME = wal_spool.DIR_NAME
PREFETCH_FILES = 8  # the window: segments after the one asked for
PREFETCH_PARALLEL = 4
PREFETCH_BYTES = 128 * 1024 * 1024
SPOOL_TTL = 3600.0


class Spool:
    """``<folder of %p>/.axisor-prefetch/<WAL name>``: whole, checked files only (``fetch``
    writes a temp file and renames it after checking it against the manifest)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def open(cls, dest: Path) -> Spool | None:
        """None when the folder cannot be written: wal-fetch works as without. The folder
        itself is made when there is something to spool, and removed once empty."""
        folder = dest.parent / DIR_NAME
        if folder.is_dir():
            return cls(folder) if os.access(folder, os.W_OK) else None
        return cls(folder) if os.access(dest.parent, os.W_OK) else None

    def make(self) -> bool:
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return False
        return os.access(self.folder, os.W_OK)

    def note(self, name: str) -> None:
        """Record ``name`` as the segment recovery asked for last (the follower's position)."""
        wal_spool.note_asked(self.folder, name)

    def tidy(self) -> None:
        """Remove the folder when it holds nothing (nothing left behind in pg_wal)."""
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def take(self, m: WalManifest, dest: Path) -> bool:
        """Hand the spooled copy of ``m.name`` over to ``dest`` if it is exactly what the
        manifest describes; a copy that is not is deleted (the caller fetches it again)."""
        path = self.folder / m.name
        try:
            if os.stat(path).st_size != m.size or file_digest(path) != (m.size, m.sha256):
                _drop(path)
                return False
            os.replace(path, dest)
        except OSError:
            return False
        return True

    def names(self) -> set[str]:
        try:
            return {e.name for e in os.scandir(self.folder) if not e.name.startswith(".")}
        except OSError:
            return set()

    def used_bytes(self) -> int:
        total = 0
        with contextlib.suppress(OSError):
            for e in os.scandir(self.folder):
                with contextlib.suppress(OSError):
                    total += e.stat().st_size
        return total

    def sweep(self, asked: str, segment_size: int) -> None:
        """Remove what recovery no longer needs: segments before ``asked`` (any timeline),
        anything older than ``SPOOL_TTL`` (temp files of a killed run included)."""
        number = segment_number(asked, segment_size)[1] if is_segment(asked) else None
        now = time.time()
        with contextlib.suppress(OSError):
            for e in os.scandir(self.folder):
                if e.name == wal_spool.LOCK:
                    continue  # held by a live follower; remove_spool removes it
                try:
                    stale = now - e.stat().st_mtime > SPOOL_TTL
                except OSError:
                    continue
                passed = number is not None and is_segment(e.name) and segment_number(e.name, segment_size)[1] < number
                if stale or passed:
                    _drop(Path(e.path))


def window(name: str, segment_size: int, count: int = PREFETCH_FILES) -> list[str]:
    """The segments after ``name`` on its timeline, at most ``count`` and ``PREFETCH_BYTES``."""
    if not is_segment(name) or segment_size <= 0:
        return []
    tli, number = segment_number(name, segment_size)
    count = min(count, PREFETCH_BYTES // segment_size)
    return [segment_name(tli, number + i, segment_size) for i in range(1, count + 1)]


def needs_topping_up(spool: Spool, name: str, segment_size: int) -> bool:
    wanted = window(name, segment_size)
    return bool(wanted) and len(set(wanted) & spool.names()) < (len(wanted) + 1) // 2


async def prefetch(
    repo: Repository,
    name: str,
    segment_size: int,
    spool: Spool,
    *,
    make: bool = True,
    asked: Callable[[], str | None] | None = None,
) -> tuple[str, ...]:
    """Fetch the window after ``name`` that is not spooled yet (the index is loaded and the
    caller holds the read lock), ``PREFETCH_PARALLEL`` at a time; stop at the first segment
    the archive does not hold. Failures are not errors: that file's own fetch reports them.
    ``make=False`` (the follower): never create the folder; recovery's end removed it.
    ``asked``: the segment recovery asked for last, looked up before each fetch starts: one
    recovery has reached meanwhile is not fetched again (it was just handed over)."""
    have = await asyncio.to_thread(spool.names)
    room = PREFETCH_BYTES - await asyncio.to_thread(spool.used_bytes)
    todo: list[str] = []
    for n in window(name, segment_size):
        if n in have:
            continue
        try:
            m = await load_manifest(repo, n)
        except AxisorError:
            break
        if m is None:
            break  # the end of the archive, or the timeline switched: recovery asks for another name
        if m.size > room:
            break
        room -= m.size
        todo.append(n)
    if not todo or not await asyncio.to_thread(spool.make if make else spool.folder.is_dir):
        return ()
    slots = asyncio.Semaphore(PREFETCH_PARALLEL)
    done: list[str] = []

    async def one(n: str) -> None:
        async with slots:
            now = await asyncio.to_thread(asked) if asked is not None else None
            if now is not None and n[8:] <= now[8:]:
                return
            try:
                await fetch(repo, n, spool.folder / n)
                done.append(n)
            except (AxisorError, OSError):
                pass

    await asyncio.gather(*(one(n) for n in todo))
    return tuple(sorted(done))


def remove_spool(pg_wal: Path) -> None:
    """The spool of a finished recovery (``pg_wal/.axisor-prefetch``), best effort. A
    follower still running is told to stop (its lock file removed) and given ``STOP_WAIT``
    to finish the fetch under way, so no file of its lands after the folder is gone."""
    folder = pg_wal / DIR_NAME
    wal_spool.stop_follower(folder)
    with contextlib.suppress(OSError):
        for e in os.scandir(folder):
            _drop(Path(e.path))
        folder.rmdir()


def _drop(p: Path) -> None:
    with contextlib.suppress(OSError):
        p.unlink()
