"""A table as it was at an instant, next to the live one: `restore --source database
--to-time T --table S.T --target-db LIVE --as S.T_1432`.

Phases, each timed and told (``on_phase``): a throwaway cluster recovered to T from the
physical base backup and the archived WAL (core/sources/postgres/pitr.py, in a private
folder, on a free port, socket only, as the server's OS user when root); the selected
tables copied into the live database under their new names (core/sources/postgres/
table_copy.py); each copy validated against the recovered table (rows and row checksum);
the throwaway cluster stopped and removed, whatever happened (core/sources/postgres/
scratch.py). The live table is never touched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import RestoreRefused, RestoreValidationFailed, UsageError
from core.service.session import Session


@dataclass(frozen=True, slots=True)
class TableAtTimeReport:
    at: str
    base_snapshot: str
    stopped_at: str | None  # the recovered server's own words on where recovery stopped
    target: str  # the live database, described without secrets
    tables: tuple = ()  # CopiedTable
    seconds: dict[str, float] = field(default_factory=dict)  # recover, copy, validate, cleanup, total
    cleanup: tuple[str, ...] = ()
    cleanup_problems: tuple[str, ...] = ()
    from_logical: bool = False  # no base backups: the newest logical snapshot before the time
    before_seconds: float = 0.0  # ... taken this long before it

    @property
    def ok(self) -> bool:
        return all(t.validated for t in self.tables) and not self.cleanup_problems

    def to_dict(self) -> dict:
        return {**recovered_fields(self), "ok": self.ok}


def recovered_fields(report: Any) -> dict:
    """The JSON fields a table-as-of-a-time report shares with its in-place form
    (core/service/table_in_place.py): where the tables came from, what each became, the
    phases' seconds and the cleanup."""
    return {
        "at": report.at,
        "base_snapshot": report.base_snapshot,
        "stopped_at": report.stopped_at,
        "target": report.target,
        "tables": [t.to_dict() for t in report.tables],
        "seconds": report.seconds,
        "cleanup": list(report.cleanup),
        "cleanup_problems": list(report.cleanup_problems),
        "from_logical_snapshot": report.from_logical,
        "before_seconds": report.before_seconds,
    }


def copy_names(tables: list[tuple[str, str]], as_names: list[str], at: datetime) -> list[tuple[str, str]]:
    """The name of each copy: ``--as`` (one per table, in order; a bare name stays in the
    table's schema), else ``<name>_at_<HHMM>``. Pure."""
    from core.sources.postgres import names

    if as_names and len(as_names) != len(tables):
        raise UsageError(f"give one --as per --table ({len(tables)} tables, {len(as_names)} --as)")
    out = []
    for i, (schema, name) in enumerate(tables):
        if not as_names:
            out.append((schema, f"{name}_at_{at:%H%M}"))
            continue
        parts = names.split(as_names[i], what="--as", wildcards=False)
        if len(parts) > 2:
            raise UsageError(f"--as {as_names[i]!r}: give schema.name or name")
        out.append((parts[0].text, parts[1].text) if len(parts) == 2 else (schema, parts[0].text))
    if len(set(out)) != len(out):
        raise UsageError("two copies would have the same name: give each --table its own --as")
    if any(c in tables for c in out):
        raise RestoreRefused("a copy would replace a table of the same name: give --as another name")
    return out


