"""Verify: start quick and full verifications; the reports; damage with what it affects."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from console_support import console, settle
from core.jobs.api import JobState


async def _run(app, pilot, key: str):
    await pilot.press(key)
    await settle(pilot, app)
    job = next(j for j in await app.engine.list() if j.kind == "verify")
    job = await app.engine.wait(job.id)
    await settle(pilot, app)
    return job


async def test_quick_then_full_with_damage_shows_affected_files(platform):
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("v")
        await settle(pilot, app)
        assert "No verification yet" in str(app.screen.query_one("#report", Static).render())
        job = await _run(app, pilot, "n")
        assert app.submitted[-1] == ("verify", {"full": False})
        assert job.state == JobState.COMPLETED
        table = app.screen.query_one("#reports", DataTable)
        assert [str(c) for c in table.get_row(job.id)[1:3]] == ["quick", "✔ no damage"]

        # Fault injection: flip a byte in the middle of every pack.
        for pack in (platform.repo / "data").rglob("*"):
            if pack.is_file():
                raw = bytearray(pack.read_bytes())
                raw[len(raw) // 3] ^= 0xFF
                pack.write_bytes(bytes(raw))
        job = await _run(app, pilot, "f")
        assert app.submitted[-1] == ("verify", {"full": True})
        assert job.state == JobState.FAILED and job.result["damage"]
        table.move_cursor(row=table.get_row_index(job.id))
        await settle(pilot, app)
        row = [str(c) for c in table.get_row(job.id)]
        assert row[1] == "full" and row[2].startswith("✘ DAMAGE")
        report = str(app.screen.query_one("#report", Static).render())
        assert "DAMAGED" in report and "snapshots affected:" in report and "file: " in report
