"""Health for monitoring systems: ok, warning or critical, from the job database.

Needs no passphrase: it reads the job history (what ran and how it ended) and asks the
daemon's socket whether it answers. Per configured source, measured against its
``[objectives]`` RPO: critical when it has never been backed up or its newest successful
backup is older than the RPO times ``critical_factor``, warning past the RPO or when a
backup after the last success failed. A later backup that could not read the source at all
(missing, or its folder unreadable: exit 11) is critical at once: that source is no longer
being protected, however fresh its last snapshot. A failed verification is critical (the
repository has damage); one that could not run (a lock, an unreachable
location) is a warning naming why, and the verdict of the last one that ran still stands; a
cancelled or interrupted one says nothing about the repository and changes nothing
(``verify_verdict``). Restore-tests are weighed the same way (``restore-test``): one whose
restored sample differs from its snapshot is critical, a later one that could not run a
warning, a cancelled one nothing.
A file source whose newest snapshot lost more than ``[objectives] suspicious_shrink`` of the
previous snapshot's files is a warning (``shrink <source>``; core/health/shrink.py), until its
next backup. A backup that tripped the wire (core/health/tripwire.py: mass change, new data
that stopped compressing, a shrink) is critical (``tripwire <source>``) until
`axisor-backup acknowledge` answers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.config import Config
from core.errors import DaemonError, Exit, RestoreValidationFailed, SourceError, VerificationFailed
from core.health.shrink import FileCount, counts_files, shrink_of
from core.health.tripwire import recorded_trips
from core.jobs.api import Job, JobState
from core.jobs.client import DaemonClient, socket_path
from core.drills.forecast import RtoForecast
from core.jobs.metrics import HISTORY, per_source
from core.jobs.rto import describe, forecast_level, rto_forecasts
from core.jobs.store import JobStore, state_dir

LEVELS = ("ok", "warning", "critical")
VERIFY_HISTORY = 50  # verification jobs looked at for the newest verdict


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: str  # ok | warning | critical
    message: str
    stale: bool = False  # a source whose newest successful backup is older than its RPO
    # What fixes it, as an action id the CLI and the console each show in their own words
    # ("backup <source>", "verify", "daemon", "repair"); None when nothing does.
    fix: str | None = None
    # Where, when it is long (a socket path): the CLI shows it, the dashboard's line leaves it out.
    detail: str = ""

    @property
    def code(self) -> int:
        """0 ok, 1 warning, 2 critical: the scale of `status`'s exit code and the metrics."""
        return LEVELS.index(self.level)

    @property
    def full_message(self) -> str:
        return f"{self.message} {self.detail}" if self.detail else self.message


@dataclass(frozen=True, slots=True)
class VerifyVerdict:
    """What the verification history says about the repository.

    ``state`` is "passed" or "damage" from the newest verification that ran to its end, or
    "never". ``newer`` is the newest verification after it that did not reach a verdict
    (cancelled, interrupted, or failed to run), with ``newer_error`` saying why."""

    state: str  # passed | damage | never
    job_id: str | None = None
    at: datetime | None = None
    full: bool = False
    newer: str | None = None  # cancelled | interrupted | could not run
    newer_job_id: str | None = None
    newer_error: str | None = None


@dataclass(frozen=True, slots=True)
class Health:
    level: str
    checks: tuple[Check, ...]
    daemon_pid: int | None
    verify: VerifyVerdict = VerifyVerdict("never")
    # The RTO forecast of each drill scenario per location (core/jobs/rto.py); one over its
    # objective is also a check.
    forecasts: tuple[RtoForecast, ...] = ()

    @property
    def exit_code(self) -> int:
        return LEVELS.index(self.level)


def _worst(levels: list[str]) -> str:
    return max(levels, key=LEVELS.index, default="ok")


async def health(config: Config, *, now: datetime | None = None) -> Health:
    """The platform's health: the one evaluation behind `status`, the metrics file, the
    daemon's notifications and the console's dashboard, so they can never disagree."""
    store = await JobStore.open(state_dir(config))
    try:
        return await evaluate(config, store, now=now)
    finally:
        await store.close()


async def evaluate(
    config: Config, store: JobStore, *, now: datetime | None = None, daemon_pid: int | None = None
) -> Health:
    """``health`` on an open job database. ``daemon_pid``: the caller is that daemon (it does
    not ask its own socket)."""
    pid = daemon_pid if daemon_pid is not None else await _daemon_pid(config)
    checks = [_daemon_check(config, pid)]
    history, verdict, backups = await _history(config, store, now)
    checks += history
    forecasts = await rto_forecasts(config, store, backups)
    checks += forecast_checks(config, forecasts)
    return Health(
        _worst([c.level for c in checks]),
        tuple(checks),
        pid if isinstance(pid, int) else None,
        verdict,
        forecasts,
    )


