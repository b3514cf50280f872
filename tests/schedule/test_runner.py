"""The Scheduler against a real engine and repository, with a hand-moved clock.

Every submitted job really runs (backups read real files into a real repository), so the
type policy is checked against the catalog those backups wrote. A "long-running job" is
a real backup kept waiting by a real exclusive repository lock that the test holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.jobs.api import JobState
from core.repository.lock import Lock
from core.schedule.plan import jitter
from core.storage.local import LocalBackend

BERLIN = ZoneInfo("Europe/Berlin")
# Without these, a default backup (of every source no job names) and default verify
# schedules would be added; two disabled jobs keep each test about the schedules it names.
NO_DEFAULTS = """
[[schedule.jobs]]
name = "verify-off"
task = "verify"
cron = "0 6 * * *"
enabled = false
[[schedule.jobs]]
name = "backup-off"
task = "backup"
cron = "0 6 * * *"
enabled = false
[[schedule.jobs]]
name = "prune-off"
task = "prune"
cron = "0 6 * * *"
enabled = false
[[schedule.jobs]]
name = "drill-off"
task = "drill"
cron = "0 6 * * *"
enabled = false
[[schedule.jobs]]
name = "restore-test-off"
task = "restore-test"
cron = "0 6 * * *"
enabled = false
[[schedule.jobs]]
name = "probe-off"
task = "probe"
cron = "0 6 * * *"
enabled = false
"""


def next_at(after: datetime, hour: int | None = None, minute: int = 0) -> datetime:
    """The next UTC instant after ``after`` at hour:minute (every hour when hour is None)."""
    t = after.replace(minute=minute, second=0, microsecond=0)
    step = timedelta(hours=1) if hour is None else timedelta(days=1)
    if hour is not None:
        t = t.replace(hour=hour)
    while t <= after:
        t += step
    return t


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_type_policy_follows_the_real_catalog(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
full_every_days = 7
[[schedule.jobs]]
name = "nightly"
task = "backup"
cron = "0 2 * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    assert await s.tick() == []  # first sight: nothing owed for the past
    first = next_at(rig.clock.now, hour=2)

    rig.clock.set(first + timedelta(minutes=1))
    (rec,) = await s.tick()
    assert (rec.outcome, rec.type, rec.trigger) == ("submitted", "full", "cron")
    assert "no full backup yet" in rec.detail
    await rig.wait_all()

    rig.clock.set(first + timedelta(days=1, minutes=1))
    (rec,) = await s.tick()
    assert (rec.outcome, rec.type) == ("submitted", "incremental")
    await rig.wait_all()

    (rig.root / "src" / "data" / "new.txt").write_text("changed\n")
    rig.clock.set(first + timedelta(days=8, minutes=1))
    (rec,) = await s.tick()
    assert (rec.outcome, rec.type, rec.trigger, rec.missed) == ("submitted", "full", "catch-up", 6)
    assert "full_every_days = 7" in rec.detail
    await rig.wait_all()

    jobs = await rig.engine.list()
    assert [j.state for j in jobs] == [JobState.COMPLETED] * 3
    assert {j.origin for j in jobs} == {"scheduler"}
    snaps = await rig.snapshots()
    by_source: dict[str, list[str]] = {}
    for snap in snaps:
        assert "schedule:nightly" in snap.tags
        by_source.setdefault(snap.source, []).append(snap.type)
    assert by_source == {
        src: ["full", "incremental", "full"]
        for src in ("application/user_data", "application/simulation_data", "application/log_files")
    }


async def test_differential_policy_and_pinned_types(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "diff"
task = "backup"
sources = ["user_data"]
type = "differential"
cron = "0 1 * * *"
timezone = "UTC"
[[schedule.jobs]]
name = "always-full"
task = "backup"
sources = ["logs"]
type = "full"
cron = "0 1 * * *"
timezone = "UTC"
""".replace('"logs"', '"log_files"')
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    await s.tick()
    first = next_at(rig.clock.now, hour=1)
    for day in range(2):
        rig.clock.set(first + timedelta(days=day, seconds=30))
        records = {r.schedule: r for r in await s.tick()}
        await rig.wait_all()
        assert records["always-full"].type == "full"
        assert records["diff"].type == ("full" if day == 0 else "differential")
    types = sorted((snap.source, snap.type) for snap in await rig.snapshots())
    assert types == [
        ("application/log_files", "full"),
        ("application/log_files", "full"),
        ("application/user_data", "differential"),
        ("application/user_data", "full"),
    ]


