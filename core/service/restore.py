"""Restores: files into a folder (planned, safety-backed-up, validated), a logical
database into a database, point-in-time recovery; putting a restore back (rollback)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import AxisorError, LockUnreadable, RestoreRefused, SnapshotNotFound, StorageFull, UsageError
from core.repository.snapshot import Snapshot
from core.restore.attributes import RestoreOptions
from core.restore.files import FileRestorer
from core.restore.outcome import RestoreStats
from core.restore.plan import RestorePlan
from core.restore.progress import RestoreMeter, RestoreProgress
from core.restore.validate import ValidationResult
from core.service.catalog import snapshots
from core.service.session import Session
from core.storage.backend import StorageReadOnly
from core.text import shown


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    restore_id: str
    snapshot: Snapshot
    plan: RestorePlan
    stats: RestoreStats | None = None  # None: a dry run
    safety_snapshot: Snapshot | None = None
    validation: ValidationResult | None = None
    location: str = "local"  # where the restore read from
    notes: tuple[str, ...] = ()  # locations that could not be searched for intact copies
    durable: bool = False  # flushed to disk before success was reported (not with --no-fsync)

    @property
    def ok(self) -> bool:
        return self.validation is None or self.validation.ok

    @property
    def partial(self) -> list:
        """Files not restored in full (core.restore.outcome.PartialFile)."""
        return self.stats.partial if self.stats is not None else []

    def as_dict(self, *, changes: bool = False) -> dict:
        """The outcome for --json and job records; ``changes``: every path the plan would
        touch (all but the unchanged ones)."""
        d: dict = {
            "snapshot": self.snapshot.id,
            "source": self.snapshot.source,
            "plan": self.plan.counts(),
            "safety_snapshot": self.safety_snapshot.id if self.safety_snapshot else None,
            "validation": self.validation.as_dict() if self.validation else None,
            "location": self.location,
        }
        if changes:
            d["changes"] = [
                {"path": str(c.path), "action": c.action, "kind": c.kind, "reason": c.reason}
                for c in self.plan.changes
                if c.action != "unchanged"
            ]
        if self.stats is not None:
            st = self.stats
            d.update(
                files=st.files,
                dirs=st.dirs,
                symlinks=st.symlinks,
                hardlinks=st.hardlinks,
                special=st.special,
                bytes=st.bytes,
                unchanged=st.unchanged,
                metadata=st.metadata,
                removed=st.removed,
                warnings=st.warnings_listed(),
                warning_count=st.warning_count,
                privileges_stripped=st.stripped_listed(),
                privileges_stripped_count=st.stripped_count,
                partial=[p.as_dict() for p in st.partial],
                partial_count=st.partial_count,
                partial_cleared=st.partial_cleared,
                notes=list(self.notes),
                durable=self.durable,
            )
        return d


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    created: str
    host: str
    user: str
    current: bool


async def restore_files(session: Session, snap: Snapshot, target: Path, **options) -> RestoreOutcome:
    return (await restore_many(session, [snap], target, **options))[0]


async def restore_many(
    session: Session,
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
    """Plan, safety-backup what would change, restore only what differs, validate.

    ``dry_run`` stops after the plans. When any snapshot's restore would overwrite,
    re-stamp or remove something already there, a safety snapshot of every snapshot's
    roots is committed first (roots that do not exist yet are recorded as absent), so
    ``rollback`` can put the whole run back. Validation checks every restored file
    against the snapshot (as written, or read back: core/restore/validate.py); a mismatch is reported in the outcome (the caller decides
    the exit). ``options``: which attributes to restore and how (RestoreOptions); as
    root, a target other users can change is refused unless they allow it."""
    from core.restore.plan import plan_restore
    from core.restore.safety import file_safety_snapshot, new_restore_id
    from core.restore.validate import validate_restore

    rid = restore_id or new_restore_id()
    repo = await session.repository(load_index=False)
    async with session.read_lock("restore"):
        await repo.load_index()
        plans = [
            await plan_restore(
                repo,
                s,
                target,
                include=include,
                delete=delete,
                executor=session.executor,
                options=options,
                itemize=dry_run,
            )
            for s in snaps
        ]
        if dry_run:
            return [RestoreOutcome(rid, s, p) for s, p in zip(snaps, plans)]
        conflicts = [c for p in plans for c in p.of("conflict")]
        if conflicts:
            listed = "; ".join(f"{shown(str(c.path))} ({c.reason})" for c in conflicts[:5])
            raise RestoreRefused(
                f"{len(conflicts)} paths in {plans[0].target} are in the way: {listed}"
                f"{' ...' if len(conflicts) > 5 else ''}; move them away (or restore "
                "with --delete into the folder above) and retry"
            )
        safeties: list[Snapshot | None] = [None] * len(snaps)
        if safety and any(p.touches_existing for p in plans) and session.lockless:
            refuse_safety_without_lock(
                session, f"would change files that exist in {shown(str(target))}", "restore into a new or empty folder"
            )
        if safety and any(p.touches_existing for p in plans):
            safeties = [
                await file_safety_snapshot(repo, p, s, rid, workers=session.workers) for s, p in zip(snaps, plans)
            ]
        outcomes = []
        meter = RestoreMeter(plans, on_progress)
        for s, p, safe in zip(snaps, plans, safeties):
            stats = await FileRestorer(
                repo,
                target,
                include=include,
                executor=session.executor,
                actions=p.action_for(),
                removals=[c.path for c in p.of("remove")],
                options=options,
                leftovers=p.leftovers,
                on_written=meter.written(s.source),
            ).restore(s)
            meter.finished(stats.files, stats.bytes, s.source)
            partial = frozenset(pf.dest for pf in stats.partial)
            check = (
                await validate_restore(
                    repo,
                    s,
                    target,
                    include=include,
                    executor=session.executor,
                    proven=p.content_proven(),
                    partial=partial,
                    placed=stats.placed,
                    read_back=bool(options and options.read_back),
                )
                if validate
                else None
            )
            outcomes.append(RestoreOutcome(rid, s, p, stats, safe, check, session.location))
        if options is None or options.fsync:
            from core.restore.durable import flush_filesystem

            # After the last file and before success is reported (as backups are).
            await asyncio.get_running_loop().run_in_executor(session.executor, flush_filesystem, target)
            outcomes = [replace(o, durable=True) for o in outcomes]
    if any(o.partial for o in outcomes):
        outcomes = [await find_intact(session, o) if o.partial else o for o in outcomes]
    return outcomes


async def find_intact(session: Session, outcome: RestoreOutcome) -> RestoreOutcome:
    """Name, for each partial file, the other locations holding an intact copy
    (core/restore/intact.py). Locations that cannot be searched become notes."""
    from core.restore.intact import search_location

    if not session.config.storage.remote_storage:
        return outcome
    notes: list[str] = []
    sites = session.location_ops().sites
    for name in sites.names:
        if name == session.location:
            continue
        try:
            repo = await sites.repository(name)
        except (AxisorError, OSError) as exc:
            notes.append(f"location {name} was not searched for intact copies: {exc}")
            continue
        await search_location(name, repo, outcome.snapshot, outcome.partial, notes.append)
    return replace(outcome, notes=tuple(notes))


def refuse_safety_without_lock(session: Session, change: str, instead: str) -> None:
    """A restore over existing data first commits a safety snapshot into the repository
    (what `rollback` puts back): that is a write, and a write needs a lock."""
    what = f"this restore {change}, and the safety snapshot that lets `rollback` undo that"
    if session.no_lock:
        raise UsageError(f"{what} is written into the repository, which needs a lock: drop --no-lock, or {instead}")
    if session.lockless_lock is not None:  # a writer stops at a lock it cannot read (exit 5)
        raise LockUnreadable(session.lockless_lock.location, session.lockless_lock.key, session.lockless_lock.reason)
    if session.lockless_full:  # a full disk is exit 10 wherever it is met, not "read-only" (24)
        raise StorageFull(f"{what} cannot be written: {session.lockless_reason}; free space there, or {instead}")
    raise StorageReadOnly(f"{what} cannot be written: {session.lockless_reason}; {instead}")


async def rollback(session: Session, restore_id: str) -> list[RestoreOutcome | object]:
    """Put back what restore ``restore_id`` changed, from its safety snapshots."""
    from core.restore.safety import absent_roots, find_safety, remove_root, safety_for

    snaps, _ = await snapshots(session)
    found = find_safety(snaps, restore_id)
    if not found:
        raise SnapshotNotFound(
            f"no safety snapshot belongs to a restore {restore_id!r}: the restore overwrote "
            "nothing (so there is nothing to roll back), or the id is wrong (it is printed "
            "by restore, and kept in the job record)"
        )
    ids = {str((safety_for(s) or {}).get("restore")) for s in found}
    if len(ids) > 1:
        raise UsageError(f"{restore_id!r} matches several restores: {', '.join(sorted(ids))}")
    results: list[RestoreOutcome | object] = []
    for s in found:
        info = safety_for(s) or {}
        if s.source == "database" and info.get("tables"):
            # Tables put back in place (--to-time --table --force): only they are in it, so
            # they go back by the same merge; restoring it over the database would drop the rest.
            from core.service.table_in_place import rollback_tables

            results.append(await rollback_tables(session, s, info))
            continue
        if s.source == "database":
            target = str(info.get("conninfo") or info.get("database") or "")
            if not target:
                raise UsageError(f"safety snapshot {s.short_id} does not say which database it came from")
            results.append(await restore_database(session, s, target, force=True))
            continue
        # Put back exactly what was there, privileges too (as root: only root can set them).
        outcome = await restore_files(
            session, s, Path("/"), delete=True, options=RestoreOptions(preserve_privileges=os.geteuid() == 0)
        )
        for root in absent_roots(s):
            remove_root(root)
        results.append(outcome)
    return results


async def plan_database_restore(
    session: Session,
    snap: Snapshot,
    target_db: str,
    *,
    force: bool = False,
    tables: tuple[str, ...] = (),
    schemas: tuple[str, ...] = (),
    roles: bool = False,
) -> dict:
    """``restore --target-db --dry-run``: what the restore would do, changing nothing."""
    from core.sources.postgres.connection import PgTarget
    from core.sources.postgres.carry_run import preview_carry
    from core.sources.postgres.logical_snapshot import snapshot_layout
    from core.sources.postgres.restore_plan import plan_logical_restore

    target = PgTarget.from_url(target_db, PgTarget.from_config(session.config.database))
    layout = None
    repo = await session.repository()
    if (snap.metadata or {}).get("mode") == "logical" and (tables or schemas):
        # Names are resolved against the dump's own table of contents, as the restore does.
        layout = await snapshot_layout(repo, snap)
    plan = await plan_logical_restore(snap, target, force=force, tables=tables, schemas=schemas, layout=layout)
    # Ownership, privileges and policies: what would be carried, and what not (carry.py).
    plan["carry"] = await preview_carry(repo, snap, target, tables=tables, schemas=schemas, roles=roles)
    return plan


async def restore_database(
    session: Session,
    snap: Snapshot,
    target_db: str,
    *,
    force: bool = False,
    tables: tuple[str, ...] = (),
    schemas: tuple[str, ...] = (),
    restore_id: str | None = None,
    roles: bool = False,
):
    """Restore a logical database snapshot (or only ``tables``/``schemas`` of it) into
    ``target_db`` (a URL, conninfo, or a database name on the configured server) and
    validate its row counts and checksums; returns the report. ``force`` replaces a
    non-empty database after committing a safety snapshot of it."""
    from core.sources.postgres.connection import PgTarget
    from core.sources.postgres.logical_restore import restore_logical

    if (snap.metadata or {}).get("mode") == "physical":
        raise UsageError(
            f"snapshot {snap.short_id} is a physical base backup: restore it with "
            "--to-time TIMESTAMP --target-dir DIR (point-in-time recovery), not --target-db"
        )
    fallback = PgTarget.from_config(session.config.database)
    target = PgTarget.from_url(target_db, fallback)
    repo = await session.repository(load_index=False)
    async with session.read_lock("restore"):
        if force and session.lockless:  # replacing a database commits its safety snapshot first
            refuse_safety_without_lock(
                session, "would replace a database's contents (--force)", "restore into a new database"
            )
        await repo.load_index()
        from core.restore.safety import new_restore_id

        return await restore_logical(
            repo,
            snap,
            target,
            pg_bin_dir=session.config.database.pg_bin_dir,
            force=force,
            tables=tables,
            schemas=schemas,
            db=session.config.database,
            restore_id=restore_id or new_restore_id(),
            roles=roles,
        )


async def restore_database_pitr(
    session: Session,
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
    from core.sources.postgres.pitr import restore_pitr

    repo = await session.repository(load_index=False)
    async with session.read_lock("restore"):
        await repo.load_index()
        return await restore_pitr(
            repo,
            session.config,
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


async def platform_plan(session: Session, at):
    """Which files snapshot belongs with the database at ``at``, per configured files source
    (core/restore/platform.py), and the database's recovery window (None without a
    physical database source)."""
    from core.restore.platform import plan_platform

    repo = await session.repository(load_index=False)
    snaps, _damaged = await repo.list_snapshots()
    plan = plan_platform(snaps, at, [s.name for s in session.config.sources()])
    db = session.config.database
    window = await recovery_window(session) if db.enabled and db.mode == "physical" else None
    return plan, window


async def recovery_window(session: Session):
    from core.sources.postgres.pitr import recovery_window as window

    return await window(await session.repository(load_index=False))


__all__ = [
    "RestoreOutcome",
    "find_intact",
    "plan_database_restore",
    "platform_plan",
    "recovery_window",
    "refuse_safety_without_lock",
    "restore_database",
    "restore_database_pitr",
    "restore_files",
    "restore_many",
    "rollback",
]
