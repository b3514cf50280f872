"""The suspicious-shrink rule (core/health/shrink.py) and its config key."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import tomllib

import pytest

from core.config import ConfigError, parse_config
from core.health.shrink import FileCount, counts_files, shrink_of, suspicious_shrinks
from core.repository.snapshot import Snapshot, Summary

T = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)


def snap(
    i: int, files: int, source: str = "application/user_data", hours: int | None = None, tags: tuple[str, ...] = ()
) -> Snapshot:
    when = T + timedelta(hours=i if hours is None else hours)
    return Snapshot(
        time=when.isoformat(),
        source=source,
        paths=("/srv",),
        tree="0" * 64,
        tags=tags,
        summary=Summary(total_files=files),
        id=f"{i:02d}" + "a" * 62,
    )


def count(files: int, i: int = 0) -> FileCount:
    return FileCount(f"{i:064d}", "application/user_data", T + timedelta(hours=i), files)


@pytest.mark.parametrize(
    "before, after, threshold, flagged",
    [
        (10, 4, 0.5, True),  # 60 % gone
        (10, 5, 0.5, False),  # exactly half: not more than the share
        (10, 6, 0.5, False),  # 40 % gone
        (10, 0, 0.5, True),  # wiped
        (10, 12, 0.5, False),  # grew
        (10, 7, 0.25, True),  # 30 % gone, stricter threshold
        (10, 0, 1.0, False),  # 1 switches it off
        (0, 0, 0.5, False),  # nothing to lose
    ],
)
def test_the_rule(before, after, threshold, flagged):
    got = shrink_of(count(after, 1), count(before, 0), threshold)
    assert (got is not None) == flagged
    if got:
        assert (got.previous_files, got.files, got.threshold) == (before, after, threshold)
        assert got.to_dict()["lost_share"] == pytest.approx((before - after) / before)
        assert f"{after} files" in got.message() and f"had {before}" in got.message()


def test_no_previous_snapshot_is_no_shrink():
    assert shrink_of(count(0), None, 0.5) is None


def test_each_snapshot_is_compared_with_the_one_before_it_of_its_own_source():
    snaps = [
        snap(0, 100),
        snap(1, 30),
        snap(2, 30),
        snap(3, 100, "application/log_files"),
        snap(4, 1, "application/log_files"),
        snap(5, 20),
    ]
    found = suspicious_shrinks(reversed(snaps), 0.5)  # order of input does not matter
    assert set(found) == {snaps[1].id, snaps[4].id}
    assert found[snaps[1].id].previous == snaps[0].id
    assert (found[snaps[4].id].previous_files, found[snaps[4].id].files) == (100, 1)


def test_database_and_safety_snapshots_are_never_flagged():
    assert not counts_files("database")
    assert not counts_files("safety/application/user_data")
    assert not counts_files("application/user_data", ("safety",))
    snaps = [
        snap(0, 50, "safety/application/user_data"),
        snap(1, 1, "safety/application/user_data"),
        snap(2, 50),
        snap(3, 1, tags=("safety",)),
    ]
    assert suspicious_shrinks(snaps, 0.5) == {}


def load_config_text(text: str, base_dir) -> object:
    return parse_config(tomllib.loads(text), base_dir=base_dir)


def test_the_config_key(tmp_path):
    base = f'[application]\nuser_data = ["{tmp_path}"]\n[storage]\nlocal_path = "{tmp_path}/repo"\n'
    assert load_config_text(base, tmp_path).objectives.suspicious_shrink == 0.5
    cfg = load_config_text(base + "[objectives]\nsuspicious_shrink = 0.2\n", tmp_path)
    assert cfg.objectives.suspicious_shrink == 0.2
    for bad in ("0", "1.5", "true", '"half"'):
        with pytest.raises(ConfigError) as exc:
            load_config_text(base + f"[objectives]\nsuspicious_shrink = {bad}\n", tmp_path)
        assert "objectives.suspicious_shrink" in str(exc.value)
