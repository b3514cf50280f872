"""A table put back in place as it was at an instant: `restore --source database --to-time T
--table S.T --target-db LIVE --force`; and `rollback` of such a restore.

Refused before any work: a table that does not exist in LIVE (there is nothing to put back in
place; restore it beside), a table other tables reference with cascading foreign keys (the
merge would change their rows too), a session that cannot write the safety snapshot.

Then, in order: a safety snapshot of just those tables of LIVE (logical, tag ``safety``,
``safety_for.tables``: what ``rollback`` puts back); the throwaway cluster recovered to T
(core/service/table_at_time.py, as a copy beside the live table); each table copied into LIVE
under a staging name (``<name>_axisor_<restore id>``, core/sources/postgres/table_copy.py)
and validated against the recovered one; every table merged into the live one in one
transaction (core/sources/postgres/table_merge.py: the live table keeps its OID, so the foreign
keys, views and grants on it still hold); each live table validated against the recovered one
(rows and an order-independent row checksum); the staging copies dropped; the throwaway
cluster removed, whatever happened.

Rollback restores the safety snapshot's tables into a scratch database on LIVE's server
(validated against the snapshot), and puts them back with the same staging copy and merge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import RestoreRefused, RestoreValidationFailed, UsageError
from core.repository.snapshot import Snapshot
from core.service.session import Session
from core.service.table_at_time import recovered_fields

if TYPE_CHECKING:
    from core.sources.postgres.connection import PgTarget


@dataclass(frozen=True, slots=True)
class PlacedTable:
    """One table put back in place."""

    table: str  # names.key
    deleted: int
    updated: int
    inserted: int
    by_key: bool  # False: no primary key, every row replaced
    rows: int  # rows in the live table after the merge
    checksum: str  # table_merge.ROWSET_METHOD
    validated: bool  # rows and checksum equal to the recovered table's
    sequences: tuple[str, ...] = ()
    problem: str = ""

    def to_dict(self) -> dict:
        from core.sources.postgres.table_merge import ROWSET_METHOD

        return {
            "table": self.table,
            "deleted": self.deleted,
            "updated": self.updated,
            "inserted": self.inserted,
            "merge": "primary key" if self.by_key else "replace all (no primary key)",
            "rows": self.rows,
            "checksum": self.checksum,
            "checksum_method": ROWSET_METHOD,
            "validated": self.validated,
            "sequences": list(self.sequences),
            "problem": self.problem or None,
        }


@dataclass(frozen=True, slots=True)
class InPlaceReport:
    restore_id: str
    safety_snapshot: str  # "" in a dry run
    at: str
    base_snapshot: str  # the base backup (or logical snapshot) recovered from; rollback: the safety snapshot
    stopped_at: str | None
    target: str
    tables: tuple[PlacedTable, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)
    cleanup: tuple[str, ...] = ()
    cleanup_problems: tuple[str, ...] = ()
    from_logical: bool = False
    before_seconds: float = 0.0
    dry_run: bool = False
    plan: tuple[str, ...] = ()  # a dry run: what would be done
    rollback: bool = False

    @property
    def ok(self) -> bool:
        return all(t.validated for t in self.tables) and not self.cleanup_problems

    def to_dict(self) -> dict:
        return {
            "mode": "in place",
            "restore_id": self.restore_id,
            "safety_snapshot": self.safety_snapshot or None,
            **recovered_fields(self),
            "dry_run": self.dry_run,
            "plan": list(self.plan),
            "rollback": self.rollback,
            "ok": self.ok,
        }


def staging_name(table: tuple[str, str], restore_id: str) -> tuple[str, str]:
    """``<name>_axisor_<restore id>`` in the table's schema, within PostgreSQL's 63 bytes."""
    from core.sources.postgres.table_copy import _derived

    return table[0], _derived(table[1], f"_axisor_{restore_id}")


async def _live_tables(live: PgTarget, table_specs: list[str]) -> list[tuple[str, str]]:
    """The chosen tables, resolved against LIVE: a table that is not there is refused (exit 12)."""
    from core.sources.postgres import names, table_copy

    for spec in table_specs:
        parts = names.split(spec, what="--table")
        if len(parts) == 2 and not any(p.pattern for p in parts):
            if not await table_copy.exists(live, parts[0].text, parts[1].text):
                raise RestoreRefused(
                    f"{names.key(parts[0].text, parts[1].text)} does not exist in {live.describe()}: only a "
                    "table that exists can be put back in place (--force); restore it beside the live "
                    "tables instead (leave out --force, give --as)"
                )
    return names.resolve_tables(table_specs, await table_copy.list_tables(live))


async def restore_table_in_place(
    session: Session,
    at: datetime,
    table_specs: list[str],
    target_db: str,
    *,
    config_path: Path,
    os_user: str | None = None,
    timeout: float = 900,
    on_phase: Callable[[str], None] | None = None,
    dry_run: bool = False,
    restore_id: str | None = None,
    on_safety: Callable[[str], None] | None = None,
) -> InPlaceReport:
    """See the module doc. ``dry_run``: the plan, nothing changed. ``on_safety``: told the
    safety snapshot's id as soon as it is committed."""
    from core.restore.safety import new_restore_id
    from core.service.restore import recovery_window, refuse_safety_without_lock
    from core.service.table_at_time import _from_logical, _recovered_cluster, newest_logical
    from core.sources.postgres import names, table_copy, table_merge
    from core.sources.postgres.connection import PgTarget
    from core.sources.postgres.scratch import Scratch, server_user

    db = session.config.database
    if not db.enabled:
        raise UsageError("a table as of a time needs the database source: [database] enabled = true")
    live = PgTarget.from_url(target_db, PgTarget.from_config(db)) if target_db else PgTarget.from_config(db)
    rid = restore_id or new_restore_id()
    chosen = await _live_tables(live, table_specs)
    await table_merge.refuse_acting_references(live, chosen)
    shapes = await table_merge.shapes(live, chosen)
    if dry_run:
        if db.mode == "physical":
            base = (await recovery_window(session)).choose(at).snapshot
            source = (
                f"base backup {base.short_id} ({base.datetime.isoformat()}), recovered to {at.isoformat()} with "
                "the archived WAL in a throwaway cluster"
            )
        else:
            snap = await newest_logical(session, at)
            source = (
                f"logical snapshot {snap.short_id} ({snap.datetime.isoformat()}, the newest at or before the time: "
                "no base backups), restored into a scratch database"
            )
        plan = [
            f"a safety snapshot of {', '.join(names.key(*t) for t in chosen)} in {live.describe()} first (tag safety)"
        ]
        plan.append(f"the time from {source}, removed afterwards")
        plan += [f"{names.key(*t)}: {s.describe()}, in one transaction with the others" for t, s in zip(chosen, shapes)]
        plan.append("each table validated after the merge (rows and row checksum); triggers on the live tables fire")
        return InPlaceReport(rid, "", at.isoformat(), "", None, live.describe(), dry_run=True, plan=tuple(plan))
    if session.lockless:
        refuse_safety_without_lock(
            session,
            "would change live tables in place (--force)",
            "restore the tables beside the live ones (leave out --force)",
        )
    phase = on_phase or (lambda _name: None)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    phase("safety")
    safety = await _safety_snapshot(session, live, chosen, rid, at)
    seconds["safety"] = round(time.monotonic() - t0, 3)
    if on_safety is not None:
        on_safety(safety)
    note = f"The tables as they were before: safety snapshot {safety[:8]} (restore id {rid})."
    scratch = Scratch(f"table-{int(time.time())}", session.config.drills.work_dir, server_user(os_user))
    placed: list[PlacedTable] = []
    try:
        phase("recover")
        t_rec = time.monotonic()
        if db.mode == "physical":
            source, recovered, root = await _recovered_cluster(session, scratch, at, config_path, timeout, on_phase)
        else:
            source, recovered, root = await _from_logical(session, scratch, at, table_specs)
        seconds["recover"] = round(time.monotonic() - t_rec, 3)
        then = set(await table_copy.list_tables(recovered))
        missing = [t for t in chosen if t not in then]
        if missing:
            raise RestoreRefused(
                f"{', '.join(names.key(*t) for t in missing)} did not exist at {at.isoformat()}: nothing to put "
                f"back; nothing was changed. {note}"
            )
        placed = await put_back(live, recovered, chosen, rid, root, db.pg_bin_dir, note, phase, seconds)
    finally:
        phase("cleanup")
        t_clean = time.monotonic()
        await asyncio.shield(scratch.cleanup())
        seconds["cleanup"] = round(time.monotonic() - t_clean, 3)
    seconds["total"] = round(time.monotonic() - t0, 3)
    report = InPlaceReport(
        rid, safety, at.isoformat(), source.snapshot, source.stopped_at, live.describe(), tuple(placed), seconds,
        tuple(scratch.removed), tuple(scratch.problems), source.from_logical, source.before_seconds,
    )  # fmt: skip
    _raise_if_invalid(report, note)
    return report


