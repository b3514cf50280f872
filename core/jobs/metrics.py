"""Prometheus text-format metrics, written to a file for node_exporter's textfile collector.

Everything is computed from the job database, so the figures survive restarts and any
engine (daemon or CLI) can rewrite the file. prometheus_client renders the text; the file is
written here, not by its ``write_to_textfile``: that one creates the file with the process's
umask (0077 under contrib/axisor-backup.service, so node_exporter's user could not read it),
ours sets 0644. Both write a temporary file and rename it, so a scraper never reads half a file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from core.jobs.api import Job, JobState
from core.jobs.kinds import PRIMARY_LOCATION
from core.jobs.store import JobStore

HISTORY = 5000  # finished backup jobs looked at; older ones no longer change the figures


@dataclass(slots=True)
class _Source:
    last_success: float | None = None
    duration: float | None = None
    bytes_total: int | None = None
    bytes_stored: int | None = None
    failures: int = 0


def _seconds(job: Job) -> float:
    if job.started_at and job.finished_at:
        return (job.finished_at - job.started_at).total_seconds()
    return 0.0


def per_source(jobs: list[Job]) -> dict[str, _Source]:
    """Newest first in, per source figures out (last success, its duration and bytes, failures)."""
    sources: dict[str, _Source] = {}
    for job in jobs:
        result = job.result or {}
        for snap in result.get("snapshots") or []:
            s = sources.setdefault(snap["source"], _Source())
            if s.last_success is None and job.finished_at is not None:
                s.last_success = job.finished_at.timestamp()
                s.duration = _seconds(job)
                summary = snap.get("summary") or {}
                s.bytes_total = summary.get("total_bytes")
                s.bytes_stored = summary.get("data_added_packed")
        if job.state == JobState.FAILED:
            failed = result.get("failed") or []
            for f in failed:
                sources.setdefault(f["source"], _Source()).failures += 1
            if not failed:  # the whole run failed before any source (lock, passphrase, crash)
                names = job.params.get("sources") or ["all"]
                for name in names:
                    sources.setdefault(str(name), _Source()).failures += 1
    return sources


class _Figures:
    """The collector of one write: the job history's and the health evaluation's figures
    as metric families, registered in a registry of its own (no process-wide state)."""

    def __init__(self, jobs: list[Job], counts: dict[tuple[str, str], int], health: Any) -> None:
        self.jobs, self.counts, self.health = jobs, counts, health

    def collect(self) -> Iterator[Metric]:
        ordered = sorted(per_source(self.jobs).items())
        labels = ["source", "location"]

        def per_src(
            family: GaugeMetricFamily | CounterMetricFamily, value: Callable[[_Source], float | None]
        ) -> Metric:
            """One sample a source, for the sources that have the figure."""
            for name, s in ordered:
                v = value(s)
                if v is not None:
                    family.add_metric([name, PRIMARY_LOCATION], v)
            return family

        # Times to the millisecond, as the file has always had them.
        yield per_src(
            GaugeMetricFamily(
                "axisor_backup_last_success_timestamp_seconds",
                "When the newest successful backup of the source finished (Unix time).",
                labels=labels,
            ),
            lambda s: _ms(s.last_success),
        )
        yield per_src(
            GaugeMetricFamily(
                "axisor_backup_last_duration_seconds", "How long the newest successful backup job took.", labels=labels
            ),
            lambda s: _ms(s.duration),
        )
        yield per_src(
            GaugeMetricFamily(
                "axisor_backup_last_bytes", "Bytes in the newest successful snapshot of the source.", labels=labels
            ),
            lambda s: s.bytes_total,
        )
        yield per_src(
            GaugeMetricFamily(
                "axisor_backup_last_stored_bytes",
                "Bytes the newest successful snapshot added to storage.",
                labels=labels,
            ),
            lambda s: s.bytes_stored,
        )
        yield per_src(
            CounterMetricFamily("axisor_backup_failures_total", "Failed backups of the source.", labels=labels),
            lambda s: s.failures,
        )
        by_state = CounterMetricFamily(
            "axisor_backup_jobs_total", "Jobs by kind and final or current state.", labels=["kind", "state"]
        )
        for (kind, state), n in sorted(self.counts.items()):
            by_state.add_metric([kind, state], n)
        yield by_state
        if self.health is not None:
            yield GaugeMetricFamily(
                "axisor_backup_health",
                "The platform's health as `axisor-backup status` evaluates it: 0 ok, 1 warning, 2 critical.",
                value=self.health.exit_code,
            )
            checks = GaugeMetricFamily(
                "axisor_backup_check",
                "Each check of `axisor-backup status`: 0 ok, 1 warning, 2 critical.",
                labels=["check"],
            )
            for check in self.health.checks:
                checks.add_metric([check.name], check.code)
            yield checks
            yield from _forecast_families(getattr(self.health, "forecasts", ()))


def _forecast_families(forecasts: Any) -> Iterator[Metric]:
    """The RTO forecasts (core/jobs/rto.py): a scenario and location with no measurement
    yet has no sample at all, never a made-up 0."""
    labels = ["scenario", "location"]
    seconds = GaugeMetricFamily(
        "axisor_backup_rto_forecast_seconds",
        "Forecast RTO of a drill scenario from a location: bound low, expected or high.",
        labels=[*labels, "bound"],
    )
    objective = GaugeMetricFamily(
        "axisor_backup_rto_objective_seconds", "The RTO objective of a drill scenario.", labels=labels
    )
    measured = GaugeMetricFamily(
        "axisor_backup_rto_forecast_measured",
        "1 when drills have measured what the forecast needs, 0 when there is no forecast yet.",
        labels=labels,
    )
    for f in forecasts:
        key = [f.scenario, f.location]
        measured.add_metric(key, 1 if f.measured else 0)
        for bound, value in (("low", f.low_seconds), ("expected", f.expected_seconds), ("high", f.high_seconds)):
            if value is not None:
                seconds.add_metric([*key, bound], value)
        if f.objective_seconds is not None:
            objective.add_metric(key, f.objective_seconds)
    yield seconds
    yield objective
    yield measured


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def render(jobs: list[Job], counts: dict[tuple[str, str], int], health: Any = None) -> str:
    """The file's text, by prometheus_client (which escapes label values: source names come
    from the config). ``health``: the evaluation `status` makes (core/jobs/status.py), so the
    file and `status` never disagree; its families are left out when it is None."""
    registry = CollectorRegistry()  # a fresh one per write: no process-wide state
    registry.register(_Figures(jobs, counts, health))
    return generate_latest(registry).decode("utf-8")


async def write_metrics(store: JobStore, path: Path, health: Any = None) -> None:
    jobs = await store.list(limit=HISTORY, states=(JobState.COMPLETED, JobState.FAILED), kinds=("backup",))
    text = render(jobs, await store.counts(), health)
    await asyncio.to_thread(_write_atomic, path, text)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".axisor-metrics-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # the text format is UTF-8
            fh.write(text)
        os.chmod(tmp, 0o644)  # read by the metrics collector, holds no secrets
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["per_source", "render", "write_metrics"]
