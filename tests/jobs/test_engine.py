"""The engine in-process against a real repository: states, history, events, limits,
locks, cancellation and orphans."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import warnings

import pytest

from conftest import PASSPHRASE
from core.config import load_config
from core.errors import JobNotFound, UsageError
from core.jobs.api import JobProgress, JobState
from core.jobs.engine import Engine
from core.jobs.kinds import JobContext, register
from core.jobs.store import JobStore, Owner, process_start

GATES: dict[str, asyncio.Event] = {}


async def _blocking(ctx: JobContext, params: dict) -> dict:
    ctx.log("blocking until released")
    await GATES[params["gate"]].wait()
    return {"gate": params["gate"]}


async def _exclusive(ctx: JobContext, params: dict) -> dict:
    async with ctx.locks(["primary"], exclusive=True):
        ctx.progress(JobProgress(phase="holding primary"))
        await GATES[params["gate"]].wait()
    return {}


async def _chatty(ctx: JobContext, params: dict) -> dict:
    for i in range(2000):
        ctx.progress(JobProgress(phase="counting", files_done=i))
    await GATES[params["gate"]].wait()
    return {}


register("test-block", _blocking)
register("test-exclusive", _exclusive)
register("test-chatty", _chatty)


def gate(name: str) -> str:
    GATES[name] = asyncio.Event()
    return name


async def engine_for(jw, extra: str = "") -> Engine:
    jw.config(extra)
    engine = Engine(load_config(jw.ws.config), lambda confirm: PASSPHRASE, directory=jw.state, workers=2)
    await engine.start()
    return engine


async def until(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_backup_job_runs_and_its_history_survives_a_restart(jw):
    engine = await engine_for(jw)
    events = await engine.subscribe()
    job = await engine.submit("backup", {"type": "full"}, origin="console")
    assert job.state == JobState.PENDING
    done = await engine.wait(job.id)
    assert done.state == JobState.COMPLETED, done.error
    assert done.result["exit_code"] == 0
    [snap] = done.result["snapshots"]
    assert snap["source"] == "application/user_data" and snap["type"] == "full"
    assert done.result["stats"]["files"] == 2
    seen = []
    async for ev in events:
        if ev.job.id == job.id:
            seen.append(ev.type)
        if ev.type == "finished":
            break
    assert seen[0] == "submitted" and seen[1] == "started" and seen[-1] == "finished"
    assert "log" in seen
    await engine.close()

    again = await engine_for(jw)
    stored = await again.get(job.id[:6])  # a unique prefix names the job
    assert stored.state == JobState.COMPLETED and stored.origin == "console"
    assert stored.params == {"type": "full"}
    assert stored.result["snapshots"][0]["id"] == snap["id"]
    assert stored.started_at and stored.finished_at and stored.finished_at >= stored.started_at
    assert any("snapshot" in line for line in await again.log(job.id))
    assert [j.id for j in await again.list(states=frozenset({JobState.COMPLETED}))] == [job.id]
    with pytest.raises(JobNotFound):
        await again.get("0123456789ab")
    with pytest.raises(UsageError):
        await again.submit("no-such-kind", {})
    await again.close()


async def test_failed_job_records_error_and_exit_code(jw):
    jw.config()
    engine = Engine(load_config(jw.ws.config), lambda confirm: "hunter2-not-it", directory=jw.state)
    await engine.start()
    job = await engine.wait((await engine.submit("backup", {})).id)
    assert job.state == JobState.FAILED
    assert job.result == {"exit_code": 4}
    assert "wrong passphrase" in job.error and "hunter2" not in job.error
    await engine.close()


async def test_progress_events_are_throttled_and_the_last_one_arrives(jw):
    engine = await engine_for(jw)
    events = await engine.subscribe()
    g = gate("chatty")
    job = await engine.submit("test-chatty", {"gate": g})
    progress = []

    async def collect():
        async for ev in events:
            if ev.type == "progress":
                progress.append(ev.job.progress.files_done)
                if ev.job.progress.files_done == 1999:
                    return

    await asyncio.wait_for(collect(), 10)
    # 2000 updates in one burst: the first goes out, the rest fold into one delayed event.
    assert len(progress) <= 2 and progress[-1] == 1999
    assert (await engine.get(job.id)).progress.files_done == 1999
    GATES[g].set()
    await engine.wait(job.id)
    await engine.close()


async def test_max_concurrent_limits_running_jobs(jw):
    engine = await engine_for(jw, "[schedule]\nmax_concurrent = 2\n")
    gates = [gate(f"mc{i}") for i in range(4)]
    jobs = [await engine.submit("test-block", {"gate": g}) for g in gates]

    async def states():
        return [(await engine.get(j.id)).state for j in jobs]

    async def two_running():
        return (await states()).count(JobState.RUNNING) == 2

    await until(two_running)
    await asyncio.sleep(0.2)  # nothing else may start while both slots are taken
    assert await states() == [JobState.RUNNING, JobState.RUNNING, JobState.PENDING, JobState.PENDING]
    GATES[gates[0]].set()
    await engine.wait(jobs[0].id)
    await until(lambda: _state_is(engine, jobs[2].id, JobState.RUNNING))
    assert (await engine.get(jobs[3].id)).state == JobState.PENDING
    for g in gates:
        GATES[g].set()
    for j in jobs:
        assert (await engine.wait(j.id)).state == JobState.COMPLETED
    await engine.close()


async def _state_is(engine, job_id, state):
    return (await engine.get(job_id)).state == state


async def test_conflicting_jobs_wait_for_the_location_lock(jw):
    engine = await engine_for(jw)
    g = gate("excl")
    holder = await engine.submit("test-exclusive", {"gate": g})
    await until(lambda: _phase_is(engine, holder.id, "holding primary"))
    backup = await engine.submit("backup", {})
    await until(lambda: _state_is(engine, backup.id, JobState.RUNNING))
    await asyncio.sleep(0.3)
    waiting = await engine.get(backup.id)
    assert waiting.state == JobState.RUNNING and waiting.progress.phase == "waiting for locks"
    GATES[g].set()
    done = await engine.wait(backup.id)
    first = await engine.get(holder.id)
    assert done.state == JobState.COMPLETED, done.error
    assert done.finished_at > first.finished_at
    await engine.close()


async def _phase_is(engine, job_id, phase):
    p = (await engine.get(job_id)).progress
    return p is not None and p.phase == phase


async def test_cancel_pending_and_running_jobs(jw):
    engine = await engine_for(jw, "[schedule]\nmax_concurrent = 1\n")
    g = gate("cancel")
    running = await engine.submit("test-block", {"gate": g})
    pending = await engine.submit("test-block", {"gate": g})
    await until(lambda: _state_is(engine, running.id, JobState.RUNNING))
    p = await engine.cancel(pending.id)
    assert p.state == JobState.CANCELLED and p.started_at is None and "before it started" in p.error
    r = await engine.cancel(running.id)
    assert r.state == JobState.CANCELLED and r.result == {"exit_code": 130}
    assert (await engine.cancel(running.id)).state == JobState.CANCELLED  # idempotent
    await engine.close()


async def test_cancelling_a_backup_midway_leaves_a_repository_that_verifies(jw, big):
    engine = await engine_for(jw)
    events = await engine.subscribe()
    job = await engine.submit("backup", {"type": "full"})
    async for ev in events:
        if ev.job.id == job.id and ev.type == "progress" and ev.job.progress.bytes_done > 0:
            break
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cancelled = await engine.cancel(job.id)
        gc.collect()
    assert cancelled.state == JobState.CANCELLED
    # The walk leaves nothing half-started behind (it once left folder coroutines never awaited).
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]
    verify = await engine.wait((await engine.submit("verify", {"full": True})).id)
    assert verify.state == JobState.COMPLETED, verify.error
    assert verify.result["ok"] and verify.result["damage"] == []
    again = await engine.wait((await engine.submit("backup", {})).id)
    assert again.state == JobState.COMPLETED and again.result["snapshots"][0]["summary"]["total_files"] == 3
    await engine.close()


async def test_jobs_of_a_dead_process_are_marked_failed_at_the_next_start(jw):
    jw.state.mkdir(parents=True)
    store = await JobStore.open(jw.state)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from datetime import UTC, datetime

        from core.jobs.api import Job

        def record(job_id, state):
            return Job(
                id=job_id,
                kind="backup",
                params={},
                state=state,
                origin="cli",
                created_at=datetime.now(UTC),
                started_at=datetime.now(UTC),
                finished_at=None,
                progress=None,
                result=None,
                error=None,
            )

        me = Owner.me()
        await store.insert(record("0000000000a1", JobState.RUNNING), Owner(me.host, dead_pid, "1"))
        await store.insert(record("0000000000a2", JobState.PENDING), Owner(me.host, dead_pid, "1"))
        await store.insert(
            record("0000000000a3", JobState.RUNNING), Owner(me.host, alive.pid, process_start(alive.pid))
        )
        # A live pid that was recycled (different start time) is not the owner.
        await store.insert(record("0000000000a4", JobState.RUNNING), Owner(me.host, alive.pid, "42"))
        await store.close()

        engine = await engine_for(jw)
        assert sorted(j.id for j in engine.orphans) == ["0000000000a1", "0000000000a2", "0000000000a4"]
        orphan = await engine.get("0000000000a1")
        assert orphan.state == JobState.FAILED and f"pid {dead_pid}" in orphan.error
        assert "ended while the job was running" in orphan.error
        assert "ended while the job was pending" in (await engine.get("0000000000a2")).error
        assert (await engine.get("0000000000a3")).state == JobState.RUNNING
        assert orphan.error in (await engine.log(orphan.id))[-1]
        await engine.close()
    finally:
        alive.kill()
        alive.wait()


async def test_restore_and_verify_jobs_and_a_failed_verification(jw):
    engine = await engine_for(jw)
    backup = await engine.wait((await engine.submit("backup", {})).id)
    assert backup.state == JobState.COMPLETED
    target = jw.ws.root / "restored"
    restore = await engine.wait((await engine.submit("restore", {"snapshots": ["latest"], "target": str(target)})).id)
    assert restore.state == JobState.COMPLETED, restore.error
    [done] = restore.result["restored"]
    assert done["files"] == 2 and done["bytes"] == 6 + 300_000
    files = {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert files == {"a.txt": b"alpha\n", "b.bin": (jw.ws.src / "sub" / "b.bin").read_bytes()}

    with pytest.raises(UsageError, match="params.target_db holds a URL with a password") as refused:
        await engine.submit("restore", {"snapshot": "latest", "target_db": "postgresql://u:s3cr3t@h/db"})
    assert "s3cr3t" not in str(refused.value)
    assert len(await engine.list()) == 2  # nothing was stored

    pack = max((p for p in (jw.ws.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    verify = await engine.wait((await engine.submit("verify", {"full": True})).id)
    assert verify.state == JobState.FAILED and verify.result["exit_code"] == 6
    assert verify.result["ok"] is False and verify.result["damage"]
    assert "damaged" in verify.error
    await engine.close()


async def test_a_job_cancelled_before_its_task_first_runs_still_finishes(jw):
    engine = await engine_for(jw)
    g = gate("early")
    job = await engine.submit("test-block", {"gate": g})
    # submit started the job's task, but it has not run a single step yet.
    cancelled = await engine.cancel(job.id)
    assert cancelled.state == JobState.CANCELLED and cancelled.started_at is None
    assert engine.running == [] and not engine.busy
    assert (await engine.submit("backup", {})).state == JobState.PENDING  # the slot came back
    await engine.drain()
    assert (await engine.list())[0].state == JobState.COMPLETED
    await engine.close()


async def test_a_restore_job_over_live_files_is_rolled_back_by_its_job_id(jw):
    engine = await engine_for(jw)
    assert (await engine.wait((await engine.submit("backup", {})).id)).state == JobState.COMPLETED
    live = jw.ws.src / "a.txt"
    live.write_text("edited after the backup\n")
    (jw.ws.src / "new.txt").write_text("not in the snapshot\n")
    job = await engine.wait(
        (await engine.submit("restore", {"snapshots": ["latest"], "target": "/", "delete": True})).id
    )
    assert job.state == JobState.COMPLETED, job.error
    [done] = job.result["restored"]
    assert job.result["restore_id"] == job.id and done["safety_snapshot"] and done["validation"]["ok"]
    assert live.read_text() == "alpha\n" and not (jw.ws.src / "new.txt").exists()
    await engine.close()
    r = jw.cli("rollback", job.id, "--json")
    assert r.code == 0, r.err
    assert live.read_text() == "edited after the backup\n"
    assert (jw.ws.src / "new.txt").read_text() == "not in the snapshot\n"
