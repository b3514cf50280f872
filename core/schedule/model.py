"""Schedules as values: what the config asks to run, when, and over which sources.

``schedules_from_config`` turns ``[schedule]`` and its ``[[schedule.jobs]]`` into a fixed
list of ``Schedule`` values. Two kinds of defaults fill in what is not configured:

- the single ``cron_expression`` of ``[schedule]`` stays the default backup schedule
  (named ``backup``), covering every configured source that no ``[[schedule.jobs]]``
  backup names; so "the database hourly" is one job, and everything else keeps the
  daily default;
- the database, when no job names it, follows ``[database] frequency``: "daily" keeps it
  in ``backup``; "hourly" and "weekly" give it its own ``backup-database`` schedule at
  the minute (and, weekly, the hour, on Sundays) of ``cron_expression``;
- when no verify job is configured, a quick verification runs daily (Monday to
  Saturday) and a full one weekly (Sunday), because a backup nobody reads back is not
  known to be good. The full run includes every quick check, so each day is covered;
- when no prune job is configured, retention is applied weekly (Saturday 04:30); when no
  drill job is configured, a drill of ``[drills] scenario`` runs monthly (the 1st, 07:00);
  and when no restore-test job is configured, one runs weekly (Wednesday 06:30): a sample of
  a random snapshot, weighted to the never restore-tested, restored and checked;
- when no probe job is configured, each location's read speed is probed daily (05:15), so
  the RTO forecast follows a link that slows between drills (core/locations/probe.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Config, ScheduleJobConfig
from core.config.sources import configured_sources, select_sources
from core.errors import UsageError

DEFAULT_BACKUP = "backup"
DEFAULT_DATABASE = "backup-database"
DEFAULT_VERIFY_QUICK = "verify-quick"
DEFAULT_VERIFY_FULL = "verify-full"
# After the 02:00 default backup has had time to finish; a full read on the quiet day.
DEFAULT_VERIFY_QUICK_CRON = "30 5 * * 1-6"
DEFAULT_VERIFY_FULL_CRON = "30 5 * * 0"
DEFAULT_PRUNE = "prune"
DEFAULT_PRUNE_CRON = "30 4 * * 6"  # weekly, before Sunday's full verification reads what is left
DEFAULT_DRILL = "drill"
DEFAULT_DRILL_CRON = "0 7 1 * *"  # monthly: a restore nobody rehearses is not known to work
DEFAULT_RESTORE_TEST = "restore-test"
# Weekly, midweek, after the nightly backup: a sample of a random snapshot restored and checked.
DEFAULT_RESTORE_TEST_CRON = "30 6 * * 3"
DEFAULT_PROBE = "probe"
DEFAULT_PROBE_CRON = "15 5 * * *"  # daily, between the nightly backup and the verification


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    task: str  # backup | verify | copy | prune | drill | restore-test | probe
    cron: str
    timezone: str
    sources: tuple[str, ...] = ()  # backup: full source names ("database", "application/log_files")
    type: str = "auto"  # backup: auto | full | incremental | differential
    full: bool = False  # verify: read every pack
    locations: tuple[str, ...] = ()  # copy: remote_storage names, empty = all
    sample_files: int = 20  # restore-test: items of the drawn snapshot to restore
    sample_percent: int | None = None  # restore-test: a percent of its items instead
    jitter_seconds: int = 0
    enabled: bool = True
    origin: str = "config"  # "config" ([[schedule.jobs]]) or "default" (filled in)

    @property
    def holds(self) -> frozenset[str]:
        """What two runs must not share at once: each source of a backup, else the task.

        Verify, prune, copy and drill act on whole repositories; the engine's location
        locks order them against backups, and one run per schedule is kept here.
        """
        if self.task == "backup":
            return frozenset(f"source:{s}" for s in self.sources)
        return frozenset({f"task:{self.task}"})

    def describe(self) -> str:
        if self.task == "backup":
            return f"backup ({self.type}) of {', '.join(self.sources)}"
        if self.task == "verify":
            return "full verification" if self.full else "quick verification"
        if self.task == "copy":
            return f"copy to {', '.join(self.locations) or 'every remote location'}"
        if self.task == "restore-test":
            sample = f"{self.sample_percent}%" if self.sample_percent is not None else f"{self.sample_files} items"
            return f"restore-test of {sample} of a random snapshot"
        if self.task == "probe":
            return "read speed of every location (for the RTO forecast)"
        return self.task


def expand_sources(config: Config, names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Short names and categories -> full source names, in configured order; empty = all
    (core/config/sources.py; an unknown name is a UsageError, UnknownSource)."""
    return select_sources(config, names, order="configured", unknown="raise")


