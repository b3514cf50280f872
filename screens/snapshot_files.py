"""Browse one snapshot's files (Esc back, `/` filter)."""

from __future__ import annotations

from datetime import datetime

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Input, Static

from core.fsmeta.describe import attributes, marks
from core.service import Snapshot
from core.text import shown
from screens.footer import KeyFooter
from screens.base import ConsoleScreen, FitTable, TableFilter, human_bytes, plain
from screens.messages import DataLoaded, LoadFailed

LIMIT = 5000  # rows drawn at once; the filter narrows larger trees


class SnapshotFilesScreen(TableFilter, ConsoleScreen):
    FILTERED_TABLE = "#files"
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="files.filter", tooltip="Show only paths containing a text"),
        Binding("escape", "back", "Back", id="files.back", tooltip="Back to the catalog"),
    ]

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.details: dict[str, str] = {}
        self.entries: list[tuple[str, str, int, int, str, str, str]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            f"{self.snapshot.short_id} {self.snapshot.source} · {self.snapshot.datetime:%Y-%m-%d %H:%M} · loading…",
            markup=False,
            id="files-title",
        )
        yield Input(placeholder="filter paths (Esc clears)", id="filter", classes="filter")
        yield FitTable(
            id="files",
            cursor_type="row",
            zebra_stripes=True,
            flex="path",
            flex_min=24,
            priorities={"type": 2, "size": 2, "mtime": 3, "attrs": 3},
        )
        # What the highlighted entry keeps beyond its bytes (ACLs, xattrs, flags, holes).
        yield Static("", markup=False, id="files-detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one("#files", DataTable)
        t.add_column("Path", key="path")
        t.add_column("Type", key="type")
        t.add_column("Size", key="size")
        t.add_column("Modified", key="mtime")
        t.add_column("Attrs", key="attrs")
        self.query_one("#filter", Input).display = False
        t.focus()
        self._load()

    @work(exclusive=True, group="files", exit_on_error=False)
    async def _load(self) -> None:
        try:
            items = await self.console.service.ls(self.snapshot.id)
        except Exception as exc:
            self.post_message(LoadFailed("files", str(exc)))
            return
        # Names come from the backed-up host: shown escaped (a newline or an escape sequence
        # in a name must not break the table), and never read as markup (PlainTable).
        rows = [
            (
                shown(p),
                n.type,
                n.size,
                n.mtime_ns,
                shown(n.target) if n.type == "symlink" else "",
                marks(n),
                "; ".join(f"{a.kind}: {a.text}" for a in attributes(n)),
            )
            for p, n in items
        ]
        self.post_message(DataLoaded("files", rows))

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one("#files-title", Static).update(plain(f"⚠ {message.error}"))

    def on_data_loaded(self, message: DataLoaded) -> None:
        self.entries = message.data  # type: ignore[assignment]
        self._draw()

    def _draw(self) -> None:
        text = self.query_one("#filter", Input).value.strip().lower()
        rows = [e for e in self.entries if text in e[0].lower()]
        t = self.query_one("#files", DataTable)
        t.clear()
        self.details = {}
        for path, typ, size, mtime, target, mark, detail in rows[:LIMIT]:
            t.add_row(
                path + (f" -> {target}" if target else ""),
                typ,
                human_bytes(size) if typ == "file" else "",
                datetime.fromtimestamp(mtime / 1e9).strftime("%Y-%m-%d %H:%M"),
                mark,
                key=path,
            )
            self.details[path] = detail
        more = f" (first {LIMIT} shown)" if len(rows) > LIMIT else ""
        self.query_one("#files-title", Static).update(
            f"{self.snapshot.short_id} {self.snapshot.source} · {len(rows)} of {len(self.entries)} entries{more}"
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        self.query_one("#files-detail", Static).update(self.details.get(key or "", ""))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._draw()

    def action_back(self) -> None:
        if not self.clear_filter(when_shown=False):
            self.app.pop_screen()
