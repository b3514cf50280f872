"""The RTO forecast as a pure function: measurements from drill reports, sizes in, a range
out; no history means no number."""

from __future__ import annotations

import pytest

from core.drills.forecast import (
    RtoForecast,
    forecast_error,
    forecast_rto,
    measurement_of,
    measurements,
    scenario_sizes,
)


def report(
    drill: str,
    *,
    scenario: str = "platform-loss",
    location: str = "local",
    rto: float = 10.0,
    db: tuple[int, float] = (1_000_000, 4.0),
    files: tuple[int, float] | None = (2_000_000, 2.0),
    passed: bool = True,
) -> dict:
    steps = [
        {"name": "open location", "status": "ok", "seconds": 0.5},
        {"name": "start throwaway cluster", "status": "ok", "seconds": 1.5},
        {"name": "restore database", "status": "ok", "seconds": db[1]},
    ]
    restored = [{"source": "database", "snapshot": "d" * 64, "target": "x", "bytes": db[0]}]
    if files is not None:
        steps.append({"name": "restore files", "status": "ok", "seconds": files[1]})
        restored.append({"source": "application/user_data", "snapshot": "f" * 64, "target": "y", "bytes": files[0]})
    steps.append({"name": "cleanup", "status": "ok", "seconds": 3.0})
    return {
        "id": drill,
        "scenario": scenario,
        "location": location,
        "started": "2026-12-01T00:00:00+00:00",
        "passed": passed,
        "rto_seconds": rto,
        "steps": steps,
        "restored": restored,
    }


def test_one_drill_forecasts_the_same_sizes_as_its_own_rto_with_a_30_percent_range() -> None:
    history = measurements([report("20261201T000000Z-00000001")])
    f = forecast_rto("platform-loss", "local", {"database": 1_000_000, "files": 2_000_000}, history, 3600)
    assert f.measured and f.expected_seconds == pytest.approx(10.0)
    assert f.low_seconds == pytest.approx(7.0) and f.high_seconds == pytest.approx(13.0)
    assert f.drills == ("20261201T000000Z-00000001",) and not f.over_objective
    assert "database 250.0 kB/s" in f.basis and "fixed part 4.0 s" in f.basis


def test_sizes_scale_the_restore_phases_not_the_fixed_part() -> None:
    history = measurements([report("20261201T000000Z-00000001")])
    f = forecast_rto("platform-loss", "local", {"database": 2_000_000, "files": 4_000_000}, history)
    assert f.expected_seconds == pytest.approx(4.0 + 8.0 + 4.0)  # fixed 4 s, db 8 s, files 4 s


def test_the_range_spans_the_measured_throughputs() -> None:
    history = measurements(
        [
            report("20261201T000000Z-00000001", db=(1_000_000, 2.0), rto=8.0),
            report("20261202T000000Z-00000002", db=(1_000_000, 4.0), rto=10.0),
            report("20261203T000000Z-00000003", db=(1_000_000, 8.0), rto=14.0),
        ]
    )
    f = forecast_rto("database-loss", "local", {"database": 1_000_000}, history)
    # db: 2 / 4 / 8 s; fixed part from the other scenario's drills: 4 s each
    assert (f.low_seconds, f.expected_seconds, f.high_seconds) == pytest.approx((6.0, 8.0, 12.0))
    assert "drills of other scenarios" in f.basis


def test_no_history_is_no_number() -> None:
    f = forecast_rto("platform-loss", "local", {"database": 10, "files": 10}, ())
    assert not f.measured and f.expected_seconds is None and f.low_seconds is None
    assert "no measurement yet" in f.missing
    # Another location's drills say nothing about this one.
    other = measurements([report("20261201T000000Z-00000001", location="offsite")])
    assert not forecast_rto("platform-loss", "local", {"database": 10, "files": 10}, other).measured
    # A phase never measured there: no number either.
    db_only = measurements([report("20261201T000000Z-00000001", files=None)])
    g = forecast_rto("platform-loss", "local", {"database": 10, "files": 10}, db_only)
    assert not g.measured and "files restore" in g.missing


def test_what_does_not_measure() -> None:
    assert measurement_of(report("20261201T000000Z-00000001", passed=False)) is None
    assert measurement_of({**report("20261201T000000Z-00000001"), "to_time": "2026-12-01T00:00:00+00:00"}) is None
    old = report("20261201T000000Z-00000001")
    for r in old["restored"]:
        del r["bytes"]  # a report from before restored sizes were recorded
    assert measurement_of(old) is None


def test_sizes_of_a_scenario_and_what_is_missing() -> None:
    assert scenario_sizes("platform-loss", 5, {"a": 1, "b": 2}, database=True) == ({"database": 5, "files": 3}, [])
    assert scenario_sizes("corrupted-table", 5, {"a": 1}, database=True) == ({"table": 5}, [])
    sizes, lacking = scenario_sizes("platform-loss", None, {"a": None}, database=True)
    assert lacking == ["a logical database snapshot", "a snapshot of a"]
    f = forecast_rto("platform-loss", "local", sizes, (), lacking=lacking)
    assert "nothing to restore yet" in f.missing
    assert scenario_sizes("platform-loss", None, {"a": 1}, database=False) == ({"files": 1}, [])


def test_round_trip_and_error() -> None:
    history = measurements([report("20261201T000000Z-00000001")])
    f = forecast_rto("platform-loss", "local", {"database": 1_000_000, "files": 2_000_000}, history, 60)
    assert RtoForecast.from_dict(f.to_dict()) == f
    assert forecast_error({"rto_seconds": 12.0, "extra": {"forecast": f.to_dict()}}) == pytest.approx(0.2)
    assert forecast_error({"rto_seconds": 12.0}) is None
    assert forecast_rto(
        "platform-loss", "local", {"database": 1_000_000, "files": 2_000_000}, history, 5
    ).over_objective
