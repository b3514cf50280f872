"""Commands of the job engine: daemon, jobs, job cancel, status, and backup as a job.

``backup`` runs through the daemon when one answers on its socket, else through an
engine embedded in this process. Embedded, the process survives its terminal: SIGHUP
(the SSH session dropped) silences the output and the running job still finishes.
Through the daemon, Ctrl-C only stops watching; the job goes on in the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from app.backup_outcome import backup_outcome, detach_from_terminal

from core.config import Config, resolve_passphrase
from core.errors import DaemonConnectionLost, DaemonError, Exit
from core.jobs.api import EngineClient, Job, JobEvent, JobState, connect_engine
from core.jobs.codec import event_to_dict, job_to_dict
from core.progress import fraction
from core.text import human_bytes, shown, shown_lines

EXIT_INTERRUPTED = Exit.INTERRUPTED


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    sub.add_parser(
        "daemon", parents=[common], help="run the engine (and scheduler) in the foreground, serving a local socket"
    )
    j = sub.add_parser("jobs", parents=[common], help="the job history, one job with its log, or live events")
    j.add_argument("job_id", nargs="?", metavar="ID", help="one job (an id or a unique prefix)")
    j.add_argument(
        "--follow", "-f", action="store_true", help="stream events until the job ends (with ID) or until interrupted"
    )
    j.add_argument("--limit", type=int, default=50)
    j.add_argument("--state", action="append", default=[], choices=[s.value for s in JobState])
    jc = sub.add_parser("job", parents=[common], help="act on one job")
    jsub = jc.add_subparsers(dest="job_command", required=True)
    cancel = jsub.add_parser("cancel", parents=[common], help="cancel a pending or running job")
    cancel.add_argument("job_id", metavar="ID")
    sub.add_parser("status", parents=[common], help="health for monitoring: exit 0 ok, 1 warning, 2 critical")


def _one_line(text: str) -> str:
    """A log or progress line as one printable line (names in it are escaped already)."""
    return shown_lines(text).replace("\n", "\\n")


def _note(message: str) -> None:
    try:
        print(shown_lines(message), file=sys.stderr, flush=True)
    except OSError:
        pass  # the terminal is gone


def _passphrase_source(config: Config):
    def passphrase(confirm: bool) -> str:
        return resolve_passphrase(config.storage, confirm=confirm)

    return passphrase


async def _engine(svc: Any, *, prefer_daemon: bool = True) -> EngineClient:
    return await connect_engine(
        svc.config, _passphrase_source(svc.config), prefer_daemon=prefer_daemon, key_memory=svc.key_memory
    )


def limited_here(args: Any) -> bool:
    """--limit-upload, --limit-download or backup --dump-jobs was given: a job must then run
    in this process, since a daemon would run it under its own config."""
    return (
        getattr(args, "limit_upload", None) is not None
        or getattr(args, "limit_download", None) is not None
        or getattr(args, "dump_jobs", None) is not None
    )


PROGRESS_WIDTH = 100  # the progress line drawn on a terminal whose width is unknown
MIN_CURRENT = 24  # columns the current item gets before the line drops its job name


def _progress_line(job: Job, width: int | None = None) -> str:
    """One line: the figures first, then what is being worked on (a file, a pack, a database
    table with its size). With ``width`` (a line redrawn on a terminal) it fits: the job's
    name goes first when the item would get fewer than MIN_CURRENT columns, then the item is
    shortened in its middle; a long path or table name never pushes the percentage and the
    ETA off the line."""
    p = job.progress
    name = f"{job.kind} {job.id}: "
    if p is None:
        return f"{name}{job.state.value}"
    parts = [p.phase]
    if p.files_done or p.files_total:
        parts.append(f"{p.files_done}{'/' + str(p.files_total) if p.files_total else ''} {p.unit}")
    if p.bytes_done or p.bytes_total:
        parts.append(human_bytes(p.bytes_done) + (f" of {human_bytes(p.bytes_total)}" if p.bytes_total else ""))
    share = fraction(p.bytes_done, p.bytes_total, final=job.state.finished)
    if share is not None:
        parts.append(f"{share * 100:.0f} %")
    if p.rate:
        parts.append(f"{human_bytes(p.rate)}/s")
    if p.eta_seconds is not None:
        parts.append(f"ETA {_clock(p.eta_seconds)}")
    figures = ", ".join(parts)
    current = _one_line(p.current)
    if width is None or not current:
        return f"{name}{figures}, {current}" if current else f"{name}{figures}"
    line = f"{name}{figures}"
    if width - len(line) - 2 < min(MIN_CURRENT, len(current)):
        line = figures
    room = width - len(line) - 2
    if len(current) > room:
        half = (room - 1) // 2
        current = current[:half] + "…" + current[len(current) - half :] if room > 8 else ""
    return f"{line}, {current}"[:width] if current else line[:width]


def _terminal_width() -> int:
    """The columns of the terminal the progress line is redrawn on (one left free, so the
    cursor never wraps), else PROGRESS_WIDTH."""
    try:
        return max(20, os.get_terminal_size(sys.stderr.fileno()).columns - 1)
    except (OSError, ValueError):
        return PROGRESS_WIDTH


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# -- backup ------------------------------------------------------------------------------


def survive_hangup() -> None:
    """Every command but the daemon: a hang-up (the SSH session dropped) silences the
    output and lets the command, and the job it runs, finish before the process exits."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, detach_from_terminal)


