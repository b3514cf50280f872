"""Reading the catalog: `snapshots` (handed to app/cli_locations.py, merged across locations),
`show` (a snapshot's manifest) and `ls` (a snapshot's files), as text or --json."""

from __future__ import annotations

import os
import stat as stat_mod
from dataclasses import asdict
from typing import TYPE_CHECKING

from app import cli_locations
from app.cli_output import Output
from core.errors import Exit
from core.fsmeta.describe import as_json, attributes, marks
from core.repository.snapshot import Snapshot
from core.text import human_bytes, shown

if TYPE_CHECKING:
    from core.service import BackupService

EXIT_OK = Exit.OK


def snapshot_json(s: Snapshot) -> dict:
    d = asdict(s)
    d["short_id"] = s.short_id
    return d


def catalog_text(snaps: list[Snapshot]) -> str:
    if not snaps:
        return "no snapshots yet"
    rows = [("ID", "TIME", "SOURCE", "TYPE", "SIZE", "FILES", "NEW", "RATIO", "TAGS")]
    for s in snaps:
        rows.append(
            (
                s.short_id,
                s.datetime.strftime("%Y-%m-%d %H:%M:%S"),
                s.source,
                s.type,
                human_bytes(s.summary.total_bytes),
                str(s.summary.total_files),
                human_bytes(s.summary.data_added_packed),
                f"{s.summary.compression_ratio:.2f}",
                ",".join(s.tags),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def mode_string(mode: int) -> str:
    return stat_mod.filemode(mode)


async def cmd_snapshots(svc: BackupService, args, out: Output) -> int:
    return await cli_locations.cmd_snapshots(svc, args, out)  # merged across every location


async def cmd_show(svc: BackupService, args, out: Output) -> int:
    snaps = await svc.resolve([args.snapshot])
    if out.json:
        out.emit(snapshot_json(snaps[0]) if len(snaps) == 1 else [snapshot_json(s) for s in snaps], str)
        return EXIT_OK
    for i, s in enumerate(snaps):
        if i:
            print()
        _show_one(s, out)
    return EXIT_OK


def _show_one(s: Snapshot, out: Output) -> None:
    def text() -> str:
        m = s.summary
        lines = [
            f"snapshot   {s.id}",
            f"time       {shown(s.time)}",
            f"source     {shown(s.source)}",
            f"type       {shown(s.type)}",
            f"parent     {shown(s.parent or '-')}",
            f"backup set {shown(s.backup_set)}",
            f"host       {shown(s.hostname)} ({shown(s.username)})",
            f"paths      {', '.join(map(shown, s.paths))}",
            f"tags       {', '.join(map(shown, s.tags)) or '-'}",
            f"files      {m.total_files} in {m.dirs} folders, {human_bytes(m.total_bytes)}",
            f"changes    new {m.files_new}, changed {m.files_changed}, unmodified {m.files_unmodified}, "
            f"removed {m.files_removed}",
            f"added      {human_bytes(m.data_added)} -> {human_bytes(m.data_added_packed)} stored "
            f"(ratio {m.compression_ratio:.2f})",
        ]
        md = s.metadata or {}
        if md.get("database_version"):
            lines.append(
                f"database   {shown(str(md.get('dbname')))} (PostgreSQL {shown(str(md['database_version']))}, "
                f"{human_bytes(md.get('database_size') or 0)}), {md.get('total_tables')} tables, "
                f"{md.get('total_records')} rows, application {md.get('application_version') or '-'}"
            )
        for link in md.get("root_links") or []:
            if isinstance(link, dict):
                lines.append(
                    f"root link  {shown(str(link.get('path')))} -> {shown(str(link.get('target')))} "
                    f"({'target archived' if link.get('followed') else 'only the link stored'})"
                )
        lines.extend(f"warning    {shown(w)}" for w in s.warnings)
        return "\n".join(lines)

    out.emit(snapshot_json(s), text)


async def cmd_ls(svc: BackupService, args, out: Output) -> int:
    items = await svc.ls(args.snapshot, args.path)
    data = [
        {
            "path": p,
            "type": n.type,
            "mode": n.mode,
            "size": n.size,
            "mtime_ns": n.mtime_ns,
            "uid": n.uid,
            "gid": n.gid,
            **as_json(n),
        }
        for p, n in items
    ]

    def text() -> str:
        # Names come from the backed-up host: escaped, never interpreted by the terminal.
        if not args.long:
            return "\n".join(shown(p) for p, _ in items)
        from datetime import datetime

        lines = []
        for p, n in items:
            size = f"{os.major(n.rdev)},{os.minor(n.rdev)}" if n.type in ("chardev", "blockdev") else str(n.size)
            mark = "+" if "+" in marks(n) else " "
            lines.append(
                f"{mode_string(n.mode)}{mark} {n.user or n.uid:>8} {n.group or n.gid:>8} {size:>12} "
                f"{datetime.fromtimestamp(n.mtime_ns / 1e9):%Y-%m-%d %H:%M} {shown(p)}"
                + (f" -> {shown(n.target)}" if n.type == "symlink" else "")
            )
            lines.extend(f"    {a.kind}: {a.text}" for a in attributes(n) if a.kind != "device")
        return "\n".join(lines)

    out.emit(data, text)
    return EXIT_OK
