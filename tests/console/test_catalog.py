"""Catalog: every snapshot, `/` filter, detail pane, browse files, compare two snapshots."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Static

from console_support import console, settle
from screens.catalog import CatalogScreen
from screens.compare import CompareScreen
from screens.snapshot_files import SnapshotFilesScreen


def _cells(table: DataTable, col: int) -> list[str]:
    return [str(table.get_row(k)[col]) for k in table.rows]


async def test_filter_detail_browse_and_compare(platform):
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("c")
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, CatalogScreen)
        table = screen.query_one("#snapshots", DataTable)
        assert table.row_count == 4  # two sources, two backup sets
        # newest first; the detail pane names the highlighted snapshot's metadata
        detail = str(screen.query_one("#detail", Static).render())
        assert screen.snapshots[0].id in detail and "compression ratio" in detail

        await pilot.press("slash")
        await pilot.press(*"source:user_data type:incremental")
        await settle(pilot, app)
        assert _cells(table, 2) == ["app/user_data"] and _cells(table, 3) == ["incremental"]
        await pilot.press("escape")  # clears the filter
        await settle(pilot, app)
        assert table.row_count == 4 and screen.query_one("#filter", Input).value == ""
        await pilot.press("slash", *"tag:after-edit", "enter")
        await settle(pilot, app)
        assert table.row_count == 2

        # compare the older user_data snapshot with the newer one
        await pilot.press("escape")
        await settle(pilot, app)
        users = [s for s in screen.snapshots if s.source == "application/user_data"]
        newer, older = users[0], users[1]
        table.move_cursor(row=table.get_row_index(older.id))
        await pilot.press("m")
        table.move_cursor(row=table.get_row_index(newer.id))
        await pilot.press("equals_sign")
        await settle(pilot, app)
        assert isinstance(app.screen, CompareScreen)
        diffs = {(d.change, d.what) for d in app.screen.differences}
        paths = {what.rsplit("/users", 1)[-1]: change for change, what in diffs}
        assert paths["/carol/profile.json"] == "added"
        assert paths["/alice/notes.txt"] == "changed"
        assert paths["/bob/avatar.bin"] == "removed"
        assert "/alice/profile.json" not in paths
        await pilot.press("escape")
        await settle(pilot, app)

        # browse the newer snapshot's files
        table.move_cursor(row=table.get_row_index(newer.id))
        await pilot.press("f")
        await settle(pilot, app)
        files = app.screen
        assert isinstance(files, SnapshotFilesScreen)
        paths = [p for p, *_ in files.entries]
        assert any(p.endswith("/users/carol/profile.json") for p in paths)
        assert not any(p.endswith("/bob/avatar.bin") for p in paths)
        await pilot.press("slash", *"alice")
        await settle(pilot, app)
        shown = _cells(files.query_one("#files", DataTable), 0)
        assert shown and all("alice" in p for p in shown)
