"""The scheduler's memory: pause state, the last occurrence handled, and every decision.

Two tables beside the job engine's in the same SQLite file (``jobs.sqlite3`` in the state
directory, see core/jobs/store.py): ``schedule_state`` (one row per schedule name) and
``schedule_runs`` (one row per decision: submitted, deferred, skipped, failed). The daemon
and a CLI (`schedules pause`) may write at once; WAL mode and a busy timeout make that
safe, and the daemon re-reads the pause state on every tick.

SQLite calls block, so they run on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from core.errors import AxisorError

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_state (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    paused_at TEXT,
    last_occurrence TEXT
);
CREATE TABLE IF NOT EXISTS schedule_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule TEXT NOT NULL,
    occurrence TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    trigger TEXT NOT NULL,
    outcome TEXT NOT NULL,
    job_id TEXT,
    type TEXT,
    missed INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS schedule_runs_by_name ON schedule_runs (schedule, seq);
"""


@dataclass(frozen=True, slots=True)
class ScheduleState:
    name: str
    paused: bool = False
    paused_at: datetime | None = None
    last_occurrence: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    schedule: str
    occurrence: datetime
    decided_at: datetime
    trigger: str  # cron | catch-up | manual
    outcome: str  # submitted | deferred | skipped | failed
    job_id: str | None = None
    type: str | None = None  # backup type chosen by the policy
    missed: int = 0  # earlier occurrences folded into this run
    detail: str = ""
    seq: int = 0


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class ScheduleStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="axisor-schedstore")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path) -> ScheduleStore:
        store = cls(path)
        await store._call(store._open)
        return store

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            os.chmod(self.path, 0o600)
        except (OSError, sqlite3.Error) as exc:
            raise AxisorError(f"cannot open the schedule state in {self.path}: {exc}") from None
        self._db = db

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._call(shut)
        self._thread.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "schedule store is closed"
        return self._db

    async def states(self) -> dict[str, ScheduleState]:
        def run() -> dict[str, ScheduleState]:
            rows = self.db.execute("SELECT name, paused, paused_at, last_occurrence FROM schedule_state")
            return {name: ScheduleState(name, bool(paused), _dt(at), _dt(last))
                    for name, paused, at, last in rows}

        return await self._call(run)

    async def set_last(self, name: str, occurrence: datetime) -> None:
        def run() -> None:
            self.db.execute(
                "INSERT INTO schedule_state (name, last_occurrence) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET last_occurrence = excluded.last_occurrence",
                (name, occurrence.isoformat()),
            )

        await self._call(run)

    async def set_paused(self, name: str, paused: bool, at: datetime) -> bool:
        """Pause or resume; returns whether the state changed.

        Resuming also moves the last occurrence to ``at``: the runs a pause held back are
        not owed afterwards (that is what pausing means), so resume never causes a burst.
        """
        def run() -> bool:
            row = self.db.execute("SELECT paused FROM schedule_state WHERE name = ?", (name,)).fetchone()
            was = bool(row[0]) if row else False
            if paused:
                self.db.execute(
                    "INSERT INTO schedule_state (name, paused, paused_at) VALUES (?, 1, ?)"
                    " ON CONFLICT(name) DO UPDATE SET paused = 1, paused_at = excluded.paused_at"
                    " WHERE paused = 0",
                    (name, at.isoformat()),
                )
            else:
                self.db.execute(
                    "INSERT INTO schedule_state (name, paused, last_occurrence) VALUES (?, 0, ?)"
                    " ON CONFLICT(name) DO UPDATE SET paused = 0, paused_at = NULL,"
                    " last_occurrence = excluded.last_occurrence WHERE paused = 1",
                    (name, at.isoformat()),
                )
            return was != paused

        return await self._call(run)

    async def record(self, rec: RunRecord) -> RunRecord:
        def run() -> RunRecord:
            cur = self.db.execute(
                "INSERT INTO schedule_runs (schedule, occurrence, decided_at, trigger, outcome, job_id, type,"
                " missed, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.schedule, rec.occurrence.isoformat(), rec.decided_at.isoformat(), rec.trigger, rec.outcome,
                 rec.job_id, rec.type, rec.missed, rec.detail),
            )
            return replace(rec, seq=int(cur.lastrowid or 0))

        return await self._call(run)

    async def runs(self, name: str | None = None, *, limit: int = 100,
                   outcomes: tuple[str, ...] | None = None) -> list[RunRecord]:
        """Newest first."""
        def run() -> list[RunRecord]:
            where, args = [], []
            if name is not None:
                where.append("schedule = ?")
                args.append(name)
            if outcomes:
                where.append(f"outcome IN ({', '.join('?' * len(outcomes))})")
                args.extend(outcomes)
            sql = ("SELECT seq, schedule, occurrence, decided_at, trigger, outcome, job_id, type, missed, detail"
                   " FROM schedule_runs" + (f" WHERE {' AND '.join(where)}" if where else "")
                   + " ORDER BY seq DESC LIMIT ?")
            out = []
            for seq, sched, occ, decided, trig, outcome, job, typ, missed, detail in self.db.execute(
                    sql, (*args, limit)):
                out.append(RunRecord(sched, datetime.fromisoformat(occ), datetime.fromisoformat(decided), trig,
                                     outcome, job, typ, missed, detail, seq))
            return out

        return await self._call(run)


def store_path(config: Any) -> Path:
    """The job database file the schedule tables live in."""
    from core.jobs.store import DB_NAME, state_dir

    return state_dir(config) / DB_NAME
