"""Locations: health, latency, usage and growth per location."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from screens.footer import KeyFooter
from screens.base import FitTable, ConsoleScreen, human_bytes, plain
from screens.messages import DataLoaded, LoadFailed

COLUMNS = (
    ("Location", "name"),
    ("Health", "health"),
    ("Latency", "latency"),
    ("Used", "used"),
    ("Objects", "objects"),
    ("Free", "free"),
    ("Growth", "growth"),
    ("Where", "where"),
)


async def location_statuses(console) -> list:
    """Every location's status (core.locations via BackupService.locations)."""
    return list(await console.service.locations())


class LocationsScreen(ConsoleScreen):
    BINDINGS = [
        Binding("f5,ctrl+r", "reload", "Probe again", id="locations.refresh", tooltip="Probe every location now")
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("probing locations…", markup=False, id="locations-note")
        yield FitTable(
            id="locations",
            cursor_type="row",
            zebra_stripes=True,
            flex="where",
            priorities={"latency": 3, "used": 2, "objects": 4, "free": 2, "growth": 3, "where": 3},
        )
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for label, key in COLUMNS:
            t.add_column(label, key=key)
        t.focus()
        self.refresh_data()
        self.set_interval(60, self.refresh_data)

    def refresh_data(self) -> None:
        self._load()

    def action_reload(self) -> None:
        self._load()

    @work(exclusive=True, group="locations", exit_on_error=False)
    async def _load(self) -> None:
        try:
            statuses = await location_statuses(self.console)
        except Exception as exc:
            self.post_message(LoadFailed("locations", str(exc)))
            return
        self.post_message(DataLoaded("locations", statuses))

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one("#locations-note", Static).update(plain(f"⚠ cannot probe the locations: {message.error}"))

    def on_data_loaded(self, message: DataLoaded) -> None:
        t = self.query_one(DataTable)
        down = 0
        with self.app.batch_update():
            for st in message.data:  # type: ignore[attr-defined]
                if not st.reachable:
                    health = f"✘ DOWN: {st.error}"
                    down += 1
                elif not st.initialized:
                    health = "⚠ empty"
                else:
                    health = "✔ ok"
                growth = (
                    "-"
                    if st.growth_bytes is None
                    else (
                        f"{'+' if st.growth_bytes >= 0 else ''}{human_bytes(st.growth_bytes)} since "
                        f"{(st.growth_since or '')[:10]}"
                    )
                )
                row = (
                    st.name + (" (primary)" if st.primary else ""),
                    health,
                    "-" if st.latency_ms is None else f"{st.latency_ms:.0f} ms",
                    human_bytes(st.bytes_used) if st.bytes_used is not None else "-",
                    "-" if st.objects is None else str(st.objects),
                    human_bytes(st.free_bytes) if st.free_bytes is not None else "-",
                    growth,
                    f"{st.provider}: {st.where}",
                )
                if st.name in t.rows:
                    for (_, col), value in zip(COLUMNS, row):
                        t.update_cell(st.name, col, value)
                else:
                    t.add_row(*row, key=st.name)
        self.query_one("#locations-note", Static).update(
            f"{t.row_count} location(s); " + (f"✘ {down} down" if down else "all reachable")
        )
