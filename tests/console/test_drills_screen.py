"""The drills screen: history with the RTO/RPO trend, and the wizard from the scenario to the
report, on a real repository and a real embedded engine running a real platform-loss drill
(file sources only, so no PostgreSQL is needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual.widgets import DataTable, Markdown, OptionList, Static

from console_support import FROZEN, PASSPHRASE, console, settle
from core.config import load_config
from core.jobs.api import JobState
from screens.drills import DrillsScreen, parse_log_line

DATA = Path(__file__).resolve().parent / "data" / "repo"


def _text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def _choose(pilot, app, scenario: str, *, location: str = "", when: str = "") -> None:
    await pilot.press("n")
    await settle(pilot, app)
    options = app.screen.query_one("#scenario-list", OptionList)
    options.highlighted = options.get_option_index(scenario)
    await pilot.press("enter")
    await settle(pilot, app)
    assert app.screen.step == "options"
    if location:
        app.screen.query_one("#drill-location").value = location
    if when:
        app.screen.query_one("#drill-time").value = when
    await pilot.press("enter")
    await settle(pilot, app)


async def test_wizard_runs_a_platform_loss_drill_to_its_report_and_history(platform):
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("x")
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, DrillsScreen) and screen.step == "history"
        assert "No drill yet" in _text(app, "#history-note")

        await _choose(pilot, app, "platform-loss")
        assert screen.step == "confirm"
        confirm = _text(app, "#confirm-text")
        assert "Start a platform-loss drill?" in confirm and "the primary" in confirm
        assert not [k for k, _ in app.submitted]  # nothing asked of the engine before y

        await pilot.press("y")
        await settle(pilot, app)
        assert app.submitted[-1] == ("drill", {"scenario": "platform-loss", "from": None, "to_time": None})
        job = await app.engine.wait(screen.job_id)
        await settle(pilot, app)
        assert job.state == JobState.COMPLETED, job.error
        assert job.origin == "console"

        # The checklist holds every step and check of the job log, in words.
        checklist = _text(app, "#checklist")
        assert "✔ step open location: ok" in checklist
        assert "✔ step restore files: ok" in checklist
        assert "✔ check application/user_data files: pass" in checklist or "files: pass" in checklist
        assert "✔ check nothing left behind: pass" in checklist
        assert screen.step == "report"
        assert "platform-loss — PASSED" in screen.query_one("#drill-report", Markdown).source

        await pilot.press("escape")
        await settle(pilot, app)
        assert screen.step == "history"
        table = screen.query_one("#drill-history", DataTable)
        assert table.row_count == 1
        report_id = job.result["id"]
        when, scenario, verdict, rto, rpo, trend, forecast = (str(c) for c in table.get_row(report_id))
        assert (scenario, verdict, trend) == ("platform-loss", "✔ passed", "first")
        assert forecast == "none yet"  # no drill measured before it: no number
        assert rto.endswith(" ok") and "/" in rto
        assert rpo.endswith(" ok")
        assert "No drill yet" not in _text(app, "#history-note")

        # A stored report opens from the history too.
        await pilot.press("o")
        await settle(pilot, app)
        assert screen.step == "report"
        assert report_id in screen.query_one("#drill-report", Markdown).source


async def test_escape_goes_back_at_every_step_and_bad_input_is_named(platform):
    app = platform.app()
    async with console(app, (100, 30)) as pilot:
        await pilot.press("x")
        await settle(pilot, app)
        screen = app.screen
        palette = [c.title for c in app.get_system_commands(screen)]
        assert "Go: Drills" in palette and "New drill" in palette
        await pilot.press("n")
        await settle(pilot, app)
        assert screen.step == "scenario"
        assert "New drill" not in [c.title for c in app.get_system_commands(screen)]
        await pilot.press("escape")
        await settle(pilot, app)
        assert screen.step == "history"

        await _choose(pilot, app, "database-loss", when="yesterday at noon")
        assert screen.step == "options"
        assert "is not an ISO 8601 time" in _text(app, "#drill-hint")
        screen.query_one("#drill-time").value = ""
        screen.query_one("#drill-location").value = "offsite"
        await pilot.press("enter")
        await settle(pilot, app)
        assert screen.step == "options" and "no location 'offsite'; configured: local" in _text(app, "#drill-hint")

        screen.query_one("#drill-location").value = "local"
        screen.query_one("#drill-time").value = "2026-11-26T09:30:00+00:00"
        await pilot.press("enter")
        await settle(pilot, app)
        assert screen.step == "confirm"
        assert screen.params() == {"scenario": "database-loss", "from": "local", "to_time": "2026-11-26T09:30:00+00:00"}
        for expected in ("options", "scenario", "history"):
            await pilot.press("escape")
            await settle(pilot, app)
            assert screen.step == expected
        await pilot.press("escape")
        await settle(pilot, app)
        assert app.current_mode == "dashboard"
        assert app.submitted == []


async def test_read_only_console_cannot_start_a_drill(platform):
    app = platform.app(read_only=True)
    async with console(app, (100, 30)) as pilot:
        await pilot.press("x")
        await settle(pilot, app)
        screen = app.screen
        await pilot.press("n")
        await settle(pilot, app)
        assert screen.step == "history"  # the wizard's start key is disabled
        # Even at the confirmation (reached directly) y starts nothing.
        screen.scenario = "platform-loss"
        screen.query_one("#confirm-text", Static).update(screen.confirm_text())
        screen.go("confirm")
        await pilot.press("y")
        await settle(pilot, app)
        assert "Read-only console" in _text(app, "#confirm-text")
        assert app.submitted == [] and [j for j in await app.engine.list() if j.origin == "console"] == []


def test_log_lines_become_checklist_items_with_words():
    item = parse_log_line("step restore files: failed (1.20 s): pack 3f2a does not authenticate")
    assert item is not None and (item.kind, item.name, item.status) == ("step", "restore files", "failed")
    assert item.text() == "✘ step restore files: FAILED (1.20 s): pack 3f2a does not authenticate"
    check = parse_log_line("check nothing left behind: pass: every scratch cluster removed")
    assert check is not None and check.text() == "✔ check nothing left behind: pass: every scratch cluster removed"
    assert parse_log_line("drill 20261126T093500Z-1a2b3c4d passed: RTO 1.0 s") is None


def test_snapshot_drills_80x24(snap_compare, tmp_path):
    from app.console import ConsoleApp

    shutil.copytree(DATA, tmp_path / "repo")
    (tmp_path / "src").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f"""[application]
