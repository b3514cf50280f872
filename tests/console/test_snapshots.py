"""SVG snapshot of the read-only dashboard, on a stored repository with the clock frozen
(update with: pytest tests/console/test_snapshots.py --snapshot-update). Every screen and
wizard step at 80x24 and 160x48 in both themes: test_layout.py."""

from __future__ import annotations

from console_support import settle, stored_app as make_app


def _before(*keys: str):
    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        for key in keys:
            await pilot.press(key)
            await settle(pilot, pilot.app)

    return run_before


def test_read_only_dashboard(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path, read_only=True), terminal_size=(80, 24), run_before=_before())
