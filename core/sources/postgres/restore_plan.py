"""What a logical restore takes from the dump, changing nothing: ``--table``/``--schema``
resolved against the dump's table of contents (SQL identifier rules, names.py:
``_resolve``), the entries a partial restore chooses, refused when a chosen table exists
already (``_partial_selection``, toc.py), and ``plan_logical_restore``, what ``restore
--dry-run`` shows."""

from __future__ import annotations

from typing import Any

from core.errors import RestoreRefused, UsageError
from core.repository.snapshot import Snapshot
from core.sources.postgres import dumpsum, names, toc
from core.sources.postgres.catalog import _USER_NS, _rows
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.logical_snapshot import SOURCE, snapshot_tables
from core.sources.postgres.restore_target import _USER_OBJECTS, _existing, _maintenance


def _resolve(
    entries: list[dumpsum.TocEntry], tables: tuple[str, ...], schemas: tuple[str, ...]
) -> tuple[list[tuple[str, str]], list[str]]:
    """--table/--schema values to exact (schema, name) pairs and schema names (names.py rules)."""
    return (
        names.resolve_tables(tables, toc.table_names(entries)) if tables else [],
        names.resolve_schemas(schemas, toc.schema_names(entries)) if schemas else [],
    )


async def plan_logical_restore(
    snap: Snapshot,
    target: PgTarget,
    *,
    force: bool = False,
    tables: tuple[str, ...] = (),
    schemas: tuple[str, ...] = (),
    layout: dumpsum.DumpLayout | None = None,
) -> dict:
    """What ``restore --target-db`` would do, changing nothing: the database created or not,
    each table created, replaced (``--force``) or in the way, what is left in place, and
    whether a safety snapshot would be taken first. (``restore --dry-run``.) ``layout``: the
    dump's table of contents (read_layout), which names are resolved against."""
    meta = snap.metadata or {}
    if snap.source != SOURCE or meta.get("mode") != "logical":
        raise UsageError(f"snapshot {snap.short_id} ({snap.source}) is not a logical database backup")
    name = target.params.get("dbname")
    if not name:
        raise UsageError("--target-db must name a database")
    expected, _ = snapshot_tables(meta, layout)
    partial = bool(tables or schemas)
    if layout is not None:
        entries = list(layout.entries.values())
        want_tables, want_schemas = _resolve(entries, tables, schemas)
        chosen_pairs = toc.select(entries, want_tables, want_schemas).tables if partial else None
    else:
        pairs = [names.parse_key(k) for k in expected]
        want_tables = names.resolve_tables(tables, pairs) if tables else []
        want_schemas = names.resolve_schemas(schemas, [p[0] for p in pairs]) if schemas else []
        chosen_pairs = [p for p in pairs if p in set(want_tables) or p[0] in want_schemas] if partial else None
    # chosen_pairs is None exactly when not partial.
    chosen = (
        dict(expected) if chosen_pairs is None else {names.key(*p): expected.get(names.key(*p)) for p in chosen_pairs}
    )
    conn = await _maintenance(target)
    try:
        exists = bool(await _rows(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))
    finally:
        await conn.close()
    objects, present = 0, set()
    if exists:
        conn = await target.connect()
        try:
            ((objects,),) = await _rows(conn, _USER_OBJECTS)
            present = {
                names.key(a, b)
                for a, b in await _rows(
                    conn,
                    f"SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    f"WHERE c.relkind IN ('r', 'p') AND {_USER_NS}",
                )
            }
        finally:
            await conn.close()
    rows: list[dict[str, Any]] = []
    for t, n in sorted(chosen.items()):
        if t not in present:
            action = "create"
        elif not partial and force:
            action = "replace"
        else:
            action = "conflict"
        rows.append({"table": t, "rows": n, "action": action})
    refused = None
    if partial and any(r["action"] == "conflict" for r in rows):
        refused = "the target already has " + ", ".join(r["table"] for r in rows if r["action"] == "conflict")
    elif not partial and objects and not force:
        refused = f"database {name!r} is not empty ({objects} objects): --force replaces it after a safety backup"
    elif not partial and objects and meta.get("dump_parts") is not None:
        refused = (
            f"the snapshot's dump is in parts: --force cannot replace database {name!r} with it (restore_parts.py)"
        )
    return {
        "snapshot": snap.id,
        "target": target.describe(),
        "database": name,
        "exists": exists,
        "create_database": not exists,
        "objects": objects,
        "partial": partial,
        "tables": rows,
        "left_in_place": sorted(present - set(chosen)) if exists else [],
        "safety_snapshot": bool(exists and objects and force and not partial and not refused),
        "refused": refused,
    }


async def _partial_selection(
    target: PgTarget,
    name: str,
    entries: list[dumpsum.TocEntry],
    want_tables: list[tuple[str, str]],
    want_schemas: list[str],
) -> toc.Selection:
    """What a table- or schema-level restore takes from the dump, given what the target has;
    refused when a chosen table exists there already."""
    present, _ = await _existing(target, [])
    chosen = toc.select(entries, want_tables, want_schemas, present)
    _, clash = await _existing(target, chosen.tables)
    if clash:
        raise RestoreRefused(
            f"database {name!r} already has {', '.join(names.shown(*t) for t in clash)}; "
            f"drop or rename it first, or restore into another database"
        )
    return chosen
