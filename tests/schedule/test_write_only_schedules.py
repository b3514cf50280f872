"""A daemon whose key is write-only (a database server that only pushes backups and WAL)
gets the default schedules like any host. The defaults it may not run (verify, prune,
drill, restore-test) are refused once with exit 27, then skipped with the reason, instead
of a failed job at every occurrence; `status` says verification is not this host's,
instead of a warning that can never clear. Real engine, real repository, real keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.jobs.api import JobState
from core.jobs.engine import Engine
from core.jobs.status import evaluate
from core.schedule.runner import Scheduler, service_catalog
from core.schedule.state import ScheduleStore, store_path
from core.service import BackupService

from schedule.conftest import passphrase

WRITE_ONLY = "only backups come from this host"
ONLY_VERIFY = """
[schedule]
enabled = true
cron_expression = "0 2 * * *"
[[schedule.jobs]]
name = "nightly"
task = "backup"
cron = "0 2 * * *"
"""
OFF = "".join(
    f'[[schedule.jobs]]\nname = "{t}-off"\ntask = "{t}"\ncron = "0 6 * * *"\nenabled = false\n'
    for t in ("prune", "drill", "restore-test", "probe")
)


async def test_defaults_a_write_only_key_may_not_run_are_refused_once_then_skipped(make_rig) -> None:
    monday = datetime(2027, 1, 4, 5, 0, tzinfo=UTC)
    rig = await make_rig(ONLY_VERIFY + OFF, start=monday)
    svc = BackupService(rig.config, passphrase)
    try:
        await svc.add_key(WRITE_ONLY, write_only=True)
    finally:
        await svc.close()
    await rig.engine.shutdown(grace=10, reason="the host's key is write-only")
    engine = Engine(rig.config, lambda _c: WRITE_ONLY, directory=rig.root / "state", workers=2)
    await engine.start()
    rig.engine = engine
    store = await ScheduleStore.open(store_path(rig.config))
    rig.stores.append(store)
    s = Scheduler(rig.config, engine, store, clock=rig.clock, catalog=service_catalog(lambda: rig.config, passphrase))
    await s.tick()

    records = []
    for day in range(3):  # Mon, Tue, Wed: verify-quick at 05:30 each
        rig.clock.set(monday + timedelta(days=day, minutes=31))
        records += [r for r in await s.tick() if r.schedule == "verify-quick"]
        await rig.wait_all()
    assert [r.outcome for r in records] == ["submitted", "skipped", "skipped"], records
    (job,) = [j for j in await engine.list() if j.kind == "verify"]
    assert job.state == JobState.FAILED and job.result["exit_code"] == 27
    assert "write-only" in records[1].detail and job.id in records[1].detail

    health = await evaluate(rig.config, engine.store, daemon_pid=1)
    (verify,) = [c for c in health.checks if c.name == "verify"]
    assert verify.level == "ok" and "not run here: this host's key is write-only" in verify.message, verify

    # A configured verify is always submitted, as asked; after a restart the default tries once more.
    again = Scheduler(
        rig.config, engine, store, clock=rig.clock, catalog=service_catalog(lambda: rig.config, passphrase)
    )
    rig.clock.set(monday + timedelta(days=3, minutes=31))
    assert [r.outcome for r in await again.tick() if r.schedule == "verify-quick"] == ["submitted"]
    await rig.wait_all()
