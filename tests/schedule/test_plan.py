"""When schedules fire: DST both ways, catch-up once after a downtime, jitter bounds.

Pure functions of (cron, time zone, clock): every expectation below is a wall-clock
fact about Europe/Berlin or America/New_York on the days the clocks change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.schedule.model import Schedule
from core.schedule.plan import MAX_COUNTED_MISSED, due_run, due_runs, jitter, next_runs, occurrences

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def local(instant: datetime, zone: ZoneInfo = BERLIN) -> str:
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def runs_between(cron: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    out = []
    for instant in occurrences(cron, tz, start):
        if instant > end:
            break
        out.append(instant)
    return out


def day(zone: ZoneInfo, y: int, m: int, d: int) -> tuple[datetime, datetime]:
    start = datetime(y, m, d, tzinfo=zone).astimezone(UTC)
    end = datetime(y, m, d + 1, tzinfo=zone).astimezone(UTC)
    return start, end


# -- DST: fixed-hour jobs run exactly once on the change days -------------------------------


def test_spring_forward_0230_runs_once_at_the_jump():
    # 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 never happens.
    start, end = day(BERLIN, 2026, 3, 29)
    runs = runs_between("30 2 * * *", "Europe/Berlin", start, end)
    assert [local(r) for r in runs] == ["2026-03-29 03:00 CEST"]
    assert runs[0] == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_fall_back_0230_runs_once_at_the_first_0230():
    # 2026-10-25: 02:00-03:00 happens twice (CEST, then CET); the job runs in the first.
    start, end = day(BERLIN, 2026, 10, 25)
    runs = runs_between("30 2 * * *", "Europe/Berlin", start, end)
    assert [local(r) for r in runs] == ["2026-10-25 02:30 CEST"]
    assert runs[0] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_daily_job_keeps_its_wall_clock_time_across_both_changes():
    start = datetime(2026, 3, 27, tzinfo=UTC)
    runs = list(islice(occurrences("15 1 * * *", "Europe/Berlin", start), 4))
    assert [local(r) for r in runs] == [
        "2026-03-27 01:15 CET",
        "2026-03-28 01:15 CET",
        "2026-03-29 01:15 CET",
        "2026-03-30 01:15 CEST",
    ]
    gaps = {b - a for a, b in zip(runs, runs[1:])}
    assert gaps == {timedelta(hours=24), timedelta(hours=23)}
    runs = list(islice(occurrences("15 3 * * *", "Europe/Berlin", datetime(2026, 10, 24, tzinfo=UTC)), 3))
    assert [local(r) for r in runs] == ["2026-10-24 03:15 CEST", "2026-10-25 03:15 CET", "2026-10-26 03:15 CET"]
    assert runs[1] - runs[0] == timedelta(hours=25)


def test_new_york_spring_forward_and_fall_back():
    start, end = day(NEW_YORK, 2026, 3, 8)
    assert [local(r, NEW_YORK) for r in runs_between("30 2 * * *", "America/New_York", start, end)] == [
        "2026-03-08 03:00 EDT"
    ]
    start, end = day(NEW_YORK, 2026, 11, 1)
    assert [local(r, NEW_YORK) for r in runs_between("30 1 * * *", "America/New_York", start, end)] == [
        "2026-11-01 01:30 EDT"
    ]


# -- DST: interval jobs follow the real clock -----------------------------------------------


def test_hourly_job_on_spring_forward_day_skips_the_missing_hour():
    start, end = day(BERLIN, 2026, 3, 29)
    runs = runs_between("30 * * * *", "Europe/Berlin", start, end)
    assert len(runs) == 23  # the day has 23 hours
    assert "2026-03-29 01:30 CET" in [local(r) for r in runs]
    assert "2026-03-29 03:30 CEST" in [local(r) for r in runs]
    assert all(b - a == timedelta(hours=1) for a, b in zip(runs, runs[1:]))


def test_hourly_job_on_fall_back_day_runs_in_both_repeated_hours():
    start, end = day(BERLIN, 2026, 10, 25)
    runs = runs_between("30 * * * *", "Europe/Berlin", start, end)
    assert len(runs) == 25  # the day has 25 hours
    assert [local(r) for r in runs].count("2026-10-25 02:30 CEST") == 1
    assert [local(r) for r in runs].count("2026-10-25 02:30 CET") == 1
    assert all(b - a == timedelta(hours=1) for a, b in zip(runs, runs[1:]))
    assert len(set(runs)) == len(runs)


def test_occurrences_strictly_after_and_increasing():
    after = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # exactly the spring-forward jump instant
    runs = list(islice(occurrences("30 2 * * *", "Europe/Berlin", after), 3))
    assert runs[0] > after
    assert local(runs[0]) == "2026-03-30 02:30 CEST"
    assert runs == sorted(set(runs))


def test_occurrences_need_an_aware_clock():
    with pytest.raises(ValueError):
        next(occurrences("0 2 * * *", "UTC", datetime(2026, 1, 1)))


# -- due runs: catch-up once ----------------------------------------------------------------


def sched(name: str = "nightly", cron: str = "0 2 * * *", tz: str = "Europe/Berlin", **kw) -> Schedule:
    return Schedule(
        name=name,
        task=kw.pop("task", "backup"),
        cron=cron,
        timezone=tz,
        sources=kw.pop("sources", ("application/user_data",)),
        **kw,
    )


def test_nothing_due_before_the_occurrence_and_one_run_after():
    s = sched()
    last = datetime(2026, 6, 1, 0, 5, tzinfo=UTC)  # 02:05 Berlin
    assert due_run(s, last, datetime(2026, 6, 1, 23, 59, tzinfo=UTC)) is None
    run = due_run(s, last, datetime(2026, 6, 2, 0, 0, 30, tzinfo=UTC))
    assert run is not None and run.missed == 0
    assert local(run.occurrence) == "2026-06-02 02:00 CEST"


def test_downtime_catches_up_once_for_the_latest_occurrence():
    s = sched()
    last = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # ran on June 1st at 02:00 CEST
    back = datetime(2026, 6, 8, 9, 0, tzinfo=UTC)  # the host was down for a week
    run = due_run(s, last, back)
    assert run is not None
    assert local(run.occurrence) == "2026-06-08 02:00 CEST"
    assert run.missed == 6  # June 2nd..7th folded into the one run
    # Once that run is recorded, nothing more is owed until the next night.
    assert due_run(s, run.occurrence, back) is None


def test_catch_up_of_a_dense_schedule_is_counted_not_replayed():
    s = sched(cron="* * * * *")
    last = datetime(2026, 1, 1, tzinfo=UTC)
    now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)  # ~85,000 minutes later
    run = due_run(s, last, now)
    assert run is not None
    assert run.occurrence == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert run.missed == MAX_COUNTED_MISSED


def test_new_and_disabled_schedules_owe_nothing():
    now = datetime(2026, 6, 8, tzinfo=UTC)
    assert due_run(sched(), None, now) is None
    assert due_run(sched(enabled=False), datetime(2026, 1, 1, tzinfo=UTC), now) is None


def test_due_runs_sorted_by_occurrence():
    a = sched("db", cron="0 * * * *", tz="UTC", sources=("database",))
    b = sched("logs", cron="30 1 * * *", tz="UTC")
    last = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    runs = due_runs((a, b), {"db": last, "logs": last}, datetime(2026, 6, 1, 1, 45, tzinfo=UTC))
    assert [(r.schedule, r.occurrence.strftime("%H:%M"), r.missed) for r in runs] == [
        ("db", "01:00", 0),
        ("logs", "01:30", 0),
    ]


def test_due_run_across_spring_forward_downtime_is_one_run():
    # Down from before the jump until after it: the 02:30 job is owed once, not zero or twice.
    s = sched(cron="30 2 * * *")
    run = due_run(s, datetime(2026, 3, 28, 22, 0, tzinfo=UTC), datetime(2026, 3, 29, 4, 0, tzinfo=UTC))
    assert run is not None and run.missed == 0
    assert local(run.occurrence) == "2026-03-29 03:00 CEST"


# -- jitter ---------------------------------------------------------------------------------


def test_jitter_stays_within_bounds_and_spreads():
    s = sched(cron="*/5 * * * *", tz="UTC", jitter_seconds=120)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    offsets = [jitter(s, t).total_seconds() for t in islice(occurrences(s.cron, s.timezone, start), 500)]
    assert all(0 <= x <= 120 for x in offsets)
    assert len(set(offsets)) > 50  # spread out, not one fixed delay
    assert min(offsets) < 30 and max(offsets) > 90


def test_jitter_is_stable_and_shifts_next_runs():
    s = sched(cron="0 2 * * *", tz="UTC", jitter_seconds=600)
    after = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
    first = next_runs(s, after, 3)
    assert first == next_runs(s, after, 3)  # a restart (or `schedules`) sees the same times
    for instant in first:
        base = instant.replace(hour=2, minute=0, second=0)
        assert timedelta(0) <= instant - base <= timedelta(seconds=600)
    assert jitter(sched(jitter_seconds=0), after) == timedelta(0)


def test_jittered_run_is_not_due_before_its_delay():
    s = sched(cron="0 2 * * *", tz="UTC", jitter_seconds=3600)
    last = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
    occurrence = datetime(2026, 6, 2, 2, 0, tzinfo=UTC)
    run = due_run(s, last, occurrence + timedelta(seconds=1))
    assert run is not None
    assert run.not_before == occurrence + jitter(s, occurrence)
    assert occurrence <= run.not_before <= occurrence + timedelta(hours=1)


# -- properties over many zones and dates -------------------------------------------------

# Zones with 1-hour shifts, 30-minute shifts (Lord Howe), shifts at midnight (Havana,
# Santiago), backward-then-forward Ramadan shifts (Casablanca) and none (Tehran since 2022).
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Pacific/Chatham",
    "Africa/Casablanca",
    "Asia/Tehran",
]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 1)),
)
def test_fixed_hour_daily_job_runs_exactly_once_every_local_day(zone, hour, minute, start):
    tz = ZoneInfo(zone)
    after = start.replace(tzinfo=UTC)
    runs = list(islice(occurrences(f"{minute} {hour} * * *", zone, after), 40))
    assert runs == sorted(set(runs)) and runs[0] > after
    days = [r.astimezone(tz).date() for r in runs]
    # One run per local date, no date skipped, none doubled.
    assert all((b - a).days == 1 for a, b in zip(days, days[1:])), days
    for r in runs:
        local_time = r.astimezone(tz).replace(tzinfo=None)
        wanted = local_time.replace(hour=hour, minute=minute, second=0)
        # Either the wall time itself, or (in a spring-forward gap) the jump just after it.
        assert local_time == wanted or timedelta(0) < local_time - wanted <= timedelta(hours=2)


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    minute=st.sampled_from([0, 10, 30, 59]),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 1)),
)
def test_hourly_job_follows_the_real_clock(zone, minute, start):
    tz = ZoneInfo(zone)
    runs = list(islice(occurrences(f"{minute} * * * *", zone, start.replace(tzinfo=UTC)), 24 * 10))
    assert runs == sorted(set(runs))
    for r in runs:
        assert r.astimezone(tz).minute == minute  # never a shifted time
    for a, b in zip(runs, runs[1:]):
        assert timedelta(minutes=30) <= b - a <= timedelta(hours=2)
