"""`restore --to-time --target-dir`: point-in-time recovery of the database from a physical base
backup and the archived WAL, its phases said on a terminal, and the report."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from app.cli_output import Output
from core.errors import Exit, UsageError
from core.text import human_bytes

if TYPE_CHECKING:
    from core.service import BackupService

EXIT_OK = Exit.OK


async def _restore_pitr(svc: BackupService, args, out: Output) -> int:
    from core.sources.postgres.pitr import parse_target_time

    if args.to_time is not None and args.table and args.target_db is not None:
        from app.cli_table_at_time import restore_table_at_time

        return await restore_table_at_time(svc, args, out)
    if args.as_names or args.with_references:
        raise UsageError("--as and --with-references are for a table as of a time: --to-time, --table and --target-db")

    if args.to_time is None or args.target_dir is None:
        raise UsageError("point-in-time recovery needs both --to-time TIMESTAMP and --target-dir DIR")
    if args.source not in (None, "database"):
        raise UsageError("--to-time restores the database: use --source database (or leave it out)")
    if args.target is not None or args.target_db is not None or args.table or args.schema or args.force or args.roles:
        raise UsageError(
            "--to-time restores a whole cluster into --target-dir: --target, --target-db, "
            "--table, --schema, --force and --roles do not apply"
        )
    if len(args.snapshot) > 1:
        raise UsageError("--to-time takes at most one base backup snapshot (default: the newest that fits)")
    target_time = parse_target_time(args.to_time)
    wal_from = getattr(args, "from_location", None)
    if wal_from:
        await svc.use_location(wal_from)  # base backup and WAL both from that location
    snap = (await svc.resolve(args.snapshot, "database"))[0] if args.snapshot else None
    tty = sys.stderr.isatty() and not out.json

    def phase(name: str) -> None:
        if tty:
            Output.note(
                {
                    "window": "checking the recovery window",
                    "extract": "extracting the base backup",
                    "configure": "writing recovery settings",
                    "recover": "starting the server and replaying WAL",
                }.get(name, name)
            )

    report = await svc.restore_database_pitr(
        target_time,
        args.target_dir,
        config_path=args.config_path,
        snapshot=snap,
        start=args.start,
        port=args.port,
        os_user=args.os_user,
        timeout=args.timeout,
        on_phase=phase,
        wal_from=wal_from,
    )
    data = asdict(report)

    def text() -> str:
        lines = [
            f"restored base backup {report.base_snapshot[:8]} (ended {report.base_stop_time}) into "
            f"{report.target_dir}: {human_bytes(report.bytes)}",
            f"recovery target: {report.target_time}",
        ]
        if report.started:
            lines.append(
                f"the server on port {report.port} has promoted: {report.stopped_at or 'stop point not logged'}"
            )
            if report.last_transaction:
                lines.append(f"last transaction kept: {report.last_transaction}")
            lines.append(
                f"took {report.seconds.get('total', 0):.1f} s "
                f"(extract {report.seconds.get('extract', 0):.1f} s, recovery {report.seconds.get('recover', 0):.1f} s)"
            )
        else:
            lines.append("start it with: " + " ".join(report.start_command))
            lines.append("it replays archived WAL through `axisor-backup wal-fetch`, stops at the target and promotes")
        lines.extend(f"warning: {w}" for w in report.warnings)
        return "\n".join(lines)

    out.emit(data, text)
    return EXIT_OK
