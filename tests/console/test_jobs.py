"""Jobs: a backup started from the console runs in the engine and shows live; the detail
view has its log; cancel asks first and defaults to no."""

from __future__ import annotations

from textual.widgets import DataTable, Log, Static

import pytest
from console_support import console, settle
from core.jobs.api import JobState
from screens.confirm import ConfirmScreen
from screens.job_detail import JobDetailScreen
from screens.jobs import JobsScreen


async def test_backup_from_dashboard_shows_in_jobs_with_its_log(platform):
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("b")
        await settle(pilot, app)
        assert app.submitted == [("backup", {"type": "incremental"})]
        job = (await app.engine.list())[0]
        assert job.kind == "backup" and job.origin == "console"
        job = await app.engine.wait(job.id)
        assert job.state == JobState.COMPLETED
        await settle(pilot, app)
        await pilot.press("j")
        await settle(pilot, app)
        assert isinstance(app.screen, JobsScreen)
        table = app.screen.query_one("#jobs", DataTable)
        row = table.get_row(job.id)
        assert str(row[0]) == "✔ done" and str(row[1]).startswith("backup")
        await pilot.press("o")
        await settle(pilot, app)
        assert isinstance(app.screen, JobDetailScreen)
        log = app.screen.query_one(Log)
        assert any("application/user_data: snapshot" in line for line in log.lines)
        head = str(app.screen.query_one("#job-head", Static).render())
        assert "✔ done" in head and job.id in head
        await pilot.press("escape")
        await settle(pilot, app)
        assert isinstance(app.screen, JobsScreen)


async def test_cancel_asks_and_defaults_to_no(platform):
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        # Fault injection: hold the primary location so the job waits, running, for its lock.
        async with app.engine._locks.hold(["primary"], True):
            job = await app.submit("backup", {"type": "incremental"})
            await settle(pilot, app)
            await pilot.press("j")
            await settle(pilot, app)
            table = app.screen.query_one("#jobs", DataTable)
            table.move_cursor(row=table.get_row_index(job.id))
            await pilot.press("k")
            await settle(pilot, app)
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("enter")  # No has the focus
            await settle(pilot, app)
            assert not (await app.engine.get(job.id)).state.finished
            await pilot.press("k")
            await settle(pilot, app)
            await pilot.press("y")
            await settle(pilot, app)
            done = await app.engine.wait(job.id)
        assert done.state == JobState.CANCELLED
        assert ("cancel", {"job_id": job.id}) in app.submitted
        await settle(pilot, app)
        assert str(table.get_row(job.id)[0]) == "■ cancelled"


async def test_dashboard_shows_running_jobs_with_progress(platform):
    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        async with app.engine._locks.hold(["primary"], True):  # the backup waits, running
            job = await app.submit("backup", {"type": "incremental"})
            await settle(pilot, app)
            table = app.screen.query_one("#running", DataTable)
            row = [str(c) for c in table.get_row(job.id)]
            assert row[0] == "backup (console)" and row[1].startswith("[") and row[5] == "waiting for locks"
        done = await app.engine.wait(job.id)
        await settle(pilot, app)
        assert done.state == JobState.COMPLETED and job.id not in table.rows


async def test_job_detail_shows_the_database_table_passing_with_its_size(platform):
    """A logical backup's progress (tests/postgres/test_dump_progress.py gets it from a real
    dump) as the job view shows it: bytes of the total, rate, ETA and the table, escaped."""
    from datetime import datetime, timezone

    from core.jobs.api import Job, JobProgress

    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        progress = JobProgress(
            phase="backup",
            bytes_done=6 * 2**20,
            bytes_total=12 * 2**20,
            files_done=1,
            files_total=1,
            rate=2 * 2**20,
            eta_seconds=3.0,
            current_size=14_786_560,
            current='sales."Big\\tTable[1]" (14.1 MiB)',
        )
        now = datetime.now(timezone.utc)
        job = Job(
            "0123456789ab",
            "backup",
            {"sources": ["database"]},
            JobState.RUNNING,
            "console",
            now,
            now,
            None,
            progress,
            None,
            None,
        )
        app.jobs[job.id] = job
        app.push_screen(JobDetailScreen(job.id))
        await pilot.pause()
        facts = str(app.screen.query_one("#job-facts", Static).render())
        assert "6.0 MiB of 12.0 MiB" in facts and "rate 2.0 MiB/s" in facts and "ETA 3s" in facts, facts
        assert 'now: sales."Big\\tTable[1]" (14.1 MiB)' in facts, facts


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_dashboard_running_row_shows_done_of_total_rate_eta_and_the_file(platform, size):
    """The dashboard's row of a running job showed a bar, a rate and an ETA but neither how
    much of how much nor what passes. It shows bytes and files done of their totals and the
    current file (a name from outside, shown as is, never as markup); at 80x24 the bar, its
    percentage and the ETA stay when the rest must hide."""
    from datetime import datetime, timezone

    from core.jobs.api import Job, JobProgress

    app = platform.app()
    async with console(app, size) as pilot:
        progress = JobProgress(
            phase="backup",
            bytes_done=3 * 2**30,
            bytes_total=8 * 2**30,
            files_done=1_234,
            files_total=50_000,
            rate=150 * 2**20,
            eta_seconds=34.0,
            current="app/user_data/[b]report[/b].pdf",
        )
        now = datetime.now(timezone.utc)
        job = Job(
            "0123456789ab",
            "backup",
            {"sources": ["app/user_data"]},
            JobState.RUNNING,
            "console",
            now,
            now,
            None,
            progress,
            None,
            None,
        )
        app.jobs[job.id] = job
        app.screen._render_running()
        await pilot.pause()
        table = app.screen.query_one("#running", DataTable)
        row = dict(zip([str(c.key.value) for c in table.ordered_columns], [str(c) for c in table.get_row(job.id)]))
        assert row["progress"].endswith(" 38%") and row["eta"] == "34s", row
        assert row["done"] == "3.0 GiB/8.0 GiB 1,234/50,000 files", row
        assert row["phase"] == "backup: app/user_data/[b]report[/b].pdf", row
        shown = table.visible_columns()
        assert {"job", "progress", "eta"} <= set(shown), shown
        if size == (160, 48):
            assert shown == ["job", "progress", "done", "rate", "eta", "phase"], shown
