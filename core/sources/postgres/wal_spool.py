"""The prefetch spool's steering files, standard library only: the quick wal-fetch
(app/wal_fetch_quick.py) writes and reads them before the program's other imports.

``<pg_wal>/.axisor-prefetch/`` (wal_prefetch.py) holds the spooled segments and two small
files: ``.asked``, the segment recovery asked for last (every wal-fetch writes it; the
follower keeps its window after it), and ``.follow.lock``, flock'd by the one follower
(wal_follow.py) for its whole life: a quick wal-fetch that can take the lock knows none
runs and starts one, handing the lock over; its removal tells the follower to stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path

DIR_NAME = ".axisor-prefetch"
ASKED = ".asked"
LOCK = ".follow.lock"
STOP_WAIT = 5.0  # stop_follower: how long a follower may take to finish the fetch under way

_HEX = frozenset("0123456789ABCDEF")


def is_segment(name: str) -> bool:
    """core/sources/postgres/wal.py's, without importing re (and enum): this path counts ms."""
    return len(name) == 24 and set(name) <= _HEX


def file_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file, read in pieces."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while piece := f.read(1024 * 1024):
            h.update(piece)
            size += len(piece)
    return size, h.hexdigest()


def note_asked(folder: Path, name: str) -> None:
    """Record ``name`` as the segment recovery asked for last; best effort, and only into an
    existing spool (a wal-fetch never creates the folder for this)."""
    tmp = folder / f"{ASKED}.{os.getpid()}.tmp"
    try:
        with open(tmp, "x") as f:
            f.write(name)
        os.replace(tmp, folder / ASKED)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def read_asked(folder: Path) -> str | None:
    try:
        name = (folder / ASKED).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    return name if is_segment(name) else None


def sweep_passed(folder: Path, name: str) -> None:
    """Remove spooled segments recovery has passed (any timeline, before segment ``name``):
    wal_prefetch.Spool.sweep's first half, for the quick wal-fetch. Segment names are fixed
    width upper-case hex, log then segment, so their order is their names' characters 9-24
    compared as text, whatever the segment size."""
    with contextlib.suppress(OSError):
        for e in os.scandir(folder):
            if is_segment(e.name) and e.name[8:] < name[8:]:
                with contextlib.suppress(OSError):
                    os.unlink(e.path)


def take_lock(folder: Path) -> int | None:
    """The follower's lock, taken without waiting: its fd (close it to let go; pass it on
    to hand the lock to a child, which then holds it), or None when a follower holds it or
    the folder is gone."""
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def holds_lock(folder: Path, fd: int) -> bool:
    """Whether ``fd`` is still the lock file in ``folder`` (removed or replaced: stop)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(folder / LOCK, follow_symlinks=False))
    except OSError:
        return False


def segments(folder: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(folder) if is_segment(e.name)]
    except OSError:
        return []


def tidy(folder: Path, lock_fd: int | None = None) -> None:
    """Remove the steering files and the folder when no segment is spooled any more (nothing
    left behind in pg_wal). Only by the lock's holder: the follower (``lock_fd``), or a
    caller that can take the lock (none runs); a running follower tidies when it leaves."""
    if not folder.is_dir() or segments(folder):
        return
    fd = take_lock(folder) if lock_fd is None else lock_fd
    if fd is None:
        return
    try:
        if holds_lock(folder, fd) and not segments(folder):
            for n in (ASKED, LOCK):
                with contextlib.suppress(OSError):
                    os.unlink(folder / n)
            with contextlib.suppress(OSError):
                folder.rmdir()
    finally:
        if lock_fd is None:
            os.close(fd)


def next_segment(name: str, segment_size: int) -> str | None:
    """The segment after ``name`` on its timeline (core/sources/postgres/wal.py's
    segment_number and segment_name, without its imports); None for an impossible size."""
    if not is_segment(name) or segment_size <= 0 or 0x100000000 % segment_size:
        return None
    per_log = 0x100000000 // segment_size
    number = int(name[8:16], 16) * per_log + int(name[16:24], 16) + 1
    return f"{name[:8]}{number // per_log:08X}{number % per_log:08X}"


def stop_follower(folder: Path) -> None:
    """Tell a running follower to stop (its lock file removed) and wait up to ``STOP_WAIT``
    for it to let go, so no file of its lands after the caller removes the folder."""
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return  # no follower was ever started here
    try:
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK)
        deadline = time.monotonic() + STOP_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return  # none holds it (any more)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            except OSError:
                return
    finally:
        os.close(fd)