def _from_job(config: Config, job: ScheduleJobConfig) -> Schedule:
    return Schedule(
        name=job.name,
        task=job.task,
        cron=job.cron,
        timezone=job.timezone or config.schedule.timezone,
        sources=expand_sources(config, job.sources) if job.task == "backup" else (),
        type=job.type,
        full=job.full,
        locations=job.locations,
        sample_files=job.sample_files,
        sample_percent=job.sample_percent,
        jitter_seconds=job.jitter_seconds,
        enabled=job.enabled,
    )


def _database_cron(config: Config) -> str | None:
    """The database's own default cron from ``[database] frequency``; None: with the rest."""
    minute, hour = config.schedule.cron_expression.split()[:2]
    minute = "0" if "*" in minute else minute
    if config.database.frequency == "hourly":
        return f"{minute} * * * *"
    if config.database.frequency == "weekly":
        return f"{minute} {'2' if '*' in hour else hour} * * 0"
    return None


def _free_name(wanted: str, taken: set[str]) -> str:
    name = wanted
    while name in taken:
        name += "-default"
    return name


def schedules_from_config(config: Config) -> tuple[Schedule, ...]:
    """Every schedule, configured ones first, then the defaults that fill the gaps."""
    section = config.schedule
    explicit = [_from_job(config, job) for job in section.jobs]
    taken = {s.name for s in explicit}
    defaults: list[Schedule] = []

    claimed = {src for s in explicit if s.task == "backup" for src in s.sources}
    rest = tuple(src for src in configured_sources(config) if src not in claimed)
    database_cron = _database_cron(config)
    if "database" in rest and database_cron is not None:
        rest = tuple(src for src in rest if src != "database")
        defaults.append(
            Schedule(
                name=_free_name(DEFAULT_DATABASE, taken),
                task="backup",
                cron=database_cron,
                timezone=section.timezone,
                sources=("database",),
                origin="default",
            )
        )
    if rest:
        defaults.append(
            Schedule(
                name=_free_name(DEFAULT_BACKUP, taken),
                task="backup",
                cron=section.cron_expression,
                timezone=section.timezone,
                sources=rest,
                origin="default",
            )
        )
    if not any(s.task == "verify" for s in explicit):
        for name, cron, full in (
            (DEFAULT_VERIFY_QUICK, DEFAULT_VERIFY_QUICK_CRON, False),
            (DEFAULT_VERIFY_FULL, DEFAULT_VERIFY_FULL_CRON, True),
        ):
            defaults.append(
                Schedule(
                    name=_free_name(name, taken),
                    task="verify",
                    cron=cron,
                    timezone=section.timezone,
                    full=full,
                    origin="default",
                )
            )
    for task, name, cron in (
        ("prune", DEFAULT_PRUNE, DEFAULT_PRUNE_CRON),
        ("drill", DEFAULT_DRILL, DEFAULT_DRILL_CRON),
        ("restore-test", DEFAULT_RESTORE_TEST, DEFAULT_RESTORE_TEST_CRON),
        ("probe", DEFAULT_PROBE, DEFAULT_PROBE_CRON),
    ):
        if not any(s.task == task for s in explicit):
            defaults.append(
                Schedule(
                    name=_free_name(name, taken), task=task, cron=cron, timezone=section.timezone, origin="default"
                )
            )
    return tuple(explicit + defaults)


def find_schedule(schedules: tuple[Schedule, ...], name: str) -> Schedule:
    for schedule in schedules:
        if schedule.name == name:
            return schedule
    known = ", ".join(s.name for s in schedules) or "none"
    raise UsageError(f"no schedule named {name!r}; configured: {known}")
