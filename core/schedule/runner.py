"""The Scheduler: turns owed runs into jobs, one tick at a time, with an injectable clock.

Each tick:

1. reads the pause state and the last occurrence handled per schedule (state DB);
2. asks ``plan.due_run`` what each schedule owes now: at most one run, however many
   occurrences a downtime swallowed (caught up once, with the count recorded);
3. queues owed runs whose jitter delay has passed; a run already queued for the same
   schedule absorbs a newer one (recorded as ``skipped``), so a long job never causes a
   backlog;
4. submits queued runs, oldest first, unless one of their sources (or, for repository
   tasks, the same task) is held by a job that is pending or running in the engine, or
   ``max_concurrent`` scheduler jobs are already active; a run that must wait is recorded
   once as ``deferred`` with the reason and submitted when it can go.

The last occurrence is written only when a run is submitted (or fails to submit), so a
daemon that stops while runs are queued owes them again at its next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.config import Config, resolve_passphrase
from core.service import PassphraseSource
from core.errors import AxisorError, DaemonError, Exit
from core.jobs.api import EngineClient, Job, JobState
from core.jobs.store import DB_NAME
from core.repository.snapshot import Snapshot
from core.schedule.model import Schedule, configured_sources, find_schedule, schedules_from_config
from core.schedule.plan import DueRun, due_run, occurrences, jitter
from core.schedule.policy import TypeDecision, choose_type
from core.schedule.state import RunRecord, ScheduleStore, store_path

log = logging.getLogger("axisor.scheduler")

Clock = Callable[[], datetime]
Catalog = Callable[[], Awaitable[Sequence[Snapshot]]]

ACTIVE = frozenset({JobState.PENDING, JobState.RUNNING})
# Tasks a write-only key may not do (core/service/session.py refuses them with exit 27).
FULL_KEY_TASKS = frozenset({"verify", "prune", "drill", "restore-test"})
# Longest sleep between ticks: a clock that jumps (suspend, NTP step) is noticed this soon.
MAX_SLEEP = 60.0
# While runs wait for a job to finish, look again this often.
WAIT_POLL = 10.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Queued:
    schedule: str
    occurrence: datetime
    missed: int
    trigger: str  # cron | catch-up
    deferred: str = ""  # why it waits, once recorded


def job_params(schedule: Schedule, decision: TypeDecision | None = None) -> dict[str, Any]:
    """The engine job a schedule's run becomes (core/jobs/kinds.py reads these keys)."""
    params: dict[str, Any] = {"schedule": schedule.name}
    if schedule.task == "backup":
        params.update(
            type=decision.type if decision else "incremental",
            sources=list(schedule.sources),
            tags=["scheduled", f"schedule:{schedule.name}"],
        )
    elif schedule.task == "verify":
        params["full"] = schedule.full
    elif schedule.task == "copy" and schedule.locations:
        params["locations"] = list(schedule.locations)
    elif schedule.task == "restore-test":
        params["sample_files"] = schedule.sample_files
        if schedule.sample_percent is not None:
            params["share"] = schedule.sample_percent
    return params


def job_holds(job: Job, all_sources: Sequence[str]) -> frozenset[str]:
    """What an active engine job occupies, in the terms of ``Schedule.holds``."""
    if job.kind == "backup":
        named = job.params.get("sources") or []
        if not named:
            return frozenset(f"source:{s}" for s in all_sources)
        out: set[str] = set()
        for name in named:
            name = str(name)
            hits = [s for s in all_sources if s == name or s.split("/", 1)[-1] == name or s.split("/", 1)[0] == name]
            out.update(f"source:{s}" for s in (hits or [name]))
        return frozenset(out)
    return frozenset({f"task:{job.kind}"})


