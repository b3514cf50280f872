"""The scheduler's memory: pause state, the last occurrence handled, and every decision.

Two tables beside the job engine's in the same SQLite file (``jobs.sqlite3`` in the state
directory, see core/jobs/store.py): ``schedule_state`` (one row per schedule name) and
``schedule_runs`` (one row per decision: submitted, deferred, skipped, failed). The daemon
and a CLI (`schedules pause`) may write at once; WAL mode and a busy timeout make that
safe, and the daemon re-reads the pause state on every tick.

SQLite calls block, so they run on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from core.state_db import SqliteOnThread

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
    outcome: str  # submitted | deferred | skipped | failed | interrupted (core/daemon/recovery.py)
    job_id: str | None = None
    type: str | None = None  # backup type chosen by the policy
    missed: int = 0  # earlier occurrences folded into this run
    detail: str = ""
    seq: int = 0


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class ScheduleStore(SqliteOnThread):
    SCHEMA = _SCHEMA
    WHAT = "schedule state"

    def __init__(self, path: Path) -> None:
        super().__init__(path, "axisor-schedstore")

    @classmethod
    async def open(cls, path: Path) -> ScheduleStore:
        store = cls(path)
        await store._start()
        return store

    async def states(self) -> dict[str, ScheduleState]:
        def run() -> dict[str, ScheduleState]:
            rows = self.db.execute("SELECT name, paused, paused_at, last_occurrence FROM schedule_state")
            return {name: ScheduleState(name, bool(paused), _dt(at), _dt(last)) for name, paused, at, last in rows}

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
                (
                    rec.schedule,
                    rec.occurrence.isoformat(),
                    rec.decided_at.isoformat(),
                    rec.trigger,
                    rec.outcome,
                    rec.job_id,
                    rec.type,
                    rec.missed,
                    rec.detail,
                ),
            )
            return replace(rec, seq=int(cur.lastrowid or 0))

        return await self._call(run)

    async def runs(
        self, name: str | None = None, *, limit: int = 100, outcomes: tuple[str, ...] | None = None
    ) -> list[RunRecord]:
        """Newest first."""

        def run() -> list[RunRecord]:
            where, args = [], []
            if name is not None:
                where.append("schedule = ?")
                args.append(name)
            if outcomes:
                where.append(f"outcome IN ({', '.join('?' * len(outcomes))})")
                args.extend(outcomes)
            sql = (
                "SELECT seq, schedule, occurrence, decided_at, trigger, outcome, job_id, type, missed, detail"
                " FROM schedule_runs"
                + (f" WHERE {' AND '.join(where)}" if where else "")
                + " ORDER BY seq DESC LIMIT ?"
            )
            out = []
            for seq, sched, occ, decided, trig, outcome, job, typ, missed, detail in self.db.execute(
                sql, (*args, limit)
            ):
                out.append(
                    RunRecord(
                        sched,
                        datetime.fromisoformat(occ),
                        datetime.fromisoformat(decided),
                        trig,
                        outcome,
                        job,
                        typ,
                        missed,
                        detail,
                        seq,
                    )
                )
            return out

        return await self._call(run)


def store_path(config: Any) -> Path:
    """The job database file the schedule tables live in."""
    from core.jobs.store import DB_NAME, state_dir

    return state_dir(config) / DB_NAME
