"""The job database: SQLite in the state directory, the memory of what ran.

One file, ``jobs.sqlite3``, shared by the daemon and by embedded engines in CLI processes
(WAL mode and a busy timeout let several processes write). Each pending or running job
records the process that owns it (pid and the kernel's start time of that pid, so a
recycled pid is not mistaken for the owner) and its role; the next engine to start marks
the jobs of a dead owner with the reason: ``interrupted`` when the owner was the daemon
(its next start recovers them: core/daemon/recovery.py, which then fills ``recovery``),
``failed`` when it was a one-shot CLI process.

Schema changes are additive columns, added at open by ``_migrate`` (a database written by
an older version keeps working; its rows read as owner role "" = not the daemon).

SQLite calls block, so they run on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import JobNotFound, UsageError
from core.statedir import ENV_STATE_DIR, resolve_state_dir
from core.proc import process_start
from core.scrub import scrub
from core.jobs.api import Job, JobState
from core.jobs.codec import job_from_dict, progress_from_dict, progress_to_dict
from core.state_db import SqliteOnThread

if TYPE_CHECKING:
    from core.config import Config

DB_NAME = "jobs.sqlite3"
# Who owned a job: the daemon (its jobs are recovered at its next start) or a CLI process.
ROLE_DAEMON = "daemon"
ROLE_CLI = "cli"
# Columns added after the first release: name -> its definition for ALTER TABLE.
_ADDED_COLUMNS = {"owner_role": "TEXT NOT NULL DEFAULT ''", "recovery": "TEXT"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    progress TEXT,
    result TEXT,
    error TEXT,
    owner_host TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_start TEXT NOT NULL,
    owner_role TEXT NOT NULL DEFAULT '',
    recovery TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_ns);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS job_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_log_job ON job_log (job_id, seq);
"""


def state_dir(config: Config | None = None) -> Path:
    """The state folder (core/statedir.py has the one rule)."""
    return resolve_state_dir(config)


