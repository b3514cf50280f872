"""Restore wizard: what -> which point -> (which files or tables) -> where -> preflight ->
typed confirmation (only when live data is overwritten) -> live progress -> validation.

Esc goes back one step from anywhere before the restore starts. The restore itself runs
as engine jobs, so closing the console (or losing the SSH session) does not stop it.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import datetime

from typing import cast
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import ContentSwitcher, DataTable, Header, Input, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from core.jobs.api import Job, JobState
from core.restore.preflight import Feasibility, Plan, Preflight, feasibility, preflight
from core.service import Snapshot
from core.sources.postgres import names
from core.text import shown
from screens.footer import KeyFooter
from screens.base import (
    FitTable,
    ConsoleScreen,
    StopAtEndsOptionList,
    bar,
    human_bytes,
    human_duration,
    progress_fraction,
    short_time,
)
from screens.messages import DataLoaded, LoadFailed

WHAT = (
    ("platform", "Whole platform: every source of one backup set"),
    ("source", "One source, whole"),
    ("files", "Some files or folders of a source"),
    ("tables", "Some tables of the database"),
)


class RestoreWizardScreen(ConsoleScreen):
    MUTATING = frozenset({"start"})
    STEPS = ("what", "source", "point", "select", "where", "preflight", "confirm", "progress", "result")
    BINDINGS = [
        Binding("escape", "step_back", "Back", id="wizard.back", tooltip="Back one step"),
        Binding("enter", "next", "Next", show=False, id="wizard.next", tooltip="Take the highlighted choice"),
        Binding(
            "space",
            "toggle_mark",
            "Select",
            show=False,
            id="wizard.toggle",
            tooltip="Select or unselect the highlighted file or table",
        ),
        Binding("ctrl+n", "new", "New restore", id="wizard.new", tooltip="Start over"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.plan = Plan()
        self.step = "what"
        self.history: list[tuple[str, Plan]] = []
        self.snapshots: list[Snapshot] = []
        self.preflight: Preflight | None = None
        self.job_ids: list[str] = []
        self.marked: set[str] = set()
        self.result_ok: bool | None = None
        self.started = False
        self._prefill: tuple[str, str] | None = None  # (source, snapshot id) from time travel

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", markup=False, id="wizard-crumbs")
        with ContentSwitcher(initial="what", id="wizard"):
            with Vertical(id="what"):
                yield Static("What do you want to restore?", classes="question")
                yield StopAtEndsOptionList(*(Option(text, id=key) for key, text in WHAT), id="what-list")
                yield Static("checking whether a restore can start…", markup=False, id="what-feasibility")
            with Vertical(id="source"):
                yield Static("Which source?", classes="question")
                yield StopAtEndsOptionList(id="source-list")
            with Vertical(id="point"):
                yield Static("Which point in time? Pick a snapshot.", classes="question", id="point-question")
                yield FitTable(
                    id="point-table",
                    cursor_type="row",
                    zebra_stripes=True,
                    priorities={"source": 2, "type": 3, "size": 2, "files": 3},
                )
                yield Input(placeholder="or a time inside the PITR window: YYYY-MM-DD HH:MM:SS+00:00", id="point-time")
            with Vertical(id="select"):
                yield Static(
                    "Select with Space, then Enter. Nothing selected: the highlighted one.",
                    classes="question",
                    id="select-question",
                )
                yield FitTable(
                    id="select-table", cursor_type="row", zebra_stripes=True, flex="name", priorities={"size": 2}
                )
            with Vertical(id="where"):
                yield Static("Where to?", classes="question")
                yield StopAtEndsOptionList(id="where-list")
                yield Input(placeholder="alternate folder or database name", id="where-input")
            with Vertical(id="preflight"):
                yield Static("Preflight", classes="question")
                yield Static("checking…", markup=False, id="preflight-text")
                yield Static("", markup=False, id="preflight-hint")
            with Vertical(id="confirm"):
                yield Static("", classes="question", id="confirm-question")
                yield Input(id="confirm-input")
            with Vertical(id="progress"):
                yield Static("Restoring…", classes="question", id="progress-title")
                yield ProgressBar(total=100, id="progress-bar")
                yield Static("", markup=False, id="progress-text")
            with Vertical(id="result"):
                yield Static("", markup=False, id="result-text")
        yield KeyFooter()

    def on_mount(self) -> None:
        pt = self.query_one("#point-table", DataTable)
        for label, key in (
            ("Id", "id"),
            ("Time", "time"),
            ("Source", "source"),
            ("Type", "type"),
            ("Size", "size"),
            ("Files", "files"),
        ):
            pt.add_column(label, key=key)
        st = self.query_one("#select-table", DataTable)
        for label, key in (("", "mark"), ("Path or table", "name"), ("Size or rows", "size")):
            st.add_column(label, key=key)
        self.query_one("#point-time", Input).display = False
        self.query_one("#where-input", Input).display = False
        self._load()
        self._check_feasibility()
        self._show("what")

    def refresh_data(self) -> None:
        if self.step in ("what", "source", "point"):
            self._load()
        if self.step == "what":
            self._check_feasibility()

    @work(exclusive=True, group="wizard-load", exit_on_error=False)
    async def _load(self) -> None:
        svc = self.console.service
        try:
            snaps, _ = await svc.snapshots()
        except Exception as exc:
            self.post_message(LoadFailed("catalog", str(exc)))
            return
        window = None
        if self.console.config.database.enabled:
            try:
                window = (await svc.database_status()).get("recovery_window")
            except Exception:
                window = None
        self.post_message(DataLoaded("wizard-catalog", (snaps, window)))

    @work(exclusive=True, group="wizard-feasibility", exit_on_error=False)
    async def _check_feasibility(self) -> None:
        self.post_message(
            DataLoaded(
                "feasibility",
                await feasibility(
                    self.console.service,
                    read_only=self.console.read_only,
                    engine_connected=self.console.engine is not None,
                ),
            )
        )

    def on_load_failed(self, message: LoadFailed) -> None:
        self.notify(f"cannot read the {message.what}: {message.error}", severity="error")

    def on_data_loaded(self, message: DataLoaded) -> None:
        if message.what == "wizard-catalog":
            snaps, self.pitr_window = cast("tuple[list[Snapshot], dict | None]", message.data)  # as _load posts it
            self.snapshots = list(reversed(snaps))
            if self._prefill is not None:
                self._apply_prefill(*self._prefill)
        elif message.what == "feasibility":
            self._show_feasibility(message.data)  # type: ignore[arg-type]
        elif message.what == "select":
            self._fill_select(message.data)  # type: ignore[arg-type]
        elif message.what == "preflight":
            self._preflight_done(message.data)  # type: ignore[arg-type]
        elif message.what == "validation":
            self._show_result(message.data)  # type: ignore[arg-type]

    pitr_window: dict | None = None
    feasible: Feasibility | None = None

    def _show_feasibility(self, f: Feasibility) -> None:
        """On the first step, not after six: what stops a restore now, and what limits one."""
        self.feasible = f
        lines = [f"✘ {b}" for b in f.blockers] + [f"⚠ {n}" for n in f.notes]
        self.query_one("#what-feasibility", Static).update(
            "\n".join(lines) if lines else "✔ a restore can start: engine connected, repository free"
        )

    # -- step machinery -------------------------------------------------------------------

    def _show(self, step: str) -> None:
        self.step = step
        self.query_one("#wizard", ContentSwitcher).current = step
        p = self.plan
        crumbs = [f"What: {dict(WHAT).get(p.what, '…').split(':')[0]}" if p.what else "What: …"]
        if p.source:
            crumbs.append(f"Source: {p.source}")
        if p.snapshots or p.to_time:
            crumbs.append("Point: " + (p.to_time or ", ".join(s[:8] for s in p.snapshots)))
        if p.selection:
            crumbs.append(f"{len(p.selection)} selected")
        if p.where:
            crumbs.append("Where: " + ("original place" if p.where == "original" else p.target))
        self.query_one("#wizard-crumbs", Static).update(f"Restore wizard — step: {step}   " + " › ".join(crumbs))
        focus = {
            "what": "#what-list",
            "source": "#source-list",
            "point": "#point-table",
            "select": "#select-table",
            "where": "#where-list",
            "confirm": "#confirm-input",
        }.get(step)
        if focus:
            self.query_one(focus).focus()
        else:
            self.set_focus(None)  # a field of an earlier step must not take this step's Enter
        self.refresh_bindings()

    def _go(self, step: str, plan: Plan) -> None:
        self.history.append((self.step, self.plan))
        self.plan = plan
        getattr(self, f"_enter_{step}", lambda: None)()
        self._show(step)

    def action_step_back(self) -> None:
        if self.step in ("progress", "result") or self.started:
            self.app.switch_mode("dashboard") if self.step == "result" else self.notify(
                "the restore is running in the engine; follow it on the Jobs screen (j)"
            )
            return
        if not self.history:
            self.app.switch_mode("dashboard")
            return
        step, plan = self.history.pop()
        self.plan = plan
        self._show(step)

    def begin_at(self, snapshot_ids: tuple[str, ...], source: str) -> None:
        """`:restore latest` or `:restore ID`: the wizard at "where to?", the point chosen
        (a whole backup set when core resolved several snapshots); Esc goes back to the start."""
        self.action_new()
        if len(snapshot_ids) > 1:
            plan = Plan(what="platform", snapshots=snapshot_ids)
        else:
            plan = Plan(what="source", source=source, snapshots=snapshot_ids)
        self._go("where", plan)

    def action_new(self) -> None:
        if self.step == "progress" and self.result_ok is None:
            self.notify("a restore is running; it continues in the engine", severity="warning")
        self.plan, self.history, self.preflight, self.job_ids = Plan(), [], None, []
        self.marked, self.result_ok, self.started = set(), None, False
        self._load()
        self._check_feasibility()
        self._show("what")

    def start_from(self, source: str, snapshot_id: str) -> str | None:
        """Time travel's "restore from here": start over with one source, whole, at that
        snapshot, and stop at "Where to?" (every earlier step filled in, Esc goes back
        through them). Returns why not, or None."""
        if self.started and self.result_ok is None:
            return "a restore is running in the wizard (it goes on in the engine); Ctrl+N there starts another"
        self._prefill = (source, snapshot_id)
        if self.is_mounted:
            self.action_new()  # reloads the catalog; the prefill applies when it arrives
        return None

    def _apply_prefill(self, source: str, snapshot_id: str) -> None:
        self._prefill = None
        self.plan, self.history = Plan(), []
        self._go("source", Plan(what="source"))
        self._go("point", Plan(what="source", source=source))
        t = self.query_one("#point-table", DataTable)
        if snapshot_id not in t.rows:
            # The catalog shows every location; the wizard restores from the primary.
            self.notify(
                f"snapshot {snapshot_id[:8]} is not in the primary location; pick another point, or "
                f"restore it with `axisor-backup restore {snapshot_id[:8]} --from LOCATION`",
                severity="warning",
            )
            return
        t.move_cursor(row=t.get_row_index(snapshot_id))
        self._choose_point()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._choose_option(event.option_list.id or "", event.option.id or "")

    def action_next(self) -> None:
        if self.step in ("what", "source", "where"):
            ol = self.query_one(f"#{self.step}-list", OptionList)
            if ol.highlighted is not None:
                self._choose_option(ol.id or "", ol.get_option_at_index(ol.highlighted).id or "")
        elif self.step == "point":
            self._choose_point()
        elif self.step == "select":
            self._choose_selection()
        elif self.step == "preflight":
            self._after_preflight()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_next()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_mark":
            return self.step == "select"
        return super().check_action(action, parameters)

    # -- what and source --------------------------------------------------------------------

    def _choose_option(self, list_id: str, option: str) -> None:
        if list_id == "what-list":
            plan = Plan(what=option)
            if option == "platform":
                self._go("point", plan)
            elif option == "tables":
                self._go("point", replace(plan, source="database"))
            else:
                self._go("source", plan)
        elif list_id == "source-list":
            self._go("point", replace(self.plan, source=option))
        elif list_id == "where-list":
            if option == "beside":
                db = self.console.config.database.dbname or ""
                self._go("preflight", replace(self.plan, where="beside", target=db))
                return
            if option == "alternate":
                inp = self.query_one("#where-input", Input)
                inp.display = True
                inp.focus()
                return
            self._go("preflight", replace(self.plan, where="original", target=""))

    def _enter_source(self) -> None:
        sources = sorted({s.source for s in self.snapshots})
        if self.plan.what == "files":
            sources = [s for s in sources if s != "database"]
        ol = self.query_one("#source-list", OptionList)
        ol.clear_options()
        ol.add_options([Option(s, id=s) for s in sources] or [Option("no snapshots yet", disabled=True)])
        ol.highlighted = 0 if sources else None

    # -- which point ------------------------------------------------------------------------

    def _candidates(self) -> list[Snapshot]:
        p = self.plan
        if p.what == "platform":
            seen, out = set(), []
            for s in self.snapshots:
                if s.backup_set not in seen:
                    seen.add(s.backup_set)
                    out.append(s)
            return out
        return [
            s
            for s in self.snapshots
            if s.source == p.source and (p.what != "tables" or s.metadata.get("mode") == "logical")
        ]

    def _enter_point(self) -> None:
        t = self.query_one("#point-table", DataTable)
        t.clear()
        for s in self._candidates():
            if self.plan.what == "platform":
                members = [x for x in self.snapshots if x.backup_set == s.backup_set]
                t.add_row(
                    s.backup_set[:8],
                    short_time(s.datetime),
                    f"{len(members)} sources",
                    "set",
                    human_bytes(sum(x.summary.total_bytes for x in members)),
                    str(sum(x.summary.total_files for x in members)),
                    key=s.id,
                )
            else:
                t.add_row(
                    s.short_id,
                    short_time(s.datetime),
                    s.source,
                    s.type,
                    human_bytes(s.summary.total_bytes),
                    str(s.summary.total_files),
                    key=s.id,
                )
        pitr = bool(self.pitr_window) and (
            (self.plan.what == "source" and self.plan.is_database) or self.plan.what == "tables"
        )
        inp = self.query_one("#point-time", Input)
        inp.display = pitr
        q = "Which point in time? Pick a snapshot."
        if pitr:
            w = self.pitr_window or {}
            q += f"\nOr type a time inside the PITR window {w.get('from', '')} .. {w.get('to', '')}."
            if self.plan.what == "tables":
                q += " The tables as of that time land beside the live ones (or, last choice, back in place)."
        self.query_one("#point-question", Static).update(q)

    def _choose_point(self) -> None:
        inp = self.query_one("#point-time", Input)
        if inp.display and inp.has_focus and inp.value.strip():
            try:
                when = datetime.fromisoformat(inp.value.strip())
            except ValueError:
                self.notify(f"not a time: {inp.value!r} (YYYY-MM-DD HH:MM:SS+00:00)", severity="error")
                return
            if when.tzinfo is None:
                self.notify("give the time with its UTC offset, e.g. +00:00", severity="error")
                return
            step = "select" if self.plan.what == "tables" else "where"  # a table as of a time
            self._go(step, replace(self.plan, to_time=when.isoformat(), snapshots=()))
            return
        t = self.query_one("#point-table", DataTable)
        if not t.row_count:
            self.notify("no snapshot to restore from", severity="warning")
            return
        sid = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value or ""
        chosen = next(s for s in self.snapshots if s.id == sid)
        if self.plan.what == "platform":
            ids = tuple(s.id for s in self.snapshots if s.backup_set == chosen.backup_set)
        else:
            ids = (sid,)
        plan = replace(self.plan, snapshots=ids, to_time="")
        self._go("select" if self.plan.what in ("files", "tables") else "where", plan)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.input.id or not event.input.id.startswith(self.step):
            return  # a field of another step
        if event.input.id == "point-time":
            self._choose_point()
        elif event.input.id == "where-input":
            value = event.value.strip()
            if not value:
                self.notify("type a folder or a database name", severity="warning")
                return
            self._go("preflight", replace(self.plan, where="alternate", target=value))
        elif event.input.id == "confirm-input":
            self._confirmed(event.value)

    # -- which files or tables --------------------------------------------------------------

    def _enter_select(self) -> None:
        self.marked = set()
        self.query_one("#select-table", DataTable).clear()
        self._load_select()

    @work(exclusive=True, group="wizard-select", exit_on_error=False)
    async def _load_select(self) -> None:
        if self.plan.what == "tables" and self.plan.to_time:
            # A table as of a time: the live database's tables (the recovery finds them at T).
            try:
                tables = await self.console.service.database_tables()
            except Exception as exc:
                self.post_message(LoadFailed("tables", str(exc)))
                return
            self.post_message(DataLoaded("select", [(t, "live table") for t in tables]))
            return
        snap = next(s for s in self.snapshots if s.id == self.plan.snapshots[0])
        if self.plan.what == "tables":
            # Names as SQL identifiers (names.key): what the restore parses back exactly.
            rows = [(name, f"{count} rows") for name, count in sorted(names.metadata_tables(snap.metadata).items())]
        else:
            try:
                items = await self.console.service.ls(snap.id)
            except Exception as exc:
                self.post_message(LoadFailed("files", str(exc)))
                return
            rows = [(p, human_bytes(n.size) if n.type == "file" else n.type) for p, n in items]
        self.post_message(DataLoaded("select", rows))

    def _fill_select(self, rows: list[tuple[str, str]]) -> None:
        t = self.query_one("#select-table", DataTable)
        t.clear()
        for name, size in rows:
            t.add_row("[ ]", name, size, key=name)

    def action_toggle_mark(self) -> None:
        t = self.query_one("#select-table", DataTable)
        if not t.row_count:
            return
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value or ""
        self.marked ^= {key}
        t.update_cell(key, "mark", "[x]" if key in self.marked else "[ ]")
        t.action_cursor_down()

    def _choose_selection(self) -> None:
        t = self.query_one("#select-table", DataTable)
        chosen = tuple(sorted(self.marked))
        if not chosen and t.row_count:
            chosen = (t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value or "",)
        if not chosen:
            return
        self._go("where", replace(self.plan, selection=chosen))

    # -- where ----------------------------------------------------------------------------

    def _enter_where(self) -> None:
        ol = self.query_one("#where-list", OptionList)
        ol.clear_options()
        inp = self.query_one("#where-input", Input)
        inp.display = False
        inp.value = ""
        if self.plan.to_time and self.plan.what == "tables":
            db = self.console.config.database.dbname or "the configured database"
            # The safe choice first and under the cursor; in place last, behind a separator
            # (preflight asks for the typed confirmation).
            ol.add_options(
                [
                    Option(f"Beside the live tables in {db}, each as NAME_at_HHMM (nothing is replaced)", id="beside"),
                    None,
                    Option(
                        f"In place in {db}, after a safety snapshot of those tables: REPLACES their rows", id="original"
                    ),
                ]
            )
            ol.highlighted = 0
            return
        if self.plan.to_time:
            # Point-in-time recovery builds a new cluster; it never replaces the live one.
            ol.add_options(
                [Option("A new data directory (a separate PostgreSQL cluster, started on a free port)", id="alternate")]
            )
            inp.placeholder = "new data directory, e.g. /var/tmp/pitr"
            ol.highlighted = 0
            return
        if self.plan.is_database:
            db = self.console.config.database.dbname or "the configured database"
            # The safe choice first and under the cursor; the destructive one last, behind a
            # separator, and the list does not wrap: no single key lands on it by accident.
            ol.add_options(
                [
                    Option("Another database (created when missing)", id="alternate"),
                    None,
                    Option(f"Original database ({db}): REPLACES its contents", id="original"),
                ]
            )
            inp.placeholder = "database name on the configured server, e.g. axisor_restored"
        else:
            ol.add_options(
                [
                    Option("Another folder (each file lands at FOLDER + its original path)", id="alternate"),
                    None,
                    Option("Original place: OVERWRITES the live files", id="original"),
                ]
            )
            inp.placeholder = "folder, e.g. /var/tmp/restore"
        ol.highlighted = 0

    # -- preflight ------------------------------------------------------------------------

    def _enter_preflight(self) -> None:
        self.preflight = None
        self.query_one("#preflight-text", Static).update("checking space, permissions and what will be overwritten…")
        self.query_one("#preflight-hint", Static).update("")
        self._run_preflight(self.plan)

    @work(exclusive=True, group="wizard-preflight", exit_on_error=False)
    async def _run_preflight(self, plan: Plan) -> None:
        try:
            pf = await self._compute_preflight(plan)
        except Exception as exc:
            pf = Preflight(lines=(), overwrites=(), problems=(f"preflight failed: {exc}",), safety="", confirm_word="")
        self.post_message(DataLoaded("preflight", pf))

    async def _compute_preflight(self, plan: Plan) -> Preflight:
        return await preflight(self.console.service, plan, self.snapshots, self.console.config.database.dbname)

    def _preflight_done(self, pf: Preflight) -> None:
        self.preflight = pf
        text = "\n".join(pf.lines)
        if pf.problems:
            text += "\n\n✘ cannot start:\n" + "\n".join(f"  {p}" for p in pf.problems)
        self.query_one("#preflight-text", Static).update(text)
        self.query_one("#preflight-hint", Static).update(
            "Esc goes back."
            if pf.problems
            else (
                "Enter continues to the confirmation; Esc goes back."
                if pf.confirm_word
                else "Enter starts the restore; Esc goes back."
            )
        )

    def _after_preflight(self) -> None:
        pf = self.preflight
        if pf is None or pf.problems:
            return
        if self.console.read_only:
            self.notify("read-only console: restores are disabled", severity="warning")
            return
        if pf.confirm_word:
            self.query_one("#confirm-question", Static).update(
                f"This overwrites live data ({len(pf.overwrites)} item(s)).\n"
                f"Type  {pf.confirm_word}  and press Enter to restore. Esc goes back."
            )
            self.query_one("#confirm-input", Input).value = ""
            self._go("confirm", self.plan)
        else:
            self.action_start()

    def _confirmed(self, typed: str) -> None:
        pf = self.preflight
        if pf is None:
            return
        if typed.strip() != pf.confirm_word:
            self.notify(f"that is not {pf.confirm_word!r}; nothing was started", severity="error")
            return
        self.action_start()

    # -- run and validate -------------------------------------------------------------------

    def action_start(self) -> None:
        if self.preflight is None or self.started:
            return
        self.started = True
        self._go("progress", self.plan)
        self._run(self.preflight)

    @work(exclusive=True, group="wizard-run", exit_on_error=False)
    async def _run(self, pf: Preflight) -> None:
        engine = self.console.engine
        finished: list[Job] = []
        for kind, params in pf.jobs:
            job = await self.console.submit(kind, params)
            if job is None:
                break
            self.job_ids.append(job.id)
            self.job_updated(job)
            assert engine is not None
            done = await engine.wait(job.id)
            self.console.jobs[done.id] = done
            finished.append(done)
            if done.state != JobState.COMPLETED:
                break
        checks = (
            await asyncio.to_thread(_validate_files, pf.expected)
            if all(j.state == JobState.COMPLETED for j in finished) and finished
            else []
        )
        self.post_message(DataLoaded("validation", (finished, checks, len(pf.jobs))))

    def job_updated(self, job: Job) -> None:
        if job.id not in self.job_ids or self.step != "progress":
            return
        frac = progress_fraction(job)
        pbar = self.query_one("#progress-bar", ProgressBar)
        if frac is not None:
            pbar.update(total=100, progress=frac * 100)
        pr = job.progress
        n = self.job_ids.index(job.id) + 1
        total = len(self.preflight.jobs) if self.preflight else n
        text = f"job {n} of {total}: {job.kind} {job.id} — {job.state.value}"
        if pr:
            text += (
                f"\n{pr.phase}: {human_bytes(pr.bytes_done)}"
                + (f" of {human_bytes(pr.bytes_total)}" if pr.bytes_total else "")
                + f", {pr.files_done} files · {human_bytes(pr.rate)}/s · ETA {human_duration(pr.eta_seconds)}"
                + f"\n{bar(frac, 30)}"
            )
        self.query_one("#progress-text", Static).update(text)

    def _show_result(self, data: tuple[list[Job], list[str], int]) -> None:
        finished, checks, planned = data
        lines: list[str] = []
        ok = len(finished) == planned and all(j.state == JobState.COMPLETED for j in finished)
        for j in finished:
            mark = "✔" if j.state == JobState.COMPLETED else "✘"
            lines.append(f"{mark} {j.kind} job {j.id}: {j.state.value}" + (f" — {j.error}" if j.error else ""))
            r = j.result or {}
            if j.kind == "restore" and (r.get("mode") == "in place" or "base_snapshot" in r):
                lines += table_at_time_lines(r)
                ok = ok and r.get("ok", True)
            elif j.kind == "restore" and "tables" in r:
                bad = [t for t in r["tables"] if not t.get("ok")]
                lines.append(f"   row counts: {len(r['tables']) - len(bad)} of {len(r['tables'])} tables match")
                for t in bad[:8]:
                    lines.append(
                        f"   ✘ MISMATCH {t.get('table')}: expected {t.get('expected')}, found {t.get('actual')}"
                    )
                ok = ok and r.get("ok", True)
                missed = r.get("not_restored")
                if missed is not None:  # what the restore could not carry: a warning, named (docs/CLI.md)
                    lines.append("   not restored: nothing" if not missed else f"   ⚠ not restored ({len(missed)}):")
                    lines.extend(f"     {shown(str(n.get('what')))}: {shown(str(n.get('why')))}" for n in missed[:8])
                    if len(missed) > 8:
                        lines.append(f"     ... and {len(missed) - 8} more (the job's result lists them all)")
            for pf in (r.get("partial") or [])[:8]:  # a partial restore (exit 23): name each file
                where = (
                    "; ".join(
                        f"intact copy: location {c['location']}, snapshot {str(c['snapshot'])[:8]}"
                        for c in pf.get("intact_copies") or []
                    )
                    or "no intact copy found elsewhere"
                )
                lines.append(f"   ✘ PARTIAL {pf.get('path')}: {pf.get('missing_bytes')} bytes missing ({where})")
            if r.get("partial_count", 0) > 8:
                lines.append(f"   ... and {r['partial_count'] - 8} more partial files")
            if r.get("safety_snapshot"):
                lines.append(f"   safety snapshot {str(r['safety_snapshot'])[:8]} holds the previous state")
        expected = len(self.preflight.expected) if self.preflight else 0
        if expected:
            lines.append(f"files: {expected - len(checks)} of {expected} restored with the snapshot's sizes")
            lines.extend(f"   ✘ {c}" for c in checks[:8])
            ok = ok and not checks
        self.result_ok = ok
        head = "✔ RESTORE VALIDATED" if ok else "✘ RESTORE FAILED VALIDATION"
        self._go("result", self.plan)
        self.query_one("#result-text", Static).update(
            head + "\n\n" + "\n".join(lines) + "\n\nCtrl+N starts another restore; Esc returns to the dashboard."
        )


def _validate_files(expected: tuple[tuple[str, int], ...]) -> list[str]:
    """Each restored file exists with the snapshot's size; the list of those that do not."""
    bad = []
    for path, size in expected:
        try:
            st = os.lstat(path)
        except OSError as exc:
            bad.append(f"{path}: {exc.strerror}")
            continue
        if st.st_size != size:
            bad.append(f"{path}: {st.st_size} bytes, the snapshot has {size}")
    return bad


