"""A backup run: which sources, the database dump started early, copies after it."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from collections.abc import Callable

from core.backup.archiver import ArchiveStats
from core.backup.run import BackupResult, run_backup
from core.config import Config, DatabaseConfig, SourceSpec
from core.config.sources import DATABASE, UnknownSource, select_sources
from core.errors import AxisorError, UsageError
from core.health.tripwire import Thresholds
from core.repository.rollback import SeenSnapshots
from core.repository.lock import exclusive_holder
from core.service.locations import copy_after_backup
from core.service.session import Session
from core.sources.postgres import early_dump


async def backup(
    session: Session,
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
    config = session.config
    specs, database = chosen_sources(config, sources)
    dump = preload = None
    # The command line may have started this run's dump before loading the rest of the
    # program (core/sources/postgres/early_dump.py): taken here, or stopped.
    early = early_dump.claim(database) if database is not None else None
    if database is not None and database.mode == "logical" and not await exclusively_locked(session):
        # pg_dump starts now, in its exported snapshot, read ahead: its connection and
        # catalog reads overlap the passphrase's scrypt, the lock and the index load
        # instead of following them. Not while a prune holds the repository: the run
        # would be refused (and, from a job, retried for minutes).
        dump = early or asyncio.ensure_future(_start_dump(database))
        early = None
    if early is not None:
        await early_dump.stop(early)
    if dump is None and database is not None and not session.opened:
        # psycopg's imports (~0.15 s) run on a thread while the passphrase's scrypt runs.
        preload = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "psycopg"))
    other_user = session.other_user_warning("backup")
    probe = _position_probe(config, specs)
    try:
        repo = await session.repository(load_index=False, writer=True)
        if preload is not None:
            await preload
        result = await run_backup(
            repo,
            specs,
            kind=kind,
            tags=tags,
            workers=session.workers,
            on_progress=on_progress,
            database=_database_take(database, dump),
            stall_timeout=config.engine.stall_timeout_seconds,
            totals=totals,
            tripwire=Thresholds.of(config) if config.protection.tripwire else None,
            seen=SeenSnapshots.of(session.state_dir, repo.config.id, repo.backend.location),
            db_position=probe.read if probe is not None else None,
        )
    except AxisorError:
        if other_user:
            session.note(f"warning: {other_user}")  # it may be why this failed
        raise
    finally:
        if dump is not None:
            await _stop_dump(dump)
        if probe is not None:
            await probe.close()
    if other_user:  # in the result: the job record, its log and --json carry it
        result = dataclasses.replace(result, warnings=(other_user, *result.warnings))
    return await copy_after_backup(session, result) if copy else result


def chosen_sources(config: Config, sources: list[str] | None) -> tuple[list[SourceSpec], DatabaseConfig | None]:
    """The file sources (in the order named; core/config/sources.py) and the database (or
    None) a run takes; UsageError when nothing is configured or a name stands for nothing."""
    specs = list(config.sources())
    database = config.database if config.database.enabled else None
    if not specs and database is None:
        raise UsageError(
            "no sources are configured: list paths under [application] or [configuration], "
            "or set [database] enabled = true"
        )
    if not sources:
        return specs, database
    try:
        names = select_sources(config, sources, order="named", unknown="raise")
    except UnknownSource as exc:
        # The run's own wording (the CLI's since it took --source): a disabled database says
        # how to enable it, and the list names the file sources, sorted.
        if exc.database_disabled:
            raise UsageError("the database source is not enabled: set [database] enabled = true") from None
        files = sorted(n for n in exc.configured if n != DATABASE)
        raise UsageError(f"unknown source {exc.name!r}; configured: {', '.join(files)}") from None
    by_name = {s.name: s for s in specs}
    return [by_name[n] for n in names if n != DATABASE], database if DATABASE in names else None


async def exclusively_locked(session: Session) -> bool:
    try:
        return await exclusive_holder(session.backend) is not None
    except (AxisorError, OSError):
        return False  # no repository, or unreadable: opening it says so properly


def _position_probe(config: Config, specs: list[SourceSpec]):
    """With `[database]` enabled, each files snapshot records the database's position around
    its scan (core/sources/postgres/position.py): None without it, or without file sources."""
    if not (config.database.enabled and specs):
        return None
    from core.sources.postgres.position import PositionProbe

    return PositionProbe(config.database)


def _database_take(database: DatabaseConfig | None, dump: asyncio.Future | None):
    """The database's part of the run, or None; its module is imported only for a database
    run (psycopg, ~0.1 s, has been loaded by then)."""
    if database is None:
        return None
    from core.sources.postgres.take import database_take

    return database_take(database, dump)


async def _start_dump(database: DatabaseConfig):
    """core.sources.postgres.dump_start.start_dump; the module (it imports psycopg, ~0.1 s) is
    imported on a thread, beside the scrypt."""
    dump_start = await asyncio.to_thread(importlib.import_module, "core.sources.postgres.dump_start")
    return await dump_start.start_dump(database, jobs=database.dump_jobs)


async def _stop_dump(dump: asyncio.Future) -> None:
    """Stop a dump started early that the backup did not take (a wrong passphrase, a held
    lock); the backup closes one it took itself."""
    await early_dump.stop(dump)


__all__ = ["backup", "chosen_sources", "exclusively_locked"]
