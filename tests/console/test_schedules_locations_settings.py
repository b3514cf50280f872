"""Schedules (next runs, run now, pause/resume), Locations (health, usage), Settings
(masked secrets, validation, edits written back)."""

from __future__ import annotations

import tomllib

from textual.widgets import DataTable, Input, Static

from console_support import FROZEN, console, settle
from core.jobs.api import JobState
from core.schedule.state import ScheduleStore, store_path
from screens.confirm import ConfirmScreen


async def test_schedules_next_runs_run_now_pause_resume(platform):
    app = platform.app(now=lambda: FROZEN)
    async with console(app, (120, 40)) as pilot:
        await pilot.press("s")
        await settle(pilot, app)
        table = app.screen.query_one("#schedules", DataTable)
        row = [str(c) for c in table.get_row("backup")]
        assert row[2] == "0 2 * * * UTC" and row[3] == "✔ active"
        assert row[4].startswith("11-27 02:00, 11-28 02:00, 11-29 02:00")
        assert "verify-quick" in [k.value for k in table.rows]

        table.move_cursor(row=table.get_row_index("backup"))
        await pilot.press("n")
        await settle(pilot, app)
        kind, params = app.submitted[-1]
        assert kind == "backup" and params["schedule"] == "backup" and params["type"] == "incremental"
        job = await app.engine.wait((await app.engine.list())[0].id)
        assert job.state == JobState.COMPLETED

        await pilot.press("p")
        await settle(pilot, app)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot, app)
        assert str(table.get_row("backup")[3]) == "⏸ paused"
        store = await ScheduleStore.open(store_path(platform.config))
        try:
            assert (await store.states())["backup"].paused
        finally:
            await store.close()
        await pilot.press("u")
        await settle(pilot, app)
        assert str(table.get_row("backup")[3]) == "✔ active"


async def test_locations_show_health_and_usage(platform):
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("l")
        await settle(pilot, app)
        table = app.screen.query_one("#locations", DataTable)
        rows = [[str(c) for c in table.get_row(k)] for k in table.rows]
        row = next(r for r in rows if r[0].endswith("(primary)"))
        assert row[1] == "✔ ok" and row[2].endswith(" ms")
        used = sum(f.stat().st_size for f in platform.repo.rglob("*") if f.is_file())
        assert row[3] != "-" and int(row[4]) > 0
        assert used > 0 and str(platform.repo) in row[7]


async def test_settings_masks_validates_and_writes_back(platform):
    text = platform.config_path.read_text().replace(
        "[engine]", '[notifications]\nwebhook_url = "https://hooks.example/T0KEN-SECRET"\n\n[engine]'
    )
    platform.config_path.write_text(text)
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("e")
        await settle(pilot, app)
        effective = str(app.screen.query_one("#settings-effective", Static).render())
        assert "T0KEN-SECRET" not in effective and "notifications.webhook_url = ••••••" in effective
        assert "✔ valid" in str(app.screen.query_one("#settings-problems", Static).render())

        cron = app.screen.query_one("#edit-schedule-cron_expression", Input)
        cron.value = "not a cron"
        await pilot.press("ctrl+s")
        await settle(pilot, app)
        assert "not saved" in str(app.screen.query_one("#settings-problems", Static).render())
        assert "not a cron" not in platform.config_path.read_text()

        cron.value = "15 3 * * *"
        app.screen.query_one("#edit-retention-keep_daily", Input).value = "14"
        await pilot.press("ctrl+s")
        await settle(pilot, app)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot, app)
    doc = tomllib.loads(platform.config_path.read_text())
    assert doc["schedule"]["cron_expression"] == "15 3 * * *" and doc["retention"]["keep_daily"] == 14
    assert doc["notifications"]["webhook_url"].endswith("T0KEN-SECRET")  # secrets are kept, only masked on screen
    assert platform.config_path.with_suffix(".toml.bak").exists()
    assert platform.config.schedule.cron_expression == "15 3 * * *"
