"""The `:` command line, as in k9s: `:jobs`, `:restore latest`, `:drill platform-loss`,
`:snapshot 4f2a`, every screen by name, with completion (Tab or →).

Reading what was typed is the console's business, so the parser lives here; what a
command *means* (which snapshots "latest" is, which snapshot a prefix names, which drill
scenarios exist) comes from core, as for the keys: the App resolves a parsed command
through core services (app/console.py, ``ConsoleApp.execute``). ``parse`` never raises:
any string gives a ``Command`` or a ``Refusal`` whose message is one printable line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Static

from core.config import DRILL_SCENARIOS
from core.text import shown

# verb -> (the screen it opens, what it takes, help). Screen verbs open the screen itself.
SCREENS = ("dashboard", "jobs", "catalog", "verify", "restore", "schedules", "locations", "settings", "drills")
VERBS: dict[str, tuple[str, str]] = {
    **{name: ("", f"open the {name} screen") for name in SCREENS},
    "restore": ("[latest | latest:SOURCE | ID]", "open the restore wizard, from that point when given"),
    "drill": ("SCENARIO", "prepare a drill of that scenario (y starts it)"),
    "snapshot": ("ID | latest", "show that snapshot in the catalog"),
    "help": ("", "the keys of the screen in front"),
    "quit": ("", "leave the console (asks when a job runs)"),
}
ALIASES = {"q": "quit", "snap": "snapshot", "snapshots": "catalog", "job": "jobs", "h": "help"}
EXAMPLES = ("jobs", "restore latest", "drill platform-loss", "snapshot ID")
_REF = re.compile(r"(latest(:[\w/.-]+)?|[0-9a-fA-F]{4,64})")
_ECHO = 40  # characters of what was typed quoted back in a refusal


@dataclass(frozen=True, slots=True)
class Command:
    verb: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    message: str  # one printable line


@dataclass(frozen=True, slots=True)
class Resolved:
    """A command with what core said it means: the snapshots it names (ids, with the
    source of the first), the drill scenario."""

    command: Command
    snapshots: tuple[str, ...] = ()
    source: str = ""


def _echo(text: str) -> str:
    text = shown(text)
    return repr(text if len(text) <= _ECHO else text[:_ECHO] + "…")


def _closest(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return found[0] if found else None


def parse(text: str) -> Command | Refusal:
    """What was typed after `:` -> a command, or a one-line refusal saying why."""
    words = text.strip().removeprefix(":").split()
    if not words:
        return Refusal("type a command, e.g. " + ", ".join(EXAMPLES) + " (Tab completes)")
    verb, args = words[0].lower(), tuple(words[1:])
    verb = ALIASES.get(verb, verb)
    if verb not in VERBS:
        near = _closest(verb, [*VERBS, *ALIASES])
        near = ALIASES.get(near, near) if near else None
        return Refusal(
            f"unknown command {_echo(words[0])}"
            + (f": did you mean {near!r}?" if near else f"; commands: {', '.join(VERBS)}")
        )
    if verb == "restore":
        if not args:
            return Command("restore")
        if len(args) == 1 and _REF.fullmatch(args[0]):
            return Command("restore", (args[0],))
        return Refusal(f"restore takes one point: latest, latest:SOURCE or a snapshot id (got {_echo(' '.join(args))})")
    if verb == "drill":
        if len(args) != 1:
            return Refusal(f"drill takes one scenario: {', '.join(DRILL_SCENARIOS)}")
        if args[0] not in DRILL_SCENARIOS:
            near = _closest(args[0], DRILL_SCENARIOS)
            return Refusal(
                f"no drill scenario {_echo(args[0])}"
                + (f": did you mean {near!r}?" if near else f"; scenarios: {', '.join(DRILL_SCENARIOS)}")
            )
        return Command("drill", args)
    if verb == "snapshot":
        if len(args) != 1 or not _REF.fullmatch(args[0]):
            return Refusal(
                "snapshot takes one id (4 hex digits or more) or latest[:SOURCE]"
                + (f" (got {_echo(' '.join(args))})" if args else "")
            )
        return Command("snapshot", args)
    if args:
        return Refusal(f"{verb} takes nothing after it (got {_echo(' '.join(args))})")
    return Command(verb)


def candidates(snapshot_ids: Iterable[str] = ()) -> list[str]:
    """Every complete command the completion offers, in the order it offers them."""
    out = list(dict.fromkeys(VERBS))
    out += ["restore latest", *(f"drill {s}" for s in DRILL_SCENARIOS), "snapshot latest"]
    out += [f"snapshot {sid[:8]}" for sid in snapshot_ids]
    return out


def complete(text: str, snapshot_ids: Iterable[str] = ()) -> str | None:
    """The first command that starts with what was typed (and is longer), else None."""
    typed = text.lstrip().removeprefix(":").lower()
    if not typed:
        return None
    return next((c for c in candidates(snapshot_ids) if c.startswith(typed) and c != typed), None)


def matching(text: str, snapshot_ids: Iterable[str] = (), limit: int = 6) -> list[str]:
    typed = text.lstrip().removeprefix(":").lower()
    return [c for c in candidates(snapshot_ids) if c.startswith(typed)][:limit]


class CommandSuggester(Suggester):
    def __init__(self, snapshot_ids: list[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.snapshot_ids = snapshot_ids

    async def get_suggestion(self, value: str) -> str | None:
        return complete(value, self.snapshot_ids)


class CommandLineScreen(ModalScreen[object]):
    """The line at the bottom: type, Tab completes, Enter runs, Esc closes. A refusal stays
    on the line under the cursor, where the eye is, until the text changes."""

    DEFAULT_CSS = """
    CommandLineScreen { align: left bottom; background: $background 30%; }
    #cmd-box { dock: bottom; height: auto; background: $panel; border-top: solid $accent; }
    #cmd-row { height: 1; }
    #cmd-prompt { width: 2; padding: 0 0 0 1; color: $accent; text-style: bold; }
    #cmd-input { border: none; height: 1; padding: 0; width: 1fr; background: $panel; }
    #cmd-input:focus { border: none; }
    #cmd-message { height: 1; padding: 0 1; color: $text-muted; }
    #cmd-message.-refused { color: $error; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="cmdline.close", tooltip="Close the command line"),
        Binding(
            "tab", "complete", "Complete", id="cmdline.complete", priority=True, tooltip="Take the suggested completion"
        ),
    ]

    def __init__(self, snapshot_ids: list[str] | None = None) -> None:
        super().__init__()
        self.snapshot_ids = snapshot_ids or []
        self.suggester = CommandSuggester(self.snapshot_ids)

    def compose(self) -> ComposeResult:
        with Vertical(id="cmd-box"):
            with Horizontal(id="cmd-row"):
                yield Static(":", id="cmd-prompt")
                yield Input(id="cmd-input", suggester=self.suggester, select_on_focus=False)
            yield Static(self._hint(""), markup=False, id="cmd-message")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._load_ids()

    @work(exclusive=True, group="cmdline", exit_on_error=False)
    async def _load_ids(self) -> None:
        # Snapshot ids for completion; the command line works without them.
        try:
            snaps, _ = await self.app.service.snapshots()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - completion only: a failure must not close the line
            return
        self.snapshot_ids[:] = [s.id for s in reversed(snaps)]

    def _hint(self, text: str) -> str:
        found = matching(text, self.snapshot_ids)
        if not text.strip():
            return "e.g. " + " · ".join(EXAMPLES) + "   (Tab completes, Enter runs, Esc closes)"
        return " · ".join(found) if found else "no command starts so; Enter says why"

    @on(Input.Changed, "#cmd-input")
    def _changed(self, event: Input.Changed) -> None:
        message = self.query_one("#cmd-message", Static)
        message.remove_class("-refused")
        message.update(self._hint(event.value))

    def action_complete(self) -> None:
        inp = self.query_one(Input)
        done = complete(inp.value, self.snapshot_ids)
        if done is not None:
            inp.value = done
            inp.cursor_position = len(done)

    def action_close(self) -> None:
        self.dismiss(None)

    def refuse(self, message: str) -> None:
        line = self.query_one("#cmd-message", Static)
        line.add_class("-refused")
        line.update("✘ " + shown(message))

    @on(Input.Submitted, "#cmd-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        parsed = parse(event.value)
        if isinstance(parsed, Refusal):
            self.refuse(parsed.message)
            return
        self._execute(parsed)

    @work(exclusive=True, group="cmdline-run", exit_on_error=False)
    async def _execute(self, command: Command) -> None:
        # What the command means comes from core through the App (a snapshot prefix, which
        # snapshots "latest" is); a failure stays on this line, a success closes it and the
        # App moves (the move outlives this screen, so it is not done from its worker).
        resolved = await self.app.resolve_command(command)  # type: ignore[attr-defined]
        if isinstance(resolved, str):
            self.refuse(resolved)
        else:
            self.dismiss(resolved)
