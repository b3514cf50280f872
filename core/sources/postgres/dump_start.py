"""Starting a logical dump: connect, export a snapshot, check pg_dump against the server and
start it in that snapshot, its output read ahead (``start_dump``; ``StartedDump``, what
logical_backup.py's ``backup_logical`` then stores). Kept apart from logical_backup.py and
light on imports (psycopg, the connection, the child process): the command line starts the
dump before the repository stack, the backup run and the metadata modules are loaded
(core/sources/postgres/early_dump.py), and pg_dump runs while they load."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass

import psycopg
import psycopg.sql
from psycopg.conninfo import conninfo_to_dict

from core.config import DatabaseConfig
from core.errors import AxisorError
from core.sources.postgres.child import Running, start
from core.sources.postgres.connection import PgTarget, one_row
from core.sources.postgres.dump_args import dump_argv, dump_env
from core.sources.postgres.prestart import Prestart, release
from core.sources.postgres.tools import Tool, check_dump_tool, find_tool


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
    only: frozenset[tuple[str, str]] = frozenset()  # the rows of just these tables (empty: all)
    # A dump in parts (dump_parts.py): the tables whose data each part holds (part 0's
    # first), and the pg_dump of each part after the first, on the same snapshot. Empty: one dump.
    parts: tuple[tuple[tuple[str, str], ...], ...] = ()
    others: tuple[Running, ...] = ()
    # A dump started before the program loaded (prestart.py): the psql whose open
    # transaction exported the snapshot, ended by ``close``.
    holder: subprocess.Popen | None = None

    def start_metadata(self) -> asyncio.Future:
        """Start reading the metadata (catalog reads only, no table scanned: the command line
        starts it once it knows the run dumps here, so it runs beside pg_dump while the
        program loads)."""
        if self.metadata is None:
            # Imported here: the dump starts before the metadata modules are loaded.
            from core.sources.postgres.dump_metadata import _metadata

            self.listed = asyncio.get_running_loop().create_future()
            self.metadata = asyncio.ensure_future(_metadata(self.conn, self.listed, self.only))
        return self.metadata

    def read_metadata(self, uncounted: asyncio.Queue) -> asyncio.Future:
        """The metadata (``start_metadata``), and counting in SQL what ``uncounted`` names (_sql_counts)."""
        metadata = self.start_metadata()
        if self.counting is None:
            from core.sources.postgres.dump_metadata import _sql_counts

            assert self.listed is not None  # set by start_metadata
            self.counting = asyncio.ensure_future(_sql_counts(self.conn, self.listed, uncounted))
        return metadata

    async def close(self) -> None:
        # pg_dump may still be running: the backup stopped first
        await asyncio.gather(*(c.stop() for c in (self.child, *self.others)))
        for task in (self.metadata, self.counting):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.conn.close()
        if self.holder is not None:
            await asyncio.to_thread(release, self.holder)


async def start_dump(
    db: DatabaseConfig,
    target: PgTarget | None = None,
    tables: tuple[tuple[str, str], ...] = (),
    *,
    jobs: int = 1,
    prestarted: Prestart | None = None,
) -> StartedDump:
    """Connect, export a snapshot, check pg_dump against the server and start it (its
    output read ahead). ``tables``: the rows of just these (see ``backup_logical``).
    ``jobs`` > 1 (``[database] dump_jobs``; not with ``tables``): the tables' data spread
    over that many pg_dumps on the same snapshot, all started here (dump_parts.py).
    ``prestarted``: a dump started before the program loaded (prestart.py), taken over
    when it is exactly this one, else stopped. Raises DatabaseError, leaving nothing running."""
    target = target if target is not None else PgTarget.from_config(db)
    if prestarted is not None:
        adopted = None
        try:
            if not tables and jobs == 1:
                adopted = await _adopt(db, target, prestarted)
        finally:
            if adopted is None:
                await asyncio.to_thread(prestarted.stop)
        if adopted is not None:
            return adopted
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
            leave_out: list[str] = []
            if tables:  # every other table's rows left out, listed in the same snapshot as the dump's
                from core.sources.postgres import names
                from core.sources.postgres.catalog import _TABLES

                await cur.execute(_TABLES.replace("c.relkind = 'r'", "c.relkind IN ('r', 'm')"))
                leave_out = [
                    names.table_option(str(s), str(n), "--exclude-table-data")
                    for s, n in await cur.fetchall()
                    if (s, n) not in tables
                ]
                leave_out.append("--no-blobs")  # large objects are the database's, not a table's
            parts = await _assign(cur, jobs) if jobs > 1 and not tables else ()
        check_dump_tool(pg_dump, version_num, version)

        def argv(options: list[str]) -> list[str]:
            return dump_argv(pg_dump.path, snapshot_id, target.with_dbname(dbname).conninfo(), options)

        if len(parts) < 2:
            parts = ()  # one table or none: one dump, as without dump_jobs
        from core.sources.postgres.dump_parts import part_options

        children: list[Running] = []
        try:
            for k in range(max(1, len(parts))):
                children.append(
                    start(
                        argv(part_options(parts, k) if parts else leave_out), dump_env(target.password, target.passfile)
                    )
                )
        except BaseException:
            await asyncio.gather(*(c.stop() for c in children))
            raise
    except psycopg.Error as exc:
        await conn.close()
        raise target.failed("reading", exc) from None
    except BaseException:
        await conn.close()
        raise
    return StartedDump(
        target,
        pg_dump,
        conn,
        dbname,
        children[0],
        started,
        only=frozenset(tables),
        parts=parts,
        others=tuple(children[1:]),
    )


async def _adopt(db: DatabaseConfig, target: PgTarget, pre: Prestart) -> StartedDump | None:
    """``pre``'s dump, if it is exactly the one ``start_dump`` would start: pg_dump found
    where the validated config says, the same environment, connection parameters that
    libpq parses to this target's for the database the session is in, and a session of
    ours in the same exported snapshot (for the metadata). None for any difference or
    failure (the caller stops it and starts its own, which reports what is wrong)."""
    started = time.monotonic()
    found = asyncio.ensure_future(asyncio.to_thread(find_tool, "pg_dump", db.pg_bin_dir))
    if not await asyncio.to_thread(pre.wait) or pre.env != dump_env(target.password, target.passfile):
        await asyncio.gather(found, return_exceptions=True)
        return None
    try:
        conn = await target.connect()
    except Exception:  # noqa: BLE001 - the run's own start says what failed
        await asyncio.gather(found, return_exceptions=True)
        return None
    try:
        pg_dump = await found
        async with conn.cursor() as cur:
            await cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await cur.execute(psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(pre.snapshot))
            await cur.execute(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
                "current_database()"
            )
            version_num, version, dbname = one_row(await cur.fetchone())
        check_dump_tool(pg_dump, version_num, version)
        own = target.with_dbname(dbname)
        if (
            pre.pg_dump != pg_dump.path  # the rest of its command line is dump_argv's, as ours
            or {k: str(v) for k, v in conninfo_to_dict(pre.conninfo).items()} != own.params
        ):
            raise _NotOurs
    except BaseException as exc:
        await conn.close()
        if isinstance(exc, Exception):
            return None
        raise
    assert pre.running is not None  # pre.wait() said so
    dump = StartedDump(target, pg_dump, conn, dbname, pre.running, started, holder=pre.holder)
    pre.running = pre.holder = None  # the StartedDump's now
    return dump


class _NotOurs(Exception):
    """A dump started ahead that differs from the one this run would start."""


async def _assign(cur: psycopg.AsyncCursor, jobs: int) -> tuple[tuple[tuple[str, str], ...], ...]:
    """The tables whose data pg_dump dumps (catalog._TABLES: ordinary tables and leaf
    partitions, not partitioned parents, not extension members; inheritance parents and
    children each for its own rows), read in the exported snapshot with their size (heap
    and TOAST: what the COPY text comes from), spread over ``jobs`` parts (dump_parts.py)."""
    from core.sources.postgres.catalog import _TABLES_PAGES
    from core.sources.postgres.dump_parts import assign_parts

    await cur.execute(_TABLES_PAGES)
    return assign_parts([(str(s), str(n), int(size or 0)) for s, n, _, size, _ in await cur.fetchall()], jobs)
