"""The ``prune`` job kind: retention and cleanup of every location, inside the engine.

Params (all optional): ``dry_run`` (bool), ``locations`` (names; default every configured
location), ``lock_wait`` (seconds to wait out another process's repository lock; 600).
The engine's per-location locks are taken exclusively, so backups and copies submitted
to the same engine wait for the prune instead of failing on the repository lock. A
location that fails does not stop the others; the job then fails with the first
failure's exit code and every location's outcome in its result (the shape of
``prune --json``).
"""

from __future__ import annotations

from typing import Any

from core.errors import AxisorError, Exit
from core.runner import JobProgress, LOCK_WAIT_SECONDS, PRIMARY_LOCATION, JobContext, JobFailed, retry_when_locked
from core.storage.factory import PRIMARY_NAME

__all__ = ["prune_runner"]


async def prune_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    svc = ctx.service
    dry_run = bool(params.get("dry_run"))
    rewrite = bool(params.get("rewrite")) and not dry_run
    lock_wait = float(params.get("lock_wait", LOCK_WAIT_SECONDS))
    names = [str(n) for n in params.get("locations") or svc.location_names()]
    held = [PRIMARY_LOCATION if n == PRIMARY_NAME else n for n in names]
    results: list[dict[str, Any]] = []
    first_code = 0
    ctx.progress(JobProgress(phase="waiting for locks"))
    async with ctx.locks(held, exclusive=not dry_run):
        for name in names:
            ctx.check_cancelled()

            def progress(phase: str, done: int, total: int | None, name: str = name) -> None:
                bytes_phase = phase == "repacking"
                ctx.progress(
                    JobProgress(
                        phase=f"{name}: {phase}",
                        current=name,
                        bytes_done=done if bytes_phase else 0,
                        bytes_total=total if bytes_phase else None,
                        files_done=0 if bytes_phase else done,
                        files_total=None if bytes_phase else total,
                    )
                )

            try:
                # Safe to repeat: a prune stopped by a lock resumes where it stopped.
                report = await retry_when_locked(
                    ctx, lambda: svc.prune(dry_run=dry_run, on_progress=progress, location=name), wait=lock_wait
                )
            except AxisorError as exc:
                ctx.log(f"{name}: FAILED: {exc}")
                results.append({"location": name, "error": str(exc)})
                first_code = first_code or exc.exit_code
                continue
            entry = {"location": name, "error": None, **report.to_dict()}
            if rewrite:
                try:
                    # Safe to repeat as well: what is under the current key is skipped.
                    sealed = await retry_when_locked(
                        ctx, lambda: svc.reseal(on_progress=progress, location=name), wait=lock_wait
                    )
                except AxisorError as exc:
                    ctx.log(f"{name}: rewrite FAILED: {exc}")
                    results.append({**entry, "error": f"rewrite: {exc}"})
                    first_code = first_code or exc.exit_code
                    continue
                entry["rewrite"] = sealed.to_dict()
                if sealed.problems:
                    first_code = first_code or Exit.WARNINGS
                ctx.log(
                    f"{name}: re-sealed {sealed.packs_rewritten} packs under the current key"
                    + ("; the retired key is destroyed" if sealed.old_key_destroyed else "")
                )
            results.append(entry)
            verb = "would forget" if dry_run else "forgot"
            ctx.log(
                f"{name}: {verb} {len(report.forgotten)} snapshots, kept {len(report.kept)}; "
                f"{len(report.wal.remove)} WAL files, {report.packs_deleted} packs deleted, "
                f"{report.packs_repacked} repacked, {report.bytes_deleted} bytes freed"
            )
    out: dict[str, Any] = {"dry_run": dry_run, "locations": results, "exit_code": first_code}
    if first_code and any(r["error"] for r in results):  # else warnings only: the rewrite's problems, named
        raise JobFailed(f"prune failed at {', '.join(r['location'] for r in results if r['error'])}", out, first_code)
    return out
