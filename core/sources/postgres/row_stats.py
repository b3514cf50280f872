"""Row counts and server-side row digests of a live database's tables: ``table_stats`` by
a snapshot's method (``count-only``; snapshots taken before dump-blake3-v1 carry a digest
of the multiset of rows, ``hash64x2-rowsum-v2`` or ``md5-rowsum-v1``: each row's
``row::text`` hashed and summed in SQL, ``_PROBE`` telling a server of the other byte
order), ``batched_counts`` (many tables' ``count(*)`` to a statement), and the large
objects' count and checksum."""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql

from core.sources.postgres import names
from core.sources.postgres.catalog import _TABLES, _rows


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
