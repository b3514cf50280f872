"""The ``restore`` job kind: files into a folder, a database snapshot into a database, or a
point-in-time recovery into a new data directory, served from the location asked for or,
with other locations configured, from the first that can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import Exit, PartialRestore, UsageError
from core.restore.attributes import RestoreOptions
from core.runner import JobContext, JobFailed, JobProgress, rated_progress, retry_when_locked, PRIMARY_LOCATION
from core.text import parse_target_time, shown


async def restore_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.progress(JobProgress(phase="waiting for locks"))
    async with ctx.locks([PRIMARY_LOCATION], exclusive=False):
        ctx.progress(JobProgress(phase="restore"))
        await choose_restore_location(ctx, params)
        # target_db "" is the configured database (the console's choice when it knows no name).
        if params.get("to_time") and params.get("tables") and params.get("target_db") is not None:
            return await _table_at_time(ctx, params)
        if params.get("to_time") or params.get("target_dir"):
            return await _pitr(ctx, params)
        if params.get("target_db"):
            return await _database(ctx, params)
        return await _files(ctx, params)


async def _database(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """A database snapshot into a database (params.target_db), validated."""
    svc = ctx.service
    target_db = str(params["target_db"])
    snaps = await svc.resolve([str(params["snapshot"])], params.get("source") or "database")
    if len(snaps) != 1 or snaps[0].source != "database":
        raise UsageError(f"snapshot {params['snapshot']} is not a database snapshot")
    report = await retry_when_locked(
        ctx,
        lambda: svc.restore_database(
            snaps[0],
            target_db,
            force=bool(params.get("force")),
            tables=tuple(params.get("tables") or ()),
            schemas=tuple(params.get("schemas") or ()),
            restore_id=ctx.job_id,
            roles=bool(params.get("roles")),
        ),
    )
    out = {
        "snapshot": report.snapshot,
        "database": report.database,
        "target": report.target,
        "created": report.created,
        "bytes": report.bytes,
        "seconds": report.seconds,
        "ok": report.ok,
        "safety_snapshot": report.safety_snapshot,
        "warnings": list(report.warnings),
        "restore_id": ctx.job_id,
        "tables": [{"table": t.table, "expected": t.expected, "actual": t.actual, "ok": t.ok} for t in report.tables],
        "roles_created": report.roles_created,
        "carried": report.carried,
        "not_restored": [n.as_dict() for n in report.not_restored],
    }
    ctx.log(f"restored {report.snapshot[:8]} into {report.target}: {report.bytes} bytes")
    for n in report.not_restored:
        ctx.log(f"not restored: {n.what}: {n.why}")
    if not report.ok:
        out["exit_code"] = Exit.VALIDATION_FAILED
        raise JobFailed("restored row counts or checksums differ from the snapshot", out, Exit.VALIDATION_FAILED)
    # Ownership, privileges or database properties not carried: a warning (docs/CLI.md).
    out["exit_code"] = Exit.WARNINGS if report.not_restored else Exit.OK
    return out


async def _files(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Snapshots of file sources into a folder (params.target), validated."""
    svc = ctx.service
    target = params.get("target")
    if not target:
        raise UsageError("a restore job needs params.target (a folder) or params.target_db")
    options = _restore_options(params)
    refs = [str(r) for r in params.get("snapshots") or [params.get("snapshot") or "latest"]]
    snaps = await svc.resolve(refs, params.get("source"))
    ctx.check_cancelled()
    # The job id is the restore id: `rollback JOB_ID` finds this restore's safety snapshots.
    rated = rated_progress()

    def on_progress(p: Any) -> None:
        ctx.progress(
            rated(
                "restore",
                p.bytes_done,
                p.bytes_total,
                files_done=p.files_done,
                files_total=p.files_total,
                current=shown(p.current),
            )
        )

    outcomes = await retry_when_locked(
        ctx,
        lambda: svc.restore_many(
            snaps,
            Path(target),
            include=tuple(params.get("include") or ()),
            delete=bool(params.get("delete")),
            dry_run=bool(params.get("dry_run")),
            validate=not params.get("no_validate"),
            restore_id=ctx.job_id,
            options=options,
            on_progress=on_progress,
        ),
    )
    restored = []
    for o in outcomes:
        row = o.as_dict()
        if o.stats is not None:
            st = o.stats
            ctx.log(
                f"restored {o.snapshot.short_id} {o.snapshot.source}: {st.files} files written, "
                f"{st.unchanged} already right, {st.removed} removed, {st.bytes} bytes into {target}"
            )
        if o.safety_snapshot:
            ctx.log(
                f"safety snapshot {o.safety_snapshot.short_id} holds what was there before "
                f"(undo: axisor-backup rollback {ctx.job_id})"
            )
        if o.validation is not None:
            ctx.log(
                f"validated {o.validation.files} files: "
                + ("match" if o.validation.ok else f"{len(o.validation.mismatches)} DIFFER")
            )
        for pf in o.partial:
            ranges = ", ".join(f"{off}-{off + n - 1}" for off, n in pf.missing[:8])
            ctx.log(
                f"PARTIAL {pf.path}: bytes {ranges}{' ...' if len(pf.missing) > 8 else ''} missing ("
                + "; ".join(f"{obj}: {why}" for obj, why in pf.damaged[:2])
                + ")"
                + "".join(f"; intact copy: location {loc}, snapshot {sid[:8]}" for loc, sid in pf.intact)
            )
        restored.append(row)
    partial = sum(len(o.partial) for o in outcomes)
    out = {
        "target": str(Path(target).resolve()),
        "restored": restored,
        "restore_id": ctx.job_id,
        "dry_run": bool(params.get("dry_run")),
        "exit_code": Exit.OK,
        "partial_count": partial,
        "partial": [{"snapshot": o.snapshot.id, **pf.as_dict()} for o in outcomes for pf in o.partial],
    }
    if not all(o.ok for o in outcomes):
        out["exit_code"] = Exit.VALIDATION_FAILED
        raise JobFailed("restored files differ from the snapshot", out, Exit.VALIDATION_FAILED)
    if partial:
        out["exit_code"] = PartialRestore.exit_code
        raise JobFailed(
            f"{partial} files could not be restored in full (damaged or missing data); every other file was restored",
            out,
            PartialRestore.exit_code,
        )
    warnings = [w for o in outcomes if o.stats is not None for w in o.stats.warnings]
    for w in warnings[:200]:
        ctx.log(f"warning: {w}")
    if warnings:
        out["exit_code"] = Exit.WARNINGS  # finished, with attributes the target refused (docs/CLI.md)
    return out


