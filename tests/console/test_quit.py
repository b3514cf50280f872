"""Ctrl+Q while a job runs: the console says what leaving waits for (each job with what it
is doing or waiting for) and offers to detach, the job going on, or to cancel it after a
yes; Esc stays. A real embedded engine; the repository lock is held so the job waits."""

from __future__ import annotations

from pathlib import Path

import pytest
from console_support import settle, stored_app
from textual.widgets import Button, Static

from core.jobs.api import JobState
from screens.confirm import ConfirmScreen
from screens.dashboard import DashboardScreen
from screens.quit import QuitScreen


@pytest.fixture
def stored(tmp_path: Path):
    return stored_app(tmp_path)


@pytest.fixture
def stored_read_only(tmp_path: Path):
    return stored_app(tmp_path, read_only=True)


async def _waiting_job(pilot, app):
    """A quick verification that waits for the held repository lock."""
    job = await app.submit("verify", {"full": False})
    return await _until_waiting(pilot, app, job)


async def _until_waiting(pilot, app, job):
    for _ in range(200):
        await pilot.pause()
        if app.jobs[job.id].progress is not None:
            break
    assert app.jobs[job.id].progress.phase.startswith("waiting for")
    return job


async def test_ctrl_q_says_what_it_waits_for_then_cancels_after_a_yes(stored):
    app = stored
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            async with app.engine._locks.hold(["primary"], True):
                job = await _waiting_job(pilot, app)
                await pilot.press("ctrl+q")
                await pilot.pause()
                assert isinstance(app.screen, QuitScreen)
                said = str(app.screen.query_one("#quit-jobs", Static).render())
                assert f"verify quick (job {job.id}, from console): waiting for" in said
                assert "this console's own engine" in said and "stays until it finishes" in said

                await pilot.press("escape")  # stay
                await pilot.pause()
                assert isinstance(app.screen, DashboardScreen) and app.is_running

                await pilot.press("ctrl+q", "k")
                await pilot.pause()
                assert isinstance(app.screen, ConfirmScreen)  # cancelling asks first
                await pilot.press("n")
                await pilot.pause()
                assert app.is_running and ("cancel", {"job_id": job.id}) not in app.submitted

                await pilot.press("ctrl+q", "k", "y")
                for _ in range(100):
                    if not app.is_running:
                        break
                    await pilot.pause()
                assert not app.is_running
            assert (await app.engine.wait(job.id)).state == JobState.CANCELLED
    finally:
        await app.shutdown()


async def test_ctrl_q_twice_detaches_and_the_job_goes_on(stored):
    app = stored
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            hold = app.engine._locks.hold(["primary"], True)
            await hold.__aenter__()
            job = await _waiting_job(pilot, app)
            await pilot.press("ctrl+q")
            await pilot.pause()
            assert isinstance(app.screen, QuitScreen)
            await pilot.press("ctrl+q")  # again: leave, the job goes on
            for _ in range(100):
                if not app.is_running:
                    break
                await pilot.pause()
            assert not app.is_running
        assert not (await app.engine.get(job.id)).state.finished
        await hold.__aexit__(None, None, None)
    finally:
        await app.shutdown()  # as run_console: the embedded engine finishes the job first
    from core.jobs.engine import open_engine

    again = await open_engine(app.config, app._passphrase)
    try:
        assert (await again.get(job.id)).state == JobState.COMPLETED
    finally:
        await again.close()


async def test_read_only_ctrl_q_refuses_k_with_a_reason_and_stays(stored_read_only):
    """A read-only console whose engine runs a job it did not start (the schedule's): Ctrl+Q
    lists it, the Cancel button is disabled, and `k` says why in one line instead of
    cancelling or doing nothing; Enter still leaves and the job goes on."""
    app = stored_read_only
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            async with app.engine._locks.hold(["primary"], True):
                job = await _until_waiting(
                    pilot, app, await app.engine.submit("verify", {"full": False}, origin="schedule")
                )
                await pilot.press("ctrl+q")
                await pilot.pause()
                assert isinstance(app.screen, QuitScreen)
                assert app.screen.query_one("#cancel", Button).disabled
                await pilot.press("k")
                await pilot.pause()
                assert isinstance(app.screen, QuitScreen) and app.is_running  # no confirmation, no exit
                said = [n.message for n in app._notifications]
                assert any(m.startswith("read-only console: 'Cancel jobs' changes something") for m in said), said
                assert app.submitted == []
                assert not (await app.engine.get(job.id)).state.finished
                await pilot.press("enter")
                for _ in range(100):
                    if not app.is_running:
                        break
                    await pilot.pause()
                assert not app.is_running
    finally:
        await app.shutdown()
    from core.jobs.engine import open_engine

    again = await open_engine(app.config, app._passphrase)
    try:
        assert (await again.get(job.id)).state == JobState.COMPLETED  # not cancelled
    finally:
        await again.close()
