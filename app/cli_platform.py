"""`restore --platform --to-time T`: the database recovered to T and every files source from
the snapshot that belongs with it, with the skew of each (core/restore/platform.py).
`--dry-run` shows the plan and changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.cli_output import Output
from core.errors import Exit, RestoreRefused, UsageError
from core.text import shown

if TYPE_CHECKING:
    from core.restore.platform import PlatformPlan
    from core.service import BackupService


def _span_text(plan: PlatformPlan) -> list[str]:
    lines = []
    for c in plan.files:
        if c.snapshot is None or c.span is None:
            lines.append(f"  {shown(c.source)}: NO SNAPSHOT had begun by then")
            continue
        rel_start = (c.span.start - plan.at).total_seconds()
        rel_end = (c.span.end - plan.at).total_seconds()
        where = "covers T" if c.covers else "before T"
        lines.append(
            f"  {shown(c.source)}: snapshot {c.snapshot.short_id}, scan {rel_start:+.1f} s .. {rel_end:+.1f} s "
            f"from T ({where}), skew {c.skew_seconds:.1f} s by the {c.span.basis}"
            + (f"; {shown(c.span.note)}" if c.span.note else "")
        )
    return lines


def _problems(plan: PlatformPlan, window) -> list[str]:
    problems = [f"no snapshot of {shown(s)} had begun by {plan.at.isoformat()}" for s in plan.missing]
    if window is None:
        problems.append("the database has no physical base backups: point-in-time recovery is not possible")
    elif window.start is None or window.end is None or not (window.start <= plan.at <= window.end):
        problems.append(f"{plan.at.isoformat()} is outside the database's recovery window ({window.describe()})")
    return problems


async def restore_platform(svc: BackupService, args, out: Output) -> int:
    from core.text import parse_target_time

    if args.to_time is None:
        raise UsageError("--platform needs --to-time TIMESTAMP: the instant to bring the platform back to")
    if args.snapshot or args.source or args.target_db or args.table or args.schema or args.force:
        raise UsageError(
            "--platform chooses its snapshots from --to-time: snapshots, --source, --target-db, "
            "--table, --schema and --force do not apply"
        )
    if not svc.config.database.enabled:
        raise UsageError("--platform recovers the database to the instant: [database] is not enabled")
    at = parse_target_time(args.to_time)
    plan, window = await svc.platform_plan(at)
    problems = _problems(plan, window)
    data = {**plan.to_dict(), "database": {"window": None if window is None else window.describe()}}
    data["problems"] = problems

    def text() -> str:
        lines = [
            f"the platform at {at.isoformat()}:",
            f"  database: recovered to T exactly ({window.describe() if window else 'no window'})",
        ]
        lines += _span_text(plan)
        if plan.max_skew is not None:
            lines.append(f"largest skew between files and database: {plan.max_skew:.1f} s")
        lines += [f"cannot: {p}" for p in problems]
        return "\n".join(lines)

    if args.dry_run or problems:
        out.emit(data, text)
        if problems:
            Output.note(f"error: the platform cannot be brought back to that instant (exit {RestoreRefused.exit_code})")
            return RestoreRefused.exit_code
        return Exit.OK
    if args.target is None or args.target_dir is None:
        raise UsageError("--platform restores files into --target DIR and the database into --target-dir DIR")
    report = await svc.restore_database_pitr(
        at,
        args.target_dir,
        config_path=args.config_path,
        start=args.start,
        port=args.port,
        os_user=args.os_user,
        timeout=args.timeout,
    )
    snaps = [c.snapshot for c in plan.files if c.snapshot is not None]
    outcomes = await svc.restore_many(snaps, args.target, validate=not args.no_validate)
    bad = [o for o in outcomes if not o.ok]
    data["database"]["restored"] = {"target_dir": str(report.target_dir), "base": report.base_snapshot}
    data["restored"] = [o.as_dict() for o in outcomes]
    out.emit(
        data,
        lambda: (
            text()
            + f"\nrestored the database into {report.target_dir} and {len(outcomes)} files snapshots into {args.target}"
        ),
    )
    if bad:
        Output.note("error: restored files differ from their snapshots")
        return Exit.VALIDATION_FAILED
    return Exit.OK
