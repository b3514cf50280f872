"""`?`: every key of the screen below, with what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static

from screens.base import PlainTable


def key_rows(screen: Screen) -> list[tuple[str, str, str]]:
    """(keys, description, state) for each binding active on ``screen``, one row per action."""
    seen: dict[tuple[int, str], list[str]] = {}
    rows: dict[tuple[int, str], tuple[str, str]] = {}
    for key, active in screen.active_bindings.items():
        b = active.binding
        if not b.description:
            continue
        ident = (id(active.node), b.action)
        seen.setdefault(ident, []).append(screen.app.get_key_display(b))
        state = "" if active.enabled else "disabled (read-only)"
        rows[ident] = (b.tooltip or b.description, state)
    out = []
    for ident, keys in seen.items():
        desc, state = rows[ident]
        out.append((", ".join(dict.fromkeys(keys)), desc, state))
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, title: str, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(f"Keys: {self.title_text}", id="help-title")
            yield PlainTable(id="help-table", cursor_type="row", zebra_stripes=True)
            yield Static(
                "Esc or ? closes. Ctrl+P: the command palette (every action and screen). "
                ": the command line (:jobs, :restore latest, :drill SCENARIO, :snapshot ID; "
                "Tab completes).",
                markup=False,
                id="help-foot",
            )

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        t.add_columns("Key", "Action", "")
        for row in self.rows:
            t.add_row(*row)

    def action_close(self) -> None:
        self.dismiss(None)