async def cmd_backup(svc: Any, args: Any, out: Any) -> int:
    params = {"type": args.kind, "sources": list(args.source), "tags": list(args.tag), "lock_wait": args.lock_wait}
    engine = await _engine(svc, prefer_daemon=not limited_here(args))
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    try:
        events = await engine.subscribe()  # type: ignore[attr-defined]
        job = await engine.submit("backup", params, origin="cli")
        if engine.mode == "daemon":
            _note(f"job {job.id} runs in the daemon; Ctrl-C stops watching, not the job")
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        try:
            final = await _watch(engine, events, job, interrupted, tty=sys.stderr.isatty() and not out.json)
        except DaemonConnectionLost:
            if engine.mode != "daemon":
                raise
            return _lost(job.id, job, "running")
        if final is None:  # interrupted
            if engine.mode == "daemon":
                _note(f"stopped watching; job {job.id} goes on in the daemon (axisor-backup jobs --follow {job.id})")
                return EXIT_INTERRUPTED
            final = await engine.cancel(job.id)
            if not final.state.finished:
                final = await engine.wait(job.id)
        return _backup_outcome(final, out)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await _close(engine)


async def _close(engine: EngineClient) -> None:
    try:
        await engine.close()
    except (DaemonError, OSError):
        pass  # the daemon is gone already: nothing left to close


def _lost(job_id: str | None, job: Job | None, doing: str = "following") -> int:
    """The daemon's connection dropped under us: one line, exit 21 (DaemonError)."""
    from core.daemon.recovery import lost_connection_message

    if job_id is None:
        _note(
            "the daemon stopped while following its job events (connection lost); any job it left running "
            "is recovered at its next start — see `axisor-backup jobs`"
        )
    else:
        _note(lost_connection_message(job_id, job, doing))
    return DaemonError.exit_code


async def _watch(engine: EngineClient, events: Any, job: Job, interrupted: asyncio.Event, *, tty: bool) -> Job | None:
    """Show the job's progress until it finishes (its final record) or the user interrupts (None)."""
    stop = asyncio.ensure_future(interrupted.wait())
    waited = False
    try:
        while True:
            nxt = asyncio.ensure_future(anext(events, None))
            await asyncio.wait([nxt, stop], return_when=asyncio.FIRST_COMPLETED)
            if stop.done():
                nxt.cancel()
                return None
            event: JobEvent | None = nxt.result()
            if event is None:  # the stream ended (daemon stopped): the record tells the rest
                return await engine.get(job.id)
            if event.job.id != job.id:
                continue
            if event.type == "log" and event.message.startswith("waiting") and not waited:
                waited = True  # once: a log file should say why the run paused, not fill up
                _note(event.message)
            if event.type == "progress" and tty:
                width = _terminal_width()
                try:
                    print("\r" + _progress_line(event.job, width).ljust(width), end="", file=sys.stderr, flush=True)
                except OSError:
                    pass
            if event.type == "finished":
                if tty:
                    try:
                        print("\r" + " " * _terminal_width() + "\r", end="", file=sys.stderr, flush=True)
                    except OSError:
                        pass
                return event.job
    finally:
        stop.cancel()
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


def _backup_outcome(job: Job, out: Any) -> int:
    return backup_outcome(job_to_dict(job), out)


# -- jobs ---------------------------------------------------------------------------------


def _when(job: Job) -> str:
    return job.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(job: Job) -> str:
    if job.started_at is None:
        return "-"
    from datetime import UTC, datetime

    end = job.finished_at or datetime.now(UTC)
    return f"{(end - job.started_at).total_seconds():.1f}s"


