"""The `:` command line: the parser never raises (any text gives a command or a one-line
refusal), completion, and each command doing what core says it means on a real console."""

from __future__ import annotations

from pathlib import Path

import pytest
from console_support import settle, stored_app
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import DRILL_SCENARIOS
from screens.catalog import CatalogScreen
from screens.command_line import VERBS, Command, CommandLineScreen, Refusal, complete, parse
from screens.drills import DrillsScreen
from screens.jobs import JobsScreen
from screens.restore_wizard import RestoreWizardScreen


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=120) | st.builds(lambda v, a: f":{v} {a}", st.sampled_from(sorted(VERBS)), st.text(max_size=40))
)
def test_any_text_parses_to_a_command_or_a_one_line_refusal(text):
    parsed = parse(text)
    assert isinstance(parsed, (Command, Refusal))
    if isinstance(parsed, Refusal):
        assert parsed.message and "\n" not in parsed.message and parsed.message.isprintable()
    else:
        assert parsed.verb in VERBS
    complete(text, ["4f2a" + "0" * 60])  # never raises either


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":jobs", Command("jobs")),
        ("restore latest", Command("restore", ("latest",))),
        ("restore latest:database", Command("restore", ("latest:database",))),
        ("drill platform-loss", Command("drill", ("platform-loss",))),
        ("snapshot 4f2a", Command("snapshot", ("4f2a",))),
        ("  Catalog ", Command("catalog")),
        ("q", Command("quit")),
    ],
)
def test_commands(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("jbos", "unknown command 'jbos': did you mean 'jobs'?"),
        ("drill platfrm-loss", "did you mean 'platform-loss'?"),
        ("drill", ", ".join(DRILL_SCENARIOS)),
        ("snapshot 4f", "4 hex digits or more"),
        ("jobs now", "jobs takes nothing after it"),
        ("restore ../etc", "restore takes one point"),
        ("\x1b[2J", "unknown command '\\\\x1b[2J'"),
    ],
)
def test_refusals_say_why_in_one_line(text, said):
    parsed = parse(text)
    assert isinstance(parsed, Refusal) and said in parsed.message, parsed


def test_completion():
    assert complete(":jo") == "jobs"
    assert complete("restore l") == "restore latest"
    assert complete("drill pl") == "drill platform-loss"
    assert complete("snapshot 4f", ["4f2a9c" + "0" * 58]) == "snapshot 4f2a9c00"
    assert complete("zzz") is None


@pytest.fixture
def stored(tmp_path: Path):
    return stored_app(tmp_path)


async def _run(pilot, app, text: str) -> None:
    await pilot.press("colon")
    await settle(pilot, app)
    assert isinstance(app.screen, CommandLineScreen)
    app.screen.query_one("#cmd-input").value = text
    await pilot.press("enter")
    await settle(pilot, app)


def _line(app) -> str:
    return str(app.screen.query_one("#cmd-message").render())


async def test_each_command_on_a_console(stored):
    app = stored
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            snaps, _ = await app.service.snapshots()
            newest_set = await app.service.resolve(["latest"])

            await _run(pilot, app, "jbos")  # refused where the eye is; the line stays open
            assert isinstance(app.screen, CommandLineScreen)
            assert "did you mean 'jobs'?" in _line(app)
            await pilot.press("escape")
            await settle(pilot, app)

            await pilot.press("colon", "j", "o", "tab", "enter")  # Tab completes
            await settle(pilot, app)
            assert isinstance(app.screen, JobsScreen)

            target = snaps[0]
            await _run(pilot, app, f"snapshot {target.id[:6]}")
            assert isinstance(app.screen, CatalogScreen) and app.screen.selected_id() == target.id

            await _run(pilot, app, "snapshot 0000")  # core's answer, in one line
            assert "no snapshot with id '0000'" in _line(app)
            await pilot.press("escape")
            await settle(pilot, app)

            await _run(pilot, app, "restore latest")
            wiz = app.screen
            assert isinstance(wiz, RestoreWizardScreen) and wiz.step == "where"
            # "latest" is what core resolves: the newest backup set, as `axisor-backup restore`.
            assert wiz.plan.what == "platform" and set(wiz.plan.snapshots) == {s.id for s in newest_set}
            await pilot.press("escape")
            await settle(pilot, app)
            assert wiz.step == "what"

            await _run(pilot, app, "drill platform-loss")
            drills = app.screen
            assert isinstance(drills, DrillsScreen) and drills.step == "options"
            assert drills.scenario == "platform-loss"
            assert app.submitted == []  # a command opens and fills in; y still starts a drill
    finally:
        await app.shutdown()
