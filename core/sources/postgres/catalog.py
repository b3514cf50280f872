"""Catalog reads shared by logical backup and restore: which schemas are the user's
(``_USER_NS``), the user tables whose rows a dump holds (``_TABLES``; ``_TABLES_PAGES``
adds their sizes and row estimates), and ``_rows``, the rows of one query on an async
connection."""

from __future__ import annotations

import psycopg

_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"
_USER_NS = (
    f"n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"
)

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


async def _rows(conn: psycopg.AsyncConnection, query, params=None) -> list[tuple]:
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
