"""`axisor-backup acknowledge [SNAPSHOT...] [--all]`: the tripwire's pins, listed and answered.

Without arguments it lists every pin (the snapshot kept, its source, when, and what tripped
the wire: core/health/tripwire.py). Given pinned snapshot ids (or the id of the snapshot
whose backup tripped the wire, or unique prefixes), or ``--all``, it deletes those pins, so
their snapshots go back to retention's rules, and records the acknowledgement in the job
history: `status` and the dashboard stop reporting the tripwire for those sources.
Output shapes and exit codes: docs/CLI.md ("acknowledge"); the runbook: docs/OPERATIONS.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from core.errors import AxisorError, Exit
from core.text import shown, shown_lines

EXIT_OK = Exit.OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "acknowledge",
        parents=[common],
        help="list the tripwire's pins, or answer them after looking (their snapshots go back to retention)",
    )
    p.add_argument("snapshot", nargs="*", help="pinned (or tripped) snapshot ids or unique prefixes; none: list")
    p.add_argument("--all", action="store_true", help="acknowledge every pin, and every tripwire finding")
    p.add_argument(
        "--rollback",
        action="store_true",
        help="accept the repository as it is after backups were refused for vanished snapshots (exit 26)",
    )


def _pin_lines(pin: Any) -> list[str]:
    lines = [f"{pin.snapshot[:8]}  {shown(pin.source):<28} {pin.pinned_at[:16]}  tripped by {pin.by[:8]}: {pin.reason}"]
    for f in pin.findings:
        lines.append(f"          - {shown(str(f.get('message', '')))}")
    return lines


async def cmd_acknowledge(svc: Any, args: Any, out: Any) -> int:
    if args.rollback:
        started = datetime.now(UTC)
        count, path = await svc.accept_rollback()
        code = await _record(svc, {"rollback": True, "sources": [], "snapshots": []}, started)
        out.emit(
            {"rollback": True, "snapshots": count, "seen_file": path},
            lambda: (
                f"accepted: this host now remembers the {count} snapshots the repository holds ({path}); "
                "backups run again"
            ),
        )
        return code
    if not args.snapshot and not args.all:
        pins, damaged = await svc.pins()

        def listing() -> str:
            if not pins and not damaged:
                return "no pins: nothing is held back from prune by the tripwire"
            lines = ["PINNED    SOURCE                       SINCE             WHY"]
            for pin in pins:
                lines += _pin_lines(pin)
            lines += [f"damaged pin {d.key}: {d.reason} (its snapshot is kept while in doubt)" for d in damaged]
            lines.append("")
            lines.append(
                "look at each (axisor-backup show / ls / restore), then: axisor-backup acknowledge ID... | --all"
            )
            return "\n".join(lines)

        out.emit(
            {"pins": [asdict(p) for p in pins], "damaged": [{"key": d.key, "reason": d.reason} for d in damaged]},
            listing,
        )
        return EXIT_OK
    started = datetime.now(UTC)
    done = await svc.acknowledge(list(args.snapshot), everything=args.all)
    sources = [] if args.all else sorted({p.source for p in done.removed})
    code = await _record(
        svc, {"snapshots": [p.snapshot for p in done.removed], "sources": sources, "all": args.all}, started
    )

    def text() -> str:
        lines = [f"acknowledged: pin on {p.snapshot[:8]} ({shown(p.source)}) removed" for p in done.removed]
        lines += [f"acknowledged: damaged pin {sid[:8]} removed" for sid in done.damaged]
        if not lines:
            lines.append("no pins to remove; the tripwire findings are answered")
        return "\n".join(lines)

    out.emit(
        {
            "removed": [asdict(p) for p in done.removed],
            "damaged": list(done.damaged),
            "elsewhere": list(done.elsewhere),
        },
        text,
    )
    for note in done.elsewhere:
        out.note(f"warning: {note}")
    return code


async def _record(svc: Any, params: dict, started: datetime) -> int:
    """Into the job history `status` reads; a state folder that refuses it is an error: the
    pins are gone, but `status` would go on reporting the tripwire."""
    from core.jobs.api import JobState
    from core.jobs.record import Outcome, record_run

    try:
        await record_run(
            svc.config, "acknowledge", params, started, Outcome(JobState.COMPLETED, {"exit_code": Exit.OK})
        )
    except AxisorError as exc:
        print(
            shown_lines(
                f"error: the acknowledgement is not recorded in the job history ({exc}); the pins are removed, "
                "but `status` reports the tripwire until `axisor-backup acknowledge --all` is recorded"
            ),
            file=sys.stderr,
        )
        return exc.exit_code
    return EXIT_OK


COMMANDS = {"acknowledge": cmd_acknowledge}

__all__ = ["COMMANDS", "add_parser"]
