"""core/restore/platform.py: the files snapshot that belongs with the database at T."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from core.repository.snapshot import Snapshot
from core.restore.platform import BY_DATABASE, BY_SNAPSHOT, plan_platform

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def _snap(sid: str, source: str, start_s: float, end_s: float, *, position: object = "ok") -> Snapshot:
    start, end = T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s)
    meta: dict = {}
    if position == "ok":
        meta["db_position"] = {
            "start": {"lsn": "0/1", "time": start.isoformat()},
            "end": {"lsn": "0/2", "time": end.isoformat()},
        }
    elif position is not None:
        meta["db_position"] = position
    return Snapshot(
        time=(end + timedelta(seconds=1)).isoformat(), source=source, paths=("/x",), tree="00", metadata=meta, id=sid
    )


def test_a_scan_covering_t_is_chosen_and_its_skew_is_its_farther_end():
    snaps = [_snap("a", "app", -100, -90), _snap("b", "app", -5, 20)]
    plan = plan_platform(snaps, T0, ["app"])
    (c,) = plan.files
    assert c.snapshot is not None and c.snapshot.id == "b" and c.covers and c.skew_seconds == 20
    assert c.span is not None and c.span.basis == BY_DATABASE


def test_nothing_begun_by_t_is_missing_and_safety_snapshots_are_never_chosen():
    snaps = [_snap("later", "app", 10, 20), _snap("s", "safety/app", -50, -40)]
    plan = plan_platform(snaps, T0, ["app", "conf"])
    assert plan.missing == ["app", "conf"] and plan.max_skew is None


def test_without_a_recorded_position_the_snapshot_time_places_it_and_says_so():
    plan = plan_platform([_snap("old", "app", -30, -20, position=None)], T0, ["app"])
    (c,) = plan.files
    assert c.span is not None and c.span.basis == BY_SNAPSHOT and c.skew_seconds == 19


junk = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.dictionaries(
        st.sampled_from(["start", "end", "x"]),
        st.one_of(
            st.none(),
            st.text(max_size=30),
            st.dictionaries(st.sampled_from(["time", "lsn", "error"]), st.text(max_size=30)),
        ),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    scans=st.lists(st.tuples(st.floats(-1000, 1000), st.floats(0, 300), st.booleans()), min_size=0, max_size=8),
    at=st.floats(-1200, 1200),
    garbage=junk,
)
def test_the_newest_scan_begun_by_t_is_chosen_whatever_the_metadata(scans, at, garbage):
    snaps = [
        _snap(f"s{i}", "app", s, s + d, position="ok" if good else garbage) for i, (s, d, good) in enumerate(scans)
    ]
    when = T0 + timedelta(seconds=at)
    (c,) = plan_platform(snaps, when, ["app"]).files
    began = [
        (c2.span.start, c2)
        for c2 in [plan_platform([s], when, ["app"]).files[0] for s in snaps]
        if c2.span and c2.span.start <= when
    ]
    if not began:
        assert c.snapshot is None and c.skew_seconds is None
        return
    assert c.snapshot is not None and c.span is not None and c.span.start == max(b[0] for b in began)
    assert c.skew_seconds is not None and c.skew_seconds >= 0
    assert c.to_dict()["snapshot"] == c.snapshot.id
