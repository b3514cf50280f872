"""The ``backup`` job kind: one backup run (every configured source, or those named) as an
engine job, with progress against the scanner's forecast (core/backup/scan.py).

Params (all optional): ``type`` (full | incremental | differential), ``sources`` (names,
short names or categories), ``tags``, ``lock_wait`` (seconds to wait for a held lock).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from core.config.sources import select_sources
from core.errors import Exit, UsageError
from core.progress import RateMeter, eta_seconds
from core.runner import (
    LOCK_WAIT_SECONDS,
    PRIMARY_LOCATION,
    JobContext,
    JobFailed,
    JobProgress,
    retry_when_locked,
    snapshot_dict,
)
from core.text import human_bytes, shown

if TYPE_CHECKING:
    from core.config import Config


def _with_previous(data: dict[str, Any], previous: Any) -> dict[str, Any]:
    """The newest snapshot of the source before the run, as far as `status` needs it (its
    suspicious-shrink check, core/health/shrink.py, runs on the job history alone)."""
    data["previous"] = (
        {"id": previous.id, "time": previous.time, "total_files": previous.summary.total_files}
        if previous is not None
        else None
    )
    return data


def _with_trip(data: dict[str, Any], trip: Any) -> dict[str, Any]:
    """The tripwire's findings and pin (core/backup/tripwire.py), when it tripped: `status`
    reads them from the job history (core/jobs/status.py ``tripwire_checks``)."""
    if trip is not None:
        data["tripwire"] = trip.to_dict()
    return data


def _source_keys(config: Config, names: list[str]) -> list[str]:
    """Lock names for the sources a backup reads: two runs of one source never overlap.
    A name that stands for no source (a disabled database among them) takes no lock: the
    run refuses it (core/config/sources.py)."""
    return [f"source:{n}" for n in select_sources(config, names, order="configured", unknown="skip")]


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
        # None while nothing is counted yet (a database whose catalog has not answered): a
        # total of 0 would show as the bytes done, "4 MiB of 4 MiB".
        bytes_total = (sum(t.bytes for t in totals.values()) or None) if totals else None
        files_total = sum(t.files for t in totals.values()) if totals else None
        if bytes_total is not None:
            # A forecast: files that appear or grow during the run can pass it.
            bytes_total, files_total = max(bytes_total, nbytes), max(files_total or 0, nfiles)
        current = shown(os.fsdecode(st.current)) if st.current else source
        size = st.current_size if st.current else None
        if size is not None:  # a database table, with its size on disk (core/backup/run.py)
            current = f"{current} ({human_bytes(size)})"
        ctx.progress(
            JobProgress(
                phase="backup" if scanned or not totals else "backup (counting)",
                bytes_done=nbytes,
                bytes_total=bytes_total,
                files_done=nfiles,
                files_total=files_total,
                rate=rate,
                eta_seconds=eta_seconds(nbytes, bytes_total, rate) if scanned else None,
                current=current,
                warnings=len(st.warnings),
                current_size=size,
            )
        )

    ctx.progress(JobProgress(phase="waiting for locks"))
    async with (
        ctx.locks([PRIMARY_LOCATION], exclusive=False),
        ctx.locks(_source_keys(ctx.config, sources), exclusive=True),
    ):
        ctx.progress(JobProgress(phase="backup"))
        meter.update(time.monotonic(), 0)  # the rate counts from here, so the first report has one
        result = await retry_when_locked(
            ctx,
            lambda: ctx.service.backup(
                kind=kind, sources=sources or None, tags=tags, on_progress=on_progress, totals=totals
            ),
            wait=float(params.get("lock_wait", LOCK_WAIT_SECONDS)),
        )
    for r in result.results:
        if r.snapshot is not None:
            m = r.snapshot.summary
            ctx.log(
                f"{r.source}: snapshot {r.snapshot.short_id} ({r.snapshot.type}), {m.total_files} files, "
                f"{m.total_bytes} bytes, {m.data_added_packed} bytes stored"
            )
        else:
            ctx.log(f"{r.source}: FAILED: {r.error}")
    for w in getattr(result, "warnings", ()):
        ctx.log(f"warning: {w}")
    snaps = [r.snapshot for r in result.results if r.snapshot]
    previous = {r.snapshot.id: getattr(r, "previous", None) for r in result.results if r.snapshot}
    trips = {r.snapshot.id: r.trip for r in result.results if r.snapshot and getattr(r, "trip", None)}
    for sid, trip in trips.items():
        for f in trip.findings:
            ctx.log(f"TRIPWIRE {shown(f.message)}")
        if trip.pinned:
            ctx.log(f"TRIPWIRE: snapshot {trip.pinned[:8]} is pinned against prune until `axisor-backup acknowledge`")
    out = {
        "backup_set": result.backup_set,
        "type": kind,
        "snapshots": [_with_trip(_with_previous(snapshot_dict(s), previous.get(s.id)), trips.get(s.id)) for s in snaps],
        "failed": [{"source": r.source, "error": r.error, "code": r.code} for r in result.failed_sources],
        "partial": result.partial,
        "warnings": list(getattr(result, "warnings", ())) + [t.warning for t in trips.values() if t.warning],
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
        out["exit_code"] = first.code or Exit.SOURCE_UNREADABLE
        names = ", ".join(f"{r.source}: {r.error}" for r in result.failed_sources)
        raise JobFailed(f"backup failed for {len(result.failed_sources)} source(s): {names}", out, out["exit_code"])
    out["exit_code"] = Exit.WARNINGS if result.partial else Exit.OK
    return out


def _copy_dict(copy: Any) -> dict[str, Any]:
    data = asdict(copy)
    for key in ("copied", "present", "pending"):
        if key in data:
            data[key] = list(data[key])
    return data


__all__ = ["backup_runner"]