def table_at_time_lines(r: dict) -> list[str]:
    """A table-as-of-a-time job's result, per table: copied beside (``validated`` against
    the recovered table), or put back in place (rows deleted, updated, inserted, and the
    rollback). Each table is marked by its own ``validated``: these rows carry no ``ok``."""
    lines: list[str] = []
    in_place = r.get("mode") == "in place"
    for t in r.get("tables") or []:
        verdict = "validated" if t.get("validated") else f"✘ NOT VALID: {shown(str(t.get('problem')))}"
        if in_place:
            lines.append(
                f"   {shown(str(t.get('table')))}: {t.get('deleted')} deleted, {t.get('updated')} updated, "
                f"{t.get('inserted')} inserted, {verdict}"
            )
        else:
            lines.append(
                f"   {shown(str(t.get('table')))} as of {shown(str(r.get('at')))} -> "
                f"{shown(str(t.get('copy')))}: {t.get('rows')} rows, {verdict}"
            )
    if in_place:
        lines.append(
            f"   safety snapshot {str(r.get('safety_snapshot') or '')[:8]}: "
            f"axisor-backup rollback {r.get('restore_id')} puts the tables back"
        )
    elif r.get("from_logical_snapshot"):
        lines.append(f"   from the logical snapshot {float(r.get('before_seconds') or 0):.0f} s before that time")
    return lines
