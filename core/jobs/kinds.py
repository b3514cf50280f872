"""Job kinds: a registry of runners, and the runners for backup, restore and verify.

A runner is ``async def runner(ctx: JobContext, params: dict) -> dict``; the dict it
returns is the job's ``result``. It reports progress through ``ctx.progress``, writes
lines to the job log with ``ctx.log``, and takes per-location locks with ``ctx.locks`` so
that conflicting jobs in one engine wait for each other instead of failing. Raising
``JobFailed`` fails the job but keeps a result (a backup with a failed source still made
the other snapshots). Other engineers register further kinds (prune, copy, drill) here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any


from core import scrub
from core.errors import AxisorError, LockHeld, LockUnreadable, PartialRestore, UsageError
from core.jobs.api import JobProgress
from core.progress import RateMeter, eta_seconds
from core.text import shown
from core.restore.files import RestoreOptions

if TYPE_CHECKING:
    from core.config import Config
    from core.service import BackupService

PRIMARY_LOCATION = "primary"
# How long a job keeps retrying when another process holds the repository lock.
LOCK_WAIT_SECONDS = 600.0


class JobCancelled(AxisorError):
    exit_code = 130


class JobFailed(AxisorError):
    """The job failed, but has a result worth keeping (and the exit code the CLI returns)."""

    def __init__(self, message: str, result: dict[str, Any], exit_code: int = 1) -> None:
        super().__init__(message)
        self.result = result
        self.exit_code = exit_code


class JobContext:
    """What a runner gets from the engine for one job."""

    def __init__(self, job_id: str, config: Config, service_factory: Callable[[], BackupService],
                 progress: Callable[[JobProgress], None], log: Callable[[str], None],
                 locks: Callable[[Iterable[str], bool], AbstractAsyncContextManager[None]]) -> None:
        self.job_id = job_id
        self.config = config
        self._service_factory = service_factory
        self._service: BackupService | None = None
        self._progress = progress
        self._log = log
        self._locks = locks
        self._cancel = asyncio.Event()

    @property
    def service(self) -> BackupService:
        if self._service is None:
            self._service = self._service_factory()
        return self._service

    def progress(self, progress: JobProgress) -> None:
        self._progress(progress)

    def log(self, line: str) -> None:
        self._log(line)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled("cancelled")

    def request_cancel(self) -> None:
        self._cancel.set()

    def locks(self, names: Iterable[str], *, exclusive: bool = False) -> AbstractAsyncContextManager[None]:
        """Hold the named locations (shared, or exclusive) for the ``async with`` body."""
        return self._locks(names, exclusive)

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()
            self._service = None


Runner = Callable[[JobContext, dict[str, Any]], Awaitable[dict[str, Any]]]
_RUNNERS: dict[str, Runner] = {}


def register(kind: str, runner: Runner) -> None:
    _RUNNERS[kind] = runner


# Modules that register further kinds when imported; loaded on first use so that
# importing this module stays cheap and free of import cycles.
KIND_MODULES = ("core.locations.jobs", "core.maintenance.jobs", "core.drills.jobs")
_loaded = False


def _load_kinds() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import importlib

        for name in KIND_MODULES:
            try:
                importlib.import_module(name)
            except ImportError as exc:  # one broken optional module must not stop backups
                logging.getLogger("axisor.jobs").error("job kinds not loaded",
                                                       extra={"module": name, "error": str(exc)})


def runner_for(kind: str) -> Runner:
    if kind not in _RUNNERS:  # backup, restore and verify are here; the rest load on demand
        _load_kinds()
    try:
        return _RUNNERS[kind]
    except KeyError:
        raise UsageError(f"unknown job kind {kind!r}; known: {', '.join(sorted(_RUNNERS))}") from None


def registered() -> tuple[str, ...]:
    _load_kinds()
    return tuple(sorted(_RUNNERS))


async def retry_when_locked(ctx: JobContext, call: Callable[[], Awaitable[Any]],
                            wait: float = LOCK_WAIT_SECONDS) -> Any:
    """Run ``call``; while another process holds the repository lock, wait and try again.

    The repository lock is taken before anything is written, so a refused attempt did
    nothing and trying again is safe."""
    deadline = time.monotonic() + wait
    delay = 1.0
    while True:
        try:
            return await call()
        except LockHeld as exc:
            # A lock this process may not read is not waited out: nothing here can tell whether
            # it is live or a leftover, and it will not become readable by itself.
            if isinstance(exc, LockUnreadable) or time.monotonic() + delay > deadline:
                raise
            ctx.log(f"waiting: {exc}")
            ctx.progress(JobProgress(phase="waiting for the repository lock", current=str(exc)))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def snapshot_dict(snapshot: Any) -> dict[str, Any]:
    data = asdict(snapshot)
    data["short_id"] = snapshot.short_id
    return data


def _with_previous(data: dict[str, Any], previous: Any) -> dict[str, Any]:
    """The newest snapshot of the source before the run, as far as `status` needs it (its
    suspicious-shrink check, core/health/shrink.py, runs on the job history alone)."""
    data["previous"] = ({"id": previous.id, "time": previous.time, "total_files": previous.summary.total_files}
                        if previous is not None else None)
    return data


def _source_keys(config: Config, names: list[str]) -> list[str]:
    """Lock names for the sources a backup reads: two runs of one source never overlap."""
    specs = list(config.sources())
    every = [s.name for s in specs] + (["database"] if config.database.enabled else [])
    if not names:
        return [f"source:{n}" for n in every]
    chosen: set[str] = set()
    for name in names:
        for spec in specs:
            if name in (spec.name, spec.name.split("/", 1)[1], spec.category):
                chosen.add(spec.name)
        if name == "database":
            chosen.add("database")
    return [f"source:{n}" for n in sorted(chosen)]


async def backup_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    kind = str(params.get("type", "incremental"))
    if kind not in ("full", "incremental", "differential"):
        raise UsageError(f"backup type must be full, incremental or differential (got {kind!r})")
    sources = [str(s) for s in params.get("sources") or []]
    tags = tuple(str(t) for t in params.get("tags") or [])
    started = time.monotonic()
    done: dict[str, tuple[int, int]] = {}
    totals: dict[str, Any] = {}  # the scanner's forecast per file source (core/backup/scan.py)
    meter = RateMeter()

    def on_progress(source: str, st: Any) -> None:
        done[source] = (st.total_files, st.bytes_done)
        nbytes = sum(b for _, b in done.values())
        nfiles = sum(f for f, _ in done.values())
        rate = meter.update(time.monotonic(), nbytes)
        scanned = bool(totals) and all(t.done for t in totals.values())
        bytes_total = sum(t.bytes for t in totals.values()) if totals else None
        files_total = sum(t.files for t in totals.values()) if totals else None
        if bytes_total is not None:
            # A forecast: files that appear or grow during the run can pass it.
            bytes_total, files_total = max(bytes_total, nbytes), max(files_total or 0, nfiles)
        current = shown(os.fsdecode(st.current)) if st.current else source
        ctx.progress(JobProgress(
            phase="backup" if scanned or not totals else "backup (counting)", bytes_done=nbytes,
            bytes_total=bytes_total, files_done=nfiles, files_total=files_total, rate=rate,
            eta_seconds=eta_seconds(nbytes, bytes_total, rate) if scanned else None,
            current=current, warnings=len(st.warnings)))

    ctx.progress(JobProgress(phase="waiting for locks"))
    async with ctx.locks([PRIMARY_LOCATION], exclusive=False), \
            ctx.locks(_source_keys(ctx.config, sources), exclusive=True):
        ctx.progress(JobProgress(phase="backup"))
        meter.update(time.monotonic(), 0)  # the rate counts from here, so the first report has one
        result = await retry_when_locked(
            ctx, lambda: ctx.service.backup(kind=kind, sources=sources or None, tags=tags, on_progress=on_progress,
                                            totals=totals),
            wait=float(params.get("lock_wait", LOCK_WAIT_SECONDS)))
    for r in result.results:
        if r.snapshot is not None:
            m = r.snapshot.summary
            ctx.log(f"{r.source}: snapshot {r.snapshot.short_id} ({r.snapshot.type}), {m.total_files} files, "
                    f"{m.total_bytes} bytes, {m.data_added_packed} bytes stored")
        else:
            ctx.log(f"{r.source}: FAILED: {r.error}")
    for w in getattr(result, "warnings", ()):
        ctx.log(f"warning: {w}")
    snaps = [r.snapshot for r in result.results if r.snapshot]
    previous = {r.snapshot.id: getattr(r, "previous", None) for r in result.results if r.snapshot}
    out = {
        "backup_set": result.backup_set, "type": kind,
        "snapshots": [_with_previous(snapshot_dict(s), previous.get(s.id)) for s in snaps],
        "failed": [{"source": r.source, "error": r.error, "code": r.code} for r in result.failed_sources],
        "partial": result.partial,
        "warnings": list(getattr(result, "warnings", ())),
        # Copies to the other locations made right after the backup (core/locations).
        "copies": [_copy_dict(c) for c in getattr(result, "copies", ())],
        "stats": {
            "files": sum(s.summary.total_files for s in snaps),
            "bytes": sum(s.summary.total_bytes for s in snaps),
            "bytes_added": sum(s.summary.data_added for s in snaps),
            "bytes_stored": sum(s.summary.data_added_packed for s in snaps),
            "seconds": round(time.monotonic() - started, 3),
        },
    }
    if result.failed_sources:
        first = result.failed_sources[0]
        out["exit_code"] = first.code or 11
        names = ", ".join(f"{r.source}: {r.error}" for r in result.failed_sources)
        raise JobFailed(f"backup failed for {len(result.failed_sources)} source(s): {names}", out,
                        out["exit_code"])
    out["exit_code"] = 7 if result.partial else 0
    return out


def _copy_dict(copy: Any) -> dict[str, Any]:
    data = asdict(copy)
    for key in ("copied", "present", "pending"):
        if key in data:
            data[key] = list(data[key])
    return data


def refuse_secrets(params: Any, where: str = "params") -> None:
    """Refuse params that carry a password (a URL's, a query's or a conninfo's): job records
    and logs never hold secrets."""
    if isinstance(params, dict):
        for key, value in params.items():
            refuse_secrets(value, f"{where}.{key}")
    elif isinstance(params, list):
        for i, value in enumerate(params):
            refuse_secrets(value, f"{where}[{i}]")
    elif isinstance(params, str):
        form = scrub.find(params)
        if form:
            raise UsageError(f"{where} holds {form}; job records never hold secrets: "
                             "put it in PGPASSWORD, a passfile or a credentials file instead")


def _rated_progress() -> Callable[..., JobProgress]:
    """Progress with a smoothed rate and an ETA against an exact total, the rate counted from
    now (the work starts)."""
    meter = RateMeter()
    meter.update(time.monotonic(), 0)

    def rated(phase: str, done: int, total: int, **fields: Any) -> JobProgress:
        rate = meter.update(time.monotonic(), done)
        return JobProgress(phase=phase, bytes_done=done, bytes_total=total, rate=rate,
                           eta_seconds=eta_seconds(done, total, rate), **fields)

    return rated


async def restore_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    svc = ctx.service
    ctx.progress(JobProgress(phase="waiting for locks"))
    async with ctx.locks([PRIMARY_LOCATION], exclusive=False):
        ctx.progress(JobProgress(phase="restore"))
        from core.locations.jobs import choose_restore_location  # params "from", and the fallback

        await choose_restore_location(ctx, params)
        if params.get("to_time") or params.get("target_dir"):
            return await _pitr(ctx, params)
        if params.get("target_db"):
            target_db = str(params["target_db"])
            snaps = await svc.resolve([str(params["snapshot"])], params.get("source") or "database")
            if len(snaps) != 1 or snaps[0].source != "database":
                raise UsageError(f"snapshot {params['snapshot']} is not a database snapshot")
            report = await retry_when_locked(ctx, lambda: svc.restore_database(
                snaps[0], target_db, force=bool(params.get("force")),
                tables=tuple(params.get("tables") or ()), schemas=tuple(params.get("schemas") or ()),
                restore_id=ctx.job_id, roles=bool(params.get("roles"))))
            out = {"snapshot": report.snapshot, "database": report.database, "target": report.target,
                   "created": report.created, "bytes": report.bytes, "seconds": report.seconds, "ok": report.ok,
                   "safety_snapshot": report.safety_snapshot, "warnings": list(report.warnings),
                   "restore_id": ctx.job_id,
                   "tables": [{"table": t.table, "expected": t.expected, "actual": t.actual, "ok": t.ok}
                              for t in report.tables],
                   "roles_created": report.roles_created, "carried": report.carried,
                   "not_restored": [n.as_dict() for n in report.not_restored]}
            ctx.log(f"restored {report.snapshot[:8]} into {report.target}: {report.bytes} bytes")
            for n in report.not_restored:
                ctx.log(f"not restored: {n.what}: {n.why}")
            if not report.ok:
                out["exit_code"] = 16
                raise JobFailed("restored row counts or checksums differ from the snapshot", out, 16)
            # Ownership, privileges or database properties not carried: a warning (docs/CLI.md).
            out["exit_code"] = 7 if report.not_restored else 0
            return out
        target = params.get("target")
        if not target:
            raise UsageError("a restore job needs params.target (a folder) or params.target_db")
        options = _restore_options(params)
        refs = [str(r) for r in params.get("snapshots") or [params.get("snapshot") or "latest"]]
        snaps = await svc.resolve(refs, params.get("source"))
        ctx.check_cancelled()
        # The job id is the restore id: `rollback JOB_ID` finds this restore's safety snapshots.
        rated = _rated_progress()

        def on_progress(p: Any) -> None:
            ctx.progress(rated("restore", p.bytes_done, p.bytes_total, files_done=p.files_done,
                               files_total=p.files_total, current=shown(p.current)))

        outcomes = await retry_when_locked(ctx, lambda: svc.restore_many(
            snaps, Path(target), include=tuple(params.get("include") or ()), delete=bool(params.get("delete")),
            dry_run=bool(params.get("dry_run")), validate=not params.get("no_validate"), restore_id=ctx.job_id,
            options=options, on_progress=on_progress))
        restored = []
        for o in outcomes:
            row = o.as_dict()
            if o.stats is not None:
                st = o.stats
                ctx.log(f"restored {o.snapshot.short_id} {o.snapshot.source}: {st.files} files written, "
                        f"{st.unchanged} already right, {st.removed} removed, {st.bytes} bytes into {target}")
            if o.safety_snapshot:
                ctx.log(f"safety snapshot {o.safety_snapshot.short_id} holds what was there before "
                        f"(undo: axisor-backup rollback {ctx.job_id})")
            if o.validation is not None:
                ctx.log(f"validated {o.validation.files} files: "
                        + ("match" if o.validation.ok else f"{len(o.validation.mismatches)} DIFFER"))
            for pf in o.partial:
                ranges = ", ".join(f"{off}-{off + n - 1}" for off, n in pf.missing[:8])
                ctx.log(f"PARTIAL {pf.path}: bytes {ranges}{' ...' if len(pf.missing) > 8 else ''} missing ("
                        + "; ".join(f"{obj}: {why}" for obj, why in pf.damaged[:2]) + ")"
                        + "".join(f"; intact copy: location {loc}, snapshot {sid[:8]}" for loc, sid in pf.intact))
            restored.append(row)
        partial = sum(len(o.partial) for o in outcomes)
        out = {"target": str(Path(target).resolve()), "restored": restored, "restore_id": ctx.job_id,
               "dry_run": bool(params.get("dry_run")), "exit_code": 0, "partial_count": partial,
               "partial": [{"snapshot": o.snapshot.id, **pf.as_dict()} for o in outcomes for pf in o.partial]}
        if not all(o.ok for o in outcomes):
            out["exit_code"] = 16
            raise JobFailed("restored files differ from the snapshot", out, 16)
        if partial:
            out["exit_code"] = PartialRestore.exit_code
            raise JobFailed(f"{partial} files could not be restored in full (damaged or missing data); every "
                            "other file was restored", out, PartialRestore.exit_code)
        warnings = [w for o in outcomes if o.stats is not None for w in o.stats.warnings]
        for w in warnings[:200]:
            ctx.log(f"warning: {w}")
        if warnings:
            out["exit_code"] = 7  # finished, with attributes the target refused (docs/CLI.md)
        return out


def _restore_options(params: dict[str, Any]) -> RestoreOptions:
    """What a restore job may ask of the attributes it restores. Keeping setuid bits and
    capabilities, and restoring into an untrusted tree, are decisions of root at the
    terminal (`restore --preserve-privileges`, `--allow-untrusted-target`): a job is
    submitted through the daemon's socket by any user it accepts, so it may not ask."""
    for refused in ("preserve_privileges", "allow_untrusted_target"):
        if params.get(refused):
            raise UsageError(f"params.{refused} is not accepted from a job: run `axisor-backup restore "
                             f"--{refused.replace('_', '-')}` as root at the terminal instead")
    return RestoreOptions(xattrs=not params.get("no_xattrs"), acls=not params.get("no_acls"),
                          file_flags=bool(params.get("file_flags")), numeric_owner=bool(params.get("numeric_owner")))


async def _pitr(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Point-in-time recovery of the database into a new data directory (core.sources.postgres.pitr)."""
    from dataclasses import asdict as _asdict

    from core.sources.postgres.pitr import parse_target_time

    if not params.get("to_time") or not params.get("target_dir"):
        raise UsageError("a point-in-time restore job needs params.to_time and params.target_dir")
    if ctx.config.path is None:
        raise UsageError("point-in-time recovery needs the config file's path (for the server's restore_command)")
    snap = None
    if params.get("snapshot"):
        snap = (await ctx.service.resolve([str(params["snapshot"])], "database"))[0]
    report = await retry_when_locked(ctx, lambda: ctx.service.restore_database_pitr(
        parse_target_time(str(params["to_time"])), Path(str(params["target_dir"])), config_path=ctx.config.path,
        snapshot=snap, start=bool(params.get("start")), port=params.get("port"), os_user=params.get("os_user"),
        timeout=float(params.get("timeout") or 900),
        on_phase=lambda phase: ctx.progress(JobProgress(phase=f"point-in-time recovery: {phase}"))))
    ctx.log(f"restored base backup {report.base_snapshot[:8]} into {report.target_dir}"
            + (f"; promoted: {report.stopped_at}" if report.started else "; not started"))
    return {**_asdict(report), "exit_code": 0}


async def verify_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    full = bool(params.get("full"))
    refs = [str(r) for r in params.get("snapshots") or []] or None
    ctx.progress(JobProgress(phase="waiting for locks"))
    async with ctx.locks([PRIMARY_LOCATION], exclusive=False):
        name = "verify full" if full else "verify quick"
        ctx.progress(JobProgress(phase=name))
        rated = _rated_progress()

        def on_progress(p: Any) -> None:
            if p.bytes_total:  # packs: bytes are the measure of the work
                ctx.progress(rated(f"{name}: {p.phase}", p.bytes_done, p.bytes_total, files_done=p.done,
                                   files_total=p.total, unit="packs", current=p.current))
            else:
                ctx.progress(JobProgress(phase=f"{name}: {p.phase}", files_done=p.done, files_total=p.total,
                                         unit="snapshots", current=shown(p.current)))

        report = await retry_when_locked(ctx, lambda: ctx.service.verify(full=full, snapshot_refs=refs,
                                                                         on_progress=on_progress))
    out = {"ok": report.ok, "full": report.full, "snapshots_checked": report.snapshots_checked,
           "trees_checked": report.trees_checked, "blobs_referenced": report.blobs_referenced,
           "packs_checked": report.packs_checked, "bytes_read": report.bytes_read,
           "wal_files_checked": report.wal_files_checked, "snapshot_ids": list(report.snapshot_ids),
           "unreferenced_packs": list(report.unreferenced_packs),
           "foreign_packs": dict(getattr(report, "foreign_packs", {})),
           "damage": [asdict(d) for d in report.damage]}
    for key, why in sorted(getattr(report, "foreign_packs", {}).items()):
        ctx.log(f"warning: {key}: {why}")
    ctx.log(f"{'full' if full else 'quick'} verification: {report.snapshots_checked} snapshots, "
            f"{len(report.damage)} damaged objects")
    if not report.ok:
        out["exit_code"] = 6
        raise JobFailed(f"verification found {len(report.damage)} damaged objects", out, 6)
    out["exit_code"] = 0
    return out


register("backup", backup_runner)
register("restore", restore_runner)
register("verify", verify_runner)

__all__ = ["refuse_secrets", "JobCancelled", "JobContext", "JobFailed", "PRIMARY_LOCATION", "Runner", "register", "registered",
           "retry_when_locked", "runner_for", "snapshot_dict"]