def _restore_options(params: dict[str, Any]) -> RestoreOptions:
    """What a restore job may ask of the attributes it restores. Keeping setuid bits and
    capabilities, and restoring into an untrusted tree, are decisions of root at the
    terminal (`restore --preserve-privileges`, `--allow-untrusted-target`): a job is
    submitted through the daemon's socket by any user it accepts, so it may not ask."""
    for refused in ("preserve_privileges", "allow_untrusted_target"):
        if params.get(refused):
            raise UsageError(
                f"params.{refused} is not accepted from a job: run `axisor-backup restore "
                f"--{refused.replace('_', '-')}` as root at the terminal instead"
            )
    return RestoreOptions(
        xattrs=not params.get("no_xattrs"),
        acls=not params.get("no_acls"),
        file_flags=bool(params.get("file_flags")),
        numeric_owner=bool(params.get("numeric_owner")),
        read_back=bool(params.get("read_back")),
    )


async def _table_at_time(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Tables as they were at params.to_time, copied beside the live ones in params.target_db
    (core/service/table_at_time.py); params.as: their names (default NAME_at_HHMM)."""
    if ctx.config.path is None:
        raise UsageError("a table as of a time needs the config file's path (for the server's restore_command)")
    if params.get("force"):
        return await _table_in_place(ctx, params)
    report = await retry_when_locked(
        ctx,
        lambda: ctx.service.restore_table_at_time(
            parse_target_time(str(params["to_time"])),
            [str(t) for t in params["tables"]],
            str(params["target_db"]),
            [str(a) for a in params.get("as") or ()],
            config_path=ctx.config.path,
            os_user=params.get("os_user"),
            timeout=float(params.get("timeout") or 900),
            on_phase=lambda phase: ctx.progress(JobProgress(phase=f"table as of a time: {phase}")),
            with_references=bool(params.get("with_references")),
        ),
    )
    for t in report.tables:
        ctx.log(f"{shown(t.table)} as of {report.at} -> {shown(t.copy)}: {t.rows} rows, validated")
        for n in t.not_copied:
            ctx.log(f"not copied: {shown(n)}")
    return {**report.to_dict(), "exit_code": Exit.OK if report.ok else Exit.WARNINGS}


async def _table_in_place(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """params.force: the tables put back in place as they were at params.to_time, after a
    safety snapshot of them (core/service/table_in_place.py); the job id is the restore id
    (`rollback JOB_ID`)."""
    if params.get("as") or params.get("with_references"):
        raise UsageError(
            "params.force puts the tables back in place: params.as and params.with_references do not apply"
        )
    assert ctx.config.path is not None
    config_path = ctx.config.path
    report = await retry_when_locked(
        ctx,
        lambda: ctx.service.restore_table_in_place(
            parse_target_time(str(params["to_time"])),
            [str(t) for t in params["tables"]],
            str(params["target_db"]),
            config_path=config_path,
            os_user=params.get("os_user"),
            timeout=float(params.get("timeout") or 900),
            on_phase=lambda phase: ctx.progress(JobProgress(phase=f"table in place as of a time: {phase}")),
            dry_run=bool(params.get("dry_run")),
            restore_id=ctx.job_id,
            on_safety=lambda snap: ctx.log(
                f"safety snapshot {snap[:8]} holds the tables as they are now (undo: axisor-backup rollback {ctx.job_id})"
            ),
        ),
    )
    for t in report.tables:
        ctx.log(
            f"{shown(t.table)} put back in place as of {report.at}: {t.deleted} deleted, {t.updated} updated, "
            f"{t.inserted} inserted, " + ("validated" if t.validated else f"NOT VALID: {t.problem}")
        )
    return {**report.to_dict(), "exit_code": Exit.OK if report.ok else Exit.WARNINGS}


async def _pitr(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Point-in-time recovery of the database into a new data directory (core.sources.postgres.pitr)."""
    from dataclasses import asdict as _asdict

    if not params.get("to_time") or not params.get("target_dir"):
        raise UsageError("a point-in-time restore job needs params.to_time and params.target_dir")
    if ctx.config.path is None:
        raise UsageError("point-in-time recovery needs the config file's path (for the server's restore_command)")
    snap = None
    if params.get("snapshot"):
        snap = (await ctx.service.resolve([str(params["snapshot"])], "database"))[0]
    report = await retry_when_locked(
        ctx,
        lambda: ctx.service.restore_database_pitr(
            parse_target_time(str(params["to_time"])),
            Path(str(params["target_dir"])),
            config_path=ctx.config.path,
            snapshot=snap,
            start=bool(params.get("start")),
            port=params.get("port"),
            os_user=params.get("os_user"),
            timeout=float(params.get("timeout") or 900),
            on_phase=lambda phase: ctx.progress(JobProgress(phase=f"point-in-time recovery: {phase}")),
        ),
    )
    ctx.log(
        f"restored base backup {report.base_snapshot[:8]} into {report.target_dir}"
        + (f"; promoted: {report.stopped_at}" if report.started else "; not started")
    )
    return {**_asdict(report), "exit_code": Exit.OK}


async def choose_restore_location(ctx: JobContext, params: dict[str, Any]) -> str | None:
    """For the restore job: serve it from ``params["from"]``, or, with other locations
    configured, from the first that can (logging each one passed over). None: the primary
    alone is configured and nothing was chosen."""
    svc = ctx.service
    prefer = params.get("from")
    if prefer is None and not svc.config.storage.remote_storage:
        return None
    if params.get("to_time"):
        # A point in time (a table as of a time, PITR): read from base backups and WAL, not
        # from one named snapshot; the location is the one asked for, or the primary.
        if prefer:
            await svc.use_location(str(prefer))
        return str(prefer) if prefer else None
    if params.get("target_db") is not None and params.get("snapshot"):
        refs, source = [str(params["snapshot"])], params.get("source") or "database"
    else:
        refs = [str(r) for r in params.get("snapshots") or [params.get("snapshot") or "latest"]]
        source = params.get("source")
    choice = await svc.choose_location(refs, source, prefer=str(prefer) if prefer else None)
    for name, why in choice.skipped:
        ctx.log(f"location {name} cannot serve this restore ({why})")
    if choice.skipped:
        ctx.log(f"restoring from location {choice.location}")
    return choice.location


__all__ = ["choose_restore_location", "restore_runner"]
