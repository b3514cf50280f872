"""Ctrl+Q while jobs run: what leaving waits for, and the choice to detach or cancel.

Jobs belong to the engine. With a daemon they go on after the console leaves; with the
engine embedded in this console the process stays (screen closed) until they finish. The
dialog says which, job by job with what each is doing or waiting for (its phase: "waiting
for locks", "uploading 45 %"), and offers: Enter (or Ctrl+Q again) leave and let them run,
k cancel them and leave (asks first), Esc stay.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from core.jobs.api import Job, JobState
from screens.base import bar, human_duration, job_summary, progress_fraction


def waiting_line(job: Job) -> str:
    """One job as the dialog lists it: what it is, and what it is doing or waiting for."""
    pr = job.progress
    doing = pr.phase if pr and pr.phase else ("waiting to start" if job.state == JobState.PENDING else "starting")
    line = f"{job_summary(job)} (job {job.id}, from {job.origin}): {doing}"
    frac = progress_fraction(job)
    if frac is not None:
        line += f" {bar(frac, 10)}"
    if pr and pr.eta_seconds:
        line += f", ETA {human_duration(pr.eta_seconds)}"
    return line


def leaving_text(jobs: list[Job], mode: str) -> str:
    n = len(jobs)
    what = f"{n} job runs" if n == 1 else f"{n} jobs run"
    if mode == "daemon":
        head = f"{what} in the daemon; leaving does not stop {'it' if n == 1 else 'them'}."
    else:
        head = (
            f"{what} in this console's own engine (no daemon): leaving closes the screen, "
            f"and the process stays until {'it finishes' if n == 1 else 'they finish'}."
        )
    return head + "\n\n" + "\n".join("• " + waiting_line(j) for j in jobs)


class QuitScreen(ModalScreen[str | None]):
    """Dismissed with "detach", "cancel" or None (stay)."""

    MUTATING: ClassVar[frozenset[str]] = frozenset({"cancel"})
    BINDINGS = [
        Binding(
            "enter",
            "answer('detach')",
            "Leave, jobs go on",
            id="quit.detach",
            tooltip="Leave the console; the jobs keep running",
        ),
        Binding(
            "k", "cancel", "Cancel jobs", id="quit.cancel", tooltip="Cancel the running jobs, then leave (asks first)"
        ),
        Binding("escape", "answer(None)", "Stay", id="quit.stay", tooltip="Back to the console"),
    ]
    DEFAULT_CSS = """
    QuitScreen { align: center middle; }
    #quit-box { width: 76; max-width: 100%; height: auto; max-height: 100%; border: thick $warning;
                background: $panel; padding: 0 1; }
    #quit-question { text-style: bold; }
    #quit-jobs { margin-top: 1; }
    #quit-buttons { height: auto; margin-top: 1; align: right middle; }
    #quit-buttons Button { margin-left: 1; min-width: 10; }
    """

    def __init__(self, jobs: list[Job], mode: str, *, read_only: bool = False) -> None:
        super().__init__()
        self.jobs = jobs
        self.mode = mode
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-box"):
            yield Static("Leave the console?", id="quit-question")
            yield Static(leaving_text(self.jobs, self.mode), markup=False, id="quit-jobs")
            with Horizontal(id="quit-buttons"):
                yield Button("Leave, jobs go on (Enter)", id="detach", variant="primary")
                yield Button("Cancel jobs (k)", id="cancel", variant="error", disabled=self.read_only)
                yield Button("Stay (Esc)", id="stay")

    def on_mount(self) -> None:
        self.query_one("#detach", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.read_only:
            return None
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "cancel":
            self.action_cancel()
        else:
            self.dismiss("detach" if event.button.id == "detach" else None)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)

    def action_cancel(self) -> None:
        self.dismiss("cancel")


__all__ = ["QuitScreen", "leaving_text", "waiting_line"]
