"""The database a logical restore goes into, reached through a maintenance database:
created when missing (``_prepare_database``, which otherwise counts the user objects it
holds), what it has already (``_existing``), and, after a failed restore, the database
and roles that restore created dropped again (``_undo``)."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import sql

from core.errors import DatabaseError, UsageError
from core.sources.postgres import pgglobals
from core.sources.postgres.catalog import _USER_NS, _rows
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.restore_report import DbRestoreReport


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


async def _undo(target: PgTarget, created: bool, report: DbRestoreReport) -> None:
    """After a failed restore: drop the database and the roles it created."""
    if created:
        await _drop_database(target)
    if report.roles_created:
        await _drop_roles(target, report.roles_created)


async def _drop_roles(target: PgTarget, created: list[str]) -> None:
    with contextlib.suppress(DatabaseError, psycopg.Error):
        conn = await _maintenance(target)
        try:
            await pgglobals.drop_roles(conn, created)
        finally:
            await conn.close()
