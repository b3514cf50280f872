"""A run made outside the job engine, recorded in the job database as a finished job.

`verify` from the command line runs in its own process, without a job; without a record,
`status`, the metrics file and the console's dashboard would go on saying "never verified"
after it passed, or miss the damage it found."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.config import Config
from core.errors import Exit
from core.jobs.api import Job, JobState
from core.jobs.engine import exit_code_of, new_job_id
from core.jobs.store import JobStore, Owner, state_dir


@dataclass(frozen=True, slots=True)
class Outcome:
    state: JobState
    result: dict[str, Any]
    error: str | None = None

    @classmethod
    def of_exception(cls, exc: BaseException) -> Outcome:
        if isinstance(exc, KeyboardInterrupt):
            return cls(JobState.CANCELLED, {"exit_code": Exit.INTERRUPTED}, "interrupted (Ctrl-C)")
        return cls(JobState.FAILED, {"exit_code": exit_code_of(exc)}, str(exc) or type(exc).__name__)


async def record_run(
    config: Config,
    kind: str,
    params: dict[str, Any],
    started: datetime,
    outcome: Outcome,
    *,
    finished: datetime | None = None,
) -> str:
    """Store the finished run; returns its job id. Raises what the job database raises
    (a full or unwritable state folder: StorageFull), for the caller to report."""
    now = finished or datetime.now(UTC)
    job = Job(
        id=new_job_id(),
        kind=kind,
        params=params,
        state=outcome.state,
        origin="cli",
        created_at=started,
        started_at=started,
        finished_at=now,
        progress=None,
        result=outcome.result,
        error=outcome.error,
    )
    store = await JobStore.open(state_dir(config))
    try:
        await store.insert(job, Owner.me())
    finally:
        await store.close()
    return job.id


__all__ = ["Outcome", "record_run"]