@dataclass(frozen=True, slots=True)
class Owner:
    host: str
    pid: int
    start: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), process_start(os.getpid()))

    def alive(self) -> bool:
        if self.host != socket.gethostname():
            return True  # another host's process: not ours to judge
        if os.path.isdir("/proc/self"):
            return process_start(self.pid) == self.start and self.start != ""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def interrupted_reason(owner: Owner, was: str) -> str:
    return (
        f"the daemon (pid {owner.pid} on {owner.host}) stopped while this job was {was} "
        "(killed or crashed); interrupted, not failed"
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json(value: Any) -> str:
    # Secrets never reach the job database, whatever text a job or an error carried
    # (a conninfo echoed by a server message, say): scrubbed as they are written.
    return scrub(json.dumps(value, default=str))


def _text(value: str | None) -> str | None:
    return None if value is None else scrub(value)


def _row_to_job(row: sqlite3.Row) -> Job:
    return job_from_dict(
        {
            "id": row["id"],
            "kind": row["kind"],
            "params": json.loads(row["params"]),
            "state": row["state"],
            "origin": row["origin"],
            "created_at": row["created_at"],
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "progress": json.loads(row["progress"]) if row["progress"] else None,
            "result": json.loads(row["result"]) if row["result"] else None,
            "error": row["error"],
        }
    )


class JobStore(SqliteOnThread):
    """Async access to the job database; every query runs on the store's own thread."""

    SCHEMA = _SCHEMA
    WHAT = "job database"
    ROWS_BY_NAME = True
    PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")

    def __init__(self, path: Path) -> None:
        super().__init__(path, "axisor-jobstore")

    @classmethod
    async def open(cls, directory: Path) -> JobStore:
        store = cls(directory / DB_NAME)
        await store._start()
        return store

    def _connect(self) -> None:
        super()._connect()
        try:
            self._migrate()
        except sqlite3.Error as exc:
            raise self.failure(exc) from None

    def _migrate(self) -> None:
        """Add the columns a database from an older version lacks."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        for name, definition in _ADDED_COLUMNS.items():
            if name in have:
                continue
            try:
                self.db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process migrated it meanwhile
                    raise

    # -- writes ---------------------------------------------------------------------

    async def insert(self, job: Job, owner: Owner, role: str = ROLE_CLI) -> None:
        def run() -> None:
            self.db.execute(
                "INSERT INTO jobs (id, kind, params, state, origin, created_ns, created_at, started_at, finished_at,"
                " progress, result, error, owner_host, owner_pid, owner_start, owner_role)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.kind,
                    _json(job.params),
                    job.state.value,
                    job.origin,
                    time.time_ns(),
                    _ts(job.created_at),
                    _ts(job.started_at),
                    _ts(job.finished_at),
                    _json(progress_to_dict(job.progress)) if job.progress else None,
                    _json(job.result) if job.result is not None else None,
                    _text(job.error),
                    owner.host,
                    owner.pid,
                    owner.start,
                    role,
                ),
            )

        await self._call(run)

    async def update(self, job: Job) -> None:
        def run() -> None:
            self.db.execute(
                "UPDATE jobs SET state = ?, started_at = ?, finished_at = ?, progress = ?, result = ?, error = ?"
                " WHERE id = ?",
                (
                    job.state.value,
                    _ts(job.started_at),
                    _ts(job.finished_at),
                    _json(progress_to_dict(job.progress)) if job.progress else None,
                    _json(job.result) if job.result is not None else None,
                    _text(job.error),
                    job.id,
                ),
            )

        await self._call(run)

    async def update_progress(self, job: Job) -> None:
        def run() -> None:
            # Only while running: a late progress write must never overwrite a finished record.
            self.db.execute(
                "UPDATE jobs SET progress = ? WHERE id = ? AND state = ?",
                (_json(progress_to_dict(job.progress)) if job.progress else None, job.id, JobState.RUNNING.value),
            )

        await self._call(run)

    async def append_log(self, job_id: str, line: str) -> None:
        def run() -> None:
            self.db.execute(
                "INSERT INTO job_log (job_id, at, line) VALUES (?, ?, ?)", (job_id, _ts(_now()), scrub(line))
            )

        await self._call(run)

    async def mark_orphans(self, me: Owner) -> list[Job]:
        """Mark the pending and running jobs whose owning process is gone; returns them.

        The daemon's jobs become ``interrupted`` (recovered at its next start); a one-shot
        CLI process's become ``failed``, as before."""

        def run() -> list[Job]:
            rows = self.db.execute(
                "SELECT * FROM jobs WHERE state IN (?, ?)", (JobState.PENDING.value, JobState.RUNNING.value)
            ).fetchall()
            marked: list[Job] = []
            for row in rows:
                owner = Owner(row["owner_host"], row["owner_pid"], row["owner_start"])
                if owner == me or owner.alive():
                    continue
                was = row["state"]
                finished = _now()
                result = json.loads(row["result"]) if row["result"] else None
                if row["owner_role"] == ROLE_DAEMON:
                    state = JobState.INTERRUPTED
                    reason = interrupted_reason(owner, was)
                    from core.errors import DaemonError

                    result = {
                        **(result or {}),
                        "exit_code": DaemonError.exit_code,
                        "interrupted": {"daemon_pid": owner.pid, "host": owner.host, "was": was},
                    }
                else:
                    state = JobState.FAILED
                    reason = (
                        f"the process that ran this job (pid {owner.pid} on {owner.host}) ended while the job "
                        f"was {was}; marked failed at the next start"
                    )
                cur = self.db.execute(
                    "UPDATE jobs SET state = ?, finished_at = ?, error = ?, result = ? WHERE id = ? AND state = ?",
                    (state.value, _ts(finished), reason, _json(result) if result is not None else None, row["id"], was),
                )
                if cur.rowcount:
                    self.db.execute(
                        "INSERT INTO job_log (job_id, at, line) VALUES (?, ?, ?)",
                        (row["id"], _ts(finished), f"{state.value}: {reason}"),
                    )
                    marked.append(
                        replace(_row_to_job(row), state=state, finished_at=finished, error=reason, result=result)
                    )
            return marked

        return await self._call(run)

    async def unrecovered(self) -> list[tuple[Job, Owner]]:
        """Interrupted jobs of a dead daemon that no daemon start has recovered yet, oldest
        first, each with the daemon that ran it (whoever marked them: the daemon, or a CLI
        that opened the job database first)."""

        def run() -> list[tuple[Job, Owner]]:
            rows = self.db.execute(
                "SELECT * FROM jobs WHERE state = ? AND owner_role = ? AND recovery IS NULL ORDER BY created_ns",
                (JobState.INTERRUPTED.value, ROLE_DAEMON),
            ).fetchall()
            return [(_row_to_job(r), Owner(r["owner_host"], r["owner_pid"], r["owner_start"])) for r in rows]

        return await self._call(run)

    async def set_recovery(self, job: Job, recovery: dict[str, Any]) -> Job:
        """Record what the daemon did about an interrupted job: in ``recovery`` (done once),
        in its result (``result.recovery``), its error text and its log."""
        summary = str(recovery.get("summary") or "")
        error = f"{job.error}; {summary}" if job.error and summary else (job.error or summary)
        result = {**(job.result or {}), "recovery": recovery}

        def run() -> None:
            self.db.execute(
                "UPDATE jobs SET recovery = ?, result = ?, error = ? WHERE id = ?",
                (_json(recovery), _json(result), _text(error), job.id),
            )
            self.db.execute(
                "INSERT INTO job_log (job_id, at, line) VALUES (?, ?, ?)",
                (job.id, _ts(_now()), scrub(f"recovered: {summary}")),
            )

        await self._call(run)
        return replace(job, result=result, error=error)

    # -- reads ----------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job with this id, or the only one whose id starts with it."""

        def run() -> Job:
            row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                return _row_to_job(row)
            if job_id and all(c in "0123456789abcdef" for c in job_id):
                rows = self.db.execute("SELECT * FROM jobs WHERE id LIKE ? LIMIT 2", (job_id + "%",)).fetchall()
                if len(rows) == 1:
                    return _row_to_job(rows[0])
                if len(rows) > 1:
                    raise UsageError(f"job id prefix {job_id!r} matches several jobs; give more characters")
            raise JobNotFound(f"no job {job_id!r} in {self.path}")

        return await self._call(run)

    async def list(
        self, *, limit: int = 100, states: Iterable[JobState] | None = None, kinds: Iterable[str] | None = None
    ) -> list[Job]:
        """Newest first."""

        def run() -> list[Job]:
            where, args = [], []
            if states is not None:
                st = [s.value for s in states]
                where.append(f"state IN ({', '.join('?' * len(st))})")
                args += st
            if kinds is not None:
                kd = list(kinds)
                where.append(f"kind IN ({', '.join('?' * len(kd))})")
                args += kd
            sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "")
            sql += " ORDER BY created_ns DESC LIMIT ?"
            return [_row_to_job(r) for r in self.db.execute(sql, (*args, max(0, limit))).fetchall()]

        return await self._call(run)

    async def counts(self) -> dict[tuple[str, str], int]:
        """(kind, state) -> number of jobs."""

        def run() -> dict[tuple[str, str], int]:
            rows = self.db.execute("SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state")
            return {(r["kind"], r["state"]): r["n"] for r in rows}

        return await self._call(run)

    async def log(self, job_id: str) -> builtins.list[str]:
        job = await self.get(job_id)

        def run() -> list[str]:
            return [
                r["line"] for r in self.db.execute("SELECT line FROM job_log WHERE job_id = ? ORDER BY seq", (job.id,))
            ]

        return await self._call(run)


__all__ = [
    "ENV_STATE_DIR",
    "JobStore",
    "Owner",
    "ROLE_CLI",
    "ROLE_DAEMON",
    "interrupted_reason",
    "process_start",
    "progress_from_dict",
    "state_dir",
]
