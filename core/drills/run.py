"""Running a disaster-recovery drill: restore into scratch targets, validate, measure, clean up.

Scenarios (``[drills] scenario`` or ``drill --scenario``):

- ``database-loss``: the newest logical database snapshot into a throwaway cluster (or a
  scratch database with ``[drills] scratch = "database"``); with a point in time, PITR
  from the physical base backups and archived WAL into a throwaway data directory that is
  started on a free port.
- ``platform-loss``: the database as above, plus the newest snapshot of every file source
  (application data and configuration) into a scratch folder, each file read back.
- ``location-loss``: platform-loss read from one secondary location only (``--from``, or
  the first ``[[storage.remote_storage]]``); the primary is never opened for reading.
- ``compromised-host``: location-loss from the location a compromised host could not
  destroy (``--from``, else the first secondary): the host's keys are treated as lost, so
  the drill first checks that this location refuses deletes (append-only: core/storage/
  serve.py) and fails when it does not; the report states what survived there, per source.
- ``corrupted-table``: one table (``[drills] table``, else the snapshot's largest) restored
  on its own into a scratch target, its row count and checksum compared with the
  snapshot's; the live table's figures are reported beside them.

Live data is never written: every target is new and private to the drill. Validation is
the exact row counts and row checksums the logical snapshot recorded, every restored file
re-read against its snapshot, and the operator's ``[[drills.checks]]``. RTO is measured
from the start to restored-and-validated (cleanup excluded); RPO is the age of the
newest restorable point at drill time; each is checked against ``[objectives]``. The
scratch targets are removed in a ``finally`` shielded from cancellation, and the removal
itself is a check: a drill that leaves something behind fails.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from core import __version__
from core.config import DRILL_SCENARIOS
from core.drills.checks import Restored, run_checks
from core.drills.forecast import RtoForecast, forecast_rto, measurements, probe_samples, scenario_sizes
from core.drills.objectives import measure_objectives, scenario_rto
from core.drills.report import (
    CheckResult,
    DrillReport,
    RpoResult,
    Step,
    new_drill_id,
    recent_reports,
    store_report,
)
from core.sources.postgres.scratch import Scratch, free_port, server_user
from core.errors import AxisorError, DatabaseError, UsageError
from core.repository.lock import Lock
from core.repository.snapshot import Snapshot
from core.restore.attributes import RestoreOptions
from core.sources.postgres.connection import PgTarget, one_row
from core.storage.backend import innermost

if TYPE_CHECKING:
    from core.service import BackupService

Listener = Callable[[Step | CheckResult], None]
FILE_SCENARIOS = ("platform-loss", "location-loss", "compromised-host")
# Read from a secondary only: the primary is lost, or in an attacker's hands.
SECONDARY_SCENARIOS = ("location-loss", "compromised-host")
FORECAST_HISTORY = 30  # newest stored reports a drill reads for its forecast


@dataclass(frozen=True, slots=True)
class DrillRequest:
    scenario: str = ""  # "": [drills] scenario
    location: str | None = None  # --from
    to_time: datetime | None = None  # PITR target (aware)

    def as_params(self) -> dict:
        return {
            "scenario": self.scenario,
            "from": self.location,
            "to_time": self.to_time.isoformat() if self.to_time else None,
        }

    @classmethod
    def from_params(cls, params: dict) -> DrillRequest:
        to_time = params.get("to_time")
        when = datetime.fromisoformat(str(to_time)) if to_time else None
        if when is not None and when.tzinfo is None:
            when = when.astimezone()
        return cls(str(params.get("scenario") or ""), params.get("from") or None, when)


class _Drill:
    def __init__(
        self,
        svc: BackupService,
        request: DrillRequest,
        listener: Listener | None,
        check_cancelled: Callable[[], None] | None,
        job_id: str | None,
    ) -> None:
        self.svc = svc
        self.config = svc.config
        self.scenario = request.scenario or self.config.drills.scenario
        if self.scenario not in DRILL_SCENARIOS:
            raise UsageError(f"unknown drill scenario {self.scenario!r}; choose one of {', '.join(DRILL_SCENARIOS)}")
        self.request = request
        self.listener = listener or (lambda _item: None)
        self.check_cancelled = check_cancelled or (lambda: None)
        self.job_id = job_id
        self.id = new_drill_id()
        self.started = datetime.now(UTC)
        self.t0 = time.monotonic()
        self.steps: list[Step] = []
        self.checks: list[CheckResult] = []
        self.restored: list[dict] = []
        self.restored_sources: list[str] = []
        self.db_target: PgTarget | None = None  # where the restored database can be queried
        self.db_partial = False
        self.file_roots: dict[str, list[Path]] = {}
        self.window = None
        self.snaps: list[Snapshot] = []
        self.forecast: RtoForecast | None = None
        self.rto_goal: timedelta | None = None  # set by the objective checks
        self.rpo: list[RpoResult] = []
        drills = self.config.drills
        self.scratch = Scratch(self.id, drills.work_dir, None)
        self.location = self._choose_location()

    def _choose_location(self) -> str:
        """Which location the drill reads from; misuse is refused before anything runs."""
        from core.storage.factory import PRIMARY_NAME

        names = self.svc.location_names()
        wanted = self.request.location
        if self.scenario in SECONDARY_SCENARIOS:
            secondaries = names[1:]
            if not secondaries:
                raise UsageError(
                    f"the {self.scenario} drill reads from a secondary location, and none is configured "
                    "([[storage.remote_storage]])"
                )
            wanted = wanted or secondaries[0]
            if wanted == PRIMARY_NAME:
                raise UsageError(
                    f"the {self.scenario} drill rehearses losing the primary: --from must name a "
                    f"secondary location ({', '.join(secondaries)})"
                )
        if wanted and wanted not in names:
            raise UsageError(f"no location {wanted!r}; configured: {', '.join(names)}")
        if self.request.to_time is not None and self.scenario == "corrupted-table":
            raise UsageError("--to-time applies to the database-loss and platform-loss drills")
        return wanted or PRIMARY_NAME

    # -- recording ------------------------------------------------------------------------

    def step(self, name: str, status: str, started: float, detail: str = "") -> Step:
        s = Step(name, status, round(time.monotonic() - started, 3), detail)
        self.steps.append(s)
        self.listener(s)
        return s

    def check(
        self,
        name: str,
        kind: str,
        ok: bool | None,
        detail: str = "",
        expected: Any = None,
        actual: Any = None,
        status: str | None = None,
    ) -> CheckResult:
        c = CheckResult(
            name, kind, status or ("skip" if ok is None else "pass" if ok else "fail"), detail, expected, actual
        )
        self.checks.append(c)
        self.listener(c)
        return c

    async def timed(self, name: str, call: Callable[[], Any]) -> Any:
        self.check_cancelled()
        started = time.monotonic()
        try:
            result = await call()
        except asyncio.CancelledError:
            self.step(name, "failed", started, "cancelled")
            raise
        except AxisorError as exc:
            self.step(name, "failed", started, str(exc))
            raise
        except (psycopg.Error, OSError) as exc:
            self.step(name, "failed", started, f"{type(exc).__name__}: {exc}")
            raise DatabaseError(f"{name}: {exc}") from None
        detail = result[1] if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], str) else ""
        self.step(name, "ok", started, detail)
        return result

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> DrillReport:
        error: str | None = None
        rto: float | None = None
        cancelled: BaseException | None = None
        try:
            await self.timed("open location", self._open_location)
            started = time.monotonic()
            self.forecast = await self._forecast()
            # Reading the history is no part of a recovery: the RTO leaves it out.
            self.t0 += time.monotonic() - started
            if self.scenario == "compromised-host":
                self._what_survived()
            if self.scenario == "corrupted-table":
                await self._corrupted_table()
            else:
                await self._database()
                if self.scenario in FILE_SCENARIOS:
                    await self._files()
                await self.timed("smoke checks", self._smoke_checks)
            rto = time.monotonic() - self.t0
            self._objective_checks(rto)
        except asyncio.CancelledError as exc:
            error, cancelled = "cancelled", exc
        except AxisorError as exc:
            error = str(exc)
        finally:
            started = time.monotonic()
            await asyncio.shield(self.scratch.cleanup())
            self.step(
                "cleanup",
                "failed" if self.scratch.problems else "ok",
                started,
                "; ".join(self.scratch.problems) or f"{len(self.scratch.removed)} scratch targets removed",
            )
            self.check(
                "nothing left behind",
                "cleanup",
                not self.scratch.problems,
                "; ".join(self.scratch.problems) or "every scratch cluster, database and folder removed",
            )
        if rto is None:
            rto = time.monotonic() - self.t0
        report = self._report(rto, error)
        report = await asyncio.shield(self._store(report))
        if cancelled is not None:
            raise cancelled
        return report

    async def _open_location(self) -> tuple[None, str]:
        from core.storage.factory import PRIMARY_NAME

        if self.location != PRIMARY_NAME:
            await self.svc.use_location(self.location)
        self.snaps, _ = await self.svc.snapshots()
        return None, f"{self.location}: {len(self.snaps)} snapshots"

    async def _forecast(self) -> RtoForecast | None:
        """What this drill should take, from the drills before it (core/drills/forecast.py):
        made once the snapshots it will restore are known, recorded in its report so every
        drill checks the forecast (``_history``)."""
        if self.request.to_time is not None:
            return None  # WAL replay: sizes do not predict it (see the module doc)
        objective = scenario_rto(self.config, self.scenario).total_seconds()
        try:
            reports = await self._history(self.location)
        except (AxisorError, OSError) as exc:
            return RtoForecast(
                self.scenario,
                self.location,
                None,
                None,
                None,
                objective,
                (),
                (),
                "",
                f"no forecast: the drill history could not be read ({exc})",
            )
        database = self._wants_database()
        db_snap = self._newest("database", logical=True) if database else None
        files = (
            {
                spec.name: (s.summary.total_bytes if (s := self._newest(spec.name)) else None)
                for spec in self.config.sources()
            }
            if self.scenario in FILE_SCENARIOS
            else {}
        )
        sizes, lacking = scenario_sizes(
            self.scenario, db_snap.summary.total_bytes if db_snap else None, files, database=database
        )
        history = measurements(r.to_dict() for r in reports)
        # The locations' read probes, as `status` reads them (a cache: unreadable means none).
        probes = probe_samples(await asyncio.to_thread(self.svc.location_ops().state.probes))
        return forecast_rto(self.scenario, self.location, sizes, history, objective, lacking, probes=probes)

    async def _history(self, location: str) -> list[DrillReport]:
        """The newest stored reports: where the drill reads from, and for location-loss also
        the primary, where its reports are normally stored (best effort: the primary may be
        the very thing that is gone). Never the primary of a compromised-host drill: whoever
        holds the host's keys can write reports there."""
        from core.storage.factory import PRIMARY_NAME

        async def read(name: str) -> list[DrillReport]:
            repo = (
                await self.svc.repository(load_index=False)
                if name == self.location == PRIMARY_NAME
                else await self.svc.location_ops().sites.repository(name)
            )
            return (await recent_reports(repo, FORECAST_HISTORY))[0]

        found = {r.id: r for r in await read(location)}
        if self.scenario == "location-loss" and location != PRIMARY_NAME:
            try:
                found.update((r.id, r) for r in await read(PRIMARY_NAME))
            except (AxisorError, OSError):
                pass  # the primary is unreachable: the secondary's own reports are the history
        return [found[k] for k in sorted(found)]

    def _what_survived(self) -> None:
        """compromised-host: the location must refuse deletes (what the host's keys could do
        to it), and the report says what is there to restore, per source."""
        refuses = bool(getattr(innermost(self.svc.backend), "append_only", False))
        self.check(
            "location refuses deletes",
            "immutable",
            refuses,
            f"{self.location} is append-only: the host's keys cannot delete what it holds"
            if refuses
            else f"{self.location} accepts deletes: whoever holds the host's keys can prune or delete it "
            "(docs/OPERATIONS.md, Append-only locations)",
            expected="append-only",
            actual="append-only" if refuses else "deletes accepted",
        )
        newest: dict[str, Snapshot] = {}
        for s in self.snaps:
            if "safety" not in s.tags and (s.source not in newest or s.datetime > newest[s.source].datetime):
                newest[s.source] = s
        self.check(
            "what survived",
            "info",
            None,
            f"{len(self.snaps)} snapshots at {self.location}; newest: "
            + (
                ", ".join(f"{src} {s.datetime:%Y-%m-%d %H:%M} ({s.short_id})" for src, s in sorted(newest.items()))
                or "none"
            ),
            status="info",
        )

    def _newest(self, source: str, *, logical: bool = False) -> Snapshot | None:
        found = [
            s
            for s in self.snaps
            if s.source == source
            and "safety" not in s.tags
            and (not logical or (s.metadata or {}).get("mode") == "logical")
        ]
        return max(found, key=lambda s: s.datetime) if found else None

    # -- database ---------------------------------------------------------------------------

    def _wants_database(self) -> bool:
        return self.config.database.enabled or any(s.source == "database" for s in self.snaps)

    async def _database(self) -> None:
        if not self._wants_database():
            if self.scenario == "database-loss":
                raise UsageError(
                    "the database-loss drill needs a database: set [database] enabled = true and take a backup first"
                )
            return
        if self.request.to_time is not None:
            await self._database_pitr()
            return
        snap = self._newest("database", logical=True)
        if snap is None:
            raise UsageError(
                f"location {self.location} holds no logical database snapshot to rehearse with "
                "(with physical backups give --to-time for point-in-time recovery)"
            )
        target = await self._scratch_target(snap)
        report = await self.timed("restore database", lambda: self._restore_logical(snap, target))
        self._database_checks(report[0])
        self.db_target = target
        self.restored_sources.append("database")
        self.restored.append(
            {"source": "database", "snapshot": snap.id, "target": target.describe(), "bytes": snap.summary.total_bytes}
        )

    async def _scratch_target(self, snap: Snapshot) -> PgTarget:
        dbname = str((snap.metadata or {}).get("dbname") or "axisor")
        if self.config.drills.scratch == "database":
            server = PgTarget.from_config(self.config.database)
            target, _ = await self.timed("create scratch database", lambda: self._scratch_db(server))
            return target
        self.scratch.os_user = server_user(self.config.drills.os_user)
        cluster, _ = await self.timed("start throwaway cluster", self._cluster)
        return cluster.target(dbname)

    async def _scratch_db(self, server: PgTarget) -> tuple[PgTarget, str]:
        target = self.scratch.scratch_database(server)
        return target, target.describe()

    async def _cluster(self):
        c = await self.scratch.cluster(self.config.database.pg_bin_dir)
        return c, c.describe()

    async def _restore_logical(self, snap: Snapshot, target: PgTarget, tables: tuple[str, ...] = ()):
        report = await self.svc.restore_database(snap, target.conninfo(), tables=tables)
        mismatched = len(report.mismatches)
        return report, (
            f"snapshot {snap.short_id} into {target.describe()}: {len(report.tables)} tables, "
            f"{report.bytes} bytes" + (f", {mismatched} differ" if mismatched else "")
        )

    def _database_checks(self, report) -> None:
        counts_bad = [t for t in report.tables if t.actual != t.expected]
        self.check(
            "row counts exact",
            "rows",
            not counts_bad,
            f"{len(report.tables)} tables, {sum(t.expected for t in report.tables)} rows"
            if not counts_bad
            else "; ".join(f"{t.table}: {t.actual} rows, snapshot has {t.expected}" for t in counts_bad[:10]),
            expected=sum(t.expected for t in report.tables),
            actual=sum(t.actual or 0 for t in report.tables),
        )
        with_sums = [t for t in report.tables if t.checksum_ok is not None]
        sums_bad = [t for t in with_sums if not t.checksum_ok]
        if with_sums:
            self.check(
                "row checksums match",
                "checksum",
                not sums_bad,
                f"{len(with_sums)} tables"
                if not sums_bad
                else "; ".join(f"{t.table}: checksum differs" for t in sums_bad[:10]),
            )
        else:
            self.check("row checksums match", "checksum", None, "the snapshot records no row checksums")
        if report.schema_fingerprint_match is not None:
            self.check(
                "schema matches",
                "schema",
                bool(report.schema_fingerprint_match),
                "the restored schema's fingerprint equals the snapshot's"
                if report.schema_fingerprint_match
                else "the restored schema differs from the snapshot's",
            )
        else:  # a check that did not run is said, never dropped from the report
            why = next(
                (w for w in report.warnings if w.startswith("schema fingerprint not compared")),
                "schema fingerprint not compared: a partial (table or schema) restore",
            )
            self.check("schema matches", "schema", None, why)
        if report.large_objects is not None:
            self.check("large objects match", "checksum", bool(report.large_objects.get("ok")))

    async def _database_pitr(self) -> None:
        from core.sources.postgres.tools import find_tool
        from core.storage.factory import PRIMARY_NAME

        config_path = self.config.path
        if config_path is None:
            raise UsageError("a point-in-time drill needs the config file's path (for the server's restore_command)")
        target_time = self.request.to_time
        assert target_time is not None
        self.scratch.os_user = server_user(self.config.drills.os_user)
        root = self.scratch.new_dir("axd-pitr.", for_server=True)
        data = root / "data"
        pg_ctl = await asyncio.to_thread(find_tool, "pg_ctl", self.config.database.pg_bin_dir)
        self.scratch.add_cluster(data, pg_ctl.path.parent)
        port = free_port()

        async def restore():
            rep = await self.svc.restore_database_pitr(
                target_time,
                data,
                config_path=config_path,
                start=True,
                port=port,
                os_user=self.scratch.os_user,
                wal_from=None if self.location == PRIMARY_NAME else self.location,
            )
            return rep, (
                f"base backup {rep.base_snapshot[:8]} into {data}, port {port}: {rep.stopped_at or 'recovery finished'}"
            )

        pitr, _ = await self.timed("point-in-time recovery", restore)
        self.window = await self.svc.recovery_window()
        base = PgTarget.from_config(self.config.database)
        target = PgTarget({**base.params, "host": str(data), "port": str(port)}, base.password, base.passfile)

        async def probe():
            conn = await target.connect()
            try:
                cur = await conn.execute("SELECT pg_is_in_recovery()")
                (in_recovery,) = one_row(await cur.fetchone())
            finally:
                await conn.close()
            return in_recovery, "connected"

        in_recovery, _ = await self.timed("connect to the recovered server", probe)
        self.check(
            "recovered server promoted",
            "rows",
            not in_recovery,
            pitr.stopped_at or "the server finished recovery and accepts writes",
        )
        self.db_target = target
        self.restored_sources.append("database")
        self.restored.append(
            {
                "source": "database",
                "snapshot": pitr.base_snapshot,
                "target": f"{data} (port {port})",
                "to_time": target_time.isoformat(),
            }
        )

    # -- corrupted table --------------------------------------------------------------------

    async def _corrupted_table(self) -> None:
        snap = self._newest("database", logical=True)
        if snap is None:
            raise UsageError(f"location {self.location} holds no logical database snapshot to take a table from")
        tables: dict = (snap.metadata or {}).get("tables") or {}
        if not tables:
            raise UsageError(f"snapshot {snap.short_id} lists no tables")
        table = self.config.drills.table or max(sorted(tables), key=lambda t: tables[t])
        if table not in tables:
            raise UsageError(
                f"drills.table {table!r} is not in snapshot {snap.short_id}; it has {', '.join(sorted(tables)[:20])}"
            )
        target = await self._scratch_target(snap)
        report, _ = await self.timed(f"restore table {table}", lambda: self._restore_logical(snap, target, (table,)))
        self.db_target, self.db_partial = target, True
        self.restored_sources.append("database")
        self.restored.append(
            {
                "source": "database",
                "snapshot": snap.id,
                "target": target.describe(),
                "table": table,
                "bytes": snap.summary.total_bytes,  # the whole dump is read to find the table
            }
        )
        row = next((t for t in report.tables if t.table == table), None)
        if row is None:
            self.check(f"{table} restored", "rows", False, "the table is missing after the restore")
        else:
            self.check(
                f"{table} row count",
                "rows",
                row.actual == row.expected,
                f"{row.actual} rows restored, snapshot has {row.expected}",
                row.expected,
                row.actual,
            )
            self.check(
                f"{table} checksum",
                "checksum",
                row.checksum_ok,
                "equals the snapshot's"
                if row.checksum_ok
                else "the snapshot records no checksum"
                if row.checksum_ok is None
                else "differs from the snapshot's",
                row.expected_checksum,
                row.actual_checksum,
            )
        await self._compare_live(snap, table, row)
        await self.timed("smoke checks", self._smoke_checks)

    async def _compare_live(self, snap: Snapshot, table: str, row) -> None:
        from core.sources.postgres.dumpsum import METHOD as DUMP_METHOD
        from core.sources.postgres.row_stats import table_stats
        from core.sources.postgres.table_checksums import dump_checksums

        if not self.config.database.enabled:
            return
        started = time.monotonic()
        try:
            live_target = PgTarget.from_config(self.config.database)
            conn = await live_target.connect()
            try:
                method = (snap.metadata or {}).get("checksum_method") or "md5-rowsum-v1"
                live: Mapping[str, tuple[int, str | None]]
                if method == DUMP_METHOD:
                    counts = await table_stats(conn, {table}, "count-only")
                    sums = await dump_checksums(live_target, self.config.database.pg_bin_dir, {table})
                    live = {t: (c, sums.tables.get(t)) for t, (c, _) in counts.items()}
                else:
                    live = await table_stats(conn, {table}, method)
            finally:
                await conn.close()
        except (AxisorError, psycopg.Error, KeyError) as exc:
            self.step("read the live table", "skipped", started, f"the live database is not readable: {exc}")
            return
        self.step("read the live table", "ok", started, "read only")
        if table not in live:
            self.check(f"live {table}", "rows", None, "the live database has no such table (dropped?)", status="info")
            return
        count, digest = live[table]
        same = row is not None and count == row.expected and digest == row.expected_checksum
        self.check(
            f"live {table}",
            "rows",
            None,
            f"live has {count} rows; "
            + (
                "identical to the snapshot"
                if same
                else "differs from the snapshot (changed since, or its rows rewritten "
                "in another order): the restored copy is the snapshot's"
            ),
            expected=row.expected if row else None,
            actual=count,
            status="info",
        )

    # -- files ------------------------------------------------------------------------------

    async def _files(self) -> None:
        specs = list(self.config.sources())
        if not specs:
            self.step("restore files", "skipped", time.monotonic(), "no file sources are configured")
            return
        snaps: list[Snapshot] = []
        at_time = self._platform_choice([spec.name for spec in specs])
        for spec in specs:
            s = at_time[spec.name] if at_time is not None else self._newest(spec.name)
            if s is None and at_time is not None:
                self.check(
                    f"{spec.name} at {self.request.to_time:%Y-%m-%d %H:%M:%S}",
                    "files",
                    False,
                    f"location {self.location} holds no snapshot of {spec.name} begun by then",
                )
            elif s is None:
                self.check(
                    f"{spec.name} restorable",
                    "files",
                    False,
                    f"location {self.location} holds no snapshot of {spec.name}",
                )
            else:
                snaps.append(s)
        if not snaps:
            return
        target = self.scratch.new_dir("axd-files.")

        async def restore():
            # A drill proves the files on disk: each is re-read and re-chunked (read-back), not
            # only checked as written, and the time it takes is part of the measured restore.
            outcomes = await self.svc.restore_many(
                snaps, target, safety=False, validate=True, options=RestoreOptions(read_back=True)
            )
            return outcomes, f"{len(outcomes)} sources into {target}"

        outcomes, _ = await self.timed("restore files", restore)
        for o in outcomes:
            v = o.validation
            stats = o.stats
            ok = v is not None and v.ok and not (stats and stats.errors)
            detail = (
                f"{v.files} files, {v.bytes} bytes read back against the snapshot"
                if v and v.ok
                else "; ".join([*(v.mismatches[:5] if v else ()), *((stats.errors[:5]) if stats else ())])
                or "not validated"
            )
            self.check(f"{o.snapshot.source} files", "files", ok, detail)
            self.file_roots[o.snapshot.source] = list(o.plan.roots)
            self.restored_sources.append(o.snapshot.source)
            self.restored.append(
                {
                    "source": o.snapshot.source,
                    "snapshot": o.snapshot.id,
                    "target": str(target),
                    "bytes": o.snapshot.summary.total_bytes,
                }
            )

    def _platform_choice(self, sources: list[str]) -> dict[str, Snapshot | None] | None:
        """With --to-time: each files source's snapshot that belongs with the database at that
        instant (core/restore/platform.py), its skew said as an info check; None otherwise."""
        at = self.request.to_time
        if at is None or self.scenario == "compromised-host":
            return None
        from core.restore.platform import plan_platform

        plan = plan_platform(self.snaps, at, sources)
        for c in plan.files:
            if c.snapshot is None or c.span is None:
                continue
            rel = (c.span.start - at).total_seconds(), (c.span.end - at).total_seconds()
            self.check(
                f"{c.source} skew",
                "skew",
                None,
                f"snapshot {c.snapshot.short_id}, scanned {rel[0]:+.1f} s .. {rel[1]:+.1f} s from the target: "
                f"up to {c.skew_seconds:.1f} s from the database's instant, by the {c.span.basis}",
                actual=c.skew_seconds,
                status="info",
            )
        return {c.source: c.snapshot for c in plan.files}

    # -- smoke checks -----------------------------------------------------------------------

    async def _smoke_checks(self) -> tuple[None, str]:
        """The operator's ``[[drills.checks]]`` on what this drill restored (core/drills/checks.py)."""
        restored = Restored(self.db_target, self.db_partial, self.file_roots)
        count = await run_checks(self.config, restored, self.check, self.check_cancelled)
        return None, f"{count} configured"

    # -- objectives -------------------------------------------------------------------------

    def _objective_checks(self, rto: float) -> None:
        measured = measure_objectives(
            self.config, list(dict.fromkeys(self.restored_sources)), rto, self.snaps, self.started, self.window
        )
        self.rto_goal, self.rpo = measured.rto_goal, list(measured.rpo)
        for c in measured.checks:
            self.check(c.name, c.kind, c.status == "pass", c.detail, c.expected, c.actual)  # reported as they land

    # -- the report -------------------------------------------------------------------------

    def _report(self, rto: float, error: str | None) -> DrillReport:
        rto_goal = self.rto_goal or self.config.objectives.for_source("database").rto
        failed = (
            error is not None
            or any(c.status == "fail" for c in self.checks)
            or any(s.status == "failed" for s in self.steps)
        )
        return DrillReport(
            id=self.id,
            scenario=self.scenario,
            location=self.location,
            started=self.started.isoformat(),
            finished=datetime.now(UTC).isoformat(),
            passed=not failed,
            rto_seconds=round(rto, 3),
            rto_objective_seconds=rto_goal.total_seconds(),
            steps=tuple(self.steps),
            checks=tuple(self.checks),
            rpo=tuple(self.rpo),
            restored=tuple(self.restored),
            cleanup=tuple(self.scratch.removed),
            error=error,
            to_time=self.request.to_time.isoformat() if self.request.to_time else None,
            host=socket.gethostname(),
            program_version=__version__,
            job=self.job_id,
            extra={"forecast": self.forecast.to_dict()} if self.forecast is not None else {},
        )

    async def _store(self, report: DrillReport) -> DrillReport:
        """Into the primary's repository (the drill history lives there); when it cannot be
        written, into the location the drill read from. A report that cannot be stored
        anywhere is still returned (and kept with the job)."""
        from dataclasses import replace

        from core.storage.factory import PRIMARY_NAME

        problems: list[str] = []
        for name in dict.fromkeys([PRIMARY_NAME, self.location]):
            try:
                repo = (
                    await self.svc.repository(load_index=False)
                    if name == self.location == PRIMARY_NAME
                    else await self.svc.location_ops().sites.repository(name)
                )
                async with Lock(repo.backend, exclusive=False, operation="drill"):
                    key = await store_report(repo, report)
                return replace(report, extra={**report.extra, "stored": f"{name}:{key}"})
            except (AxisorError, OSError) as exc:
                problems.append(f"{name}: {exc}")
        return replace(report, extra={**report.extra, "store_error": "; ".join(problems)})


async def run_drill(
    svc: BackupService,
    request: DrillRequest,
    *,
    listener: Listener | None = None,
    check_cancelled: Callable[[], None] | None = None,
    job_id: str | None = None,
) -> DrillReport:
    """Run one drill and return its report (also stored in the repository). A failed step or
    check makes ``report.passed`` False; it does not raise. Misuse (an unknown scenario or
    location) raises UsageError before anything is touched."""
    drill = _Drill(svc, request, listener, check_cancelled, job_id)
    return await drill.run()


__all__ = ["DrillRequest", "run_drill"]
