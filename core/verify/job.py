"""The ``verify`` job kind: a quick (structure) or full (every pack read) verification of
the primary location, with progress in packs and bytes.

Params (all optional): ``full`` (bool), ``snapshots`` (references; default all).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from core.errors import Exit
from core.runner import PRIMARY_LOCATION, JobContext, JobFailed, JobProgress, rated_progress, retry_when_locked
from core.text import shown


async def verify_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    full = bool(params.get("full"))
    refs = [str(r) for r in params.get("snapshots") or []] or None
    ctx.progress(JobProgress(phase="waiting for locks"))
    async with ctx.locks([PRIMARY_LOCATION], exclusive=False):
        name = "verify full" if full else "verify quick"
        ctx.progress(JobProgress(phase=name))
        rated = rated_progress()

        def on_progress(p: Any) -> None:
            if p.bytes_total:  # packs: bytes are the measure of the work
                ctx.progress(
                    rated(
                        f"{name}: {p.phase}",
                        p.bytes_done,
                        p.bytes_total,
                        files_done=p.done,
                        files_total=p.total,
                        unit="packs",
                        current=p.current,
                    )
                )
            else:
                ctx.progress(
                    JobProgress(
                        phase=f"{name}: {p.phase}",
                        files_done=p.done,
                        files_total=p.total,
                        unit="snapshots",
                        current=shown(p.current),
                    )
                )

        report = await retry_when_locked(
            ctx, lambda: ctx.service.verify(full=full, snapshot_refs=refs, on_progress=on_progress)
        )
    out = {
        "ok": report.ok,
        "full": report.full,
        "snapshots_checked": report.snapshots_checked,
        "trees_checked": report.trees_checked,
        "blobs_referenced": report.blobs_referenced,
        "packs_checked": report.packs_checked,
        "bytes_read": report.bytes_read,
        "wal_files_checked": report.wal_files_checked,
        "snapshot_ids": list(report.snapshot_ids),
        "unreferenced_packs": list(report.unreferenced_packs),
        "foreign_packs": dict(getattr(report, "foreign_packs", {})),
        "damage": [asdict(d) for d in report.damage],
    }
    for key, why in sorted(getattr(report, "foreign_packs", {}).items()):
        ctx.log(f"warning: {key}: {why}")
    ctx.log(
        f"{'full' if full else 'quick'} verification: {report.snapshots_checked} snapshots, "
        f"{len(report.damage)} damaged objects"
    )
    if not report.ok:
        out["exit_code"] = Exit.DAMAGE_FOUND
        raise JobFailed(f"verification found {len(report.damage)} damaged objects", out, Exit.DAMAGE_FOUND)
    out["exit_code"] = Exit.OK
    return out


__all__ = ["verify_runner"]
