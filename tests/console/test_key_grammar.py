"""One key grammar for the whole console (docs/CONSOLE.md), enforced: a layout or binding
change that breaks it fails here.

- Screen keys are global; no action on any screen reuses one (`x` once meant Drills on one
  screen and Cancel on another).
- Each action has the same key on every screen where it exists (cancel, open, filter,
  refresh, back).
- `q` never starts anything.
- A screen key opens the screen itself, never the sub-screen last left open in it."""

from __future__ import annotations

from console_support import console, console_screens, settle

from app.console import NAVIGATION, ConsoleApp

SCREEN_KEYS = {key for key, _, _ in NAVIGATION} | {"question_mark", "colon"}
# The action -> key table of docs/CONSOLE.md, for actions that exist on more than one screen.
SHARED = {"cancel": "k", "open": "o", "filter": "slash", "reload": "f5,ctrl+r"}
STARTS = {"start", "new", "run_now", "backup_now", "confirm"}


def _screens() -> list[type]:
    # The modal dialogs with keys of their own follow the grammar too.
    from screens.command_line import CommandLineScreen
    from screens.quit import QuitScreen

    return [*console_screens(), CommandLineScreen, QuitScreen]


def _bindings(cls: type):
    for b in getattr(cls, "BINDINGS", []):
        yield b.key, b.action.split("(")[0], b.id


def test_no_screen_action_reuses_a_screen_key_and_shared_actions_share_their_key():
    found = _screens()
    assert len(found) >= 12
    for cls in found:
        for key, action, bid in _bindings(cls):
            keys = set(key.split(","))
            assert not keys & SCREEN_KEYS, f"{cls.__name__}: {bid} uses screen key {keys & SCREEN_KEYS}"
            if action in SHARED:
                assert key == SHARED[action], f"{cls.__name__}: {bid} is {key!r}, the grammar says {SHARED[action]!r}"
            if "q" in keys:
                assert action.split(".")[-1] not in STARTS, f"{cls.__name__}: q starts {action}"


async def test_a_screen_key_opens_the_screen_not_its_last_sub_screen(platform):
    from screens.catalog import CatalogScreen

    app: ConsoleApp = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("c")
        await settle(pilot, app)
        await pilot.press("f")  # the highlighted snapshot's files: a sub-screen of the catalog
        await settle(pilot, app)
        assert not isinstance(app.screen, CatalogScreen)
        await pilot.press("d")
        await settle(pilot, app)
        await pilot.press("c")
        await settle(pilot, app)
        assert isinstance(app.screen, CatalogScreen)


def test_docs_console_lists_every_binding():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "CONSOLE.md").read_text()
    ids = [bid for cls in _screens() for _, _, bid in _bindings(cls)]
    ids += [b.id for b in ConsoleApp.BINDINGS if not b.id.startswith("go.")]
    missing = [bid for bid in ids if f"`{bid}`" not in doc]
    assert not missing, f"docs/CONSOLE.md does not list {missing}"
