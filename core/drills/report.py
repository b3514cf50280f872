"""The drill report: steps with timings, checks with results, RTO and RPO against the
objectives, pass or fail; as JSON, as Markdown, and stored in the repository.

In the repository a report is the object ``drills/<id>``: the report's JSON (UTF-8,
sorted keys) sealed with the repository's AEAD and the associated data
``axisor/drill/v1`` || id, written once and never rewritten, like WAL manifests. Ids sort
by time (``YYYYMMDDTHHMMSSZ-`` + 8 hex digits), so a listing is the drill history in order.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.repository.sealed_by_id import open_sealed
from core.drills.forecast import RtoForecast
from core.errors import DamagedObject, SnapshotNotFound, UsageError
from core.repository.repository import Repository
from core.storage.backend import ObjectExists, ObjectNotFound

AD_DRILL = b"axisor/drill/v1"
PREFIX = "drills"
REPORT_VERSION = 1


def new_drill_id(now: datetime | None = None) -> str:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def _valid_id(drill_id: str) -> bool:
    return (
        len(drill_id) == 25
        and drill_id[8] == "T"
        and drill_id[15:17] == "Z-"
        and all(c in "0123456789abcdefTZ-" for c in drill_id)
    )


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    status: str  # ok | failed | skipped
    seconds: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    kind: str  # rows | checksum | schema | files | sql | path | rto | rpo | cleanup
    status: str  # pass | fail | skip
    detail: str = ""
    expected: Any = None
    actual: Any = None


@dataclass(frozen=True, slots=True)
class RpoResult:
    source: str
    point: str | None  # the restored point's time (ISO 8601)
    achieved_seconds: float | None
    objective_seconds: float
    status: str  # ok | warning | critical


@dataclass(frozen=True, slots=True)
class DrillReport:
    id: str
    scenario: str
    location: str  # where the drill read from
    started: str
    finished: str
    passed: bool
    rto_seconds: float  # start to restored-and-validated
    rto_objective_seconds: float
    steps: tuple[Step, ...]
    checks: tuple[CheckResult, ...]
    rpo: tuple[RpoResult, ...]
    restored: tuple[dict, ...]  # {"source", "snapshot", "target"}
    cleanup: tuple[str, ...]  # what was removed
    error: str | None = None
    to_time: str | None = None
    host: str = ""
    program_version: str = ""
    version: int = REPORT_VERSION
    job: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def forecast(self) -> dict | None:
        """The RTO forecast made before the drill ran (core/drills/forecast.py
        RtoForecast.to_dict()), kept in ``extra`` (which older readers ignore, docs/FORMAT.md
        "Versioning policy"); None in reports written before forecasts, or when none was made."""
        value = self.extra.get("forecast")
        return value if isinstance(value, dict) else None

    @property
    def failures(self) -> list[str]:
        out = [f"{c.name}: {c.detail}" for c in self.checks if c.status == "fail"]
        out += [f"step {s.name}: {s.detail}" for s in self.steps if s.status == "failed"]
        return out

    def to_dict(self) -> dict:
        data = asdict(self)
        data["failures"] = self.failures
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DrillReport:
        if data.get("version") != REPORT_VERSION:
            raise ValueError(f"drill report version {data.get('version')!r} is not {REPORT_VERSION}")
        d = {k: v for k, v in data.items() if k != "failures"}
        d["steps"] = tuple(Step(**s) for s in d.get("steps", ()))
        d["checks"] = tuple(CheckResult(**c) for c in d.get("checks", ()))
        d["rpo"] = tuple(RpoResult(**r) for r in d.get("rpo", ()))
        d["restored"] = tuple(d.get("restored", ()))
        d["cleanup"] = tuple(d.get("cleanup", ()))
        return cls(**d)

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str).encode()

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# Drill {self.id}: {self.scenario} — {verdict}",
            "",
            f"- Location: {self.location}",
            f"- Started: {self.started}",
            f"- Finished: {self.finished}",
            f"- RTO: {self.rto_seconds:.1f} s (objective {self.rto_objective_seconds:.0f} s)",
        ]
        forecast = _forecast_line(self.forecast, self.rto_seconds)
        if forecast:
            lines.append(f"- Forecast before it ran: {forecast}")
        if self.to_time:
            lines.append(f"- Point in time: {self.to_time}")
        if self.host:
            lines.append(f"- Host: {self.host}")
        if self.error:
            lines.append(f"- Error: {self.error}")
        lines += ["", "## Steps", "", "| Step | Status | Seconds | Detail |", "|---|---|---|---|"]
        lines += [f"| {s.name} | {s.status} | {s.seconds:.2f} | {_cell(s.detail)} |" for s in self.steps]
        lines += ["", "## Checks", "", "| Check | Kind | Result | Detail |", "|---|---|---|---|"]
        lines += [f"| {_cell(c.name)} | {c.kind} | {c.status} | {_cell(c.detail)} |" for c in self.checks]
        lines += [
            "",
            "## Recovery point",
            "",
            "| Source | Restored point | Age | Objective | Status |",
            "|---|---|---|---|---|",
        ]
        for r in self.rpo:
            age = "-" if r.achieved_seconds is None else f"{r.achieved_seconds:.0f} s"
            lines.append(f"| {r.source} | {r.point or '-'} | {age} | {r.objective_seconds:.0f} s | {r.status} |")
        if self.restored:
            lines += ["", "## Restored", ""]
            lines += [
                f"- {r.get('source')}: snapshot {str(r.get('snapshot'))[:8]} into {r.get('target')}"
                for r in self.restored
            ]
        lines += ["", "## Cleanup", ""]
        lines += [f"- removed {c}" for c in self.cleanup] or ["- nothing to remove"]
        return "\n".join(lines) + "\n"


def _forecast_line(data: dict | None, measured: float) -> str:
    if not isinstance(data, dict):
        return ""
    f = RtoForecast.from_dict(data)
    if not f.measured or f.expected_seconds is None:
        return f.missing or "none"
    error = f.error(measured)
    return (
        f"{f.expected_seconds:.1f} s ({f.low_seconds:.1f}-{f.high_seconds:.1f} s); "
        + ("" if error is None else f"measured {error:+.0%} off; ")
        + f"based on {f.basis}"
    )


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ad(drill_id: str) -> bytes:
    return AD_DRILL + drill_id.encode("ascii")


def report_key(drill_id: str) -> str:
    return f"{PREFIX}/{drill_id}"


async def store_report(repo: Repository, report: DrillReport) -> str:
    """Write ``drills/<id>`` once; the caller holds a shared lock."""
    key = report_key(report.id)
    try:
        await repo.backend.put(key, repo.cipher.seal(report.encode(), _ad(report.id)))
    except ObjectExists:
        raise UsageError(f"a drill report {report.id} is already stored; reports are never rewritten") from None
    return key


# A report is a few KiB of steps and checks; a planted object must not be read whole.
MAX_REPORT = 16 * 1024 * 1024


async def load_report(repo: Repository, drill_id: str) -> DrillReport:
    if not _valid_id(drill_id):
        raise SnapshotNotFound(f"{drill_id!r} is not a drill id (e.g. 20261126T093500Z-1a2b3c4d)")
    key = report_key(drill_id)
    try:
        plain = await open_sealed(repo, PREFIX, AD_DRILL, drill_id, MAX_REPORT, "drill report")
    except ObjectNotFound:
        raise SnapshotNotFound(f"no drill report {drill_id} in {repo.backend.location}") from None
    try:
        report = DrillReport.from_dict(json.loads(plain))
    except (ValueError, TypeError, KeyError) as exc:
        raise DamagedObject(key, f"malformed drill report: {exc}") from None
    if report.id != drill_id:
        raise DamagedObject(key, f"report names {report.id!r}, not {drill_id!r}")
    return report


async def stored_reports(service: Any) -> tuple[list[DrillReport], list[DamagedObject]]:
    """The reports in the service's repository (``list_reports``): drills run by the CLI,
    the console or the scheduler all land there."""
    return await list_reports(await service.repository(load_index=False))


async def list_reports(repo: Repository) -> tuple[list[DrillReport], list[DamagedObject]]:
    """Every stored report, oldest first, and the ones that would not open."""
    ids = sorted([info.key.rsplit("/", 1)[-1] async for info in repo.backend.list(f"{PREFIX}/")])
    return await _load_all(repo, ids)


async def _load_all(repo: Repository, ids: list[str]) -> tuple[list[DrillReport], list[DamagedObject]]:
    reports: list[DrillReport] = []
    damaged: list[DamagedObject] = []
    for drill_id in ids:
        if not _valid_id(drill_id):
            continue  # a temp file of an interrupted write on some backends
        try:
            reports.append(await load_report(repo, drill_id))
        except DamagedObject as exc:
            damaged.append(exc)
    return reports, damaged


async def recent_reports(repo: Repository, limit: int) -> tuple[list[DrillReport], list[DamagedObject]]:
    """The newest ``limit`` stored reports, oldest first (what a forecast needs, without
    reading the whole history)."""
    ids = sorted([info.key.rsplit("/", 1)[-1] async for info in repo.backend.list(f"{PREFIX}/")])
    return await _load_all(repo, [i for i in ids if _valid_id(i)][-limit:] if limit > 0 else [])


def history(reports: list[DrillReport]) -> list[dict]:
    """One row per report (oldest first) with the RTO trend: its change since the previous
    drill of the same scenario, and the worst RPO achieved. ``drills`` and the console show these."""
    rows: list[dict] = []
    last: dict[str, DrillReport] = {}
    for r in reports:
        previous = last.get(r.scenario)
        ages = [x.achieved_seconds for x in r.rpo if x.achieved_seconds is not None]
        rows.append(
            {
                "id": r.id,
                "scenario": r.scenario,
                "location": r.location,
                "started": r.started,
                "passed": r.passed,
                "rto_seconds": r.rto_seconds,
                "rto_objective_seconds": r.rto_objective_seconds,
                "rto_change_seconds": None if previous is None else round(r.rto_seconds - previous.rto_seconds, 3),
                "worst_rpo_seconds": max(ages) if ages else None,
                "rpo": [
                    {
                        "source": x.source,
                        "achieved_seconds": x.achieved_seconds,
                        "objective_seconds": x.objective_seconds,
                        "status": x.status,
                    }
                    for x in r.rpo
                ],
                "failures": r.failures,
                "error": r.error,
                **_forecast_row(r),
            }
        )
        last[r.scenario] = r
    return rows


def _forecast_row(r: DrillReport) -> dict:
    """The forecast the drill recorded before it ran, and how far off it was."""
    f = RtoForecast.from_dict(r.forecast) if isinstance(r.forecast, dict) else None
    error = f.error(r.rto_seconds) if f is not None else None
    return {
        "forecast_seconds": f.expected_seconds if f else None,
        "forecast_low_seconds": f.low_seconds if f else None,
        "forecast_high_seconds": f.high_seconds if f else None,
        "forecast_error": None if error is None else round(error, 4),
        "forecast_note": (f.basis if f.measured else f.missing) if f else "no forecast recorded",
    }


__all__ = [
    "AD_DRILL",
    "CheckResult",
    "DrillReport",
    "RpoResult",
    "Step",
    "history",
    "list_reports",
    "load_report",
    "recent_reports",
    "new_drill_id",
    "report_key",
    "store_report",
]
