"""The RTO forecast as a pure function: measurements from drill reports, sizes in, a range
out; no history means no number."""

from __future__ import annotations

import pytest

from hypothesis import given
from hypothesis import strategies as st

from core.drills.forecast import (
    ProbeSample,
    RtoForecast,
    forecast_error,
    forecast_rto,
    measurement_of,
    measurements,
    probe_samples,
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


SIZES = {"database": 1_000_000, "files": 2_000_000}
LATER = "2026-12-02T00:00:00+00:00"  # after the reports' start
EARLIER = "2026-11-30T00:00:00+00:00"


def test_a_probe_newer_than_the_drills_caps_a_phase_at_the_probed_speed() -> None:
    history = measurements([report("20261201T000000Z-00000001")])  # db 250 kB/s, files 1 MB/s
    plain = forecast_rto("platform-loss", "local", SIZES, history)
    slow = ProbeSample("local", LATER, 500_000.0, 0.001)  # the link now reads 500 kB/s
    f = forecast_rto("platform-loss", "local", SIZES, history, probes=[slow])
    # database stays at 250 kB/s (4 s); files drop from 1 MB/s (2 s) to 500 kB/s (4 s)
    assert f.expected_seconds == pytest.approx(plain.expected_seconds + 2.0)
    assert "files 500.0 kB/s (1 drill, capped at the probed 500.0 kB/s)" in f.basis and "probed " + LATER in f.basis
    # A probe older than the newest drill is already in that drill's figures: ignored.
    old = forecast_rto("platform-loss", "local", SIZES, history, probes=[ProbeSample("local", EARLIER, 1.0, 0.001)])
    assert old.expected_seconds == plain.expected_seconds and "probed" not in old.basis
    # A fast probe caps nothing.
    fast = forecast_rto("platform-loss", "local", SIZES, history, probes=[ProbeSample("local", LATER, 1e12, 0.0)])
    assert fast.expected_seconds == plain.expected_seconds


def test_a_location_without_drills_borrows_the_fastest_drills_capped_by_its_probe() -> None:
    history = measurements(
        [
            report("20261201T000000Z-00000001", location="local"),  # db 250 kB/s, files 1 MB/s
            report("20261201T000000Z-00000002", location="slow", db=(1_000_000, 40.0), files=(2_000_000, 20.0)),
        ]
    )
    none = forecast_rto("location-loss", "far", SIZES, history)
    assert not none.measured and "locations --probe" in none.missing
    probes = [ProbeSample("far", LATER, 400_000.0, 0.051), ProbeSample("local", LATER, 1e9, 0.001)]
    f = forecast_rto("location-loss", "far", SIZES, history, probes=probes)
    assert f.measured
    # database 250 kB/s (below the probe: 4 s), files capped at 400 kB/s (5 s), local's fixed
    # part 4 s, plus 40 round trips of the extra 50 ms: 2 s.
    assert f.expected_seconds == pytest.approx(4.0 + 5.0 + 4.0 + 2.0)
    assert "no drill from far yet" in f.basis and "at local" in f.basis and "400.0 kB/s" in f.basis
    # Borrowed: twice the range of a forecast of its own.
    assert f.low_seconds == pytest.approx(f.expected_seconds * 0.4)
    assert f.high_seconds == pytest.approx(f.expected_seconds * 1.6)
    assert "probe far " + LATER in f.drills


def test_stored_probes_of_another_shape_are_left_out() -> None:
    good = {"location": "far", "at": LATER, "latency_ms": 2.0, "bytes_per_second": 5e6}
    stored = [
        good,
        {**good, "bytes_per_second": None},  # read nothing
        {**good, "bytes_per_second": -1},
        {**good, "bytes_per_second": "fast"},
        {**good, "error": "timed out"},
        {**good, "at": "yesterday"},
        {"at": LATER},
        "not a probe",
    ]
    assert probe_samples(stored) == (ProbeSample("far", LATER, 5e6, 0.002),)


@given(
    rate=st.floats(min_value=1.0, max_value=1e10),
    latency=st.floats(min_value=0.0, max_value=5.0),
    newer=st.booleans(),
    where=st.sampled_from(["local", "far"]),
)
def test_a_probe_never_makes_a_forecast_faster_and_the_range_holds(
    rate: float, latency: float, newer: bool, where: str
) -> None:
    history = measurements([report("20261201T000000Z-00000001")])
    base = forecast_rto("platform-loss", "local", SIZES, history)
    f = forecast_rto(
        "platform-loss", where, SIZES, history, probes=[ProbeSample(where, LATER if newer else EARLIER, rate, latency)]
    )
    assert f.measured
    assert 0 < f.low_seconds <= f.expected_seconds <= f.high_seconds
    if where == "local":
        assert f.expected_seconds >= base.expected_seconds - 1e-9


def test_a_borrowed_fixed_part_adds_the_measured_difference_in_opening() -> None:
    history = measurements([report("20261201T000000Z-00000001", location="local")])
    here = ProbeSample("far", LATER, 1e12, 0.050, open_seconds=0.9)
    donor = ProbeSample("local", LATER, 1e12, 0.001, open_seconds=0.1)
    f = forecast_rto("location-loss", "far", SIZES, history, probes=[here, donor])
    assert f.expected_seconds == pytest.approx(4.0 + 2.0 + 4.0 + 0.8)  # db 4 s, files 2 s, fixed 4 s, opening +0.8 s
