"""Dashboard: is everything protected, what runs, what failed — at one glance."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Header, Static

from core.jobs.api import Job
from core.health.shrink import suspicious_shrinks
from core.jobs.rto import describe
from core.jobs.status import Health
from core.jobs.status import health as evaluate_health
from screens.footer import KeyFooter
from screens.base import (
    plain,
    FitTable,
    ConsoleScreen,
    bar,
    compact_time,
    done_text,
    short_source,
    human_age,
    human_bytes,
    human_duration,
    job_summary,
    progress_fraction,
)
from core.locations.sites import PRIMARY_NAME
from core.text import shown
from screens.messages import DataLoaded, LoadFailed
from screens.plan import next_run, rpo_for, source_names


class DashboardScreen(ConsoleScreen):
    MUTATING = frozenset({"backup_now"})
    BINDINGS = [
        Binding(
            "b",
            "backup_now",
            "Back up now",
            id="dashboard.backup",
            tooltip="Start an incremental backup of every source",
        ),
        Binding("f5,ctrl+r", "reload", "Refresh", id="dashboard.refresh", tooltip="Reload the catalog"),
        Binding("o", "open_job", "Job detail", id="dashboard.job", tooltip="Open the selected running job"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="dash"):
            yield Static("Sources", classes="section-title")
            yield FitTable(
                id="sources",
                cursor_type="row",
                zebra_stripes=True,
                flex="locations",
                priorities={"pitr": 2, "next": 3, "locations": 3, "newest": 4},
            )
            yield Static("Running jobs", classes="section-title")
            yield FitTable(
                id="running", cursor_type="row", flex="phase", priorities={"done": 2, "rate": 2, "eta": 2, "phase": 3}
            )
            yield Static("", markup=False, id="alerts")
        yield KeyFooter()

    def on_mount(self) -> None:
        src = self.query_one("#sources", DataTable)
        columns = [
            ("Source", "source"),
            ("Newest", "newest"),
            ("Age/RPO", "age"),
            ("PITR", "pitr"),
            ("Next run", "next"),
            ("Verified", "verified"),
            ("Held by", "locations"),
        ]
        if not self.console.config.database.enabled:
            columns.remove(("PITR", "pitr"))
        self.columns = [key for _, key in columns]
        for label, key in columns:
            src.add_column(label, key=key)
        run = self.query_one("#running", DataTable)
        for label, key in (
            ("Job", "job"),
            ("Progress", "progress"),
            ("Done", "done"),
            ("Rate", "rate"),
            ("ETA", "eta"),
            ("Now", "phase"),
        ):
            run.add_column(label, key=key)
        self.refresh_data()
        self.set_interval(30, self.refresh_data)  # ages move even when nothing happens

    def refresh_data(self) -> None:
        self._load()
        self._render_running()

    @work(exclusive=True, group="dashboard", exit_on_error=False)
    async def _load(self) -> None:
        svc = self.console.service
        try:
            snaps, damaged = await svc.snapshots()
        except Exception as exc:
            self.post_message(LoadFailed("catalog", str(exc)))
            return
        pitr = None
        if self.console.config.database.enabled:
            try:
                st = await svc.database_status()
                pitr = st.get("recovery_window")
            except Exception as exc:
                pitr = {"error": str(exc)}
        health: Health | Exception  # an exception is shown as the health being unknown
        try:
            health = await evaluate_health(self.console.config, now=self.console.now())
        except Exception as exc:  # a state folder that cannot be read: said, not hidden
            health = exc
        self.post_message(
            DataLoaded(
                "dashboard",
                {"snaps": snaps, "damaged": damaged, "pitr": pitr, "holders": await _holders(svc), "health": health},
            )
        )

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one("#alerts", Static).update(plain(f"⚠ cannot read the {message.what}: {message.error}"))

    def on_data_loaded(self, message: DataLoaded) -> None:
        data = message.data
        assert isinstance(data, dict)
        cfg = self.console.config
        now = self.console.now()
        holders: dict[str, list[str]] = data["holders"]
        newest: dict = {}
        for s in data["snaps"]:
            newest[s.source] = s  # manifests are listed oldest first
        health = data["health"]
        checks = {} if isinstance(health, Exception) else {c.name: c for c in health.checks}
        verified = _verified(health.verify) if not isinstance(health, Exception) else "unknown"
        alerts: list[str] = []
        table = self.query_one("#sources", DataTable)
        names = source_names(cfg)
        with self.app.batch_update():
            for name in names:
                s = newest.get(name)
                rpo = rpo_for(cfg, name)
                check = checks.get(f"source {name}")
                if s is None:
                    age, newest_text = "✘ NO BACKUP", "-"
                else:
                    # The mark is the health check's verdict (status's), the figure the catalog's.
                    mark = _MARK[check.level] if check else "?"
                    if check and check.stale:
                        mark += " LATE"
                    age = (
                        f"{mark} {human_age(now - s.datetime).removesuffix(' ago')}/"
                        f"{human_duration(rpo.total_seconds()).removesuffix('00m')}"
                    )
                    newest_text = compact_time(s.datetime)
                pitr = "-"
                if name == "database" and data["pitr"]:
                    w = data["pitr"]
                    pitr = f"{w['from'][:16]}..{w['to'][11:16]}" if "from" in w else "unknown"
                nxt = next_run(cfg, now, name)
                values = {
                    "source": short_source(name),
                    "newest": newest_text,
                    "age": age,
                    "pitr": pitr,
                    "next": compact_time(nxt) if nxt else "off",
                    "verified": verified,
                    "locations": ", ".join(holders.get(s.id, [PRIMARY_NAME])) if s else "-",
                }
                row = [values[c] for c in self.columns]
                if name in table.rows:
                    for col, value in zip(self.columns, row):
                        table.update_cell(name, col, value)
                else:
                    table.add_row(*row, key=name)
            for key in [k for k in table.rows if k.value not in names]:
                table.remove_row(key)
        shrinks = suspicious_shrinks(data["snaps"], cfg.objectives.suspicious_shrink)
        for name, s in newest.items():
            if s.id in shrinks and f"shrink {name}" not in checks:
                # The catalog knows of a shrink the job history does not (a backup from elsewhere).
                sh = shrinks[s.id]
                alerts.append(
                    f"⚠ {name}: suspicious shrink, {sh.previous_files} -> {sh.files} files "
                    f"in snapshot {s.short_id} (a wrong mount or a wipe?)"
                )
        for e in data["damaged"]:
            alerts.append(f"✘ damaged snapshot manifest {e.key}: {e.reason}")
        self.query_one("#alerts", Static).update(_health_text(health, alerts))

    def job_updated(self, job: Job) -> None:
        self._render_running()
        if job.state.finished:
            self._load()

    def _render_running(self) -> None:
        table = self.query_one("#running", DataTable)
        running = {j.id: j for j in self.console.running_jobs()}
        with self.app.batch_update():
            for key in [k for k in table.rows if k.value not in running]:
                table.remove_row(key)
            for j in running.values():
                pr = j.progress
                row = (
                    f"{job_summary(j)} ({j.origin})",
                    bar(progress_fraction(j)),
                    done_text(pr) if pr else "-",
                    f"{human_bytes(pr.rate)}/s" if pr else "-",
                    human_duration(pr.eta_seconds) if pr else "-",
                    # The file or table passing: a name from outside, shown as is (PlainTable).
                    (f"{pr.phase}: {pr.current}" if pr.current else pr.phase) if pr else j.state.value,
                )
                if j.id in table.rows:
                    for col, value in zip(("job", "progress", "done", "rate", "eta", "phase"), row):
                        table.update_cell(j.id, col, value)
                else:
                    table.add_row(*row, key=j.id)

    def action_reload(self) -> None:
        self.refresh_data()

    def action_backup_now(self) -> None:
        self._submit_backup()

    @work(group="submit", exit_on_error=False)
    async def _submit_backup(self) -> None:
        job = await self.console.submit("backup", {"type": "incremental"})
        if job:
            self.notify(f"backup job {job.id} submitted")

    def action_open_job(self) -> None:
        table = self.query_one("#running", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is None:  # never: each row is added under its job's id
                return
            from screens.job_detail import JobDetailScreen

            self.app.push_screen(JobDetailScreen(key))


_MARK = {"ok": "✔", "warning": "⚠", "critical": "✘"}
MAX_FINDINGS = 4

# What fixes a finding, in this console's keys (the CLI words the same ids in `status`).
_FIX_KEYS = {
    "backup": "b: back up now",
    "verify": "v: Verify screen",
    "repair": "v: Verify screen; then `axisor-backup repair` (docs/OPERATIONS.md)",
    "daemon": "start the daemon: `axisor-backup daemon`",
    "acknowledge": "look at the snapshot, then `axisor-backup acknowledge`",
    "drill": "x: Drills screen, n: run one",
    "restore-test": "run `axisor-backup restore-test` again once the cause is fixed",
}


def _health_text(health: Health | Exception, catalog_alerts: list[str]) -> str:
    """The health `axisor-backup status` reports, finding by finding with what fixes it,
    then what only the catalog read saw."""
    if isinstance(health, Exception):
        lines = [f"Health: unknown: cannot read the job history: {shown(str(health))}"]
    else:
        findings = [c for c in health.checks if c.level != "ok"]
        lines = [f"Health: {health.level.upper()} ({len(health.checks)} checks, as `axisor-backup status`)"]
        if not findings:
            lines[0] += " — every source within its RPO"
        # The worst first; what does not fit at 80x24 is counted, never dropped silently.
        findings.sort(key=lambda c: c.level != "critical")
        for c in findings[:MAX_FINDINGS]:
            fix = _FIX_KEYS.get((c.fix or "").partition(" ")[0])
            # Messages quote errors, and errors quote file names: escaped before the terminal.
            lines.append(f"{_MARK[c.level]} {shown(c.name)}: {shown(c.message)}" + (f" [{fix}]" if fix else ""))
        if len(findings) > MAX_FINDINGS:
            lines.append(f"… {len(findings) - MAX_FINDINGS} more: `axisor-backup status` lists them")
        lines += _forecast_lines(health)
    return "\n".join(lines + [shown(a) for a in catalog_alerts])


def _forecast_lines(health: Health) -> list[str]:
    """The RTO forecasts `status` shows, the measured ones; said only once a drill has
    measured something (`status` lists the scenarios with no measurement yet)."""
    measured = [f for f in health.forecasts if f.measured]
    if not measured:
        return []
    parts = [f"{f.scenario} from {shown(f.location)} {describe(f).removeprefix('forecast ')}" for f in measured]
    unmeasured = len(health.forecasts) - len(measured)
    more = f"; {unmeasured} with no measurement yet" if unmeasured else ""
    return ["RTO forecast: " + "; ".join(parts[:3]) + (f"; … {len(parts) - 3} more" if len(parts) > 3 else "") + more]


def _verified(v) -> str:
    """The verification verdict: only a run that reached its end is one; a cancelled or
    interrupted run, or one that could not run, is named beside it, never taken for damage."""
    if v.state == "never":
        text = "never"
    else:
        text = f"{'✔' if v.state == 'passed' else '✘ DAMAGE'} {compact_time(v.at)}"
    if v.newer:
        text += f" ({'not run' if v.newer == 'could not run' else v.newer})"
    return text


async def _holders(svc) -> dict[str, list[str]]:
    """Snapshot id -> the locations holding it complete, when more than one is configured."""
    if not svc.config.storage.remote_storage:
        return {}
    try:
        catalog = await svc.catalog()
    except Exception:
        return {}
    return {e.snapshot.id: e.holders for e in catalog.entries}
