"""Every screen and every wizard step at 80x24 and 160x48, in the dark and the light theme:
the screen's own keys and `?` are in the footer, and the table columns that matter are on
screen (their labels rendered), so that a layout regression fails here.

One console per size and theme makes the whole tour (an app per screen cost a second
each; resizing and re-theming one console at each stop cost more): at each stop the
rendered lines are read back. The 80x24
dark look of the stops whose content is deterministic (stored repository, frozen clock)
is kept as SVG snapshots too (update with --snapshot-update).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from console_support import choose, console_screens, settle, stored_app
from pytest_textual_snapshot import SVGImageExtension
from textual.widgets import Input, OptionList

from screens.base import FitTable

SIZES = ((80, 24), (160, 48))
THEMES = ("textual-dark", "textual-light")


def rendered(app) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


def footer_items(app) -> list[str]:
    """The "key description" texts the screen in front must show in its footer: each of
    its own shown keys (greyed ones too) and `?`."""
    items: dict[str, str] = {}  # action -> its first key (F5 of "F5, Ctrl+R")
    for node, binding, _enabled, _tip in app.screen.active_bindings.values():
        if binding.show and node is not app and binding.description:
            items.setdefault(binding.action, f"{app.get_key_display(binding)} {binding.description}")
    # While a text field has the focus, `?` is typed into it (docs/CONSOLE.md): not a key then.
    return [*items.values(), *(["? Keys"] if "question_mark" in app.screen.active_bindings else [])]


class Tour:
    def __init__(self, pilot, app, svg) -> None:
        self.pilot, self.app, self.svg = pilot, app, svg
        self.seen: list[str] = []
        self.classes: set[str] = set()

    async def press(self, *keys: str) -> None:
        for key in keys:
            await self.pilot.press(key)
            await settle(self.pilot, self.app)

    async def stop(self, name: str, *, svg: bool = True, modal: bool = False) -> None:
        """Check the screen in front."""
        app = self.app
        self.seen.append(name)
        self.classes.add(type(app.screen).__name__)
        width = app.size.width
        where = f"{name} at {width}x{app.size.height} {app.theme}"
        lines = rendered(app)
        text = "\n".join(lines)
        if not modal:  # a modal's keys are its buttons; the footer is the screen's below
            footer = lines[-1]
            for item in footer_items(app):
                assert item in footer, f"{where}: footer lacks {item!r}: {footer!r}"
            if width >= 160:
                assert "^q Quit" in footer, f"{where}: {footer!r}"
        for table in app.screen.query(FitTable):
            if not table.display or not table.parent.display or table.region.width == 0:
                continue
            shown = table.visible_columns()
            # At 80 columns the columns that matter (priority 1); at 160 the next ones too.
            most = 1 if width < 160 else 2
            for key, column in table.columns.items():
                if table.priorities.get(str(key.value), 1) <= most:
                    assert key.value in shown, f"{where}: column {key.value} of #{table.id} hidden"
                    assert str(column.label) in text, f"{where}: {column.label} of #{table.id} not on screen"
        if svg and self.svg is not None:
            for field in app.screen.query(Input):  # a blinking cursor would make the picture flaky
                field.cursor_blink = False
            await self.pilot.pause()
            assert self.svg(name=name) == app.export_screenshot(title=app.title), where


@pytest.fixture
def svg(snapshot):
    return snapshot.use_extension(SVGImageExtension)


@pytest.fixture
def stored(tmp_path: Path):
    return stored_app(tmp_path)


# Both sizes and both themes, in two tours: a theme changes colours, never the layout, so
# the other two pairings would only repeat these checks (each tour costs 10-30 s of CPU).
@pytest.mark.parametrize(
    ("size", "theme"), [(SIZES[0], THEMES[0]), (SIZES[1], THEMES[1])], ids=["80x24-dark", "160x48-light"]
)
async def test_every_screen_and_step_fits(tmp_path: Path, stored, svg, size, theme):
    app = stored
    target = tmp_path / "restored"
    try:
        async with app.run_test(size=size) as pilot:
            app.theme = theme
            await settle(pilot, app)
            # The 80x24 dark look is kept as SVG too (the stops whose content is deterministic).
            tour = Tour(pilot, app, svg if (size, theme) == (SIZES[0], THEMES[0]) else None)
            await tour.stop("dashboard")
            await tour.press("question_mark")
            await tour.stop("help", modal=True)
            await tour.press("escape")
            await tour.press("colon", "d", "r")
            await tour.stop("command-line", modal=True)
            await tour.press("escape")

            await tour.press("j")
            await tour.stop("jobs", svg=False)  # job ids and times differ per run
            await tour.press("o")
            await tour.stop("job-detail", svg=False)

            await tour.press("c")
            await tour.stop("catalog")
            await tour.press("f")
            await tour.stop("snapshot-files")
            await tour.press("escape", "m", "down", "equals_sign")
            await tour.stop("compare")

            await tour.press("v")
            await tour.stop("verify")
            await tour.press("a")
            await tour.stop("verification-report", svg=False)  # the times of this run's checks
            await tour.press("escape")
            await tour.press("t")
            await tour.stop("time-travel", svg=False)  # the calendar strip starts at today

            await tour.press("s")
            await tour.stop("schedules")
            await tour.press("p")
            await tour.stop("confirm", modal=True)
            await tour.press("n")
            await tour.press("l")
            await tour.stop("locations", svg=False)  # latency and free space are measured
            await tour.press("e")
            await tour.stop("settings", svg=False)  # shows the temporary config path

            await tour.press("x")
            await tour.stop("drills-history")
            await tour.press("n")
            await tour.stop("drills-scenario")
            options = app.screen.query_one("#scenario-list", OptionList)
            options.highlighted = options.get_option_index("platform-loss")
            await tour.press("enter")
            await tour.stop("drills-options")
            await tour.press("enter")
            await tour.stop("drills-confirm")

            await tour.press("r")
            wiz = app.screen
            await tour.stop("wizard-what")
            await choose(pilot, app, "files")
            await tour.stop("wizard-source")
            await choose(pilot, app, "application/user_data")
            await tour.stop("wizard-point")
            await tour.press("enter")
            await tour.stop("wizard-select")
            await tour.press("enter")
            await tour.stop("wizard-where")
            await choose(pilot, app, "alternate")
            app.screen.query_one("#where-input").value = str(target)
            await tour.press("enter")
            assert wiz.step == "preflight"
            await tour.stop("wizard-preflight", svg=False)  # paths of the test's folder
            # The typed confirmation shows when live data is overwritten; restoring over the
            # stored snapshots' own paths is not for a test, so the preflight says so instead.
            real = wiz.preflight
            wiz._preflight_done(replace(real, overwrites=("/srv/live",), confirm_word="user_data"))
            await tour.press("enter")
            assert wiz.step == "confirm"
            await tour.stop("wizard-confirm", svg=False)  # its crumbs name the test's folder
            await tour.press("escape")
            assert wiz.step == "preflight"
            wiz._preflight_done(real)
            # Hold the repository so the restore waits where the progress step shows.
            hold = app.engine._locks.hold(["primary"], True)
            await hold.__aenter__()
            try:
                await pilot.press("enter")  # not settled: the restore's worker waits for the lock
                while not wiz.job_ids:
                    await pilot.pause()
                await pilot.pause()
                assert wiz.step == "progress"
                await tour.stop("wizard-progress", svg=False)
                await pilot.press("ctrl+q")  # a job runs: leaving asks, and says what it waits for
                await pilot.pause()
                await tour.stop("quit-while-a-job-runs", svg=False, modal=True)
                await pilot.press("escape")
                await pilot.pause()
            finally:
                await hold.__aexit__(None, None, None)
            for _ in range(200):
                await settle(pilot, app)
                if wiz.step == "result":
                    break
            await tour.stop("wizard-result", svg=False)  # job ids
            assert "RESTORE VALIDATED" in "\n".join(rendered(app))
            await pilot.press("ctrl+q")  # nothing runs now: Ctrl+Q leaves at once
            await pilot.pause()
            assert not app.is_running
    finally:
        await app.shutdown()
    # Every screen of screens/ is on the tour: a new screen must join it.
    assert {cls.__name__ for cls in console_screens()} <= tour.classes
    assert {"HelpScreen", "ConfirmScreen", "CommandLineScreen", "QuitScreen"} <= tour.classes
