"""Logical backup and restore: pg_dump streamed into the repository, pg_restore fed from it.

Backup: one REPEATABLE READ READ ONLY transaction exports its snapshot; pg_dump
(``-Fc -Z0 --snapshot=ID``) dumps exactly that state while the same transaction reads the
catalog and counts every table's rows (a batch of tables per statement), so the metadata
describes the dump exactly.
pg_dump's stdout is chunked as it arrives (StreamWriter): no temp file, flat memory.
Beside it ``pg_dumpall --globals-only`` (pgglobals.py) records the cluster's roles.

Restore: the dump's blobs, in order, are written to ``pg_restore --single-transaction`` on
stdin (``--no-owner`` and a ``-L`` list without some grants when the target cannot take
them: carry.py decides, and the report names what was not restored); then each table's rows are counted and checksummed and
compared with the snapshot's metadata. ``--table``/``--schema`` (SQL identifier rules,
names.py) are resolved against the dump's table of contents, read from its header in the
repository, and the chosen entries restored with ``-L`` (see toc.py). ``--force`` over a non-empty database first backs it up (a snapshot tagged
``safety``), then restores with ``--clean --if-exists`` in the same single transaction, so
a failed restore leaves the database as it was.

Row checksums (``dump-blake3-v1``, dumpsum.py): each table's data block in pg_dump's own
output is hashed as it streams into the repository, so a backup costs the server nothing
beyond pg_dump and a row count; validation hashes ``pg_dump --data-only`` of the restored
tables the same way, and a table whose restored column order differs from the dump's COPY
list (inheritance) with ``COPY (the dump's columns) TO STDOUT`` (copy_checksum). Snapshots taken before it carry a server-side digest of the multiset
of rows (``hash64x2-rowsum-v2``, ``md5-rowsum-v1``: each row's ``row::text`` hashed and
summed in SQL), still validated with their own method.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import blake3
import psycopg
from psycopg import sql

from core.backup.run import DumpPosition, DumpProgress
from core.backup.single_file import single_file_snapshot
from core.config import DatabaseConfig
from core.errors import AxisorError, DatabaseError, RestoreRefused, UsageError
from core.repository.format import BlobType
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import FILE, Node, Tree
from core.backup.stream import StreamWriter
from core.sources.postgres import carry, dumpsum, names, pgglobals, toc
from core.restore.stream import iter_content
from core.sources.postgres.child import Running, StderrReader, last_lines, spawn, start, stop_process, store_output
from core.sources.postgres.connection import PgTarget, one_row
from core.sources.postgres.tools import Tool, check_dump_tool, check_restore_tool, find_tool

SOURCE = "database"
# How the keys of ``tables`` and ``checksums`` in a snapshot's metadata are written: names.key
# (``schema.name``, a part quoted unless it is a plain lower-case identifier). Snapshots without
# it wrote ``f"{schema}.{name}"`` unquoted: read through the dump's table of contents.
TABLE_KEYS = names.TABLE_KEYS
_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"
_USER_NS = (
    f"n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"
)
PREFETCH = 4

# Ordinary tables and leaf partitions (the rows live there), not extension members (pg_dump
# leaves their data out).
_TABLES = f"""
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND {_USER_NS}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2"""
# The same, with each table's size in pages as of its last VACUUM or ANALYZE (0: never),
# and for progress its size on disk now (heap and TOAST: what its COPY text comes from) and
# its estimated rows (reltuples, as of the same; -1 or 0: never counted).
_TABLES_PAGES = _TABLES.replace(
    "SELECT n.nspname, c.relname FROM",
    "SELECT n.nspname, c.relname, c.relpages, pg_table_size(c.oid), c.reltuples FROM",
)
# A table this large (by relpages) is counted in SQL from the start, as every table was
# before counts came from the stream: its data would pass dumpsum.COUNT_LIMIT anyway, and
# its count(*) then overlaps pg_dump's catalog reads, not only its COPY of the same table.
SQL_COUNT_PAGES = 32

_FINGERPRINT_QUERIES = (
    f"""SELECT n.nspname, c.relname, c.relkind::text, a.attname, format_type(a.atttypid, a.atttypmod),
           a.attnotnull, coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_USER_NS}
    ORDER BY 1, 2, a.attnum""",
    f"""SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid)
    FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_NS} ORDER BY 1, 2, 3""",
    f"""SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_NS} ORDER BY 1, 2""",
    f"""SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_NS} ORDER BY 1, 2""",
)


# canonical-v2 columns: the position among the live columns (dropped ones leave no hole, as
# in a restore) and whether the table inherits (partitions included).
_FINGERPRINT_COLUMNS = f"""
SELECT n.nspname, c.relname, c.relkind::text,
       EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid),
       row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
       a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), a.attgenerated::text
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_USER_NS}"""
FINGERPRINT_METHOD = "canonical-v2"


# -- helpers -----------------------------------------------------------------------------


async def _rows(conn: psycopg.AsyncConnection, query, params=None) -> list[tuple]:
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def schema_fingerprint(conn: psycopg.AsyncConnection, method: str | None = FINGERPRINT_METHOD) -> str:
    """sha256 over the catalog (columns, types, defaults, constraints, indexes, sequences).

    ``canonical-v2`` (what backups record): rows keyed by (schema, name) and sorted here, not
    by the server's collation; a table's columns in their order, except for inheritance
    children and partitions, whose order pg_dump/pg_restore cannot keep (a child comes back
    with the parent's columns first): there the column set, sorted by name. ``None``: the
    first method (ordered by attnum everywhere), for snapshots taken before it, which carry
    no ``schema_fingerprint_method``."""
    h = hashlib.sha256()
    if method is None:
        for q in _FINGERPRINT_QUERIES:
            for row in await _rows(conn, q):
                h.update(repr(tuple(str(v) for v in row)).encode())
                h.update(b"\n")
            h.update(b"--\n")
        return h.hexdigest()
    if method != FINGERPRINT_METHOD:
        raise ValueError(f"unknown schema fingerprint method {method!r}")
    for section in await fingerprint_rows(conn):
        # One encoder (json.dumps builds one per call when given options) and one update
        # per section: the same bytes as json.dumps(row, ensure_ascii=False) + "\n" per row.
        h.update("".join([_ROW_JSON(row) + "\n" for row in section]).encode())
        h.update(b"--\n")
    return h.hexdigest()


_ROW_JSON = json.JSONEncoder(ensure_ascii=False).encode


async def fingerprint_rows(conn: psycopg.AsyncConnection) -> list[list[list[str]]]:
    """The canonical-v2 rows, section by section, sorted (see schema_fingerprint)."""
    sections: list[list[list[str]]] = []
    columns = [[str(v) for v in row] for row in await _rows(conn, _FINGERPRINT_COLUMNS)]
    out: list[list[str]] = []
    for nsp, rel, kind, child, pos, *rest in columns:
        out.append([nsp, rel, kind, "" if child == "True" else pos, *rest])
    sections.append(sorted(out))
    for q in _FINGERPRINT_QUERIES[1:]:
        sections.append(sorted([str(v) for v in row] for row in await _rows(conn, q)))
    return sections


async def table_counts(conn: psycopg.AsyncConnection) -> dict[str, int]:
    return {name: count for name, (count, _) in (await table_stats(conn, method="count-only")).items()}


# Output settings that make row::text the same on every server and session.
_CANONICAL = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
    "SET lc_monetary = 'C'",
)
# Server-side methods: snapshots taken before dump-blake3-v1 are validated with their own.
_ROW_DIGESTS = {
    # Two seeded 64-bit hashes of each row's text, summed exactly (int128 sums). md5 plus the
    # hex-to-numeric casts cost 26.6 s of server CPU on 6.4 M pgbench rows, three times what
    # pg_dump took; this costs 5.5 s. OFFSET 0 keeps row::text computed once per row.
    "hash64x2-rowsum-v2": (
        "SELECT count(*), coalesce(sum(hashtextextended(t, 0)), 0)::text, "
        "coalesce(sum(hashtextextended(t, 1)), 0)::text "
        "FROM (SELECT __axisor_row::text AS t FROM ONLY {}.{} AS __axisor_row OFFSET 0) AS rows"
    ),
    # [database] row_checksums = false: exact counts only, one cheap scan per table.
    "count-only": "SELECT count(*), '0', '0' FROM ONLY {}.{}",
    # Snapshots taken before v2 are still validated with their own method.
    "md5-rowsum-v1": (
        "SELECT count(*), coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text, "
        "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text "
        "FROM (SELECT md5(__axisor_row::text) AS h FROM ONLY {}.{} AS __axisor_row) AS rows"
    ),
}
# hashtextextended reads words in native byte order: a server of the other endianness gives
# other sums. The hash of a fixed string, recorded with the checksums, tells them apart.
_PROBE = "SELECT hashtextextended('axisor checksum probe', 0)::text"


def _digest(count: int, a: str, b: str) -> str:
    return hashlib.sha256(f"{count}:{a}:{b}".encode()).hexdigest()[:32]


async def table_stats(
    conn: psycopg.AsyncConnection, only: set[str] | None = None, method: str = "count-only"
) -> dict[str, tuple[int, str]]:
    """Table key (names.key) -> (row count, checksum of its rows) for every user table (or ``only``)."""
    for stmt in _CANONICAL:
        await conn.execute(stmt)
    stats: dict[str, tuple[int, str]] = {}
    for schema, name in await _rows(conn, _TABLES):
        key = names.key(schema, name)
        if only is not None and key not in only:
            continue
        q = sql.SQL(_ROW_DIGESTS[method]).format(sql.Identifier(schema), sql.Identifier(name))
        ((count, a, b),) = await _rows(conn, q)
        stats[key] = (count, _digest(count, a, b))
    return stats


async def large_object_stats(conn: psycopg.AsyncConnection) -> dict | None:
    """Count and checksum of the large objects (their oids and contents); None when this
    role may not read them all (not a superuser, lo_compat_privileges off)."""
    ((allowed,),) = await _rows(
        conn,
        "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
        "OR current_setting('lo_compat_privileges')::bool",
    )
    if not allowed:
        return None
    ((count, a, b),) = await _rows(
        conn,
        (
            "SELECT count(*), coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text, "
            "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text FROM "
            "(SELECT md5(oid::text || ':' || md5(lo_get(oid))) AS h FROM pg_largeobject_metadata) AS los"
        ),
    )
    return {"count": count, "checksum": _digest(count, a, b)}


async def _metadata(conn: psycopg.AsyncConnection, listed: asyncio.Future) -> dict:
    """What the snapshot records about the database, read in the dump's exported snapshot
    beside pg_dump, but the row counts: the tables to count are handed to ``listed``
    ((schema, name, relpages, size, reltuples) each) and counted by the stream and _sql_counts; the row
    checksums come from the dump stream itself (dumpsum)."""
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
    listed.set_result(await _rows(conn, _TABLES_PAGES))
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


COUNT_BATCH = 200


async def batched_counts(conn: psycopg.AsyncConnection, tables: list[tuple[str, str]]) -> dict[str, int]:
    """``count(*) FROM ONLY`` of every (schema, name) in ``tables``, by names.key, ``COUNT_BATCH``
    tables to a statement (``UNION ALL``): one round trip per batch, not per table (1,000 tables
    were 1,000 round trips beside pg_dump). Each branch carries its index: the result order of
    a UNION ALL is not promised."""
    out: dict[str, int] = {}
    for at in range(0, len(tables), COUNT_BATCH):
        batch = tables[at : at + COUNT_BATCH]
        q = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}::int, count(*) FROM ONLY {}.{}").format(
                sql.Literal(i), sql.Identifier(schema), sql.Identifier(name)
            )
            for i, (schema, name) in enumerate(batch)
        )
        for i, count in await _rows(conn, q):
            out[names.key(*batch[i])] = count
    return {names.key(schema, name): out[names.key(schema, name)] for schema, name in tables}


# -- backup ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class StartedDump:
    """pg_dump running in an exported snapshot, its output already read ahead (PipeReader,
    bounded); the metadata is read beside it in the same snapshot once a backup takes it.

    Started before the repository is open (``start_dump``), so pg_dump's connection,
    catalog reads and first tens of megabytes overlap the key derivation, the lock and the
    index load: on a one-shot CLI backup that start-up was a tenth of pg_dump's own time.
    ``backup_logical`` stores it; ``close`` stops whatever is left (safe to call twice)."""

    target: PgTarget
    pg_dump: Tool
    conn: psycopg.AsyncConnection
    dbname: str
    child: Running
    started: float
    # The metadata queries (and the row counts the stream leaves to SQL, which scan their
    # tables) start only once the backup takes the dump: a run refused by a held lock,
    # retried for minutes, must not rescan them.
    metadata: asyncio.Future | None = None
    counting: asyncio.Future | None = None  # _sql_counts
    listed: asyncio.Future | None = (
        None  # the tables the metadata counts, (schema, name, relpages, size, reltuples) each
    )

    def read_metadata(self, uncounted: asyncio.Queue) -> asyncio.Future:
        """Start reading the metadata, and counting in SQL what ``uncounted`` names (_sql_counts)."""
        if self.metadata is None:
            self.listed = asyncio.get_running_loop().create_future()
            self.metadata = asyncio.ensure_future(_metadata(self.conn, self.listed))
            self.counting = asyncio.ensure_future(_sql_counts(self.conn, self.listed, uncounted))
        return self.metadata

    async def close(self) -> None:
        await self.child.stop()  # pg_dump may still be running: the backup stopped first
        for task in (self.metadata, self.counting):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.conn.close()


async def start_dump(db: DatabaseConfig, target: PgTarget | None = None) -> StartedDump:
    """Connect, export a snapshot, check pg_dump against the server and start it (its
    output read ahead). Raises DatabaseError, leaving nothing running."""
    target = target if target is not None else PgTarget.from_config(db)
    started = time.monotonic()
    # ``pg_dump --version`` runs while the connection is made.
    found = asyncio.ensure_future(asyncio.to_thread(find_tool, "pg_dump", db.pg_bin_dir))
    try:
        conn = await target.connect()
    except BaseException:
        (tool,) = await asyncio.gather(found, return_exceptions=True)
        if isinstance(tool, AxisorError):
            raise tool from None  # no pg_dump at all says more than the connection failing
        raise
    try:
        pg_dump = await found
        async with conn.cursor() as cur:
            await cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await cur.execute(
                "SELECT pg_export_snapshot(), current_setting('server_version_num')::int, "
                "current_setting('server_version'), current_database()"
            )
            snapshot_id, version_num, version, dbname = one_row(await cur.fetchone())
        check_dump_tool(pg_dump, version_num, version)
        argv = [
            str(pg_dump.path),
            "--format=custom",
            "--compress=0",
            f"--snapshot={snapshot_id}",
            "--no-password",
            "-d",
            target.with_dbname(dbname).conninfo(),
        ]
        child = start(argv, dump_env(target))
    except psycopg.Error as exc:
        await conn.close()
        raise target.failed("reading", exc) from None
    except BaseException:
        await conn.close()
        raise
    return StartedDump(target, pg_dump, conn, dbname, child, started)


async def backup_logical(
    repo: Repository,
    db: DatabaseConfig,
    *,
    backup_set: str = "",
    tags: tuple[str, ...] = (),
    on_bytes: DumpProgress | None = None,
    target: PgTarget | None = None,
    extra_metadata: dict | None = None,
    started: Awaitable[StartedDump] | None = None,
) -> Snapshot:
    """Dump the configured database (or ``target``) into the repository and commit one snapshot.
    ``started``: the dump, already begun by ``start_dump`` (the caller closes it if this is
    never called).

    Any failure (connection, version, pg_dump's exit status, the repository) raises before
    a snapshot is saved; chunks already uploaded are adopted by a later backup."""
    dump = await (started if started is not None else start_dump(db, target))
    target = dump.target
    before = list(repo.stats.by_type.get(BlobType.DATA, [0, 0, 0]))
    # The cluster's roles and memberships (pgglobals), read beside the dump: small, and not
    # part of the database's snapshot anyway.
    globals_read = asyncio.ensure_future(
        pgglobals.dump_globals(target, dump.pg_dump.path.parent, db.globals_with_passwords)
    )
    try:
        ids, size, metadata, warnings = await _dump(repo, dump, on_bytes, db.row_checksums)
        extra, globals_meta, globals_warning = await _store_globals(repo, await globals_read)
    except psycopg.Error as exc:
        raise target.failed("reading", exc) from None
    finally:
        globals_read.cancel()
        await dump.close()
    if globals_warning:
        warnings = (*warnings, globals_warning)

    dbname, pg_dump = dump.dbname, dump.pg_dump
    dump_file = dbname.replace("/", "_").replace("\0", "_") + ".dump"  # a safe single tree name
    metadata.update(
        {
            "mode": "logical",
            "format": "custom",
            "dump_file": dump_file,
            "dump_size": size,
            "pg_dump_version": pg_dump.version,
            "pg_dump_major": pg_dump.major,
            "application_version": db.application_version or os.environ.get("AXISOR_APPLICATION_VERSION"),
            "duration_seconds": round(time.monotonic() - dump.started, 3),
            "globals": globals_meta,
            **(extra_metadata or {}),
        }
    )
    snap = await single_file_snapshot(
        repo,
        name=dump_file,
        ids=ids,
        size=size,
        before=before,
        source=SOURCE,
        paths=(target.describe(),),
        backup_set=backup_set,
        tags=tags,
        metadata=metadata,
        warnings=warnings,
        extra=extra,
    )
    snap_id = await repo.save_snapshot(snap)
    return replace(snap, id=snap_id)


async def _store_globals(
    repo: Repository, got: pgglobals.DumpedGlobals
) -> tuple[tuple[tuple[str, tuple[bytes, ...], int], ...], dict, str | None]:
    """The globals file's tree entry, its ``globals`` metadata, and a warning when it is missing."""
    if got.data is None:
        return (
            (),
            {"file": None, "role_passwords": got.passwords, "error": got.error},
            (
                f"globals (roles, memberships, tablespaces) not recorded: {got.error}; "
                f"restore --roles will not be available for this snapshot"
            ),
        )
    writer = StreamWriter(repo)
    ids, size = await writer.store(io.BytesIO(got.data))
    await writer.drain()
    return (
        ((pgglobals.GLOBALS_FILE, ids, size),),
        {"file": pgglobals.GLOBALS_FILE, "size": size, "role_passwords": got.passwords},
        None,
    )


def dump_env(target: PgTarget) -> dict[str, str]:
    """pg_dump's environment: the target's credentials, and the output settings pg_dump does
    not pin itself, so a table's COPY text (and so its checksum) is the same on any server."""
    env = target.child_env()
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {dumpsum.PGOPTIONS}".strip()
    return env


# Bytes a heap row takes beyond its data: its header (23 bytes, aligned to 24) and its line
# pointer. What a table's COPY text is expected to take: its size less that per row, where
# the catalog has a row estimate (a quarter of the size at least: wide values are TOASTed).
ROW_OVERHEAD = 28


def expected_text(size: int, rows: float) -> int:
    return max(size - int(ROW_OVERHEAD * rows), size // 4) if rows > 0 else size


class DumpForecast:
    """The progress a logical dump tells with each take of its stream: the table whose data
    is passing (dumpsum reads it from the stream) with its size, and the stream's length
    forecast from the catalog (the tables listed in the dump's snapshot, their sizes and
    row estimates: expected_text) once it has been read. The expectations still to come
    are scaled by the ratio of stream to expectation over the tables that have passed (1
    until CALIBRATE bytes of them have). Work per take, not per row: each passed table is
    looked at once."""

    CALIBRATE = 256 * 1024

    def __init__(self, sums: dumpsum.DumpChecksums | None, listed: asyncio.Future, on_bytes: DumpProgress) -> None:
        self._sums, self._listed, self._on_bytes = sums, listed, on_bytes
        self._sizes: dict[str, int] | None = None  # every listed table's size on disk, by names.key
        self._expect: dict[str, int] = {}  # and its expected length in the stream
        self._all = 0  # the sum of the expectations
        self._left = 0  # the expectations of the listed tables whose data has not passed yet
        self._seen = 0  # how many of sums.passed are accounted for
        self._stream = self._expected = 0  # stream bytes and expectations of the passed tables: the ratio
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        self._on_bytes(n, self.position())

    def position(self) -> DumpPosition:
        sums = self._sums if self._sums is not None and self._sums.error is None else None
        # The table passing, else the last one that passed (a take can end between blocks).
        table = "" if sums is None else sums.passing or (sums.passed[-1][0] if sums.passed else "")
        sizes = self._sizes if self._sizes is not None else self._read_sizes()
        if sizes is None:
            return DumpPosition(table)
        if sums is None:  # no position in the stream: the expectations as they are
            return DumpPosition(table, None, max(self.done, self._all))
        expect = self._expect
        for key, length in sums.passed[self._seen :]:
            if key in expect:  # else a table not listed (an extension's)
                self._left -= expect[key]
                self._stream += length
                self._expected += expect[key]
        self._seen = len(sums.passed)
        ratio = self._stream / self._expected if self._expected >= self.CALIBRATE else 1.0
        ahead = self._left * ratio
        if sums.passing is not None and sums.passing in expect:  # of the table passing, what is left
            ahead -= min(expect[sums.passing] * ratio, sums.passing_bytes)
        # From where the stream has been read to, which is ahead of what is stored (the
        # chunker's window): the length read so far and what is still to come.
        return DumpPosition(table, sizes.get(table), max(self.done, sums.fed + int(max(0.0, ahead))))

    def _read_sizes(self) -> dict[str, int] | None:
        listed = self._listed
        if not listed.done() or listed.cancelled() or listed.exception() is not None:
            return None
        rows = listed.result()
        self._sizes = {names.key(schema, name): size or 0 for schema, name, _, size, _ in rows}
        self._expect = {
            names.key(schema, name): expected_text(size or 0, tuples or 0) for schema, name, _, size, tuples in rows
        }
        self._all = self._left = sum(self._expect.values())
        return self._sizes


async def _dump(
    repo: Repository, dump: StartedDump, on_bytes: DumpProgress | None, checksums: bool = True
) -> tuple[tuple[bytes, ...], int, dict, tuple[str, ...]]:
    """Store pg_dump's output in the repository while its connection (holding the snapshot)
    reads the metadata; the row checksums, and the row counts of the tables whose data is
    small, are taken from the dump as it is chunked, the other counts in SQL beside it.

    (1,000 tables of a few rows: their count(*) cost the server 0.17 s of CPU beside
    pg_dump's own 0.53 s, most of it opening each table and its indexes once more.)"""
    loop = asyncio.get_running_loop()
    uncounted: asyncio.Queue = asyncio.Queue()

    def tell(key: str | None) -> None:  # on the chunker's thread
        with contextlib.suppress(RuntimeError):  # the loop closed under a failed backup
            loop.call_soon_threadsafe(uncounted.put_nowait, key)

    sums = dumpsum.DumpChecksums(on_uncounted=tell) if checksums else None
    if sums is None:
        uncounted.put_nowait(None)  # row_checksums = false: the stream is not read, every table counted in SQL
    metadata_read = dump.read_metadata(uncounted)
    assert dump.listed is not None
    told = DumpForecast(sums, dump.listed, on_bytes) if on_bytes is not None else None
    out = await store_output(
        repo,
        dump.target,
        [],
        program="pg_dump",
        on_bytes=told,
        observe=sums.feed if sums is not None else None,
        running=dump.child,
        during=lambda: metadata_read,
    )
    metadata = out.during
    if sums is not None:
        sums.finish()
    uncounted.put_nowait(_END)
    assert dump.counting is not None and dump.listed is not None
    counted = await dump.counting
    in_stream = sums.counts if sums is not None and sums.error is None else {}
    # A key the stream named after the end (or a stream that failed at its very end): counted now.
    listed = [(schema, name) for schema, name, *_ in dump.listed.result()]
    missing = [t for t in listed if names.key(*t) not in counted and names.key(*t) not in in_stream]
    if missing:
        counted.update(await batched_counts(dump.conn, missing))
    tables = {k: counted[k] if k in counted else in_stream[k] for k in (names.key(*t) for t in listed)}
    metadata.update({"tables": tables, "total_tables": len(tables), "total_records": sum(tables.values())})
    warnings = [ln for ln in out.stderr.splitlines() if ln.strip()]
    metadata["checksum_method"], metadata["checksums"] = "count-only", {}
    if sums is not None:
        if sums.error is None:
            metadata["checksum_method"] = dumpsum.METHOD
            metadata["checksums"] = {t: sums.tables[t] for t in metadata["tables"] if t in sums.tables}
        else:
            warnings.append(f"row checksums not recorded (row counts only): {sums.error}")
    return out.ids, out.size, metadata, tuple(warnings)


async def dump_checksums(
    target: PgTarget, pg_bin_dir=None, tables: set[str] | None = None, encoding: str | None = None
) -> dumpsum.DumpChecksums:
    """The row checksums of ``target``'s tables (or just ``tables``, names.key keys), taken the
    way a backup takes them: ``pg_dump --data-only`` through the same parser, its output
    discarded (its table of contents, with each table's COPY column list, is kept in
    ``layout``). ``encoding``: the client encoding the backup's dump was written in."""
    pg_dump = await asyncio.to_thread(find_tool, "pg_dump", pg_bin_dir)
    argv = [str(pg_dump.path), "--data-only", "--format=custom", "--compress=0", "--no-blobs", "--no-password"]
    if encoding:
        argv.append(f"--encoding={encoding}")
    for t in sorted(tables or ()):
        # Every part quoted: pg_dump's patterns then match exactly (dots, capitals, *, newlines).
        argv.append("--table=" + ".".join('"' + part.replace('"', '""') + '"' for part in names.parse_key(t)))
    argv += ["-d", target.conninfo()]
    child = start(argv, dump_env(target))
    try:
        sums = await asyncio.to_thread(dumpsum.checksum_stream, child.stdout)
        code = await asyncio.to_thread(child.proc.wait)
    finally:
        await child.stop()
    if code != 0:
        detail = target.scrub(last_lines(child.errors.text())) or f"exit status {code}"
        raise DatabaseError(f"pg_dump of {target.describe()} (for its row checksums) failed (exit {code}): {detail}")
    return sums


# pg_dump's own session settings for its COPY (pg_backup_db.c, pg_dump.c setup_connection) plus
# dumpsum.PGOPTIONS: a COPY through psycopg with these prints every value as pg_dump does.
_PG_DUMP_SESSION = (
    "SET DateStyle = ISO",
    "SET IntervalStyle = postgres",
    "SET extra_float_digits = 3",
    "SET TimeZone = 'UTC'",
    "SET bytea_output = hex",
    "SET row_security = off",
    "SET synchronize_seqscans = off",
    "RESET lc_monetary",
)


def copy_trailer(tail: bytes, int_size: int) -> bytes:
    """The piece pg_dump writes after a table's rows (``\\.`` and newlines, pg_dump.c
    dumpTableData_copy), read from the end of a block it wrote (DumpChecksums.tails); b"" when
    that pg_dump writes none."""
    term = b"\\.\n\n\n"
    piece = b"\x00" + len(term).to_bytes(int_size, "little") + term
    return piece if tail.endswith(piece + b"\x00" * (1 + int_size)) else b""


async def copy_checksum(
    conn: psycopg.AsyncConnection,
    schema: str,
    name: str,
    columns: list[str],
    int_size: int,
    encoding: str | None,
    trailer: bytes = b"",
) -> str:
    """The dump-blake3-v1 checksum of a table read with ``COPY schema.name (columns) TO STDOUT``
    in pg_dump's session settings: the bytes pg_dump would have written for it with that
    column list (one length-prefixed piece per row, then the zero length that ends a block).

    For a table whose column order differs from the COPY list in the backup's dump (an
    inheritance child: pg_restore puts inherited columns first), ``pg_dump --data-only`` of
    the restored table lists the columns in the new order and its bytes differ though the
    rows are equal; this reads them in the dump's order. Per-row Python work: used only for
    such tables, at restore."""
    for stmt in _PG_DUMP_SESSION:
        await conn.execute(stmt)
    if encoding:
        await conn.execute(sql.SQL("SET client_encoding = {}").format(sql.Literal(encoding)))
    cols = sql.SQL(" ({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in columns)) if columns else sql.SQL("")
    q = sql.SQL("COPY {}.{}{} TO STDOUT").format(sql.Identifier(schema), sql.Identifier(name), cols)
    h = blake3.blake3()
    async with conn.cursor() as cur:
        async with cur.copy(q) as copy:
            async for row in copy:
                h.update(b"\x00" + len(row).to_bytes(int_size, "little"))
                h.update(row)
    h.update(trailer)
    h.update(b"\x00" * (1 + int_size))
    return h.hexdigest()[:32]


# -- restore -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableCheck:
    table: str  # names.key: "schema.name", parts quoted when not plain lower-case identifiers
    expected: int
    actual: int | None  # None: the table is missing after the restore
    expected_checksum: str | None = None  # None: the snapshot predates row checksums (or counts only)
    actual_checksum: str | None = None
    schema: str = ""
    name: str = ""
    note: str | None = None  # how the checksum was taken when not by pg_dump, or why it could not be

    @property
    def checksum_ok(self) -> bool | None:
        if self.expected_checksum is None:
            return None
        return self.actual_checksum == self.expected_checksum

    @property
    def ok(self) -> bool:
        return self.actual == self.expected and self.checksum_ok is not False


@dataclass
class DbRestoreReport:
    snapshot: str
    database: str
    target: str  # where, without credentials
    created: bool
    bytes: int = 0
    seconds: float = 0.0
    tables: list[TableCheck] = field(default_factory=list)
    schema_fingerprint_match: bool | None = False  # None: not compared (partial restore)
    warnings: list[str] = field(default_factory=list)
    partial: bool = False
    safety_snapshot: str | None = None  # the backup of the target taken before --force
    large_objects: dict | None = None  # {"expected": .., "actual": .., "ok": ..} when recorded
    restore_id: str = ""  # links the safety snapshot; `rollback RESTORE_ID`
    # Restored tables with rows that the snapshot has no row count for (extension configuration
    # tables: the backup leaves extension members out of its counts): [{"table", "reason"}].
    skipped: list[dict] = field(default_factory=list)
    count_only_reason: str | None = None  # why row checksums were not compared, when they were not
    # What the restore did not carry (ownership, privileges, policies, roles, database
    # properties), each with why (carry.py); empty when everything was carried (``carried``).
    not_restored: list[pgglobals.NotRestored] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)
    roles_created: list[str] = field(default_factory=list)  # by --roles

    @property
    def ok(self) -> bool:
        lo_ok = self.large_objects is None or self.large_objects.get("ok", True)
        return all(t.ok for t in self.tables) and lo_ok

    @property
    def mismatches(self) -> list[TableCheck]:
        return [t for t in self.tables if not t.ok]

    def validation(self) -> dict:
        """What was validated, counted: every table of the snapshot that was restored is in
        ``tables`` (a missing one fails), ``skipped`` are the others restored."""
        checked = [t for t in self.tables if t.actual is not None]
        return {
            "tables": len(self.tables) + len(self.skipped),
            "validated": len(self.tables),
            "with_checksum": sum(1 for t in self.tables if t.checksum_ok is not None),
            "count_only": sum(1 for t in self.tables if t.checksum_ok is None),
            "count_only_reason": self.count_only_reason,
            "skipped": list(self.skipped),
            "missing": len(self.tables) - len(checked),
            "failed": len(self.mismatches),
        }


def _dump_node(tree: Tree, metadata: dict) -> Node:
    want = metadata.get("dump_file")
    files = [n for n in tree.nodes if n.type == FILE]
    for n in files:
        if want is not None and n.name == str(want).encode():
            return n
    if len(files) == 1:
        return files[0]
    raise UsageError("this database snapshot holds no single dump file")


async def _maintenance(target: PgTarget) -> psycopg.AsyncConnection:
    last: DatabaseError | None = None
    for name in ("postgres", "template1"):
        try:
            return await target.with_dbname(name).connect()
        except DatabaseError as exc:
            last = exc
    assert last is not None
    raise last


_USER_OBJECTS = f"""
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_USER_NS})
     + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')"""


async def _prepare_database(target: PgTarget) -> tuple[bool, int]:
    """Create the target database when missing. Returns (created, user objects it holds)."""
    name = target.params.get("dbname")
    if not name:
        raise UsageError("--target-db must name a database")
    conn = await _maintenance(target)
    try:
        exists = await _rows(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if not exists:
            try:
                await conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
            except psycopg.Error as exc:
                raise DatabaseError(f"cannot create database {name!r}: {target.scrub(str(exc).strip())}") from None
            return True, 0
    finally:
        await conn.close()
    conn = await target.connect()
    try:
        ((objects,),) = await _rows(conn, _USER_OBJECTS)
    finally:
        await conn.close()
    return False, objects


async def _drop_database(target: PgTarget) -> None:
    with contextlib.suppress(DatabaseError, psycopg.Error):
        conn = await _maintenance(target)
        try:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(target.params["dbname"])))
        finally:
            await conn.close()


def _write_all(pipe, data: bytes) -> None:
    pipe.write(data)


_PRESENT = """
SELECT 'SCHEMA', '', nspname FROM pg_namespace
UNION ALL SELECT 'EXTENSION', '', extname FROM pg_extension
UNION ALL SELECT 'TYPE', n.nspname, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
UNION ALL SELECT 'FUNCTION', n.nspname, p.proname || '(' || coalesce((
    SELECT string_agg(format_type(a, NULL), ', ' ORDER BY i)
    FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS x(a, i)
  ), '') || ')' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
UNION ALL SELECT 'COLLATION', n.nspname, c.collname
  FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
UNION ALL SELECT 'TABLE', n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"""


async def _existing(target: PgTarget, tables: list[tuple[str, str]]) -> tuple[set[tuple], list[tuple[str, str]]]:
    """What the target already has (toc.presence_key tuples), and which of ``tables``."""
    conn = await target.connect()
    try:
        present = {tuple(r) for r in await _rows(conn, _PRESENT)}
        relations = {
            tuple(r)
            for r in await _rows(
                conn,
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')",
            )
        }
    finally:
        await conn.close()
    return present, [t for t in tables if t in relations]


async def read_layout(repo: Repository, node: Node) -> dumpsum.DumpLayout:
    """The dump's header and table of contents, read from the start of its blobs (the TOC comes
    first in a custom-format dump; only as many blobs as it spans are read)."""
    head = bytearray()
    reader = dumpsum.LayoutReader()
    async with contextlib.aclosing(iter_content(repo, node.content, PREFETCH)) as chunks:
        async for data in chunks:
            head += data
            try:
                layout = reader.parse(head)
            except dumpsum.DumpFormatError as exc:
                raise UsageError(f"the dump in this snapshot cannot be read: {exc}") from None
            if layout is not None:
                return layout
    raise UsageError("the dump in this snapshot ends inside its table of contents")


async def snapshot_layout(repo: Repository, snap: Snapshot) -> dumpsum.DumpLayout:
    """The table of contents of a logical snapshot's dump (read_layout)."""
    return await read_layout(repo, _dump_node(await repo.load_tree(bytes.fromhex(snap.tree)), snap.metadata or {}))


def snapshot_tables(meta: dict, layout: dumpsum.DumpLayout | None = None) -> tuple[dict[str, int], dict[str, str]]:
    """The snapshot's row counts and checksums keyed by names.key. Snapshots before
    ``table_keys`` wrote ``schema.name`` unquoted (two tables could share a key): those keys
    are read back through the dump's table of contents (``layout``), else split at the first dot."""
    tables, checksums = meta.get("tables"), meta.get("checksums")
    counts: dict[str, int] = tables if isinstance(tables, dict) else {}
    sums: dict[str, str] = checksums if isinstance(checksums, dict) else {}
    if meta.get("table_keys") == TABLE_KEYS:
        return dict(counts), dict(sums)
    old: dict[str, str] = {}
    for e in layout.entries.values() if layout is not None else ():
        if e.desc == "TABLE":
            old.setdefault(f"{e.namespace}.{e.tag}", e.key)

    def conv(k: str) -> str:
        return old[k] if k in old else names.legacy_key(k)

    return {conv(k): v for k, v in counts.items()}, {conv(k): v for k, v in sums.items()}


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
    data_keys = [e.key for e in entries if e.desc == "TABLE DATA"]
    chosen_ids = [e.dump_id for e in entries]
    target_roles: carry.TargetRoles | None = None
    try:
        if partial:
            chosen = await _partial_selection(target, name, entries, want_tables, want_schemas)
            data_keys = [names.key(*t) for t in chosen.data_tables]
            chosen_keys = {names.key(*t) for t in chosen.tables}
            expected = {t: n for t, n in expected.items() if t in chosen_keys}
            chosen_ids = chosen.ids
        elif objects:
            if not force:
                raise RestoreRefused(
                    f"database {name!r} is not empty ({objects} objects); restore into a new or "
                    f"empty database, or give --force to replace its contents (a safety "
                    f"backup of it is taken first)"
                )
            report.safety_snapshot = await _safety_backup(repo, snap, target, db, restore_id)
            extra = ["--clean", "--if-exists"]
        by_id = layout.entries
        target_roles, plan = await _carry_before(
            target, [by_id[i] for i in chosen_ids], globals_text, no_globals, roles, report
        )
        if partial or plan.exclude:
            kept = [i for i in chosen_ids if i not in plan.exclude]
            list_text = "".join(f"{i}; {by_id[i].desc}\n" for i in kept)
        await _run_pg_restore(
            repo,
            node,
            target,
            pg_restore.path,
            extra,
            list_text,
            plan.owners,
            chosen.skipped_fks if partial else [],
            report,
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
            conn, target, pg_bin_dir, expected, checksums, meta, layout, partial, method, report
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


async def _run_pg_restore(
    repo: Repository,
    node: Node,
    target: PgTarget,
    pg_restore,
    extra: list[str],
    list_text: str | None,
    owners: bool,
    skipped_fks: list[str],
    report: DbRestoreReport,
) -> None:
    """Feed the dump to pg_restore; its warnings, and the foreign keys left out, go into
    ``report``. A failure after a safety snapshot names it."""
    try:
        report.bytes, report.warnings = await _feed_pg_restore(
            repo, node, target, pg_restore, extra, list_text, owners=owners
        )
        report.warnings[:0] = [
            f"foreign key {fk} left out: it joins a table that is not restored" for fk in skipped_fks
        ]
    except DatabaseError as exc:
        if report.safety_snapshot:
            raise DatabaseError(
                f"{exc} (the database is unchanged; safety snapshot "
                f"{report.safety_snapshot[:8]} holds its state before this restore)"
            ) from None
        raise


async def _undo(target: PgTarget, created: bool, report: DbRestoreReport) -> None:
    """After a failed restore: drop the database and the roles it created."""
    if created:
        await _drop_database(target)
    if report.roles_created:
        await _drop_roles(target, report.roles_created)


def _restorable_meta(snap: Snapshot) -> dict:
    """The metadata of a logical database snapshot that has the row counts a restore is
    validated against; a usage error for any other snapshot."""
    meta = snap.metadata or {}
    if snap.source != SOURCE or meta.get("mode") != "logical":
        raise UsageError(f"snapshot {snap.short_id} ({snap.source}) is not a logical database backup")
    raw = meta.get("tables")
    if not isinstance(raw, dict) or not all(isinstance(v, int) for v in raw.values()):
        raise UsageError(f"snapshot {snap.short_id} has no table row counts to validate against")
    return meta


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


def _table_checks(
    expected: dict[str, int],
    actual: Mapping[str, tuple[int, str | None]],
    checksums: dict[str, str],
    notes: dict[str, str],
) -> list[TableCheck]:
    checks = []
    for t, count in sorted(expected.items()):
        try:
            schema, rel = names.parse_key(t)
        except ValueError:
            schema, rel = "", t
        checks.append(
            TableCheck(
                t,
                count,
                actual[t][0] if t in actual else None,
                checksums.get(t),
                actual[t][1] if t in actual else None,
                schema,
                rel,
                notes.get(t),
            )
        )
    return checks


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


async def _globals_text(repo: Repository, tree: Tree, meta: dict) -> tuple[str | None, str]:
    """The snapshot's globals file (pgglobals), or None and why it has none."""
    info = meta.get("globals")
    if not isinstance(info, dict):
        return None, "this snapshot holds no globals (taken by a version that did not record them)"
    if not info.get("file"):
        return None, f"the backup could not record the globals: {info.get('error') or 'no reason recorded'}"
    for n in tree.nodes:
        if n.type == FILE and n.name == str(info["file"]).encode():
            data = bytearray()
            async with contextlib.aclosing(iter_content(repo, n.content, PREFETCH)) as chunks:
                async for piece in chunks:
                    data += piece
            return data.decode("utf-8", "replace"), ""
    return None, f"the snapshot's tree has no {info['file']} although its metadata names it"


async def _carry_before(
    target: PgTarget,
    entries: list[dumpsum.TocEntry],
    globals_text: str | None,
    no_globals: str,
    roles: bool,
    report: DbRestoreReport,
) -> tuple[carry.TargetRoles, carry.CarryPlan]:
    """``--roles`` (create the missing roles), then what pg_restore can carry into this target."""
    NR = pgglobals.NotRestored
    conn = await _maintenance(target)
    try:
        found = pgglobals.parse(globals_text) if globals_text is not None else None
        if roles and found is None:
            report.not_restored.append(NR("roles and memberships (--roles)", no_globals))
        elif roles and found is not None:
            done = await pgglobals.restore_roles(conn, target, found)
            report.roles_created = done.created
            report.not_restored += done.not_restored
            if done.created:
                report.carried.append(f"roles created: {', '.join(done.created)}")
                if not found.has_passwords:
                    report.not_restored.append(
                        NR(
                            f"passwords of the roles created ({', '.join(done.created)})",
                            "the backup leaves role passwords out ([database] globals_with_passwords = false); "
                            "set them with ALTER ROLE ... PASSWORD",
                        )
                    )
        if found is not None:
            existing, _, spaces = await pgglobals.current_roles(conn)
            if not roles:
                absent = [r for r in found.roles if r not in existing]
                if absent:
                    report.not_restored.append(
                        NR(
                            f"role{'s' if len(absent) > 1 else ''} {carry.listed(absent)} of the backed-up cluster "
                            f"(with {'their' if len(absent) > 1 else 'its'} memberships)",
                            "not in the target cluster; restore with --roles to create them",
                        )
                    )
            lacking = [t for t in found.tablespaces if t not in spaces]
            if lacking:
                report.not_restored.append(
                    NR(
                        f"tablespace{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}",
                        "not in the target cluster, and never created by a restore (a folder on the server): "
                        "create it with CREATE TABLESPACE",
                    )
                )
    except psycopg.Error as exc:
        raise target.failed("reading the roles of", exc) from None
    finally:
        await conn.close()
    # Asked in the target database itself: membership of pg_database_owner depends on it.
    who = await _roles_at(target.connect(), target)
    plan = carry.plan(entries, who, globals_available=found is not None, roles_given=roles)
    report.carried += plan.carried
    report.not_restored += plan.not_restored
    return who, plan


async def _roles_at(connecting: Awaitable[psycopg.AsyncConnection], target: PgTarget) -> carry.TargetRoles:
    """The target cluster's roles as seen from the connection ``connecting`` gives."""
    conn = await connecting
    try:
        return await carry.target_roles(conn)
    except psycopg.Error as exc:
        raise target.failed("reading the roles of", exc) from None
    finally:
        await conn.close()


async def preview_carry(
    repo: Repository,
    snap: Snapshot,
    target: PgTarget,
    *,
    tables: tuple[str, ...] = (),
    schemas: tuple[str, ...] = (),
    roles: bool = False,
) -> dict:
    """What ``restore --dry-run`` predicts a restore would carry into ``target`` (carry.plan over
    the entries it would restore, the roles ``--roles`` would create counted as existing),
    changing nothing. The database's own properties are known only when applied."""
    meta = snap.metadata or {}
    tree = await repo.load_tree(bytes.fromhex(snap.tree))
    layout = await read_layout(repo, _dump_node(tree, meta))
    entries = list(layout.entries.values())
    if tables or schemas:
        want_tables, want_schemas = _resolve(entries, tables, schemas)
        ids = set(toc.select(entries, want_tables, want_schemas).ids)
        entries = [e for e in entries if e.dump_id in ids]
    text, no_globals = await _globals_text(repo, tree, meta)
    found = pgglobals.parse(text) if text is not None else None
    who = await _roles_at(_maintenance(target), target)
    created = [r for r in found.roles if r not in who.existing] if roles and found is not None else []
    if created:
        who = replace(who, existing=who.existing | frozenset(created))
    plan = carry.plan(entries, who, globals_available=found is not None)
    missed = [n.as_dict() for n in plan.not_restored]
    if roles and found is None:
        missed.insert(0, pgglobals.NotRestored("roles and memberships (--roles)", no_globals).as_dict())
    return {"owners": plan.owners, "roles_to_create": created, "carried": list(plan.carried), "not_restored": missed}


async def _carry_database(
    target: PgTarget, name: str, recorded: dict | None, who: carry.TargetRoles, created: bool, report: DbRestoreReport
) -> None:
    """The database's owner, settings, grants and comment: applied to a database this restore
    created, compared (and the differences named) for one that existed."""
    conn = await target.connect()
    try:
        if created:
            done, missed = await carry.apply_database(conn, name, recorded, who, target.scrub)
            report.carried += done
        else:
            missed = carry.compare_database(name, recorded, await carry.database_properties(conn))
            if not recorded:
                missed = [
                    pgglobals.NotRestored(
                        "database owner, settings, grants and comment",
                        "this snapshot does not record them (taken by an older version)",
                    )
                ]
    except psycopg.Error as exc:
        raise target.failed("setting the database properties of", exc) from None
    finally:
        await conn.close()
    report.not_restored += missed


async def _drop_roles(target: PgTarget, created: list[str]) -> None:
    with contextlib.suppress(DatabaseError, psycopg.Error):
        conn = await _maintenance(target)
        try:
            await pgglobals.drop_roles(conn, created)
        finally:
            await conn.close()


async def _feed_pg_restore(
    repo: Repository,
    node: Node,
    target: PgTarget,
    pg_restore,
    extra: list[str] | tuple[str, ...] = (),
    list_text: str | None = None,
    *,
    owners: bool = False,
) -> tuple[int, list[str]]:
    argv = [str(pg_restore), *(() if owners else ("--no-owner",)), "--single-transaction", "--no-password", *extra]
    if list_text is None:
        written, text, _ = await _pipe_dump(repo, node, target, [*argv, "-d", target.conninfo()])
    else:
        # The list is not secret, but is kept private anyway: 0600 in a 0700 folder, removed after.
        folder = tempfile.mkdtemp(prefix="axisor-toc.")
        try:
            path = os.path.join(folder, "restore.list")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(list_text)
            # pg_restore stops reading once the last chosen entry is restored: not an error.
            written, text, _ = await _pipe_dump(
                repo, node, target, [*argv, "-L", path, "-d", target.conninfo()], early_exit=True
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return written, [ln for ln in text.splitlines() if ln.strip()]


async def _pipe_dump(
    repo: Repository, node: Node, target: PgTarget, argv: list[str], *, capture: bool = False, early_exit: bool = False
) -> tuple[int, str, str]:
    """Write the dump's blobs, in order, to ``argv``'s stdin. Returns (bytes written, stderr,
    stdout when ``capture``). With ``early_exit`` the program may stop reading before the end
    (-l, -L) as long as it exits 0."""
    proc, errors = spawn(
        argv, target.child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE if capture else subprocess.DEVNULL
    )
    output = StderrReader(proc.stdout, 256 * 1024 * 1024) if capture else None
    stdin = proc.stdin
    assert stdin is not None  # spawned with stdin=PIPE
    written = 0
    broken = False
    try:
        async with contextlib.aclosing(iter_content(repo, node.content, PREFETCH)) as chunks:
            async for data in chunks:
                try:
                    await asyncio.to_thread(_write_all, stdin, data)
                except (BrokenPipeError, ConnectionResetError):
                    broken = True  # pg_restore stopped reading: its exit status says why
                    break
                written += len(data)
        if not broken:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await asyncio.to_thread(stdin.close)
        code = await asyncio.to_thread(proc.wait)
    except BaseException:
        await stop_process(proc)
        raise
    finally:
        with contextlib.suppress(OSError):
            stdin.close()
    text = target.scrub(errors.text())
    stdout = output.text(60) if output is not None else ""
    if code != 0 or (broken and not early_exit):
        detail = last_lines(text) or f"exit status {code}"
        raise DatabaseError(f"pg_restore into {target.describe()} failed (exit {code}): {detail}")
    if not broken and written != node.size:
        raise DatabaseError(f"the dump in the snapshot is {written} bytes, its manifest says {node.size}")
    return written, text, stdout
