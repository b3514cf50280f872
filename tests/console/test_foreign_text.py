"""Text from outside never reaches Textual as markup: a file named `[/]` or an error that
quotes one must show as it is, not crash the console."""

from __future__ import annotations

import asyncio

from textual.widgets import DataTable, Static

from console_support import _backups, console, settle, write_platform
from screens.snapshot_files import SnapshotFilesScreen


async def test_markup_in_names_and_messages_is_shown_as_text(tmp_path):
    p = write_platform(tmp_path)
    (p.users / "alice" / "[").mkdir()  # a folder "[" holding a file "]": the path reads "[/]"
    (p.users / "alice" / "[" / "]").write_text("closing tag\n")
    (p.users / "alice" / "[bold red]x[").write_text("open tag\n")
    (p.users / "alice" / "esc\x1b[2Jname").write_text("escape\n")
    await _backups(p)
    app = p.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("c")
        await settle(pilot, app)
        catalog = app.screen
        users = [s for s in catalog.snapshots if s.source == "application/user_data"]
        snapshots = catalog.query_one("#snapshots", DataTable)
        snapshots.move_cursor(row=snapshots.get_row_index(users[0].id))
        await pilot.press("f")
        await settle(pilot, app)
        files = app.screen
        assert isinstance(files, SnapshotFilesScreen)
        table = files.query_one("#files", DataTable)
        cells = [str(table.get_row(k)[0]) for k in table.rows]
        assert any(c.endswith("/alice/[/]") for c in cells)
        assert any(c.endswith("/alice/[bold red]x[") for c in cells)
        assert any(c.endswith("/alice/esc\\x1b[2Jname") for c in cells)  # escaped, never sent raw
        # A foreign error quoting markup, in a notification and in a title line.
        files.notify("server said: [/] and [bold]unclosed")
        app.notify("storage said: [/]")
        files.on_load_failed(type("F", (), {"error": "cannot read [/]"})())
        await settle(pilot, app)
        assert "cannot read [/]" in str(files.query_one("#files-title", Static).render())
        await asyncio.sleep(0)