def forecast_checks(config: Config, forecasts: Sequence[RtoForecast]) -> list[Check]:
    """A finding per forecast over its scenario's RTO objective (a forecast within it, or
    none yet, is shown with the forecasts, not as a check)."""
    checks = []
    for f in forecasts:
        level = forecast_level(f, config.objectives.critical_factor)
        if level != "ok":
            checks.append(
                Check(f"rto {f.scenario} from {f.location}", level, describe(f), fix=f"drill {f.scenario} {f.location}")
            )
    return checks


async def _daemon_pid(config: Config) -> int | DaemonError | None:
    """The answering daemon's pid, None when none answers, or why asking failed."""
    try:
        client = await DaemonClient.try_connect(socket_path(config))
    except DaemonError as exc:
        return exc
    if client is None:
        return None
    pid = client.daemon_pid
    await client.close()
    return pid


def _daemon_check(config: Config, pid: int | DaemonError | None) -> Check:
    if isinstance(pid, DaemonError):
        return Check("daemon", "warning", str(pid), fix="daemon")
    if pid is not None:
        return Check("daemon", "ok", f"running (pid {pid})")
    if config.schedule.enabled:
        return Check(
            "daemon",
            "warning",
            "scheduling is enabled but no daemon answers",
            fix="daemon",
            detail=f"at {socket_path(config)}",
        )
    return Check("daemon", "ok", "not running (scheduling is disabled)")


async def history_checks(config: Config, store: JobStore, now: datetime | None = None) -> list[Check]:
    """The checks that come from the job history: one per configured source, and verify."""
    return (await _history(config, store, now))[0]


async def _history(
    config: Config, store: JobStore, now: datetime | None
) -> tuple[list[Check], VerifyVerdict, list[Job]]:
    """The history's checks, the verification verdict, and the backup jobs read (newest first)."""
    now = now or datetime.now(UTC)
    checks: list[Check] = []
    backups = await store.list(limit=HISTORY, states=(JobState.COMPLETED, JobState.FAILED), kinds=("backup",))
    verifies = await store.list(limit=VERIFY_HISTORY, kinds=("verify",))
    figures = per_source(backups)
    expected = [s.name for s in config.sources()] + (["database"] if config.database.enabled else [])
    for name in expected:
        rpo = config.objectives.for_source(name).rpo.total_seconds()
        warn_s, crit_s = rpo, rpo * config.objectives.critical_factor
        fig = figures.get(name)
        if fig is None or fig.last_success is None:
            checks.append(Check(f"source {name}", "critical", "never backed up successfully", fix=f"backup {name}"))
            continue
        age = now.timestamp() - fig.last_success
        level = "critical" if age > crit_s else "warning" if age > warn_s else "ok"
        message = f"newest successful backup {age / 3600:.1f} h ago (RPO {rpo / 3600:g} h)"
        newer_failure = next(
            (
                j
                for j in backups
                if j.state == JobState.FAILED
                and j.finished_at is not None
                and j.finished_at.timestamp() > fig.last_success
                and _touches(j.params, j.result, name)
            ),
            None,
        )
        stale = level != "ok"
        if newer_failure is not None:
            if _source_unreadable(newer_failure.result, name):
                level = "critical"
                message += f"; a later backup could not read the source (job {newer_failure.id}: {newer_failure.error})"
            else:
                level = _worst([level, "warning"])
                message += f"; a later backup failed (job {newer_failure.id}: {newer_failure.error})"
        checks.append(Check(f"source {name}", level, message, stale, fix=f"backup {name}" if level != "ok" else None))
    acks = await store.list(limit=VERIFY_HISTORY, states=(JobState.COMPLETED,), kinds=("acknowledge",))
    trips = tripwire_checks(backups, acks)
    tripped = {c.name.removeprefix("tripwire ") for c in trips}
    # A shrink that tripped the wire is said once, as the tripwire's critical finding.
    checks += [c for c in shrink_checks(config, backups) if c.name.removeprefix("shrink ") not in tripped]
    checks += trips
    rolled = rollback_check(backups, acks)
    if rolled is not None:
        checks.append(rolled)
    verdict = verify_verdict(verifies)
    verify = verify_check(verdict) or key_refused_check("verify", verifies)
    if verify is not None:
        checks.append(verify)
    restore_tests = await store.list(limit=VERIFY_HISTORY, kinds=("restore-test",))
    tested = restore_test_check(restore_test_verdict(restore_tests), restore_tests) or key_refused_check(
        "restore-test", restore_tests
    )
    if tested is not None:
        checks.append(tested)
    return checks, verdict, backups


