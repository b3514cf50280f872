"""Leaving the console mid-restore: the embedded engine finishes the restore before the
process exits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from console_support import choose, pick_row, settle
from core.jobs.api import JobState


async def test_restore_finishes_after_the_console_closes(platform, tmp_path: Path):
    target = tmp_path / "restored"
    app = platform.app()
    hold = None
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        # Fault injection: hold the location so the restore is still waiting when the UI goes.
        hold = app.engine._locks.hold(["primary"], True)
        await hold.__aenter__()
        await pilot.press("r")
        await settle(pilot, app)
        wiz = app.screen
        await choose(pilot, app, "source")
        await choose(pilot, app, "application/user_data")
        newest = [s for s in wiz.snapshots if s.source == "application/user_data"][0]
        await pick_row(pilot, app, "#point-table", newest.id)
        await pilot.press("enter")
        await settle(pilot, app)
        await choose(pilot, app, "alternate")
        await pilot.press(*str(target), "enter")
        await settle(pilot, app)
        await pilot.press("enter")
        while not wiz.job_ids:
            await pilot.pause()
        job_id = wiz.job_ids[0]
        assert not (await app.engine.get(job_id)).state.finished
    # The UI is gone; the job is not.
    assert not (await app.engine.get(job_id)).state.finished

    async def release() -> None:
        await asyncio.sleep(0.2)
        await hold.__aexit__(None, None, None)

    releasing = asyncio.create_task(release())
    engine = app.engine
    await app.shutdown()  # what run_console does after the App returns
    await releasing
    restored = target / str(platform.users).lstrip("/")
    assert (restored / "carol" / "profile.json").read_text() == '{"name": "carol"}'
    from core.jobs.engine import open_engine

    again = await open_engine(platform.config, platform.passphrase)
    try:
        assert (await again.get(job_id)).state == JobState.COMPLETED
    finally:
        await again.close()
    assert engine is app.engine
