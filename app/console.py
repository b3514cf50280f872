"""The Textual operations console: `axisor-backup console` (or bare `axisor-backup` on a terminal).

The App is a thin shell. It holds a ``BackupService`` for reads (catalog, file lists,
database status) and an engine handle (``core.jobs.api.EngineClient``) for everything that
does work; one worker turns the engine's event stream into messages for the screens.
Jobs belong to the engine, never to the UI: when the terminal goes away the embedded
engine finishes its running jobs before the process exits, and a daemon's jobs never
notice.
"""

from __future__ import annotations

import asyncio

import signal
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from core.config import Config
from core.jobs.api import EngineClient, Job, JobState, connect_engine
from core.service import BackupService, PassphraseSource
from core.errors import AxisorError
from screens.base import job_summary
from screens.catalog import CatalogScreen
from screens.command_line import SCREENS, Command, CommandLineScreen, Resolved
from screens.dashboard import DashboardScreen
from screens.help import HelpScreen, key_rows
from screens.confirm import ConfirmScreen
from screens.jobs import JobsScreen
from screens.quit import QuitScreen
from screens.locations import LocationsScreen
from screens.messages import EngineFailed, EngineReady, JobChanged, JobLogLine, JobProgressed
from screens.restore_wizard import RestoreWizardScreen
from screens.schedules import SchedulesScreen
from screens.settings import SettingsScreen
from screens.verify import VerifyScreen
from screens.drills import DrillsScreen
from screens.time_travel import TimeTravelScreen

SCREENS_DIR = Path(__file__).resolve().parent.parent / "screens"

# key, mode, title: the single keys that move between screens
NAVIGATION = (
    ("d", "dashboard", "Dashboard"),
    ("j", "jobs", "Jobs"),
    ("c", "catalog", "Catalog"),
    ("v", "verify", "Verify"),
    ("r", "restore", "Restore wizard"),
    ("s", "schedules", "Schedules"),
    ("l", "locations", "Locations"),
    ("e", "settings", "Settings"),
    ("x", "drills", "Drills"),
    ("t", "timetravel", "Time travel"),
)


