"""Drills: past disaster-recovery drills with their RTO/RPO trend, and the drill wizard
(scenario -> location and point in time -> confirm -> live checklist -> the report).

The wizard submits one ``drill`` job through the engine like any job; the checklist is
built from the job's log lines (one per finished step and check, see core/drills/jobs.py)
and the report is the job's result. History comes from the reports stored in the
repository (``core.drills.report.stored_reports``), so drills run by the CLI or the scheduler
show too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import ContentSwitcher, DataTable, Header, Input, Markdown, OptionList, Static
from textual.widgets.option_list import Option

from core.config import DRILL_SCENARIOS
from core.drills.report import DrillReport, history, stored_reports
from core.jobs.api import Job
from screens.footer import KeyFooter
from screens.base import ConsoleScreen, FitTable, compact_time, human_duration, plain
from screens.messages import DataLoaded, JobLogLine, LoadFailed

SCENARIO_HELP = {
    "database-loss": "restore the newest database backup (or PITR to a time) into a throwaway cluster",
    "platform-loss": "database, application data and configuration into scratch targets",
    "location-loss": "the platform, read from a secondary location only",
    "corrupted-table": "restore one table beside the live one and compare",
    "compromised-host": "the platform from the append-only location, as if the host's keys were lost",
}
STEPS = ("history", "scenario", "options", "confirm", "running", "report")
# Status words stay in every line; the mark only repeats them.
MARKS = {"ok": "✔", "pass": "✔", "failed": "✘", "fail": "✘", "skipped": "–", "skip": "–", "info": "·"}


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    kind: str  # step | check
    name: str
    status: str
    detail: str = ""

    def text(self) -> str:
        status = self.status.upper() if self.status in ("failed", "fail") else self.status
        return f"{MARKS.get(self.status, '?')} {self.kind} {self.name}: {status}{self.detail}"


def parse_log_line(line: str) -> ChecklistItem | None:
    """``step <name>: <status> (<s> s)[: detail]`` / ``check <name>: <status>[: detail]``;
    other lines (the final verdict) are not checklist items."""
    kind, _, rest = line.partition(" ")
    if kind not in ("step", "check") or ": " not in rest:
        return None
    name, _, tail = rest.partition(": ")
    # the status word, then the rest as it was: " (1.20 s): detail" or ": detail"
    status = tail.split(" ", 1)[0].split(":", 1)[0]
    if status not in MARKS:
        return None
    return ChecklistItem(kind, name, status, tail[len(status) :])


def history_cells(row: dict) -> tuple[str, str, str, str, str, str, str]:
    """One history row: when, scenario, result in words, RTO vs objective, worst RPO vs its
    objective, RTO change since the previous drill of that scenario, and the RTO forecast
    made before it ran with how far off it was."""
    started = datetime.fromisoformat(row["started"]) if row.get("started") else None
    verdict = "✔ passed" if row["passed"] else "✘ FAILED"
    rto, goal = row["rto_seconds"], row["rto_objective_seconds"]
    rto_text = f"{human_duration(rto)}/{human_duration(goal)} {'ok' if rto <= goal else 'OVER'}"
    rpos = [r for r in row.get("rpo", []) if r.get("achieved_seconds") is not None]
    if rpos:
        worst = max(rpos, key=lambda r: r["achieved_seconds"])
        rpo_text = (
            f"{human_duration(worst['achieved_seconds'])}/{human_duration(worst['objective_seconds'])} "
            f"{worst['status'] if worst['status'] == 'ok' else worst['status'].upper()}"
        )
    else:
        rpo_text = "-"
    change = row.get("rto_change_seconds")
    trend = (
        "first"
        if change is None
        else ("same" if abs(change) < 0.05 else f"{'slower' if change > 0 else 'faster'} {abs(change):.1f}s")
    )
    forecast, error = row.get("forecast_seconds"), row.get("forecast_error")
    forecast_text = (
        "-"
        if row.get("forecast_note") == "no forecast recorded"
        else "none yet"
        if forecast is None
        else f"{human_duration(forecast)}" + ("" if error is None else f" {error:+.0%}")
    )
    return compact_time(started), row["scenario"], verdict, rto_text, rpo_text, trend, forecast_text


class DrillsScreen(ConsoleScreen):
    MUTATING = frozenset({"new", "confirm"})
    DEFAULT_CSS = """
    DrillsScreen #drills { height: 1fr; padding: 0 1; }
    DrillsScreen #drills > Vertical, DrillsScreen #drills > VerticalScroll { height: 1fr; }
    DrillsScreen #drill-history { height: 1fr; }
    DrillsScreen #history-note, DrillsScreen #drill-hint, DrillsScreen #running-head { height: auto; }
    DrillsScreen #scenario-list { height: auto; max-height: 10; border: tall $primary; }
    DrillsScreen .question { text-style: bold; height: auto; }
    DrillsScreen #checklist { height: auto; }
    """
    BINDINGS = [
        Binding("n", "new", "New drill", id="drills.new", tooltip="Start the drill wizard"),
        Binding("o", "open", "Report", id="drills.open", tooltip="Show the selected drill's report"),
        Binding("y", "confirm", "Start drill", id="drills.confirm", tooltip="Start the drill as confirmed"),
        Binding("escape", "step_back", "Back", id="drills.back", tooltip="Back one step"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.step = "history"
        self.scenario: str | None = None
        self.location: str | None = None
        self.to_time: datetime | None = None
        self.job_id: str | None = None
        self.checklist: list[ChecklistItem] = []
        self.phase = ""
        self.reports: dict[str, DrillReport] = {}
        self.rows: list[dict] = []
        self._lines: dict[str, list[str]] = {}  # log lines of drill jobs, also before submit() returns
        self._render_pending = False

    def compose(self) -> ComposeResult:
        yield Header()
        with ContentSwitcher(initial="history", id="drills"):
            with Vertical(id="history"):
                yield Static("Drills: n starts the wizard, o shows a report", classes="question")
                yield FitTable(
                    id="drill-history",
                    cursor_type="row",
                    zebra_stripes=True,
                    priorities={"rpo": 2, "trend": 3, "forecast": 2},
                )
                yield Static("", markup=False, id="history-note")
            with Vertical(id="scenario"):
                yield Static("Which disaster do you rehearse? (Enter chooses, Esc goes back)", classes="question")
                yield OptionList(
                    *(Option(f"{name}: {SCENARIO_HELP[name]}", id=name) for name in DRILL_SCENARIOS), id="scenario-list"
                )
            with Vertical(id="options"):
                yield Static("Read from which location? (empty: the primary)", classes="question")
                yield Input(placeholder="location name", id="drill-location")
                yield Static("Point in time, ISO 8601 (empty: the newest backup)", classes="question")
                yield Input(placeholder="2026-11-26T09:30:00+00:00", id="drill-time")
                yield Static("Enter continues, Esc goes back", markup=False, id="drill-hint")
            with Vertical(id="confirm"):
                yield Static("", markup=False, id="confirm-text")
            with VerticalScroll(id="running"):
                yield Static("", markup=False, id="running-head")
                yield Static("", markup=False, id="checklist")
            with VerticalScroll(id="report"):
                yield Markdown("", id="drill-report")
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one("#drill-history", DataTable)
        for label, key in (
            ("When", "when"),
            ("Scenario", "scenario"),
            ("Result", "result"),
            ("RTO/goal", "rto"),
            ("RPO/goal", "rpo"),
            ("RTO trend", "trend"),
            ("Forecast", "forecast"),
        ):
            t.add_column(label, key=key)
        t.focus()
        self.refresh_data()

    # -- history ------------------------------------------------------------------------

    def refresh_data(self) -> None:
        self._load_history()

    @work(exclusive=True, group="drills-history", exit_on_error=False)
    async def _load_history(self) -> None:
        try:
            reports, damaged = await stored_reports(self.console.service)
        except Exception as exc:  # the screen stays usable: the note says what failed
            self.post_message(LoadFailed("drills", f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(DataLoaded("drills", (reports, [str(d) for d in damaged])))

    def on_data_loaded(self, message: DataLoaded) -> None:
        if message.what != "drills":
            return
        reports, damaged = cast("tuple[list[DrillReport], list[str]]", message.data)  # as _load_history posts it
        self.reports = {r.id: r for r in reports}
        self.rows = list(reversed(history(reports)))  # newest first
        t = self.query_one("#drill-history", DataTable)
        t.clear()
        for row in self.rows:
            t.add_row(*history_cells(row), key=row["id"])
        note = "" if self.rows else "No drill yet: press n to rehearse a disaster."
        if damaged:
            note += f"\n✘ {len(damaged)} stored reports do not open: " + "; ".join(damaged[:3])
        self.query_one("#history-note", Static).update(note.strip())

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.what == "drills":
            self.query_one("#history-note", Static).update(plain(f"✘ drill history unavailable: {message.error}"))

    def selected(self) -> str | None:
        t = self.query_one("#drill-history", DataTable)
        if not t.row_count:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def action_open(self) -> None:
        report = self.reports.get(self.selected() or "")
        if report is not None and self.step == "history":
            self._show_report(report.markdown())

    @on(DataTable.RowSelected, "#drill-history")
    def _row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    # -- wizard -------------------------------------------------------------------------

    def go(self, step: str) -> None:
        self.step = step
        self.query_one("#drills", ContentSwitcher).current = step
        focus = {"history": "#drill-history", "scenario": "#scenario-list", "options": "#drill-location"}.get(step)
        if focus:
            self.query_one(focus).focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if allowed is not True:
            return allowed
        if action == "confirm":
            return True if self.step == "confirm" else False
        if action in ("new", "open"):
            return True if self.step == "history" else False
        return True

    def begin(self, scenario: str) -> None:
        """`:drill SCENARIO`: the wizard at its options step, the scenario chosen; y still
        starts it after the confirmation."""
        self.action_new()
        self.scenario = scenario
        self.go("options")

    def action_new(self) -> None:
        self.scenario, self.location, self.to_time = None, None, None
        self.query_one("#drill-location", Input).value = ""
        self.query_one("#drill-time", Input).value = ""
        self.go("scenario")

    def action_step_back(self) -> None:
        back = {"scenario": "history", "options": "scenario", "confirm": "options", "report": "history"}
        if self.step == "history":
            self.console.back()
        elif self.step == "running":
            # The drill is the engine's job and goes on; the checklist can be reopened.
            self.go("history")
        else:
            self.go(back[self.step])

    @on(OptionList.OptionSelected, "#scenario-list")
    def _scenario_chosen(self, event: OptionList.OptionSelected) -> None:
        self.scenario = event.option.id
        self.go("options")

    @on(Input.Submitted, "#drill-location, #drill-time")
    def _options_entered(self, _event: Input.Submitted) -> None:
        location = self.query_one("#drill-location", Input).value.strip() or None
        when_text = self.query_one("#drill-time", Input).value.strip()
        hint = self.query_one("#drill-hint", Static)
        names = self.console.service.location_names()
        if location is not None and location not in names:
            hint.update(plain(f"✘ no location {location!r}; configured: {', '.join(names)}"))
            return
        when: datetime | None = None
        if when_text:
            try:
                when = datetime.fromisoformat(when_text)
            except ValueError:
                hint.update(plain(f"✘ {when_text!r} is not an ISO 8601 time (e.g. 2026-11-26T09:30:00+00:00)"))
                return
            if when.tzinfo is None:
                when = when.astimezone()
        hint.update("Enter continues, Esc goes back")
        self.location, self.to_time = location, when
        self.query_one("#confirm-text", Static).update(self.confirm_text())
        self.go("confirm")

    def params(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "from": self.location,
            "to_time": self.to_time.isoformat() if self.to_time else None,
        }

    def confirm_text(self) -> str:
        lines = [
            f"Start a {self.scenario} drill?",
            "",
            f"  scenario:      {self.scenario} ({SCENARIO_HELP.get(self.scenario or '', '')})",
            f"  location:      {self.location or 'the primary'}",
            f"  point in time: {self.to_time.isoformat() if self.to_time else 'the newest backup'}",
            "",
            "Live data is never touched: the drill restores into scratch targets and removes them.",
            "",
        ]
        lines.append(
            "Read-only console: a drill cannot be started here (Esc goes back)."
            if self.console.read_only
            else "y starts the drill, Esc goes back"
        )
        return "\n".join(lines)

    def action_confirm(self) -> None:
        if self.step == "confirm":
            self._submit(self.params())

    @work(group="submit", exit_on_error=False)
    async def _submit(self, params: dict[str, Any]) -> None:
        job = await self.console.submit("drill", params)
        if job is None:
            return
        self.job_id, self.phase = job.id, "submitted"
        self.checklist = []
        for line in self._lines.get(job.id, []):  # lines that raced ahead of submit()
            self._add_line(line)
        self.go("running")
        self._render_checklist()
        self.job_updated(self.console.jobs.get(job.id, job))

    # -- live checklist -----------------------------------------------------------------

    def on_job_log_line(self, message: JobLogLine) -> None:
        job = self.console.jobs.get(message.job_id)
        if job is None or job.kind != "drill":
            return
        self._lines.setdefault(message.job_id, []).append(message.line)
        if message.job_id == self.job_id:
            self._add_line(message.line)
            self._schedule_render()

    def _add_line(self, line: str) -> None:
        item = parse_log_line(line)
        if item is not None:
            self.checklist.append(item)

    def _schedule_render(self) -> None:
        # A burst of log lines draws once, after the burst.
        if not self._render_pending:
            self._render_pending = True
            self.call_after_refresh(self._render_checklist)

    def _render_checklist(self) -> None:
        self._render_pending = False
        head = f"{self.scenario} drill, job {self.job_id}: {self.phase}"
        self.query_one("#running-head", Static).update(head + "\n" + "Esc leaves it running in the engine")
        body = "\n".join(item.text() for item in self.checklist) or "waiting for the first step…"
        self.query_one("#checklist", Static).update(body)

    def job_updated(self, job: Job) -> None:
        if job.kind != "drill":
            return
        if job.state.finished:
            self.refresh_data()
        if job.id != self.job_id:
            return
        if job.progress is not None:
            self.phase = job.progress.phase
        if job.state.finished:
            self.phase = f"{job.state.value}"
            self._finish(job)
        elif self.step == "running":
            self._schedule_render()

    @work(group="drill-finish", exit_on_error=False)
    async def _finish(self, job: Job) -> None:
        # The complete log, in case events were coalesced or the screen was elsewhere.
        if self.console.engine is not None:
            lines = await self.console.engine.log(job.id)
            self.checklist = [item for item in map(parse_log_line, lines) if item is not None]
        self._render_checklist()
        if self.step != "running":
            return  # the operator left the checklist; the report is in the history
        r = job.result or {}
        if r.get("markdown"):
            self._show_report(r["markdown"])
        else:
            self._show_report(f"# Drill {job.state.value}\n\n{job.error or 'no report'}\n")

    def _show_report(self, markdown: str) -> None:
        self.query_one("#drill-report", Markdown).update(markdown)
        self.go("report")


__all__ = ["ChecklistItem", "DrillsScreen", "history_cells", "parse_log_line"]