class Scheduler:
    def __init__(
        self,
        config: Config,
        engine: EngineClient,
        store: ScheduleStore,
        *,
        catalog: Catalog | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self._catalog = catalog
        self._queue: dict[str, Queued] = {}
        self._started = clock()
        # Jobs are stamped by the engine's wall clock, not the scheduler's (a test moves that one).
        self._started_wall = datetime.now(UTC)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reload(config)

    # -- configuration ----------------------------------------------------------------

    def reload(self, config: Config) -> None:
        """Take a new config (SIGHUP); queued runs of schedules that are gone are dropped."""
        self.config = config
        self.schedules: tuple[Schedule, ...] = schedules_from_config(config)
        names = {s.name for s in self.schedules}
        self._queue = {k: v for k, v in self._queue.items() if k in names}
        self._wake.set()

    @property
    def active(self) -> bool:
        return self.config.schedule.enabled

    # -- one pass ---------------------------------------------------------------------

    async def tick(self) -> list[RunRecord]:
        """Queue what is owed now and submit what may go; returns the decisions recorded."""
        now = self.clock()
        records: list[RunRecord] = []
        if not self.active:
            return records
        states = await self.store.states()
        for schedule in self.schedules:
            state = states.get(schedule.name)
            if state is None or state.last_occurrence is None:
                # First sight: owe nothing for the past, start from the next occurrence.
                await self.store.set_last(schedule.name, now)
                continue
            if state.paused or not schedule.enabled:
                self._queue.pop(schedule.name, None)
                continue
            due = due_run(schedule, state.last_occurrence, now)
            if due is None or due.not_before > now:
                continue
            records.extend(await self._enqueue(schedule, due, now))
        records.extend(await self._submit_queued(now))
        return records

    async def _enqueue(self, schedule: Schedule, due: DueRun, now: datetime) -> list[RunRecord]:
        trigger = "catch-up" if due.missed or due.occurrence < self._started else "cron"
        queued = self._queue.get(schedule.name)
        if queued is None:
            self._queue[schedule.name] = Queued(schedule.name, due.occurrence, due.missed, trigger)
            return []
        if due.occurrence <= queued.occurrence:
            return []
        # Still waiting when the next occurrence arrives: one run stands for both.
        log.info(
            "scheduled run skipped",
            extra={
                "schedule": schedule.name,
                "occurrence": queued.occurrence.isoformat(),
                "superseded_by": due.occurrence.isoformat(),
            },
        )
        skipped = await self.store.record(
            RunRecord(
                schedule.name,
                queued.occurrence,
                now,
                queued.trigger,
                "skipped",
                missed=queued.missed,
                detail=f"superseded by the {due.occurrence.isoformat()} run while waiting"
                + (f" ({queued.deferred})" if queued.deferred else ""),
            )
        )
        # due.missed counts from the last submitted occurrence, so it already includes
        # the superseded one.
        self._queue[schedule.name] = replace(queued, occurrence=due.occurrence, missed=due.missed, trigger="catch-up")
        return [skipped]

    async def _submit_queued(self, now: datetime) -> list[RunRecord]:
        if not self._queue:
            return []
        try:
            await self._sweep_orphans()
            active = await self.engine.list(limit=1000, states=ACTIVE)
        except DaemonError as exc:
            log.warning("scheduler cannot list the engine's jobs", extra={"error": str(exc)})
            return []
        all_sources = configured_sources(self.config)
        busy: dict[str, str] = {}
        for job in active:
            for hold in job_holds(job, all_sources):
                busy.setdefault(hold, job.id)
        running = sum(1 for job in active if job.origin == "scheduler")
        records: list[RunRecord] = []
        for queued in sorted(self._queue.values(), key=lambda q: (q.occurrence, q.schedule)):
            schedule = find_schedule(self.schedules, queued.schedule)
            clash = sorted(h for h in schedule.holds if h in busy)
            if clash:
                why = f"{clash[0].split(':', 1)[1]} is busy with job {busy[clash[0]]}"
            elif running >= self.config.schedule.max_concurrent:
                why = f"max_concurrent = {self.config.schedule.max_concurrent} scheduled jobs already active"
            else:
                why = ""
            if why:
                if queued.deferred != why:
                    log.info("scheduled run deferred", extra={"schedule": schedule.name, "reason": why})
                    records.append(
                        await self.store.record(
                            RunRecord(
                                schedule.name,
                                queued.occurrence,
                                now,
                                queued.trigger,
                                "deferred",
                                missed=queued.missed,
                                detail=why,
                            )
                        )
                    )
                    self._queue[schedule.name] = replace(queued, deferred=why)
                continue
            try:
                record = await self._submit(schedule, queued.occurrence, queued.trigger, queued.missed, now)
            except DaemonError as exc:
                # The engine is stopping or not started: the run stays owed (and queued).
                log.warning(
                    "scheduled run kept for later: the engine takes no jobs",
                    extra={"schedule": schedule.name, "error": str(exc)},
                )
                break
            records.append(record)
            del self._queue[schedule.name]
            await self.store.set_last(schedule.name, queued.occurrence)
            if record.outcome == "submitted":
                running += 1
                for hold in schedule.holds:
                    busy[hold] = record.job_id or ""
        return records

    async def _refused_by_key(self, schedule: Schedule) -> str | None:
        """A default schedule of a task a write-only key may not do (verify, prune, drill,
        restore-test) whose newest run since this scheduler started was refused for the key
        (exit 27): that job's id, and the schedule is skipped instead of failing again at
        every occurrence. A restart tries once more (the key may have changed since);
        a configured schedule is always submitted, as asked."""
        if schedule.origin != "default" or schedule.task not in FULL_KEY_TASKS:
            return None
        try:
            finished = await self.engine.list(limit=200, states=frozenset({JobState.FAILED, JobState.COMPLETED}))
        except DaemonError:
            return None
        for job in finished:  # newest first
            if job.kind != schedule.task or job.params.get("schedule") != schedule.name:
                continue
            if job.finished_at is None or job.finished_at < self._started_wall:
                return None
            refused = job.state == JobState.FAILED and (job.result or {}).get("exit_code") == Exit.KEY_REFUSED
            return job.id if refused else None
        return None

    async def _sweep_orphans(self) -> None:
        """Fail jobs left pending/running by a process that died (a killed CLI backup).

        The engine does this when it starts; a daemon runs for months, and without this a
        dead CLI run of a source would hold that source's schedule back until a restart.
        Only an in-process engine has the job store at hand; a daemon client does not.
        """
        store, owner = getattr(self.engine, "store", None), getattr(self.engine, "owner", None)
        if store is not None and owner is not None and hasattr(store, "mark_orphans"):
            for job in await store.mark_orphans(owner):
                log.warning(
                    f"job marked {job.state.value}: its process died",
                    extra={"job": job.id, "kind": job.kind, "reason": job.error},
                )

    async def _submit(
        self,
        schedule: Schedule,
        occurrence: datetime,
        trigger: str,
        missed: int,
        now: datetime,
        *,
        origin: str = "scheduler",
    ) -> RunRecord:
        decision: TypeDecision | None = None
        refused = await self._refused_by_key(schedule) if origin == "scheduler" else None
        if refused is not None:
            return await self.store.record(
                RunRecord(
                    schedule.name,
                    occurrence,
                    now,
                    trigger,
                    "skipped",
                    missed=missed,
                    detail=f"not this host's: its key is write-only (job {refused} was refused, exit 27); "
                    f"{schedule.task} runs on a host with the full key",
                )
            )
        try:
            if schedule.task == "backup":
                decision = await self.decide_type(schedule, now)
            job = await self.engine.submit(schedule.task, job_params(schedule, decision), origin=origin)
        except DaemonError:
            raise
        except AxisorError as exc:
            log.error("scheduled run not submitted", extra={"schedule": schedule.name, "error": str(exc)})
            return await self.store.record(
                RunRecord(
                    schedule.name,
                    occurrence,
                    now,
                    trigger,
                    "failed",
                    missed=missed,
                    type=decision.type if decision else None,
                    detail=f"not submitted: {exc}",
                )
            )
        detail = decision.reason if decision else schedule.describe()
        if missed:
            detail += f"; {missed} earlier occurrence(s) missed, caught up once"
        log.info(
            "scheduled job submitted",
            extra={
                "schedule": schedule.name,
                "job": job.id,
                "kind": job.kind,
                "trigger": trigger,
                "missed": missed,
                "type": decision.type if decision else None,
                "occurrence": occurrence.isoformat(),
            },
        )
        return await self.store.record(
            RunRecord(
                schedule.name,
                occurrence,
                now,
                trigger,
                "submitted",
                job_id=job.id,
                type=decision.type if decision else None,
                missed=missed,
                detail=detail,
            )
        )

    async def decide_type(self, schedule: Schedule, now: datetime) -> TypeDecision:
        catalog: Sequence[Snapshot] = ()
        if schedule.type in ("auto", "differential") and self._catalog is not None:
            try:
                catalog = await self._catalog()
            except AxisorError as exc:
                # Unreadable catalog: full is the type that cannot be wrong.
                return TypeDecision("full", f"catalog unreadable ({exc}); full is always safe")
        return choose_type(
            schedule.type, schedule.sources, catalog, now=now, full_every_days=self.config.schedule.full_every_days
        )

    # -- operator actions -------------------------------------------------------------

    async def run_now(self, name: str, *, origin: str = "cli") -> RunRecord:
        """Submit a schedule's job now, outside its cron; its timetable is unchanged."""
        schedule = find_schedule(self.schedules, name)
        now = self.clock()
        return await self._submit(schedule, now, "manual", 0, now, origin=origin)

    async def pause(self, name: str) -> bool:
        find_schedule(self.schedules, name)
        self._queue.pop(name, None)
        return await self.store.set_paused(name, True, self.clock())

    async def resume(self, name: str) -> bool:
        find_schedule(self.schedules, name)
        changed = await self.store.set_paused(name, False, self.clock())
        self._wake.set()
        return changed

    # -- the loop ---------------------------------------------------------------------

    def next_wake(self, now: datetime) -> float:
        """Seconds until something may be owed: the nearest occurrence (with jitter)."""
        if self._queue:
            return WAIT_POLL
        soonest = MAX_SLEEP
        for schedule in self.schedules:
            if not schedule.enabled:
                continue
            # Start a jitter's width back: an occurrence already past may still be due later.
            since = now - timedelta(seconds=schedule.jitter_seconds)
            for instant in occurrences(schedule.cron, schedule.timezone, since):
                wait = (instant + jitter(schedule, instant) - now).total_seconds()
                if wait > 0 or instant > now:
                    soonest = min(soonest, max(wait, 0.0))
                    break
        return soonest

    async def run(self) -> None:
        """Tick until ``stop()``; errors of one tick are logged, never end the loop."""
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - a daemon's scheduler must survive a bad tick
                log.exception("scheduler tick failed")
            # A hair past the due instant, so the tick that wakes finds it owed.
            delay = self.next_wake(self.clock()) + 0.05
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        """Run the loop as a task of the current event loop (the daemon's one call)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="axisor-scheduler")
        return self._task

    async def aclose(self) -> None:
        """Stop the loop, wait for the tick in progress, close the state store."""
        self.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.store.close()


def service_catalog(scheduler_config: Callable[[], Config], passphrase: PassphraseSource) -> Catalog:
    """A catalog read through a short-lived BackupService with the current config."""

    async def read() -> Sequence[Snapshot]:
        from core.service import BackupService

        svc = BackupService(scheduler_config(), passphrase, workers=2)
        try:
            snaps, _damaged = await svc.snapshots()
            return snaps
        finally:
            await svc.close()

    return read


async def open_scheduler(
    config: Config,
    engine: EngineClient,
    passphrase: PassphraseSource,
    *,
    directory: Path | None = None,
    clock: Clock = utc_now,
) -> Scheduler:
    """A Scheduler on the state database (in ``directory``, else the config's state dir),
    reading the catalog of the config's repository.

    Then ``scheduler.start()``; ``scheduler.reload(config)`` on SIGHUP; ``await
    scheduler.aclose()`` before the engine shuts down (``attach_to_daemon`` does all three).
    """
    path = directory / DB_NAME if directory is not None else store_path(config)
    store = await ScheduleStore.open(path)
    holder: list[Scheduler] = []
    scheduler = Scheduler(
        config, engine, store, clock=clock, catalog=service_catalog(lambda: holder[0].config, passphrase)
    )
    holder.append(scheduler)
    return scheduler


async def owe_interrupted(config: Config, directory: Path, job: Job, now: datetime) -> str:
    """A scheduled run the dead daemon was running (core/daemon/recovery.py): owe its
    occurrence again, so that the scheduler's next tick catches it up exactly as it catches
    up after any downtime (once, folded with occurrences missed since). Returns what was done.

    The last occurrence is moved back to just before the interrupted one and an
    ``interrupted`` run record names the job; an occurrence already interrupted once is
    not owed again (a job that kills its daemon must not do so at every start)."""
    name = str(job.params.get("schedule") or "")
    schedule = next((s for s in schedules_from_config(config) if s.name == name), None)
    if schedule is None:
        return f"not caught up: schedule {name} is no longer configured"
    if not config.schedule.enabled:
        return f"not caught up: scheduling is disabled ([schedule] enabled = false); run schedule {name} by hand"
    if not schedule.enabled:
        return f"not caught up: schedule {name} is disabled"
    store = await ScheduleStore.open(directory / DB_NAME)
    try:
        runs = await store.runs(name, limit=500)
        submitted = next((r for r in runs if r.job_id == job.id and r.outcome == "submitted"), None)
        if submitted is None:
            return f"not caught up: schedule {name} has no record of submitting job {job.id}"
        occurrence = submitted.occurrence
        if any(r.outcome == "interrupted" and r.occurrence == occurrence for r in runs):
            return (
                f"not caught up again: the {occurrence.isoformat()} run of schedule {name} was already "
                "interrupted once; its next occurrence runs as usual"
            )
        state = (await store.states()).get(name)
        if state is not None and state.paused:
            return f"not caught up: schedule {name} is paused (resuming owes no past run)"
        if state is None or state.last_occurrence is None or state.last_occurrence >= occurrence:
            await store.set_last(name, occurrence - timedelta(microseconds=1))
        await store.record(
            RunRecord(
                name,
                occurrence,
                now,
                submitted.trigger,
                "interrupted",
                job_id=job.id,
                type=submitted.type,
                missed=submitted.missed,
                detail=f"job {job.id} was interrupted (its daemon died); this occurrence is owed again and caught "
                "up once by the missed-run policy",
            )
        )
    finally:
        await store.close()
    log.info(
        "interrupted scheduled run owed again",
        extra={"schedule": name, "job": job.id, "occurrence": occurrence.isoformat()},
    )
    return f"owed again by schedule {name}: the scheduler catches up its {occurrence.isoformat()} run once"


def attach_to_daemon(daemon: Any) -> None:
    """Run a scheduler inside ``core.daemon.server.Daemon``: started after its engine, stopped
    before it, reloaded with its config on SIGHUP, sharing its state directory."""
    running: list[Scheduler] = []

    def passphrase(confirm: bool) -> str:
        # Read again per catalog read from the current config, as the daemon's jobs do.
        return resolve_passphrase(daemon.config.storage, interactive=False)

    async def start() -> None:
        scheduler = await open_scheduler(daemon.config, daemon.engine, passphrase, directory=daemon.engine.directory)
        running.append(scheduler)
        scheduler.start()
        log.info(
            "scheduler started", extra={"enabled": scheduler.active, "schedules": [s.name for s in scheduler.schedules]}
        )

    async def stop() -> None:
        while running:
            await running.pop().aclose()

    def reload(config: Config) -> None:
        for scheduler in running:
            scheduler.reload(config)

    daemon.services.append((start, stop))
    daemon.reload_hooks.append(reload)


__all__ = [
    "Catalog",
    "Clock",
    "Queued",
    "Scheduler",
    "attach_to_daemon",
    "job_holds",
    "job_params",
    "open_scheduler",
    "owe_interrupted",
    "service_catalog",
    "utc_now",
]
