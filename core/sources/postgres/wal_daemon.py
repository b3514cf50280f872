"""WAL pushes through the running daemon: the repository stays open and the ready files
are stored ahead continuously, while the server's archiver works through them.

Without a daemon, a wal-push that stores the files ready beside it (wal_ahead.py) makes the
archiver wait until all of them are durable, and stores nothing while the archiver then
works through their markers. With one, the wal-push client (app/wal_quick.py) hands its file
to the daemon (op ``wal_push`` on its socket) and returns as soon as *that* file is durable;
the daemon goes on storing the next ready files, ``AHEAD_PARALLEL`` at a time and up to
``AHEAD_FILES`` beyond the oldest one not archived yet, topping up after each, and leaves a
marker for each once durable: storing overlaps the archiver's next runs.

A file asked for while its push ahead is under way waits for that push, not for another.
The pushes hold one shared repository lock while any runs, and each writes through its own
sibling of the repository (wal_ahead.py); a marker is written only after its file's manifest is durable, as
before. The client names the repository (its id, from the route of app/wal_quick.py): a
daemon serving another one refuses (``WalElsewhere``), and the client then runs the full
push itself, as it does when no daemon answers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

from core.errors import UsageError
from core.repository.lock import Lock
from core.repository.repository import Repository
from core.sources.postgres.wal import PushResult, is_wal_name, push
from core.sources.postgres.wal_ahead import AHEAD_FILES, AHEAD_PARALLEL, ready_files
from core.sources.postgres.wal_markers import Markers

log = logging.getLogger("axisor.wal")
STORED_KEPT = 4096


class WalElsewhere(UsageError):
    """The client archives into another repository than this daemon's: it pushes itself."""


class WalPusher:
    def __init__(self, open_repository: Callable[[], Awaitable[Repository]], state_dir: Path) -> None:
        self._open = open_repository
        self._state_dir = state_dir
        self._repo: Repository | None = None
        self._slots = asyncio.Semaphore(AHEAD_PARALLEL)
        self._running: dict[str, asyncio.Task[PushResult]] = {}
        self._asked: set[str] = set()  # files the server asked for while their push ran: no marker needed
        self._guard = asyncio.Lock()
        self._holders = 0
        self._lock: Lock | None = None
        # Stored by this daemon (not pushed ahead again), and failed ahead (left to the
        # server's own request, which reports why): bounded, most recent kept.
        self._stored: OrderedDict[str, None] = OrderedDict()
        self._failed: set[str] = set()
        self._closed = False

    async def _repository(self, repository_id: str) -> Repository:
        if self._repo is None:
            self._repo = await self._open()
        if self._repo.config.id != repository_id:
            raise WalElsewhere(
                f"this daemon archives into repository {self._repo.config.id[:12]}, not {repository_id[:12]}"
            )
        return self._repo

    async def push(self, path: Path, repository_id: str) -> PushResult:
        """Store ``path`` (the server's own request) and start pushes of the files ready
        beside it; returns once ``path`` is durable."""
        if not path.is_absolute() or not is_wal_name(path.name):
            raise UsageError(f"wal-push through the daemon: {str(path)!r} is not an absolute WAL file path")
        repo = await self._repository(repository_id)
        markers = await asyncio.to_thread(Markers.open, self._state_dir, repository_id)
        self._failed.discard(path.name)
        own = self._start(repo, path, markers)
        self._asked.add(path.name)
        await self._ahead(repo, path, markers)
        try:
            return await asyncio.shield(own)
        finally:
            self._asked.discard(path.name)

    async def _ahead(self, repo: Repository, near: Path, markers: Markers | None) -> None:
        """Start pushes of the first ``AHEAD_FILES`` ready files not stored yet. Called on each
        request and after each push ahead, so storing goes on while the archiver works
        through the markers, as far as the server has files ready."""
        for file in (await asyncio.to_thread(ready_files, near))[:AHEAD_FILES]:
            if self._closed:
                return
            if file.name not in self._stored and file.name not in self._failed:
                self._start(repo, file, markers)

    def _start(self, repo: Repository, file: Path, markers: Markers | None) -> asyncio.Task[PushResult]:
        task = self._running.get(file.name)
        if task is None:
            task = asyncio.create_task(self._one(repo, file, markers))
            self._running[file.name] = task
            task.add_done_callback(functools.partial(self._done, file.name))
        return task

    def _done(self, name: str, task: asyncio.Task[PushResult]) -> None:
        if self._running.get(name) is task:
            del self._running[name]
        if not task.cancelled() and task.exception() is not None:
            self._failed.add(name)
            if name not in self._asked:
                # A push ahead that failed: the server's own request for the file reports why.
                log.info("push ahead failed", extra={"wal": name, "error": str(task.exception())})

    async def _one(self, repo: Repository, file: Path, markers: Markers | None) -> PushResult:
        async with self._slots:
            await self._hold(repo)
            try:
                result = await push(repo.sibling(), file)
            finally:
                await self._let_go()
            if markers is not None and file.name not in self._asked:
                await asyncio.to_thread(markers.record, result.name, result.size, result.sha256, result.identity)
        self._stored[file.name] = None
        while len(self._stored) > STORED_KEPT:
            self._stored.popitem(last=False)
        await self._ahead(repo, file, markers)
        return result

    async def _hold(self, repo: Repository) -> None:
        """One shared lock while any push runs (not one per push: taking and releasing
        locks side by side in one process raced in the local backend's listing), none
        while idle, so an exclusive operation (prune) can run between bursts."""
        async with self._guard:
            if self._holders == 0:
                self._lock = await Lock(repo.backend, exclusive=False, operation="wal-push").acquire()
            self._holders += 1

    async def _let_go(self) -> None:
        async with self._guard:
            self._holders -= 1
            if self._holders == 0 and self._lock is not None:
                lock, self._lock = self._lock, None
                await lock.release()

    async def close(self) -> None:
        """Cancel the pushes under way (an unfinished one leaves no marker and no manifest)."""
        self._closed = True
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def push_reply(r: PushResult) -> dict:
    return {"name": r.name, "size": r.size, "already_archived": r.already, "sha256": r.sha256, "pid": os.getpid()}
