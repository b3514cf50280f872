"""The ``restore-test`` job kind: one restore-test run by the engine (the scheduler's
``task = "restore-test"``, or ``axisor-backup restore-test``).

Params (all optional): ``snapshot`` (an id or prefix; default: drawn, weighted towards the
never restore-tested), ``from`` (a location name; default the primary), ``sample_files`` (how many items, default 20) or ``share`` (percent
of the snapshot's items), ``seed`` (replays a draw). The result is the record
(``RestoreTestRecord.to_dict()``) plus ``plan`` (the draw), ``notes`` and ``exit_code``.
Only a pass completes the job: a validation that failed fails it with exit 16 (restored
data differs from the snapshot), a run that could not run fails it with the error's code,
a cancelled one is cancelled; each keeps its record as the result.
"""

from __future__ import annotations

from typing import Any

from core.drills.restore_test import RestoreTestRequest, plan, run_restore_test
from core.drills.restore_test_record import CANCELLED, FAILED, PASSED
from core.errors import Exit
from core.runner import PRIMARY_LOCATION, JobCancelled, JobContext, JobFailed, JobProgress

__all__ = ["restore_test_runner"]


async def restore_test_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    request = RestoreTestRequest.from_params(params)
    ctx.progress(JobProgress(phase="waiting for locks"))
    # Shared: a restore-test only reads the repository (and writes its own record object).
    held = [PRIMARY_LOCATION] + ([request.location] if request.location and request.location != "local" else [])
    async with ctx.locks(held, exclusive=False):
        ctx.progress(JobProgress(phase="restore-test: drawing"))
        the_plan, notes = await plan(ctx.service, request)
        for note in notes:
            ctx.log(f"note: {note}")
        ctx.log(
            f"snapshot {the_plan.snapshot.short_id} ({the_plan.snapshot.source}): {the_plan.why}; "
            f"{len(the_plan.items)} of {the_plan.total} {the_plan.kind}, seed {the_plan.seed}"
        )

        def progress(line: str) -> None:
            ctx.log(line)
            ctx.progress(JobProgress(phase="restore-test", current=line, files_total=len(the_plan.items)))

        record = await run_restore_test(
            ctx.service, the_plan, progress=progress, check_cancelled=ctx.check_cancelled, job_id=ctx.job_id
        )
    out = record.to_dict()
    out.update(plan=the_plan.as_dict(), notes=notes)
    ctx.log(f"restore-test {record.id} {record.outcome}: {record.summary()}")
    if record.store_error:
        ctx.log(f"warning: the record could not be stored in the repository: {record.store_error}")
    if record.outcome == PASSED:
        out["exit_code"] = Exit.OK
        return out
    if record.outcome == CANCELLED:
        raise JobCancelled("cancelled")
    code = Exit.VALIDATION_FAILED if record.outcome == FAILED else record.exit_code or Exit.ERROR
    out["exit_code"] = code
    raise JobFailed(f"restore-test {record.id} {record.outcome}: {record.summary()}", out, code)
