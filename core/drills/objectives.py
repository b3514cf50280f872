"""Recovery objectives measured: how old is the newest point each source can be restored to.

Pure: a config, the snapshots (``BackupService.snapshots()``), a clock and, for a database
with physical backups, the PITR recovery window (``BackupService.recovery_window()``) in,
one ``ObjectiveStatus`` per configured source out. ``axisor-backup status``, the console
dashboard and the drill report call ``evaluate_objectives``.

The achieved RPO of a source is the age of its newest restorable point: its newest
snapshot (safety snapshots taken before a restore do not count: they hold what was there,
not a backup), or for the database, when the recovery window reaches later, the window's
end (the last archived WAL it can replay to). It is ``ok`` within the objective,
``warning`` up to ``critical_factor`` times it, ``critical`` beyond or when there is no
restorable point at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from core.config import Config
from core.drills.report import CheckResult, RpoResult
from core.repository.snapshot import Snapshot

LEVELS = ("ok", "warning", "critical")
SAFETY_TAG = "safety"  # core.restore.safety.SAFETY_TAG; not imported so this module stays light


class _Window(Protocol):
    @property
    def end(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class ObjectiveStatus:
    source: str
    rpo: timedelta  # the objective
    rto: timedelta  # the objective (measured by drills, not here)
    newest: datetime | None  # the newest restorable point; None: nothing restorable
    achieved_rpo: timedelta | None  # now - newest
    status: str  # ok | warning | critical
    via: str  # "snapshot" | "pitr" | "none"
    snapshot: str | None  # short id of the newest snapshot, when via == "snapshot"
    message: str

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "rpo_seconds": self.rpo.total_seconds(),
            "rto_seconds": self.rto.total_seconds(),
            "newest": self.newest.isoformat() if self.newest else None,
            "achieved_rpo_seconds": None if self.achieved_rpo is None else round(self.achieved_rpo.total_seconds(), 3),
            "status": self.status,
            "via": self.via,
            "snapshot": self.snapshot,
            "message": self.message,
        }


def configured_sources(config: Config) -> list[str]:
    """Every source the config protects, in backup order (database last, as backup takes it)."""
    names = [s.name for s in config.sources()]
    if config.database.enabled:
        names.append("database")
    return names


def level_for(age: timedelta | None, objective: timedelta, critical_factor: float) -> str:
    if age is None:
        return "critical"
    if age <= objective:
        return "ok"
    return "warning" if age <= objective * critical_factor else "critical"


def human_duration(span: timedelta) -> str:
    seconds = int(abs(span.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


def newest_points(snapshots: Iterable[Snapshot]) -> dict[str, Snapshot]:
    """The newest non-safety snapshot of each source."""
    newest: dict[str, Snapshot] = {}
    for s in snapshots:
        if SAFETY_TAG in s.tags or s.source.startswith("safety/"):
            continue
        if s.source not in newest or s.datetime > newest[s.source].datetime:
            newest[s.source] = s
    return newest


def evaluate_objectives(
    config: Config, snapshots: Iterable[Snapshot], now: datetime, window: _Window | None = None
) -> list[ObjectiveStatus]:
    """One status per configured source (see module doc). ``now`` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    newest = newest_points(snapshots)
    objectives = config.objectives
    out: list[ObjectiveStatus] = []
    for source in configured_sources(config):
        goal = objectives.for_source(source)
        snap = newest.get(source)
        point: datetime | None = snap.datetime if snap else None
        via = "snapshot" if snap else "none"
        if source == "database" and window is not None and window.end is not None:
            if point is None or window.end > point:
                point, via = window.end, "pitr"
        age = max(now - point, timedelta(0)) if point is not None else None
        status = level_for(age, goal.rpo, objectives.critical_factor)
        if age is None:
            message = f"no restorable point (objective {human_duration(goal.rpo)})"
        else:
            what = f"snapshot {snap.short_id}" if via == "snapshot" and snap else "end of the PITR window"
            relation = "within" if status == "ok" else "over"
            message = (
                f"newest restorable point {human_duration(age)} old ({what}), "
                f"{relation} the {human_duration(goal.rpo)} objective"
            )
        out.append(
            ObjectiveStatus(
                source,
                goal.rpo,
                goal.rto,
                point,
                age,
                status,
                via,
                snap.short_id if via == "snapshot" and snap else None,
                message,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class DrillObjectives:
    """A drill's RTO and RPO measured against ``[objectives]``: the goal, the RPO row of
    each restored source, and the checks to report (``CheckResult``s, in order)."""

    rto_goal: timedelta
    rpo: tuple[RpoResult, ...]
    checks: tuple[CheckResult, ...]


def measure_objectives(
    config: Config,
    sources: list[str],
    rto: float,
    snapshots: Iterable[Snapshot],
    now: datetime,
    window: _Window | None = None,
) -> DrillObjectives:
    """Pure: the drill restored ``sources`` and took ``rto`` seconds. Its RTO objective is
    the strictest of those sources' (the database's when it restored none); each source's
    RPO is the age of its newest restorable point at ``now``. A source restored but no
    longer configured has no objective to measure against and is left out."""
    objectives = config.objectives
    goals = [objectives.for_source(s) for s in sources] or [objectives.for_source("database")]
    rto_goal = min(g.rto for g in goals)
    checks = [
        _check(
            "RTO within objective",
            "rto",
            rto <= rto_goal.total_seconds(),
            f"restored and validated in {rto:.1f} s; objective {human_duration(rto_goal)}",
            rto_goal.total_seconds(),
            round(rto, 3),
        )
    ]
    statuses = {s.source: s for s in evaluate_objectives(config, snapshots, now, window)}
    rpo: list[RpoResult] = []
    for source in sources:
        st = statuses.get(source)
        if st is None:
            continue
        achieved = None if st.achieved_rpo is None else round(st.achieved_rpo.total_seconds(), 3)
        rpo.append(
            RpoResult(source, st.newest.isoformat() if st.newest else None, achieved, st.rpo.total_seconds(), st.status)
        )
        checks.append(_check(f"RPO {source}", "rpo", st.status == "ok", st.message, st.rpo.total_seconds(), achieved))
    return DrillObjectives(rto_goal, tuple(rpo), tuple(checks))


def _check(name: str, kind: str, ok: bool, detail: str, expected: float, actual: float | None) -> CheckResult:
    return CheckResult(name, kind, "pass" if ok else "fail", detail, expected, actual)


def scenario_rto(config: Config, scenario: str) -> timedelta:
    """The RTO objective of a drill scenario: the strictest of the sources it restores, as
    the drill itself measures it (core/drills/run.py)."""
    objectives = config.objectives
    sources = ["database"] if scenario in ("database-loss", "corrupted-table") else configured_sources(config)
    return min((objectives.for_source(s).rto for s in sources), default=objectives.for_source("database").rto)


def worst(statuses: Iterable[ObjectiveStatus]) -> str:
    return max((s.status for s in statuses), key=LEVELS.index, default="ok")


__all__ = [
    "LEVELS",
    "DrillObjectives",
    "ObjectiveStatus",
    "configured_sources",
    "evaluate_objectives",
    "human_duration",
    "level_for",
    "measure_objectives",
    "newest_points",
    "scenario_rto",
    "worst",
]
