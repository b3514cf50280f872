"""`axisor-backup database archiving|check|status`: the server's archiving settings and what to
set, the database checks (`checks_text`, also config check --connect's), the WAL archive's state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.cli_output import Output
from core.errors import ArchivingNotReady, Exit
from core.text import shown

if TYPE_CHECKING:
    from core.service import BackupService

EXIT_OK = Exit.OK


def checks_text(report) -> str:
    """A CheckReport (core/sources/postgres/dbcheck.py): a line per check, then the counts."""
    mark = {True: "ok     ", False: "FAILED ", None: "not run"}
    lines = [f"database check of {shown(report.server)} ({report.mode} mode)"]
    lines += [f"  {mark[c.ok]} {c.name}: {shown(c.detail)}" for c in report.checks]
    n = len(report.checks)
    if report.passed == n:
        lines.append(f"ok: all {n} checks passed")
    else:
        lines.append(
            f"{n} checks: {report.passed} passed, {report.failed} failed, {report.not_run} not run"
            + (" (exit 18)" if report.failed else "")
        )
    return "\n".join(lines)


async def cmd_database(svc: BackupService, args, out: Output) -> int:
    if args.database_command == "check":
        report = await svc.database_check(args.config_path)
        out.emit(report.as_dict(), lambda: checks_text(report))
        return EXIT_OK if report.ok else ArchivingNotReady.exit_code
    if args.database_command == "archiving":
        r, made = await svc.database_archiving(
            args.config_path, setup=args.setup, key_file=args.key_file, owner=args.owner
        )
        data = {
            "write_only_key": (
                {"id": made.id, "key_file": str(args.key_file or args.config_path.resolve().parent / "wal-writer.key")}
                if made
                else None
            ),
            "ok": r.ok,
            "server": r.server,
            "settings": r.settings,
            "problems": r.problems,
            "advice": r.advice,
            "alter_system": r.alter_system,
            "postgresql_conf": r.conf_lines,
            "restart_needed": r.restart_needed,
            "archive_command": r.archive_command,
        }

        def text() -> str:
            lines = []
            if made is not None:
                where = data["write_only_key"]["key_file"]
                lines += [
                    f"added write-only key {made.id[:12]} for the server; its passphrase is in {where}",
                    "  the server's OS user pushes WAL with it and can read, restore, prune and forget nothing;",
                    "  keep that file readable by the server's OS user only (--owner gives it to that user)",
                    "",
                ]
            lines += [f"archiving on {r.server}: {'ok' if r.ok else 'NOT ready'}"]
            lines += [f"  problem: {p}" for p in r.problems] + [f"  advice: {a}" for a in r.advice]
            if r.alter_system:
                lines += ["", "Run as a superuser:"] + [f"  {x}" for x in r.alter_system]
                lines += ["", "or put in postgresql.conf:"] + [f"  {x}" for x in r.conf_lines]
                if r.restart_needed:
                    lines.append("and restart the server (wal_level and archive_mode need a restart).")
            return "\n".join(lines)

        out.emit(data, text)
        return EXIT_OK if r.ok else Exit.ARCHIVING_NOT_READY
    st = await svc.database_status()

    def status_text() -> str:
        lines = [f"WAL archive: {st['segments']} segments, {st['history_files']} history files"]
        if st["last_segment"]:
            lines.append(
                f"last segment  {st['last_segment']} pushed {st['last_pushed']} ({st['age_seconds']:.0f} s ago)"
            )
        else:
            lines.append("last segment  none archived yet")
        lines.append("gaps          " + (", ".join(f"{g['from']}..{g['to']}" for g in st["gaps"]) or "none"))
        w = st["recovery_window"]
        lines.append(f"base backups  {st['base_backups']}")
        lines.append(
            f"recovery      {w['from']} .. {w['to']}"
            if w
            else "recovery      no window yet (needs a physical base backup and archived WAL)"
        )
        srv = st["server"]
        if srv and srv.get("reachable"):
            lines.append(
                f"server        archived {srv['archived_count']}, last {srv['last_archived_wal']} at "
                f"{srv['last_archived_time']}; failed {srv['failed_count']}"
                + (
                    f", last failure {srv['last_failed_wal']} at {srv['last_failed_time']}"
                    if srv["failed_count"]
                    else ""
                )
            )
        elif srv:
            lines.append(f"server        unreachable: {srv['error']}")
        return "\n".join(lines)

    out.emit(st, status_text)
    return EXIT_OK
