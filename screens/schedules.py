"""Schedules: each schedule with its next runs; run now, pause and resume."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from core.schedule.model import Schedule
from core.schedule.plan import next_runs
from core.schedule.runner import job_params
from core.schedule.state import ScheduleState, ScheduleStore, store_path
from screens.footer import KeyFooter
from screens.base import ConsoleScreen, FitTable, short_time
from screens.confirm import ConfirmScreen
from screens.messages import DataLoaded, LoadFailed
from screens.plan import schedules

COLUMNS = (("Schedule", "name"), ("What", "what"), ("Cron", "cron"), ("State", "state"), ("Next runs", "next"))


class SchedulesScreen(ConsoleScreen):
    MUTATING = frozenset({"run_now", "pause", "resume"})
    BINDINGS = [
        Binding("n", "run_now", "Run now", id="schedules.run", tooltip="Run the selected schedule's job now"),
        Binding("p", "pause", "Pause", id="schedules.pause", tooltip="Pause the selected schedule (asks first)"),
        Binding("u", "resume", "Resume", id="schedules.resume", tooltip="Resume the selected schedule"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, ScheduleState] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", markup=False, id="schedules-note")
        yield FitTable(
            id="schedules",
            cursor_type="row",
            zebra_stripes=True,
            priorities={"what": 2, "cron": 3},
            flex="what",
            flex_min=14,
        )
        yield KeyFooter()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for label, key in COLUMNS:
            t.add_column(label, key=key)
        t.focus()
        self.refresh_data()

    def refresh_data(self) -> None:
        self._load()

    @work(exclusive=True, group="schedules", exit_on_error=False)
    async def _load(self) -> None:
        try:
            store = await ScheduleStore.open(store_path(self.console.config))
            try:
                states = await store.states()
            finally:
                await store.close()
        except Exception as exc:
            self.post_message(LoadFailed("schedule state", str(exc)))
            states = {}
        self.post_message(DataLoaded("schedules", states))

    def on_load_failed(self, message: LoadFailed) -> None:
        self.notify(f"cannot read the {message.what}: {message.error}", severity="error")

    def on_data_loaded(self, message: DataLoaded) -> None:
        self.states = message.data  # type: ignore[assignment]
        self._draw()

    def _draw(self) -> None:
        cfg = self.console.config
        now = self.console.now()
        t = self.query_one(DataTable)
        with self.app.batch_update():
            for s in schedules(cfg):
                st = self.states.get(s.name)
                state = "⏸ paused" if st and st.paused else "✔ active" if s.enabled else "off (disabled)"
                runs = ", ".join(short_time(r)[5:] for r in next_runs(s, now, 3)) if s.enabled else "-"
                row = (s.name, s.describe(), f"{s.cron} {s.timezone}", state, runs)
                if s.name in t.rows:
                    for (_, col), value in zip(COLUMNS, row):
                        t.update_cell(s.name, col, value)
                else:
                    t.add_row(*row, key=s.name)
        self.query_one("#schedules-note", Static).update(
            "The scheduler runs in the daemon (axisor-backup daemon)."
            if cfg.schedule.enabled
            else "⚠ [schedule] enabled = false: nothing runs on its own. Enable it on the Settings screen (e)."
        )

    def selected(self) -> Schedule | None:
        t = self.query_one(DataTable)
        if not t.row_count:
            return None
        name = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        return next((s for s in schedules(self.console.config) if s.name == name), None)

    def action_run_now(self) -> None:
        s = self.selected()
        if s:
            self._run_now(s)

    @work(group="submit", exit_on_error=False)
    async def _run_now(self, s: Schedule) -> None:
        params = job_params(s)
        if s.task == "backup":
            params["type"] = "incremental" if s.type == "auto" else s.type
        job = await self.console.submit(s.task, params)
        if job:
            self.notify(f"{s.name}: job {job.id} submitted")

    def action_pause(self) -> None:
        s = self.selected()
        if s:

            def answered(yes: bool | None) -> None:
                if yes:
                    self._set_paused(s.name, True)

            self.app.push_screen(
                ConfirmScreen(
                    f"Pause schedule {s.name}?", detail="Runs it would make while paused are not made later."
                ),
                answered,
            )

    def action_resume(self) -> None:
        s = self.selected()
        if s:
            self._set_paused(s.name, False)

    @work(group="pause", exit_on_error=False)
    async def _set_paused(self, name: str, paused: bool) -> None:
        if self.console.read_only:
            return
        self.console.submitted.append(("pause" if paused else "resume", {"schedule": name}))
        store = await ScheduleStore.open(store_path(self.console.config))
        try:
            await store.set_paused(name, paused, self.console.now())
            states = await store.states()
        finally:
            await store.close()
        self.post_message(DataLoaded("schedules", states))
        self.notify(f"schedule {name} {'paused' if paused else 'resumed'}")
