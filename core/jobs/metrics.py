"""Prometheus text-format metrics, written to a file for node_exporter's textfile collector.

Everything is computed from the job database, so the figures survive restarts and any
engine (daemon or CLI) can rewrite the file. Written to a temporary file and renamed, so
a scraper never reads half a file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


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


def render(jobs: list[Job], counts: dict[tuple[str, str], int], health: Any = None) -> str:
    """``health``: the evaluation `status` makes (core/jobs/status.py), so the file and
    `status` never disagree; its families are left out when it is None."""
    loc = _label(PRIMARY_LOCATION)
    lines: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")

    sources = per_source(jobs)
    ordered = sorted(sources.items())
    family("axisor_backup_last_success_timestamp_seconds", "gauge",
           "When the newest successful backup of the source finished (Unix time).")
    for name, s in ordered:
        if s.last_success is not None:
            lines.append(f'axisor_backup_last_success_timestamp_seconds{{source="{_label(name)}",location="{loc}"}}'
                         f" {s.last_success:.3f}")
    family("axisor_backup_last_duration_seconds", "gauge", "How long the newest successful backup job took.")
    for name, s in ordered:
        if s.duration is not None:
            lines.append(f'axisor_backup_last_duration_seconds{{source="{_label(name)}",location="{loc}"}}'
                         f" {s.duration:.3f}")
    family("axisor_backup_last_bytes", "gauge", "Bytes in the newest successful snapshot of the source.")
    for name, s in ordered:
        if s.bytes_total is not None:
            lines.append(f'axisor_backup_last_bytes{{source="{_label(name)}",location="{loc}"}} {s.bytes_total}')
    family("axisor_backup_last_stored_bytes", "gauge", "Bytes the newest successful snapshot added to storage.")
    for name, s in ordered:
        if s.bytes_stored is not None:
            lines.append(f'axisor_backup_last_stored_bytes{{source="{_label(name)}",location="{loc}"}} '
                         f"{s.bytes_stored}")
    family("axisor_backup_failures_total", "counter", "Failed backups of the source.")
    for name, s in ordered:
        lines.append(f'axisor_backup_failures_total{{source="{_label(name)}",location="{loc}"}} {s.failures}')
    family("axisor_backup_jobs_total", "counter", "Jobs by kind and final or current state.")
    for (kind, state), n in sorted(counts.items()):
        lines.append(f'axisor_backup_jobs_total{{kind="{_label(kind)}",state="{_label(state)}"}} {n}')
    if health is not None:
        family("axisor_backup_health", "gauge",
               "The platform's health as `axisor-backup status` evaluates it: 0 ok, 1 warning, 2 critical.")
        lines.append(f"axisor_backup_health {health.exit_code}")
        family("axisor_backup_check", "gauge", "Each check of `axisor-backup status`: 0 ok, 1 warning, 2 critical.")
        for check in health.checks:
            lines.append(f'axisor_backup_check{{check="{_label(check.name)}"}} {check.code}')
    return "\n".join(lines) + "\n"


async def write_metrics(store: JobStore, path: Path, health: Any = None) -> None:
    jobs = await store.list(limit=HISTORY, states=(JobState.COMPLETED, JobState.FAILED), kinds=("backup",))
    text = render(jobs, await store.counts(), health)
    await asyncio.to_thread(_write_atomic, path, text)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".axisor-metrics-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
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