def _interrupted_note(job: Job) -> str:
    """The table's short form: whose death, then what was done (`jobs ID` has it all)."""
    result = job.result or {}
    pid = (result.get("interrupted") or {}).get("daemon_pid", "?")
    summary = (result.get("recovery") or {}).get("summary") or "recovered at the daemon's next start"
    return f"daemon pid {pid} died; {summary}"


def _jobs_table(jobs: list[Job]) -> str:
    if not jobs:
        return "no jobs yet"
    rows = [("ID", "KIND", "STATE", "ORIGIN", "CREATED", "TOOK", "NOTE")]
    for j in jobs:
        note = j.error or ""
        if j.state == JobState.INTERRUPTED:
            note = _interrupted_note(j)
        if j.state == JobState.RUNNING and j.progress is not None:
            note = _progress_line(j).split(": ", 1)[1]
        rows.append((j.id, j.kind, j.state.value, j.origin, _when(j), _duration(j), _one_line(note)[:80]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _job_text(job: Job, lines: list[str]) -> str:
    out = [
        f"job       {job.id}",
        f"kind      {job.kind}",
        f"state     {job.state.value}",
        f"origin    {job.origin}",
        f"params    {json.dumps(job.params, sort_keys=True)}",
        f"created   {job.created_at.isoformat()}",
        f"started   {job.started_at.isoformat() if job.started_at else '-'}",
        f"finished  {job.finished_at.isoformat() if job.finished_at else '-'}",
        f"took      {_duration(job)}",
    ]
    if job.progress is not None:
        out.append(f"progress  {_progress_line(job).split(': ', 1)[1]}")
    if job.error:
        out.append(f"error     {job.error}")
    if job.result is not None:
        out.append(f"result    {json.dumps(job.result, sort_keys=True, default=str)[:2000]}")
    if lines:
        out.append("log")
        out.extend(f"  {line}" for line in lines)
    return "\n".join(out)


async def cmd_jobs(svc: Any, args: Any, out: Any) -> int:
    engine = await _engine(svc)
    try:
        if args.follow:
            return await _follow(engine, args, out)
        if args.job_id:
            job = await engine.get(args.job_id)
            lines = await engine.log(job.id)
            out.emit({**job_to_dict(job), "log": lines}, lambda: _job_text(job, lines))
            return 0
        states = frozenset(JobState(s) for s in args.state) if args.state else None
        jobs = await engine.list(limit=args.limit, states=states)
        out.emit({"jobs": [job_to_dict(j) for j in jobs], "mode": engine.mode}, lambda: _jobs_table(jobs))
        return 0
    finally:
        await _close(engine)


def _print_event(event: JobEvent, out: Any) -> None:
    if out.json:
        print(json.dumps(event_to_dict(event), sort_keys=True, default=str), flush=True)
    elif event.type == "progress":
        print(_one_line(_progress_line(event.job)), flush=True)
    elif event.type == "log":
        print(f"{event.job.kind} {event.job.id}: {_one_line(event.message)}", flush=True)
    elif event.type == "finished":
        print(
            shown_lines(
                f"{event.job.kind} {event.job.id}: {event.job.state.value}"
                + (f": {event.job.error}" if event.job.error else "")
            ),
            flush=True,
        )
    else:
        print(f"{event.job.kind} {event.job.id}: {event.type}", flush=True)


async def _follow(engine: EngineClient, args: Any, out: Any) -> int:
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    try:
        if engine.mode == "embedded":
            return await _follow_store(engine, args, out, interrupted)
        events = await engine.subscribe()  # type: ignore[attr-defined]
        target = None
        if args.job_id:
            target = await engine.get(args.job_id)
            _print_event(JobEvent("state", target), out)
            if target.state.finished:
                return _exit_of(target)
        stop = asyncio.ensure_future(interrupted.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(anext(events, None))
                await asyncio.wait([nxt, stop], return_when=asyncio.FIRST_COMPLETED)
                if stop.done():
                    nxt.cancel()
                    return 0 if target is None else EXIT_INTERRUPTED
                event = nxt.result()
                if event is None:  # the stream ended: the daemon stopped, or only closed the stream
                    try:
                        if target is None:
                            await engine.list(limit=1)
                            _note("the daemon closed the event stream")
                            return 0
                        final = await engine.get(target.id)
                    except DaemonConnectionLost:
                        return _lost(target.id if target else None, target)
                    if final.state.finished:
                        _print_event(JobEvent("finished", final), out)
                    else:
                        _note("the daemon closed the event stream")
                    return _exit_of(final)
                if target is not None and event.job.id != target.id:
                    continue
                _print_event(event, out)
                if target is not None and event.type == "finished":
                    return _exit_of(event.job)
        finally:
            stop.cancel()
            await events.aclose()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _follow_store(engine: EngineClient, args: Any, out: Any, interrupted: asyncio.Event) -> int:
    """Without a daemon, jobs of other processes are seen through their records: poll them."""
    seen: dict[str, tuple[str, Any]] = {}
    while not interrupted.is_set():
        jobs = [await engine.get(args.job_id)] if args.job_id else await engine.list(limit=20)
        for job in reversed(jobs):
            key = (job.state.value, job.progress)
            if seen.get(job.id) != key:
                seen[job.id] = key
                kind = "finished" if job.state.finished else "progress" if job.progress else job.state.value
                _print_event(JobEvent(kind, job), out)
        if args.job_id and jobs[0].state.finished:
            return _exit_of(jobs[0])
        try:
            await asyncio.wait_for(interrupted.wait(), timeout=0.5)
        except TimeoutError:
            pass
    return 0 if not args.job_id else EXIT_INTERRUPTED


def _exit_of(job: Job) -> int:
    if job.state == JobState.COMPLETED:
        return int((job.result or {}).get("exit_code") or 0)
    if job.state == JobState.CANCELLED:
        return EXIT_INTERRUPTED
    return int((job.result or {}).get("exit_code") or 1)


async def cmd_job(svc: Any, args: Any, out: Any) -> int:
    engine = await _engine(svc)
    try:
        job = await engine.cancel(args.job_id)
        out.emit(
            job_to_dict(job), lambda: f"job {job.id}: {job.state.value}" + (f" ({job.error})" if job.error else "")
        )
        return 0
    finally:
        await engine.close()


# -- daemon and status ---------------------------------------------------------------------


async def cmd_daemon(svc: Any, args: Any, out: Any) -> int:
    from core.daemon.server import Daemon, setup_json_logging

    setup_json_logging()
    return await Daemon(svc.config, getattr(args, "config_path", None)).run()


async def cmd_status(svc: Any, args: Any, out: Any) -> int:
    from core.jobs.rto import describe, forecast_level
    from core.jobs.status import health

    h = await health(svc.config)
    data = {
        "level": h.level,
        "exit_code": h.exit_code,
        "daemon_pid": h.daemon_pid,
        "checks": [
            {
                "name": c.name,
                "level": c.level,
                "message": c.full_message,
                "fix": c.fix,
                "fix_command": fix_command(c.fix),
            }
            for c in h.checks
        ],
        "rto_forecasts": [
            {**f.to_dict(), "level": forecast_level(f, svc.config.objectives.critical_factor), "message": describe(f)}
            for f in h.forecasts
        ],
    }

    def text() -> str:
        lines = [f"status: {h.level.upper()}"]
        for c in h.checks:
            lines.append(f"  {c.level.upper():8} {shown(c.name)}: {shown(c.full_message)}")
            if c.fix and c.level != "ok":
                lines.append(f"           fix: {shown(fix_command(c.fix) or '')}")
        if h.forecasts:
            lines.append("RTO forecast (a full recovery now, from the drills measured so far):")
            for f in h.forecasts:
                lines.append(f"  {f.scenario} from {shown(f.location)}: {shown(describe(f))}")
        return "\n".join(lines)

    out.emit(data, text)
    return h.exit_code


def fix_command(fix: str | None) -> str | None:
    """The command line that fixes a health finding (its ``fix`` action id)."""
    if fix is None:
        return None
    action, _, arg = fix.partition(" ")
    if action == "drill":  # "drill <scenario> <location>": an RTO forecast over its objective
        scenario, _, location = arg.partition(" ")
        return (
            f"axisor-backup drill --scenario {scenario} --from {location} (measures again); "
            "if it holds: a faster location, or a larger [objectives] rto"
        )
    return {
        "backup": f"axisor-backup backup --source {arg}",
        "verify": "axisor-backup verify",
        "restore-test": "axisor-backup restore-test (again, once the cause above is fixed)",
        "daemon": "axisor-backup daemon (or start its service: docs/OPERATIONS.md)",
        "repair": "axisor-backup verify --full, then axisor-backup repair (docs/OPERATIONS.md)",
        "acknowledge": "look at the snapshot (axisor-backup show, ls), then axisor-backup acknowledge "
        "(docs/OPERATIONS.md: the backed-up host was compromised)",
    }.get(action, fix)


COMMANDS = {"jobs": cmd_jobs, "job": cmd_job, "daemon": cmd_daemon, "status": cmd_status}

__all__ = ["COMMANDS", "add_parsers"]
