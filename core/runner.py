"""What a job runner is and what it gets: the small contract between the engine and the
domains that do the work.

A runner is ``async def runner(ctx: JobContext, params: dict) -> dict``; the dict it
returns is the job's ``result``. It reports progress through ``ctx.progress``, writes
lines to the job log with ``ctx.log``, and takes per-location locks with ``ctx.locks`` so
that conflicting jobs in one engine wait for each other instead of failing. Raising
``JobFailed`` fails the job but keeps a result (a backup with a failed source still made
the other snapshots).

This module sits below the domains: each runner lives beside its domain
(core/backup/job.py, core/restore/job.py, core/verify/job.py, core/locations/jobs.py,
core/maintenance/jobs.py, core/drills/jobs.py) and imports only this; the engine above
(core/jobs/kinds.py) registers them. No domain imports the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from core.errors import AxisorError, Exit, LockHeld, LockUnreadable
from core.progress import RateMeter, eta_seconds

if TYPE_CHECKING:
    from core.config import Config

PRIMARY_LOCATION = "primary"
# How long a job keeps retrying when another process holds the repository lock.
LOCK_WAIT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class JobProgress:
    phase: str
    bytes_done: int = 0
    bytes_total: int | None = None
    files_done: int = 0
    files_total: int | None = None
    rate: float = 0.0  # bytes per second
    eta_seconds: float | None = None
    current: str = ""
    warnings: int = 0
    unit: str = "files"  # what files_done/files_total count ("packs" for a verification)
    # The size of ``current`` in bytes where known: a database table's on disk, while its
    # data passes in a logical dump (``current`` then names it with the size, for people).
    current_size: int | None = None


class JobCancelled(AxisorError):
    exit_code = Exit.INTERRUPTED


class JobFailed(AxisorError):
    """The job failed, but has a result worth keeping (and the exit code the CLI returns)."""

    def __init__(self, message: str, result: dict[str, Any], exit_code: int = Exit.ERROR) -> None:
        super().__init__(message)
        self.result = result
        self.exit_code = exit_code


class JobContext:
    """What a runner gets from the engine for one job.

    ``service`` is the engine's BackupService (core/service/), built on first use. It is
    typed ``Any`` here on purpose: the service sits above some of the domains whose runners
    use it, and this contract must not import upwards."""

    def __init__(
        self,
        job_id: str,
        config: Config,
        service_factory: Callable[[], Any],
        progress: Callable[[JobProgress], None],
        log: Callable[[str], None],
        locks: Callable[[Iterable[str], bool], AbstractAsyncContextManager[None]],
    ) -> None:
        self.job_id = job_id
        self.config = config
        self._service_factory = service_factory
        self._service: Any = None
        self._progress = progress
        self._log = log
        self._locks = locks
        self._cancel = asyncio.Event()

    @property
    def service(self) -> Any:
        if self._service is None:
            self._service = self._service_factory()
        return self._service

    def progress(self, progress: JobProgress) -> None:
        self._progress(progress)

    def log(self, line: str) -> None:
        self._log(line)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled("cancelled")

    def request_cancel(self) -> None:
        self._cancel.set()

    def locks(self, names: Iterable[str], *, exclusive: bool = False) -> AbstractAsyncContextManager[None]:
        """Hold the named locations (shared, or exclusive) for the ``async with`` body."""
        return self._locks(names, exclusive)

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()
            self._service = None


Runner = Callable[[JobContext, dict[str, Any]], Awaitable[dict[str, Any]]]


async def retry_when_locked(
    ctx: JobContext, call: Callable[[], Awaitable[Any]], wait: float = LOCK_WAIT_SECONDS
) -> Any:
    """Run ``call``; while another process holds the repository lock, wait and try again.

    The repository lock is taken before anything is written, so a refused attempt did
    nothing and trying again is safe."""
    deadline = time.monotonic() + wait
    delay = 1.0
    while True:
        try:
            return await call()
        except LockHeld as exc:
            # A lock this process may not read is not waited out: nothing here can tell whether
            # it is live or a leftover, and it will not become readable by itself.
            if isinstance(exc, LockUnreadable) or time.monotonic() + delay > deadline:
                raise
            ctx.log(f"waiting: {exc}")
            ctx.progress(JobProgress(phase="waiting for the repository lock", current=str(exc)))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def rated_progress() -> Callable[..., JobProgress]:
    """Progress with a smoothed rate and an ETA against an exact total, the rate counted from
    now (the work starts)."""
    meter = RateMeter()
    meter.update(time.monotonic(), 0)

    def rated(phase: str, done: int, total: int, **fields: Any) -> JobProgress:
        rate = meter.update(time.monotonic(), done)
        return JobProgress(
            phase=phase,
            bytes_done=done,
            bytes_total=total,
            rate=rate,
            eta_seconds=eta_seconds(done, total, rate),
            **fields,
        )

    return rated


def snapshot_dict(snapshot: Any) -> dict[str, Any]:
    data = asdict(snapshot)
    data["short_id"] = snapshot.short_id
    return data


__all__ = [
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobProgress",
    "LOCK_WAIT_SECONDS",
    "PRIMARY_LOCATION",
    "Runner",
    "rated_progress",
    "retry_when_locked",
    "snapshot_dict",
]
