"""Jobs <-> JSON-ready dicts: one encoding for the job database, the socket and --json."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from core.jobs.api import Job, JobEvent, JobProgress, JobState


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def progress_to_dict(progress: JobProgress | None) -> dict[str, Any] | None:
    return asdict(progress) if progress is not None else None


def progress_from_dict(data: dict[str, Any] | None) -> JobProgress | None:
    if not data:
        return None
    known = JobProgress.__dataclass_fields__
    return JobProgress(**{k: v for k, v in data.items() if k in known})


def job_to_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "params": job.params,
        "state": job.state.value,
        "origin": job.origin,
        "created_at": _ts(job.created_at),
        "started_at": _ts(job.started_at),
        "finished_at": _ts(job.finished_at),
        "progress": progress_to_dict(job.progress),
        "result": job.result,
        "error": job.error,
    }


def job_from_dict(data: dict[str, Any]) -> Job:
    created = _dt(data["created_at"])
    assert created is not None
    return Job(
        id=str(data["id"]),
        kind=str(data["kind"]),
        params=dict(data.get("params") or {}),
        state=JobState(data["state"]),
        origin=str(data.get("origin") or "api"),
        created_at=created,
        started_at=_dt(data.get("started_at")),
        finished_at=_dt(data.get("finished_at")),
        progress=progress_from_dict(data.get("progress")),
        result=data.get("result"),
        error=data.get("error"),
    )


def event_to_dict(event: JobEvent) -> dict[str, Any]:
    return {"type": event.type, "job": job_to_dict(event.job), "message": event.message}


def event_from_dict(data: dict[str, Any]) -> JobEvent:
    return JobEvent(type=str(data["type"]), job=job_from_dict(data["job"]), message=str(data.get("message", "")))
