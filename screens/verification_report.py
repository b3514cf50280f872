"""Verification report: per snapshot and per location, what was checked, when, and how
(quick, full, restore-tested by a drill or a restore-test). Opened from the Verify screen (`a`).

The screen only renders core.jobs.verification.verification_report over the catalog,
the job history the console holds and the stored drill reports and restore-test records; the headline is the
repository verdict of core/jobs/status.py, the one the dashboard and `status` show."""

from __future__ import annotations

from typing import cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Header, Input, Static

from core.jobs.verification import (
    CopyChecks,
    Evidence,
    SnapshotChecks,
    drills_for_report,
    restore_tests_for_report,
    verification_report,
)
from core.jobs.api import Job
from core.jobs.status import verify_check, verify_verdict
from screens.base import ConsoleScreen, PlainTable, TableFilter, compact_time, plain, short_source
from screens.footer import KeyFooter
from screens.messages import DataLoaded, LoadFailed

OUTCOME_WORDS = {
    "passed": "✔ passed",
    "damage": "✘ DAMAGE",
    "failed": "✘ restore differs",
    "cancelled": "■ cancelled: says nothing",
    "interrupted": "↯ interrupted: says nothing",
    "could not run": "✘ could not run: says nothing",
    "running": "▶ running",
}
HOW_WORDS = {"quick": "quick verify", "full": "full verify", "drill": "drill restore", "restore-test": "restore-test"}


def evidence_line(e: Evidence) -> str:
    when = compact_time(e.at)
    line = f"{HOW_WORDS[e.how]:<13} {OUTCOME_WORDS.get(e.outcome, e.outcome):<28} {when}  {e.ref}"
    if e.by_time:
        line += " (an older record: attributed by time)"
    if e.detail:
        line += f"\n    {e.detail}"
    return line


def copy_text(row: SnapshotChecks, copy: CopyChecks) -> str:
    head = (
        f"snapshot {row.snapshot_id[:8]} · {row.source} · taken {compact_time(row.time)} · "
        f"at {copy.location}: {copy.state_word} (copy {copy.copy})"
    )
    if not copy.evidence:
        return head + "\nnothing checked this copy yet: Verify (v) n or f, or a drill (x)"
    return "\n".join([head, *(evidence_line(e) for e in copy.evidence)])


def matches(row: SnapshotChecks, copy: CopyChecks, query: str) -> bool:
    hay = " ".join((row.snapshot_id, row.source, copy.location, copy.state, copy.state_word)).lower()
    return all(word in hay for word in query.lower().split())


class VerificationReportScreen(TableFilter, ConsoleScreen):
    FILTERED_TABLE = "#checks"
    DEFAULT_CSS = """
    #checks { height: 1fr; min-height: 5; }
    #checks-head { height: auto; padding: 0 1; }
    #checks-detail { height: auto; max-height: 8; padding: 0 1; border-top: solid $primary; background: $surface; }
    """
    BINDINGS = [
        Binding("escape", "escape", "Back", show=False, id="report.escape", tooltip="Clear the filter, else go back"),
        Binding(
            "slash",
            "filter",
            "Filter",
            id="report.filter",
            tooltip="Filter: words of the id, source, location or state (damage, full, drill…)",
        ),
        Binding("f5,ctrl+r", "reload", "Refresh", id="report.refresh", tooltip="Read the catalog and drills again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: tuple[SnapshotChecks, ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="/ filter: id, source, location, state (Enter keeps, Esc clears)", id="filter", classes="filter"
        )
        with Vertical():
            yield Static("Verification report: reading the catalog…", markup=False, id="checks-head")
            yield PlainTable(id="checks", cursor_type="row", zebra_stripes=True)
            yield Static("", markup=False, id="checks-detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one("#checks", DataTable)
        for label, key in (
            ("Id", "id"),
            ("Taken", "time"),
            ("Source", "source"),
            ("Location", "location"),
            ("Checked", "state"),
        ):
            t.add_column(label, key=key)
        self.query_one("#filter", Input).display = False
        t.focus()
        self.refresh_data()

    def refresh_data(self) -> None:
        self._load()

    def action_reload(self) -> None:
        self._load()

    @work(exclusive=True, group="verification-report", exit_on_error=False)
    async def _load(self) -> None:
        svc = self.console.service
        try:
            catalog = await svc.catalog()
        except Exception as exc:
            self.post_message(LoadFailed("catalog", str(exc)))
            return
        drills, drill_note = await drills_for_report(svc)
        tests, test_note = await restore_tests_for_report(svc)
        jobs = list(self.console.jobs.values())
        rows = verification_report(catalog.entries, jobs, drills, primary=svc.location_names()[0], restore_tests=tests)
        drill_note = "; ".join(n for n in (drill_note, test_note) if n)
        self.post_message(DataLoaded("verification-report", (rows, drill_note)))

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one("#checks-head", Static).update(plain(f"⚠ cannot read the {message.what}: {message.error}"))

    def on_data_loaded(self, message: DataLoaded) -> None:
        if message.what != "verification-report":
            return
        self.rows, drill_note = cast("tuple[tuple[SnapshotChecks, ...], str]", message.data)  # as _load posts it
        self._head(drill_note)
        self._draw()

    def _head(self, note: str = "") -> None:
        verifies = sorted(
            (j for j in self.console.jobs.values() if j.kind == "verify"), key=lambda j: j.created_at, reverse=True
        )
        check = verify_check(verify_verdict(verifies))
        line = "Repository: " + (check.message if check else "no verification has run")
        self.query_one("#checks-head", Static).update(plain(line + (f"\n⚠ {note}" if note else "")))

    def _draw(self) -> None:
        t = self.query_one("#checks", DataTable)
        keep = self._selected_key()
        t.clear()
        query = self.query_one("#filter", Input).value
        for row in reversed(self.rows):  # newest snapshot first
            for copy in row.copies:
                if query and not matches(row, copy, query):
                    continue
                t.add_row(
                    row.snapshot_id[:8],
                    compact_time(row.time),
                    short_source(row.source),
                    copy.location,
                    copy.state_word,
                    key=f"{row.snapshot_id}@{copy.location}",
                )
        if keep and keep in t.rows:
            t.move_cursor(row=t.get_row_index(keep))
        self._detail()

    def _selected_key(self) -> str | None:
        t = self.query_one("#checks", DataTable)
        if not t.row_count:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def _detail(self) -> None:
        key = self._selected_key()
        out = "no snapshots yet" if not self.rows else "no row matches the filter"
        if key:
            sid, _, location = key.partition("@")
            row = next((r for r in self.rows if r.snapshot_id == sid), None)
            copy = row.at(location) if row else None
            if row and copy:
                out = copy_text(row, copy)
        self.query_one("#checks-detail", Static).update(plain(out))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._draw()

    def action_escape(self) -> None:
        if not self.clear_filter():
            self.console.back()

    def job_updated(self, job: Job) -> None:
        # A verification finished: what it checked changes the report.
        if job.kind in ("verify", "drill", "restore-test") and job.state.finished:
            self._load()
