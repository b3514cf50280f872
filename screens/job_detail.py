"""One job: phase, progress, rate, ETA, warnings, result or error, and its log (live)."""

from __future__ import annotations

import json
from typing import cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Header, Log, ProgressBar, Static

from core.jobs.api import Job
from screens.footer import KeyFooter
from screens.base import (
    STATE_MARK,
    ConsoleScreen,
    human_bytes,
    human_duration,
    job_summary,
    progress_fraction,
    short_time,
)
from screens.confirm import ConfirmScreen
from screens.messages import DataLoaded, JobLogLine


class JobDetailScreen(ConsoleScreen):
    MUTATING = frozenset({"cancel"})
    BINDINGS = [
        Binding("k", "cancel", "Cancel job", id="job.cancel", tooltip="Cancel this job (asks first)"),
        Binding("escape", "app.pop_screen", "Back", id="job.back", tooltip="Back to the list"),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="job-detail"):
            yield Static("", markup=False, id="job-head")
            yield ProgressBar(total=100, show_eta=False, id="job-bar")
            yield Static("", markup=False, id="job-facts")
            yield Static("Log", classes="section-title")
            yield Log(id="job-log", highlight=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        job = self.console.jobs.get(self.job_id)
        if job:
            self.job_updated(job)
        self._load_log()

    @work(exclusive=True, group="job-log", exit_on_error=False)
    async def _load_log(self) -> None:
        if self.console.engine is None:
            return
        job = await self.console.engine.get(self.job_id)
        lines = await self.console.engine.log(self.job_id)
        self.post_message(DataLoaded("log", (job, lines)))

    def on_data_loaded(self, message: DataLoaded) -> None:
        job, lines = cast("tuple[Job, list[str]]", message.data)  # as _load_log posts it
        self.console.jobs[job.id] = job
        self.job_updated(job)
        log = self.query_one(Log)
        log.clear()
        log.write_lines(lines)

    def on_job_log_line(self, message: JobLogLine) -> None:
        if message.job_id == self.job_id:
            self.query_one(Log).write_line(message.line)

    def job_updated(self, job: Job) -> None:
        if job.id != self.job_id:
            return
        self.query_one("#job-head", Static).update(
            f"{STATE_MARK[job.state]}  {job_summary(job)}  ·  job {job.id}  ·  from {job.origin}"
        )
        frac = progress_fraction(job)
        pbar = self.query_one(ProgressBar)
        if job.state.finished and job.error is None:
            pbar.update(total=100, progress=100)
        elif frac is not None:
            pbar.update(total=100, progress=frac * 100)
        else:
            pbar.update(total=None)
        pr = job.progress
        facts = [
            f"created {short_time(job.created_at)}   started {short_time(job.started_at)}   "
            f"finished {short_time(job.finished_at)}"
        ]
        if pr:
            total = f" of {human_bytes(pr.bytes_total)}" if pr.bytes_total else ""
            files = f" of {pr.files_total}" if pr.files_total else ""
            facts.append(f"phase {pr.phase}: {human_bytes(pr.bytes_done)}{total}, {pr.files_done}{files} {pr.unit}")
            facts.append(
                f"rate {human_bytes(pr.rate)}/s   ETA {human_duration(pr.eta_seconds)}   warnings {pr.warnings}"
            )
            if pr.current:
                facts.append(f"now: {pr.current}")
        if job.error:
            facts.append(f"✘ error: {job.error}")
        if job.result:
            facts.append("result: " + json.dumps(job.result, default=str)[:400])
        self.query_one("#job-facts", Static).update("\n".join(facts))

    def action_cancel(self) -> None:
        job = self.console.jobs.get(self.job_id)
        if job is None or job.state.finished:
            self.notify("this job has finished", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel()

        self.app.push_screen(ConfirmScreen(f"Cancel {job_summary(job)} ({job.id})?"), answered)

    @work(group="cancel", exit_on_error=False)
    async def _cancel(self) -> None:
        if self.console.engine is None or self.console.read_only:
            return
        self.console.submitted.append(("cancel", {"job_id": self.job_id}))
        job = await self.console.engine.cancel(self.job_id)
        self.console.jobs[job.id] = job
        self.job_updated(job)
