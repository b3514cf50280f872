"""Time travel (`t`) and the verification report (Verify, `a`) at 80x24, on a real platform:
the screens show what core/jobs/timetravel.py and core/jobs/verification.py say."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from console_support import Platform, build_platform, console, settle
from textual.widgets import DataTable, Static

from core.jobs.api import JobState
from core.jobs.record import Outcome, record_run


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Platform:
    """One platform for both tests: time travel only reads it; the report test then adds
    verifications."""
    return build_platform(tmp_path_factory.mktemp("timetravel"))


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_time_travel_shows_the_point_and_restores_from_it_in_one_step(shared):
    platform = shared
    from screens.restore_wizard import RestoreWizardScreen
    from screens.time_travel import TimeTravelScreen

    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        await pilot.press("t")
        await settle(pilot, app)
        tt = app.screen
        assert isinstance(tt, TimeTravelScreen)
        assert tt.source == "application/user_data"
        newest = tt.point.snapshot
        detail = text_of(app, "#tt-detail")
        assert f"At now: snapshot {newest.short_id}" in detail and "the newest snapshot" in detail
        assert "local" in detail and "complete" in detail and "· not verified" in detail
        assert "Today" in text_of(app, "#tt-strip") and "● 2" in text_of(app, "#tt-strip")

        await pilot.press("left")  # the day before the first snapshot: nothing was current
        await settle(pilot, app)
        assert tt.point.before_first and "nothing of application/user_data was backed up yet" in text_of(
            app, "#tt-detail"
        )
        await pilot.press("enter")  # refused, in one line, and nothing opens
        await settle(pilot, app)
        assert app.screen is tt
        await pilot.press("right", "right")  # not into the future
        await settle(pilot, app)
        assert tt.day == tt.today

        await pilot.press("right_square_bracket")
        await settle(pilot, app)
        assert tt.source == "configuration/system_settings" and tt.point.snapshot.source == tt.source
        await pilot.press("left_square_bracket")
        await settle(pilot, app)

        await pilot.press("enter")  # restore from here: the wizard, filled in up to "Where to?"
        for _ in range(3):
            await settle(pilot, app)
        wiz = app.screen
        assert isinstance(wiz, RestoreWizardScreen) and wiz.step == "where"
        assert wiz.plan.what == "source" and wiz.plan.source == "application/user_data"
        assert wiz.plan.snapshots == (newest.id,)
        await pilot.press("escape")  # back through the steps it filled in
        await settle(pilot, app)
        assert wiz.step == "point"


async def test_the_verification_report_never_calls_a_cancelled_verification_verified(shared):
    platform = shared
    from screens.verification_report import VerificationReportScreen

    # A full verification cancelled after the backups (as `verify --full` stopped by Ctrl-C records it).
    await record_run(
        platform.config,
        "verify",
        {"full": True, "snapshots": []},
        datetime.now(UTC),
        Outcome(JobState.CANCELLED, {"exit_code": 130}, "interrupted (Ctrl-C)"),
    )
    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        await pilot.press("v")
        await settle(pilot, app)
        await pilot.press("a")
        await settle(pilot, app)
        assert isinstance(app.screen, VerificationReportScreen)
        t = app.screen.query_one("#checks", DataTable)
        assert t.row_count == 4  # two backup sets of two sources, one location
        assert {str(t.get_row_at(i)[4]) for i in range(t.row_count)} == {"· not verified"}
        assert "■ cancelled: says nothing" in text_of(app, "#checks-detail")
        assert "no verification has completed" in text_of(app, "#checks-head")
        # The stored drill reports are read (core.drills.report.stored_reports), not skipped with a note.
        assert "drill reports unreadable" not in text_of(app, "#checks-head")

        await pilot.press("escape")  # back to Verify; a quick verification that runs to its end
        await settle(pilot, app)
        await pilot.press("n")
        await settle(pilot, app)
        job = next(j for j in await app.engine.list() if j.kind == "verify" and j.origin == "console")
        assert (await app.engine.wait(job.id)).state == JobState.COMPLETED
        await settle(pilot, app)
        await pilot.press("a")
        await settle(pilot, app)
        t = app.screen.query_one("#checks", DataTable)
        assert {str(t.get_row_at(i)[4]) for i in range(t.row_count)} == {"✔ quick verify"}
        detail = text_of(app, "#checks-detail")
        assert "quick verify  ✔ passed" in detail and "cancelled" in detail  # the attempt is still listed
        quick = next(e for e in app.screen.rows[-1].copies[0].evidence if e.how == "quick")
        assert not quick.by_time  # the job's result names the snapshots it opened
        await pilot.press("slash")
        await pilot.press(*"system")
        await settle(pilot, app)
        assert t.row_count == 2


async def test_a_restore_test_shows_in_the_report_and_in_time_travel_with_its_share_and_job(shared):
    platform = shared
    from core.drills.restore_test import RestoreTestRequest, plan, run_restore_test
    from core.drills.restore_test_plan import Sampling
    from core.service import BackupService
    from screens.time_travel import TimeTravelScreen
    from screens.verification_report import VerificationReportScreen

    svc = BackupService(platform.config, platform.passphrase)
    try:
        snaps, _ = await svc.snapshots()
        newest = max((s for s in snaps if s.source == "application/user_data"), key=lambda s: s.datetime)
        the_plan, _ = await plan(svc, RestoreTestRequest(newest.id, Sampling(files=2), seed=3))
        record = await run_restore_test(svc, the_plan, job_id="feedc0ffee00")
    finally:
        await svc.close()
    assert record.outcome == "passed" and record.checked == 2
    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        await pilot.press("v")
        await settle(pilot, app)
        await pilot.press("a")
        await settle(pilot, app)
        assert isinstance(app.screen, VerificationReportScreen)
        t = app.screen.query_one("#checks", DataTable)
        words = [str(t.get_row_at(i)[4]) for i in range(t.row_count)]
        assert words.count("✔ restore-tested") == 1
        t.move_cursor(row=words.index("✔ restore-tested"))
        await settle(pilot, app)
        detail = text_of(app, "#checks-detail")
        assert "restore-test" in detail and "✔ passed" in detail and "(job feedc0ffee00)" in detail
        assert f"2 of {record.total} files" in detail
        assert "restore-test records unreadable" not in text_of(app, "#checks-head")

        await pilot.press("t")
        await settle(pilot, app)
        assert isinstance(app.screen, TimeTravelScreen)
        tt_detail = text_of(app, "#tt-detail")
        assert "✔ restore-tested" in tt_detail and f"2 of {record.total} files" in tt_detail
