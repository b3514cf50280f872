"""wal-push ahead of the server's archiver.

PostgreSQL runs archive_command once per WAL file, one at a time, and each run of ours pays
the process start and the passphrase's scrypt (~0.35 s of a ~0.4 s push). A server writing
WAL faster than that falls behind, and pg_wal grows until its disk is full. So a push also
stores the other files the server has already marked ready (``archive_status/<name>.ready``
beside ``%p``), up to ``AHEAD_FILES`` and none started after ``AHEAD_SECONDS``, with the
repository already open, ``AHEAD_PARALLEL`` at a time, and leaves a marker for each in the
state directory (wal_markers.py). When the server then asks for one of them, the marker
answers without opening the repository (usually app/wal_quick.py, before the program's
imports): the file's size and SHA-256 must equal what was stored, else the push runs in
full. With a daemon running, the storing goes on there (wal_daemon.py).

A marker is written only after its file's WAL manifest is durable (``wal.push`` returned),
so it never claims what the repository does not hold. Markers are kept per repository id
(a re-initialised repository at the same path has another), used once, and ignored after
``MARKER_TTL`` (wal_markers.py). Losing one only costs a normal push; so does a state directory that cannot
be written (wal-push then works as before).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

from core.errors import AxisorError
from core.repository.repository import Repository
from core.sources.postgres.wal import PushResult, is_wal_name, push
from core.sources.postgres.wal_markers import Markers, file_digest

__all__ = [
    "AHEAD_FILES",
    "AHEAD_PARALLEL",
    "AHEAD_SECONDS",
    "Markers",
    "file_digest",
    "push_ahead",
    "push_with_ahead",
    "ready_files",
]

AHEAD_FILES = 16
AHEAD_PARALLEL = 4  # pushes at a time, the server's own included
AHEAD_SECONDS = 3.0


def ready_files(path: Path) -> list[Path]:
    """The WAL files the server has marked ready to archive beside ``path`` (its
    ``archive_status/*.ready``), in name order, without ``path`` itself."""
    status = path.parent / "archive_status"
    try:
        names = sorted(e.name[: -len(".ready")] for e in os.scandir(status) if e.name.endswith(".ready"))
    except OSError:
        return []
    return [path.parent / n for n in names if n != path.name and is_wal_name(n)]


async def push_ahead(
    repo: Repository, path: Path, markers: Markers, *, parallel: int = AHEAD_PARALLEL - 1
) -> tuple[str, ...]:
    """Store the files ready beside ``path`` (the caller holds the shared lock), ``parallel``
    at a time, and leave a marker for each as soon as its own manifest is durable. After a
    failure no further push starts (the server's own push of that file reports why); the
    ones under way finish and keep their markers, which name only what they stored.

    Each push writes through its own sibling of ``repo`` (own packer and index): a push
    flushes and, on failure, aborts only what it added itself."""
    ready = (await asyncio.to_thread(ready_files, path))[:AHEAD_FILES]
    deadline = time.monotonic() + AHEAD_SECONDS
    slots = asyncio.Semaphore(max(1, parallel))
    done: list[str] = []
    failed = False

    async def one(file: Path) -> None:
        nonlocal failed
        try:
            r = await push(repo.sibling(), file)
            await asyncio.to_thread(markers.record, r.name, r.size, r.sha256, r.identity)
            done.append(r.name)
        except (AxisorError, OSError):
            failed = True
        finally:
            slots.release()

    tasks: list[asyncio.Task] = []
    try:
        for file in ready:
            await slots.acquire()
            if failed or time.monotonic() > deadline:
                slots.release()
                break
            tasks.append(asyncio.create_task(one(file)))
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    await asyncio.to_thread(markers.expire)
    return tuple(sorted(done))


async def push_with_ahead(repo: Repository, path: Path, markers: Markers | None) -> PushResult:
    """The server's own push of ``path`` with the ready files beside it pushed ahead at the
    same time (``AHEAD_PARALLEL`` pushes in all). Returns once every push has ended: the
    server's file is durable when this returns, and its failure is raised (the ahead
    pushes are then cancelled: an unfinished one leaves no marker)."""
    if markers is None:
        return await push(repo, path)
    ahead = asyncio.ensure_future(push_ahead(repo, path, markers))
    try:
        result = await push(repo, path)
    except BaseException:
        ahead.cancel()
        await asyncio.gather(ahead, return_exceptions=True)
        raise
    return replace(result, pushed_ahead=await ahead)
