"""What every operation of the service shares: the config, the worker pool, the storage
and the opened repository (at the primary or the location a restore reads from), the
repository locks around reads, and reading without one when there can be none.

BackupService (core/service/__init__.py) is a Session with one method per operation; the
operations themselves (the other modules here) are functions taking the Session.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core.backup import watchdog
from core.crypto import WriteOnly
from core.config import Config
from core.errors import AxisorError, LockUnreadable, StorageFull
from core.repository.lock import Lock
from core.repository.repository import Repository
from core.statedir import resolve_state_dir
from core.storage.backend import Backend, StorageReadOnly
from core.storage.factory import as_local, open_primary

if TYPE_CHECKING:  # built lazily (location_ops): the import is for the annotation only
    from core.locations.ops import LocationOps
    from core.repository.keycache import KeyMemory

PassphraseSource = Callable[[bool], str]  # confirm -> passphrase


class Session:
    def __init__(
        self,
        config: Config,
        passphrase: PassphraseSource,
        *,
        workers: int | None = None,
        no_lock: bool = False,
        on_note: Callable[[str], None] | None = None,
        state_dir: Path | None = None,
        key_memory: KeyMemory | None = None,
    ) -> None:
        self.config = config
        # The daemon's: a key derived by an earlier job opens the repository again without
        # scrypt (core/repository/keycache.py); None elsewhere (one open per process).
        self.key_memory = key_memory
        # The host's state folder (markers, cached key, monitor samples): passed in by the
        # engine or the front end; the one rule when not (core/statedir.py).
        self.state_dir = state_dir if state_dir is not None else resolve_state_dir(config)
        # Reading without a repository lock: on request (--no-lock), or from the first time
        # the storage refused to take one (read-only, full); writers never read this.
        self.no_lock = no_lock
        self.lockless_reason: str | None = None
        self.lockless_full = False  # ... because the storage is full (exit 10), not read-only (24)
        self.lockless_lock: LockUnreadable | None = None  # ... because a lock cannot be read (exit 5)
        self._on_note = on_note
        self._noted = False
        self._passphrase = passphrase
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="axisor-cpu")
        self.backend: Backend = open_primary(config.storage)
        self._repo: Repository | None = None
        self._primary = self.backend  # `backend` may be switched to another location (restore --from)
        self._location_ops: LocationOps | None = None  # built on first use
        self.index_damage: list[AxisorError] = []  # damaged index files skipped by repository()
        self.location = "local"  # the location `backend` reads (core.locations.sites.PRIMARY_NAME)

    async def close(self) -> None:
        if self._location_ops is not None:
            await self._location_ops.sites.close()  # every location but the primary
        await self._primary.close()
        if self._repo is not None and self._repo.own is not None:
            self._repo.own.close()
        # A read the backup watchdog gave up on may never return: do not wait for it.
        stuck = watchdog.abandoned()
        self.executor.shutdown(wait=not stuck, cancel_futures=stuck)

    @property
    def primary(self) -> Backend:
        """The primary location's storage (``backend`` may have been switched away from it)."""
        return self._primary

    @property
    def opened(self) -> bool:
        """The repository has been opened (its passphrase asked for and its key derived)."""
        return self._repo is not None

    def passphrase(self, confirm: bool) -> str:
        return self._passphrase(confirm)

    def note(self, text: str) -> None:
        """Tell the front end (a note or a warning line); nothing without one."""
        if self._on_note is not None:
            self._on_note(text)

    async def repository(
        self, *, load_index: bool = True, key_cache_dir: Path | None = None, writer: bool = False
    ) -> Repository:
        """The opened repository; with ``load_index`` its index loaded. A damaged index file
        is skipped and kept in ``index_damage`` (front ends warn; `repair index` fixes it):
        reading what the other index files name must not depend on it.

        ``writer``: the operation only adds (backup, wal-push), which a write-only key may
        do. Every other operation is refused to such a key here, by default, with exit 27
        (the repository's reads refuse it too: this is the one place that says so first)."""
        if self._repo is None:
            self.adopt(
                await Repository.open(
                    self.backend, self._passphrase(False), key_cache_dir=key_cache_dir, key_memory=self.key_memory
                )
            )
        assert self._repo is not None
        if self._repo.write_only and not writer:
            raise WriteOnly("it may not do this")
        if load_index:
            # Under a shared lock: prune (exclusive) deletes index files it has replaced, and a
            # listing taken while it runs would name files that are gone a moment later.
            async with self.read_lock("read"):
                self.index_damage.extend(await self._repo.load_index(strict=False))
        assert self._repo is not None
        return self._repo

    def adopt(self, repo: Repository) -> Repository:
        """Make ``repo`` the one this session reads and writes, with its pool and compression."""
        self.prepare(repo)
        repo.index_cache_dir = self.state_dir / "index-cache"  # a large repository's index table
        if repo.write_only and repo.own is None:
            from core.repository.own_cache import OwnCache

            # What this host wrote, so its next backup compares instead of reading everything.
            repo.own = OwnCache(self.state_dir / "writer-cache", repo.config.id)
        self._repo = repo
        return repo

    def prepare(self, repo: Repository) -> None:
        """This session's worker pool and compression for a repository it opened."""
        repo.executor = self.executor
        repo.compression_level = self.config.storage.compression_level if self.config.storage.compression else 0

    def use(self, repo: Repository, backend: Backend, location: str) -> None:
        """Serve every later call from ``repo`` on ``backend`` at ``location``."""
        self._repo = repo
        self.backend = backend
        self.location = location

    @property
    def lockless(self) -> bool:
        """Reads go on without a repository lock (--no-lock, or the storage refused one)."""
        return self.no_lock or self.lockless_reason is not None

    @asynccontextmanager
    async def read_lock(self, operation: str) -> AsyncIterator[None]:
        """A shared lock around a read; none with --no-lock, and none (with one note) when the
        storage refuses to store one: a read-only mount or medium, an immutable locks/
        folder, a full disk. Reading then creates nothing in the repository."""
        lock = await self.try_lock(self.backend, operation)
        try:
            yield
        finally:
            if lock is not None:
                await lock.release()

    async def try_lock(self, backend: Backend, operation: str) -> Lock | None:
        """A shared lock on ``backend``, or None (noted once) when reading goes on without."""
        if not self.lockless:
            lock = Lock(backend, exclusive=False, operation=operation)
            try:
                return await lock.acquire()
            except (StorageReadOnly, StorageFull) as exc:
                why = exc.reason if isinstance(exc, StorageReadOnly) else "no space left"
                self.lockless_reason = f"{why}: {backend.location}"
                self.lockless_full = isinstance(exc, StorageFull)
            except LockUnreadable as exc:
                # Perhaps another user's live lock, perhaps a leftover: a reader cannot tell
                # whether it conflicts, and reads on without a lock rather than stop.
                self.lockless_reason = f"the lock {exc.key} at {exc.location} {exc.reason}"
                self.lockless_lock = exc
        self._note_lockless()
        return None

    def _note_lockless(self) -> None:
        if self._noted:
            return
        self._noted = True
        if self.no_lock:
            text = "note: no lock taken (--no-lock): a prune or repair running meanwhile could remove what this reads"
        elif self.lockless_lock is not None:
            text = (
                f"note: no lock taken: {self.lockless_reason} (another user's lock?); reading without "
                "one, nothing is created in the repository; a prune or repair running meanwhile could "
                "remove what this reads"
            )
        else:
            text = (
                f"note: no lock taken because the storage refuses writes ({self.lockless_reason}); "
                "reading without one, nothing is created in the repository"
            )
        self.note(text)

    def other_user_warning(self, doing: str) -> str | None:
        """A warning when this process runs as another OS user than the one owning the local
        repository (core/storage/owner.py); None when they are the same."""
        local = as_local(self._primary)
        if local is None:
            return None
        from core.storage.owner import other_user_warning

        return other_user_warning(local.root, doing)

    def location_ops(self) -> LocationOps:
        """The locations of this config (core.locations.ops.LocationOps), built on first use."""
        from core.locations.monitor import MonitorState, state_file
        from core.locations.ops import LocationOps
        from core.locations.sites import PRIMARY_NAME, Sites

        if self._location_ops is None:
            self._location_ops = LocationOps(
                Sites(self.config, self._primary, self._passphrase, self.prepare),
                MonitorState(state_file(self.state_dir)),
            )
        if self._repo is not None and self.backend is self._primary:
            self._location_ops.sites.adopt(PRIMARY_NAME, self._repo)  # one scrypt per process
        return self._location_ops

    async def location_repo(self, location: str | None) -> Repository:
        """The repository at ``location`` (default: the primary), opened once per process."""
        from core.storage.factory import PRIMARY_NAME

        if location in (None, PRIMARY_NAME) and self.backend is self._primary:
            return await self.repository(load_index=False)
        return await self.location_ops().sites.repository(location or PRIMARY_NAME)


__all__ = ["PassphraseSource", "Session"]