user_data = ["{tmp_path / "src"}"]
[storage]
local_path = "{tmp_path / "repo"}"
[engine]
state_dir = "{tmp_path / "state"}"
""")
    app = ConsoleApp(
        load_config(config), lambda _c: PASSPHRASE, config_path=config, prefer_daemon=False, now=lambda: FROZEN
    )

    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        for key in ("x", "n"):
            await pilot.press(key)
            await settle(pilot, pilot.app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_a_drill_on_a_damaged_repository_fails_and_says_why(platform):
    # Fault injection: flip a byte in the middle of every pack, so no file restores intact.
    for pack in (platform.repo / "data").rglob("*"):
        if pack.is_file():
            raw = bytearray(pack.read_bytes())
            raw[len(raw) // 3] ^= 0xFF
            pack.write_bytes(bytes(raw))
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("x")
        await settle(pilot, app)
        screen = app.screen
        await _choose(pilot, app, "platform-loss")
        await pilot.press("y")
        await settle(pilot, app)
        job = await app.engine.wait(screen.job_id)
        await settle(pilot, app)
        assert job.state == JobState.FAILED and job.result["passed"] is False
        assert screen.step == "report"
        assert "platform-loss — FAILED" in screen.query_one("#drill-report", Markdown).source
        assert "FAILED" in _text(app, "#checklist") or ": fail" in _text(app, "#checklist")
        await pilot.press("escape")
        await settle(pilot, app)
        row = [str(c) for c in screen.query_one("#drill-history", DataTable).get_row(job.result["id"])]
        assert row[2] == "✘ FAILED"
