"""Commands for several locations: copy, locations, the merged snapshots catalog, and
choosing where a restore reads from (``restore --from NAME`` and the fallback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from app.backup_outcome import copy_text
from core.errors import AxisorError, Exit
from core.repository.snapshot import Snapshot
from core.text import human_bytes, shown, shown_lines

EXIT_OK = Exit.OK
EXIT_ERROR = Exit.ERROR


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``copy`` and ``locations``, and ``--from`` on ``restore``."""
    c = sub.add_parser("copy", parents=[common], help="copy snapshots to another location")
    c.add_argument(
        "snapshot",
        nargs="*",
        help="ids, id prefixes, latest or latest:SOURCE (default: every snapshot the target lacks)",
    )
    c.add_argument("--to", required=True, metavar="NAME", help="the location to copy to")
    c.add_argument(
        "--from",
        dest="from_location",
        metavar="NAME",
        default=None,
        help="the location to copy from (default: the primary, local)",
    )
    lp = sub.add_parser(
        "locations",
        parents=[common],
        help="every location: reachable, latency, space used and free, growth, last write",
    )
    lp.add_argument(
        "--probe",
        action="store_true",
        help="also time reading stored packs from each location (for the RTO forecast; recorded as a job)",
    )
    lp.add_argument(
        "--probe-bytes",
        type=_size_arg,
        default=None,
        metavar="N",
        help="bytes each probe reads (default 64M; K, M and G suffixes)",
    )
    restore = sub.choices.get("restore")
    if restore is not None:
        restore.add_argument(
            "--from",
            dest="from_location",
            metavar="NAME",
            default=None,
            help="restore from this location (default: the primary, or the first other "
            "location holding the snapshots when it cannot serve)",
        )
    for name in READS_FROM:
        parser = sub.choices.get(name)
        if parser is not None:
            parser.add_argument(
                "--from",
                dest="from_location",
                metavar="NAME",
                default=None,
                help="read this location's repository instead of the primary's",
            )


# Commands that read one repository and serve it from `--from NAME` as they are.
READS_FROM = ("verify", "ls", "show", "wal-fetch")


async def use_from(svc: Any, args: Any) -> None:
    """``verify``/``ls``/``show --from NAME``: point the service at that location first."""
    name = getattr(args, "from_location", None)
    if name is not None and args.command in READS_FROM:
        await svc.use_location(name)


def _note(message: str) -> None:
    print(shown_lines(message), file=sys.stderr)


def _bytes(n: float | None) -> str:
    return human_bytes(n, unknown="-")  # a table cell: "-" where a size is not known


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# -- copy ------------------------------------------------------------------------------


def copy_json(r: Any) -> dict:
    d = asdict(r)
    for key in ("copied", "present", "pending"):
        d[key] = list(d[key])
    return d


async def cmd_copy(svc: Any, args: Any, out: Any) -> int:
    tty = sys.stderr.isatty() and not out.json

    def progress(p: Any) -> None:
        if tty:
            print(
                f"\r{p.snapshot[:8]} ({p.snapshots_done + 1}/{p.snapshots_total}): {p.packs_done}/"
                f"{p.packs_total} packs, {_bytes(p.bytes_copied)}   ",
                end="",
                file=sys.stderr,
                flush=True,
            )

    result = await svc.copy(args.to, args.snapshot or None, source=args.from_location, on_progress=progress)
    if tty:
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    out.emit(copy_json(result), lambda: copy_text(result))
    for w in result.warnings:
        out.note(f"warning: {w}")
    return EXIT_OK


# -- the merged catalog ----------------------------------------------------------------

_MARK = {"complete": "{}", "incomplete": "{}!", "missing": "-{}", "unknown": "?{}"}


def catalog_entry_json(entry: Any, where: dict[str, str], shrink: Any = None) -> dict:
    s: Snapshot = entry.snapshot
    d = asdict(s)
    d["short_id"] = s.short_id
    # The strategy document's BackupInfo fields, for tools written against it.
    d["created_at"] = s.time
    d["size_bytes"] = s.summary.total_bytes
    d["location"] = entry.location
    d["path"] = _object_path(where[entry.location], f"snapshots/{s.id}") if entry.location else None
    d["locations"] = [{"name": c.location, "state": c.state, "complete": c.complete} for c in entry.copies]
    # Derived, never stored (core/health/shrink.py): null, or the counts that raised the flag.
    d["flags"] = ["suspicious_shrink"] if shrink else []
    d["suspicious_shrink"] = shrink.to_dict() if shrink else None
    return d


