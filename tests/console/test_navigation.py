"""Keys between screens, `?` help, the command palette, Esc back, --read-only, y/n confirm."""

from __future__ import annotations

from textual.widgets import DataTable

from console_support import console, settle
from screens.catalog import CatalogScreen
from screens.confirm import ConfirmScreen
from screens.dashboard import DashboardScreen
from screens.help import HelpScreen
from screens.jobs import JobsScreen
from screens.locations import LocationsScreen
from screens.restore_wizard import RestoreWizardScreen
from screens.schedules import SchedulesScreen
from screens.settings import SettingsScreen
from screens.verify import VerifyScreen


async def test_single_keys_reach_every_screen_and_escape_goes_back(platform):
    app = platform.app()
    async with console(app) as pilot:
        for key, screen in (
            ("j", JobsScreen),
            ("c", CatalogScreen),
            ("v", VerifyScreen),
            ("r", RestoreWizardScreen),
            ("s", SchedulesScreen),
            ("l", LocationsScreen),
            ("e", SettingsScreen),
            ("d", DashboardScreen),
        ):
            await pilot.press(key)
            await settle(pilot, app)
            assert isinstance(app.screen, screen), key
        await pilot.press("c")
        await settle(pilot, app)
        await pilot.press("escape")
        await settle(pilot, app)
        assert isinstance(app.screen, DashboardScreen)


async def test_help_lists_every_key_of_the_screen(platform):
    app = platform.app()
    async with console(app) as pilot:
        await pilot.press("c")
        await settle(pilot, app)
        await pilot.press("question_mark")
        await settle(pilot, app)
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one(DataTable)
        actions = " | ".join(str(table.get_row(k)[1]) for k in table.rows)
        for expected in (
            "Filter: words",
            "Browse the selected",
            "Mark a snapshot",
            "Compare the marked",
            "Open the Dashboard screen",
            "List every key",
        ):
            assert expected in actions, expected
        await pilot.press("escape")
        await settle(pilot, app)
        assert isinstance(app.screen, CatalogScreen)


async def test_palette_reaches_screens_and_actions(platform):
    app = platform.app()
    async with console(app) as pilot:
        await pilot.press("v")
        await settle(pilot, app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Go: Restore wizard" in titles and "Go: Settings" in titles
        assert "Quick verify" in titles and "Full verify" in titles
        cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Go: Catalog")
        cmd.callback()
        await settle(pilot, app)
        assert isinstance(app.screen, CatalogScreen)


async def test_read_only_disables_every_changing_action(platform):
    app = platform.app(read_only=True)
    async with console(app) as pilot:
        assert "READ-ONLY" in app.sub_title
        await pilot.press("b")  # back up now
        await settle(pilot, app)
        # Refused, and said where the eye is: never a key that silently does nothing.
        said = [n.message for n in app._notifications]
        assert any("read-only console" in m and "Back up now" in m and "--read-only" in m for m in said), said
        await pilot.press("v")
        await settle(pilot, app)
        await pilot.press("n")  # quick verify
        await settle(pilot, app)
        assert sum("read-only console" in n.message for n in app._notifications) == 2
        states = {a.binding.action: a.enabled for a in app.screen.active_bindings.values()}
        assert states["start(False)"] is False and states["start(True)"] is False
        assert app.submitted == []
        assert [j for j in await app.engine.list() if j.origin == "console"] == []


async def test_confirm_defaults_to_no(platform):
    app = platform.app()
    answers = []
    async with console(app) as pilot:
        app.push_screen(ConfirmScreen("Really?"), answers.append)
        await settle(pilot, app)
        await pilot.press("enter")  # the focused button is No
        await settle(pilot, app)
        app.push_screen(ConfirmScreen("Really?"), answers.append)
        await settle(pilot, app)
        await pilot.press("escape")
        await settle(pilot, app)
        app.push_screen(ConfirmScreen("Really?"), answers.append)
        await settle(pilot, app)
        await pilot.press("y")
        await settle(pilot, app)
    assert answers == [False, False, True]
