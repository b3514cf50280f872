"""The engine's front door: what the CLI, the console and the daemon call.

It builds storage and the repository from the config, owns the worker pool, and turns
each operation into one call. Front ends format results; they never open a backend,
a pack or a key file themselves.

``BackupService`` is the session every operation shares (session.py: config, worker pool,
the opened repository, read locks) with one short method per operation; each method hands
over to the module of its concern: backup.py, locations.py, catalog.py, restore.py,
maintenance.py (verify, prune, repair, forget), wal.py (PostgreSQL), keys.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.backup.archiver import ArchiveStats
from core.backup.run import BackupResult
from core.errors import AxisorError
from core.repository.lock import RemovedLock
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import Node
from core.restore.attributes import RestoreOptions
from core.restore.outcome import RestoreStats
from core.restore.progress import RestoreProgress
from core.service import backup as _backup
from core.service import catalog as _catalog
from core.service import keys as _keys
from core.service import locations as _locations
from core.service import maintenance as _maintenance
from core.service import restore as _restore
from core.service import wal as _wal
from core.service.keys import KeyInfo
from core.service.restore import RestoreOutcome
from core.service.session import PassphraseSource, Session
from core.verify import VerifyReport


class BackupService(Session):
    # -- repository (the rest of it: session.py) ------------------------------------------

    async def init(self, *, allow_weak: bool = False) -> Repository:
        return await _keys.init(self, allow_weak=allow_weak)

    # -- backup -------------------------------------------------------------------------

    async def backup(
        self,
        *,
        kind: str = "incremental",
        sources: list[str] | None = None,
        tags: tuple[str, ...] = (),
        on_progress: Callable[[str, ArchiveStats], None] | None = None,
        copy: bool = True,
        totals: dict | None = None,
    ) -> BackupResult:
        """``totals``: when given (an empty dict), filled with each file source's forecast
        for progress (core/backup/run.py: ``run_backup``)."""
        return await _backup.backup(
            self, kind=kind, sources=sources, tags=tags, on_progress=on_progress, copy=copy, totals=totals
        )

    # -- locations: copies, one catalog, monitoring (core/locations) -------------------

    async def use_location(self, name: str) -> None:
        """Serve every later call (resolve, restore, ls, verify...) from location ``name``."""
        await _locations.use_location(self, name)

    async def choose_location(self, refs: list[str], source: str | None = None, *, prefer: str | None = None):
        """Pick where a restore reads from (primary first; ``prefer`` alone when given), switch
        to it, and return the choice (core.locations.ops.RestoreChoice) with skipped locations."""
        return await _locations.choose_location(self, refs, source, prefer=prefer)

    async def copy(
        self, to: str, refs: list[str] | None = None, *, source: str | None = None, on_progress: Callable | None = None
    ):
        """Copy snapshots (default: all that ``to`` lacks) to location ``to`` (CopyResult)."""
        return await _locations.copy(self, to, refs, source=source, on_progress=on_progress)

    async def catch_up(self, targets: list[str] | None = None, *, on_progress: Callable | None = None):
        """Copy to every other location (or ``targets``) what it lacks; failures are results."""
        return await _locations.catch_up(self, targets, on_progress=on_progress)

    async def catalog(self):
        """Every snapshot once across all locations, with each copy's state (Catalog)."""
        return await _locations.catalog(self)

    async def locations(self):
        """Per location: reachability, latency, usage, growth, last write (LocationStatus list)."""
        return await _locations.locations(self)

    async def probe_reads(self, names: list[str] | None = None, budget: int | None = None):
        """Per location: measured latency and read throughput (ReadProbe list), for the RTO forecast."""
        return await _locations.probe_reads(self, names, budget)

    def location_names(self) -> list[str]:
        """Every configured location: the primary first, then storage.remote_storage."""
        return _locations.location_names(self)

    # -- catalog ------------------------------------------------------------------------

    async def snapshots(self) -> tuple[list[Snapshot], list[AxisorError]]:
        return await _catalog.snapshots(self)

    async def resolve(self, refs: list[str], source: str | None = None, *, load_index: bool = True) -> list[Snapshot]:
        """Snapshot references -> snapshots. Bare ``latest`` means the newest backup set."""
        return await _catalog.resolve(self, refs, source, load_index=load_index)

    async def ls(self, ref: str, path: str | None = None) -> list[tuple[str, Node]]:
        """Entries of the snapshot(s) ``ref`` names (``latest``: every source of the newest set)."""
        return await _catalog.ls(self, ref, path)

    # -- restore and verify -------------------------------------------------------------

    async def restore(self, snap: Snapshot, target: Path, include: tuple[str, ...] = ()) -> RestoreStats:
        outcome = await self.restore_files(snap, target, include=include)
        assert outcome.stats is not None
        return outcome.stats

    async def restore_files(self, snap: Snapshot, target: Path, **options) -> RestoreOutcome:
        return await _restore.restore_files(self, snap, target, **options)

    async def restore_many(
        self,
        snaps: list[Snapshot],
        target: Path,
        *,
        include: tuple[str, ...] = (),
        delete: bool = False,
        dry_run: bool = False,
        validate: bool = True,
        safety: bool = True,
        restore_id: str | None = None,
        options: RestoreOptions | None = None,
        on_progress: Callable[[RestoreProgress], None] | None = None,
    ) -> list[RestoreOutcome]:
        """Plan, safety-backup what would change, restore only what differs, validate
        (core/service/restore.py)."""
        return await _restore.restore_many(
            self,
            snaps,
            target,
            include=include,
            delete=delete,
            dry_run=dry_run,
            validate=validate,
            safety=safety,
            restore_id=restore_id,
            options=options,
            on_progress=on_progress,
        )

    async def rollback(self, restore_id: str) -> list[RestoreOutcome | object]:
        """Put back what restore ``restore_id`` changed, from its safety snapshots."""
        return await _restore.rollback(self, restore_id)

    async def plan_database_restore(
        self,
        snap: Snapshot,
        target_db: str,
        *,
        force: bool = False,
        tables: tuple[str, ...] = (),
        schemas: tuple[str, ...] = (),
        roles: bool = False,
    ) -> dict:
        """``restore --target-db --dry-run``: what the restore would do, changing nothing."""
        return await _restore.plan_database_restore(
            self, snap, target_db, force=force, tables=tables, schemas=schemas, roles=roles
        )

    async def restore_database(
        self,
        snap: Snapshot,
        target_db: str,
        *,
        force: bool = False,
        tables: tuple[str, ...] = (),
        schemas: tuple[str, ...] = (),
        restore_id: str | None = None,
        roles: bool = False,
    ):
        """Restore a logical database snapshot into ``target_db``, validated; ``force``
        replaces a non-empty database after a safety snapshot (core/service/restore.py)."""
        return await _restore.restore_database(
            self, snap, target_db, force=force, tables=tables, schemas=schemas, restore_id=restore_id, roles=roles
        )

    async def database_tables(self) -> list[str]:
        """The live database's user tables, as names.key strings (the wizard's table list for
        a table as of a time, when no logical snapshot lists them)."""
        from core.sources.postgres import names, table_copy
        from core.sources.postgres.connection import PgTarget

        return [names.key(s, n) for s, n in await table_copy.list_tables(PgTarget.from_config(self.config.database))]

    async def restore_table_at_time(self, at, tables: list[str], target_db: str, as_names: list[str], **kw):
        """A table as it was at ``at``, copied into ``target_db`` beside the live one
        (core/service/table_at_time.py)."""
        from core.service.table_at_time import restore_table_at_time

        return await restore_table_at_time(self, at, tables, target_db, as_names, **kw)

    async def restore_table_in_place(self, at, tables: list[str], target_db: str, **kw):
        """Tables put back in place in ``target_db`` as they were at ``at``, after a safety
        snapshot of them (core/service/table_in_place.py)."""
        from core.service.table_in_place import restore_table_in_place

        return await restore_table_in_place(self, at, tables, target_db, **kw)

    async def restore_database_pitr(
        self,
        target_time,
        target_dir: Path,
        *,
        config_path: Path,
        snapshot: Snapshot | None = None,
        start: bool = False,
        port: int | None = None,
        os_user: str | None = None,
        timeout: float = 900,
        on_phase: Callable[[str], None] | None = None,
        wal_from: str | None = None,
    ):
        """Point-in-time recovery into a new data directory (core.sources.postgres.pitr)."""
        return await _restore.restore_database_pitr(
            self,
            target_time,
            target_dir,
            config_path=config_path,
            snapshot=snapshot,
            start=start,
            port=port,
            os_user=os_user,
            timeout=timeout,
            on_phase=on_phase,
            wal_from=wal_from,
        )

    async def platform_plan(self, at):
        """(PlatformPlan, RecoveryWindow | None) for ``restore --platform`` (core/service/restore.py)."""
        return await _restore.platform_plan(self, at)

    async def recovery_window(self):
        return await _restore.recovery_window(self)

    async def verify(
        self, *, full: bool = False, snapshot_refs: list[str] | None = None, on_progress: Callable | None = None
    ) -> VerifyReport:
        return await _maintenance.verify(self, full=full, snapshot_refs=snapshot_refs, on_progress=on_progress)

    # -- the tripwire's pins (core/service/protection.py) -------------------------------

    async def pins(self):
        """The primary's pins and the ones that would not open (core.repository.pins)."""
        from core.service import protection

        return await protection.pins(self)

    async def acknowledge(self, refs: list[str], *, everything: bool = False):
        """Delete the named pins (or all): their snapshots go back to retention's rules."""
        from core.service import protection

        return await protection.acknowledge(self, refs, everything=everything)

    async def accept_rollback(self):
        """`acknowledge --rollback`: remember the primary's snapshots as they are now."""
        from core.service import protection

        return await protection.accept_rollback(self)

    # -- retention and prune ----------------------------------------------------------

    async def prune(self, *, dry_run: bool = False, now=None, on_progress=None, location: str | None = None):
        """Apply [retention] to one location (default: the primary) and remove its unused
        data (core.maintenance.prune.PruneReport). ``on_progress(phase, done, total)``;
        ``now`` (an aware datetime) is for tests and planning."""
        return await _maintenance.prune(self, dry_run=dry_run, now=now, on_progress=on_progress, location=location)

    async def reseal(self, *, on_progress=None, location: str | None = None):
        """`prune --rewrite` at one location (core.maintenance.reseal.ResealReport)."""
        return await _maintenance.reseal(self, on_progress=on_progress, location=location)

    async def repair_index(
        self,
        *,
        location: str | None = None,
        dry_run: bool = False,
        packs: list[str] | None = None,
        read_all: bool = False,
        on_progress=None,
    ):
        """`repair index` (``packs`` None, ``read_all`` False) or `repair packs` at one
        location: core.repair.index.rebuild (RebuildReport)."""
        return await _maintenance.repair_index(
            self, location=location, dry_run=dry_run, packs=packs, read_all=read_all, on_progress=on_progress
        )

    async def repair_snapshots(
        self,
        refs: list[str] | None = None,
        *,
        location: str | None = None,
        dry_run: bool = False,
        truncate: bool = False,
        on_progress=None,
    ):
        """`repair snapshots` at one location (core.repair.snapshots.SnapshotRepairReport)."""
        return await _maintenance.repair_snapshots(
            self, refs, location=location, dry_run=dry_run, truncate=truncate, on_progress=on_progress
        )

    async def forget(self, refs: list[str]) -> list[str]:
        """Delete the named snapshot manifests (ids or unique prefixes); prune frees their data."""
        return await _maintenance.forget(self, refs)

    # -- PostgreSQL WAL archiving ------------------------------------------------------

    async def wal_push(self, path: Path):
        """archive_command: store one WAL file; durable when this returns (PushResult)."""
        return await _wal.wal_push(self, path)

    async def wal_fetch(self, name: str, dest: Path) -> int:
        """restore_command: write WAL file ``name`` to ``dest``; WalNotFound when it is not archived."""
        return await _wal.wal_fetch(self, name, dest)

    async def wal_follow(self, name: str, dest: Path, lock_fd: int | None) -> int:
        """`wal-fetch --ahead`: keep the prefetch spool beside ``dest`` full while recovery
        asks (core/sources/postgres/wal_follow.py); the segments fetched."""
        return await _wal.wal_follow(self, name, dest, lock_fd)

    async def database_archiving(
        self, config_path: Path, *, setup: bool = False, key_file: Path | None = None, owner: str | None = None
    ):
        return await _wal.database_archiving(self, config_path, setup=setup, key_file=key_file, owner=owner)

    async def database_check(self, config_path: Path, *, wait: bool = True):
        """`database check`: a CheckReport (core/sources/postgres/dbcheck.py); needs no passphrase."""
        return await _wal.database_check(self, config_path, wait=wait)

    async def database_restore_problems(self) -> list[str]:
        """What stops a database restore before it starts (the restore wizard's first step)."""
        return await _wal.database_restore_problems(self)

    async def database_status(self) -> dict:
        return await _wal.database_status(self)

    # -- keys and locks -----------------------------------------------------------------

    async def keys(self) -> list[KeyInfo]:
        return await _keys.keys(self)

    async def add_key(self, new_passphrase: str, *, allow_weak: bool = False, write_only: bool = False) -> KeyInfo:
        return await _keys.add_key(self, new_passphrase, allow_weak=allow_weak, write_only=write_only)

    async def remove_key(self, key_id: str) -> None:
        await _keys.remove_key(self, key_id)

    async def escrow(self, threshold: int, shares: int) -> list:
        """Shamir shares of the master key (core/repository/escrow.py)."""
        return await _keys.escrow(self, threshold, shares)

    async def recover(self, share_texts: list[str], new_passphrase: str | None, *, allow_weak: bool = False):
        """From escrow shares: proved against the config; a key file for ``new_passphrase``."""
        return await _keys.recover(self, share_texts, new_passphrase, allow_weak=allow_weak)

    async def change_passphrase(self, new_passphrase: str, *, allow_weak: bool = False) -> KeyInfo:
        """Add a key for the new passphrase, then remove the one in use. The master key stays
        the same (rotating it re-encrypts everything; a different operation)."""
        return await _keys.change_passphrase(self, new_passphrase, allow_weak=allow_weak)

    async def rotate_key(self) -> _keys.RotateResult:
        """A new encryption key from now on, the old one retired (`key rotate`)."""
        return await _keys.rotate(self)

    async def unlock(self, *, remove_all: bool = False) -> list[RemovedLock]:
        """Remove the stale locks (every lock with ``remove_all``), each with why it was stale."""
        return await _keys.unlock(self, remove_all=remove_all)


__all__ = ["BackupService", "KeyInfo", "PassphraseSource", "RestoreOutcome", "Session", "Snapshot"]