def _object_path(where: str, key: str) -> str:
    """``/srv/repo`` -> ``/srv/repo/KEY``; ``s3://b/p at http://host`` -> ``s3://b/p/KEY at http://host``."""
    base, sep, endpoint = where.partition(" at ")
    return f"{base.rstrip('/')}/{key}{sep}{endpoint}"


def catalog_text(entries: list[Any], shrinks: dict[str, Any] | None = None) -> str:
    if not entries:
        return "no snapshots yet"
    shrinks = shrinks or {}
    rows = [("ID", "TIME", "SOURCE", "TYPE", "SIZE", "FILES", "NEW", "RATIO", "LOCATIONS", "TAGS", "FLAGS")]
    for e in entries:
        s = e.snapshot
        sh = shrinks.get(s.id)
        rows.append(
            (
                s.short_id,
                s.datetime.strftime("%Y-%m-%d %H:%M:%S"),
                shown(s.source),
                shown(s.type),
                _bytes(s.summary.total_bytes),
                str(s.summary.total_files),
                _bytes(s.summary.data_added_packed),
                f"{s.summary.compression_ratio:.2f}",
                " ".join(_MARK[c.state].format(c.location) for c in e.copies),
                ",".join(map(shown, s.tags)),
                f"SUSPICIOUS SHRINK ({sh.previous_files} -> {sh.files} files)" if sh else "",
            )
        )
    legend = "locations: name = complete copy, name! = incomplete, -name = not copied yet, ?name = unreachable"
    return _table(rows) + ("\n" + legend if len(entries[0].copies) > 1 else "")


async def cmd_snapshots(svc: Any, args: Any, out: Any) -> int:
    from core.health.shrink import suspicious_shrinks

    cat = await svc.catalog()
    # Flags compare each snapshot with the one before it: computed on the whole catalog, then filtered.
    shrinks = suspicious_shrinks([e.snapshot for e in cat.entries], svc.config.objectives.suspicious_shrink)
    entries = [e for e in cat.entries if not args.source or e.snapshot.source == args.source]
    where = {scan.name: scan.where for scan in cat.locations}
    out.emit(
        {
            "snapshots": [catalog_entry_json(e, where, shrinks.get(e.snapshot.id)) for e in entries],
            "damaged": [{"object": e.key, "reason": e.reason, "location": loc} for loc, e in cat.damaged],
            "locations": [asdict(scan) for scan in cat.locations],
        },
        lambda: catalog_text(entries, shrinks),
    )
    for loc, e in cat.damaged:
        _note(f"warning: {loc}: {e}")
    for scan in cat.locations:
        if not scan.reachable:
            _note(f"warning: location {scan.name} cannot be read: {scan.error}")
    return EXIT_OK


# -- monitoring ------------------------------------------------------------------------


