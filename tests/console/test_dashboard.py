"""Dashboard: one row per source with its newest backup against the RPO, the schedule, alerts;
a running backup with its progress."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from textual.widgets import DataTable, Static

from console_support import console, settle
from core.jobs.status import health as evaluate_health
from screens.dashboard import DashboardScreen


def _rows(table: DataTable) -> dict[str, list[str]]:
    return {str(table.get_row(k)[0]): [str(c) for c in table.get_row(k)] for k in table.rows}


async def test_dashboard_shows_each_source_against_its_rpo(platform):
    later = datetime.now(timezone.utc) + timedelta(hours=3)
    app = platform.app(now=lambda: later)
    async with console(app, (80, 24)) as pilot:
        assert isinstance(app.screen, DashboardScreen)
        assert app.engine is not None and app.engine.mode == "embedded"
        assert "embedded engine" in app.sub_title
        rows = _rows(app.screen.query_one("#sources", DataTable))
        assert set(rows) == {"app/user_data", "conf/system_settings"}
        user = rows["app/user_data"]
        assert user[2].startswith("✔ 3h") and user[2].endswith("/26h")  # [objectives] default RPO
        next_run = later.replace(hour=2, minute=0, second=0, microsecond=0)
        next_run += timedelta(days=1) if next_run <= later else timedelta()
        assert user[3] == next_run.astimezone().strftime("%m-%d %H:%M")
        assert user[4] == "never" and user[5] == "local"
        # Scheduling is on and no daemon answers: `status` says warning, and so does the
        # dashboard, with what fixes it (it once said "Alerts: none" here).
        alerts = str(app.screen.query_one("#alerts", Static).render())
        health = await evaluate_health(app.config, now=later)
        assert health.level == "warning" and f"Health: {health.level.upper()}" in alerts
        assert "⚠ daemon: scheduling is enabled but no daemon answers" in alerts
        assert "axisor-backup daemon" in alerts

    # Two days on, the same backups are late: the mark and the words say so, not colour alone.
    much_later = datetime.now(timezone.utc) + timedelta(days=2, hours=5)  # past twice the RPO (52 h): critical
    app = platform.app(now=lambda: much_later)
    async with console(app, (80, 24)) as pilot:
        rows = _rows(app.screen.query_one("#sources", DataTable))
        assert rows["app/user_data"][2].startswith("✘ LATE 2d")
        alerts = str(app.screen.query_one("#alerts", Static).render())
        assert "Health: CRITICAL" in alerts
        assert "✘ source application/user_data: newest successful backup 53.0 h ago (RPO 26 h)" in alerts
        assert "[b: back up now]" in alerts
        await settle(pilot, app)
