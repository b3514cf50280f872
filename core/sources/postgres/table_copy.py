"""Copy one table from a recovered (throwaway) cluster into the live database under a new
name, beside the live one: the table-as-of-a-time restore's copy and validate steps
(core/service/table_at_time.py runs the recovery around them).

The table is renamed *in the recovered cluster* (it is thrown away afterwards), with
everything whose name is unique in its schema and would collide with the live table's:
its indexes (and so the constraints they back) and the sequences its columns own (serial
and identity). Then ``pg_dump -Fc --table`` of the renamed table and ``pg_restore`` into
the live database, without owners or privileges (the restoring role owns the copy).

What is deliberately not copied, and said: foreign keys of the table (they would check the
old rows against today's referenced rows, and tie the copy to them) and its triggers (a
trigger on the copy could write into live tables while the rows load). Each one dropped is
named in the report.

Then the copy is validated against the recovered table: row count and row checksum
(``dump-blake3-v1``, table_checksums.py), the same on both sides or the restore fails.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from core.errors import DatabaseError, RestoreRefused
from core.sources.postgres import names
from core.sources.postgres.child import child_failed, start
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.table_checksums import dump_checksums
from core.sources.postgres.tools import find_tool

MAX_IDENT = 63  # NAMEDATALEN - 1: longer names are truncated by the server

SQL_INDEXES = """
SELECT i.relname, c.contype
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
WHERE x.indrelid = %s::regclass ORDER BY c.contype = 'p' DESC NULLS LAST, i.relname
"""
SQL_OWNED_SEQUENCES = """
SELECT s.relname, a.attname
FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refobjid = %s::regclass AND d.deptype IN ('a', 'i') ORDER BY a.attnum
"""
SQL_FOREIGN_KEYS = """
SELECT c.conname, n.nspname, r.relname FROM pg_constraint c
JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE c.conrelid = %s::regclass AND c.contype = 'f' ORDER BY c.conname
"""
SQL_TRIGGERS = "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY tgname"


@dataclass(frozen=True, slots=True)
class CopiedTable:
    table: str  # names.key of the table as it was at the time
    copy: str  # names.key of the copy in the live database
    rows: int
    checksum: str
    validated: bool  # rows and checksum equal on both sides
    renamed: tuple[str, ...]  # "index sales.orders_pkey -> sales.orders_1432_pkey"
    not_copied: tuple[str, ...]  # each foreign key and trigger left out, and why
    problem: str = ""  # why validation failed

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "copy": self.copy,
            "rows": self.rows,
            "checksum": self.checksum,
            "validated": self.validated,
            "renamed": list(self.renamed),
            "not_copied": list(self.not_copied),
            "problem": self.problem or None,
        }


def _regclass(schema: str, name: str) -> str:
    return f"{names.quote(schema)}.{names.quote(name)}"


def _derived(base: str, suffix: str) -> str:
    """``base`` + ``suffix`` within PostgreSQL's 63 bytes, cutting ``base`` (never the suffix)."""
    room = MAX_IDENT - len(suffix.encode())
    cut = base.encode()[:room].decode("utf-8", "ignore")
    return cut + suffix


async def list_tables(target: PgTarget) -> list[tuple[str, str]]:
    """The user tables of ``target`` (ordinary tables and leaf partitions), (schema, name)."""
    from core.sources.postgres.catalog import _TABLES, _rows

    conn = await target.connect()
    try:
        return [(str(s), str(n)) for s, n in await _rows(conn, _TABLES)]
    finally:
        await conn.close()


async def exists(target: PgTarget, schema: str, name: str) -> bool:
    conn = await target.connect()
    try:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_regclass(schema, name),))
        row = await cur.fetchone()
        return bool(row and row[0])
    finally:
        await conn.close()


