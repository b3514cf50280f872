"""Logical restore (``restore_logical``): the dump's blobs, in order, are written to
``pg_restore --single-transaction`` on stdin (restore_feed.py; ``--no-owner`` and a
``-L`` list without some grants when the target cannot take them: carry.py and
carry_run.py decide, and the report names what was not restored); then each table's rows
are counted and checksummed and compared with the snapshot's metadata
(restore_validate.py). ``--table``/``--schema`` are resolved against the dump's table of
contents and the chosen entries restored with ``-L`` (restore_plan.py, toc.py).
A dump taken in parts (``dump_jobs``) is restored step by step, its parts' data at once
(restore_parts.py). ``--force`` over a non-empty database first backs it up (a snapshot tagged ``safety``),
then restores with ``--clean --if-exists`` in the same single transaction, so a failed
restore leaves the database as it was."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg

from core.config import DatabaseConfig
from core.errors import RestoreRefused, UsageError
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import Node
from core.sources.postgres import carry, dumpsum, names
from core.sources.postgres.carry_run import _carry_before, _carry_database
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.logical_backup import backup_logical
from core.sources.postgres.logical_snapshot import (
    _dump_node,
    _globals_text,
    _restorable_meta,
    read_layout,
    snapshot_tables,
)
from core.sources.postgres.restore_feed import _run_pg_restore
from core.sources.postgres.dump_parts import read_parts
from core.sources.postgres.restore_parts import LoadedPart, data_lists, load_parts, merged_layout, restore_parts
from core.sources.postgres.restore_parts import data_keys as parts_data_keys
from core.sources.postgres.restore_plan import _partial_selection, _resolve
from core.sources.postgres.restore_report import DbRestoreReport, _table_checks
from core.sources.postgres.restore_target import _prepare_database, _undo
from core.sources.postgres.restore_validate import _check_whole_database, _restored_stats
from core.sources.postgres.row_stats import _ROW_DIGESTS
from core.sources.postgres.tools import check_restore_tool, find_tool


async def restore_logical(
    repo: Repository,
    snap: Snapshot,
    target: PgTarget,
    *,
    pg_bin_dir=None,
    force: bool = False,
    tables: tuple[str, ...] = (),
    schemas: tuple[str, ...] = (),
    db: DatabaseConfig | None = None,
    restore_id: str = "",
    roles: bool = False,
) -> DbRestoreReport:
    """Restore a logical database snapshot (or just ``tables``/``schemas`` of it) into
    ``target`` and validate the restored tables' row counts and checksums.

    ``tables``/``schemas`` follow SQL identifier rules (names.py): unquoted parts fold to lower
    case, quoted ones are literal, ``*``/``?`` outside quotes are wildcards; they are resolved
    against the dump's own table of contents, exactly.

    A non-empty target is refused for a whole-database restore unless ``force``: then a
    safety snapshot of the target is committed first (``db`` supplies pg_bin_dir and the
    application version for it). A partial restore may go into a non-empty database whose
    chosen tables do not exist yet. The returned report's ``ok`` is False when a restored
    table's count or checksum differs from the snapshot's metadata, or a table the snapshot
    counted was not validated.

    Owners, privileges, policies and (into a database it creates) the database's own
    properties are carried when the target can take them, else named in the report's
    ``not_restored`` (carry.py); ``roles`` first creates the snapshot's roles the target
    cluster lacks (pgglobals.py)."""
    meta = _restorable_meta(snap)
    method = meta.get("checksum_method", "md5-rowsum-v1")
    partial = bool(tables or schemas)
    if partial and force:
        raise UsageError(
            "--force restores a whole database; --table/--schema restore into a database "
            "that does not have those tables yet (a new one, or restore and copy over)"
        )
    tree = await repo.load_tree(bytes.fromhex(snap.tree))
    node = _dump_node(tree, meta)
    globals_text, no_globals = await _globals_text(repo, tree, meta)
    pg_restore = await asyncio.to_thread(find_tool, "pg_restore", pg_bin_dir)
    check_restore_tool(pg_restore, int(meta.get("pg_dump_major") or 0), str(meta.get("pg_dump_version")))
    started = time.monotonic()
    layout = await read_layout(repo, node)
    entries = list(layout.entries.values())
    # A dump in parts (dump_parts.py): the others' tables of contents, read before anything changes.
    parted = await load_parts(repo, tree, read_parts(meta), node) if meta.get("dump_parts") is not None else []
    expected, checksums = snapshot_tables(meta, layout)
    if method not in _ROW_DIGESTS and method != dumpsum.METHOD:
        checksums, method = {}, "count-only"  # a method this version does not know: counts only
    if partial:
        want_tables, want_schemas = _resolve(entries, tables, schemas)  # a usage error before anything changes
    created, objects = await _prepare_database(target)
    name = target.params["dbname"]
    report = DbRestoreReport(snap.id, name, target.describe(), created, partial=partial, restore_id=restore_id)
    extra: list[str] = []
    list_text: str | None = None
    data_keys = [e.key for e in entries if e.desc == "TABLE DATA"] if not parted else parts_data_keys(parted)
    chosen_ids = [e.dump_id for e in entries]
    target_roles: carry.TargetRoles | None = None
    try:
        if partial:
            chosen = await _partial_selection(target, name, entries, want_tables, want_schemas)
            data_keys = [names.key(*t) for t in chosen.data_tables]
            chosen_keys = {names.key(*t) for t in chosen.tables}
            if parted:  # the data of the chosen tables, in whichever part it is
                data_keys = [k for k in parts_data_keys(parted) if k in chosen_keys]
            expected = {t: n for t, n in expected.items() if t in chosen_keys}
            chosen_ids = chosen.ids
        elif objects:
            if not force:
                raise RestoreRefused(
                    f"database {name!r} is not empty ({objects} objects); restore into a new or "
                    f"empty database, or give --force to replace its contents (a safety "
                    f"backup of it is taken first)"
                )
            _refuse_force_parts(snap, parted, name)
            report.safety_snapshot = await _safety_backup(repo, snap, target, db, restore_id)
            extra = ["--clean", "--if-exists"]
        by_id = layout.entries
        target_roles, plan = await _carry_before(
            target, [by_id[i] for i in chosen_ids], globals_text, no_globals, roles, report
        )
        if partial or plan.exclude:
            kept = [i for i in chosen_ids if i not in plan.exclude]
            list_text = "".join(f"{i}; {by_id[i].desc}\n" for i in kept)
        await _feed(
            repo,
            node,
            parted,
            target,
            pg_restore.path,
            extra,
            list_text,
            plan.owners,
            chosen.skipped_fks if partial else [],
            report,
            set(data_keys) if partial else None,
        )
    except BaseException:
        await _undo(target, created, report)
        raise
    if not partial and target_roles is not None:
        await _carry_database(target, name, meta.get("database_properties"), target_roles, created, report)
    # Tables whose rows are in the dump but that the snapshot has no count for: extension
    # configuration tables (extension members are left out of the counts). Reported, not hidden.
    report.skipped = [
        {"table": k, "reason": "the snapshot records no row count for it (extension member?)"}
        for k in dict.fromkeys(data_keys)
        if k not in expected
    ]
    conn = await target.connect()
    try:
        actual, notes, checksums = await _restored_stats(
            conn,
            target,
            pg_bin_dir,
            expected,
            checksums,
            meta,
            merged_layout(parted) if parted else layout,
            partial,
            method,
            report,
        )
        if not checksums and report.count_only_reason is None and expected:
            report.count_only_reason = "the snapshot records no row checksums (row_checksums = false)"
        if partial:
            report.schema_fingerprint_match = None
        else:
            await _check_whole_database(conn, meta, report)
    except psycopg.Error as exc:
        raise target.failed("validating", exc) from None
    finally:
        await conn.close()
    report.tables = _table_checks(expected, actual, checksums, notes)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _refuse_force_parts(snap: Snapshot, parted: list, name: str) -> None:
    """--force replaces a database in one transaction, so a failure leaves it as it was: a
    dump in parts is restored step by step (restore_parts.py), so it is refused."""
    if parted:
        raise RestoreRefused(
            f"snapshot {snap.short_id} holds its dump in {len(parted)} parts, restored step by step, "
            f"not in one transaction: --force cannot replace database {name!r} with it and leave it "
            f"as it was on failure; restore into a new database, or drop {name!r} first"
        )


async def _feed(
    repo: Repository,
    node: Node,
    parted: list[LoadedPart],
    target: PgTarget,
    pg_restore: Path,
    extra: list[str],
    list_text: str | None,
    owners: bool,
    skipped_fks: list[str],
    report: DbRestoreReport,
    chosen: set[str] | None,
) -> None:
    """The dump (or its parts, restore_parts.py) to pg_restore; ``chosen``: the keys of the
    tables whose data a partial restore takes (None: all)."""
    if not parted:
        await _run_pg_restore(repo, node, target, pg_restore, extra, list_text, owners, skipped_fks, report)
        return
    others = data_lists(parted, chosen)
    await restore_parts(repo, parted, target, pg_restore, extra, list_text, others, owners, report)
    report.warnings[:0] = [f"foreign key {fk} left out: it joins a table that is not restored" for fk in skipped_fks]


async def _safety_backup(
    repo: Repository, snap: Snapshot, target: PgTarget, db: DatabaseConfig | None, restore_id: str
) -> str:
    """A snapshot of the target as it is, before --force replaces it; its id."""
    safety = await backup_logical(
        repo,
        db or DatabaseConfig(),
        tags=("safety",),
        target=target,
        extra_metadata={
            "safety_for": {
                "snapshot": snap.id,
                "target": target.describe(),
                "database": target.params["dbname"],
                "restore": restore_id,
                "conninfo": target.conninfo(),
            }
        },
    )
    return safety.id
