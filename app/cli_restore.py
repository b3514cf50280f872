"""`axisor-backup restore` and `rollback`: the options checked, then a point-in-time recovery
(app/cli_pitr.py), a database restore (app/cli_restore_db.py) or a file restore run here and
reported (app/cli_restore_text.py), with its exit code; rollback undoes a restore."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, cast

from app import cli_locations
from app.cli_output import Output
from app.cli_pitr import _restore_pitr
from app.cli_restore_db import _restore_database
from app.cli_restore_text import _outcome_text
from core import scrub
from core.text import shown
from core.errors import Exit, PartialRestore, RestoreValidationFailed, UsageError
from core.service import BackupService, RestoreOutcome
from core.service.table_in_place import InPlaceReport

if TYPE_CHECKING:  # psycopg's module: imported where a database restore runs, named here only
    from core.sources.postgres.restore_report import DbRestoreReport

EXIT_OK = Exit.OK
EXIT_WARNINGS = Exit.WARNINGS  # a restore that finished with warnings


async def cmd_restore(svc: BackupService, args, out: Output) -> int:
    if args.platform:
        from app.cli_platform import restore_platform

        return await restore_platform(svc, args, out)
    if args.to_time is not None or args.target_dir is not None:
        return await _restore_pitr(svc, args, out)
    if args.start or args.port is not None or args.os_user:
        raise UsageError("--start, --port and --os-user only apply to --to-time")
    if not args.snapshot:
        raise UsageError(
            "restore needs a snapshot (an id, a prefix, latest or latest:SOURCE), "
            "or --to-time for point-in-time recovery"
        )
    if args.target_db is not None:
        if args.target is not None:
            raise UsageError("give either --target (a folder) or --target-db (a database), not both")
        if scrub.find(args.target_db):
            # In argv every local user can read it (ps, /proc), and a job would store it.
            raise UsageError(
                f"--target-db holds {scrub.find(args.target_db)}: give the password through "
                "PGPASSWORD or a passfile (PGPASSFILE, ~/.pgpass) instead"
            )
        return await _restore_database(svc, args, out)
    if args.target is None:
        raise UsageError("restore needs --target FOLDER (files) or --target-db URL (a database snapshot)")
    if args.force:
        raise UsageError("--force only applies to --target-db")
    if args.table or args.schema or args.roles:
        raise UsageError("--table, --schema and --roles only apply to --target-db")
    if args.preserve_privileges and os.geteuid() != 0:
        raise UsageError(
            "--preserve-privileges needs root: only root can restore setuid/setgid bits and file "
            "capabilities (without it they are stripped)"
        )
    from core.restore.attributes import RestoreOptions

    options = RestoreOptions(
        xattrs=not args.no_xattrs,
        acls=not args.no_acls,
        file_flags=args.file_flags,
        numeric_owner=args.numeric_owner,
        preserve_privileges=args.preserve_privileges,
        allow_untrusted_target=args.allow_untrusted_target,
        fsync=not args.no_fsync,
        read_back=args.read_back,
    )
    location = await cli_locations.choose_restore_location(svc, args)
    snaps = await svc.resolve(args.snapshot, args.source)
    from core.restore.safety import new_restore_id

    restore_id = new_restore_id()  # one id for every snapshot of this run: one rollback undoes it all
    outcomes = await svc.restore_many(
        snaps,
        args.target,
        include=tuple(args.include),
        delete=args.delete,
        dry_run=args.dry_run,
        validate=not args.no_validate,
        restore_id=restore_id,
        options=options,
    )
    partial = sum(len(o.partial) for o in outcomes)
    # Built for --json only: every changed path as a dict is a twentieth of a restore of
    # 50,000 small files, for text output that never shows it.
    data = (
        {
            "target": str(args.target.resolve()),
            "location": location or "local",
            "dry_run": args.dry_run,
            "restore_id": None if args.dry_run else restore_id,
            "restored": [o.as_dict(changes=True) for o in outcomes],
            "partial_count": partial,
        }
        if out.json
        else None
    )
    out.emit(data, lambda: "\n".join(_outcome_text(o, args) for o in outcomes))
    bad = [o for o in outcomes if not o.ok]
    if bad:
        Output.note(
            f"error: {sum(len(o.validation.mismatches) for o in bad if o.validation)} restored files differ from the "
            f"snapshot (exit {RestoreValidationFailed.exit_code})"
            + (f"; {partial} files are partial" if partial else "")
        )
        return RestoreValidationFailed.exit_code
    if partial:
        Output.note(
            f"error: {partial} files could not be restored in full (damaged or missing data); every "
            f"other file was restored (exit {PartialRestore.exit_code})"
        )
        return PartialRestore.exit_code
    warned = sum(o.stats.warning_count for o in outcomes if o.stats is not None)
    if warned:
        Output.note(f"warning: the restore finished with {warned} warnings (exit {EXIT_WARNINGS})")
        return EXIT_WARNINGS
    return EXIT_OK


async def cmd_rollback(svc: BackupService, args, out: Output) -> int:
    results = await svc.rollback(args.restore_id)
    rows = []
    for r in results:
        if isinstance(r, RestoreOutcome):
            rows.append({"kind": "files", **r.as_dict(changes=True)})
        elif isinstance(r, InPlaceReport):  # tables put back in place (restore --to-time --table --force)
            rows.append({"kind": "tables", "snapshot": r.safety_snapshot, **r.to_dict()})
        else:
            db = cast("DbRestoreReport", r)  # rollback's other kind: restore_database's report
            rows.append(
                {
                    "kind": "database",
                    "snapshot": db.snapshot,
                    "target": db.target,
                    "ok": db.ok,
                    "mismatches": [t.table for t in db.mismatches],
                }
            )
    ok = all(row.get("ok", True) and (row.get("validation") or {}).get("ok", True) for row in rows)
    out.emit(
        {"restore_id": args.restore_id, "ok": ok, "rolled_back": rows},
        lambda: "\n".join(
            f"rolled back {row['snapshot'][:8]} ({row['kind']}): "
            + (
                f"{row.get('files', 0)} files written, {row.get('removed', 0)} removed"
                if row["kind"] == "files"
                else _tables_text(row)
                if row["kind"] == "tables"
                else f"database {row['target']}"
            )
            for row in rows
        ),
    )
    return EXIT_OK if ok else RestoreValidationFailed.exit_code


def _tables_text(row: dict) -> str:
    """A tables-only rollback: each table put back in place, and what that changed."""
    return f"in place in {row['target']}: " + "; ".join(
        f"{shown(t['table'])} {t['deleted']} deleted, {t['updated']} updated, {t['inserted']} inserted, "
        + ("validated" if t["validated"] else "NOT VALID: " + str(t["problem"]))
        for t in row["tables"]
    )
