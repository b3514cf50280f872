"""After the daemon died: what happens to the jobs it was running, at its next start.

A daemon killed with SIGKILL (or crashed, or on a host that lost power) leaves its jobs
``pending``/``running`` in the job database and, for a job that was writing, a repository
lock naming its pid. The next engine to open the database marks them ``interrupted``
(core/jobs/store.py); the next *daemon* start then recovers each one once:

1. releases the repository locks whose owner is that dead daemon (same host, same pid and
   the same process start time; the lock's own owner-alive rules must agree it is stale),
   on every configured location; nobody else's lock is touched;
2. decides (``decide``, pure) what becomes of the job:

   - a scheduled run (origin ``scheduler``) is owed again by its schedule: the scheduler
     catches it up once, folded with any occurrence missed meanwhile (its missed-run
     policy, core/schedule/plan.py); an occurrence already interrupted once is not owed
     a third time;
   - a backup, verify or copy started by hand is re-queued once, as a new job whose
     params carry ``resumed_from`` (the interrupted job's id); a rerun that is itself
     interrupted is not re-queued again, and a recovery interrupted after it submitted the
     rerun finds that rerun at the next start instead of submitting another;
   - a restore is never rerun automatically (the target may have changed since; a person
     decides), nor is a prune, repair or drill started by hand: the record says to run it
     again;
3. records what was done on the job (``result.recovery``, the error text, the log) and
   sends a ``job.interrupted`` notification (when ``[notifications] on_failure``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.errors import AxisorError
from core.jobs.api import Job
from core.jobs.store import Owner

if TYPE_CHECKING:
    from core.config import Config
    from core.jobs.engine import Engine

log = logging.getLogger("axisor.daemon")

# Kinds a by-hand job of which is re-queued once: they only add or read, so running them
# again is safe and gives what was asked for.
RERUN_KINDS = frozenset({"backup", "verify", "copy"})
RESUMED_FROM = "resumed_from"  # the param a re-queued job carries
LOCK_CHECK_SECONDS = 60.0  # per location: an unreachable remote must not hold up the start


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # "requeue" | "schedule" | "none"
    reason: str


def decide(job: Job) -> Decision:
    """What the next daemon start does with ``job`` if the daemon dies while it runs."""
    # A restore-test writes only into its own scratch: it is not "a restore" here.
    if job.kind.startswith("restore") and job.kind != "restore-test":  # whoever started it
        return Decision("none", "a restore is never rerun automatically: check the target, then run it again")
    schedule = job.params.get("schedule")
    if job.origin == "scheduler" and isinstance(schedule, str) and schedule:
        return Decision("schedule", f"its schedule {schedule} catches the run up once when the daemon restarts")
    if job.params.get(RESUMED_FROM):
        return Decision(
            "none",
            f"it was already the rerun of interrupted job {job.params[RESUMED_FROM]}; "
            "it is not re-queued a second time: run it again by hand",
        )
    if job.kind in RERUN_KINDS:
        return Decision("requeue", "the daemon re-queues it once when it restarts")
    return Decision("none", f"a {job.kind} job started by hand is not rerun automatically: run it again by hand")


def lost_connection_message(job_id: str, job: Job | None, doing: str = "following") -> str:
    """The one line a client prints when the daemon's connection drops under it."""
    what = decide(job).reason if job is not None else "the daemon's next start recovers it"
    return (
        f"the daemon stopped while {doing} job {job_id} (connection lost); {what} — see `axisor-backup jobs {job_id}`"
    )


def _is_owned_by(info: Any, owner: Owner) -> bool:
    return (
        info.host == owner.host
        and info.pid == owner.pid
        and (not info.start or not owner.start or info.start == owner.start)
    )