class ConsoleApp(App):
    TITLE = "Axisor Backup"
    CSS_PATH = [SCREENS_DIR / "console.tcss", SCREENS_DIR / "wizard.tcss"]
    MODES = {
        "dashboard": DashboardScreen,
        "jobs": JobsScreen,
        "catalog": CatalogScreen,
        "verify": VerifyScreen,
        "restore": RestoreWizardScreen,
        "schedules": SchedulesScreen,
        "locations": LocationsScreen,
        "settings": SettingsScreen,
        "drills": DrillsScreen,
        "timetravel": TimeTravelScreen,
    }
    DEFAULT_MODE = "dashboard"
    BINDINGS = [
        *(
            Binding(key, f"go('{mode}')", title, id=f"go.{mode}", tooltip=f"Open the {title} screen")
            for key, mode, title in NAVIGATION
        ),
        Binding("question_mark", "help", "Keys", id="app.help", tooltip="List every key of this screen"),
        Binding(
            "colon",
            "command_line",
            "Command",
            id="app.command",
            tooltip="Type a command: jobs, restore latest, drill platform-loss, snapshot ID (Tab completes)",
        ),
        Binding("escape", "back", "Back", show=False, id="app.back", tooltip="Go back one level"),
        Binding(
            "ctrl+q",
            "quit",
            "Quit",
            id="app.quit",
            tooltip="Leave the console (asks first while jobs run: they can go on or be cancelled)",
            priority=True,
        ),
    ]

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        # Plain by default, as on every screen (screens/base.py): foreign text is not markup.
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def __init__(
        self,
        config: Config,
        passphrase: PassphraseSource,
        *,
        config_path: Path | None = None,
        read_only: bool = False,
        prefer_daemon: bool = True,
        engine: EngineClient | None = None,
        service: BackupService | None = None,
        now: Callable[[], datetime] | None = None,
        start_job: tuple[str, dict] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.config_path = config_path or config.path
        self.read_only = read_only
        self._passphrase = passphrase
        self._prefer_daemon = prefer_daemon
        self.engine: EngineClient | None = engine
        self._own_engine = engine is None
        self.service = service or BackupService(config, passphrase)
        self._own_service = service is None
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(timezone.utc))
        self.jobs: dict[str, Job] = {}
        self.submitted: list[tuple[str, dict]] = []  # what this console asked the engine to do
        self._start_job = start_job  # the demo opens with a backup running
        self.sub_title = "connecting to the engine…" + (" · READ-ONLY" if read_only else "")

    # -- engine -------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._connect()

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def _connect(self) -> None:
        try:
            if self.engine is None:
                self.engine = await connect_engine(self.config, self._passphrase, prefer_daemon=self._prefer_daemon)
            for job in await self.engine.list(limit=200):
                self.jobs[job.id] = job
        except Exception as exc:  # the console stays usable for reads without an engine
            self.post_message(EngineFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(EngineReady(self.engine.mode))
        self._pump_events()
        if self._start_job is not None:
            await self.submit(*self._start_job)

    @work(exclusive=True, group="events", exit_on_error=False)
    async def _pump_events(self) -> None:
        assert self.engine is not None
        async for ev in self.engine.events():
            self.jobs[ev.job.id] = ev.job
            if ev.type == "progress":
                self._broadcast(JobProgressed(ev.job))
            elif ev.type == "log":
                self._broadcast(JobLogLine(ev.job.id, ev.message))
            else:
                self._broadcast(JobChanged(ev.job))

    def _broadcast(self, message: JobProgressed | JobChanged | JobLogLine) -> None:
        for screen in self.screen_stack:
            screen.post_message(message)

    def on_engine_ready(self, message: EngineReady) -> None:
        self.engine_mode = message.mode
        self.sub_title = f"{message.mode} engine" + (" · READ-ONLY" if self.read_only else "")
        for screen in self.screen_stack:
            refresh = getattr(screen, "refresh_data", None)
            if refresh:
                refresh()

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.sub_title = "NO ENGINE: " + message.error
        self.notify(f"engine unavailable: {message.error}", severity="error", timeout=10)

    async def submit(self, kind: str, params: dict) -> Job | None:
        """Ask the engine for a job; refused under --read-only. Callers are workers."""
        if self.read_only:
            self.notify("read-only console: nothing can be started", severity="warning")
            return None
        if self.engine is None:
            self.notify("the engine is not connected", severity="error")
            return None
        self.submitted.append((kind, dict(params)))
        job = await self.engine.submit(kind, params, origin="console")
        self.jobs[job.id] = job
        self._broadcast(JobChanged(job))
        return job

    def running_jobs(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state in (JobState.PENDING, JobState.RUNNING)]

    async def shutdown(self) -> None:
        """After the UI is gone: an embedded engine finishes what runs, then everything closes."""
        # The UI's own workers were cancelled as it closed, but not awaited: one cancelled
        # inside a repository read is still releasing its lock. Closing the service under it
        # would leave the lock to refuse a prune for as long as this process lives.
        waits = asyncio.gather(*(w.wait() for w in list(self.workers)), return_exceptions=True)
        try:
            await asyncio.wait_for(waits, timeout=30)  # bounded: closing never hangs on one
        except asyncio.TimeoutError:
            pass
        engine = self.engine
        if engine is not None and self._own_engine:
            if engine.mode == "embedded":
                for job in await engine.list(states=frozenset({JobState.PENDING, JobState.RUNNING})):
                    _note(f"waiting for {job.kind} job {job.id} to finish (the console has closed)")
                    await engine.wait(job.id)
            await engine.close()
        if self._own_service:
            await self.service.close()

    # -- navigation ---------------------------------------------------------------------

    async def run_action(self, action: Any, default_namespace: Any = None, namespaces: Any = None) -> bool:
        # A key whose action --read-only disables is shown greyed in the footer; pressed, it
        # says why in one line instead of doing nothing.
        target, name, _ = self._parse_action(
            action, self if default_namespace is None else default_namespace, namespaces
        )
        if self.read_only and name in getattr(target, "MUTATING", ()):
            what = next(
                (
                    b.description
                    for b in getattr(target, "BINDINGS", ())
                    if getattr(b, "action", None) == name and b.description
                ),
                name.replace("_", " "),
            )
            self.notify(
                f"read-only console: {what!r} changes something and is disabled (started with --read-only)",
                severity="warning",
            )
            return True
        return await super().run_action(action, default_namespace, namespaces)

    def action_go(self, mode: str) -> None:
        # A screen key opens that screen itself, never the sub-screen last left open in it
        # (a snapshot's files, a job's detail): the key grammar of docs/CONSOLE.md.
        self.switch_mode(mode)
        while len(self.screen_stack) > 1:
            self.pop_screen()

    async def action_back(self) -> None:
        self.back()

    def back(self) -> None:
        """Escape's last resort: pop a sub-screen, else return to the dashboard. Plain (not
        async, unlike Textual's action_back) so a screen can call it from a key handler."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif self.current_mode != "dashboard":
            self.switch_mode("dashboard")

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen.__class__.__name__.removesuffix("Screen"), key_rows(self.screen)))

    # -- leaving -----------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Ctrl+Q: leave at once when nothing runs; otherwise say what leaving waits for and
        offer to detach (the jobs go on) or cancel them. Ctrl+Q in that dialog detaches."""
        running = self.running_jobs()
        if not running or self.engine is None or isinstance(self.screen, QuitScreen):
            self.exit()
            return
        self.push_screen(QuitScreen(running, self.engine.mode, read_only=self.read_only), self._quit_answer)

    def _quit_answer(self, answer: str | None) -> None:
        if answer == "detach":
            self.exit()
        elif answer == "cancel":
            jobs = self.running_jobs()
            listing = "\n".join(f"{job_summary(j)} ({j.id})" for j in jobs)

            def answered(yes: bool | None) -> None:
                if yes:
                    self._cancel_and_leave([j.id for j in jobs])

            self.push_screen(
                ConfirmScreen(
                    f"Cancel {len(jobs)} job(s) and leave?",
                    detail=listing + "\nWhat they have written so far stays valid.",
                ),
                answered,
            )

    @work(exclusive=True, group="leaving", exit_on_error=False)
    async def _cancel_and_leave(self, job_ids: list[str]) -> None:
        if self.engine is None or self.read_only:
            return
        for job_id in job_ids:
            self.submitted.append(("cancel", {"job_id": job_id}))
            self.jobs[job_id] = await self.engine.cancel(job_id)
        self.exit()

    # -- the `:` command line (screens/command_line.py parses; core says what it means) -------

    def action_command_line(self) -> None:
        if not isinstance(self.screen, CommandLineScreen):
            self.push_screen(CommandLineScreen(), self._command_done)

    async def resolve_command(self, command: Command) -> Resolved | str:
        """A parsed command with what core says it means, or one line saying why not."""
        verb, args = command.verb, command.args
        if verb == "drill" and self.read_only:
            return "read-only console: a drill cannot be started (started with --read-only)"
        if verb == "restore" and args:
            wizard = self._mode_screen("restore")
            if wizard is not None and wizard.started and wizard.result_ok is None:
                return "a restore is running in the wizard; follow it on the Jobs screen (j)"
        if verb in ("restore", "snapshot") and args:
            try:
                # "latest" is the newest backup set without safety snapshots; a prefix must
                # be unique: core's reading, the one `axisor-backup restore` has.
                snaps = await self.service.resolve([args[0]])
            except AxisorError as exc:
                return str(exc)
            except Exception as exc:  # noqa: BLE001 - the line says it; the console stays up
                return f"cannot read the catalog: {type(exc).__name__}: {exc}"
            if verb == "snapshot":
                snaps = [max(snaps, key=lambda s: s.datetime)]
            return Resolved(command, tuple(s.id for s in snaps), snaps[0].source)
        return Resolved(command)

    def _mode_screen(self, mode: str) -> Any:
        stack = self._screen_stacks.get(mode)
        return stack[0] if stack else None

    def _command_done(self, resolved: object) -> None:
        if isinstance(resolved, Resolved):
            self._follow(resolved)

    @work(exclusive=True, group="command", exit_on_error=False)
    async def _follow(self, r: Resolved) -> None:
        verb = r.command.verb
        if verb == "help":
            self.action_help()
            return
        if verb == "quit":
            await self.action_quit()
            return
        mode = {"drill": "drills", "snapshot": "catalog"}.get(verb, verb)
        assert mode in SCREENS
        await self.switch_mode(mode)  # waits until the screen is mounted
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        screen: Any = self.screen
        if verb == "restore" and r.snapshots:
            screen.begin_at(r.snapshots, r.source)
        elif verb == "drill":
            screen.begin(r.command.args[0])
        elif verb == "snapshot":
            screen.show_snapshot(r.snapshots[0])

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for _key, mode, title in NAVIGATION:
            yield SystemCommand(f"Go: {title}", f"Open the {title} screen", lambda m=mode: self.switch_mode(m))
        # Every action of the screen is reachable from the palette too.
        seen = set()
        for active in screen.active_bindings.values():
            b = active.binding
            if not b.description or not active.enabled or b.action.startswith("go(") or b.action in seen:
                continue
            seen.add(b.action)
            yield SystemCommand(
                f"{b.description}",
                b.tooltip or b.description,
                lambda node=active.node, action=b.action: self.run_action(action, node),
            )
        yield SystemCommand("Quit", "Leave the console (jobs keep running)", self.action_quit)


def _note(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass  # the terminal is gone; the job still finishes


async def run_console(
    config: Config,
    passphrase: PassphraseSource,
    *,
    config_path: Path | None,
    read_only: bool = False,
    prefer_daemon: bool = True,
) -> int:
    app = ConsoleApp(config, passphrase, config_path=config_path, read_only=read_only, prefer_daemon=prefer_daemon)

    def hangup() -> None:
        # The SSH session dropped: close the UI (nothing left to draw on) and let shutdown()
        # finish what the embedded engine runs, then exit. Ignoring the signal instead left
        # a console polling a dead terminal forever.
        from app.backup_outcome import detach_from_terminal

        detach_from_terminal()
        app.exit()

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup)
    try:
        await app.run_async()
    finally:
        await app.shutdown()
    return app.return_code or 0


__all__ = ["ConsoleApp", "NAVIGATION", "run_console"]
