"""Commands ``restore-test`` (restore a random sample of a snapshot into scratch and validate
it, as a job) and ``restore-tests`` (their history, from the records in the repository).

``restore-test`` runs through the daemon when one answers, else in an engine embedded in
this process, like ``drill``; ``--dry-run`` only draws and prints the plan (which
snapshot, which items, the seed), here, changing nothing. Exit 0 when every sampled item
was restored and validated, 16 when one differs or is missing, the error's code when it
could not run, 130 when cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from app import cli_jobs
from core.errors import DaemonConnectionLost, Exit, UsageError
from core.jobs.api import JobState
from core.text import human_bytes, shown

EXIT_INTERRUPTED = Exit.INTERRUPTED
SHOWN_ITEMS = 20  # items listed in the text output


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not above 0 and at most 100")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is below 1")
    return value


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser(
        "restore-test",
        parents=[common],
        help="restore a random sample of a snapshot (weighted to the untested) into scratch and validate it",
    )
    r.add_argument("--snapshot", metavar="ID", help="test this snapshot (an id or prefix) instead of drawing one")
    r.add_argument(
        "--from", dest="from_location", metavar="LOCATION", help="read from this location (default the primary)"
    )
    size = r.add_mutually_exclusive_group()
    size.add_argument("--sample-files", type=_positive, metavar="N", help="restore N files or tables (default 20)")
    size.add_argument("--share", type=_percent, metavar="PCT", help="restore this percent of its files or tables")
    r.add_argument("--seed", type=int, metavar="S", help="seed the draw (the record names the seed of every run)")
    r.add_argument("--dry-run", action="store_true", help="show the plan: which snapshot and which items; run nothing")
    h = sub.add_parser("restore-tests", parents=[common], help="past restore-tests, newest last")
    h.add_argument("--snapshot", metavar="ID", help="only those of this snapshot (an id or prefix)")
    h.add_argument("--limit", type=int, default=20)


def request_of(args: Any):
    from core.drills.restore_test import RestoreTestRequest
    from core.drills.restore_test_plan import DEFAULT_SAMPLE_FILES, Sampling

    sampling = Sampling(files=args.sample_files or DEFAULT_SAMPLE_FILES, share=args.share)
    return RestoreTestRequest(args.snapshot, sampling, args.seed, args.from_location)


def plan_text(the_plan: Any, notes: list[str]) -> str:
    snap = the_plan.snapshot
    lines = [
        f"snapshot {snap.short_id} ({snap.source}, {snap.datetime:%Y-%m-%d %H:%M:%S}): {the_plan.why}",
        f"{len(the_plan.items)} of {the_plan.total} {the_plan.kind} ({the_plan.share:.3g}%), seed {the_plan.seed}",
    ]
    for item in the_plan.items:
        size = human_bytes(item.size) if the_plan.kind == "files" else f"{item.size} rows"
        lines.append(f"  {shown(item.name)}  {size}")
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def record_text(result: dict) -> str:
    verdict = {"passed": "PASSED", "failed": "FAILED"}.get(str(result.get("outcome")), str(result.get("outcome")))
    lines = [
        f"restore-test {result.get('id')}: {verdict}",
        f"snapshot {str(result.get('snapshot'))[:8]} ({result.get('source')}) at {result.get('location')}",
        f"checked {result.get('checked')} of {result.get('sampled')} sampled, "
        f"{result.get('total')} {result.get('kind')} in the snapshot ({float(result.get('share') or 0):.3g}%), "
        f"seed {result.get('seed')}",
    ]
    if result.get("method"):
        lines.append(f"validated: {result['method']}")
    items = [str(i) for i in result.get("items") or []]
    lines += [f"  {shown(i)}" for i in items[:SHOWN_ITEMS]]
    if len(items) > SHOWN_ITEMS:
        lines.append(f"  ... and {len(items) - SHOWN_ITEMS} more (--json lists them all)")
    lines += [f"  ✘ {shown(str(f))}" for f in result.get("failures") or []]
    if result.get("error"):
        lines.append(f"error: {result['error']}")
    return "\n".join(lines)


async def cmd_restore_test(svc: Any, args: Any, out: Any) -> int:
    from core.drills.restore_test import plan

    request = request_of(args)
    if args.dry_run:
        async with svc.read_lock("restore-test --dry-run"):
            the_plan, notes = await plan(svc, request)
        out.emit({**the_plan.as_dict(), "notes": notes}, lambda: plan_text(the_plan, notes))
        return 0
    engine = await cli_jobs._engine(svc, prefer_daemon=not cli_jobs.limited_here(args))
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    try:
        events = await engine.subscribe()  # type: ignore[attr-defined]
        job = await engine.submit("restore-test", request.as_params(), origin="cli")
        if engine.mode == "daemon":
            cli_jobs._note(f"job {job.id} runs in the daemon; Ctrl-C stops watching, not the restore-test")
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        try:
            final = await cli_jobs._watch(engine, events, job, interrupted, tty=sys.stderr.isatty() and not out.json)
        except DaemonConnectionLost:
            if engine.mode != "daemon":
                raise
            return cli_jobs._lost(job.id, job, "running")
        if final is None:
            if engine.mode == "daemon":
                cli_jobs._note(f"stopped watching; restore-test job {job.id} goes on in the daemon")
                return EXIT_INTERRUPTED
            final = await engine.cancel(job.id)
            if not final.state.finished:
                final = await engine.wait(job.id)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await engine.close()
    if final.state == JobState.CANCELLED:
        cli_jobs._note(f"restore-test cancelled (job {final.id}): it says nothing about the snapshot")
        return EXIT_INTERRUPTED
    result = final.result or {}
    if "outcome" not in result:  # failed before a snapshot was drawn: usage, passphrase, lock
        cli_jobs._note(f"error: {final.error}")
        return int(result.get("exit_code") or 1)
    data = {k: v for k, v in result.items() if k != "exit_code"}
    data["job"] = final.id
    out.emit(data, lambda: record_text(result))
    if result.get("store_error"):
        cli_jobs._note(f"warning: the record could not be stored in the repository: {result['store_error']}")
    return int(result.get("exit_code") or 0)


async def cmd_restore_tests(svc: Any, args: Any, out: Any) -> int:
    from core.drills.restore_test_record import stored_records

    records, damaged = await stored_records(svc)
    if args.snapshot:
        records = [r for r in records if r.snapshot.startswith(args.snapshot)]
        if not records:
            raise UsageError(f"no restore-test of a snapshot {args.snapshot!r}")
    for d in damaged:
        cli_jobs._note(f"warning: {d}")
    records = records[-args.limit :] if args.limit > 0 else records

    def text() -> str:
        if not records:
            return "no restore-tests yet (run: axisor-backup restore-test)"
        table = [("ID", "SNAPSHOT", "SOURCE", "RESULT", "CHECKED", "SHARE", "JOB", "LOCATION")]
        for r in records:
            table.append(
                (
                    r.id,
                    r.snapshot[:8],
                    r.source,
                    "pass" if r.passed else r.outcome.upper(),
                    f"{r.checked}/{r.total} {r.kind}",
                    f"{r.share:.3g}%",
                    r.job or "-",
                    r.location,
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)

    out.emit({"restore_tests": [r.to_dict() for r in records], "damaged": [str(d) for d in damaged]}, text)
    return 0


COMMANDS = {"restore-test": cmd_restore_test, "restore-tests": cmd_restore_tests}