async def release_locks(config: Config, owners: list[Owner]) -> tuple[list[dict[str, Any]], list[str]]:
    """Remove the repository locks held by the dead daemons ``owners`` on every location:
    (the locks removed, the locations that could not be checked, each with why)."""
    from core.repository.lock import list_locks
    from core.storage.factory import open_location_backends
    from core.storage.backend import ObjectNotFound

    here = [o for o in owners if o.host == socket.gethostname()]
    removed: list[dict[str, Any]] = []
    problems: list[str] = []
    if not here:
        return removed, problems
    try:
        backends = open_location_backends(config)
    except (AxisorError, OSError, ValueError) as exc:
        return removed, [f"the locations could not be opened: {exc}"]
    for name, backend in backends:
        try:
            infos = await asyncio.wait_for(list_locks(backend), LOCK_CHECK_SECONDS)
            for info in infos:
                owner = next((o for o in here if _is_owned_by(info, o)), None)
                # The lock's own rules must agree its holder is gone (core/repository/lock.py).
                reason = info.stale_reason() if owner is not None else None
                if reason is None:
                    continue
                try:
                    await backend.delete(info.key)
                except ObjectNotFound:
                    continue
                removed.append(
                    {
                        "location": name,
                        "key": info.key,
                        "lock": info.describe(),
                        "why": reason,
                        "pid": info.pid,
                        "host": info.host,
                    }
                )
        except (AxisorError, OSError, TimeoutError) as exc:
            problems.append(f"location {name}: locks not checked ({exc or type(exc).__name__})")
        finally:
            try:
                await backend.close()
            except (AxisorError, OSError):
                pass
    return removed, problems


RERUN_SEARCH = 1000  # newest jobs of the kind searched for an earlier rerun


async def _rerun_of(store: Any, job: Job) -> Job | None:
    """The job already submitted as ``job``'s rerun (params ``resumed_from``), if any."""
    for other in await store.list(limit=RERUN_SEARCH, kinds=(job.kind,)):
        if other.params.get(RESUMED_FROM) == job.id:
            return other
    return None


async def recover(engine: Engine, config: Config) -> list[Job]:
    """Recover every interrupted job of a dead daemon not recovered yet; returns them."""
    from core.jobs import notify

    store = engine.store
    if store is None:
        return []
    pending = await store.unrecovered()
    if not pending:
        return []
    owners = list(dict.fromkeys(owner for _, owner in pending))
    removed, problems = await release_locks(config, owners)
    for lock in removed:
        log.warning("stale lock of the dead daemon released", extra=lock)
    for problem in problems:
        log.warning("locks of the dead daemon not checked", extra={"detail": problem})
    recovered: list[Job] = []
    now = datetime.now(UTC)
    for job, owner in pending:
        decision = decide(job)
        recovery: dict[str, Any] = {
            "action": decision.action,
            "at": now.isoformat(),
            "daemon_pid": owner.pid,
            "locks_released": [lk for lk in removed if (lk["host"], lk["pid"]) == (owner.host, owner.pid)],
            "lock_problems": problems,
        }
        if decision.action == "requeue":
            # A daemon that died between submitting the rerun and recording it left the
            # rerun behind: found, not submitted a second time (once means once).
            earlier = await _rerun_of(store, job)
            if earlier is not None:
                recovery.update(
                    rerun_job=earlier.id,
                    summary=f"already re-queued as job {earlier.id} by a recovery that was itself interrupted",
                )
            else:
                try:
                    new = await engine.submit(job.kind, {**job.params, RESUMED_FROM: job.id}, origin=job.origin)
                except AxisorError as exc:
                    recovery.update(action="none", summary=f"not re-queued: {exc}")
                else:
                    recovery.update(rerun_job=new.id, summary=f"re-queued once as job {new.id}")
        elif decision.action == "schedule":
            from core.schedule.runner import owe_interrupted

            try:
                recovery["summary"] = await owe_interrupted(config, engine.directory, job, now)
            except AxisorError as exc:
                recovery.update(action="none", summary=f"not caught up: {exc}")
        else:
            recovery["summary"] = f"not rerun: {decision.reason}"
        released = len(recovery["locks_released"])
        recovery["summary"] += (
            f"; {released} repository lock{'' if released == 1 else 's'} of the dead daemon released"
            if released
            else "; no repository lock of the dead daemon was left"
        )
        if problems:
            recovery["summary"] += "; " + "; ".join(problems)
        job = await store.set_recovery(job, recovery)
        log.warning(
            "interrupted job recovered",
            extra={"job": job.id, "kind": job.kind, "action": recovery["action"], "summary": recovery["summary"]},
        )
        if notify.wanted(config.notifications, job):
            await notify.notify(config.notifications, job)
        recovered.append(job)
    return recovered


__all__ = ["Decision", "RERUN_KINDS", "RESUMED_FROM", "decide", "lost_connection_message", "recover", "release_locks"]
