"""Row checksums (``dump-blake3-v1``, dumpsum.py) of a live database's tables taken the
way a backup takes them: ``dump_checksums`` reads ``pg_dump --data-only`` through
dumpsum's parser (``dump_env`` pins the output settings, so a table's COPY text is the
same on any server), and ``copy_checksum`` reads a table whose restored column order
differs from the dump's COPY list (inheritance) with ``COPY (the dump's columns) TO
STDOUT`` in pg_dump's session settings."""

from __future__ import annotations

import asyncio

import blake3
import psycopg
from psycopg import sql

from core.sources.postgres import dump_args, dumpsum, names
from core.sources.postgres.child import child_failed, start
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.tools import find_tool


def dump_env(target: PgTarget) -> dict[str, str]:
    """pg_dump's environment: the target's credentials, and the output settings pg_dump does
    not pin itself, so a table's COPY text (and so its checksum) is the same on any server."""
    return dump_args.dump_env(target.password, target.passfile)


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
        argv.append(names.table_option(*names.parse_key(t)))
    argv += ["-d", target.conninfo()]
    child = start(argv, dump_env(target))
    try:
        sums = await asyncio.to_thread(dumpsum.checksum_stream, child.stdout)
        code = await asyncio.to_thread(child.proc.wait)
    finally:
        await child.stop()
    if code != 0:
        raise child_failed(child, code, target, f"pg_dump of {target.describe()} (for its row checksums)")
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
