"""When schedules fire: pure functions of a cron expression, a time zone and a clock.

Cron fields are read in local wall-clock time. croniter walks naive local times (where
there is no DST to get wrong); each local time is then placed on the UTC time line with
the rules of classic cron (Vixie cron, cronie), which operators already expect:

- A fixed-hour job (the hour field has no ``*``, e.g. ``30 2 * * *``) runs once per day it
  names. If its local time falls in the spring-forward gap (02:30 does not exist in
  Berlin on the last Sunday of March) it runs at the instant the clocks jump (03:00 CEST);
  if its time happens twice at fall-back it runs at the first one only.
- An interval job (``*`` in the hour field, e.g. ``30 * * * *`` or ``0 */2 * * *``) follows
  the real clock: local times skipped by the jump do not run, and a repeated hour runs
  in both of its occurrences.

All instants returned are aware UTC datetimes, strictly increasing, never repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.schedule.model import Schedule

# The widest DST shift in the tz database is 2 hours (and Lord Howe's is 30 minutes);
# starting the naive walk this far back catches every local time that can map past `after`.
_LOOKBACK = timedelta(hours=3)
# A downtime is summarised, not replayed: counting stops here ("missed >= 1000").
MAX_COUNTED_MISSED = 1000


def _interval_hours(cron: str) -> bool:
    return "*" in cron.split()[1]


def _local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _exists(naive: datetime, zone: ZoneInfo, fold: int) -> datetime | None:
    aware = naive.replace(tzinfo=zone, fold=fold)
    instant = aware.astimezone(UTC)
    return instant if _local(instant, zone) == naive else None


def _gap_end(naive: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clocks jump past a non-existent local time."""
    # fold=1 reads the time with the offset after the jump, fold=0 with the one before;
    # they bracket the transition, which a bisection on whole seconds finds exactly.
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if lo > hi:
        lo, hi = hi, lo
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if _local(mid, zone) > naive:
            hi = mid
        else:
            lo = mid
    return hi


def _instants(naive: datetime, zone: ZoneInfo, interval: bool) -> list[datetime]:
    first = _exists(naive, zone, 0)
    second = _exists(naive, zone, 1)
    if first is None and second is None:  # in the spring-forward gap
        return [] if interval else [_gap_end(naive, zone)]
    found = sorted({t for t in (first, second) if t is not None})
    return found if interval else found[:1]


def occurrences(cron: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """Fire instants strictly after ``after`` (aware), in order, without end."""
    if after.tzinfo is None:
        raise ValueError("occurrences() needs an aware datetime")
    # Imported here: croniter's import runs file(1) on the interpreter (its 32-bit check),
    # a cost every one-shot command (wal-push, backup) would pay without needing it.
    from croniter import CroniterBadDateError, croniter

    zone = ZoneInfo(timezone)
    interval = _interval_hours(cron)
    walker = croniter(cron, _local(after - _LOOKBACK, zone))
    last: datetime | None = None
    while True:
        try:
            naive = walker.get_next(datetime)
        except CroniterBadDateError:
            return
        for instant in _instants(naive, zone, interval):
            # A gap time maps onto the jump instant, which a real time may share.
            if instant > after and (last is None or instant > last):
                last = instant
                yield instant


def next_runs(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire instants after ``after``, jitter included."""
    out: list[datetime] = []
    for instant in occurrences(schedule.cron, schedule.timezone, after):
        out.append(instant + jitter(schedule, instant))
        if len(out) >= count:
            break
    return out


def jitter(schedule: Schedule, occurrence: datetime) -> timedelta:
    """A delay in [0, jitter_seconds], fixed per schedule and occurrence.

    Derived from a hash rather than drawn at random so a restart (or `schedules`) sees the
    same time the daemon will use; the host name is in the hash so that many hosts with
    the same config, the reason to want jitter, still spread out.
    """
    if schedule.jitter_seconds <= 0:
        return timedelta(0)
    seed = f"{_HOST_SALT}\0{schedule.name}\0{occurrence.astimezone(UTC).isoformat()}".encode()
    value = int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest(), "big")
    return timedelta(seconds=value % (schedule.jitter_seconds + 1))


def _host_salt() -> str:
    import socket

    return socket.gethostname()


_HOST_SALT = _host_salt()


@dataclass(frozen=True, slots=True)
class DueRun:
    schedule: str
    occurrence: datetime  # the cron instant this run stands for (the latest one due)
    not_before: datetime  # occurrence + jitter
    missed: int = 0  # earlier occurrences since the last run, folded into this one


def due_run(schedule: Schedule, last: datetime | None, now: datetime) -> DueRun | None:
    """The one run a schedule owes at ``now``, given the occurrence it last ran for.

    Every occurrence in (last, now] is owed, but they are owed as ONE run: after a
    downtime the schedule catches up once, for its latest occurrence, and reports how
    many earlier ones it folded in. ``last is None`` (never seen) owes nothing: a new
    schedule starts with its next occurrence, not with a run for the past.
    """
    if last is None or not schedule.enabled:
        return None
    latest: datetime | None = None
    count = 0
    for instant in occurrences(schedule.cron, schedule.timezone, last):
        if instant > now:
            break
        latest = instant
        count += 1
        if count > MAX_COUNTED_MISSED:
            # Skip ahead: only the newest occurrence matters from here on.
            latest = _latest_at_or_before(schedule, now) or latest
            break
    if latest is None:
        return None
    return DueRun(schedule.name, latest, latest + jitter(schedule, latest), min(count - 1, MAX_COUNTED_MISSED))


def _latest_at_or_before(schedule: Schedule, now: datetime) -> datetime | None:
    # Walk back a day at a time; any cron that fires at all fires within ~4 years, but a
    # schedule this dense (it overflowed the count) fires within minutes.
    window = timedelta(days=1)
    start = now - window
    found = None
    for instant in occurrences(schedule.cron, schedule.timezone, start):
        if instant > now:
            break
        found = instant
    return found


def due_runs(schedules: tuple[Schedule, ...], last: Mapping[str, datetime | None], now: datetime) -> list[DueRun]:
    """Every schedule's owed run at ``now``, earliest occurrence first."""
    runs = [run for s in schedules if (run := due_run(s, last.get(s.name), now)) is not None]
    return sorted(runs, key=lambda r: (r.occurrence, r.schedule))
