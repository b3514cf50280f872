"""The operator's own checks on what a drill restored (``[[drills.checks]]``).

Three kinds, each a config entry:

- ``sql`` + ``expect``: the query's first value on the restored database equals ``expect``
  (booleans as PostgreSQL spells them, numbers by value, the rest as text);
- ``paths_sql`` + ``source``: the cross-check of a platform restored to one instant: every
  path the restored database names (the query's first column, at most
  ``CROSS_CHECK_ROWS`` rows) exists in the restored ``source``; the missing ones are named;
- ``path`` + ``source``: a file that must exist in the restored ``source``.

A check that cannot run in a scenario (no database restored, or only one table of it; the
source not restored) is a ``skip`` saying why, never a pass. Each result goes through the
drill's ``record`` (core/drills/run.py ``_Drill.check``), which reports it as it happens.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from core.config import Config, DrillCheckConfig
from core.drills.report import CheckResult
from core.errors import DatabaseError
from core.sources.postgres.connection import PgTarget
from core.text import shown

CROSS_CHECK_ROWS = 100_000

# ``_Drill.check(name, kind, ok, detail, expected, actual)``: records and reports one result.
Record = Callable[..., CheckResult]


@dataclass(frozen=True, slots=True)
class Restored:
    """What a drill restored that its checks can look at."""

    db: PgTarget | None  # where the restored database can be queried; None: none restored
    db_partial: bool  # only one table of it (corrupted-table)
    file_roots: Mapping[str, list[Path]]  # files source -> the folders it was restored into


async def run_checks(config: Config, restored: Restored, record: Record, check_cancelled: Callable[[], None]) -> int:
    """Every configured check, in order; returns how many there are."""
    for spec in config.drills.checks:
        check_cancelled()
        if spec.sql is not None:
            await _sql_check(restored, spec, spec.sql, record)
        elif spec.paths_sql is not None:
            await _paths_sql_check(config, restored, spec, spec.paths_sql, record)
        else:
            _path_check(restored, spec, record)
    return len(config.drills.checks)


async def _sql_check(restored: Restored, spec: DrillCheckConfig, query: str, record: Record) -> None:
    if restored.db is None:
        record(spec.name, "sql", None, "no database is restored in this scenario")
        return
    if restored.db_partial:
        record(spec.name, "sql", None, "only one table is restored in this scenario")
        return
    try:
        rows = await _query(restored.db, query, 1)
    except (DatabaseError, psycopg.Error) as exc:
        record(spec.name, "sql", False, f"the query failed: {str(exc).strip()[:300]}", spec.expect)
        return
    actual = rows[0][0] if rows else None
    ok = _matches(actual, spec.expect)
    record(
        spec.name,
        "sql",
        ok,
        f"returned {_show(actual)}" + ("" if ok else f", expected {_show(spec.expect)}"),
        spec.expect,
        _jsonable(actual),
    )


async def _query(db: PgTarget, query: str, most: int) -> list:
    """At most ``most`` rows of the operator's own query (from the config file) on the
    restored database; none for a statement that returns no rows."""
    conn = await db.connect()
    try:
        cur = await conn.execute(query)
        return list(await cur.fetchmany(most)) if cur.description else []
    finally:
        await conn.close()


async def _paths_sql_check(
    config: Config, restored: Restored, spec: DrillCheckConfig, query: str, record: Record
) -> None:
    """The cross-check: every path the restored database names (the query's first
    column, at most CROSS_CHECK_ROWS rows) exists in the restored ``source``."""
    assert spec.source is not None
    roots = restored.file_roots.get(spec.source)
    if restored.db is None or restored.db_partial or roots is None:
        record(spec.name, "cross-check", None, "the database and that source are not both restored here")
        return
    try:
        rows = await _query(restored.db, query, CROSS_CHECK_ROWS + 1)
    except (DatabaseError, psycopg.Error) as exc:
        record(spec.name, "cross-check", False, f"the query failed: {str(exc).strip()[:300]}")
        return
    source_paths = [Path(p) for p in next((s.paths for s in config.sources() if s.name == spec.source), ())]
    missing = [str(row[0]) for row in rows[:CROSS_CHECK_ROWS] if not _restored(row[0], roots, source_paths)]
    cut = f" (the first {CROSS_CHECK_ROWS} rows checked)" if len(rows) > CROSS_CHECK_ROWS else ""
    n = min(len(rows), CROSS_CHECK_ROWS)
    record(
        spec.name,
        "cross-check",
        not missing,
        f"all {n} paths the database names exist in the restored {spec.source}{cut}"
        if not missing
        else f"{len(missing)} of {n} paths the database names are missing from the restored "
        f"{spec.source}{cut}: " + ", ".join(shown(m) for m in missing[:20]) + (" ..." if len(missing) > 20 else ""),
        expected=n,
        actual=n - len(missing),
    )


def _path_check(restored: Restored, spec: DrillCheckConfig, record: Record) -> None:
    assert spec.path is not None and spec.source is not None
    roots = restored.file_roots.get(spec.source)
    if roots is None:
        record(spec.name, "path", None, f"{spec.source} is not restored in this scenario")
        return
    found = [r / spec.path for r in roots if os.path.lexists(r / spec.path)]
    record(
        spec.name,
        "path",
        bool(found),
        f"{spec.path} exists in the restored {spec.source}"
        if found
        else f"{spec.path} is missing from the restored {spec.source}",
        spec.path,
    )


def _restored(value: Any, roots: list[Path], source_paths: list[Path]) -> bool:
    """Whether a path the database names exists under one of the restored roots: absolute
    ones by their place below one of the source's configured paths, relative ones below
    any root. A path climbing out (``..``) or of another kind is not there."""
    if not isinstance(value, str) or not value or "\0" in value:
        return False
    p = Path(value)
    if ".." in p.parts:
        return False
    if p.is_absolute():
        # Each restored root is the target joined with one configured path (core/restore/plan.py).
        candidates = [
            r / p.relative_to(sp)
            for sp in source_paths
            if p.is_relative_to(sp)
            for r in roots
            if r.parts[-len(sp.parts) + 1 :] == sp.parts[1:]
        ]
    else:
        candidates = [r / p for r in roots]
    return any(os.path.lexists(c) for c in candidates)


def _matches(actual: Any, expect: Any) -> bool:
    if isinstance(expect, bool):
        return actual is expect or (
            isinstance(actual, str) and actual.lower() in (("t", "true") if expect else ("f", "false"))
        )
    if isinstance(expect, int | float):
        try:
            return actual is not None and not isinstance(actual, bool) and float(actual) == float(expect)
        except (TypeError, ValueError):
            return False
    if isinstance(actual, bool):
        return expect.lower() in (("t", "true") if actual else ("f", "false"))
    return actual is not None and str(actual) == expect


def _show(value: Any) -> str:
    return "NULL" if value is None else repr(value) if isinstance(value, str) else str(value)


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


__all__ = ["CROSS_CHECK_ROWS", "Restored", "run_checks"]
