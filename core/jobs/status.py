"""Health for monitoring systems: ok, warning or critical, from the job database.

Needs no passphrase: it reads the job history (what ran and how it ended) and asks the
daemon's socket whether it answers. Per configured source, measured against its
``[objectives]`` RPO: critical when it has never been backed up or its newest successful
backup is older than the RPO times ``critical_factor``, warning past the RPO or when a
backup after the last success failed. A later backup that could not read the source at all
(missing, or its folder unreadable: exit 11) is critical at once: that source is no longer
being protected, however fresh its last snapshot. A failed verification is critical (the
repository has damage).
A file source whose newest snapshot lost more than ``[objectives] suspicious_shrink`` of the
previous snapshot's files is a warning (``shrink <source>``; core/health/shrink.py), until its
next backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core.config import Config
from core.errors import DaemonError, SourceError
from core.health.shrink import FileCount, counts_files, shrink_of
from core.jobs.api import JobState
from core.jobs.client import DaemonClient, socket_path
from core.jobs.metrics import HISTORY, per_source
from core.jobs.store import JobStore, state_dir

LEVELS = ("ok", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: str  # ok | warning | critical
    message: str
    stale: bool = False  # a source whose newest successful backup is older than its RPO


@dataclass(frozen=True, slots=True)
class Health:
    level: str
    checks: tuple[Check, ...]
    daemon_pid: int | None

    @property
    def exit_code(self) -> int:
        return LEVELS.index(self.level)


def _worst(levels: list[str]) -> str:
    return max(levels, key=LEVELS.index, default="ok")


async def health(config: Config, *, now: datetime | None = None) -> Health:
    now = now or datetime.now(UTC)
    checks: list[Check] = []
    pid: int | None = None
    try:
        client = await DaemonClient.try_connect(socket_path(config))
    except DaemonError as exc:
        client = None
        checks.append(Check("daemon", "warning", str(exc)))
    else:
        if client is not None:
            pid = client.daemon_pid
            await client.close()
            checks.append(Check("daemon", "ok", f"running (pid {pid})"))
        elif config.schedule.enabled:
            checks.append(Check("daemon", "warning",
                                f"scheduling is enabled but no daemon answers at {socket_path(config)}"))
        else:
            checks.append(Check("daemon", "ok", "not running (scheduling is disabled)"))

    store = await JobStore.open(state_dir(config))
    try:
        checks += await history_checks(config, store, now)
    finally:
        await store.close()
    return Health(_worst([c.level for c in checks]), tuple(checks), pid)


async def history_checks(config: Config, store: JobStore, now: datetime | None = None) -> list[Check]:
    """The checks that come from the job history: one per configured source, and verify."""
    now = now or datetime.now(UTC)
    checks: list[Check] = []
    backups = await store.list(limit=HISTORY, states=(JobState.COMPLETED, JobState.FAILED), kinds=("backup",))
    verifies = await store.list(limit=1, states=(JobState.COMPLETED, JobState.FAILED), kinds=("verify",))
    figures = per_source(backups)
    expected = [s.name for s in config.sources()] + (["database"] if config.database.enabled else [])
    for name in expected:
        rpo = config.objectives.for_source(name).rpo.total_seconds()
        warn_s, crit_s = rpo, rpo * config.objectives.critical_factor
        fig = figures.get(name)
        if fig is None or fig.last_success is None:
            checks.append(Check(f"source {name}", "critical", "never backed up successfully"))
            continue
        age = now.timestamp() - fig.last_success
        level = "critical" if age > crit_s else "warning" if age > warn_s else "ok"
        message = f"newest successful backup {age / 3600:.1f} h ago (RPO {rpo / 3600:g} h)"
        newer_failure = next((j for j in backups if j.state == JobState.FAILED and j.finished_at is not None
                              and j.finished_at.timestamp() > fig.last_success
                              and _touches(j.params, j.result, name)), None)
        stale = level != "ok"
        if newer_failure is not None:
            if _source_unreadable(newer_failure.result, name):
                level = "critical"
                message += (f"; a later backup could not read the source (job {newer_failure.id}: "
                            f"{newer_failure.error})")
            else:
                level = _worst([level, "warning"])
                message += f"; a later backup failed (job {newer_failure.id}: {newer_failure.error})"
        checks.append(Check(f"source {name}", level, message, stale))
    checks += shrink_checks(config, backups)
    if verifies and verifies[0].state == JobState.FAILED:
        checks.append(Check("verify", "critical", f"the newest verification failed (job {verifies[0].id}): "
                                                  f"{verifies[0].error}"))
    elif verifies:
        checks.append(Check("verify", "ok", f"the newest verification passed (job {verifies[0].id})"))
    return checks


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
        if isinstance(prev, dict):
            previous = FileCount(str(prev.get("id") or ""), name, _time(prev), int(prev.get("total_files") or 0))
        else:
            previous = FileCount.from_dict(snaps[1]) if len(snaps) > 1 else None
        found = shrink_of(FileCount.from_dict(newest), previous, config.objectives.suspicious_shrink)
        if found is not None:
            checks.append(Check(f"shrink {name}", "warning", found.message()))
    return checks


def _time(d: dict) -> datetime:
    try:
        return datetime.fromisoformat(str(d.get("time")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _source_unreadable(result: dict | None, source: str) -> bool:
    return any(f.get("source") == source and f.get("code") == SourceError.exit_code
               for f in (result or {}).get("failed") or [])


def _touches(params: dict, result: dict | None, source: str) -> bool:
    failed = (result or {}).get("failed") or []
    if failed:
        return any(f.get("source") == source for f in failed)
    wanted = params.get("sources") or []
    return not wanted or any(w == source or source.endswith("/" + w) or source.startswith(w + "/") for w in wanted)


__all__ = ["Check", "Health", "health", "history_checks", "shrink_checks"]
