"""`axisor-backup verify [--full]`: the verification's report as text or --json, exit 6 on damage,
and the run recorded in the job history (`status`, the console)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.cli_output import Output
from core.errors import AxisorError, Exit, VerificationFailed
from core.jobs.api import JobState
from core.text import human_bytes, shown, shown_lines

if TYPE_CHECKING:
    from core.service import BackupService

EXIT_OK = Exit.OK


async def cmd_verify(svc: BackupService, args, out: Output) -> int:
    from core.jobs.record import Outcome

    params = {"full": bool(args.full), "snapshots": list(args.snapshot or [])}
    if getattr(args, "from_location", None):
        # `verify --from NAME` read that location, not the primary: the record says which
        # (the verification report attributes the checks per location).
        params["location"] = args.from_location
    started = datetime.now(UTC)
    try:
        report = await svc.verify(full=args.full, snapshot_refs=args.snapshot)
    except (Exception, KeyboardInterrupt) as exc:
        await _record_verify(svc, params, started, Outcome.of_exception(exc))
        raise
    data = {
        "ok": report.ok,
        "full": report.full,
        "snapshots_checked": report.snapshots_checked,
        "trees_checked": report.trees_checked,
        "blobs_referenced": report.blobs_referenced,
        "packs_checked": report.packs_checked,
        "bytes_read": report.bytes_read,
        "wal_files_checked": report.wal_files_checked,
        "snapshot_ids": report.snapshot_ids,
        "unreferenced_packs": report.unreferenced_packs,
        "foreign_packs": report.foreign_packs,
        "damage": [asdict(d) for d in report.damage],
        # null: not counted (some snapshots verified), never a silent zero.
        "retired_key": report.retired.to_dict() if report.retired is not None else None,
    }

    def text() -> str:
        kind = "full" if report.full else "quick"
        lines = [
            f"{kind} verification: {report.snapshots_checked} snapshots, {report.trees_checked} trees, "
            f"{report.blobs_referenced} blob references"
            + (f", {report.wal_files_checked} WAL files" if report.wal_files_checked else "")
            + (f", {report.packs_checked} packs read ({human_bytes(report.bytes_read)})" if report.full else "")
        ]
        if report.unreferenced_packs:
            lines.append(
                f"note: {len(report.unreferenced_packs)} packs are not referenced by any index "
                "(left by an interrupted backup; the next backup adopts them)"
            )
        for key, why in sorted(report.foreign_packs.items()):
            lines.append(f"warning: {shown(key)}: {shown(why)}")
        r = report.retired
        if r is None:
            lines.append("retired keys: not counted (only some snapshots were verified)")
        elif r.retired_keys:
            lines.append(
                f"retired keys: {r.retired_keys}; still under one: {r.packs} packs ({human_bytes(r.bytes)}), "
                f"{r.objects} other objects"
                + (" (`axisor-backup prune --rewrite` re-seals them)" if r.packs or r.objects else "")
            )
        for k in r.keyring_damaged if r else ():
            lines.append(f"warning: keyring object {shown(k)} does not open (a key it holds cannot be used)")
        if report.ok:
            lines.append("no damage found")
        for d in report.damage:
            # Reasons can quote stored text; files are names from the backed-up host.
            lines.append(f"DAMAGED {shown(d.object)}: {shown(d.reason)}")
            if d.snapshots:
                lines.append(f"  snapshots affected: {', '.join(shown(x[:8]) for x in d.snapshots)}")
            if d.wal_files:
                lines.append(f"  WAL files affected: {', '.join(map(shown, d.wal_files))}")
            for f in d.files:
                lines.append(f"  file: {shown(f)}")
        return "\n".join(lines)

    out.emit(data, text)
    code = EXIT_OK if report.ok else VerificationFailed.exit_code
    await _record_verify(
        svc,
        params,
        started,
        Outcome(
            JobState.COMPLETED if report.ok else JobState.FAILED,
            {**data, "exit_code": code},
            None if report.ok else f"verification found {len(report.damage)} damaged objects",
        ),
    )
    return code


async def _record_verify(svc: BackupService, params: dict, started, outcome) -> None:
    """The run goes into the job history that `status` and the dashboard read; a state
    folder that refuses the record is said, and does not change the verification's verdict."""
    from core.jobs.record import record_run

    try:
        await record_run(svc.config, "verify", params, started, outcome)
    except AxisorError as exc:
        print(
            shown_lines(
                f"warning: the verification is not recorded in the job history ({exc}); "
                "`status` and the console do not know of it"
            ),
            file=sys.stderr,
        )
