"""The ``restore-test`` schedule kind: its keys in ``[[schedule.jobs]]``, the job a run
becomes, and a scheduled run through the real engine against a real repository."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.config import ConfigError, parse_config
from core.drills.restore_test_record import list_records
from core.jobs.api import JobState
from core.schedule.model import schedules_from_config
from core.schedule.runner import job_params
from core.service import BackupService
from schedule.conftest import passphrase
from schedule.test_runner import NO_DEFAULTS, next_at, now_utc


def config(tmp_path: Path, *jobs: dict):
    return parse_config(
        {
            "storage": {"local_path": str(tmp_path / "repo")},
            "application": {"user_data": [str(tmp_path)]},
            "schedule": {"jobs": list(jobs)},
        },
        base_dir=tmp_path,
    )


def test_a_restore_test_job_and_the_params_of_its_runs(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        {"name": "proof", "task": "restore-test", "cron": "0 6 * * 3"},
        {"name": "proof-share", "task": "restore-test", "cron": "0 6 * * 5", "sample_percent": 5},
        {"name": "proof-few", "task": "restore-test", "cron": "0 6 * * 6", "sample_files": 3},
    )
    found = {s.name: s for s in schedules_from_config(cfg)}
    default, share, few = found["proof"], found["proof-share"], found["proof-few"]
    assert (default.task, default.sample_files, default.sample_percent) == ("restore-test", 20, None)
    assert default.holds == frozenset({"task:restore-test"})
    assert default.describe() == "restore-test of 20 items of a random snapshot"
    assert share.describe() == "restore-test of 5% of a random snapshot"
    assert job_params(default) == {"schedule": "proof", "sample_files": 20}
    assert job_params(share) == {"schedule": "proof-share", "sample_files": 20, "share": 5}
    assert job_params(few) == {"schedule": "proof-few", "sample_files": 3}
    # Without one configured, a weekly default runs: restores are proved without anyone asking.
    (default_test,) = [s for s in schedules_from_config(config(tmp_path)) if s.task == "restore-test"]
    assert (default_test.name, default_test.cron, default_test.origin) == ("restore-test", "30 6 * * 3", "default")


@pytest.mark.parametrize(
    ("job", "wanted"),
    [
        (
            {"name": "v", "task": "verify", "cron": "0 6 * * *", "sample_files": 3},
            "only applies to task 'restore-test'",
        ),
        ({"name": "r", "task": "restore-test", "cron": "0 6 * * *", "sample_percent": 0}, "sample_percent"),
        ({"name": "r", "task": "restore-test", "cron": "0 6 * * *", "sample_files": 0}, "sample_files"),
        ({"name": "r", "task": "restore-test", "cron": "0 6 * * *", "full": True}, "only applies to task 'verify'"),
    ],
)
def test_keys_that_do_not_fit_are_refused_by_name(tmp_path: Path, job: dict, wanted: str) -> None:
    with pytest.raises(ConfigError, match=wanted):
        config(tmp_path, job)


async def test_a_scheduled_restore_test_runs_through_the_engine(make_rig) -> None:
    rig = await make_rig(
        """
[schedule]
enabled = true
[[schedule.jobs]]
name = "nightly"
task = "backup"
cron = "0 1 * * *"
timezone = "UTC"
[[schedule.jobs]]
name = "proof"
task = "restore-test"
sample_files = 1
cron = "0 3 * * *"
timezone = "UTC"
"""
        + NO_DEFAULTS,
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
    assert (rec.schedule, rec.outcome) == ("proof", "submitted")
    job = await rig.engine.wait(rec.job_id)
    assert job.kind == "restore-test" and job.params == {"schedule": "proof", "sample_files": 1}
    assert job.state == JobState.COMPLETED, job.error
    result = job.result or {}
    assert result["outcome"] == "passed" and result["checked"] == result["sampled"] == 1
    assert result["job"] == job.id and result["exit_code"] == 0
    assert result["plan"]["why"].startswith("never restore-tested")

    svc = BackupService(rig.config, passphrase)
    try:
        records, damaged = await list_records(await svc.repository(load_index=False))
    finally:
        await svc.close()
    assert damaged == [] and [(r.id, r.job, r.outcome) for r in records] == [(result["id"], job.id, "passed")]


def test_an_interrupted_restore_test_is_not_taken_for_a_restore() -> None:
    """The daemon's recovery never reruns a restore (its target may have changed); a
    restore-test writes only into its own scratch, so a scheduled one is caught up."""
    from datetime import UTC, datetime

    from core.daemon.recovery import decide
    from core.jobs.api import Job

    def job(origin: str, params: dict) -> Job:
        now = datetime.now(UTC)
        return Job(
            "0000000000c1", "restore-test", params, JobState.INTERRUPTED, origin, now, now, None, None, None, None
        )

    assert decide(job("scheduler", {"schedule": "proof", "sample_files": 20})).action == "schedule"
    by_hand = decide(job("cli", {"sample_files": 20}))
    assert by_hand.action == "none" and "restore-test job started by hand" in by_hand.reason