def _raise_if_invalid(report: InPlaceReport, note: str) -> None:
    bad = [t for t in report.tables if not t.validated]
    if bad:
        raise RestoreValidationFailed(
            "; ".join(f"{t.table}: {t.problem}" for t in bad)
            + f" (the merge was committed; {note} `rollback {report.restore_id}` puts them back)"
        )


async def put_back(
    live: PgTarget, recovered: PgTarget, chosen: list[tuple[str, str]], rid: str, root: Path, pg_bin_dir: Path | None,
    note: str,
    phase: Callable[[str], None], seconds: dict[str, float],
) -> list[PlacedTable]:  # fmt: skip
    """Copy each table of ``recovered`` into ``live`` under its staging name, validate the copies,
    merge them into the live tables in one transaction, validate the live tables, drop the copies."""
    from core.sources.postgres import names, table_copy, table_merge

    staging = [staging_name(t, rid) for t in chosen]
    for st in staging:
        if await table_copy.exists(live, *st):
            raise RestoreRefused(f"{names.key(*st)} exists already in {live.describe()}: a leftover? drop it and retry")
    phase("copy")
    t_copy = time.monotonic()
    for table, st in zip(chosen, staging):
        await table_copy.prepare(recovered, table, st)  # the recovered side is renamed: thrown away anyway
    try:
        await table_copy.copy(recovered, live, staging, root, pg_bin_dir)
        for st in staging:
            _rows, _sum, problem = await table_copy.validate(recovered, live, st, pg_bin_dir)
            if problem:
                raise RestoreValidationFailed(
                    f"the staging copy {names.key(*st)}: {problem}; nothing was changed. {note}"
                )
        seconds["copy"] = round(time.monotonic() - t_copy, 3)
        phase("merge")
        t_merge = time.monotonic()
        then_seqs = {t: await table_merge.sequence_values(recovered, st) for t, st in zip(chosen, staging)}
        merged = await table_merge.merge(live, list(zip(chosen, staging)), then_seqs, note)
        seconds["merge"] = round(time.monotonic() - t_merge, 3)
        phase("validate")
        t_val = time.monotonic()
        out = []
        for m, st, s in zip(merged, staging, await table_merge.shapes(live, chosen)):
            cols = tuple(c.name for c in s.columns)
            rows_then, sum_then = await table_merge.rowset_checksum(recovered, st, cols)
            rows_now, sum_now = await table_merge.rowset_checksum(live, m.table, cols)
            problem = ""
            if rows_then != rows_now:
                problem = f"{rows_now} rows in place, {rows_then} in the recovered table"
            elif sum_then != sum_now:
                problem = "its row checksum differs from the recovered table's"
            out.append(
                PlacedTable(
                    names.key(*m.table), m.deleted, m.updated, m.inserted, m.by_key, rows_now, sum_now,
                    not problem, m.sequences, problem,
                )
            )  # fmt: skip
        seconds["validate"] = round(time.monotonic() - t_val, 3)
    finally:
        problems = await table_merge.drop_staging(live, staging)
    if problems:
        raise RestoreRefused("; ".join(problems))
    return out


