"""The restore wizard's whole path, asserting what the engine was asked to do and the
bytes that land on disk; every step goes back with Esc."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, Static

from console_support import choose as _choose, console, pick_row as _pick_row, settle, wait_result as _wait_result
from core.jobs.api import JobState
from screens.restore_wizard import RestoreWizardScreen


async def test_some_files_into_another_folder_with_back_steps(platform, tmp_path: Path):
    app = platform.app()
    target = tmp_path / "restored"
    async with console(app, (120, 40)) as pilot:
        await pilot.press("r")
        await settle(pilot, app)
        wiz = app.screen
        assert isinstance(wiz, RestoreWizardScreen) and wiz.step == "what"
        await _choose(pilot, app, "files")
        assert wiz.step == "source"
        await pilot.press("escape")  # back to "what"
        await settle(pilot, app)
        assert wiz.step == "what" and wiz.plan.what == ""
        await _choose(pilot, app, "files")
        await _choose(pilot, app, "application/user_data")
        assert wiz.step == "point"
        old = [s for s in wiz.snapshots if s.source == "application/user_data"][-1]  # the first backup
        await _pick_row(pilot, app, "#point-table", old.id)
        await pilot.press("enter")
        await settle(pilot, app)
        assert wiz.step == "select" and wiz.plan.snapshots == (old.id,)
        sel = wiz.query_one("#select-table", DataTable)
        names = [k.value for k in sel.rows]
        notes = next(n for n in names if n.endswith("/alice/notes.txt"))
        avatar = next(n for n in names if n.endswith("/bob/avatar.bin"))
        for name in (notes, avatar):
            await _pick_row(pilot, app, "#select-table", name)
            await pilot.press("space")
        await pilot.press("enter")
        await settle(pilot, app)
        assert wiz.step == "where" and set(wiz.plan.selection) == {notes, avatar}
        await _choose(pilot, app, "alternate")
        inp = wiz.query_one("#where-input", Input)
        assert inp.has_focus
        await pilot.press(*str(target), "enter")
        await settle(pilot, app)
        assert wiz.step == "preflight"
        text = str(wiz.query_one("#preflight-text", Static).render())
        assert "2 files" in text and "nothing that exists will be overwritten" in text and "✔ enough" in text
        assert wiz.preflight.confirm_word == ""
        await pilot.press("escape")  # back to where, then forward again
        await settle(pilot, app)
        assert wiz.step == "where"
        await _choose(pilot, app, "alternate")
        await pilot.press(*str(target), "enter")
        await settle(pilot, app)
        await pilot.press("enter")  # start: nothing live is overwritten, so no typed confirmation
        await _wait_result(pilot, app, wiz)
        assert wiz.result_ok is True
        assert "RESTORE VALIDATED" in str(wiz.query_one("#result-text", Static).render())
    assert app.submitted == [
        ("restore", {"snapshot": old.id, "target": str(target.resolve()), "include": sorted([notes, avatar])})
    ]
    # the bytes of the first backup, not of today's files
    assert (target / notes.lstrip("/")).read_bytes() == b"alice's notes\n" * 300
    assert (target / avatar.lstrip("/")).stat().st_size == 50_000
    assert not (target / notes.lstrip("/")).with_name("profile.json").exists()


async def test_source_over_live_data_needs_the_typed_name_and_takes_a_safety_backup(platform):
    app = platform.app()
    live = platform.users / "alice" / "notes.txt"
    live.write_bytes(b"damaged by an operator\n")
    async with console(app, (120, 40)) as pilot:
        await pilot.press("r")
        await settle(pilot, app)
        wiz = app.screen
        await _choose(pilot, app, "source")
        await _choose(pilot, app, "application/user_data")
        newest = [s for s in wiz.snapshots if s.source == "application/user_data"][0]
        await _pick_row(pilot, app, "#point-table", newest.id)
        await pilot.press("enter")
        await settle(pilot, app)
        assert wiz.step == "where"
        await _choose(pilot, app, "original")
        assert wiz.step == "preflight"
        text = str(wiz.query_one("#preflight-text", Static).render())
        assert "WILL OVERWRITE" in text and str(live) in text and "safety backup" in text
        await pilot.press("enter")
        await settle(pilot, app)
        assert wiz.step == "confirm" and wiz.preflight.confirm_word == "application/user_data"
        await pilot.press(*"yes", "enter")  # not the name: nothing starts
        await settle(pilot, app)
        assert wiz.step == "confirm" and app.submitted == []
        wiz.query_one("#confirm-input", Input).value = ""
        await pilot.press(*"application/user_data", "enter")
        await _wait_result(pilot, app, wiz)
        assert wiz.result_ok is True
    kinds = [(k, p.get("tags"), p.get("target")) for k, p in app.submitted]
    assert kinds == [("backup", ["safety"], None), ("restore", None, "/")]
    assert live.read_bytes() == b"alice's notes, edited\n" * 300
    jobs = await _jobs(platform)
    assert [j.state for j in jobs] == [JobState.COMPLETED, JobState.COMPLETED]


async def _jobs(platform):
    from core.jobs.engine import open_engine

    engine = await open_engine(platform.config, platform.passphrase)
    try:
        return [j for j in await engine.list() if j.origin == "console"]  # not the fixture's backups
    finally:
        await engine.close()


async def test_where_list_starts_safe_and_never_wraps_onto_the_destructive_choice(platform):
    """One ↑ from the safe default once landed on "OVERWRITES the live files" (the list
    wrapped). The safe choice is first and highlighted, the destructive one last behind a
    separator, and the cursor stops at both ends."""
    from textual.widgets import OptionList

    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        await pilot.press("r")
        await settle(pilot, app)
        wiz = app.screen
        await _choose(pilot, app, "source")
        await _choose(pilot, app, "application/user_data")
        newest = [s for s in wiz.snapshots if s.source == "application/user_data"][0]
        await _pick_row(pilot, app, "#point-table", newest.id)
        await pilot.press("enter")
        await settle(pilot, app)
        assert wiz.step == "where"
        ol = wiz.query_one("#where-list", OptionList)

        def current() -> str:
            return ol.get_option_at_index(ol.highlighted).id

        assert current() == "alternate"
        await pilot.press("up", "up")
        assert current() == "alternate"  # stopped at the top, not wrapped to the bottom
        await pilot.press("down")
        assert current() == "original"  # reached only by moving down, past the separator
        await pilot.press("down", "down")
        assert current() == "original"  # stopped at the bottom
        assert app.submitted == []


async def test_first_step_says_whether_a_restore_can_start(platform):
    """Feasibility on the first step, not after six: read-only mode, a held repository."""
    from core.repository.lock import Lock
    from core.storage.local import LocalBackend

    def said(app) -> str:
        return str(app.screen.query_one("#what-feasibility", Static).render())

    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        await pilot.press("r")
        await settle(pilot, app)
        assert app.screen.step == "what" and said(app).startswith("✔ a restore can start")

    async with Lock(LocalBackend(platform.repo), True, "prune"):
        app = platform.app(read_only=True)
        async with console(app, (80, 24)) as pilot:
            await pilot.press("r")
            await settle(pilot, app)
            text = said(app)
            assert "✘ read-only console (--read-only)" in text
            assert "✘ the repository is held by an exclusive lock by prune" in text
