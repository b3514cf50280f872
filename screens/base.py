"""What every console screen shares: read-only gating, job-event hooks, formatting."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text

from textual.screen import Screen
from textual.widgets import DataTable, Input, OptionList
from textual.widgets.data_table import Column, ColumnKey, RowKey

from core.jobs.api import Job, JobProgress, JobState
from core.progress import fraction
from core.text import human_bytes as human_bytes  # re-exported: the screens take it from here
from screens.messages import JobChanged, JobProgressed

if TYPE_CHECKING:
    from screens.host import ConsoleHost


class ConsoleScreen(Screen):
    """A screen of the console. ``MUTATING`` names actions that change anything; under
    ``--read-only`` they are shown disabled and refuse to run."""

    MUTATING: ClassVar[frozenset[str]] = frozenset()

    @property
    def console(self) -> ConsoleHost:
        # The app is a ConsoleHost (app/console.py); screens never import the app itself.
        return self.app  # type: ignore[return-value]

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        # Plain text by default: our messages carry file names, server messages and
        # errors from outside, and a "[/]" in one must show as it is, not crash the screen.
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.console.read_only:
            return None
        return True

    def on_job_changed(self, message: JobChanged) -> None:
        self.job_updated(message.job)

    def on_job_progressed(self, message: JobProgressed) -> None:
        self.job_updated(message.job)

    def job_updated(self, job: Job) -> None:
        """Render one job's new state; screens that show jobs override this."""

    def on_screen_resume(self) -> None:
        # Events that arrived while another mode was in front were not delivered here.
        self.refresh_data()

    def refresh_data(self) -> None:
        """Reload what the screen shows (a worker); the default has nothing to load."""


class StopAtEndsOptionList(OptionList):
    """An option list whose cursor stops at its first and last option instead of wrapping:
    one ↑ from the top must not land on the bottom option (in the restore wizard, the one
    that overwrites live data)."""

    def action_cursor_down(self) -> None:
        self._step(1)

    def action_cursor_up(self) -> None:
        self._step(-1)

    def _step(self, direction: int) -> None:
        if self.highlighted is None:
            self.action_first() if direction > 0 else self.action_last()
            return
        i = self.highlighted + direction
        while 0 <= i < self.option_count:
            if not self.get_option_at_index(i).disabled:
                self.highlighted = i
                return
            i += direction


class TableFilter:
    """The ``/`` filter of a screen with one table: an ``#filter`` Input shown on demand.
    ``FILTERED_TABLE`` is the table's selector; the screen redraws on Input.Changed."""

    FILTERED_TABLE: ClassVar[str]

    def action_filter(self) -> None:
        f = self.query_one("#filter", Input)  # type: ignore[attr-defined]
        f.display = True
        f.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(self.FILTERED_TABLE, DataTable).focus()  # type: ignore[attr-defined]

    def clear_filter(self, *, when_shown: bool = True) -> bool:
        """Esc's first job: clear a filter being typed or in force (or, ``when_shown``,
        merely shown) and return to the table. False: there was none, Esc goes back."""
        f = self.query_one("#filter", Input)  # type: ignore[attr-defined]
        if not (f.has_focus or f.value or (when_shown and f.display)):
            return False
        f.value = ""
        f.display = False
        self.query_one(self.FILTERED_TABLE, DataTable).focus()  # type: ignore[attr-defined]
        return True


def human_age(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    if s < 0:
        return "in the future"
    if s < 90:
        return f"{s}s ago"
    if s < 90 * 60:
        return f"{s // 60}m ago"
    if s < 48 * 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02}m ago"
    return f"{s // 86400}d ago"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02}s"
    return f"{s // 3600}h{(s % 3600) // 60:02}m"


def short_time(dt: datetime | None) -> str:
    return "-" if dt is None else dt.astimezone().strftime("%Y-%m-%d %H:%M")


# State words carry the meaning; colour (in the tcss classes) only repeats it.
STATE_MARK = {
    JobState.PENDING: "… pending",
    JobState.RUNNING: "▶ running",
    JobState.COMPLETED: "✔ done",
    JobState.FAILED: "✘ FAILED",
    JobState.CANCELLED: "■ cancelled",
    JobState.INTERRUPTED: "↯ interrupted",  # its daemon died: not damage (core/daemon/recovery.py)
}


def job_summary(job: Job) -> str:
    p = job.params
    what = p.get("source") or ",".join(p.get("sources", []) or []) or p.get("snapshot", "") or ""
    if job.kind == "verify":
        what = "full" if p.get("full") else "quick"
    return f"{job.kind} {what}".strip()


def progress_text(job: Job) -> str:
    pr = job.progress
    if pr is None:
        return ""
    return f"{pr.phase}: {done_text(pr)}"


def done_text(pr: JobProgress) -> str:
    """Bytes and items done, each of its total where one is known: "1.2 GiB/8.0 GiB 310/5,000 files"."""
    done = human_bytes(pr.bytes_done)
    total = f"/{human_bytes(pr.bytes_total)}" if pr.bytes_total else ""
    files = f" {pr.files_done:,}{'/' + format(pr.files_total, ',') if pr.files_total else ''} {pr.unit}"
    return f"{done}{total}{files}"


