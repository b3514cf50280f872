"""After a logical restore, the checks against the snapshot's metadata: each restored
table's row count and checksum by the snapshot's method (``_restored_stats``; for ``dump-
blake3-v1``, ``_dump_stats`` reads the target's own ``pg_dump --data-only`` stream, and a
table whose column order changed with copy_checksum), and after a whole-database restore
the schema fingerprint and the large objects (``_check_whole_database``)."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg

from core.sources.postgres import dumpsum, names
from core.sources.postgres.catalog import _rows
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.fingerprint import FINGERPRINT_METHOD, schema_fingerprint
from core.sources.postgres.restore_report import DbRestoreReport
from core.sources.postgres.row_stats import _PROBE, large_object_stats, table_stats
from core.sources.postgres.table_checksums import copy_checksum, copy_trailer, dump_checksums


async def _restored_stats(
    conn: psycopg.AsyncConnection,
    target: PgTarget,
    pg_bin_dir,
    expected: dict[str, int],
    checksums: dict[str, str],
    meta: dict,
    layout: dumpsum.DumpLayout,
    partial: bool,
    method: str,
    report: DbRestoreReport,
) -> tuple[Mapping[str, tuple[int, str | None]], dict[str, str], dict[str, str]]:
    """The restored tables' counts and checksums by the snapshot's method, notes per table,
    and the checksums still to compare (none when they cannot be: the reason goes into
    ``report``)."""
    if method == dumpsum.METHOD:
        actual, notes, note = await _dump_stats(conn, target, pg_bin_dir, expected, checksums, meta, layout, partial)
        if note:
            checksums = {}
            report.count_only_reason = note
            report.warnings.append(note)
        return actual, notes, checksums
    probe = meta.get("checksum_probe")
    if probe is not None and probe != (await _rows(conn, _PROBE))[0][0]:
        checksums = {}  # a server of the other byte order: counts only (checksum_ok is null)
        report.count_only_reason = "restored on a server of the other byte order than the backup's"
    return await table_stats(conn, set(expected), method), {}, checksums


async def _check_whole_database(conn: psycopg.AsyncConnection, meta: dict, report: DbRestoreReport) -> None:
    """After a whole-database restore: the schema fingerprint and the large objects against
    the snapshot's."""
    fp_method = meta.get("schema_fingerprint_method")
    if fp_method in (None, FINGERPRINT_METHOD):
        report.schema_fingerprint_match = (await schema_fingerprint(conn, fp_method)) == meta.get("schema_fingerprint")
    else:  # a newer program's method: not compared, and said so
        report.schema_fingerprint_match = None
        report.warnings.append(f"schema fingerprint not compared: unknown method {fp_method!r}")
    lo_want = meta.get("large_objects")
    if isinstance(lo_want, dict):
        lo_got = await large_object_stats(conn)
        if lo_got is not None:
            report.large_objects = {"expected": lo_want, "actual": lo_got, "ok": lo_got == lo_want}


async def _dump_stats(
    conn: psycopg.AsyncConnection,
    target: PgTarget,
    pg_bin_dir,
    expected: dict[str, int],
    checksums: dict[str, str],
    meta: dict,
    layout: dumpsum.DumpLayout,
    partial: bool,
) -> tuple[dict[str, tuple[int, str | None]], dict[str, str], str | None]:
    """Row counts (SQL) and dump-stream checksums of the restored tables (``expected``'s keys).
    Returns them, a note per table whose checksum was taken another way (or could not be), and
    a note saying why no checksum was compared (then only counts are).

    A table is read back with ``pg_dump --data-only`` like at backup; when its COPY column list
    there differs from the one in the backup's dump (a column order pg_restore could not keep:
    inheritance children), it is read again with the dump's column list (copy_checksum)."""
    tables = set(expected)
    counts = await table_stats(conn, tables, "count-only")
    ((version_num,),) = await _rows(conn, "SELECT current_setting('server_version_num')::int")
    dumped = meta.get("server_version_num")
    notes: dict[str, str] = {}
    sums: dict[str, str | None] = {}
    if isinstance(dumped, int) and dumped // 10000 != version_num // 10000:
        # Another major version may print some types differently: the checksums would
        # differ for rows that are the same.
        note = (
            f"row checksums not compared: restored into PostgreSQL {version_num // 10000}, "
            f"dumped from {dumped // 10000}; row counts compared"
        )
        return {t: (c, None) for t, (c, _) in counts.items()}, notes, note
    encoding = layout.encoding
    got = await dump_checksums(target, pg_bin_dir, tables if partial else None, encoding)
    if got.error:
        return (
            {t: (c, None) for t, (c, _) in counts.items()},
            notes,
            f"row checksums not compared ({got.error}); row counts compared",
        )
    sums.update(got.tables)
    original = layout.data_entries()
    restored = got.layout.data_entries() if got.layout is not None else {}
    for t in sorted(tables & set(checksums)):
        o, r = original.get(t), restored.get(t)
        if o is None:
            continue
        want = names.copy_columns(o.copy_stmt)
        have = names.copy_columns(r.copy_stmt) if r is not None else None
        if want is None or (have is not None and have[2] == want[2]):
            continue
        schema, rel, columns = want
        try:
            trailer = copy_trailer(got.tails.get(t, b""), layout.int_size)
            sums[t] = await copy_checksum(conn, schema, rel, columns, layout.int_size, encoding, trailer)
            notes[t] = "checksum read with the dump's column order (the restored table orders its columns otherwise)"
        except psycopg.Error as exc:
            sums[t] = None
            notes[t] = f"checksum not taken: {target.scrub(str(exc).strip().splitlines()[0])}"
    return {t: (c, sums.get(t)) for t, (c, _) in counts.items()}, notes, None
