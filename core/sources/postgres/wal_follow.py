"""The prefetch follower: keeps the spool's window full while recovery replays.

The quick wal-fetch (app/wal_fetch_quick.py) hands spooled segments over without the
program's imports, so nothing of the program runs between top-ups any more. It starts this
follower (``wal-fetch --ahead NAME PATH``, in the background, holding the spool's lock:
wal_spool.py) whenever none runs: the repository opened and its index loaded once, then,
for as long as recovery keeps asking, the window after the segment it asked for last
(``.asked``) is fetched ahead (wal_prefetch.prefetch: checked against each manifest, four at
a time), so replay finds the next segments spooled instead of waiting on storage.

It stops when recovery has not asked for anything new for ``FOLLOW_IDLE`` (replay ended or
paused: the next quick wal-fetch starts another), when the archive holds nothing after what
is spooled and nothing is spooled (the next wal-fetch runs in full, as at the start), when
its lock file is removed (the end of a point-in-time restore: wal_spool.stop_follower) or
the spool folder is gone; leaving, it removes the folder if nothing is spooled. What it
fetches is never an error: a segment it cannot fetch is fetched, and reported, by that
segment's own wal-fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from core.repository.repository import Repository
from core.sources.postgres import wal_spool
from core.sources.postgres.wal_prefetch import Spool, prefetch, window

FOLLOW_IDLE = 20.0  # s without a new segment asked for: replay is over (or paused)
FOLLOW_POLL = 0.05  # s between looks at the spool when the window is full
FOLLOW_BACKOFF = 0.5  # s after a round that fetched nothing (the archive's end): no lock per poll


async def follow(
    repo: Repository,
    spool: Spool,
    name: str,
    segment_size: int,
    lock_fd: int,
    read_lock: Callable[[], AbstractAsyncContextManager[None]],
    *,
    idle: float = FOLLOW_IDLE,
    poll: float = FOLLOW_POLL,
) -> int:
    """Keep the window after the segment asked for last spooled until one of the stops
    above; the number of segments fetched. The index is loaded; ``read_lock()`` is held
    around each round that fetches (none while the window is full). The caller tidies the
    folder after (wal_spool.tidy), whatever ended this."""
    asked, since, fetched = name, time.monotonic(), 0
    while await asyncio.to_thread(_still_wanted, spool.folder, lock_fd):
        now = await asyncio.to_thread(wal_spool.read_asked, spool.folder) or asked
        if now != asked:
            asked, since = now, time.monotonic()
        elif time.monotonic() - since > idle:
            break
        await asyncio.to_thread(spool.sweep, asked, segment_size)
        wait = poll
        if await asyncio.to_thread(_short, spool, asked, segment_size):
            async with read_lock():
                got = await prefetch(
                    repo, asked, segment_size, spool, make=False, asked=lambda: wal_spool.read_asked(spool.folder)
                )
            fetched += len(got)
            if got:
                continue
            if not await asyncio.to_thread(wal_spool.segments, spool.folder):
                break  # the archive's end and nothing spooled: the next wal-fetch runs in full
            wait = max(poll, FOLLOW_BACKOFF)
        await asyncio.sleep(wait)
    return fetched


def _still_wanted(folder: Path, lock_fd: int) -> bool:
    return folder.is_dir() and wal_spool.holds_lock(folder, lock_fd)


def _short(spool: Spool, asked: str, segment_size: int) -> bool:
    """Any segment of the window not spooled yet (the follower fills it whole, where a
    wal-fetch of its own tops up at half)."""
    return not set(window(asked, segment_size)) <= spool.names()
