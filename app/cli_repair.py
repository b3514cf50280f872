"""`axisor-backup repair index|packs|snapshots [--dry-run] [--location NAME]`.

Each location is repaired on its own (default: every configured location); one that fails
does not stop the others, and the command then exits with the first failure's code.
Output shapes and exit codes: docs/CLI.md ("repair"); the runbook: docs/OPERATIONS.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.errors import AxisorError
from core.text import human_bytes, shown_lines


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("repair", parents=[common], help="repair a damaged repository: index, packs, snapshots")
    rsub = p.add_subparsers(dest="repair_command", required=True, metavar="WHAT")

    def options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
        q.add_argument(
            "--location",
            action="append",
            default=[],
            metavar="NAME",
            help="only this location (repeatable; default: every configured location)",
        )

    options(
        rsub.add_parser(
            "index",
            parents=[common],
            help="rebuild the index from the packs: drop missing packs and damaged index files, "
            "index unindexed packs, salvage truncated ones",
        )
    )
    q = rsub.add_parser(
        "packs",
        parents=[common],
        help="read packs whole (the named ones, or all) and salvage the intact blobs of damaged ones",
    )
    q.add_argument("pack", nargs="*", help="pack ids or unique prefixes (default: every pack)")
    options(q)
    q = rsub.add_parser(
        "snapshots", parents=[common], help="rewrite snapshots that reference lost data, recording every loss"
    )
    q.add_argument("snapshot", nargs="*", help="snapshot ids or unique prefixes (default: every snapshot)")
    q.add_argument(
        "--truncate",
        action="store_true",
        help="keep the intact beginning of a damaged file instead of dropping the file",
    )
    options(q)


def rebuild_text(r: dict) -> str:
    dry = r["dry_run"]
    would = "would be " if dry else ""
    lines = []
    for d in r["index_files"]["damaged"]:
        lines.append(f"damaged index file {d['object']}: {d['reason']} ({would}removed)")
    p = r["packs"]
    for key in p["missing"]:
        lines.append(f"missing pack {key} ({would}dropped from the index)")
    for key in p["reindexed"]:
        lines.append(f"pack {key} {would}indexed from its own header")
    for d in p["damaged"]:
        lines.append(
            f"damaged pack {d['object']}: {d['reason']} (intact blobs {would}copied, then the pack {would}deleted)"
        )
    for d in p["unreadable"]:
        lines.append(f"pack {d['object']} left alone: {d['reason']}")
    b = r["blobs"]
    if r["changed"]:
        lines.append(
            f"index: {r['index_files']['before']} files -> {r['index_files']['after']}, naming "
            f"{p['indexed']} packs; {b['salvaged']} blobs {would}salvaged into {p['written']} new packs"
        )
    else:
        lines.append(f"index is sound: {p['indexed']} packs indexed, {p['on_storage']} on storage")
    if p["checked"]:
        lines.append(f"{p['checked']} packs read ({human_bytes(r['bytes_read'])})")
    if b["lost"]:
        lines.append(
            f"{b['lost']} blobs {'would be' if dry else 'are'} in no pack any more: the next backup "
            "stores again whatever is still on disk; `axisor-backup repair snapshots --dry-run` lists "
            "the snapshots that lost data"
        )
    t = r["temporary"]
    if t and (t["removed"] or t["kept_young"]):
        lines.append(
            f"temporary files: {len(t['removed'])} {would}removed ({human_bytes(t['removed_bytes'])})"
            + (f", {t['kept_young']} younger ones kept" if t["kept_young"] else "")
        )
    return "\n".join(lines)


def snapshots_text(r: dict) -> str:
    dry = r["dry_run"]
    lines = []
    for f in r["repaired"]:
        head = f"snapshot {f['short_id']} ({f['source']}, {f['time']}) " + (
            "would be rewritten" if dry else f"rewritten as {f['new_id'][:8]}, original forgotten"
        )
        lines.append(head)
        lines.extend(f"  lost {x['path']}: {x['detail']}" for x in f["lost"])
    for f in r["forgotten"]:
        lines.append(
            f"snapshot {f['short_id']} ({f['source']}, {f['time']}) {'would be' if dry else 'was'} "
            f"forgotten: {f['unrecoverable']}"
        )
    for d in r["damaged_manifests"]:
        lines.append(
            f"damaged manifest {d['object']}: {d['reason']} (left alone; `axisor-backup forget ID` removes it)"
        )
    n = len(r["repaired"]) + len(r["forgotten"])
    lines.append(
        f"{r['checked']} snapshots checked, {n} {'to repair' if dry else 'repaired'}"
        if n
        else f"{r['checked']} snapshots checked, none references lost data"
    )
    return "\n".join(lines)


async def cmd_repair(svc, args, out) -> int:
    what = args.repair_command
    names = list(args.location) or svc.location_names()
    results: list[dict] = []
    first_code = 0
    for name in names:
        try:
            if what == "snapshots":
                rep = await svc.repair_snapshots(
                    args.snapshot or None, location=name, dry_run=args.dry_run, truncate=args.truncate
                )
            else:
                rep = await svc.repair_index(
                    location=name,
                    dry_run=args.dry_run,
                    packs=getattr(args, "pack", None) or None,
                    read_all=what == "packs" and not args.pack,
                )
        except AxisorError as exc:
            results.append({"location": name, "error": str(exc)})
            first_code = first_code or exc.exit_code
            continue
        results.append({"location": name, "error": None, **rep.to_dict()})
    fmt = snapshots_text if what == "snapshots" else rebuild_text

    def text() -> str:
        parts = []
        for loc in results:
            body = f"error: {loc['error']}" if loc["error"] else fmt(loc)
            parts.append(f"== location {loc['location']} ==\n{body}" if len(results) > 1 else body)
        return "\n\n".join(parts)

    out.emit({"what": what, "dry_run": args.dry_run, "locations": results}, text)
    failures = [f"{loc['location']}: {loc['error']}" for loc in results if loc["error"]]
    if failures:
        print(shown_lines(f"error: repair {what} failed at {'; '.join(failures)}"), file=sys.stderr)
    return first_code


COMMANDS = {"repair": cmd_repair}
