"""Bounded waits for WAL archiving: a forced segment, and a base backup's last one.

A physical backup (``pg_basebackup -X none``) needs the server to archive the backup's last
WAL segment: the server waits for that inside the backup's stop, forever and silently when
``archive_command`` fails. So, like pgBackRest's ``check``, before every base backup a WAL
switch is forced and the closed segment must arrive in the repository within
``[database] archive_timeout_seconds``; and while the backup runs, a walsender that sits in
``waiting for wal archiving to finish`` (or, for a backup from a standby, the primary's
``pg_backup_stop(true)`` in wait event ``BackupWaitWalArchive``) longer than that is stopped
and the backup fails. With ``backup_standby`` all of it happens on the primary: it archives.
Either failure (ArchivingNotReady, exit 18) quotes ``pg_stat_archiver`` and the server
log's archive lines when the role may read them, and otherwise says where to look: an
``archive_command`` that cannot be executed at all (exit 126/127) makes the archiver exit
before it records the failure in ``pg_stat_archiver``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

import psycopg

from core.config import DatabaseConfig
from core.errors import ArchivingNotReady
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.sources.postgres.connection import PgTarget, one_row
from core.sources.postgres.wal import wal_key
from core.storage.backend import Backend, ObjectNotFound
from core.text import shown

T = TypeVar("T")
POLL = 0.2  # seconds between looks at the repository or at the backup's progress
WAITING_PHASE = "waiting for wal archiving to finish"  # pg_stat_progress_basebackup.phase
WAIT_EVENT = "BackupWaitWalArchive"  # pg_stat_activity.wait_event of a pg_backup_stop(true) waiting
LOG_TAIL = 64 * 1024
LOG_HINT = (
    "the reason is in the server log (where the server's stderr goes: pg_ctl -l FILE, "
    "journalctl -u postgresql, /var/log/postgresql/; with logging_collector on, "
    "SELECT pg_current_logfile()), on lines starting 'archive command failed'"
)


async def force_switch(conn: psycopg.AsyncConnection) -> str:
    """Close the current WAL segment and return its name. A transaction id is taken first
    (its commit writes WAL), so a quiet server still has a segment to close: pg_switch_wal()
    on an empty segment switches nothing and would name the last, already closed one."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT txid_current()")
        await cur.execute("SELECT pg_walfile_name(pg_switch_wal())")
        row = one_row(await cur.fetchone())
    return str(row[0])


async def wait_archived(backend: Backend, name: str, timeout: float) -> float | None:
    """Seconds until WAL file ``name``'s manifest was in the repository, None after ``timeout``."""
    started = time.monotonic()
    while True:
        try:
            await backend.stat(wal_key(name))
            return time.monotonic() - started
        except ObjectNotFound:
            pass
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            return None
        await asyncio.sleep(min(POLL, left))


def _when(value: object) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)


async def archiver_report(
    conn: psycopg.AsyncConnection, target: PgTarget, timeout: float, segment: str | None = None
) -> tuple[str, str]:
    """What the server says about its archiver: (state, text). state is "failing", "behind"
    (it archived something within the last ``timeout`` seconds and failed at nothing since:
    working through a backlog) or "not working"; text quotes pg_stat_archiver's last failure
    (or says it records none) and the log's archive lines when readable, else where to look."""
    parts: list[str] = []
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT archived_count, last_archived_wal, last_archived_time, failed_count, "
                "last_failed_wal, last_failed_time, clock_timestamp() FROM pg_stat_archiver"
            )
            _archived, last_ok, last_ok_time, failed, last_bad, last_bad_time, now = one_row(await cur.fetchone())
    except psycopg.Error as exc:
        return "not working", f"pg_stat_archiver could not be read: {target.scrub(str(exc).strip())}; {LOG_HINT}"
    ok_text = f"last archived {last_ok} at {_when(last_ok_time)}" if last_ok else "nothing archived yet"
    if segment and last_ok and last_ok[:8] == segment[:8] and last_ok[:24] >= segment:
        return "going elsewhere", (
            f"pg_stat_archiver: the server archived it ({ok_text}), but not into this repository: its "
            "archive_command pushes somewhere else (`axisor-backup database archiving` shows the one to use)"
        )
    if last_bad_time is not None and (last_ok_time is None or last_bad_time >= last_ok_time):
        state = "failing"
    elif last_ok_time is not None and (now - last_ok_time).total_seconds() <= timeout:
        state = "behind"
    else:
        state = "not working"
    if failed and last_bad:
        parts.append(
            f"pg_stat_archiver: last_failed_wal {last_bad}, last_failed_time {_when(last_bad_time)} "
            f"({failed} failures; {ok_text})"
        )
    else:
        parts.append(f"pg_stat_archiver records no failure ({ok_text})")
    if state == "behind":
        parts.insert(
            0,
            "the archiver is still archiving older segments (a backlog): wait, or raise "
            "[database] archive_timeout_seconds",
        )
        return state, "; ".join(parts)
    if state == "not working":
        parts.append(
            "an archive_command that cannot be executed at all (exit 126/127, e.g. not executable by "
            "the server's OS user) stops the archiver before it records a failure"
        )
    lines = await _log_lines(conn)
    parts.append("server log: " + " | ".join(shown(target.scrub(x)) for x in lines) if lines else LOG_HINT)
    return state, "; ".join(parts)


