"""`axisor-backup schedules`: what runs when, pause/resume, run now, and the decisions made.

Listing and pause/resume need neither the passphrase nor the daemon: they read the config
and the schedule tables in the state database, which the daemon re-reads every tick.
`schedules run` submits the schedule's job through the engine (the daemon's when one
answers, else an embedded one that finishes the job before the command exits).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.config import resolve_passphrase
from core.errors import DaemonConnectionLost, UsageError
from core.schedule.model import Schedule, find_schedule, schedules_from_config
from core.schedule.plan import next_runs
from core.schedule.state import RunRecord, ScheduleState, ScheduleStore, store_path

DEFAULT_NEXT = 3


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser(
        "schedules",
        parents=[common],
        help="scheduled backups, verifications, copies and prunes: next runs, pause, resume, run now",
    )
    s.add_argument("--next", type=int, default=DEFAULT_NEXT, metavar="N", help="how many next runs to show (default 3)")
    s.add_argument(
        "--from",
        dest="from_time",
        metavar="TIME",
        help="compute next runs after this ISO 8601 time instead of now (e.g. 2026-03-28T12:00+01:00)",
    )
    ssub = s.add_subparsers(dest="schedules_command", metavar="ACTION")
    ssub.add_parser("list", parents=[common], help="every schedule and its next runs (the default)")
    for action, text in (
        ("pause", "stop a schedule from running until resumed (kept across restarts)"),
        ("resume", "let a paused schedule run again, from its next occurrence"),
        ("run", "submit a schedule's job now, outside its timetable"),
    ):
        p = ssub.add_parser(action, parents=[common], help=text)
        p.add_argument("name", metavar="NAME")
        if action == "run":
            p.add_argument(
                "--no-wait", action="store_true", help="with a running daemon: return once the job is submitted"
            )
    h = ssub.add_parser("history", parents=[common], help="the scheduler's recorded decisions, newest first")
    h.add_argument("name", nargs="?", metavar="NAME")
    h.add_argument("--limit", type=int, default=20)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _record_json(rec: RunRecord) -> dict[str, Any]:
    return {
        "schedule": rec.schedule,
        "occurrence": _iso(rec.occurrence),
        "decided_at": _iso(rec.decided_at),
        "trigger": rec.trigger,
        "outcome": rec.outcome,
        "job_id": rec.job_id,
        "type": rec.type,
        "missed": rec.missed,
        "detail": rec.detail,
    }


def _record_text(rec: RunRecord) -> str:
    what = f"job {rec.job_id[:12]}" if rec.job_id else ""
    kind = f" ({rec.type})" if rec.type else ""
    return (
        f"{rec.decided_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC  {rec.outcome}{kind} {what}  "
        f"[{rec.trigger}, for {rec.occurrence.astimezone(UTC):%Y-%m-%d %H:%M} UTC] {rec.detail}"
    ).rstrip()


def _when(instant: datetime, zone: str) -> str:
    here = instant.astimezone(ZoneInfo(zone))
    text = f"{here:%a %Y-%m-%d %H:%M:%S %Z}"
    if zone != "UTC":
        text += f" ({instant.astimezone(UTC):%H:%M} UTC)"
    return text


def _schedule_json(
    s: Schedule, state: ScheduleState | None, last: RunRecord | None, upcoming: list[datetime], runnable: bool
) -> dict[str, Any]:
    return {
        "name": s.name,
        "task": s.task,
        "origin": s.origin,
        "runnable": runnable,
        "cron": s.cron,
        "timezone": s.timezone,
        "sources": list(s.sources),
        "type": s.type if s.task == "backup" else None,
        "full": s.full if s.task == "verify" else None,
        "locations": list(s.locations),
        "sample_files": s.sample_files if s.task == "restore-test" and s.sample_percent is None else None,
        "sample_percent": s.sample_percent if s.task == "restore-test" else None,
        "jitter_seconds": s.jitter_seconds,
        "enabled": s.enabled,
        "paused": bool(state and state.paused),
        "paused_at": _iso(state.paused_at if state else None),
        "last_occurrence": _iso(state.last_occurrence if state else None),
        "last_run": _record_json(last) if last else None,
        "next_runs": [_iso(t) for t in upcoming],
    }


async def _open_store(config: Any) -> ScheduleStore:
    return await ScheduleStore.open(store_path(config))


async def cmd_schedules(svc: Any, args: argparse.Namespace, out: Any) -> int:
    config = svc.config
    action = args.schedules_command or "list"
    schedules = schedules_from_config(config)
    store = await _open_store(config)
    try:
        if action == "list":
            return await _list(config, schedules, store, args, out)
        if action == "history":
            if args.name:
                find_schedule(schedules, args.name)
            records = await store.runs(args.name, limit=max(1, args.limit))
            out.emit(
                {"runs": [_record_json(r) for r in records]},
                lambda: "\n".join(f"{r.schedule}: {_record_text(r)}" for r in records) or "no runs recorded",
            )
            return 0
        schedule = find_schedule(schedules, args.name)
        now = datetime.now(UTC)
        if action in ("pause", "resume"):
            changed = await store.set_paused(schedule.name, action == "pause", now)
            state = "paused" if action == "pause" else "active"
            out.emit(
                {"name": schedule.name, "state": state, "changed": changed},
                lambda: f"schedule {schedule.name} {state}" + ("" if changed else " (it already was)"),
            )
            return 0
        return await _run_now(svc, config, store, schedule, args, out)
    finally:
        await store.close()


async def _list(
    config: Any, schedules: tuple[Schedule, ...], store: ScheduleStore, args: argparse.Namespace, out: Any
) -> int:
    if args.next < 0:
        raise UsageError("--next must be 0 or more")
    if args.from_time:
        try:
            after = datetime.fromisoformat(args.from_time)
        except ValueError:
            raise UsageError(f"--from {args.from_time!r} is not an ISO 8601 time") from None
        if after.tzinfo is None:
            raise UsageError(f"--from {args.from_time!r} needs an offset or Z, e.g. 2026-03-28T12:00+01:00")
    else:
        after = datetime.now(UTC)
    from core.jobs.kinds import registered

    kinds = set(registered())
    states = await store.states()
    rows = []
    for s in schedules:
        state = states.get(s.name)
        recent = await store.runs(s.name, limit=1, outcomes=("submitted", "failed"))
        upcoming = next_runs(s, after, args.next) if s.enabled and not (state and state.paused) else []
        rows.append((s, state, recent[0] if recent else None, upcoming, s.task in kinds))
    sched = config.schedule
    data = {
        "enabled": sched.enabled,
        "max_concurrent": sched.max_concurrent,
        "full_every_days": sched.full_every_days,
        "from": _iso(after),
        "schedules": [_schedule_json(*row) for row in rows],
    }

    def text() -> str:
        head = (
            "scheduler: enabled"
            if sched.enabled
            else "scheduler: DISABLED ([schedule] enabled = false): the daemon runs none of these"
        )
        lines = [f"{head}; max_concurrent {sched.max_concurrent}, full backup every {sched.full_every_days} days"]
        for s, state, last, upcoming, runnable in rows:
            status = (
                "disabled"
                if not s.enabled
                else f"paused since {state.paused_at:%Y-%m-%d %H:%M} UTC"
                if state and state.paused and state.paused_at
                else "paused"
                if state and state.paused
                else "active"
            )
            lines.append("")
            lines.append(f"{s.name}  [{status}]  {s.describe()}" + ("  (default)" if s.origin == "default" else ""))
            lines.append(
                f"  cron     {s.cron}  ({s.timezone})"
                + (f", jitter up to {s.jitter_seconds} s" if s.jitter_seconds else "")
            )
            if not runnable:
                lines.append(f"  WARNING  this build has no '{s.task}' job kind: its runs will fail to submit")
            if last is not None:
                lines.append(f"  last     {_record_text(last)}")
            for i, t in enumerate(upcoming):
                lines.append(f"  {'next' if i == 0 else '':<8} {_when(t, s.timezone)}")
        if not rows:
            lines.append("no schedules: configure sources, or [[schedule.jobs]]")
        return "\n".join(lines)

    out.emit(data, text)
    return 0


async def _run_now(
    svc: Any, config: Any, store: ScheduleStore, schedule: Schedule, args: argparse.Namespace, out: Any
) -> int:
    from core.jobs.api import connect_engine
    from core.schedule.runner import Scheduler

    def passphrase(confirm: bool) -> str:
        return resolve_passphrase(config.storage, confirm=confirm)

    async def catalog() -> list[Any]:
        snaps, _ = await svc.snapshots()
        return snaps

    engine = await connect_engine(config, passphrase)
    try:
        scheduler = Scheduler(config, engine, store, catalog=catalog)
        record = await scheduler.run_now(schedule.name, origin="cli")
        if record.outcome != "submitted" or record.job_id is None:
            raise UsageError(f"schedule {schedule.name}: {record.detail}")
        wait = not (args.no_wait and engine.mode == "daemon")
        try:
            job = await engine.wait(record.job_id) if wait else await engine.get(record.job_id)
        except DaemonConnectionLost:
            if engine.mode != "daemon":
                raise
            from app.cli_jobs import _lost

            return _lost(record.job_id, None, "running")  # the daemon died: one line, exit 21
    finally:
        await engine.close()
    data = {
        "schedule": schedule.name,
        "job_id": job.id,
        "kind": job.kind,
        "params": job.params,
        "state": str(job.state),
        "type": record.type,
        "reason": record.detail,
        "result": job.result,
        "error": job.error,
        "engine": engine.mode,
    }
    out.emit(
        data,
        lambda: "\n".join(
            x
            for x in (
                f"schedule {schedule.name}: job {job.id} ({job.kind}{', ' + record.type if record.type else ''}) "
                f"{job.state} [{engine.mode}]",
                f"  why: {record.detail}" if record.detail else "",
                f"  error: {job.error}" if job.error else "",
            )
            if x
        ),
    )
    if str(job.state) in ("failed", "interrupted"):
        code = (job.result or {}).get("exit_code")
        return int(code) if isinstance(code, int) and code else 1
    return 0
