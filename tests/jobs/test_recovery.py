"""Recovery after a daemon died, piece by piece (no daemon process): what becomes of each
kind of job, the job database migration and marking, the dead daemon's locks, and the
scheduler's owed occurrence. test_daemon_crash.py does the whole thing with SIGKILL."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from core.config import load_config
from core.jobs.api import Job, JobState
from core.daemon.recovery import decide, lost_connection_message, release_locks
from core.jobs.store import ROLE_CLI, ROLE_DAEMON, JobStore, Owner, process_start
from core.schedule.runner import owe_interrupted
from core.schedule.state import RunRecord, ScheduleStore


def job(
    kind: str = "backup",
    *,
    origin: str = "cli",
    params: dict | None = None,
    job_id: str = "0000000000b1",
    state: JobState = JobState.RUNNING,
) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=job_id,
        kind=kind,
        params=params or {},
        state=state,
        origin=origin,
        created_at=now,
        started_at=now,
        finished_at=None,
        progress=None,
        result=None,
        error=None,
    )


def dead_owner() -> Owner:
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return Owner(socket.gethostname(), int(out.stdout), "12345")


def test_what_each_interrupted_job_becomes():
    assert decide(job("backup")).action == "requeue"
    assert decide(job("verify", origin="console")).action == "requeue"
    assert decide(job("copy", origin="api")).action == "requeue"
    for kind in ("restore", "restore-database"):
        never = decide(job(kind, origin="scheduler", params={"schedule": "x"}))
        assert never.action == "none" and "never rerun automatically" in never.reason
    assert decide(job("prune")).action == "none"
    assert decide(job("drill")).action == "none"
    twice = decide(job("backup", params={"resumed_from": "0000000000aa"}))
    assert twice.action == "none" and "rerun of interrupted job 0000000000aa" in twice.reason
    scheduled = decide(job("prune", origin="scheduler", params={"schedule": "prune"}))
    assert scheduled.action == "schedule" and "schedule prune" in scheduled.reason
    assert lost_connection_message("0000000000b1", job("restore")) == (
        "the daemon stopped while following job 0000000000b1 (connection lost); a restore is never rerun "
        "automatically: check the target, then run it again — see `axisor-backup jobs 0000000000b1`"
    )


async def test_an_older_job_database_is_migrated_and_daemon_jobs_become_interrupted(tmp_path):
    db = sqlite3.connect(tmp_path / "jobs.sqlite3")  # the schema before owner_role and recovery
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL, state TEXT NOT NULL,"
        " origin TEXT NOT NULL, created_ns INTEGER NOT NULL, created_at TEXT NOT NULL, started_at TEXT,"
        " finished_at TEXT, progress TEXT, result TEXT, error TEXT, owner_host TEXT NOT NULL,"
        " owner_pid INTEGER NOT NULL, owner_start TEXT NOT NULL)"
    )
    dead = dead_owner()
    db.execute(
        "INSERT INTO jobs VALUES ('0000000000a0', 'backup', '{}', 'running', 'cli', 1, ?, NULL, NULL, NULL,"
        " NULL, NULL, ?, ?, ?)",
        (datetime.now(UTC).isoformat(), dead.host, dead.pid, dead.start),
    )
    db.commit()
    db.close()
    store = await JobStore.open(tmp_path)
    try:
        await store.insert(job(job_id="0000000000a1"), dead, ROLE_DAEMON)
        await store.insert(job(job_id="0000000000a2"), dead, ROLE_CLI)
        me = Owner.me()
        await store.insert(job(job_id="0000000000a3"), me, ROLE_DAEMON)  # alive: untouched
        # A CLI that opens the database first marks them; the daemon's next start recovers.
        marked = {j.id: j for j in await store.mark_orphans(Owner(me.host, me.pid, "other"))}
        assert marked["0000000000a0"].state == JobState.FAILED  # an older row: not known to be the daemon's
        assert marked["0000000000a2"].state == JobState.FAILED
        interrupted = marked["0000000000a1"]
        assert interrupted.state == JobState.INTERRUPTED and interrupted.state.finished
        assert interrupted.result["exit_code"] == 21
        assert f"the daemon (pid {dead.pid} on {dead.host}) stopped while this job was running" in interrupted.error
        assert "0000000000a3" not in marked
        [(pending, owner)] = await store.unrecovered()
        assert pending.id == "0000000000a1" and owner == dead
        done = await store.set_recovery(pending, {"action": "requeue", "summary": "re-queued once as job x"})
        assert done.error.endswith("; re-queued once as job x")
        assert await store.unrecovered() == []  # recovered once, never again
        again = await store.get("0000000000a1")
        assert again.result["recovery"]["action"] == "requeue" and again.error == done.error
        assert (await store.log("0000000000a1"))[-1] == "recovered: re-queued once as job x"
    finally:
        await store.close()
    await (await JobStore.open(tmp_path)).close()  # opening a migrated database again is a no-op


def _lock(path, pid: int, start: str, host: str | None = None) -> None:
    now = datetime.now(UTC)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "exclusive": False,
                "host": host or socket.gethostname(),
                "pid": pid,
                "start": start,
                "operation": "backup",
                "created": now.isoformat(),
                "refreshed": now.isoformat(),
                "expires": (now + timedelta(minutes=30)).isoformat(),
            }
        )
    )


async def test_only_the_dead_daemons_locks_are_released(ws):
    ws.write_config()
    config = load_config(ws.config)
    dead = dead_owner()
    locks = ws.repo / "locks"
    _lock(locks / ("a" * 32), dead.pid, dead.start)  # the dead daemon's
    _lock(locks / ("b" * 32), dead.pid, "999")  # that pid's earlier life: not the daemon's lock
    _lock(locks / ("c" * 32), os.getpid(), process_start(os.getpid()))  # alive
    _lock(locks / ("d" * 32), dead.pid, dead.start, host="elsewhere.example")  # another host's
    removed, problems = await release_locks(config, [dead])
    assert problems == []
    assert [r["key"] for r in removed] == [f"locks/{'a' * 32}"]
    assert "no process" in removed[0]["why"]
    assert sorted(p.name[0] for p in locks.iterdir()) == ["b", "c", "d"]


async def test_an_interrupted_scheduled_run_is_owed_again_once(ws, tmp_path):
    ws.write_config('[schedule]\nenabled = true\ncron_expression = "0 3 * * *"\n')
    config = load_config(ws.config)
    state = tmp_path / "state"
    store = await ScheduleStore.open(state / "jobs.sqlite3")
    occurrence = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    await store.set_last("backup", occurrence)
    await store.record(RunRecord("backup", occurrence, occurrence, "cron", "submitted", job_id="0000000000c1"))
    await store.close()
    first = job(origin="scheduler", params={"schedule": "backup"}, job_id="0000000000c1")
    now = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)
    said = await owe_interrupted(config, state, first, now)
    assert said == "owed again by schedule backup: the scheduler catches up its 2026-01-05T03:00:00+00:00 run once"
    store = await ScheduleStore.open(state / "jobs.sqlite3")
    assert (await store.states())["backup"].last_occurrence < occurrence  # the tick owes it (and later ones) again
    [rec, _] = await store.runs("backup")
    assert rec.outcome == "interrupted" and rec.job_id == "0000000000c1"
    # Its catch-up run was interrupted too (same occurrence): not owed a third time.
    await store.set_last("backup", occurrence)
    await store.record(RunRecord("backup", occurrence, now, "catch-up", "submitted", job_id="0000000000c2"))
    await store.close()
    second = job(origin="scheduler", params={"schedule": "backup"}, job_id="0000000000c2")
    said = await owe_interrupted(config, state, second, now)
    assert said.startswith(
        "not caught up again: the 2026-01-05T03:00:00+00:00 run of schedule backup was already interrupted once"
    )
    gone = job(origin="scheduler", params={"schedule": "nightly"}, job_id="0000000000c3")
    assert (
        await owe_interrupted(config, state, gone, now)
    ) == "not caught up: schedule nightly is no longer configured"


async def test_an_interrupted_verification_is_neither_damage_nor_a_pass_in_status(ws, tmp_path):
    from core.jobs.status import history_checks

    ws.write_config()
    config = load_config(ws.config)
    store = await JobStore.open(tmp_path)
    try:
        now = datetime.now(UTC)
        passed = job("verify", job_id="0000000000d1", state=JobState.COMPLETED)
        await store.insert(passed, Owner.me())
        await store.update(replace(passed, finished_at=now, result={"ok": True, "exit_code": 0}))
        await store.insert(job("verify", job_id="0000000000d2"), dead_owner(), ROLE_DAEMON)
        [marked] = await store.mark_orphans(Owner.me())
        assert marked.state == JobState.INTERRUPTED
        [verify] = [c for c in await history_checks(config, store) if c.name == "verify"]
        assert verify.level == "ok" and "0000000000d1" in verify.message
    finally:
        await store.close()


async def test_a_recovery_interrupted_after_it_requeued_does_not_requeue_again(ws, tmp_path):
    """The daemon died after submitting a backup's rerun and before recording it: the next
    start finds that rerun and links it, instead of running the backup a second time."""
    from core.daemon.recovery import recover
    from core.jobs.engine import Engine

    ws.write_config()
    config = load_config(ws.config)
    store = await JobStore.open(tmp_path)
    dead = dead_owner()
    await store.insert(job("backup", job_id="0000000000e1"), dead, ROLE_DAEMON)
    rerun = job("backup", job_id="0000000000e2", params={"resumed_from": "0000000000e1"}, state=JobState.PENDING)
    await store.insert(rerun, dead, ROLE_DAEMON)  # submitted by the recovery that died
    await store.close()
    engine = Engine(config, lambda _c: ws.passphrase, directory=tmp_path, workers=1)
    await engine.start()  # marks both interrupted: their daemon is gone
    try:
        recovered = {j.id: j for j in await recover(engine, config)}
        first = recovered["0000000000e1"].result["recovery"]
        assert first["rerun_job"] == "0000000000e2" and "already re-queued as job 0000000000e2" in first["summary"]
        assert recovered["0000000000e2"].result["recovery"]["action"] == "none"
        backups = [j for j in await engine.list(limit=100) if j.kind == "backup"]
        assert sorted(j.id for j in backups) == ["0000000000e1", "0000000000e2"]  # no third run
    finally:
        await engine.shutdown(grace=10, reason="test finished")