async def _log_lines(conn: psycopg.AsyncConnection) -> list[str]:
    """The last archive-related lines of the server's log file, when the logging collector
    writes one and this role may read it (superuser or pg_read_server_files)."""
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT pg_current_logfile()")
            (path,) = one_row(await cur.fetchone())
            if not path:
                return []
            await cur.execute(
                "SELECT pg_read_file(%s, greatest((pg_stat_file(%s)).size - %s, 0), %s)",
                (path, path, LOG_TAIL, LOG_TAIL),
            )
            (text,) = one_row(await cur.fetchone())
    except psycopg.Error:
        return []
    wanted = [
        ln.strip()
        for ln in (text or "").splitlines()
        if "archive command" in ln or "archive_command" in ln or "failed archive" in ln
    ]
    return [ln[:300] for ln in wanted[-3:]]


async def not_archived(
    conn: psycopg.AsyncConnection, target: PgTarget, what: str, timeout: float, segment: str | None = None
) -> ArchivingNotReady:
    state, why = await archiver_report(conn, target, timeout, segment)
    return ArchivingNotReady(
        f"WAL archiving of {target.describe()} is {state}: {what} did not arrive in the repository "
        f"within {timeout:g} s ([database] archive_timeout_seconds); {why}. "
        "`axisor-backup database check` checks it step by step."
    )


async def _server_state(conn: psycopg.AsyncConnection) -> tuple[bool, bool, datetime]:
    """(archiving configured and this role may force a switch, in recovery, server clock)."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT current_setting('archive_mode') <> 'off' AND current_setting('wal_level') <> "
            "'minimal' AND current_setting('archive_command') <> '', pg_is_in_recovery(), "
            "has_function_privilege('pg_switch_wal()', 'EXECUTE'), clock_timestamp()"
        )
        archiving, in_recovery, may_switch, now = one_row(await cur.fetchone())
    return bool(archiving and may_switch), bool(in_recovery), now


async def backup_physical_bounded(repo: Repository, db: DatabaseConfig, **kwargs) -> Snapshot:
    """``backup_physical`` with both archive waits bounded by ``db.archive_timeout_seconds``.

    The forced switch needs archiving set up, a primary and EXECUTE on pg_switch_wal(): without
    them it is skipped (backup_physical refuses a server that does not archive; the watch on
    the backup's own last segment still applies)."""
    from core.sources.postgres.physical import backup_physical

    from core.sources.postgres.standby import archiving_target

    target = archiving_target(db)  # the primary with backup_standby: it archives, and it stops the backup
    timeout = float(db.archive_timeout_seconds)
    conn = await target.connect()
    try:
        try:
            can_switch, in_recovery, since = await _server_state(conn)
            if can_switch and not in_recovery:
                segment = await force_switch(conn)
                if await wait_archived(repo.backend, segment, timeout) is None:
                    raise await not_archived(
                        conn, target, f"WAL segment {segment} (switched before the backup)", timeout, segment
                    )
        except psycopg.Error as exc:
            raise target.failed("checking WAL archiving of", exc) from None
        return await bounded(backup_physical(repo, db, **kwargs), conn, target, timeout, since)
    finally:
        await conn.close()


async def bounded(
    backup: Awaitable[T], conn: psycopg.AsyncConnection, target: PgTarget, timeout: float, since: datetime
) -> T:
    """Run ``backup`` while watching, on ``conn``, for a base backup's stop (a backend started
    after ``since``: pg_basebackup's walsender, or the session of a standby backup's
    pg_backup_stop) waiting for WAL archiving: past ``timeout`` it is stopped on the server
    (pg_terminate_backend: the server's wait does not notice the client leave), ``backup``
    cancelled (pg_basebackup killed, open packs aborted) and ArchivingNotReady raised."""
    task = asyncio.ensure_future(backup)
    first_seen: dict[int, float] = {}  # a backend waits for one stop only: timed from its first sighting
    try:
        while not task.done():
            await asyncio.wait([task], timeout=POLL * 2.5)
            if task.done():
                break
            try:
                async with conn.cursor() as cur:
                    await cur.execute(
                        "SELECT a.pid FROM pg_stat_activity a LEFT JOIN pg_stat_progress_basebackup p "
                        "USING (pid) WHERE a.backend_start >= %s AND a.pid <> pg_backend_pid() "
                        "AND (p.phase = %s OR a.wait_event = %s)",
                        (since, WAITING_PHASE, WAIT_EVENT),
                    )
                    pids = [row[0] for row in await cur.fetchall()]
            except psycopg.Error:
                return await task  # the watch is lost: the backup goes on as it would without it
            now = time.monotonic()
            late = [pid for pid in pids if now - first_seen.setdefault(pid, now) >= timeout]
            if not late:
                continue
            error = await not_archived(conn, target, "the base backup's last WAL segment", timeout)
            stopped = await _terminate(conn, late[0])
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ArchivingNotReady(f"{error} {stopped}")
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _terminate(conn: psycopg.AsyncConnection, pid: int) -> str:
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            (done,) = one_row(await cur.fetchone())
    except psycopg.Error as exc:
        return f"The server's backup (pid {pid}) could not be stopped: {str(exc).strip()}."
    return (
        f"The server's backup (pid {pid}) was stopped."
        if done
        else f"The server's backup (pid {pid}) had already ended."
    )
