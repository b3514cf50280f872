"""`restore --to-time T --table S.T --target-db DB --force [--dry-run]`: tables put back in
place as they were at T, after a safety snapshot of them (core/service/table_in_place.py);
its phases said on a terminal, the restore id and the safety snapshot always said."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

from app.cli_output import Output
from app.cli_table_at_time import source_line
from core.errors import Exit
from core.text import shown

if TYPE_CHECKING:
    from core.service import BackupService

PHASES = {
    "safety": "taking a safety snapshot of the tables (what `rollback` puts back)",
    "recover": "recovering a throwaway cluster to the time (base backup, then WAL replay)",
    "window": "checking the recovery window",
    "extract": "extracting the base backup",
    "configure": "writing recovery settings",
    "copy": "copying the tables as they were beside the live ones (staging copies)",
    "merge": "putting the rows back in place (one transaction for all the tables)",
    "validate": "validating each live table against the recovered one (rows and row checksum)",
    "cleanup": "removing the throwaway cluster",
}


async def restore_table_in_place(svc: BackupService, args, out: Output, at: datetime) -> int:
    from core.restore.safety import new_restore_id

    tty = sys.stderr.isatty() and not out.json
    restore_id = new_restore_id()
    report = await svc.restore_table_in_place(
        at,
        list(args.table),
        args.target_db,
        config_path=args.config_path,
        os_user=args.os_user,
        timeout=args.timeout,
        on_phase=(lambda name: Output.note(PHASES.get(name) or name)) if tty else None,
        dry_run=args.dry_run,
        restore_id=restore_id,
        # Said as soon as it is committed, on any terminal: a failure later still names it.
        on_safety=lambda snap: Output.note(
            f"safety snapshot {snap[:8]} taken (restore id {restore_id}; undo: axisor-backup rollback {restore_id})"
        ),
    )

    def text() -> str:
        if report.dry_run:
            return "\n".join(
                ["dry run: nothing was changed; the restore would take:", *(f"  {p}" for p in report.plan)]
            )
        lines = [
            f"{shown(t.table)} put back in place as of {report.at} in {report.target}: {t.deleted} rows deleted, "
            f"{t.updated} updated, {t.inserted} inserted"
            + ("" if t.by_key else " (no primary key: every row replaced)")
            + f"; {t.rows} rows, "
            + ("validated (rows and row checksum)" if t.validated else "NOT VALID: " + t.problem)
            for t in report.tables
        ]
        for t in report.tables:
            lines += [f"  {shown(s)}" for s in t.sequences]
        lines.append(
            f"safety snapshot {report.safety_snapshot[:8]} holds the tables as they were before "
            f"(undo: axisor-backup rollback {report.restore_id})"
        )
        lines.append(source_line(report))
        s = report.seconds
        lines.append(
            f"took {s.get('total', 0):.1f} s: safety snapshot {s.get('safety', 0):.1f} s, recovery "
            f"{s.get('recover', 0):.1f} s, copy {s.get('copy', 0):.1f} s, merge {s.get('merge', 0):.1f} s, "
            f"validation {s.get('validate', 0):.1f} s, cleanup {s.get('cleanup', 0):.1f} s"
        )
        lines += [f"warning: {shown(p)}" for p in report.cleanup_problems]
        return "\n".join(lines)

    out.emit(report.to_dict(), text)
    return Exit.OK if report.ok else Exit.WARNINGS
