"""Verify: start a quick or full verification; the reports; a report's damage and what it hits."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Header, Static

from core.jobs.api import Job, JobState
from screens.footer import KeyFooter
from screens.base import FitTable, STATE_MARK, ConsoleScreen, human_bytes, short_time


def report_line(job: Job) -> tuple[str, str, str, str, str]:
    r = job.result or {}
    if job.state == JobState.COMPLETED or "damage" in r:  # damage fails the job but keeps its report
        verdict = "✔ no damage" if r.get("ok") else f"✘ DAMAGE ({len(r.get('damage', []))})"
    else:
        verdict = STATE_MARK[job.state]
    kind = "full" if job.params.get("full") else "quick"
    checked = f"{r.get('snapshots_checked', '-')} snapshots" if r else ""
    read = human_bytes(r.get("bytes_read")) if r.get("full") else ""
    return short_time(job.finished_at or job.started_at or job.created_at), kind, verdict, checked, read


def damage_text(job: Job) -> str:
    r = job.result or {}
    if job.state == JobState.INTERRUPTED:  # its daemon died: says nothing about the repository
        return f"↯ the verification was interrupted, not finished: {job.error}"
    if job.error and "damage" not in r:
        return f"✘ the verification itself failed: {job.error}"
    if not r:
        return "running…" if not job.state.finished else "no report"
    lines = [
        f"{'full' if r.get('full') else 'quick'} verification: {r.get('snapshots_checked', 0)} snapshots, "
        f"{r.get('trees_checked', 0)} trees, {r.get('blobs_referenced', 0)} blob references, "
        f"{r.get('packs_checked', 0)} packs read"
    ]
    if r.get("unreferenced_packs"):
        lines.append(f"note: {len(r['unreferenced_packs'])} packs no index references (the next backup adopts them)")
    damage = r.get("damage", [])
    if not damage:
        lines.append("✔ no damage found")
    for d in damage:
        lines.append(f"✘ DAMAGED {d.get('object')}: {d.get('reason')}")
        if d.get("snapshots"):
            lines.append("   snapshots affected: " + ", ".join(x[:8] for x in d["snapshots"]))
        if d.get("wal_files"):
            lines.append("   WAL files affected: " + ", ".join(d["wal_files"][:20]))
        for f in d.get("files", [])[:20]:
            lines.append(f"   file: {f}")
    return "\n".join(lines)


class VerifyScreen(ConsoleScreen):
    MUTATING = frozenset({"start"})
    BINDINGS = [
        Binding(
            "n",
            "start(False)",
            "Quick verify",
            id="verify.quick",
            tooltip="Every manifest opens, every blob is indexed, every pack exists",
        ),
        Binding(
            "f",
            "start(True)",
            "Full verify",
            id="verify.full",
            tooltip="Also read and check every pack (slow, reads everything)",
        ),
        Binding("o", "open", "Job", id="verify.open", tooltip="Open the verification job"),
        Binding(
            "a",
            "by_snapshot",
            "By snapshot",
            id="verify.by_snapshot",
            tooltip="Per snapshot and location: what was checked, when, how (quick, full, drill)",
        ),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="verify-body"):
            yield Static("Verification reports", classes="section-title")
            yield FitTable(id="reports", cursor_type="row", zebra_stripes=True, priorities={"checked": 2, "read": 3})
            yield Static("", markup=False, id="report")
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one("#reports", DataTable)
        for label, key in (
            ("When", "when"),
            ("Kind", "kind"),
            ("Result", "result"),
            ("Checked", "checked"),
            ("Read", "read"),
        ):
            t.add_column(label, key=key)
        t.focus()
        self.refresh_data()

    def reports(self) -> list[Job]:
        return sorted(
            (j for j in self.console.jobs.values() if j.kind == "verify"), key=lambda j: j.created_at, reverse=True
        )

    def refresh_data(self) -> None:
        t = self.query_one("#reports", DataTable)
        keep = self.selected()
        t.clear()
        for j in self.reports():
            t.add_row(*report_line(j), key=j.id)
        if keep and keep in t.rows:
            t.move_cursor(row=t.get_row_index(keep))
        self._show()
        if not t.row_count:
            self.query_one("#report", Static).update("No verification yet: press n (a new quick one) or f (full).")

    def selected(self) -> str | None:
        t = self.query_one("#reports", DataTable)
        if not t.row_count:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def _show(self) -> None:
        job = self.console.jobs.get(self.selected() or "")
        if job:
            self.query_one("#report", Static).update(damage_text(job))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show()

    def job_updated(self, job: Job) -> None:
        if job.kind != "verify":
            return
        t = self.query_one("#reports", DataTable)
        if job.id in t.rows:
            for col, value in zip(("when", "kind", "result", "checked", "read"), report_line(job)):
                t.update_cell(job.id, col, value)
            self._show()
        else:
            self.refresh_data()

    def action_start(self, full: bool) -> None:
        self._start(full)

    @work(group="submit", exit_on_error=False)
    async def _start(self, full: bool) -> None:
        job = await self.console.submit("verify", {"full": full})
        if job:
            self.notify(f"{'full' if full else 'quick'} verification started (job {job.id})")

    def action_open(self) -> None:
        job_id = self.selected()
        if job_id:
            from screens.job_detail import JobDetailScreen

            self.app.push_screen(JobDetailScreen(job_id))

    def action_by_snapshot(self) -> None:
        from screens.verification_report import VerificationReportScreen

        self.app.push_screen(VerificationReportScreen())
