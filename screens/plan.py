"""Console-side readings of the configuration: sources, objectives, next scheduled runs.

Pure functions of the config and a clock (no I/O), so the screens and their tests agree.
Schedules and their timetables come from core.schedule, the same code the daemon runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.config import Config
from core.schedule.model import Schedule, configured_sources, schedules_from_config
from core.schedule.plan import next_runs

_FREQUENCY = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(days=7)}


def source_names(config: Config) -> list[str]:
    return list(configured_sources(config))


def schedules(config: Config) -> tuple[Schedule, ...]:
    return schedules_from_config(config)


def next_run(config: Config, now: datetime, source: str | None = None) -> datetime | None:
    """The next scheduled backup (of ``source`` when given); None when nothing is scheduled
    (the scheduler is off, or no enabled backup schedule covers it)."""
    if not config.schedule.enabled:
        return None
    runs = [
        r
        for s in schedules(config)
        if s.enabled and s.task == "backup" and (source is None or source in s.sources)
        for r in next_runs(s, now, 1)
    ]
    return min(runs) if runs else None


def rpo_for(config: Config, source: str) -> timedelta:
    """The recovery-point objective: ``[objectives]`` (core.config), the one the drills and
    ``status`` measure against too. Configs from before objectives existed fall back to the
    interval of the backup schedule covering the source plus an hour, else a day."""
    objectives = getattr(config, "objectives", None)
    if objectives is not None and hasattr(objectives, "for_source"):
        return objectives.for_source(source).rpo
    if config.schedule.enabled:
        ref = datetime(2026, 1, 5, 12, 0).astimezone()  # a plain Monday: no DST edge in the interval
        for s in schedules(config):
            if s.enabled and s.task == "backup" and source in s.sources:
                a, b = next_runs(s, ref, 2)
                return (b - a) + timedelta(hours=1)
    if source == "database":
        return _FREQUENCY.get(config.database.frequency, timedelta(days=1)) + timedelta(hours=1)
    return timedelta(days=1)
