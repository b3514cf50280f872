"""Planning a restore-test (core/drills/restore_test_plan.py): pure, seeded draws. Which
snapshot (weighted towards the never restore-tested), which items (a uniform sample of the
asked size, the same for the same seed), and how a size is read."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.drills.restore_test_plan import (
    NEVER_TESTED_WEIGHT,
    Item,
    Sampling,
    choose_snapshot,
    plan_restore_test,
    sample_items,
)
from core.errors import UsageError
from core.repository.snapshot import Snapshot

T = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def snap(i: int) -> Snapshot:
    return Snapshot(
        time=(T + timedelta(days=i)).isoformat(),
        source="application/user_data",
        paths=("/srv",),
        tree="0" * 64,
        id=f"{i:04d}" + "a" * 60,
    )


def items(n: int) -> list[Item]:
    return [Item(f"/srv/f{i:05d}", i) for i in range(n)]


def test_the_never_tested_are_drawn_far_more_often_and_none_is_starved() -> None:
    snaps = [snap(i) for i in range(4)]
    tested = {snaps[0].id: 1, snaps[1].id: 3, snaps[2].id: 1}  # snaps[3]: never
    drawn = Counter(choose_snapshot(snaps, tested, random.Random(seed)).snapshot.id for seed in range(3000))
    # Weights 1, 1/3, 1 and 8: the untested one about 8 / 10.33 of the draws.
    share_untested = drawn[snaps[3].id] / 3000
    assert 0.70 < share_untested < 0.85
    assert all(drawn[s.id] > 0 for s in snaps)  # every snapshot is reached
    assert drawn[snaps[1].id] < drawn[snaps[0].id]  # tested more often: drawn less
    assert NEVER_TESTED_WEIGHT > 1


def test_the_draw_says_why_and_does_not_depend_on_listing_order() -> None:
    snaps = [snap(i) for i in range(5)]
    a = choose_snapshot(snaps, {}, random.Random(7))
    b = choose_snapshot(list(reversed(snaps)), {}, random.Random(7))
    assert a == b
    assert a.tests == 0 and a.why == "never restore-tested (5 of 5 candidates are not)"
    all_tested = {s.id: 2 for s in snaps}
    c = choose_snapshot(snaps, all_tested, random.Random(7))
    assert c.why == "restore-tested 2 times before; every candidate has been"


def test_nothing_to_draw_from_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="take a backup first"):
        choose_snapshot([], {}, random.Random(1))


def test_a_seed_replays_the_whole_plan() -> None:
    snaps = [snap(i) for i in range(6)]

    def draw(seed: int):
        rng = random.Random(seed)
        choice = choose_snapshot(snaps, {}, rng)
        return plan_restore_test(choice, "files", items(500), Sampling(files=12), rng, seed)

    assert draw(42) == draw(42)
    assert draw(42).items != draw(43).items
    p = draw(42)
    assert len(p.items) == 12 and p.total == 500 and p.seed == 42
    assert p.share == pytest.approx(2.4)
    assert p.as_dict()["sampled"] == 12 and p.as_dict()["share"] == 2.4


def test_sampling_sizes() -> None:
    assert Sampling(files=20).count(7) == 7  # never more than there is
    assert Sampling(files=20).count(0) == 0
    assert Sampling(share=10).count(95) == 10  # rounded up
    assert Sampling(share=0.1).count(5) == 1  # at least one
    assert Sampling(share=100).count(33) == 33
    for bad in (0, -1, 101):
        with pytest.raises(UsageError, match="share"):
            Sampling(share=bad)
    with pytest.raises(UsageError, match="at least one"):
        Sampling(files=0)


def test_the_sample_is_uniform() -> None:
    hits: Counter[str] = Counter()
    for seed in range(2000):
        for item in sample_items(items(10), 3, random.Random(seed)):
            hits[item.name] += 1
    # Each of 10 items is in a sample of 3 with probability 0.3: 600 of 2000 expected.
    assert all(480 < n < 720 for n in hits.values()), hits


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), count=st.integers(0, 50), seed=st.integers(0, 2**63))
def test_a_sample_is_a_sorted_subset_of_the_asked_size(n: int, count: int, seed: int) -> None:
    pool = items(n)
    got = sample_items(pool, count, random.Random(seed))
    assert len(got) == min(n, count)
    assert len(set(got)) == len(got) and set(got) <= set(pool)
    assert list(got) == sorted(got, key=lambda i: i.name)
    assert got == sample_items(iter(pool), count, random.Random(seed))  # a stream gives the same


@settings(max_examples=200, deadline=None)
@given(total=st.integers(0, 10**6), share=st.floats(0.001, 100), files=st.integers(1, 10**4))
def test_sizes_stay_within_bounds(total: int, share: float, files: int) -> None:
    for sampling in (Sampling(files=files), Sampling(share=share)):
        n = sampling.count(total)
        assert 0 <= n <= total
        assert (n == 0) == (total == 0)


def _included_by_fnmatch(path: str, patterns: tuple[str, ...]) -> bool:
    import fnmatch

    if not patterns:
        return True
    parts = path.split("/")
    return any(
        fnmatch.fnmatchcase(prefix, p) or fnmatch.fnmatchcase(prefix[1:], p)
        for prefix in ("/".join(parts[:i]) for i in range(2, len(parts) + 1))
        for p in patterns
    )


NAMES = st.text(alphabet="ab*?[]!-. \\", min_size=1, max_size=4)


@settings(max_examples=400, deadline=None)
@given(
    path=st.lists(NAMES, min_size=1, max_size=4).map(lambda xs: "/" + "/".join(xs)),
    patterns=st.lists(st.one_of(NAMES, st.lists(NAMES, min_size=1, max_size=3).map("/".join)), max_size=4),
    escape=st.booleans(),
)
def test_the_include_fast_path_matches_exactly_as_fnmatch(path: str, patterns: list[str], escape: bool) -> None:
    """A restore-test restores its sample through include patterns (each path escaped); the
    set lookup for patterns without wildcards (core/restore/files.py) must match as fnmatch."""
    import glob

    from core.restore.select import included

    pats = tuple(glob.escape(p) if escape else p for p in patterns)
    assert included(path, pats) == _included_by_fnmatch(path, pats)
    assert included(path, (glob.escape(path),))  # an escaped path always matches itself
