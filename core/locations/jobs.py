"""The ``copy`` job kind: copy snapshots to other locations inside the engine.

Params (all optional): ``locations`` (names to copy to; default every location but the
source), ``snapshots`` (references; default everything each target lacks), ``from`` (the
source location; default the primary). A target that fails does not stop the others;
the job fails (exit 1) when any did, with every target's outcome in its result.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from typing import Any

from core.errors import AxisorError, Exit
from core.runner import JobProgress, PRIMARY_LOCATION, JobContext, JobFailed, retry_when_locked
from core.locations.copy import CopyProgress, CopyResult
from core.locations.sites import PRIMARY_NAME

__all__ = ["copy_runner", "result_dict"]


def result_dict(r: CopyResult) -> dict[str, Any]:
    """The JSON shape of one target's outcome (the same as ``copy --json`` prints)."""
    d = asdict(r)
    for key in ("copied", "present", "pending"):
        d[key] = list(d[key])
    return d


async def copy_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    svc = ctx.service
    source = str(params.get("from") or PRIMARY_NAME)
    sites = svc.location_ops().sites
    targets = [str(n) for n in params.get("locations") or [n for n in sites.names if n != source]]
    refs = [str(r) for r in params.get("snapshots") or []]

    def progress(target: str, p: CopyProgress) -> None:
        ctx.progress(
            JobProgress(
                phase=f"copy to {target}",
                bytes_done=p.bytes_copied,
                files_done=p.packs_done,
                files_total=p.packs_total,
                current=p.snapshot[:8],
            )
        )

    results: list[CopyResult] = []
    # The engine's location locks are named after the primary as "primary"; others by name.
    held = [PRIMARY_LOCATION if n == PRIMARY_NAME else n for n in [source, *targets]]
    ctx.progress(JobProgress(phase="waiting for locks"))
    async with ctx.locks(held, exclusive=False):
        for target in targets:
            ctx.check_cancelled()
            try:
                r = await retry_when_locked(
                    ctx,
                    lambda: svc.copy(
                        target, refs or None, source=source, on_progress=functools.partial(progress, target)
                    ),
                )
            except AxisorError as exc:
                r = CopyResult(source, target, error=str(exc))
            results.append(r)
            ctx.log(
                f"{target}: FAILED: {r.error}"
                if r.error
                else f"{target}: copied {len(r.copied)} snapshots, {r.packs_copied} packs, {r.bytes_copied} bytes"
            )
    out: dict[str, Any] = {"copies": [result_dict(r) for r in results]}
    failed = [r for r in results if r.error]
    if failed:
        out["exit_code"] = Exit.ERROR
        raise JobFailed("copy failed to " + ", ".join(f"{r.target} ({r.error})" for r in failed), out, Exit.ERROR)
    out["exit_code"] = Exit.OK
    return out
