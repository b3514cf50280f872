"""Catalog: every snapshot, filterable with `/`; a detail pane; browse files; compare two."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Header, Input, Static

from core.health.shrink import suspicious_shrinks
from core.service import Snapshot
from screens.footer import KeyFooter
from screens.base import (
    ConsoleScreen,
    FitTable,
    TableFilter,
    compact_time,
    human_bytes,
    plain,
    short_source,
)
from screens.messages import DataLoaded, LoadFailed

COLUMNS = (
    ("Id", "id"),
    ("Time", "time"),
    ("Source", "source"),
    ("Type", "type"),
    ("Size", "size"),
    ("Files", "files"),
    ("Ratio", "ratio"),
    ("Tags", "tags"),
    ("Mark", "mark"),
)


def matches(snap: Snapshot, query: str) -> bool:
    """Every word must match: ``source:`` ``type:`` ``tag:`` ``date:`` (a date prefix such as
    2026-11-25) or, bare, any of them or the id."""
    for word in query.lower().split():
        key, _, value = word.partition(":")
        if not value:
            key, value = "", word
        fields = {
            "source": snap.source.lower(),
            "type": snap.type,
            "tag": " ".join(snap.tags).lower(),
            "date": snap.datetime.astimezone().strftime("%Y-%m-%d %H:%M"),
            "id": snap.id,
        }
        if key in fields:
            if value not in fields[key]:
                return False
        elif not any(value in v for v in fields.values()):
            return False
    return True


def detail_text(s: Snapshot, copies: tuple = (), shrink=None) -> str:
    m = s.summary
    lines = [f"⚠ {shrink.message()}"] if shrink else []
    lines += [
        f"snapshot {s.id}",
        f"{s.source} · {s.type} · {s.datetime.astimezone():%Y-%m-%d %H:%M:%S %z} · set {s.backup_set[:8]}",
        f"host {s.hostname} user {s.username} · program {s.program_version}",
        f"{m.total_files} files, {human_bytes(m.total_bytes)}; this run added {human_bytes(m.data_added)} "
        f"({human_bytes(m.data_added_packed)} stored), compression ratio {m.compression_ratio:.2f}",
        f"checksum: manifest id above (keyed BLAKE3); root tree {s.tree[:16]}…",
        "locations: " + (", ".join(f"{c.location} ({c.state})" for c in copies) or "primary"),
    ]
    md = s.metadata or {}
    if "database_version" in md:
        lines.append(
            f"PostgreSQL {md['database_version']} · database {md.get('dbname')} · "
            f"{md.get('total_tables', 0)} tables, {md.get('total_records', 0)} records"
        )
    if md.get("mode") == "physical":
        lines.append(f"physical base backup {md.get('start_lsn', '')}..{md.get('stop_lsn', '')}")
    if s.tags:
        lines.append("tags: " + ", ".join(s.tags))
    lines.extend(f"⚠ {w}" for w in s.warnings[:3])
    return "\n".join(lines)


class CatalogScreen(TableFilter, ConsoleScreen):
    FILTERED_TABLE = "#snapshots"
    BINDINGS = [
        Binding("escape", "escape", "Back", show=False, id="catalog.escape", tooltip="Clear the filter, else go back"),
        Binding("slash", "filter", "Filter", id="catalog.filter", tooltip="Filter: words, or source: type: tag: date:"),
        Binding("f", "browse", "Files", id="catalog.browse", tooltip="Browse the selected snapshot's files"),
        Binding("m", "mark", "Mark", id="catalog.mark", tooltip="Mark a snapshot to compare (two at most)"),
        Binding(
            "equals_sign",
            "compare",
            "Compare",
            id="catalog.compare",
            tooltip="Compare the marked snapshot with the selected one",
        ),
        Binding("f5,ctrl+r", "reload", "Refresh", id="catalog.refresh", tooltip="Reload the catalog"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[Snapshot] = []
        self.marked: str | None = None
        self.copies: dict[str, tuple] = {}
        self.shrinks: dict = {}  # snapshot id -> core.health.shrink.Shrink
        self.wanted: str | None = None  # a snapshot to select once the catalog is drawn (`:snapshot`)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="/ filter: words, or source: type: tag: date:  (Enter keeps, Esc clears)",
            id="filter",
            classes="filter",
        )
        with Vertical(id="catalog-body"):
            yield FitTable(
                id="snapshots",
                cursor_type="row",
                zebra_stripes=True,
                flex="tags",
                priorities={"type": 2, "size": 3, "ratio": 4, "tags": 3},
            )
            yield Static("", markup=False, id="detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one("#snapshots", DataTable)
        for label, key in COLUMNS:
            t.add_column(label, key=key)
        self.query_one("#filter", Input).display = False
        t.focus()
        self.refresh_data()

    def refresh_data(self) -> None:
        self._load()

    @work(exclusive=True, group="catalog", exit_on_error=False)
    async def _load(self) -> None:
        try:
            # Every snapshot once across all locations, with the state of each copy.
            catalog = await self.console.service.catalog()
        except Exception as exc:
            self.post_message(LoadFailed("catalog", str(exc)))
            return
        self.post_message(DataLoaded("catalog", catalog))

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one("#detail", Static).update(plain(f"⚠ cannot read the catalog: {message.error}"))

    def on_data_loaded(self, message: DataLoaded) -> None:
        catalog = message.data
        self.copies = {e.snapshot.id: e.copies for e in catalog.entries}  # type: ignore[attr-defined]
        self.snapshots = [e.snapshot for e in reversed(catalog.entries)]  # type: ignore[attr-defined]
        self.shrinks = suspicious_shrinks(self.snapshots, self.console.config.objectives.suspicious_shrink)
        damaged = catalog.damaged  # type: ignore[attr-defined]
        self._draw()
        if damaged:
            self.notify(f"{len(damaged)} snapshot manifests are damaged; run Verify", severity="error")

    @property
    def query_text(self) -> str:
        return self.query_one("#filter", Input).value

    def shown(self) -> list[Snapshot]:
        return [s for s in self.snapshots if matches(s, self.query_text)]

    def _draw(self) -> None:
        t = self.query_one("#snapshots", DataTable)
        keep = self.selected_id()
        t.clear()
        for s in self.shown():
            m = s.summary
            t.add_row(
                s.short_id,
                compact_time(s.datetime),
                short_source(s.source),
                s.type,
                human_bytes(m.total_bytes),
                f"{m.total_files} ⚠ SHRINK" if s.id in self.shrinks else str(m.total_files),
                f"{m.compression_ratio:.2f}",
                ",".join(s.tags),
                "◆ marked" if s.id == self.marked else "",
                key=s.id,
            )
        if self.wanted and self.wanted in t.rows:
            keep, self.wanted = self.wanted, None
        if keep and keep in t.rows:
            t.move_cursor(row=t.get_row_index(keep))
        self._show_detail()

    def show_snapshot(self, snapshot_id: str) -> None:
        """Select a snapshot (`:snapshot ID`), clearing a filter that would hide it."""
        self.wanted = snapshot_id
        self.clear_filter()
        self._draw()
        if self.wanted:  # not loaded yet: selected when the catalog arrives
            self._load()

    def selected_id(self) -> str | None:
        t = self.query_one("#snapshots", DataTable)
        if not t.row_count:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def selected(self) -> Snapshot | None:
        sid = self.selected_id()
        return next((s for s in self.snapshots if s.id == sid), None)

    def _show_detail(self) -> None:
        s = self.selected()
        self.query_one("#detail", Static).update(
            detail_text(s, self.copies.get(s.id, ()), self.shrinks.get(s.id))
            if s
            else ("no snapshots match the filter" if self.snapshots else "no snapshots yet")
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_browse()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._draw()

    def action_escape(self) -> None:
        """Esc clears an active filter first, and only then goes back."""
        if not self.clear_filter():
            self.console.back()

    def action_reload(self) -> None:
        self._load()

    def action_browse(self) -> None:
        s = self.selected()
        if s:
            from screens.snapshot_files import SnapshotFilesScreen

            self.app.push_screen(SnapshotFilesScreen(s))

    def action_mark(self) -> None:
        sid = self.selected_id()
        self.marked = None if sid == self.marked else sid
        self._draw()

    def action_compare(self) -> None:
        s = self.selected()
        a = next((x for x in self.snapshots if x.id == self.marked), None)
        if s is None or a is None or a.id == s.id:
            self.notify("mark one snapshot with m, select another, then press =", severity="warning")
            return
        older, newer = sorted((a, s), key=lambda x: x.time)
        from screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(older, newer))