def verify_verdict(jobs: list, damage_code: int = VerificationFailed.exit_code) -> VerifyVerdict:
    """Newest first in. Only a verification that ran to its end gives a verdict: passed
    (completed, no damage) or damage (failed with the damage exit code, ``damage_code``). A
    cancelled one, one interrupted by a crash, or one that could not run (lock, passphrase,
    unreachable storage) says nothing about the repository. Restore-tests are weighed the
    same way (``restore_test_verdict``)."""
    newer: tuple[str, str, str | None] | None = None
    for job in jobs:
        if job.state == JobState.FAILED and (job.result or {}).get("exit_code") == Exit.KEY_REFUSED:
            # Refused for this host's write-only key: not this host's to run, and says
            # nothing about the repository (``key_refused_check`` says so once).
            continue
        if job.state == JobState.COMPLETED:
            state = "passed" if (job.result or {}).get("ok", True) else "damage"
        elif job.state == JobState.FAILED and (job.result or {}).get("exit_code") == damage_code:
            state = "damage"
        else:
            if job.state.finished and newer is None:
                why = (
                    "cancelled"
                    if job.state == JobState.CANCELLED
                    else "interrupted"
                    if job.state.value == "interrupted"
                    else "could not run"
                )
                newer = (why, job.id, job.error)
            continue
        verdict = VerifyVerdict(state, job.id, job.finished_at, bool(job.params.get("full")))
        break
    else:
        verdict = VerifyVerdict("never")
    if newer is not None:
        verdict = VerifyVerdict(verdict.state, verdict.job_id, verdict.at, verdict.full, *newer)
    return verdict


def verify_check(v: VerifyVerdict) -> Check | None:
    """The ``verify`` check of a verdict; None when nothing was ever verified or tried."""
    kind = "full" if v.full else "quick"
    if v.state == "damage":
        return Check(
            "verify", "critical", f"the newest {kind} verification found damage (job {v.job_id})", fix="repair"
        )
    last = (
        f"the newest {kind} verification passed (job {v.job_id})"
        if v.state == "passed"
        else "no verification has completed"
    )
    return _after_verdict("verify", v, last, "the repository")


def _after_verdict(name: str, v: VerifyVerdict, last: str, about: str) -> Check | None:
    """The check when the verdict found nothing wrong: a later run that could not run is a
    warning naming why; a cancelled or interrupted one is named and says nothing about
    ``about``; never tried is no finding."""
    if v.newer == "could not run":
        return Check(
            name, "warning", f"{last}; a later one could not run (job {v.newer_job_id}: {v.newer_error})", fix=name
        )
    if v.newer is not None:
        last += f"; a later one was {v.newer} (job {v.newer_job_id}), which says nothing about {about}"
    if v.state == "never" and v.newer is None:
        return None
    return Check(name, "ok", last)


def key_refused_check(name: str, jobs: Sequence[Job]) -> Check | None:
    """When nothing of ``name`` ever gave a verdict here and the newest run was refused for a
    write-only key (exit 27): said as ok, not hidden and not a warning that can never clear,
    since this host cannot run it (a trusted host with the full key does)."""
    newest = next((j for j in jobs if j.state.finished), None)
    if newest is None or (newest.result or {}).get("exit_code") != Exit.KEY_REFUSED:
        return None
    return Check(
        name,
        "ok",
        f"not run here: this host's key is write-only (job {newest.id} was refused); "
        f"{name} runs on a host with the full key",
    )


def restore_test_verdict(jobs: list) -> VerifyVerdict:
    """Newest first in: the restore-test jobs' verdict. "damage" is a restore-test whose
    restored sample differs from its snapshot (exit 16); one that could not run (no snapshot,
    a lock, a location) or was cancelled is named beside the last verdict, never taken for one."""
    return verify_verdict(jobs, damage_code=RestoreValidationFailed.exit_code)


def restore_test_check(v: VerifyVerdict, jobs: Sequence[Job] = ()) -> Check | None:
    """The ``restore-test`` check: critical when the newest restore-test that reached its end
    restored data that differs from its snapshot; a warning when a later one could not run;
    None when none was ever tried. ``jobs`` (newest first) supply the passing run's sample."""
    if v.state == "damage":
        return Check(
            "restore-test",
            "critical",
            f"the newest restore-test restored data that differs from its snapshot (job {v.job_id})",
            fix="repair",
        )
    last = "no restore-test has passed"
    if v.state == "passed":
        result = next((j.result or {} for j in jobs if j.id == v.job_id), {})
        what = _restore_test_sample(result)
        last = f"the newest restore-test passed{what} (job {v.job_id})"
    return _after_verdict("restore-test", v, last, "restores")


