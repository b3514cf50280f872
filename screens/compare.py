"""Compare two snapshots: files added, changed and removed; tables whose row counts changed."""

from __future__ import annotations

from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from core.service import Snapshot
from screens.footer import KeyFooter
from screens.base import FitTable, ConsoleScreen, human_bytes, plain
from screens.messages import DataLoaded, LoadFailed


@dataclass(frozen=True, slots=True)
class Difference:
    change: str  # "added" | "changed" | "removed" | "rows"
    what: str
    detail: str


def diff_snapshots(
    old: dict[str, tuple], new: dict[str, tuple], old_tables: dict, new_tables: dict
) -> list[Difference]:
    """``old``/``new``: path -> (type, size, content ids); tables: name -> row count."""
    out = [Difference("added", p, f"{new[p][0]} {human_bytes(new[p][1])}") for p in sorted(new.keys() - old.keys())]
    out += [
        Difference("changed", p, f"{human_bytes(old[p][1])} -> {human_bytes(new[p][1])}")
        for p in sorted(new.keys() & old.keys())
        if old[p] != new[p] and new[p][0] != "dir"
    ]
    out += [Difference("removed", p, old[p][0]) for p in sorted(old.keys() - new.keys())]
    for t in sorted(old_tables.keys() | new_tables.keys()):
        a, b = old_tables.get(t), new_tables.get(t)
        if a != b:
            out.append(Difference("rows", t, f"{'-' if a is None else a} -> {'-' if b is None else b} rows"))
    return out


class CompareScreen(ConsoleScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="compare.back", tooltip="Back to the catalog")]

    def __init__(self, old: Snapshot, new: Snapshot) -> None:
        super().__init__()
        self.old, self.new = old, new
        self.differences: list[Difference] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            f"{self.old.short_id} ({self.old.source}) -> {self.new.short_id} ({self.new.source}) · comparing…",
            markup=False,
            id="compare-title",
        )
        yield FitTable(
            id="differences", cursor_type="row", zebra_stripes=True, flex="what", flex_min=24, priorities={"detail": 2}
        )
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for label, key in (("Change", "change"), ("Path or table", "what"), ("Detail", "detail")):
            t.add_column(label, key=key)
        t.focus()
        self._load()

    @work(exclusive=True, group="compare", exit_on_error=False)
    async def _load(self) -> None:
        svc = self.console.service
        try:
            sides = []
            for s in (self.old, self.new):
                sides.append({p: (n.type, n.size, tuple(n.content or ())) for p, n in await svc.ls(s.id)})
        except Exception as exc:
            self.post_message(LoadFailed("compare", str(exc)))
            return
        diffs = diff_snapshots(
            sides[0], sides[1], (self.old.metadata or {}).get("tables", {}), (self.new.metadata or {}).get("tables", {})
        )
        self.post_message(DataLoaded("compare", diffs))

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one("#compare-title", Static).update(plain(f"⚠ {message.error}"))

    def on_data_loaded(self, message: DataLoaded) -> None:
        self.differences = message.data  # type: ignore[assignment]
        t = self.query_one(DataTable)
        t.clear()
        marks = {"added": "+ added", "changed": "~ changed", "removed": "- removed", "rows": "# rows"}
        for d in self.differences:
            t.add_row(marks[d.change], d.what, d.detail)
        counts = {k: sum(1 for d in self.differences if d.change == k) for k in marks}
        self.query_one("#compare-title", Static).update(
            f"{self.old.short_id} -> {self.new.short_id}: {counts['added']} added, {counts['changed']} changed, "
            f"{counts['removed']} removed files; {counts['rows']} tables changed row counts"
        )