def _age(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def _size_arg(text: str) -> int:
    from core.locations.probe import MAX_BUDGET

    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    scale = units.get(text[-1:].upper(), 1)
    try:
        value = int(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 64M)") from None
    if not 0 < value <= MAX_BUDGET:
        raise argparse.ArgumentTypeError(f"{text} is not above 0 and at most {MAX_BUDGET >> 30}G")
    return value


async def _probe_reads(svc: Any, args: Any) -> tuple[list, int]:
    """``locations --probe``: each location's read speed (kept in locations.json, where the
    RTO forecast reads it), recorded in the job history as a finished ``probe`` job; the
    exit code."""
    from datetime import UTC, datetime

    from core.jobs.api import JobState
    from core.jobs.record import Outcome, record_run
    from core.locations.probe import probes_outcome

    started = datetime.now(UTC)
    probes = await svc.probe_reads(None, args.probe_bytes)
    result, error = probes_outcome(probes)
    code = EXIT_ERROR if error else EXIT_OK
    result["exit_code"] = code
    params = {"bytes": args.probe_bytes} if args.probe_bytes else {}
    try:
        await record_run(
            svc.config,
            "probe",
            params,
            started,
            Outcome(JobState.FAILED if error else JobState.COMPLETED, result, error),
        )
    except AxisorError as exc:
        _note(f"warning: the probe is not recorded in the job history ({exc}); `jobs` does not list it")
    return probes, code


async def cmd_locations(svc: Any, args: Any, out: Any) -> int:
    statuses = await svc.locations()
    probes, code = await _probe_reads(svc, args) if getattr(args, "probe", False) else ([], EXIT_OK)
    by_name = {p.location: p for p in probes}
    primary_id = next((s.repository_id for s in statuses if s.primary and s.repository_id), None)
    data = []
    for s in statuses:
        d = asdict(s)
        d["same_repository"] = None if s.repository_id is None or primary_id is None else s.repository_id == primary_id
        data.append(d)

    def text() -> str:
        read_head = ("READ",) if probes else ()
        rows: list[tuple[str, ...]] = [
            (
                "NAME",
                "PROVIDER",
                "STATE",
                "LATENCY",
                *read_head,
                "USED",
                "OBJECTS",
                "FREE",
                "GROWTH 7D",
                "LAST WRITE",
                "WHERE",
            )
        ]
        notes = []
        for s, d in zip(statuses, data):
            state = "down" if not s.reachable else "ok" if s.initialized else "empty"
            if d["same_repository"] is False:
                state = "OTHER REPO"
            growth = "-" if s.growth_bytes is None else ("+" if s.growth_bytes >= 0 else "") + _bytes(s.growth_bytes)
            probe = by_name.get(s.name)
            read = () if not probes else (_rate(probe),)
            if probe is not None and (probe.error or probe.bytes_per_second is None):
                notes.append(f"{s.name}: probe {probe.summary()}")
            rows.append(
                (
                    s.name + (" (primary)" if s.primary else ""),
                    s.provider,
                    state,
                    "-" if s.latency_ms is None else f"{s.latency_ms:.1f} ms",
                    *read,
                    _bytes(s.bytes_used),
                    "-" if s.objects is None else str(s.objects),
                    _bytes(s.free_bytes),
                    growth,
                    _age(s.last_write),
                    s.where,
                )
            )
            if s.error:
                notes.append(f"{s.name}: {s.error}")
            if s.immutability == "append-only":
                notes.append(
                    f"{s.name}: append-only (axisor-backup serve --append-only): it refuses deletes; "
                    "prune it and remove keys there from a trusted host"
                )
            elif s.immutability:
                notes.append(
                    f"{s.name}: {s.immutability}: each object stays undeletable that long after its write; "
                    "prune keeps what is still locked"
                )
            if s.last_error:
                notes.append(f"{s.name}: last copy failed at {_age(s.last_error_at)}: {s.last_error}")
        return _table(rows) + "".join(f"\n{n}" for n in notes)

    shown_data: dict[str, Any] = {"locations": data}
    if probes:
        shown_data["probes"] = [p.to_dict() for p in probes]
    out.emit(shown_data, text)
    return code


def _rate(probe: Any) -> str:
    if probe is None or probe.bytes_per_second is None:
        return "-"
    return f"{probe.bytes_per_second / 1e6:.1f} MB/s"


# -- restore ---------------------------------------------------------------------------


async def choose_restore_location(svc: Any, args: Any) -> str | None:
    """With ``--from`` or several locations: switch ``svc`` to the location the restore
    reads from, telling stderr about each location passed over. Returns its name."""
    prefer = getattr(args, "from_location", None)
    if prefer is None and not svc.config.storage.remote_storage:
        return None  # one location: nothing to choose, and errors stay exactly as they were
    refs = list(args.snapshot)
    source = args.source if args.target_db is None else (args.source or "database")
    choice = await svc.choose_location(refs, source, prefer=prefer)
    for name, why in choice.skipped:
        _note(f"note: location {name} cannot serve this restore ({why})")
    if choice.skipped:
        _note(f"note: restoring from location {choice.location}")
    return choice.location


COMMANDS = {"copy": cmd_copy, "locations": cmd_locations}
