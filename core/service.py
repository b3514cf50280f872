"""The engine's front door: what the CLI (and later the console and daemon) call.

It builds storage and the repository from the config, owns the worker pool, and turns
each operation into one call. Front ends format results; they never open a backend,
a pack or a key file themselves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from core.backup.archiver import ArchiveStats
from core.backup.run import BackupResult, run_backup
from core.config import Config
from core.errors import AxisorError, SnapshotNotFound, UsageError
from core.repository import keys as keyfiles
from core.repository.lock import Lock, LockInfo, remove_stale
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import Node
from core.restore.files import FileRestorer, RestoreStats
from core.restore.walk import display, walk
from core.storage.backend import Backend
from core.storage.local import LocalBackend
from core.verify import VerifyReport, verify

PassphraseSource = Callable[[bool], str]  # confirm -> passphrase


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    created: str
    host: str
    user: str
    current: bool


class BackupService:
    def __init__(self, config: Config, passphrase: PassphraseSource, *, workers: int | None = None) -> None:
        self.config = config
        self._passphrase = passphrase
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="axisor-cpu")
        self.backend: Backend = LocalBackend(config.storage.local_path)
        self._repo: Repository | None = None

    async def close(self) -> None:
        await self.backend.close()
        self.executor.shutdown(wait=True)

    # -- repository ---------------------------------------------------------------------

    async def init(self) -> Repository:
        passphrase = self._passphrase(True)
        repo = await Repository.create(
            self.backend, passphrase, pack_size=self.config.storage.pack_size_mib * 1024 * 1024
        )
        return self._adopt(repo)

    async def repository(self, *, load_index: bool = True) -> Repository:
        """The opened repository; with ``load_index`` a damaged index file is an error."""
        if self._repo is None:
            self._adopt(await Repository.open(self.backend, self._passphrase(False)))
        assert self._repo is not None
        if load_index:
            await self._repo.load_index()
        assert self._repo is not None
        return self._repo

    def _adopt(self, repo: Repository) -> Repository:
        repo.executor = self.executor
        repo.compression_level = self.config.storage.compression_level if self.config.storage.compression else 0
        self._repo = repo
        return repo

    # -- backup -------------------------------------------------------------------------

    async def backup(self, *, kind: str = "incremental", sources: list[str] | None = None,
                     tags: tuple[str, ...] = (),
                     on_progress: Callable[[str, ArchiveStats], None] | None = None) -> BackupResult:
        specs = list(self.config.sources())
        database = self.config.database if self.config.database.enabled else None
        if not specs and database is None:
            raise UsageError("no sources are configured: list paths under [application] or [configuration], "
                             "or set [database] enabled = true")
        if sources:
            known = {s.name: s for s in specs}
            short = {s.name.split("/", 1)[1]: s for s in specs}
            chosen = []
            want_database = False
            for name in sources:
                if name == "database":
                    if database is None:
                        raise UsageError("the database source is not enabled: set [database] enabled = true")
                    want_database = True
                    continue
                spec = known.get(name) or short.get(name)
                if spec is None:
                    if name in ("application", "configuration"):
                        chosen.extend(s for s in specs if s.category == name)
                        continue
                    raise UsageError(
                        f"unknown source {name!r}; configured: {', '.join(sorted(known))}"
                    )
                chosen.append(spec)
            specs = chosen
            database = database if want_database else None
        repo = await self.repository()
        return await run_backup(repo, specs, kind=kind, tags=tags, workers=self.workers,
                                on_progress=on_progress, database=database)

    # -- catalog ------------------------------------------------------------------------

    async def snapshots(self) -> tuple[list[Snapshot], list[AxisorError]]:
        repo = await self.repository()
        snaps, damaged = await repo.list_snapshots()
        return snaps, list(damaged)

    async def resolve(self, refs: list[str], source: str | None = None, *,
                      load_index: bool = True) -> list[Snapshot]:
        """Snapshot references -> snapshots. Bare ``latest`` means the newest backup set."""
        repo = await self.repository(load_index=load_index)
        out: list[Snapshot] = []
        for ref in refs:
            if ref == "latest" and source is None:
                snaps, _ = await repo.list_snapshots()
                if not snaps:
                    raise SnapshotNotFound(f"no snapshots in {self.backend.location}")
                newest_set = snaps[-1].backup_set
                out.extend(s for s in snaps if s.backup_set == newest_set)
            else:
                out.append(await repo.find_snapshot(ref, source))
        return out

    async def ls(self, ref: str, path: str | None = None) -> list[tuple[str, Node]]:
        """Entries of the snapshot(s) ``ref`` names (``latest``: every source of the newest set)."""
        repo = await self.repository()
        want = "/" + path.strip("/") if path and path.strip("/") else None
        out = []
        for snap in await self.resolve([ref]):
            async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
                shown = display(parts)
                if want is None or shown == want or shown.startswith(want + "/"):
                    out.append((shown, node))
        if want is not None and not out:
            raise SnapshotNotFound(f"{path} is not in snapshot {ref}")
        return out

    # -- restore and verify -------------------------------------------------------------

    async def restore(self, snap: Snapshot, target: Path, include: tuple[str, ...] = ()) -> RestoreStats:
        repo = await self.repository()
        async with Lock(self.backend, exclusive=False, operation="restore"):
            await repo.load_index()
            return await FileRestorer(repo, target, include=include, executor=self.executor).restore(snap)

    async def restore_database(self, snap: Snapshot, target_db: str, *, force: bool = False,
                               tables: tuple[str, ...] = (), schemas: tuple[str, ...] = ()):
        """Restore a logical database snapshot (or only ``tables``/``schemas`` of it) into
        ``target_db`` (a URL, conninfo, or a database name on the configured server) and
        validate its row counts and checksums; returns the report. ``force`` replaces a
        non-empty database after committing a safety snapshot of it."""
        from core.sources.postgres.connection import PgTarget
        from core.sources.postgres.logical import restore_logical

        if (snap.metadata or {}).get("mode") == "physical":
            raise UsageError(f"snapshot {snap.short_id} is a physical base backup: restore it with "
                             "--to-time TIMESTAMP --target-dir DIR (point-in-time recovery), not --target-db")
        fallback = PgTarget.from_config(self.config.database)
        target = PgTarget.from_url(target_db, fallback)
        repo = await self.repository()
        async with Lock(self.backend, exclusive=False, operation="restore"):
            await repo.load_index()
            return await restore_logical(repo, snap, target, pg_bin_dir=self.config.database.pg_bin_dir,
                                         force=force, tables=tables, schemas=schemas,
                                         db=self.config.database)

    async def restore_database_pitr(self, target_time, target_dir: Path, *, config_path: Path,
                                    snapshot: Snapshot | None = None, start: bool = False,
                                    port: int | None = None, os_user: str | None = None,
                                    timeout: float = 900, on_phase: Callable[[str], None] | None = None):
        """Point-in-time recovery into a new data directory (core.sources.postgres.pitr)."""
        from core.sources.postgres.pitr import restore_pitr

        repo = await self.repository(load_index=False)
        async with Lock(self.backend, exclusive=False, operation="restore"):
            await repo.load_index()
            return await restore_pitr(repo, self.config, target_time, target_dir, config_path=config_path,
                                      snapshot=snapshot, start=start, port=port, os_user=os_user,
                                      timeout=timeout, on_phase=on_phase)

    async def recovery_window(self):
        from core.sources.postgres.pitr import recovery_window

        return await recovery_window(await self.repository(load_index=False))

    async def verify(self, *, full: bool = False, snapshot_refs: list[str] | None = None) -> VerifyReport:
        # Verify must open a repository whose index is damaged, to report it.
        repo = await self.repository(load_index=False)
        ids: list[str] | None = None
        if snapshot_refs:
            # Resolve names without opening manifests: a damaged one is for verify to report.
            ids = []
            for ref in snapshot_refs:
                if ref.startswith("latest"):
                    ids.extend(s.id for s in await self.resolve([ref], load_index=False))
                else:
                    ids.append(await repo.resolve_id(ref))
        async with Lock(self.backend, exclusive=False, operation="verify"):
            return await verify(repo, full=full, snapshot_ids=ids)

    # -- PostgreSQL WAL archiving ------------------------------------------------------

    async def wal_push(self, path: Path):
        """archive_command: store one WAL file; durable when this returns (PushResult)."""
        from core.sources.postgres.wal import push

        repo = await self.repository(load_index=False)
        async with Lock(self.backend, exclusive=False, operation="wal-push"):
            return await push(repo, path)

    async def wal_fetch(self, name: str, dest: Path) -> int:
        """restore_command: write WAL file ``name`` to ``dest``; WalNotFound when it is not archived."""
        from core.sources.postgres.wal import WalNotFound, fetch, is_wal_name, load_manifest

        repo = await self.repository(load_index=False)
        if not is_wal_name(name) or await load_manifest(repo, name) is None:
            raise WalNotFound(f"WAL file {name} is not in the repository")  # before the index: a cheap miss
        async with Lock(self.backend, exclusive=False, operation="wal-fetch"):
            await repo.load_index()
            return await fetch(repo, name, dest)

    async def database_archiving(self, config_path: Path):
        from core.sources.postgres.archiving import check_archiving
        from core.sources.postgres.connection import PgTarget

        return await check_archiving(PgTarget.from_config(self.config.database), config_path)

    async def database_status(self) -> dict:
        from core.sources.postgres.archiving import archive_status
        from core.sources.postgres.connection import PgTarget

        repo = await self.repository(load_index=False)
        db = self.config.database
        target = PgTarget.from_config(db) if (db.enabled or db.url or db.host) else None
        return await archive_status(repo, target)

    # -- keys and locks -----------------------------------------------------------------

    async def keys(self) -> list[KeyInfo]:
        repo = await self.repository()
        current = repo.key.id if repo.key else ""
        return [KeyInfo(k.id, k.created, k.host, k.user, k.id == current)
                for k in await keyfiles.list_keys(self.backend)]

    async def add_key(self, new_passphrase: str) -> KeyInfo:
        repo = await self.repository()
        master = _master_of(repo)
        key = await asyncio.to_thread(keyfiles.wrap, master, new_passphrase)
        await keyfiles.store_key(self.backend, key)
        return KeyInfo(key.id, key.created, key.host, key.user, False)

    async def remove_key(self, key_id: str) -> None:
        repo = await self.repository()
        matches = [k for k in await keyfiles.list_keys(self.backend) if k.id.startswith(key_id)]
        if len(matches) != 1:
            raise UsageError(f"key id {key_id!r} matches {len(matches)} keys; give a unique prefix")
        if repo.key and matches[0].id == repo.key.id:
            raise UsageError("refusing to remove the key in use; open with another passphrase first")
        async with Lock(self.backend, exclusive=True, operation="key remove"):
            await self.backend.delete(f"keys/{matches[0].id}")

    async def change_passphrase(self, new_passphrase: str) -> KeyInfo:
        """Add a key for the new passphrase, then remove the one in use."""
        repo = await self.repository()
        old = repo.key
        info = await self.add_key(new_passphrase)
        if old:
            async with Lock(self.backend, exclusive=True, operation="key passwd"):
                await self.backend.delete(f"keys/{old.id}")
        return info

    async def unlock(self, *, remove_all: bool = False) -> list[LockInfo]:
        await self.repository()  # only someone holding a passphrase may clear locks
        return await remove_stale(self.backend, all_locks=remove_all)


def _master_of(repo: Repository):
    if repo.key is None:
        raise AxisorError("repository was opened without a key file")
    return repo.master


__all__ = ["BackupService", "KeyInfo", "PassphraseSource"]
