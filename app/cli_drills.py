"""Commands ``drill`` (run a disaster-recovery drill as a job) and ``drills`` (their history).

``drill`` runs through the daemon when one answers, else in an engine embedded in this
process, like ``backup``. It prints the report as Markdown (``--json``: the report's JSON)
and exits 0 when the drill passed, 19 when it failed. ``drills`` reads the reports stored
in the repository (``drills/<id>``), newest last, with the RTO and RPO trend.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from app import cli_jobs
from core.config import DRILL_SCENARIOS
from core.errors import DaemonConnectionLost, DrillFailed, Exit, UsageError
from core.jobs.api import JobState

EXIT_INTERRUPTED = Exit.INTERRUPTED


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    d = sub.add_parser(
        "drill", parents=[common], help="rehearse a disaster: restore into scratch targets, validate, measure RTO/RPO"
    )
    d.add_argument("--scenario", choices=DRILL_SCENARIOS, help="default: [drills] scenario (database-loss)")
    d.add_argument(
        "--from",
        dest="from_location",
        metavar="LOCATION",
        help="read from this location (location-loss, compromised-host: default the first secondary)",
    )
    d.add_argument(
        "--to-time",
        metavar="TIMESTAMP",
        help="database by point-in-time recovery to this time (physical backups and WAL)",
    )
    ds = sub.add_parser("drills", parents=[common], help="past drills with their RTO/RPO trend, or one report")
    ds.add_argument("drill_id", nargs="?", metavar="ID", help="show this drill's report (an id or unique prefix)")
    ds.add_argument("--limit", type=int, default=20)


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


async def cmd_drill(svc: Any, args: Any, out: Any) -> int:
    from core.drills.run import DrillRequest
    from core.sources.postgres.pitr import parse_target_time

    scenario = args.scenario or svc.config.drills.scenario
    to_time = parse_target_time(args.to_time) if args.to_time else None
    names = svc.location_names()
    if args.from_location and args.from_location not in names:
        raise UsageError(f"no location {args.from_location!r}; configured: {', '.join(names)}")
    request = DrillRequest(scenario, args.from_location, to_time)
    engine = await cli_jobs._engine(svc, prefer_daemon=not cli_jobs.limited_here(args))
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    try:
        events = await engine.subscribe()  # type: ignore[attr-defined]
        job = await engine.submit("drill", request.as_params(), origin="cli")
        if engine.mode == "daemon":
            cli_jobs._note(f"job {job.id} runs in the daemon; Ctrl-C stops watching, not the drill")
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        try:
            final = await cli_jobs._watch(engine, events, job, interrupted, tty=sys.stderr.isatty() and not out.json)
        except DaemonConnectionLost:
            if engine.mode != "daemon":
                raise
            return cli_jobs._lost(job.id, job, "running")  # the daemon died: one line, exit 21
        if final is None:
            if engine.mode == "daemon":
                cli_jobs._note(f"stopped watching; drill job {job.id} goes on in the daemon")
                return EXIT_INTERRUPTED
            final = await engine.cancel(job.id)
            if not final.state.finished:
                final = await engine.wait(job.id)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await engine.close()
    result = final.result or {}
    if "scenario" not in result:  # failed before the drill began: usage, passphrase, lock
        if final.state == JobState.CANCELLED:
            cli_jobs._note(f"drill cancelled (job {final.id})")
            return EXIT_INTERRUPTED
        cli_jobs._note(f"error: {final.error}")
        return int(result.get("exit_code") or 1)
    data = {k: v for k, v in result.items() if k not in ("markdown", "exit_code")}
    data["job"] = final.id
    out.emit(data, lambda: result.get("markdown", "").rstrip())
    if result.get("extra", {}).get("store_error"):
        cli_jobs._note(f"warning: the report could not be stored in the repository: {result['extra']['store_error']}")
    if final.state == JobState.CANCELLED:
        cli_jobs._note(f"drill cancelled (job {final.id}); scratch targets were removed")
        return EXIT_INTERRUPTED
    if not result.get("passed"):
        cli_jobs._note(
            f"drill {result['id']} FAILED: " + "; ".join(result.get("failures") or [result.get("error") or ""])
        )
        return DrillFailed.exit_code
    return 0


async def cmd_drills(svc: Any, args: Any, out: Any) -> int:
    # Imported here: the drill modules cost every other command ~0.1 s of start-up.
    from core.drills.report import history, load_report, stored_reports

    reports, damaged = await stored_reports(svc)
    if args.drill_id:
        matches = [r for r in reports if r.id.startswith(args.drill_id)]
        if len(matches) > 1:
            raise UsageError(f"{args.drill_id!r} matches {len(matches)} drills; give more of the id")
        # No match among the readable ones: load it by name, which says why (exit 13, or 9 if damaged).
        report = matches[0] if matches else await load_report(await svc.repository(load_index=False), args.drill_id)
        out.emit(report.to_dict(), report.markdown)
        return 0
    for d in damaged:
        cli_jobs._note(f"warning: {d}")
    rows = history(reports)
    rows = rows[-args.limit :] if args.limit > 0 else rows

    def text() -> str:
        if not rows:
            return "no drills yet (run: axisor-backup drill)"
        table = [
            ("ID", "SCENARIO", "RESULT", "RTO", "OBJECTIVE", "TREND", "FORECAST", "OFF BY", "WORST RPO", "LOCATION")
        ]
        for x in rows:
            change = x["rto_change_seconds"]
            trend = "-" if change is None else ("+" if change >= 0 else "-") + _secs(abs(change))
            table.append(
                (
                    x["id"],
                    x["scenario"],
                    "pass" if x["passed"] else "FAIL",
                    _secs(x["rto_seconds"]),
                    _secs(x["rto_objective_seconds"]),
                    trend,
                    _secs(x["forecast_seconds"]),
                    "-" if x["forecast_error"] is None else f"{x['forecast_error']:+.0%}",
                    _secs(x["worst_rpo_seconds"]),
                    x["location"],
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)

    out.emit({"drills": rows, "damaged": [str(d) for d in damaged]}, text)
    return 0


COMMANDS = {"drill": cmd_drill, "drills": cmd_drills}