def progress_fraction(job: Job) -> float | None:
    pr = job.progress
    if pr is None:
        return None
    final = job.state.finished
    if pr.bytes_total:
        return fraction(pr.bytes_done, pr.bytes_total, final=final)
    if pr.files_total:
        return fraction(pr.files_done, pr.files_total, final=final)
    return None


def bar(fraction: float | None, width: int = 12) -> str:
    """A text progress bar: readable without colour, and at 16 colours."""
    if fraction is None:
        return "[" + "·" * width + "]"
    full = int(round(fraction * width))
    return "[" + "█" * full + "·" * (width - full) + f"] {fraction * 100:3.0f}%"


class PlainTable(DataTable):
    """A DataTable whose string cells are text, never markup: paths and names with
    brackets (``[x]``, ``/srv/[old]``) show as they are."""

    def add_row(self, *cells: Any, height: int | None = 1, key: str | None = None, label: Any = None) -> RowKey:
        return super().add_row(*(_plain(c) for c in cells), height=height, key=key, label=label)

    def update_cell(
        self, row_key: RowKey | str, column_key: ColumnKey | str, value: Any, *, update_width: bool = True
    ) -> None:
        super().update_cell(row_key, column_key, _plain(value), update_width=update_width)


def _plain(value: Any) -> Any:
    return Text(value) if isinstance(value, str) else value


def short_source(name: str) -> str:
    """Source names that fit 80 columns: application/ -> app/, configuration/ -> conf/."""
    return name.replace("application/", "app/", 1).replace("configuration/", "conf/", 1)


def compact_time(dt: datetime | None) -> str:
    return "-" if dt is None else dt.astimezone().strftime("%m-%d %H:%M")


def plain(text: str) -> Text:
    """Text for a Static's update that holds anything from outside (an error, a name):
    shown as it is, never read as markup."""
    return Text(text)


class _FitColumn(Column):
    """A column that FitTable may hide (width 0) or cap (the flexible one)."""

    hidden: bool = False
    cap: int | None = None

    def get_render_width(self, data_table: DataTable[Any]) -> int:
        if self.hidden:
            return 0
        width = self.content_width if self.auto_width else self.width
        if self.cap is not None:
            width = min(width, self.cap)
        return 2 * data_table.cell_padding + width


class FitTable(PlainTable):
    """A table whose columns fit its width by priority, as k9s does: when the columns do not
    all fit, the least important hide first (priority 1 never hides, higher numbers hide
    earlier), and the one ``flex`` column is cut to the room left (down to ``flex_min``) before
    anything that matters hides. Screens add columns and cells as usual; only what shows changes."""

    def __init__(
        self,
        *args: Any,
        priorities: dict[str, int] | None = None,
        flex: str | None = None,
        flex_min: int = 12,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.priorities = priorities or {}
        self.flex = flex
        self.flex_min = flex_min
        self._fitted: tuple = ()

    def add_column(
        self, label: Any, *, width: int | None = None, key: str | None = None, default: Any = None
    ) -> ColumnKey:
        column_key = super().add_column(label, width=width, key=key, default=default)
        c = self.columns[column_key]
        self.columns[column_key] = _FitColumn(c.key, c.label, c.width, c.content_width, c.auto_width)
        return column_key

    def visible_columns(self) -> list[str]:
        """The keys of the columns shown now (what a layout test asserts on)."""
        return [str(c.key.value) for c in self.ordered_columns if not (isinstance(c, _FitColumn) and c.hidden)]

    def _update_dimensions(self, new_rows: Any) -> None:
        self._fit()
        super()._update_dimensions(new_rows)
        if self._fit():
            super()._update_dimensions(())

    def _on_resize(self, event: Any) -> None:
        super()._on_resize(event)
        if self._fit():
            self._require_update_dimensions = True
            self.refresh()

    def _fit(self) -> bool:
        """Choose the shown columns for the current width; True when that changed."""
        room = self.scrollable_content_region.width
        cols = [c for c in self.ordered_columns if isinstance(c, _FitColumn)]
        if room <= 0 or not cols:
            return False
        pad = 2 * self.cell_padding

        def natural(c: Column) -> int:
            return c.content_width if c.auto_width else c.width

        order = sorted(range(len(cols)), key=lambda i: (self.priorities.get(str(cols[i].key.value), 1), i))
        used, cut = 0, None
        shown: set[int] = set()
        for i in order:
            c = cols[i]
            rank = self.priorities.get(str(c.key.value), 1)
            if cut is not None and rank > cut:
                break  # a less important column never shows where a more important one did not fit
            need = pad + (min(natural(c), self.flex_min) if c.key.value == self.flex else natural(c))
            if used + need <= room or not shown:
                shown.add(i)
                used += need
            else:
                cut = rank
        fitted = []
        for i, c in enumerate(cols):
            c.hidden = i not in shown
            c.cap = None
            if c.key.value == self.flex and not c.hidden and natural(c) > self.flex_min:
                c.cap = self.flex_min + max(0, room - used)
            fitted.append((c.hidden, c.cap))
        changed = tuple(fitted) != self._fitted
        if changed:
            self._fitted = tuple(fitted)
            self._clear_caches()
        return changed
