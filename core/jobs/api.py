"""The job-engine contract shared by the engine, the scheduler, the console and the CLI.

Front ends hold an ``EngineClient`` and never know whether it is the engine in this
process (``mode == "embedded"``) or a client of the daemon's socket (``"daemon"``).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from core.runner import JobProgress  # the runners' contract (core/runner.py); re-exported here

if TYPE_CHECKING:
    from core.repository.keycache import KeyMemory
    from core.config import Config
    from core.service import PassphraseSource


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The daemon that ran it died (kill -9, a crash, the host lost power): not damage and
    # not the job's fault. The next daemon start releases its locks, notifies, and reruns
    # or catches it up (core/daemon/recovery.py).
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED})


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: str  # "backup" | "restore" | "verify" | "prune" | "copy" | "drill" | ...
    params: dict[str, Any]
    state: JobState
    origin: str  # "cli" | "console" | "scheduler" | "api"
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: JobProgress | None
    result: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class JobEvent:
    type: str  # "submitted" | "started" | "progress" | "log" | "finished"
    job: Job
    message: str = ""


class EngineClient(Protocol):
    mode: str  # "daemon" | "embedded"

    async def submit(self, kind: str, params: dict[str, Any], *, origin: str = "cli") -> Job: ...

    async def cancel(self, job_id: str) -> Job: ...

    async def get(self, job_id: str) -> Job:
        """Unknown id -> core.errors.JobNotFound."""
        ...

    async def list(self, *, limit: int = 100, states: frozenset[JobState] | None = None) -> list[Job]:
        """Newest first."""
        ...

    async def log(self, job_id: str) -> builtins.list[str]: ...

    def events(self) -> AsyncIterator[JobEvent]:
        """Live stream from now on; progress at most ~4/s per job."""
        ...

    async def wait(self, job_id: str) -> Job:
        """Until the job is finished (completed, failed, cancelled or interrupted)."""
        ...

    async def close(self) -> None:
        """Embedded: waits for the jobs this engine runs to finish first. Daemon: disconnects."""
        ...


async def connect_engine(
    config: Config, passphrase: PassphraseSource, *, prefer_daemon: bool = True, key_memory: KeyMemory | None = None
) -> EngineClient:
    """The daemon's socket if one answers, else an embedded Engine in this process (its jobs
    opening the repository with ``key_memory``, when given: a key derived ahead)."""
    from core.jobs.client import DaemonClient, socket_path
    from core.jobs.engine import Engine

    if prefer_daemon:
        client = await DaemonClient.try_connect(socket_path(config))
        if client is not None:
            return client
    engine = Engine(config, passphrase, key_memory=key_memory)
    await engine.start()
    return engine


__all__ = ["EngineClient", "FINISHED_STATES", "Job", "JobEvent", "JobProgress", "JobState", "connect_engine"]
