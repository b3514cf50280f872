"""`restore --target-db`: a database snapshot into a database (its plan with --dry-run), reported
with the row-count and checksum validation and what was carried or not restored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app import cli_locations
from app.cli_output import Output
from core.errors import Exit, RestoreRefused, RestoreValidationFailed, UsageError
from core.text import human_bytes, shown

if TYPE_CHECKING:
    from core.service import BackupService

EXIT_OK = Exit.OK
EXIT_WARNINGS = Exit.WARNINGS  # a database restore that could not carry everything


async def _plan_database(svc: BackupService, args, out: Output) -> int:
    if len(args.snapshot) != 1:
        raise UsageError("--target-db restores exactly one database snapshot")
    snap = (await svc.resolve(args.snapshot, args.source or "database"))[0]
    plan = await svc.plan_database_restore(
        snap, args.target_db, force=args.force, tables=tuple(args.table), schemas=tuple(args.schema), roles=args.roles
    )

    def text() -> str:
        lines = [
            f"{snap.short_id} into {plan['target']} would: "
            + (
                "create the database"
                if plan["create_database"]
                else f"use the existing database ({plan['objects']} objects)"
            )
            + ("; first take a safety snapshot of it" if plan["safety_snapshot"] else "")
        ]
        lines += [f"  {t['action']:<8} table {shown(t['table'])} ({t['rows']} rows)" for t in plan["tables"]]
        lines += [f"  keep     table {shown(t)} (not in the snapshot)" for t in plan["left_in_place"]]
        c = plan["carry"]
        if c["roles_to_create"]:
            lines.append(f"  create   roles {shown(', '.join(c['roles_to_create']))} (--roles)")
        lines += [f"  carry    {shown(x)}" for x in c["carried"]]
        lines += [f"  not restored: {shown(n['what'])}: {shown(n['why'])}" for n in c["not_restored"]]
        if plan["refused"]:
            lines.append(f"refused: {plan['refused']}")
        return "\n".join(lines)

    out.emit({"dry_run": True, **plan}, text)
    return RestoreRefused.exit_code if plan["refused"] else EXIT_OK


async def _restore_database(svc: BackupService, args, out: Output) -> int:
    if args.delete or args.no_validate or args.read_back:
        raise UsageError(
            "--delete, --no-validate and --read-back apply to file restores (--target); a database restore "
            "always validates row counts, and --force takes a safety backup first"
        )
    if args.dry_run:
        return await _plan_database(svc, args, out)
    if len(args.snapshot) != 1:
        raise UsageError("--target-db restores exactly one database snapshot")
    await cli_locations.choose_restore_location(svc, args)
    snaps = await svc.resolve(args.snapshot, args.source or "database")
    if len(snaps) != 1 or snaps[0].source != "database":
        raise UsageError(f"snapshot {args.snapshot[0]} is not a database snapshot")
    report = await svc.restore_database(
        snaps[0],
        args.target_db,
        force=args.force,
        tables=tuple(args.table),
        schemas=tuple(args.schema),
        roles=args.roles,
    )
    tables = [
        {
            "table": t.table,
            "schema": t.schema,
            "name": t.name,
            "expected": t.expected,
            "actual": t.actual,
            "ok": t.ok,
            "checksum_ok": t.checksum_ok,
            "note": t.note,
        }
        for t in report.tables
    ]
    validation = report.validation()
    data = {
        "snapshot": report.snapshot,
        "database": report.database,
        "target": report.target,
        "created": report.created,
        "bytes": report.bytes,
        "seconds": report.seconds,
        "ok": report.ok,
        "schema_fingerprint_match": report.schema_fingerprint_match,
        "tables": tables,
        "mismatches": [t for t in tables if not t["ok"]],
        "warnings": report.warnings,
        "partial": report.partial,
        "safety_snapshot": report.safety_snapshot,
        "restore_id": report.restore_id,
        "large_objects": report.large_objects,
        "validation": validation,
        "roles_created": report.roles_created,
        "carried": report.carried,
        "not_restored": [n.as_dict() for n in report.not_restored],
    }

    def text() -> str:
        v = validation
        how = (
            f"{v['with_checksum']} by row count and checksum"
            if not v["count_only"]
            else f"{v['with_checksum']} by row count and checksum, {v['count_only']} by row count only"
            + (f" ({v['count_only_reason']})" if v["count_only_reason"] else "")
        )
        lines = [
            f"restored {report.snapshot[:8]} into {report.target}"
            f"{' (created)' if report.created else ''}: {human_bytes(report.bytes)} in {report.seconds:.1f} s",
            f"validated {v['validated']} of {v['tables']} tables ({how}); "
            f"{len(v['skipped'])} skipped"
            + (" because the snapshot records no row count for them" if v["skipped"] else ""),
            f"row counts: {sum(1 for t in report.tables if t.actual == t.expected)} of {len(tables)} "
            f"tables match the snapshot",
            "schema fingerprint: "
            + (
                ("not compared (partial restore)" if report.partial else "not compared")
                if report.schema_fingerprint_match is None
                else "matches"
                if report.schema_fingerprint_match
                else "differs"
            ),
        ]
        if report.safety_snapshot:
            lines.insert(
                0,
                f"safety snapshot {report.safety_snapshot[:8]} holds {report.database} as it was "
                f"(undo: axisor-backup rollback {report.restore_id})",
            )
        if v["with_checksum"]:
            lines.append(
                f"row checksums: {sum(1 for t in tables if t['checksum_ok'])} of {v['with_checksum']} tables match"
            )
        if report.large_objects is not None:
            lo = report.large_objects
            lines.append(
                f"large objects: {lo['actual']['count']}, {'match' if lo['ok'] else 'DIFFER from'} the snapshot"
            )
        for t in report.mismatches:
            got = "missing" if t.actual is None else t.actual
            why = "" if t.actual != t.expected else " (same count, different rows: checksum differs)"
            lines.append(
                f"  MISMATCH {shown(t.table)}: expected {t.expected} rows, found {got}{why}"
                + (f"; {t.note}" if t.note else "")
            )
        lines.extend(f"  skipped {shown(s['table'])}: {s['reason']}" for s in v["skipped"])
        lines.extend(f"  pg_restore: {w}" for w in report.warnings)
        lines.extend(not_restored_lines(report.carried, report.not_restored))
        return "\n".join(lines)

    out.emit(data, text)
    if not report.ok:
        lo_bad = report.large_objects is not None and not report.large_objects["ok"]
        named = ", ".join(shown(t.table) for t in report.mismatches[:10]) + (
            " ..." if len(report.mismatches) > 10 else ""
        )
        Output.note(
            f"error: restored row counts or checksums differ from the snapshot in "
            f"{len(data['mismatches'])} tables{' (and the large objects)' if lo_bad else ''}"
            f"{': ' + named if named else ''} (exit {RestoreValidationFailed.exit_code})"
        )
        return RestoreValidationFailed.exit_code
    if report.not_restored:
        Output.note(
            f"warning: {len(report.not_restored)} items were not restored (listed above: what and why) "
            f"(exit {EXIT_WARNINGS})"
        )
        return EXIT_WARNINGS
    return EXIT_OK


def not_restored_lines(carried: list[str], missed: list) -> list[str]:
    """The end of a database restore's text: what was carried, then what was not and why."""
    lines = [f"carried: {shown(c)}" for c in carried]
    if not missed:
        lines.append("not restored: nothing (ownership, privileges, policies and database properties carried)")
        return lines
    lines.append(f"not restored ({len(missed)}):")
    lines.extend(f"  {shown(n.what)}: {shown(n.why)}" for n in missed)
    return lines