async def _safety_snapshot(
    session: Session, live: PgTarget, chosen: list[tuple[str, str]], rid: str, at: datetime
) -> str:
    """A logical snapshot of just ``chosen`` in ``live``, before anything there changes; its id."""
    from core.restore.safety import SAFETY_TAG
    from core.sources.postgres import names
    from core.sources.postgres.logical_backup import backup_logical

    repo = await session.repository(load_index=False)
    async with session.read_lock("restore"):
        await repo.load_index()
        snap = await backup_logical(
            repo,
            session.config.database,
            tags=(SAFETY_TAG,),
            target=live,
            tables=tuple(chosen),
            extra_metadata={
                "safety_for": {
                    "restore": rid,
                    "snapshot": "",  # no snapshot is restored: the tables are recovered to a time
                    "to_time": at.isoformat(),
                    "target": live.describe(),
                    "database": live.params["dbname"],
                    "conninfo": live.conninfo(),
                    "tables": [names.key(*t) for t in chosen],
                }
            },
        )
    return snap.id


async def rollback_tables(session: Session, snap: Snapshot, info: dict) -> InPlaceReport:
    """Put back exactly the tables of a tables-only safety snapshot (``info``: its safety_for),
    in place, by the same staging copy and merge; validated."""
    from core.service.restore import restore_database
    from core.sources.postgres import names, table_merge
    from core.sources.postgres.connection import PgTarget
    from core.sources.postgres.scratch import Scratch

    db = session.config.database
    target = str(info.get("conninfo") or info.get("database") or "")
    keys = [str(k) for k in info.get("tables") or []]
    if not target or not keys:
        raise UsageError(f"safety snapshot {snap.short_id} does not say which database and tables it came from")
    live = PgTarget.from_url(target, PgTarget.from_config(db))
    chosen = [names.parse_key(k) for k in keys]
    await _live_tables(live, [names.key(*t) for t in chosen])
    await table_merge.refuse_acting_references(live, chosen)
    rid = str(info.get("restore") or "")
    note = f"The tables as they were before the restore are still in safety snapshot {snap.short_id}."
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    scratch = Scratch(f"rollback-{int(time.time())}", session.config.drills.work_dir, None)
    placed: list[PlacedTable] = []
    try:
        scratch_db = scratch.scratch_database(live)
        # The tables and what they need (schemas, types, functions) from its whole schema
        # (logical_backup.backup_logical); their foreign keys left out, as for any partial restore.
        restored = await restore_database(session, snap, scratch_db.conninfo(), tables=tuple(keys), restore_id=rid)
        if not restored.ok:
            raise RestoreValidationFailed(
                f"the safety snapshot {snap.short_id}'s tables did not restore exactly (rows or checksums differ "
                f"from the snapshot); nothing was changed in {live.describe()}"
            )
        seconds["recover"] = round(time.monotonic() - t0, 3)
        root = scratch.new_dir("axt.")
        placed = await put_back(
            live, scratch_db, chosen, f"rb{rid}"[:16], root, db.pg_bin_dir, note, lambda _p: None, seconds
        )
    finally:
        await asyncio.shield(scratch.cleanup())
    seconds["total"] = round(time.monotonic() - t0, 3)
    report = InPlaceReport(
        rid, snap.id, snap.datetime.isoformat(), snap.id, None, live.describe(), tuple(placed), seconds,
        tuple(scratch.removed), tuple(scratch.problems), rollback=True,
    )  # fmt: skip
    _raise_if_invalid(report, note)
    return report


__all__ = ["InPlaceReport", "PlacedTable", "restore_table_in_place", "rollback_tables", "staging_name"]