def _restore_test_sample(result: dict) -> str:
    """ ", 20 of 1,204 files of snapshot 1a2b3c4d" from a restore-test job's result, or ""."""
    plan = result.get("plan")
    if not isinstance(plan, dict):
        return ""
    items, total, kind = plan.get("items"), plan.get("total"), plan.get("kind")
    snapshot = str(plan.get("snapshot") or "")[:8]
    count = len(items) if isinstance(items, list) else items
    if not isinstance(count, int) or not isinstance(total, int):
        return ""
    return f": {count:,} of {total:,} {kind or 'items'}" + (f" of snapshot {snapshot}" if snapshot else "")


def shrink_checks(config: Config, backups: list) -> list[Check]:
    """A warning per file source whose newest snapshot in the job history shrank: compared
    with the snapshot the run found before it (recorded in the job's result), else with the
    next older one in the history."""
    seen: dict[str, list[dict]] = {}
    for job in backups:  # newest first
        for snap in (job.result or {}).get("snapshots") or []:
            if isinstance(snap, dict) and "id" in snap and "time" in snap:
                seen.setdefault(str(snap.get("source")), []).append(snap)
    checks = []
    for name, snaps in seen.items():
        newest = snaps[0]
        if not counts_files(name, newest.get("tags") or ()):
            continue
        prev = newest.get("previous")
        previous: FileCount | None
        if isinstance(prev, dict):
            previous = FileCount(str(prev.get("id") or ""), name, _time(prev), int(prev.get("total_files") or 0))
        else:
            previous = FileCount.from_dict(snaps[1]) if len(snaps) > 1 else None
        found = shrink_of(FileCount.from_dict(newest), previous, config.objectives.suspicious_shrink)
        if found is not None:
            checks.append(Check(f"shrink {name}", "warning", found.message(), fix=f"backup {name}"))
    return checks


def tripwire_checks(backups: list, acknowledgements: list) -> list[Check]:
    """Critical per source whose newest tripped backup (core/backup/tripwire.py: its
    snapshot's ``tripwire`` in the job result) no `acknowledge` has answered since. A later
    ordinary backup does not answer it: a person must look (the pinned snapshot waits)."""
    checks: list[Check] = []
    seen: set[str] = set()
    for job in backups:  # newest first
        for trip in recorded_trips(job.result):
            if trip.source in seen:
                continue
            seen.add(trip.source)
            if any(_answers(a, job, trip.source) for a in acknowledgements):
                continue
            first = trip.findings[0].message if trip.findings else ""
            message = (
                f"snapshot {trip.snapshot[:8]} ({', '.join(trip.rules)}) looks like mass encryption or a wipe: "
                f"{first}; "
                + (f"snapshot {trip.pinned[:8]} is pinned against prune" if trip.pinned else "NOTHING could be pinned")
            )
            checks.append(Check(f"tripwire {trip.source}", "critical", message, fix="acknowledge"))
    return checks


def rollback_check(backups: list, acknowledgements: Sequence = ()) -> Check | None:
    """Critical while the newest backup was refused because snapshots this host saw had
    vanished without a tombstone (core/repository/rollback.py, exit 26); a later backup
    that ran, or `acknowledge --rollback` after it, clears it."""
    newest = next((j for j in backups if j.finished_at is not None), None)
    if newest is None or newest.state != JobState.FAILED:
        return None
    if (newest.result or {}).get("exit_code") != Exit.ROLLBACK:
        return None
    if any(
        (a.params or {}).get("rollback") and a.finished_at is not None and a.finished_at >= newest.finished_at
        for a in acknowledgements
    ):
        return None
    return Check("rollback", "critical", f"backups refused (job {newest.id}): {newest.error}", fix="acknowledge")


def _answers(ack, job, source: str) -> bool:
    """An acknowledgement finished after the tripped backup, for its source (or for all)."""
    if ack.finished_at is None or job.finished_at is None or ack.finished_at < job.finished_at:
        return False
    if (ack.params or {}).get("rollback"):
        return False  # `acknowledge --rollback` answers a refused backup, not a tripwire
    sources = (ack.params or {}).get("sources") or []
    return not sources or source in sources


def _time(d: dict) -> datetime:
    try:
        return datetime.fromisoformat(str(d.get("time")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _source_unreadable(result: dict | None, source: str) -> bool:
    return any(
        f.get("source") == source and f.get("code") == SourceError.exit_code for f in (result or {}).get("failed") or []
    )


def _touches(params: dict, result: dict | None, source: str) -> bool:
    failed = (result or {}).get("failed") or []
    if failed:
        return any(f.get("source") == source for f in failed)
    wanted = params.get("sources") or []
    return not wanted or any(w == source or source.endswith("/" + w) or source.startswith(w + "/") for w in wanted)


__all__ = [
    "Check",
    "Health",
    "VerifyVerdict",
    "evaluate",
    "forecast_checks",
    "health",
    "history_checks",
    "shrink_checks",
    "tripwire_checks",
    "rollback_check",
    "verify_check",
    "verify_verdict",
]
