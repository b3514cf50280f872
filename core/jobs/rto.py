"""RTO forecasts from the job history, for the one health evaluation (core/jobs/status.py).

Needs no passphrase, like the rest of `status`: the measurements are the drill jobs'
results (each is its drill report) and, for a phase no drill measured, the files restore
jobs into an empty target (no file there before, no safety snapshot: a restore over live
files measures its comparisons, not a recovery), the sizes the newest snapshots the backup jobs
recorded (``summary.total_bytes``; the database's newest *logical* one), and each
location's newest read probe, kept in the locations monitor's file (core/locations/
monitor.py; ``locations --probe`` and the scheduled ``probe`` write it; a drill's own
forecast reads the same). A copy holds the
same snapshots, so the primary's sizes stand for every location. The forecast itself is
core/drills/forecast.py's pure ``forecast_rto``.

Forecast per location: from the primary the database-loss, platform-loss and
corrupted-table drills, from each secondary the location-loss and compromised-host ones,
and any other pair a drill has measured. A forecast over the scenario's RTO objective is a
finding (``rto <scenario> from <location>``): a warning, critical past ``critical_factor``
times the objective.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from core.config import Config
from core.drills.forecast import (
    RestoreSample,
    RtoForecast,
    forecast_rto,
    measurements,
    probe_samples,
    scenario_sizes,
)
from core.drills.objectives import human_duration, scenario_rto
from core.jobs.api import Job, JobState
from core.locations.sites import PRIMARY_NAME as PRIMARY_LOCATION
from core.jobs.store import JobStore, state_dir
from core.locations.monitor import MonitorState, state_file

RESTORE_HISTORY = 50  # restore jobs looked at
DRILL_HISTORY = 200  # drill jobs looked at; the forecast uses the newest few of each location
PRIMARY_SCENARIOS = ("database-loss", "platform-loss", "corrupted-table")
SECONDARY_SCENARIOS = ("location-loss", "compromised-host")
DATABASE_ONLY = ("database-loss", "corrupted-table")


def newest_sizes(backups: Iterable[Job]) -> tuple[int | None, dict[str, int]]:
    """Newest first in: the newest logical database snapshot's bytes (None: none) and
    the newest snapshot's bytes of every other source, from the backup jobs' results."""
    database: int | None = None
    files: dict[str, int] = {}
    for job in backups:
        for snap in (job.result or {}).get("snapshots") or []:
            if not isinstance(snap, dict) or "safety" in (snap.get("tags") or ()):
                continue
            source = str(snap.get("source") or "")
            size = (snap.get("summary") or {}).get("total_bytes")
            if not isinstance(size, int) or source.startswith("safety/"):
                continue
            if source == "database":
                if database is None and (snap.get("metadata") or {}).get("mode") == "logical":
                    database = size
            elif source not in files:
                files[source] = size
    return database, files


def restore_samples(restores: Iterable[Job]) -> tuple[RestoreSample, ...]:
    """Newest first in and out: one sample per completed files restore job into an empty
    target (its whole time: planning and validation are part of a recovery too)."""
    out: list[RestoreSample] = []
    for job in restores:
        result = job.result or {}
        rows = [r for r in result.get("restored") or () if isinstance(r, dict)]
        if job.state != JobState.COMPLETED or result.get("dry_run") or not rows or job.started_at is None:
            continue
        if job.finished_at is None or any(
            r.get("safety_snapshot") or r.get("unchanged") or not isinstance(r.get("bytes"), int) for r in rows
        ):
            continue
        locations = {str(r.get("location") or "") for r in rows}
        if len(locations) != 1 or "" in locations:
            continue  # written before restores named their location
        seconds = (job.finished_at - job.started_at).total_seconds()
        out.append(RestoreSample(job.id, locations.pop(), "files", sum(int(r["bytes"]) for r in rows), seconds))
    return tuple(out)


def pairs(config: Config, measured: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """(scenario, location) to forecast, in a stable order."""
    database = config.database.enabled
    wanted = [(s, PRIMARY_LOCATION) for s in PRIMARY_SCENARIOS if database or s not in DATABASE_ONLY] + [
        (s, loc.name) for loc in config.storage.remote_storage for s in SECONDARY_SCENARIOS
    ]
    locations = [PRIMARY_LOCATION, *(loc.name for loc in config.storage.remote_storage)]
    for pair in measured:
        if pair not in wanted and pair[1] in locations:
            wanted.append(pair)
    return wanted


def forecasts_from(
    config: Config,
    drills: Iterable[Job],
    backups: Iterable[Job],
    restores: Iterable[Job] = (),
    probes: Iterable[dict] = (),
) -> tuple[RtoForecast, ...]:
    reports: list[dict[str, Any]] = [
        j.result for j in drills if isinstance(j.result, dict) and "scenario" in j.result and "steps" in j.result
    ]
    history = measurements(reports)
    samples = restore_samples(restores)
    probed = probe_samples(probes)
    database_bytes, files = newest_sizes(backups)
    file_bytes: dict[str, int | None] = {s.name: files.get(s.name) for s in config.sources()}
    out: list[RtoForecast] = []
    for scenario, location in pairs(config, ((m.scenario, m.location) for m in history)):
        sizes, lacking = scenario_sizes(
            scenario,
            database_bytes,
            file_bytes if scenario not in DATABASE_ONLY else {},
            database=config.database.enabled,
        )
        objective = scenario_rto(config, scenario).total_seconds()
        out.append(forecast_rto(scenario, location, sizes, history, objective, lacking, samples, probed))
    return tuple(out)


async def rto_forecasts(config: Config, store: JobStore, backups: list[Job]) -> tuple[RtoForecast, ...]:
    """``backups``: the finished backup jobs the health evaluation already read, newest first."""
    drills = await store.list(limit=DRILL_HISTORY, states=(JobState.COMPLETED, JobState.FAILED), kinds=("drill",))
    restores = await store.list(limit=RESTORE_HISTORY, states=(JobState.COMPLETED,), kinds=("restore",))
    probes = await asyncio.to_thread(MonitorState(state_file(state_dir(config))).probes)
    return forecasts_from(config, drills, backups, restores, probes)


def forecast_level(f: RtoForecast, critical_factor: float) -> str:
    if f.expected_seconds is None or f.objective_seconds is None or f.expected_seconds <= f.objective_seconds:
        return "ok"
    return "warning" if f.expected_seconds <= f.objective_seconds * critical_factor else "critical"


def describe(f: RtoForecast) -> str:
    """One line: the forecast with its range and objective, or why there is none."""
    if f.expected_seconds is None or f.low_seconds is None or f.high_seconds is None:
        return f.missing
    text = (
        f"forecast {_secs(f.expected_seconds)} ({_secs(f.low_seconds)}-{_secs(f.high_seconds)})"
        if f.high_seconds - f.low_seconds >= 1
        else f"forecast {_secs(f.expected_seconds)}"
    )
    if f.objective_seconds is not None:
        relation = "over" if f.over_objective else "within"
        text += f", {relation} the {human_duration(_td(f.objective_seconds))} objective"
    return text


def _td(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _secs(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return human_duration(_td(seconds))


__all__ = [
    "describe",
    "forecast_level",
    "forecasts_from",
    "newest_sizes",
    "pairs",
    "restore_samples",
    "rto_forecasts",
]
