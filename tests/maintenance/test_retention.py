"""Retention rules, one by one, on snapshot catalogs built in memory (the policy is pure)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from core.config import parse_config
from core.maintenance.prune import plan_wal
from core.maintenance.retention import Policy, apply, policies_from_config
from core.repository.snapshot import Snapshot

UTC = timezone.utc
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def snap(
    t: datetime,
    source: str = "application/user_data",
    host: str = "app01",
    warnings: tuple = (),
    metadata: dict | None = None,
) -> Snapshot:
    sid = hashlib.sha256(f"{t.isoformat()}|{source}|{host}".encode()).hexdigest()
    return Snapshot(
        time=t.isoformat(),
        source=source,
        paths=("/srv",),
        tree="0" * 64,
        hostname=host,
        warnings=warnings,
        metadata=metadata or {},
        id=sid,
    )


def kept(plan) -> list[datetime]:
    return sorted(d.snapshot.datetime for d in plan.decisions if d.keep)


def reasons(plan) -> dict[datetime, tuple[str, ...]]:
    return {d.snapshot.datetime: d.reasons for d in plan.decisions}


def only(policy: Policy):
    return lambda source: policy


def test_keep_daily_keeps_the_newest_of_each_day_across_a_month_boundary():
    # Every 6 hours from Feb 20 to Mar 10 12:00: 4 a day, crossing the end of February.
    start = datetime(2026, 2, 20, 0, 0, tzinfo=UTC)
    snaps = [snap(start + timedelta(hours=6 * i)) for i in range(4 * 18 + 3)]
    plan = apply(snaps, only(Policy(keep_daily=14, min_keep=1)), NOW)
    days = kept(plan)
    assert len(days) == 14
    # The newest snapshot of each of the last 14 days, Feb 25 .. Mar 10: 18:00 except today (12:00).
    assert days[0] == datetime(2026, 2, 25, 18, 0, tzinfo=UTC)
    assert datetime(2026, 2, 28, 18, 0, tzinfo=UTC) in days and datetime(2026, 3, 1, 18, 0, tzinfo=UTC) in days
    assert days[-1] == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert all(t.hour == 18 for t in days[:-1])
    r = reasons(plan)
    assert "keep_daily 2026-02-28" in r[datetime(2026, 2, 28, 18, 0, tzinfo=UTC)]
    forgotten = r[datetime(2026, 2, 28, 12, 0, tzinfo=UTC)]
    assert len(forgotten) == 1 and forgotten[0].startswith("no rule keeps it")


def test_calendar_rules_add_up_and_empty_buckets_do_not_count():
    # One snapshot a week for two years, plus a gap: monthly counts months that have one.
    snaps = [snap(NOW - timedelta(weeks=w)) for w in range(104) if not 20 <= w < 30]
    plan = apply(snaps, only(Policy(keep_weekly=4, keep_monthly=6, keep_yearly=3, keep_last=2, min_keep=1)), NOW)
    r = reasons(plan)
    months = {(t.year, t.month) for t, why in r.items() if any(x.startswith("keep_monthly") for x in why)}
    assert len(months) == 6
    years = sorted(t.year for t, why in r.items() if any(x.startswith("keep_yearly") for x in why))
    assert years == [2024, 2025, 2026]
    weeks = [t for t, why in r.items() if any(x.startswith("keep_weekly") for x in why)]
    assert len(weeks) == 4 and min(weeks) == NOW - timedelta(weeks=3)
    assert "keep_last 2" in r[NOW] and "keep_last 2" in r[NOW - timedelta(weeks=1)]
    assert "keep_last 2" not in r[NOW - timedelta(weeks=2)]


def test_keep_hourly_cuts_buckets_in_the_configured_timezone():
    # 23:30 and 00:30 UTC are different days in UTC but the same day in Berlin (UTC+1).
    a = snap(datetime(2026, 3, 9, 23, 30, tzinfo=UTC))
    b = snap(datetime(2026, 3, 10, 0, 30, tzinfo=UTC))
    assert len(kept(apply([a, b], only(Policy(keep_daily=2, min_keep=1)), NOW))) == 2
    plan = apply([a, b], only(Policy(keep_daily=2, min_keep=1)), NOW, tz=ZoneInfo("Europe/Berlin"))
    assert kept(plan) == [b.datetime]
    hourly = apply([a, b], only(Policy(keep_hourly=5, min_keep=1)), NOW, tz=ZoneInfo("Europe/Berlin"))
    assert len(kept(hourly)) == 2


def test_keep_within_and_retention_days():
    snaps = [snap(NOW - timedelta(days=d)) for d in (0, 1, 6.9, 7.1, 20, 29.9, 31, 89, 91)]
    plan = apply(snaps, only(Policy(keep_within=timedelta(days=7), min_keep=1)), NOW)
    assert kept(plan) == sorted(NOW - timedelta(days=d) for d in (0, 1, 6.9))
    assert "keep_within 1w" in reasons(plan)[NOW - timedelta(days=1)]

    conf = [snap(s.datetime, source="configuration/api_keys") for s in snaps]
    cfg = parse_config(
        {
            "storage": {"local_path": "/r"},
            "application": {"retention_days": 30},
            "configuration": {"retention_days": 90},
            "retention": {"min_keep": 1},
        },
        base_dir=Path("/"),
    )
    plan = apply(snaps + conf, policies_from_config(cfg), NOW)
    app = [d.snapshot.datetime for d in plan.decisions if d.keep and d.snapshot.source.startswith("application")]
    cf = [d.snapshot.datetime for d in plan.decisions if d.keep and d.snapshot.source.startswith("configuration")]
    assert app == sorted(NOW - timedelta(days=d) for d in (0, 1, 6.9, 7.1, 20, 29.9))
    assert cf == sorted(NOW - timedelta(days=d) for d in (0, 1, 6.9, 7.1, 20, 29.9, 31, 89))
    assert any("retention_days 90 (configuration)" in d.reasons for d in plan.decisions)
    old = next(d for d in reversed(plan.decisions) if d.snapshot.source.startswith("application") and not d.keep)
    assert "retention_days 30" in old.reasons[0] and "age 31.0 days" in old.reasons[0]


def test_min_keep_guards_the_newest_good_snapshots():
    # Everything is far older than retention_days: only the guard keeps anything.
    old = [snap(NOW - timedelta(days=100 + i)) for i in range(6)]
    plan = apply(old, only(Policy(retention_days=30, min_keep=3)), NOW)
    assert kept(plan) == sorted(NOW - timedelta(days=100 + i) for i in range(3))
    assert all("min_keep 3" in d.reasons for d in plan.decisions if d.keep)
    # Snapshots with warnings (files skipped) are not "good": the guard reaches past them.
    warned = [snap(NOW - timedelta(days=100 + i), warnings=("skipped x",) if i < 2 else ()) for i in range(6)]
    plan = apply(warned, only(Policy(retention_days=30, min_keep=3)), NOW)
    assert kept(plan) == sorted(NOW - timedelta(days=100 + i) for i in (2, 3, 4))
    # Fewer good ones than min_keep: topped up with the newest others, so never below N.
    bad = [snap(NOW - timedelta(days=100 + i), warnings=("w",) if i != 4 else ()) for i in range(6)]
    plan = apply(bad, only(Policy(retention_days=30, min_keep=3)), NOW)
    assert kept(plan) == sorted(NOW - timedelta(days=100 + i) for i in (0, 1, 4))
    assert any("(has warnings)" in r for d in plan.decisions if d.keep for r in d.reasons)


def test_groups_by_host_and_source():
    a = [snap(NOW - timedelta(days=100 + i), host="app01") for i in range(5)]
    b = [snap(NOW - timedelta(days=100 + i), host="app02") for i in range(5)]
    c = [snap(NOW - timedelta(days=100 + i), source="application/log_files") for i in range(5)]
    plan = apply(a + b + c, only(Policy(retention_days=30, min_keep=2)), NOW)
    assert len(plan.keep) == 6
    assert {(s.hostname, s.source) for s in plan.keep} == {
        ("app01", "application/user_data"),
        ("app02", "application/user_data"),
        ("app01", "application/log_files"),
    }


def test_an_empty_policy_keeps_everything():
    snaps = [snap(NOW - timedelta(days=400 + i), source="legacy/thing") for i in range(5)]
    plan = apply(snaps, only(Policy(min_keep=1)), NOW)
    assert len(plan.keep) == 5
    assert all("no retention rule" in d.reasons[0] for d in plan.decisions)


def _base(t: datetime, start_wal: str) -> Snapshot:
    return snap(
        t,
        source="database",
        host="db01",
        metadata={
            "mode": "physical",
            "start_wal_file": start_wal,
            "wal_segment_size": 16 * 1024 * 1024,
            "stop_time": (t - timedelta(minutes=1)).isoformat(),
        },
    )


def test_base_backup_needed_for_the_pitr_window_is_kept():
    bases = [_base(NOW - timedelta(days=d), f"0000000100000000000000{40 - d:02X}") for d in (1, 3, 5, 8, 12, 20)]
    logical = [
        snap(NOW - timedelta(hours=h), source="database", host="db01", metadata={"mode": "logical"}) for h in (2, 4, 6)
    ]
    policy = Policy(retention_days=2, min_keep=3, pitr_window=timedelta(days=7))
    plan = apply(bases + logical, only(policy), NOW)
    r = reasons(plan)
    # Recovery to the window start (7 days ago) begins from the 8-day-old base backup.
    assert any(x.startswith("pitr_window 1w") for x in r[NOW - timedelta(days=8)])
    assert [d.keep for d in plan.decisions if d.snapshot.datetime == NOW - timedelta(days=12)] == [False]
    assert [d.keep for d in plan.decisions if d.snapshot.datetime == NOW - timedelta(days=5)] == [False]
    # Without the guard the 8-day-old one would go (retention_days 2, min_keep fills with logical).
    plan2 = apply(bases + logical, only(Policy(retention_days=2, min_keep=3)), NOW)
    assert NOW - timedelta(days=8) not in kept(plan2)
    # No base backup older than the window yet: the oldest one is the earliest recovery point.
    young = [b for b in bases if b.datetime > NOW - timedelta(days=7)]
    plan3 = apply(young + logical, only(policy), NOW)
    assert any("oldest base backup" in x for x in reasons(plan3)[NOW - timedelta(days=5)])

    # The WAL boundary follows the oldest kept base backup: segments before 0x20 go.
    wal = plan_wal(
        [
            "000000010000000000000010",
            "00000001000000000000001F",
            "000000010000000000000020",
            "000000010000000000000021",
            "00000002.history",
            "00000001000000000000001E.00000028.backup",
            "00000001000000000000001F.partial",
            "000000020000000000000025",
        ],
        plan.keep,
    )
    assert wal.keep_from == "000000010000000000000020"
    assert set(wal.remove) == {
        "000000010000000000000010",
        "00000001000000000000001F",
        "00000001000000000000001E.00000028.backup",
        "00000001000000000000001F.partial",
    }
    assert wal.kept == 4
    # Only logical snapshots kept: WAL is left alone.
    assert plan_wal(["000000010000000000000010"], logical).remove == ()


def test_config_overrides_per_category():
    cfg = parse_config(
        {
            "storage": {"local_path": "/r"},
            "database": {"retention_days": 10, "pitr_window_days": 3},
            "retention": {
                "keep_daily": 7,
                "keep_within": "2w",
                "min_keep": 4,
                "database": {"keep_hourly": 48, "keep_within": "0h", "min_keep": 2},
            },
        },
        base_dir=Path("/"),
    )
    f = policies_from_config(cfg)
    db = f("database")
    assert (db.keep_hourly, db.keep_daily, db.keep_within, db.min_keep, db.retention_days) == (48, 7, None, 2, 10)
    assert db.pitr_window == timedelta(days=3)
    app = f("application/user_data")
    assert (app.keep_hourly, app.keep_within, app.min_keep, app.retention_days, app.pitr_window) == (
        0,
        timedelta(weeks=2),
        4,
        30,
        None,
    )
