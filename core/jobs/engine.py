"""The engine in this process: runs jobs, persists them, and streams their events.

Jobs wait in FIFO order for one of ``[schedule] max_concurrent`` slots, then for the
per-location (and per-source) locks their runner asks for. Progress reaches subscribers
at most four times a second per job and the job database at most once a second; every
state change is written before it is announced, so history survives a crash.
"""

from __future__ import annotations

import builtins
import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import Config, ConfigError, PassphraseError
from core.errors import AxisorError, DaemonError, Exit, UsageError
from core.jobs.api import Job, JobEvent, JobProgress, JobState
from core.jobs.kinds import JobCancelled, JobContext, JobFailed, refuse_secrets, runner_for
from core.jobs.store import ROLE_CLI, ROLE_DAEMON, JobStore, Owner, state_dir
from core.repository.keycache import KeyMemory
from core.service import BackupService, PassphraseSource

log = logging.getLogger("axisor.jobs")

PROGRESS_EVENT_INTERVAL = 0.25  # at most ~4 progress events per second per job
PROGRESS_STORE_INTERVAL = 1.0
SUBSCRIBER_QUEUE = 1000


def new_job_id() -> str:
    return secrets.token_hex(6)


def exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, AxisorError):
        return exc.exit_code
    if isinstance(exc, (PassphraseError, ConfigError)):
        return Exit.USAGE
    return Exit.ERROR


class _RWLock:
    """Many shared holders or one exclusive holder; a waiting writer blocks new readers."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    async def acquire(self, exclusive: bool) -> None:
        async with self._cond:
            if exclusive:
                self._writers_waiting += 1
                try:
                    await self._cond.wait_for(lambda: not self._writer and self._readers == 0)
                finally:
                    self._writers_waiting -= 1
                self._writer = True
            else:
                await self._cond.wait_for(lambda: not self._writer and self._writers_waiting == 0)
                self._readers += 1

    async def release(self, exclusive: bool) -> None:
        async with self._cond:
            if exclusive:
                self._writer = False
            else:
                self._readers -= 1
            self._cond.notify_all()


class LockTable:
    def __init__(self) -> None:
        self._locks: dict[str, _RWLock] = {}

    @asynccontextmanager
    async def hold(self, names: Iterable[str], exclusive: bool) -> AsyncIterator[None]:
        # One global order for every job, so two jobs never wait for each other in a cycle.
        wanted = sorted(set(names))
        taken: list[_RWLock] = []
        try:
            for name in wanted:
                lock = self._locks.setdefault(name, _RWLock())
                await lock.acquire(exclusive)
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                await asyncio.shield(lock.release(exclusive))


@dataclass(slots=True)
class _Live:
    job: Job
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    ctx: JobContext | None = None
    cancel_reason: str | None = None
    last_event: float = 0.0
    last_store: float = 0.0
    flush_pending: bool = False
    stopping: bool = False  # cancelled once, or its runner has returned: never cancel the task again


class _Subscription:
    """An events() stream, registered when created so nothing after that is missed."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.queue: asyncio.Queue[JobEvent | None] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        engine._subscribers.add(self)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        event = await self.queue.get()
        if event is None:
            self._engine._subscribers.discard(self)
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        self._engine._subscribers.discard(self)

    def put(self, event: JobEvent | None) -> None:
        if self.queue.full():
            try:  # a slow reader loses the oldest events, never stalls the engine
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                pass
        self.queue.put_nowait(event)


