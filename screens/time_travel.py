"""Time travel: pick a source and a day on a calendar strip; see the snapshot that was
current then, how it was checked and where it is held; Enter restores from it (the restore
wizard, filled in up to "Where to?").

The screen only renders core.jobs.timetravel.point_in_time over the catalog and the
verification report (core/jobs/verification.py)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.widgets import Header, Static

from core.jobs.timetravel import PointInTime, days_with_snapshots, point_in_time, sources_of
from core.jobs.verification import (
    RESTORE_TEST,
    SnapshotChecks,
    drills_for_report,
    restore_tests_for_report,
    verification_report,
)
from core.jobs.api import Job
from screens.base import ConsoleScreen, compact_time, human_age, human_bytes, plain, short_source
from screens.footer import KeyFooter
from screens.messages import DataLoaded, LoadFailed

CELL = 10  # columns per day on the strip: "Mon 23" and its mark, with a gap


def point_text(pit: PointInTime, day: date, today: date) -> str:
    """What the detail pane says about one point in time."""
    when = "now" if day >= today else f"the end of {day:%a %Y-%m-%d}"
    if pit.never:
        return f"{pit.source} has no snapshot in any location: nothing to go back to."
    if pit.before_first:
        first = pit.first
        return (
            f"At {when} nothing of {pit.source} was backed up yet.\n"
            f"Its first snapshot, {first.short_id}, was taken {compact_time(first.datetime)} "  # type: ignore[union-attr]
            "(Home jumps there)."
        )
    s = pit.snapshot
    m = s.summary
    lines = [
        f"At {when}: snapshot {s.short_id} of {pit.source}",
        (
            f"  taken {compact_time(s.datetime)} ({human_age(pit.at - s.datetime).replace(' ago', ' before')}) · "
            f"{s.type} · {m.total_files} files, {human_bytes(m.total_bytes)}"
        ),
    ]
    if pit.following is not None:
        lines.append(f"  replaced by {pit.following.short_id} at {compact_time(pit.following.datetime)}")
    else:
        lines.append("  the newest snapshot of this source")
    lines.append("Locations:" if pit.entry.copies else "Locations: none configured")  # type: ignore[union-attr]
    for copy in pit.entry.copies:  # type: ignore[union-attr]
        checks = pit.checks.at(copy.location) if pit.checks else None
        state = checks.state_word if checks else "· not verified"
        newest = next((e for e in checks.evidence if e.verdict), None) if checks else None
        # A restore-test says what share of the snapshot it restored and validated.
        share = f", {newest.detail}" if newest and newest.how == RESTORE_TEST else ""
        how = f" ({compact_time(newest.at)}, {newest.ref}{share})" if newest else ""
        lines.append(f"  {copy.location:<10} {copy.state:<10} {state}{how}")
    lines.append("Enter: restore from this snapshot (the restore wizard, filled in)")
    return "\n".join(lines)


class TimeTravelScreen(ConsoleScreen):
    DEFAULT_CSS = """
    #tt-source { height: 1; padding: 0 1; text-style: bold; }
    #tt-strip { height: 3; padding: 0 1; }
    #tt-detail { height: 1fr; padding: 0 1; border-top: solid $primary; }
    """
    BINDINGS = [
        Binding("left", "day(-1)", "Earlier", id="timetravel.earlier", tooltip="The day before"),
        Binding("right", "day(1)", "Later", id="timetravel.later", tooltip="The day after"),
        Binding(
            "pageup", "day(-7)", "Week earlier", show=False, id="timetravel.week_earlier", tooltip="Seven days before"
        ),
        Binding("pagedown", "day(7)", "Week later", show=False, id="timetravel.week_later", tooltip="Seven days after"),
        Binding(
            "shift+left",
            "snapshot(-1)",
            "Previous snapshot",
            show=False,
            id="timetravel.previous",
            tooltip="The day of the snapshot before the current one",
        ),
        Binding(
            "shift+right",
            "snapshot(1)",
            "Next snapshot",
            show=False,
            id="timetravel.next",
            tooltip="The day of the snapshot after the current one",
        ),
        Binding(
            "home",
            "first",
            "First",
            show=False,
            id="timetravel.first",
            tooltip="The day of this source's first snapshot",
        ),
        Binding("end", "today", "Today", show=False, id="timetravel.today", tooltip="Back to today"),
        Binding("right_square_bracket", "source(1)", "Source", id="timetravel.next_source", tooltip="The next source"),
        Binding(
            "left_square_bracket",
            "source(-1)",
            "Previous source",
            show=False,
            id="timetravel.previous_source",
            tooltip="The previous source",
        ),
        Binding(
            "enter",
            "restore",
            "Restore from here",
            id="timetravel.restore",
            tooltip="Open the restore wizard with this source and snapshot filled in",
        ),
        Binding(
            "f5,ctrl+r", "reload", "Refresh", show=False, id="timetravel.refresh", tooltip="Read the catalog again"
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: tuple = ()
        self.checks: tuple[SnapshotChecks, ...] = ()
        self.sources: list[str] = []
        self.source_index = 0
        self.day: date | None = None
        self.point: PointInTime | None = None
        self.loaded = False

    # -- layout and data ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", markup=False, id="tt-source")
        yield Static("", id="tt-strip")
        yield Static("Time travel: reading the catalog…", markup=False, id="tt-detail")
        yield KeyFooter()

    @property
    def tz(self) -> tzinfo:
        return self.console.now().astimezone().tzinfo  # type: ignore[return-value]

    @property
    def today(self) -> date:
        return self.console.now().astimezone(self.tz).date()

    def on_mount(self) -> None:
        self.day = self.today
        self.refresh_data()

    def refresh_data(self) -> None:
        self._load()

    def action_reload(self) -> None:
        self._load()

    @work(exclusive=True, group="timetravel", exit_on_error=False)
    async def _load(self) -> None:
        svc = self.console.service
        try:
            catalog = await svc.catalog()
        except Exception as exc:
            self.post_message(LoadFailed("catalog", str(exc)))
            return
        drills, _note = await drills_for_report(svc)  # the report screen shows the notes
        tests, _note = await restore_tests_for_report(svc)
        rows = verification_report(
            catalog.entries,
            list(self.console.jobs.values()),
            drills,
            primary=svc.location_names()[0],
            restore_tests=tests,
        )
        self.post_message(DataLoaded("timetravel", (catalog.entries, rows)))

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one("#tt-detail", Static).update(plain(f"⚠ cannot read the {message.what}: {message.error}"))

    def on_data_loaded(self, message: DataLoaded) -> None:
        if message.what != "timetravel":
            return
        self.entries, self.checks = message.data  # type: ignore[misc]
        keep = self.source
        configured = [s.name for s in self.console.config.sources()]
        if self.console.config.database.enabled:
            configured.append("database")
        self.sources = sorted(set(configured) | set(sources_of(self.entries)))
        self.source_index = self.sources.index(keep) if keep in self.sources else 0
        self.loaded = True
        self._draw()

    def job_updated(self, job: Job) -> None:
        if job.kind in ("backup", "verify", "drill", "restore-test", "prune") and job.state.finished:
            self._load()

    def on_resize(self, event: Resize) -> None:
        self._draw()

    @property
    def source(self) -> str | None:
        return self.sources[self.source_index] if self.sources else None

    def moment(self, day: date) -> datetime:
        """The selected day's end, or now when it is today or later: what was current then."""
        now = self.console.now()
        end = datetime.combine(day, time(23, 59, 59, 999999), tzinfo=self.tz)
        return min(end, now)

    def _draw(self) -> None:
        if not self.is_mounted or self.day is None:
            return
        source = self.source
        if source is None:
            self.query_one("#tt-source", Static).update("Source: none configured and no snapshots")
            self.query_one("#tt-strip", Static).update("")
            if self.loaded:
                self.query_one("#tt-detail", Static).update("Nothing to travel through yet: no snapshot anywhere.")
            return
        n = len(self.sources)
        self.query_one("#tt-source", Static).update(
            f"Source {self.source_index + 1}/{n}: {short_source(source)}   ([ ] other source · ← → day)"
        )
        marks = days_with_snapshots(self.entries, source, self.tz)
        self.query_one("#tt-strip", Static).update(self._strip(marks))
        self.point = point_in_time(self.entries, source, self.moment(self.day), self.checks)
        self.query_one("#tt-detail", Static).update(plain(point_text(self.point, self.day, self.today)))

    def _strip(self, marks: dict[date, int]) -> Text:
        """The calendar strip: as many days as fit, the selected one in the middle, each with
        its number of snapshots of this source; today is the last day shown."""
        assert self.day is not None
        width = max(self.size.width - 2, CELL * 7)
        count = max(7, width // CELL)
        start = self.day - timedelta(days=count // 2)
        if start + timedelta(days=count - 1) > self.today:  # no empty future days
            start = self.today - timedelta(days=count - 1)
        days = [start + timedelta(days=i) for i in range(count)]
        head, top, bottom = Text(), Text(), Text()
        head.append(
            f"{days[0]:%b %Y}" + (f" – {days[-1]:%b %Y}" if days[-1].month != days[0].month else ""), style="bold"
        )
        for d in days:
            selected = d == self.day
            style = "reverse bold" if selected else ("dim" if d > self.today else "")
            label = ("Today" if d == self.today else f"{d:%a %d}").center(CELL - 1)
            n = marks.get(d, 0)
            mark = (f"● {n}" if n else "·").center(CELL - 1)
            top.append(label, style=style)
            top.append(" ")
            bottom.append(mark, style=style)
            bottom.append(" ")
        return Text("\n").join([head, top, bottom])

    # -- actions --------------------------------------------------------------------------

    def action_day(self, step: int) -> None:
        if self.day is None:
            return
        day = self.day + timedelta(days=step)
        if day > self.today:
            self.notify("that is in the future: the newest point is today", severity="warning")
            day = self.today
        self.day = day
        self._draw()

    def _snapshot_days(self) -> list[date]:
        if self.source is None:
            return []
        return sorted(days_with_snapshots(self.entries, self.source, self.tz))

    def action_snapshot(self, step: int) -> None:
        days = self._snapshot_days()
        if self.day is None or not days:
            self.notify("this source has no snapshot", severity="warning")
            return
        found = [d for d in days if d > self.day] if step > 0 else [d for d in days if d < self.day]
        if not found:
            self.notify("no later snapshot" if step > 0 else "no earlier snapshot", severity="warning")
            return
        self.day = found[0] if step > 0 else found[-1]
        self._draw()

    def action_first(self) -> None:
        days = self._snapshot_days()
        if not days:
            self.notify("this source has no snapshot", severity="warning")
            return
        self.day = days[0]
        self._draw()

    def action_today(self) -> None:
        self.day = self.today
        self._draw()

    def action_source(self, step: int) -> None:
        if not self.sources:
            return
        self.source_index = (self.source_index + step) % len(self.sources)
        self._draw()

    async def action_restore(self) -> None:
        pit = self.point
        if pit is None or pit.snapshot is None:
            self.notify("no snapshot of this source was current then: nothing to restore from", severity="warning")
            return
        from screens.restore_wizard import RestoreWizardScreen

        source, snapshot_id = pit.source, pit.snapshot.id
        await self.app.switch_mode("restore")
        while len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        wizard = self.app.screen
        if isinstance(wizard, RestoreWizardScreen):
            why = wizard.start_from(source, snapshot_id)
            if why:
                wizard.notify(why, severity="warning")
