"""What a logical backup records about the database, read on the dump's connection in its
exported snapshot beside pg_dump: versions, size, encoding, schema fingerprint,
extensions, large objects and database properties (``_metadata``), and the row counts the
dump stream leaves to SQL (``_sql_counts``: tables of ``SQL_COUNT_PAGES`` or more at
once, the others as the stream names them)."""

from __future__ import annotations

import asyncio

import psycopg

from core.sources.postgres import carry, names
from core.sources.postgres.catalog import _TABLES_PAGES, _rows
from core.sources.postgres.fingerprint import FINGERPRINT_METHOD, schema_fingerprint
from core.sources.postgres.logical_snapshot import TABLE_KEYS
from core.sources.postgres.row_stats import batched_counts, large_object_stats

# A table this large (by relpages) is counted in SQL from the start, as every table was
# before counts came from the stream: its data would pass dumpsum.COUNT_LIMIT anyway, and
# its count(*) then overlaps pg_dump's catalog reads, not only its COPY of the same table.
SQL_COUNT_PAGES = 32


async def _metadata(
    conn: psycopg.AsyncConnection, listed: asyncio.Future, only: frozenset[tuple[str, str]] = frozenset()
) -> dict:
    """What the snapshot records about the database, read in the dump's exported snapshot
    beside pg_dump, but the row counts: the tables to count are handed to ``listed``
    ((schema, name, relpages, size, reltuples) each) and counted by the stream and _sql_counts; the row
    checksums come from the dump stream itself (dumpsum). ``only``: a dump of just these
    tables, so just these are counted."""
    # The counts run beside pg_dump and must not take its cores: a parallel count(*) of a
    # 6.4 M-row table cost 0.56 s of server CPU across three processes, a serial one 0.43 s.
    await conn.execute("SET max_parallel_workers_per_gather = 0")
    await conn.execute("SET jit = off")
    ((version, version_num, dbname, size, encoding),) = await _rows(
        conn,
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
        "current_database(), pg_database_size(current_database()), "
        "pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()",
    )
    tables = await _rows(conn, _TABLES_PAGES)
    listed.set_result([t for t in tables if (t[0], t[1]) in only] if only else tables)
    extensions = {
        name: ver for name, ver in await _rows(conn, "SELECT extname, extversion FROM pg_extension ORDER BY 1")
    }
    return {
        "dbname": dbname,
        "database_version": version,
        "server_version_num": version_num,
        "database_size": size,
        "encoding": encoding,
        "table_keys": TABLE_KEYS,
        "schema_fingerprint": await schema_fingerprint(conn),
        "schema_fingerprint_method": FINGERPRINT_METHOD,
        "extensions": extensions,
        "large_objects": await large_object_stats(conn),
        "database_properties": await carry.database_properties(conn),
    }


_END = object()  # the stream has ended: _sql_counts stops


async def _sql_counts(
    conn: psycopg.AsyncConnection, listed: asyncio.Future, uncounted: asyncio.Queue
) -> dict[str, int]:
    """``count(*) FROM ONLY``, in the dump's snapshot, of the tables the dump stream does not
    count (dumpsum.DumpChecksums.counts): at once those of SQL_COUNT_PAGES or more, then each
    as soon as the stream says so (``uncounted``: a table's key once its data block is too
    long to count there; None: every table, the stream cannot be read), beside pg_dump as
    before; until _END."""
    rows = await listed
    tables = {names.key(schema, name): (schema, name) for schema, name, *_ in rows}
    large = [(schema, name) for schema, name, pages, *_ in rows if pages >= SQL_COUNT_PAGES]
    counts: dict[str, int] = await batched_counts(conn, large) if large else {}
    while (item := await uncounted.get()) is not _END:
        todo = (
            [t for k, t in tables.items() if k not in counts]
            if item is None
            else [tables[item]]
            if item in tables and item not in counts
            else []
        )  # not listed: an extension's
        if todo:
            counts.update(await batched_counts(conn, todo))
    return counts
