"""`axisor-backup prune [--dry-run]` and `axisor-backup forget SNAPSHOT...`.

Prune prints every snapshot with its fate and the rules that keep it, the WAL it removes,
and what happens to packs and index files; `--dry-run` prints the same plan and changes
nothing. Output shapes and exit codes: docs/CLI.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any
from core.errors import DaemonConnectionLost
from core.text import human_bytes, shown_lines


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "prune", parents=[common], help="apply [retention]: forget snapshots, remove old WAL and unused data"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would go and why; change nothing")
    p.add_argument(
        "--rewrite",
        action="store_true",
        help="then seal again under the current key everything still under a key retired by `key rotate`, "
        "and destroy the retired key when nothing needs it (resumable: run again after an interruption)",
    )
    p.add_argument(
        "--location",
        action="append",
        default=[],
        metavar="NAME",
        help="only this location (repeatable; default: every configured location)",
    )
    p.add_argument(
        "--lock-wait",
        type=float,
        default=600,
        metavar="SECONDS",
        help="how long to wait for another process's repository lock (default 600; 0: fail at once)",
    )
    f = sub.add_parser(
        "forget", parents=[common], help="delete snapshot manifests by id (their data goes at the next prune)"
    )
    f.add_argument("snapshot", nargs="+", help="snapshot ids or unique id prefixes")


def report_text(r: dict) -> str:
    """One location's report (the `prune --json` shape) as text."""
    dry = r["dry_run"]
    verb = ("would forget", "would keep") if dry else ("forget", "keep")
    lines = []
    for s in r["snapshots"]:
        when = datetime.fromisoformat(s["time"])
        lines.append(
            f"{verb[1] if s['keep'] else verb[0]:<12} {s['short_id']}  {when:%Y-%m-%d %H:%M}  "
            f"{s['source']:<28} {'; '.join(s['reasons'])}"
        )
    if not r["snapshots"]:
        lines.append("no snapshots")
    lines.append("")
    lines.append(f"snapshots: {r['kept']} kept, {r['forgotten']} {'to forget' if dry else 'forgotten'}")
    wal = r["wal"]
    if wal["removed"]:
        lines.append(
            f"WAL: {len(wal['removed'])} files {'to remove' if dry else 'removed'} "
            f"({wal['removed'][0]} .. {wal['removed'][-1]}), {wal['kept']} kept: {wal['reason']}"
        )
    elif wal["kept"]:
        lines.append(f"WAL: {wal['kept']} files kept ({wal['reason']})")
    p, b = r["packs"], r["bytes"]
    would = "would be " if dry else ""
    lines.append(
        f"packs: {p['total']} indexed, {p['deleted']} {would}deleted, {p['repacked']} {would}repacked"
        + (f" into {p['written']} new" if p["written"] else "")
        + (f", {p['adopted']} adopted" if p["adopted"] else "")
        + (f", {p['missing_dropped']} missing ones unindexed" if p["missing_dropped"] else "")
    )
    lines.append(
        f"data: {human_bytes(b['used'])} used, {human_bytes(b['unused'])} unused; "
        f"{human_bytes(b['deleted'])} {would}freed, {human_bytes(b['written'])} {would}rewritten"
    )
    lines.append(f"index files: {r['index_files']['before']} -> {r['index_files']['after']}")
    rw = r.get("rewrite")
    if rw:
        resealed = ", ".join(f"{n} {k}" for k, n in rw["objects_resealed"].items()) or "no other objects"
        lines.append(
            f"rewrite: {rw['packs_rewritten']} packs under a retired key re-sealed into {rw['packs_written']} new "
            f"({human_bytes(rw['bytes_rewritten'])}); {resealed} re-sealed"
        )
        lines += [f"  not done: {p}" for p in rw["problems"]]
        if rw["old_key_destroyed"]:
            lines.append("  nothing uses a retired key now: the retired keys are destroyed")
        elif rw["retired_keys_before"]:
            lines.append("  retired keys kept (something above still needs them); run `prune --rewrite` again")
    t = r.get("temporary")
    if t and t["removed"]:
        lines.append(
            f"temporary files: {len(t['removed'])} left by interrupted uploads "
            f"{'would be ' if dry else ''}removed ({human_bytes(t['removed_bytes'])})"
        )
    if p["unindexed"]:
        lines.append(
            f"note: {p['unindexed']} packs are in no index "
            + (
                "(a prune without --dry-run adopts them)"
                if dry
                else "and could not be adopted (see `axisor-backup verify`); left alone"
            )
        )
    return "\n".join(lines)


async def cmd_prune(svc, args, out) -> int:
    """Runs as a `prune` job: in the daemon when one answers (it then waits for the daemon's
    running backups instead of failing on their lock), else in an engine in this process."""
    from core.config import resolve_passphrase
    from core.jobs.api import connect_engine

    from app.cli_jobs import limited_here

    engine = await connect_engine(
        svc.config,
        lambda confirm: resolve_passphrase(svc.config.storage, confirm=confirm),
        prefer_daemon=not limited_here(args),
    )
    try:
        job = await engine.submit(
            "prune",
            {
                "dry_run": args.dry_run,
                "rewrite": args.rewrite,
                "locations": list(args.location),
                "lock_wait": args.lock_wait,
            },
            origin="cli",
        )
        if engine.mode == "daemon":
            print(f"job {job.id} runs in the daemon", file=sys.stderr)
        try:
            final = await engine.wait(job.id)
        except DaemonConnectionLost:
            if engine.mode != "daemon":
                raise
            from app.cli_jobs import _lost

            return _lost(job.id, job, "running")  # the daemon died: one line, exit 21
    finally:
        await engine.close()
    result = dict(final.result or {})
    code = int(result.pop("exit_code", 0 if final.error is None else 1))
    if "locations" not in result:  # failed before any location was tried
        print(shown_lines(f"error: {final.error or final.state.value}"), file=sys.stderr)
        return code or 1
    locations = result["locations"]

    def text() -> str:
        parts = []
        for loc in locations:
            head = f"== location {loc['location']} ==" if len(locations) > 1 else ""
            body = f"error: {loc['error']}" if loc["error"] else report_text(loc)
            parts.append(f"{head}\n{body}" if head else body)
        return "\n\n".join(parts)

    out.emit(result, text)
    failures = [f"{loc['location']}: {loc['error']}" for loc in locations if loc["error"]]
    if failures:
        print(shown_lines(f"error: prune failed at {'; '.join(failures)}"), file=sys.stderr)
    return code


async def cmd_forget(svc, args, out) -> int:
    ids = await svc.forget(args.snapshot)
    out.emit(
        {"forgotten": ids},
        lambda: "\n".join(f"forgot {i[:8]}" for i in ids) + "\nrun `axisor-backup prune` to free their data",
    )
    return 0


COMMANDS = {"prune": cmd_prune, "forget": cmd_forget}
