"""The ``probe`` job kind: each location's latency and read throughput measured
(core/locations/probe.py), for the RTO forecast; the scheduler's ``task = "probe"``.

Params (all optional): ``locations`` (names; default every location), ``bytes`` (read
budget per location). The result is ``{"probes": [ReadProbe.to_dict(), ...]}``. A location
that does not answer is named in its probe and fails the job (exit 1) after the others were
measured; it holds no lock: it only reads stored packs, never opens them.
"""

from __future__ import annotations

from typing import Any

from core.errors import Exit
from core.locations.probe import probes_outcome
from core.runner import JobContext, JobFailed, JobProgress

__all__ = ["probe_runner"]


async def probe_runner(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    names = [str(n) for n in params.get("locations") or []] or None
    budget = params.get("bytes")
    ctx.progress(JobProgress(phase="probing locations"))
    probes = await ctx.service.probe_reads(names, int(budget) if budget else None)
    for p in probes:
        ctx.log(f"probe {p.location}: {p.summary()}")
    result, error = probes_outcome(probes)
    if error:
        raise JobFailed(error, result, Exit.ERROR)
    return result