async def test_never_two_runs_of_one_source_a_long_job_defers_then_skips(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "logs-hourly"
task = "backup"
sources = ["log_files"]
cron = "0 * * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    await s.tick()
    h1 = next_at(rig.clock.now)
    # Another process's exclusive lock (a prune, say) keeps the first backup waiting.
    lock = await Lock(LocalBackend(rig.root / "repo"), exclusive=True, operation="prune").acquire()
    try:
        rig.clock.set(h1 + timedelta(seconds=5))
        (first,) = await s.tick()
        assert first.outcome == "submitted"
        job1 = first.job_id

        rig.clock.set(h1 + timedelta(hours=1, seconds=5))
        (deferred,) = await s.tick()
        assert deferred.outcome == "deferred"
        assert deferred.detail == f"application/log_files is busy with job {job1}"
        assert await s.tick() == []  # a wait is recorded once, not every tick

        rig.clock.set(h1 + timedelta(hours=2, seconds=5))
        (skipped,) = await s.tick()
        assert skipped.outcome == "skipped"
        assert skipped.occurrence == h1 + timedelta(hours=1)
        assert "superseded" in skipped.detail and job1 in skipped.detail
        assert (await rig.engine.get(job1)).state in (JobState.PENDING, JobState.RUNNING)
    finally:
        await lock.release()

    done1 = await rig.engine.wait(job1)
    assert done1.state == JobState.COMPLETED
    (second,) = await s.tick()
    assert (second.outcome, second.missed, second.trigger) == ("submitted", 1, "catch-up")
    assert second.occurrence == h1 + timedelta(hours=2)
    done2 = await rig.engine.wait(second.job_id)
    assert done2.started_at >= done1.finished_at  # never two at once
    assert len(await rig.engine.list()) == 2
    history = [r.outcome for r in reversed(await s.store.runs("logs-hourly"))]
    assert history == ["submitted", "deferred", "skipped", "submitted"]


async def test_overlapping_schedules_respect_max_concurrent(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
max_concurrent = 1
[[schedule.jobs]]
name = "a"
task = "backup"
sources = ["user_data"]
cron = "0 3 * * *"
timezone = "UTC"
[[schedule.jobs]]
name = "b"
task = "backup"
sources = ["log_files"]
cron = "0 3 * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    await s.tick()
    rig.clock.set(next_at(rig.clock.now, hour=3) + timedelta(seconds=30))
    records = await s.tick()
    assert [(r.schedule, r.outcome) for r in records] == [("a", "submitted"), ("b", "deferred")]
    assert records[1].detail == "max_concurrent = 1 scheduled jobs already active"
    job_a = await rig.engine.wait(records[0].job_id)
    (rec,) = await s.tick()
    assert (rec.schedule, rec.outcome, rec.trigger, rec.missed) == ("b", "submitted", "cron", 0)
    job_b = await rig.engine.wait(rec.job_id)
    assert job_a.state == job_b.state == JobState.COMPLETED
    assert job_b.started_at >= job_a.finished_at


async def test_downtime_restart_catches_up_once(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "six-hourly"
task = "backup"
sources = ["user_data"]
cron = "0 */6 * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    before = await rig.scheduler()
    await before.tick()
    baseline = rig.clock.now
    # The daemon is down for three days; a new one starts on the same state database.
    rig.clock.advance(days=3)
    after = await rig.scheduler()
    (rec,) = await after.tick()
    owed = [
        t for t in (next_at(baseline) + timedelta(hours=h) for h in range(80)) if t.hour % 6 == 0 and t <= rig.clock.now
    ]
    assert (rec.outcome, rec.trigger, rec.missed) == ("submitted", "catch-up", len(owed) - 1)
    assert rec.occurrence == owed[-1]
    assert "caught up once" in rec.detail
    await rig.wait_all()
    assert await after.tick() == []  # no storm: one run, then nothing until the next slot
    rig.clock.set(owed[-1] + timedelta(hours=6, seconds=1))
    (rec,) = await after.tick()
    assert (rec.outcome, rec.trigger, rec.missed) == ("submitted", "cron", 0)
    await rig.wait_all()
    assert len(await rig.engine.list()) == 2


async def test_pause_is_persisted_and_resume_does_not_catch_up(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "hourly"
task = "backup"
sources = ["user_data"]
cron = "0 * * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    first = await rig.scheduler()
    await first.tick()
    assert await first.pause("hourly") is True
    assert await first.pause("hourly") is False  # already paused

    restarted = await rig.scheduler()
    assert (await restarted.store.states())["hourly"].paused
    h1 = next_at(rig.clock.now)
    rig.clock.set(h1 + timedelta(hours=2, minutes=10))
    assert await restarted.tick() == []
    assert await rig.engine.list() == []

    assert await restarted.resume("hourly") is True
    assert await restarted.tick() == []  # the paused hours are not owed
    rig.clock.set(h1 + timedelta(hours=3, seconds=1))
    (rec,) = await restarted.tick()
    assert (rec.outcome, rec.missed, rec.occurrence) == ("submitted", 0, h1 + timedelta(hours=3))
    await rig.wait_all()


async def _runs_over(rig, scheduler, start: datetime, hours: int) -> list:
    submitted = []
    rig.clock.set(start)
    for _ in range(hours * 4):  # a tick every 15 minutes
        rig.clock.advance(minutes=15)
        submitted += [r for r in await scheduler.tick() if r.outcome == "submitted"]
    await rig.wait_all()
    return submitted


async def test_dst_days_run_a_0230_job_exactly_once(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
timezone = "Europe/Berlin"
[[schedule.jobs]]
name = "verify-0230"
task = "verify"
cron = "30 2 * * *"
"""
        + NO_DEFAULTS,
        start=datetime(2027, 3, 27, 12, 0, tzinfo=UTC),
    )
    s = await rig.scheduler()
    await s.tick()
    # 2027-03-28: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    spring = await _runs_over(rig, s, datetime(2027, 3, 27, 20, 0, tzinfo=UTC), 12)
    assert [r.occurrence.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for r in spring] == ["03-28 03:00 CEST"]
    # 2027-10-31: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    await s.store.set_last("verify-0230", datetime(2027, 10, 30, 12, 0, tzinfo=UTC))
    autumn = await _runs_over(rig, s, datetime(2027, 10, 30, 20, 0, tzinfo=UTC), 12)
    assert [r.occurrence.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for r in autumn] == ["10-31 02:30 CEST"]
    jobs = await rig.engine.list()
    assert [(j.kind, j.params["full"], j.state) for j in jobs] == [("verify", False, JobState.COMPLETED)] * 2


async def test_jitter_delays_submission_within_bounds(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "spread"
task = "backup"
sources = ["user_data"]
cron = "0 4 * * *"
timezone = "UTC"
jitter_seconds = 900
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    await s.tick()
    occurrence = next_at(rig.clock.now, hour=4)
    delay = jitter(s.schedules[0], occurrence)
    assert timedelta(0) <= delay <= timedelta(seconds=900)
    if delay > timedelta(0):
        rig.clock.set(occurrence + delay - timedelta(seconds=1))
        assert await s.tick() == []
    rig.clock.set(occurrence + delay)
    (rec,) = await s.tick()
    assert rec.outcome == "submitted" and rec.occurrence == occurrence
    await rig.wait_all()


async def test_defaults_and_disabled_scheduler(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = false
cron_expression = "0 2 * * *"
[[schedule.jobs]]
name = "logs"
task = "backup"
sources = ["log_files"]
cron = "*/10 * * * *"
""",
        start=now_utc(),
    )
    s = await rig.scheduler()
    names = [(x.name, x.task, x.full, x.origin, x.cron) for x in s.schedules]
    assert names == [
        ("logs", "backup", False, "config", "*/10 * * * *"),
        ("backup", "backup", False, "default", "0 2 * * *"),
        ("verify-quick", "verify", False, "default", "30 5 * * 1-6"),
        ("verify-full", "verify", True, "default", "30 5 * * 0"),
        ("prune", "prune", False, "default", "30 4 * * 6"),
        ("drill", "drill", False, "default", "0 7 1 * *"),
        ("restore-test", "restore-test", False, "default", "30 6 * * 3"),
        ("probe", "probe", False, "default", "15 5 * * *"),
    ]
    # The default backup keeps every source that no configured backup job names.
    assert s.schedules[1].sources == ("application/user_data", "application/simulation_data")
    await s.tick()
    rig.clock.advance(days=3)
    assert await s.tick() == []  # [schedule] enabled = false: the daemon runs nothing
    assert await rig.engine.list() == []


async def test_manual_run_and_unreadable_catalog_falls_back_to_full(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "db"
task = "backup"
sources = ["simulation_data"]
cron = "0 * * * *"
"""
        + NO_DEFAULTS,
        start=now_utc(),
        init=False,
    )
    s = await rig.scheduler()
    rec = await s.run_now("db")
    # No repository yet: the catalog cannot be read, so the policy picks full, and the
    # job itself fails naming the missing repository.
    assert (rec.outcome, rec.type, rec.trigger) == ("submitted", "full", "manual")
    assert "catalog unreadable" in rec.detail
    job = await rig.engine.wait(rec.job_id)
    assert job.state == JobState.FAILED and "repo" in (job.error or "")
    assert job.params == {
        "schedule": "db",
        "type": "full",
        "sources": ["application/simulation_data"],
        "tags": ["scheduled", "schedule:db"],
    }


async def test_scheduled_copy_runs_through_the_engine(make_rig):
    rig = await make_rig(
        """
[[storage.remote_storage]]
provider = "local"
name = "nas"
path = "{nas}"
[schedule]
enabled = true
[[schedule.jobs]]
name = "nightly"
task = "backup"
cron = "0 1 * * *"
timezone = "UTC"
[[schedule.jobs]]
name = "offsite"
task = "copy"
locations = ["nas"]
cron = "0 3 * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        # Half past midnight, so 01:00 comes before 03:00: started at 02:00 real time, the next
        # 01:00 is tomorrow's and the 03:00 in between was owed too (CI failed on it at 02:xx).
        start=next_at(now_utc(), hour=0, minute=30),
    )
    s = await rig.scheduler()
    await s.tick()
    one = next_at(rig.clock.now, hour=1)
    rig.clock.set(one + timedelta(minutes=1))
    assert [(r.schedule, r.outcome) for r in await s.tick()] == [("nightly", "submitted")]
    await rig.wait_all()
    rig.clock.set(one + timedelta(hours=2, minutes=1))
    (rec,) = await s.tick()
    assert (rec.schedule, rec.outcome) == ("offsite", "submitted")
    copy_job = await rig.engine.wait(rec.job_id)
    assert copy_job.params == {"schedule": "offsite", "locations": ["nas"]}
    assert copy_job.state == JobState.COMPLETED, copy_job.error
    (target,) = copy_job.result["copies"]
    assert (target["target"], target["error"]) == ("nas", None)
    # Each backup already copies its new snapshots to the secondaries; the scheduled copy
    # is the catch-up, and finds the replica complete.
    assert len(list((rig.root / "nas" / "snapshots").iterdir())) == 3
    assert target["copied"] == [] and target["pending"] == []


async def test_a_run_owed_while_the_engine_stops_is_kept_for_the_next_start(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "nightly"
task = "backup"
cron = "0 2 * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    await s.tick()
    baseline = (await s.store.states())["nightly"].last_occurrence
    await rig.engine.shutdown(grace=0, reason="daemon stopping")
    occurrence = next_at(rig.clock.now, hour=2)
    rig.clock.set(occurrence + timedelta(seconds=10))
    assert await s.tick() == []  # nothing recorded as failed, nothing lost
    assert (await s.store.states())["nightly"].last_occurrence == baseline

    await rig.restart_engine()
    restarted = await rig.scheduler()
    rig.clock.advance(minutes=5)
    (rec,) = await restarted.tick()
    assert (rec.outcome, rec.occurrence, rec.trigger) == ("submitted", occurrence, "catch-up")
    await rig.wait_all()


async def test_the_loop_wakes_for_the_next_occurrence_including_jitter(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "spread"
task = "backup"
cron = "0 2 * * *"
timezone = "UTC"
jitter_seconds = 40
"""
        + NO_DEFAULTS,
        start=datetime(2027, 5, 1, 1, 59, 30, tzinfo=UTC),
    )
    s = await rig.scheduler()
    occurrence = datetime(2027, 5, 1, 2, 0, tzinfo=UTC)
    delay = jitter(s.schedules[0], occurrence).total_seconds()
    assert s.next_wake(rig.clock.now) == 30 + delay
    # Past the occurrence but inside its jitter: wake when the delayed run is due.
    if delay > 1:
        assert s.next_wake(occurrence + timedelta(seconds=1)) == delay - 1
    # Far from any occurrence: never sleep longer than a minute (clock jumps are noticed).
    assert s.next_wake(datetime(2027, 5, 1, 12, 0, tzinfo=UTC)) == 60.0


async def test_two_schedules_of_one_source_due_together_run_one_after_the_other(make_rig):
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "hourly"
task = "backup"
sources = ["user_data"]
cron = "0 * * * *"
timezone = "UTC"
[[schedule.jobs]]
name = "weekly-full"
task = "backup"
sources = ["user_data", "log_files"]
type = "full"
cron = "0 2 * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    await s.tick()
    rig.clock.set(next_at(rig.clock.now, hour=2) + timedelta(seconds=1))
    first, waiting = await s.tick()
    assert (first.schedule, first.outcome) == ("hourly", "submitted")
    assert (waiting.schedule, waiting.outcome) == ("weekly-full", "deferred")
    assert waiting.detail == f"application/user_data is busy with job {first.job_id}"
    done = await rig.engine.wait(first.job_id)
    (second,) = await s.tick()
    assert (second.schedule, second.outcome, second.type) == ("weekly-full", "submitted", "full")
    later = await rig.engine.wait(second.job_id)
    assert later.started_at >= done.finished_at


async def test_reload_takes_new_schedules_and_drops_queued_runs_of_removed_ones(make_rig):
    from core.config import load_config

    rig = await make_rig(
        """
[schedule]
enabled = true
max_concurrent = 1
[[schedule.jobs]]
name = "a"
task = "backup"
sources = ["user_data"]
cron = "0 3 * * *"
timezone = "UTC"
[[schedule.jobs]]
name = "b"
task = "backup"
sources = ["log_files"]
cron = "0 3 * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    await s.tick()
    rig.clock.set(next_at(rig.clock.now, hour=3) + timedelta(seconds=1))
    assert [r.outcome for r in await s.tick()] == ["submitted", "deferred"]  # b waits for a slot
    text = (rig.root / "config.toml").read_text()
    (rig.root / "config.toml").write_text(text.replace('name = "b"', 'name = "c"'))
    s.reload(load_config(rig.root / "config.toml"))
    assert [x.name for x in s.schedules][:2] == ["a", "c"]
    await rig.wait_all()
    assert await s.tick() == []  # b's queued run is gone with b; c is new, owes nothing yet
    assert len(await rig.engine.list()) == 1


async def test_a_backup_left_running_by_a_killed_process_does_not_hold_the_source(make_rig):
    import socket
    import subprocess

    from core.jobs.api import Job
    from core.jobs.store import Owner, process_start

    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "logs"
task = "backup"
sources = ["log_files"]
cron = "0 * * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    # A CLI backup of the same source whose process was killed -9: its record says running.
    proc = subprocess.Popen(["sleep", "30"])
    owner = Owner(socket.gethostname(), proc.pid, process_start(proc.pid))
    proc.kill()
    proc.wait()
    ghost = Job(
        id="ghost0000001",
        kind="backup",
        params={"sources": ["log_files"]},
        state=JobState.RUNNING,
        origin="cli",
        created_at=rig.clock.now,
        started_at=rig.clock.now,
        finished_at=None,
        progress=None,
        result=None,
        error=None,
    )
    await rig.engine.store.insert(ghost, owner)
    s = await rig.scheduler()
    await s.tick()
    rig.clock.set(next_at(rig.clock.now) + timedelta(seconds=1))
    (rec,) = await s.tick()
    assert rec.outcome == "submitted"
    assert (await rig.engine.wait(rec.job_id)).state == JobState.COMPLETED
    dead = await rig.engine.get("ghost0000001")
    assert dead.state == JobState.FAILED and "ended while the job was running" in dead.error


async def test_scheduled_prune_is_submitted_or_recorded_as_not_submittable(make_rig):
    from core.jobs.kinds import registered

    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "weekly-prune"
task = "prune"
cron = "0 4 * * SUN"
timezone = "UTC"
"""
        + NO_DEFAULTS,
        start=now_utc(),
    )
    s = await rig.scheduler()
    await s.tick()
    sunday = next_at(rig.clock.now, hour=4)
    while sunday.weekday() != 6:
        sunday += timedelta(days=1)
    rig.clock.set(sunday + timedelta(seconds=1))
    (rec,) = await s.tick()
    if "prune" in registered():
        assert rec.outcome == "submitted"
        job = await rig.engine.wait(rec.job_id)
        assert (job.kind, job.params["schedule"], job.origin) == ("prune", "weekly-prune", "scheduler")
    else:
        # This build has no prune job kind: the run is recorded as failed, once, with why.
        assert rec.outcome == "failed"
        assert rec.detail.startswith("not submitted: unknown job kind 'prune'")
    assert await s.tick() == []  # handled: no retry on every tick
    assert (await s.store.states())["weekly-prune"].last_occurrence == sunday
