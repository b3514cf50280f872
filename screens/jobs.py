"""Jobs: running and recent jobs, live; Enter opens one, x cancels it (after a yes)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Input

from core.jobs.api import Job
from screens.footer import KeyFooter
from screens.base import (
    STATE_MARK,
    ConsoleScreen,
    FitTable,
    TableFilter,
    bar,
    human_bytes,
    human_duration,
    job_summary,
    progress_fraction,
    short_time,
)
from screens.confirm import ConfirmScreen

COLUMNS = (
    ("State", "state"),
    ("Job", "job"),
    ("Origin", "origin"),
    ("Started", "started"),
    ("Progress", "progress"),
    ("Rate", "rate"),
    ("ETA", "eta"),
    ("Id", "id"),
)


class JobsScreen(TableFilter, ConsoleScreen):
    FILTERED_TABLE = "#jobs"
    MUTATING = frozenset({"cancel"})
    BINDINGS = [
        Binding("o", "open", "Detail", id="jobs.open", tooltip="Phase, progress, warnings and log of the job"),
        Binding("k", "cancel", "Cancel job", id="jobs.cancel", tooltip="Cancel the selected job (asks first)"),
        Binding("escape", "escape", "Back", show=False, id="jobs.escape", tooltip="Clear the filter, else go back"),
        Binding("slash", "filter", "Filter", id="jobs.filter", tooltip="Show only jobs whose row contains a text"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: kind, state, origin… (Enter keeps, Esc clears)", id="filter", classes="filter")
        yield FitTable(
            id="jobs",
            cursor_type="row",
            zebra_stripes=True,
            flex="job",
            flex_min=14,
            priorities={"origin": 4, "started": 3, "rate": 3, "eta": 2, "id": 2},
        )
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one("#jobs", DataTable)
        for label, key in COLUMNS:
            t.add_column(label, key=key)
        self.query_one("#filter", Input).display = False
        self.refresh_data()
        t.focus()

    def refresh_data(self) -> None:
        self._rebuild()

    def _row(self, j: Job) -> tuple[str, ...]:
        pr = j.progress
        return (
            STATE_MARK[j.state],
            job_summary(j),
            j.origin,
            short_time(j.started_at or j.created_at),
            bar(progress_fraction(j), 10) if not j.state.finished else "",
            f"{human_bytes(pr.rate)}/s" if pr and not j.state.finished else "",
            human_duration(pr.eta_seconds) if pr and not j.state.finished else "",
            j.id,
        )

    def _visible(self, j: Job) -> bool:
        text = self.query_one("#filter", Input).value.strip().lower()
        return not text or text in " ".join(self._row(j)).lower()

    def _rebuild(self) -> None:
        t = self.query_one("#jobs", DataTable)
        jobs = sorted(self.console.jobs.values(), key=lambda j: j.created_at, reverse=True)
        t.clear()
        for j in jobs:
            if self._visible(j):
                t.add_row(*self._row(j), key=j.id)

    def job_updated(self, job: Job) -> None:
        t = self.query_one("#jobs", DataTable)
        if job.id in t.rows:
            for (_, col), value in zip(COLUMNS, self._row(job)):
                t.update_cell(job.id, col, value)
        elif self._visible(job):
            self._rebuild()  # new jobs go on top

    def selected(self) -> str | None:
        t = self.query_one("#jobs", DataTable)
        if not t.row_count:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def action_open(self) -> None:
        job_id = self.selected()
        if job_id:
            from screens.job_detail import JobDetailScreen

            self.app.push_screen(JobDetailScreen(job_id))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_cancel(self) -> None:
        job_id = self.selected()
        job = self.console.jobs.get(job_id or "")
        if job is None or job.state.finished:
            self.notify("select a pending or running job to cancel", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel(job.id)

        self.app.push_screen(
            ConfirmScreen(f"Cancel {job_summary(job)} ({job.id})?", detail="What it has written so far stays valid."),
            answered,
        )

    @work(group="cancel", exit_on_error=False)
    async def _cancel(self, job_id: str) -> None:
        if self.console.engine is None or self.console.read_only:
            return
        self.console.submitted.append(("cancel", {"job_id": job_id}))
        job = await self.console.engine.cancel(job_id)
        self.console.jobs[job.id] = job
        self.job_updated(job)
        self.notify(f"job {job_id}: cancel requested")

    def on_input_changed(self, event: Input.Changed) -> None:
        self._rebuild()

    def action_escape(self) -> None:
        """Esc clears an active filter first, and only then goes back."""
        if not self.clear_filter():
            self.console.back()