async def references(recovered: PgTarget, tables: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The tables ``tables`` reference through foreign keys, transitively (their closure),
    not counting ``tables`` themselves; in the order found."""
    found: list[tuple[str, str]] = []
    seen = set(tables)
    queue = list(tables)
    conn = await recovered.connect()
    try:
        while queue:
            schema, name = queue.pop(0)
            for _conname, rs, rn in await (await conn.execute(SQL_FOREIGN_KEYS, (_regclass(schema, name),))).fetchall():
                if (rs, rn) not in seen:
                    seen.add((rs, rn))
                    found.append((rs, rn))
                    queue.append((rs, rn))
    finally:
        await conn.close()
    return found


async def prepare(
    recovered: PgTarget, table: tuple[str, str], copy: tuple[str, str], keep: frozenset[tuple[str, str]] = frozenset()
) -> tuple[list[str], list[str]]:
    """Rename ``table`` to ``copy`` in the recovered cluster with its indexes and owned
    sequences, drop its triggers and its foreign keys except those to ``keep`` (tables
    copied with it, whose copies the kept keys then reference): (renamed, not copied)."""
    (schema, name), (new_schema, new_name) = table, copy
    renamed: list[str] = []
    left_out: list[str] = []
    conn = await recovered.connect(autocommit=False)
    try:
        async with conn.transaction():
            rel = _regclass(schema, name)
            for conname, rs, rn in await (await conn.execute(SQL_FOREIGN_KEYS, (rel,))).fetchall():
                if (rs, rn) in keep:
                    continue  # copied too: the key follows it (constraints refer by oid, not name)
                ref = names.key(rs, rn)
                await conn.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                        sql.Identifier(schema, name), sql.Identifier(conname)
                    )
                )
                left_out.append(
                    f"foreign key {names.quote(conname)} (references {ref}): not checked against today's rows"
                )
            for (tgname,) in await (await conn.execute(SQL_TRIGGERS, (rel,))).fetchall():
                await conn.execute(
                    sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(tgname), sql.Identifier(schema, name))
                )
                left_out.append(f"trigger {names.quote(tgname)}: it could act on live tables while the copy loads")
            indexes = await (await conn.execute(SQL_INDEXES, (rel,))).fetchall()
            sequences = await (await conn.execute(SQL_OWNED_SEQUENCES, (rel,))).fetchall()
            if new_schema != schema:
                await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(new_schema)))
                await conn.execute(
                    sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                        sql.Identifier(schema, name), sql.Identifier(new_schema)
                    )
                )
            if new_name != name:
                await conn.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                        sql.Identifier(new_schema, name), sql.Identifier(new_name)
                    )
                )
            for i, (iname, contype) in enumerate(indexes):
                new_index = _derived(new_name, "_pkey" if contype == "p" else f"_idx{i}")
                await conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(new_schema, iname), sql.Identifier(new_index)
                    )
                )
                renamed.append(f"index {names.key(schema, iname)} -> {names.key(new_schema, new_index)}")
            for sname, col in sequences:
                new_seq = _derived(f"{new_name}_{col}", "_seq")
                await conn.execute(
                    sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                        sql.Identifier(new_schema, sname), sql.Identifier(new_seq)
                    )
                )
                renamed.append(f"sequence {names.key(schema, sname)} -> {names.key(new_schema, new_seq)}")
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot prepare {names.key(schema, name)} in the recovered cluster: {exc}") from None
    finally:
        await conn.close()
    return renamed, left_out


async def copy(
    recovered: PgTarget, live: PgTarget, copy_names: list[tuple[str, str]], work: Path, pg_bin_dir: Path | None
) -> None:
    """pg_dump the renamed tables from the recovered cluster in one dump (so the foreign keys
    between them are restored after their rows), pg_restore it into ``live``."""
    pg_dump = await asyncio.to_thread(find_tool, "pg_dump", pg_bin_dir)
    pg_restore = await asyncio.to_thread(find_tool, "pg_restore", pg_bin_dir)
    dump = work / "table.dump"
    table_args = [names.table_option(*name) for name in copy_names]
    argv = [str(pg_dump.path), "--format=custom", "--no-owner", "--no-privileges", "--no-password", *table_args]
    argv += ["--file", str(dump), "-d", recovered.conninfo()]
    await _run(argv, recovered, "pg_dump of the recovered table")
    argv = [str(pg_restore.path), "--no-owner", "--no-privileges", "--exit-on-error", "--no-password"]
    argv += ["-d", live.conninfo(), str(dump)]
    try:
        await _run(argv, live, f"pg_restore into {live.describe()}")
    finally:
        dump.unlink(missing_ok=True)


async def _run(argv: list[str], target: PgTarget, what: str) -> None:
    child = start(argv, target.child_env())
    try:
        code = await asyncio.to_thread(child.proc.wait)
    finally:
        await child.stop()
    if code != 0:
        raise child_failed(child, code, target, what)


async def count(target: PgTarget, schema: str, name: str) -> int:
    conn = await target.connect()
    try:
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, name)))
        row = await cur.fetchone()
        return int(row[0]) if row else 0
    finally:
        await conn.close()


async def validate(
    recovered: PgTarget, live: PgTarget, copy_name: tuple[str, str], pg_bin_dir: Path | None
) -> tuple[int, str, str]:
    """(rows, checksum, problem): the copy in ``live`` against the table in ``recovered``."""
    key = names.key(*copy_name)
    rows_then, rows_now = await count(recovered, *copy_name), await count(live, *copy_name)
    then = (await dump_checksums(recovered, pg_bin_dir, {key})).tables.get(key, "")
    now = (await dump_checksums(live, pg_bin_dir, {key})).tables.get(key, "")
    problem = ""
    if rows_then != rows_now:
        problem = f"{rows_now} rows in the copy, {rows_then} in the recovered table"
    elif then != now or not then:
        problem = "the copy's row checksum differs from the recovered table's"
    return rows_then, then, problem


def refuse_existing(key: str, live: PgTarget) -> RestoreRefused:
    return RestoreRefused(
        f"{key} already exists in {live.describe()}: give --as another name (a copy never replaces a table)"
    )


__all__ = [
    "CopiedTable",
    "copy",
    "count",
    "exists",
    "list_tables",
    "prepare",
    "references",
    "refuse_existing",
    "validate",
]