async def restore_table_at_time(
    session: Session,
    at: datetime,
    table_specs: list[str],
    target_db: str,
    as_names: list[str],
    *,
    config_path: Path,
    os_user: str | None = None,
    timeout: float = 900,
    on_phase: Callable[[str], None] | None = None,
    with_references: bool = False,
) -> TableAtTimeReport:
    """``with_references``: also the tables they reference through foreign keys, transitively,
    each as ``<name>_at_<HHMM>``, the keys between the copies kept. Physical mode: recovered to ``at`` exactly. Logical mode (no base backups): from the
    newest logical snapshot taken at or before ``at``, restored into a scratch database on
    the configured server, and the report says how far before ``at`` it is."""
    from core.sources.postgres import names, table_copy
    from core.sources.postgres.connection import PgTarget
    from core.sources.postgres.scratch import Scratch, server_user

    db = session.config.database
    if not db.enabled:
        raise UsageError("a table as of a time needs the database source: [database] enabled = true")
    # "" (the console's "beside the live tables"): the configured database itself.
    live = PgTarget.from_url(target_db, PgTarget.from_config(db)) if target_db else PgTarget.from_config(db)
    if as_names and len(as_names) != len(table_specs):
        raise UsageError(f"give one --as per --table ({len(table_specs)} --table, {len(as_names)} --as)")
    for given in as_names:  # a qualified name taken already: refused before minutes of recovery
        parts = names.split(given, what="--as", wildcards=False)
        if len(parts) == 2 and await table_copy.exists(live, parts[0].text, parts[1].text):
            raise table_copy.refuse_existing(names.key(parts[0].text, parts[1].text), live)
    phase = on_phase or (lambda _name: None)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    scratch = Scratch(f"table-{int(time.time())}", session.config.drills.work_dir, server_user(os_user))
    copied = []
    try:
        phase("recover")
        if db.mode == "physical":
            source, recovered, root = await _recovered_cluster(session, scratch, at, config_path, timeout, on_phase)
        else:
            source, recovered, root = await _from_logical(session, scratch, at, table_specs)
        seconds["recover"] = round(time.monotonic() - t0, 3)
        chosen = names.resolve_tables(table_specs, await table_copy.list_tables(recovered))
        copies = copy_names(chosen, as_names, at)
        if with_references:
            extra = await table_copy.references(recovered, chosen)
            chosen, copies = chosen + extra, copies + copy_names(extra, [], at)
        for schema, name in copies:
            if await table_copy.exists(live, schema, name):
                raise table_copy.refuse_existing(names.key(schema, name), live)
        phase("copy")
        t_copy = time.monotonic()
        prepared = []
        keep = frozenset(chosen) if with_references else frozenset()
        for table, copy in zip(chosen, copies):
            renamed, left_out = await table_copy.prepare(recovered, table, copy, keep)
            prepared.append((table, copy, renamed, left_out))
        await table_copy.copy(recovered, live, copies, root, db.pg_bin_dir)
        seconds["copy"] = round(time.monotonic() - t_copy, 3)
        phase("validate")
        t_val = time.monotonic()
        for table, copy, renamed, left_out in prepared:
            rows, checksum, problem = await table_copy.validate(recovered, live, copy, db.pg_bin_dir)
            copied.append(
                table_copy.CopiedTable(
                    names.key(*table),
                    names.key(*copy),
                    rows,
                    checksum,
                    not problem,
                    tuple(renamed),
                    tuple(left_out),
                    problem,
                )
            )
        seconds["validate"] = round(time.monotonic() - t_val, 3)
    finally:
        phase("cleanup")
        t_clean = time.monotonic()
        await asyncio.shield(scratch.cleanup())
        seconds["cleanup"] = round(time.monotonic() - t_clean, 3)
    seconds["total"] = round(time.monotonic() - t0, 3)
    report = TableAtTimeReport(
        at=at.isoformat(),
        base_snapshot=source.snapshot,
        stopped_at=source.stopped_at,
        target=live.describe(),
        tables=tuple(copied),
        seconds=seconds,
        cleanup=tuple(scratch.removed),
        cleanup_problems=tuple(scratch.problems),
        from_logical=source.from_logical,
        before_seconds=source.before_seconds,
    )
    bad = [t for t in copied if not t.validated]
    if bad:
        raise RestoreValidationFailed(
            "; ".join(f"{t.copy}: {t.problem}" for t in bad) + " (the copies stay for inspection; drop them when done)"
        )
    return report


@dataclass(frozen=True, slots=True)
class _Source:
    snapshot: str  # the base backup, or the logical snapshot
    stopped_at: str | None
    from_logical: bool = False
    before_seconds: float = 0.0  # logical: how long before the asked time the snapshot was taken


async def _recovered_cluster(session: Session, scratch, at: datetime, config_path: Path, timeout: float, on_phase):
    """A throwaway cluster recovered to ``at`` (registered with ``scratch`` before it starts)."""
    from core.service.restore import restore_database_pitr
    from core.sources.postgres.connection import PgTarget
    from core.sources.postgres.scratch import free_port
    from core.sources.postgres.tools import find_tool

    db = session.config.database
    root = scratch.new_dir("axt.", for_server=True)
    data = root / "data"
    pg_ctl = await asyncio.to_thread(find_tool, "pg_ctl", db.pg_bin_dir)
    scratch.add_cluster(data, pg_ctl.path.parent)  # stopped and removed by cleanup, whatever happens
    port = free_port()
    pitr = await restore_database_pitr(
        session, at, data, config_path=config_path, start=True, port=port, os_user=scratch.os_user,
        timeout=timeout, on_phase=on_phase,
    )  # fmt: skip
    base = PgTarget.from_config(db)
    recovered = PgTarget({**base.params, "host": str(data), "port": str(port)}, base.password, base.passfile)
    return _Source(pitr.base_snapshot, pitr.stopped_at), recovered, root


async def newest_logical(session: Session, at: datetime):
    """The newest logical database snapshot taken at or before ``at`` (not a safety snapshot)."""
    from core.errors import SnapshotNotFound
    from core.repository.snapshot import is_safety

    repo = await session.repository(load_index=False)
    snaps, _ = await repo.list_snapshots()
    logical = [
        s for s in snaps
        if s.source == "database" and not is_safety(s) and (s.metadata or {}).get("mode") != "physical" and s.datetime <= at
    ]  # fmt: skip
    if not logical:
        raise SnapshotNotFound(f"no logical database snapshot was taken at or before {at.isoformat()}")
    return max(logical, key=lambda s: s.datetime)


async def _from_logical(session: Session, scratch, at: datetime, table_specs: list[str]):
    """Logical mode: the newest logical snapshot at or before ``at``, its tables restored
    (and validated) into a scratch database on the configured server."""
    from core.service.restore import restore_database
    from core.sources.postgres.connection import PgTarget

    snap = await newest_logical(session, at)
    target = scratch.scratch_database(PgTarget.from_config(session.config.database))
    await restore_database(session, snap, target.params["dbname"], tables=tuple(table_specs))
    root = scratch.new_dir("axt.")
    return _Source(snap.id, None, True, round((at - snap.datetime).total_seconds(), 3)), target, root


__all__ = ["TableAtTimeReport", "copy_names", "restore_table_at_time"]
