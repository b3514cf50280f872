"""The console flags a suspicious shrink: the catalog row and detail, the dashboard's alerts."""

from __future__ import annotations

import asyncio
import shutil

from textual.widgets import DataTable, Static

from console_support import console, settle
from core.service import BackupService
from screens.catalog import CatalogScreen


def _shrink(platform) -> None:
    """Three of the four user_data files gone, then a backup: 4 -> 1 files."""
    shutil.rmtree(platform.users / "alice")
    (platform.users / "bob" / "avatar.bin").unlink(missing_ok=True)
    (platform.users / "carol" / "profile.json").unlink(missing_ok=True)

    async def backup() -> None:
        svc = BackupService(platform.config, platform.passphrase)
        try:
            await svc.backup(kind="incremental")
        finally:
            await svc.close()

    asyncio.run(backup())


async def test_catalog_and_dashboard_show_the_flag(platform):
    await asyncio.to_thread(_shrink, platform)
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        alerts = str(app.screen.query_one("#alerts", Static).render())
        assert "application/user_data: suspicious shrink, 4 -> 1 files" in alerts
        assert "configuration/system_settings: suspicious" not in alerts

        await pilot.press("c")
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, CatalogScreen)
        table = screen.query_one("#snapshots", DataTable)
        newest = screen.snapshots[0] if screen.snapshots[0].source == "application/user_data" else screen.snapshots[1]
        files = {k.value: str(table.get_row(k)[5]) for k in table.rows}
        assert files[newest.id] == "1 ⚠ SHRINK"
        assert sum("SHRINK" in v for v in files.values()) == 1
        table.move_cursor(row=table.get_row_index(newest.id))
        await settle(pilot, app)
        detail = str(screen.query_one("#detail", Static).render())
        assert "suspicious shrink" in detail and "has 1 files" in detail and "had 4" in detail
