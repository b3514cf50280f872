"""The ``drill`` job kind: a disaster-recovery drill run by the engine.

Params (all optional): ``scenario`` (default ``[drills] scenario``), ``from`` (a location
name), ``to_time`` (ISO 8601, PITR). Progress: the phase is the step running, ``files_done``
counts steps and checks finished (the console's live checklist reads the job log: one
line per step and check as it finishes, ``step <name>: <status>`` / ``check <name>:
<status>``). The result is the report (``DrillReport.to_dict()``) plus ``markdown`` and
``exit_code``; a failed drill fails the job (exit 19) with the report still as its result.
"""

from __future__ import annotations

from typing import Any

from core.drills.report import CheckResult, Step
from core.drills.run import DrillRequest, run_drill
from core.errors import DrillFailed, Exit
from core.runner import JobProgress, PRIMARY_LOCATION, JobContext, JobFailed

__all__ = ["drill_runner", "report_result"]


def report_result(report) -> dict[str, Any]:
    out = report.to_dict()
    out["markdown"] = report.markdown()
    out["exit_code"] = Exit.OK if report.passed else DrillFailed.exit_code
    return out


async def drill_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    request = DrillRequest.from_params(params)
    done = 0

    def listener(item: Step | CheckResult) -> None:
        nonlocal done
        done += 1
        if isinstance(item, Step):
            ctx.log(
                f"step {item.name}: {item.status} ({item.seconds:.2f} s){': ' + item.detail if item.detail else ''}"
            )
            ctx.progress(JobProgress(phase=f"drill: {item.name}", files_done=done, current=item.status))
        else:
            ctx.log(f"check {item.name}: {item.status}{': ' + item.detail if item.detail else ''}")

    ctx.progress(JobProgress(phase="waiting for locks"))
    # Shared: a drill only reads the repository (and writes its own report object).
    held = [PRIMARY_LOCATION] + ([request.location] if request.location and request.location != "local" else [])
    async with ctx.locks(held, exclusive=False):
        ctx.progress(JobProgress(phase="drill"))
        report = await run_drill(
            ctx.service, request, listener=listener, check_cancelled=ctx.check_cancelled, job_id=ctx.job_id
        )
    out = report_result(report)
    ctx.log(f"drill {report.id} {'passed' if report.passed else 'FAILED'}: RTO {report.rto_seconds:.1f} s")
    if not report.passed:
        why = "; ".join(report.failures[:5]) or report.error or "see the report"
        raise JobFailed(f"drill {report.id} failed: {why}", out, DrillFailed.exit_code)
    return out
