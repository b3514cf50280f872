"""`restore --to-time T --table S.T --target-db DB [--as S.T_1432]`: a table as it was at T,
copied beside the live one (core/service/table_at_time.py); its phases said on a terminal.
With --force it is put back in place instead (app/cli_table_in_place.py)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.cli_output import Output
from core.errors import Exit, UsageError
from core.text import shown

if TYPE_CHECKING:
    from core.service import BackupService

PHASES = {
    "recover": "recovering a throwaway cluster to the time (base backup, then WAL replay)",
    "window": "checking the recovery window",
    "extract": "extracting the base backup",
    "configure": "writing recovery settings",
    "copy": "copying the table(s) beside the live one(s)",
    "validate": "validating each copy (rows and row checksum)",
    "cleanup": "removing the throwaway cluster",
}


async def restore_table_at_time(svc: BackupService, args, out: Output) -> int:
    from core.text import parse_target_time

    if args.schema or args.roles or args.target is not None or args.target_dir is not None:
        raise UsageError(
            "a table as of a time is copied beside the live one (or, with --force, put back in place): "
            "--schema, --roles, --target and --target-dir do not apply (the throwaway cluster needs no folder)"
        )
    if args.snapshot:
        raise UsageError("a table as of a time starts from the base backup that fits --to-time: give no snapshot")
    at = parse_target_time(args.to_time)
    if args.force:
        if args.as_names or args.with_references:
            raise UsageError(
                "--force puts the tables back in place, under their own names: --as and --with-references "
                "are for a copy beside the live tables (leave out --force)"
            )
        from app.cli_table_in_place import restore_table_in_place

        return await restore_table_in_place(svc, args, out, at)
    if args.dry_run:
        raise UsageError(
            "--dry-run with --to-time --table is for --force (a copy beside the live table changes nothing live)"
        )
    tty = sys.stderr.isatty() and not out.json
    report = await svc.restore_table_at_time(
        at,
        list(args.table),
        args.target_db,
        list(args.as_names),
        config_path=args.config_path,
        os_user=args.os_user,
        timeout=args.timeout,
        on_phase=(lambda name: Output.note(PHASES.get(name) or name)) if tty else None,
        with_references=args.with_references,
    )

    def text() -> str:
        lines = [
            f"{shown(t.table)} as of {report.at} -> {shown(t.copy)} in {report.target}: {t.rows} rows, "
            f"{'validated (rows and checksum)' if t.validated else 'NOT VALID: ' + t.problem}"
            for t in report.tables
        ]
        for t in report.tables:
            lines += [f"  renamed {shown(r)}" for r in t.renamed]
            lines += [f"  not copied: {shown(n)}" for n in t.not_copied]
        lines.append(source_line(report))
        s = report.seconds
        lines.append(
            f"took {s.get('total', 0):.1f} s: recovery {s.get('recover', 0):.1f} s, copy {s.get('copy', 0):.1f} s, "
            f"validation {s.get('validate', 0):.1f} s, cleanup {s.get('cleanup', 0):.1f} s"
        )
        lines += [f"warning: {shown(p)}" for p in report.cleanup_problems]
        return "\n".join(lines)

    out.emit(report.to_dict(), text)
    return Exit.OK if report.ok else Exit.WARNINGS


def source_line(report) -> str:
    """Where the tables of a time came from: the base backup recovered, or (no base backups)
    the logical snapshot and how long before the asked time it was taken."""
    if report.from_logical:
        return (
            f"from logical snapshot {report.base_snapshot[:8]}, taken {report.before_seconds:.0f} s before the time "
            "asked (no base backups: the newest logical snapshot at or before it)"
        )
    return f"recovered from base backup {report.base_snapshot[:8]}: {report.stopped_at or 'recovery finished'}"