class Engine:
    """An EngineClient that runs the jobs itself (``mode == "embedded"``; the daemon hosts one too)."""

    mode = "embedded"

    def __init__(
        self,
        config: Config,
        passphrase: PassphraseSource,
        *,
        directory: Path | None = None,
        workers: int | None = None,
        role: str = ROLE_CLI,
        key_memory: KeyMemory | None = None,
    ) -> None:
        self.config = config
        self.role = role  # recorded with each job: the daemon's jobs are recovered after a crash
        self._passphrase = passphrase
        self.directory = directory or state_dir(config)
        self._workers = workers
        self.store: JobStore | None = None
        self.owner = Owner.me()
        self._live: dict[str, _Live] = {}
        self._queue: deque[str] = deque()
        self._running = 0
        self._accepting = True
        self._subscribers: set[_Subscription] = set()
        self._locks = LockTable()
        self._background: set[asyncio.Task[Any]] = set()
        self.orphans: list[Job] = []
        # The daemon derives the repository's key once, not per job beside pg_dump
        # (core/repository/keycache.py KeyMemory); an embedded engine runs one job, with
        # the key its command derived ahead when it did (app/cli_run.py).
        self.key_memory = key_memory if key_memory is not None else KeyMemory() if role == ROLE_DAEMON else None

    @property
    def max_concurrent(self) -> int:
        return self.config.schedule.max_concurrent

    async def start(self) -> None:
        self.store = await JobStore.open(self.directory)
        self.orphans = await self.store.mark_orphans(self.owner)
        for job in self.orphans:
            log.warning(
                f"job marked {job.state.value}: its process died",
                extra={"job": job.id, "kind": job.kind, "reason": job.error},
            )
        if self.orphans:
            self._after_finish_hooks(None)

    def _store(self) -> JobStore:
        if self.store is None:
            raise DaemonError("the engine is not started")
        return self.store

    def reload(self, config: Config) -> None:
        """New jobs use ``config``; running ones keep the config they started with."""
        self.config = config
        self._kick()

    @property
    def running(self) -> list[Job]:
        return [lv.job for lv in self._live.values() if lv.job.state == JobState.RUNNING]

    @property
    def busy(self) -> bool:
        return bool(self._live)

    # -- EngineClient ----------------------------------------------------------------

    async def submit(self, kind: str, params: dict[str, Any], *, origin: str = "cli") -> Job:
        runner_for(kind)  # unknown kinds are refused before anything is stored
        if not self._accepting:
            raise DaemonError("the engine is shutting down and takes no new jobs")
        if not isinstance(params, dict):
            raise UsageError("job params must be a JSON object")
        refuse_secrets(params)
        job = Job(
            id=new_job_id(),
            kind=kind,
            params=dict(params),
            state=JobState.PENDING,
            origin=str(origin),
            created_at=datetime.now(UTC),
            started_at=None,
            finished_at=None,
            progress=None,
            result=None,
            error=None,
        )
        await self._store().insert(job, self.owner, self.role)
        self._live[job.id] = _Live(job)
        self._queue.append(job.id)
        log.info("job submitted", extra={"job": job.id, "kind": kind, "origin": job.origin})
        self._emit(JobEvent("submitted", job))
        self._kick()
        return self._live[job.id].job

    async def cancel(self, job_id: str) -> Job:
        job = await self.get(job_id)
        live = self._live.get(job.id)
        if live is None:
            if job.state.finished:
                return job
            raise DaemonError(f"job {job.id} runs in another process ({job.state}); cancel it where it runs")
        if job.id in self._queue:
            self._queue.remove(job.id)
            await self._finish(
                live, JobState.CANCELLED, result={"exit_code": Exit.INTERRUPTED}, error="cancelled before it started"
            )
            return live.job
        live.cancel_reason = live.cancel_reason or "cancelled on request"
        self._stop(live)
        try:
            await asyncio.wait_for(asyncio.shield(live.done.wait()), timeout=30)
        except TimeoutError:
            pass
        return live.job

    async def get(self, job_id: str) -> Job:
        live = self._live.get(job_id)
        if live is not None:
            return live.job
        job = await self._store().get(job_id)
        live = self._live.get(job.id)
        return live.job if live is not None else job

    async def list(self, *, limit: int = 100, states: frozenset[JobState] | None = None) -> list[Job]:
        jobs = await self._store().list(limit=limit, states=states)
        return [self._live[j.id].job if j.id in self._live else j for j in jobs]

    async def log(self, job_id: str) -> builtins.list[str]:
        return await self._store().log(job_id)

    def events(self) -> _Subscription:
        """An AsyncIterator[JobEvent] (JobsAPI) that the caller closes with ``aclose``."""
        return _Subscription(self)

    async def subscribe(self) -> AsyncIterator[JobEvent]:
        """An event stream already registered: nothing after this call is missed."""
        return self.events()

    async def wait(self, job_id: str) -> Job:
        job = await self.get(job_id)
        live = self._live.get(job.id)
        if live is not None:
            await live.done.wait()
            return live.job
        while not job.state.finished:  # owned by another process: its record is all we see
            await asyncio.sleep(0.5)
            job = await self._store().get(job.id)
        return job

    async def drain(self) -> None:
        """Until every job this engine holds (pending or running) has finished."""
        while self._live:
            await next(iter(self._live.values())).done.wait()

    async def close(self) -> None:
        """Let every job this engine holds finish, then release the database. Jobs outlive
        the front end that started them: a console closed (or whose terminal hung up)
        mid-restore still finishes the restore. Stopping a job is ``cancel``'s business."""
        if self.store is not None:
            await self.drain()
        await self.shutdown(grace=0.0, reason="the engine was closed")

    # -- lifecycle ---------------------------------------------------------------------

    async def shutdown(self, *, grace: float, reason: str) -> None:
        """Take no new work, let running jobs finish within ``grace`` seconds, then stop them."""
        self._accepting = False
        while self._queue:
            live = self._live[self._queue.popleft()]
            await self._finish(
                live, JobState.CANCELLED, result={"exit_code": Exit.INTERRUPTED}, error=f"not started: {reason}"
            )
        running = [lv for lv in self._live.values() if lv.task is not None]
        if running and grace > 0:
            log.info("waiting for running jobs", extra={"jobs": [lv.job.id for lv in running], "grace": grace})
            await asyncio.wait([asyncio.ensure_future(lv.done.wait()) for lv in running], timeout=grace)
        for lv in list(self._live.values()):
            if lv.task is not None and not lv.done.is_set():
                lv.cancel_reason = f"stopped: {reason}"
                self._stop(lv)
        for lv in list(self._live.values()):
            await lv.done.wait()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        for sub in list(self._subscribers):
            sub.put(None)
        if self.store is not None:
            await self.store.close()
            self.store = None

    def _stop(self, live: _Live) -> None:
        if live.stopping:
            return
        live.stopping = True
        if live.ctx is None:
            return  # its task has not run yet: _run sees ``stopping`` and never starts the runner
        live.ctx.request_cancel()
        if live.task is not None:
            live.task.cancel()

    def _kick(self) -> None:
        while self._queue and self._accepting and self._running < self.max_concurrent:
            live = self._live[self._queue.popleft()]
            self._running += 1
            live.task = asyncio.create_task(self._run(live), name=f"job-{live.job.id}")

    # -- one job ----------------------------------------------------------------------

    async def _run(self, live: _Live) -> None:
        if live.stopping:
            self._running -= 1
            await self._finish(
                live,
                JobState.CANCELLED,
                result={"exit_code": Exit.INTERRUPTED},
                error=live.cancel_reason or "cancelled before it started",
            )
            self._kick()
            return
        config = self.config
        job = replace(live.job, state=JobState.RUNNING, started_at=datetime.now(UTC))
        live.job = job
        ctx = JobContext(
            job.id,
            config,
            lambda: BackupService(
                config, self._passphrase, workers=self._workers, state_dir=self.directory, key_memory=self.key_memory
            ),
            lambda p: self._progress(live, p),
            lambda line: self._log(live, line),
            self._locks.hold,
        )
        live.ctx = ctx
        state, result, error = JobState.FAILED, None, None
        try:
            await self._store().update(job)
            log.info("job started", extra={"job": job.id, "kind": job.kind})
            self._emit(JobEvent("started", job))
            runner = runner_for(job.kind)
            result = await runner(ctx, job.params)
            state = JobState.COMPLETED
        except (asyncio.CancelledError, JobCancelled):
            state, error = JobState.CANCELLED, live.cancel_reason or "cancelled"
        except JobFailed as exc:
            result, error = exc.result, str(exc)
        except Exception as exc:  # a job's failure is recorded, never the engine's end
            code = exit_code_of(exc)
            if isinstance(exc, (AxisorError, PassphraseError, ConfigError)):
                error = str(exc)
            else:
                error = f"unexpected error: {type(exc).__name__}: {exc}"
                log.exception("job raised an unexpected error", extra={"job": job.id, "kind": job.kind})
            result = {"exit_code": code}
        finally:
            live.stopping = True
            try:
                await asyncio.shield(ctx.close())
            except Exception as exc:
                log.warning("closing the job's service failed", extra={"job": job.id, "error": str(exc)})
            self._running -= 1
        if state == JobState.CANCELLED:
            result = {**(result or {}), "exit_code": Exit.INTERRUPTED}
        await self._finish(live, state, result=result, error=error)
        self._kick()

    async def _finish(
        self, live: _Live, state: JobState, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        job = replace(live.job, state=state, finished_at=datetime.now(UTC), result=result, error=error)
        live.job = job
        try:
            store = self._store()
            if error:
                await store.append_log(job.id, f"{state.value}: {error}")
            await store.update(job)
        except Exception as exc:
            # The record could not be written (a full state folder...): the job still ends here,
            # and whoever waits for it learns why (the exit code and ``record_error``).
            code = exit_code_of(exc) if state != JobState.CANCELLED else 130
            job = replace(
                job, result={**(result or {}), "exit_code": code, "record_error": str(exc)}, error=error or str(exc)
            )
            live.job = job
            log.warning("the job's record could not be written", extra={"job": job.id, "error": str(exc)})
        seconds = (job.finished_at - job.started_at).total_seconds() if job.started_at and job.finished_at else 0
        log.log(
            logging.INFO if state == JobState.COMPLETED else logging.WARNING,
            "job finished",
            extra={
                "job": job.id,
                "kind": job.kind,
                "state": state.value,
                "seconds": round(seconds, 3),
                "error": job.error,
            },
        )
        # Announced and released whatever happened above: a waiter (the CLI, drain()) never hangs.
        self._emit(JobEvent("finished", job, message=job.error or ""))
        self._live.pop(job.id, None)
        live.done.set()
        self._after_finish_hooks(job)

    def _after_finish_hooks(self, job: Job | None) -> None:
        from core.jobs import notify

        store = self.store
        if store is None:
            return
        config = self.config
        if config.engine.metrics_file is not None:
            self._spawn(self._write_metrics(store, config))
        if job is not None and notify.wanted(config.notifications, job):
            self._spawn(notify.notify(config.notifications, job))
        if job is not None and notify.tripped(job):
            self._spawn(notify.notify_tripwire(config.notifications, job))

    async def _write_metrics(self, store: Any, config: Any) -> None:
        from core.jobs import metrics, status

        health = await status.evaluate(config, store)  # the one evaluation `status` makes
        await metrics.write_metrics(store, config.engine.metrics_file, health)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    def _progress(self, live: _Live, progress: JobProgress) -> None:
        if live.job.state != JobState.RUNNING:
            return
        live.job = replace(live.job, progress=progress)
        now = time.monotonic()
        if now - live.last_event >= PROGRESS_EVENT_INTERVAL:
            self._flush_progress(live)
        elif not live.flush_pending:
            live.flush_pending = True
            asyncio.get_running_loop().call_later(
                PROGRESS_EVENT_INTERVAL - (now - live.last_event), self._flush_progress, live
            )

    def _flush_progress(self, live: _Live) -> None:
        live.flush_pending = False
        if live.job.state != JobState.RUNNING:
            return
        now = time.monotonic()
        live.last_event = now
        self._emit(JobEvent("progress", live.job))
        if now - live.last_store >= PROGRESS_STORE_INTERVAL and self.store is not None:
            live.last_store = now
            self._spawn(self.store.update_progress(live.job))

    def _log(self, live: _Live, line: str) -> None:
        if self.store is not None:
            self._spawn(self.store.append_log(live.job.id, line))
        self._emit(JobEvent("log", live.job, message=line))

    def _emit(self, event: JobEvent) -> None:
        for sub in list(self._subscribers):
            sub.put(event)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("background task failed", extra={"error": str(task.exception())})


async def open_engine(config: Config, passphrase: PassphraseSource, **kwargs: Any) -> Engine:
    engine = Engine(config, passphrase, **kwargs)
    await engine.start()
    return engine


__all__ = ["Engine", "LockTable", "exit_code_of", "new_job_id", "open_engine"]
