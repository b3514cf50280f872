"""The type policy's edges, on catalog values (the runner tests use a real repository)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.repository.snapshot import Snapshot
from core.schedule.policy import choose_type

NOW = datetime(2027, 6, 15, 2, 0, tzinfo=UTC)
TREE = "0" * 64


def snap(source: str, kind: str, age: timedelta) -> Snapshot:
    return Snapshot(time=(NOW - age).isoformat(), source=source, paths=("/x",), tree=TREE, type=kind)


def test_full_is_due_at_exactly_full_every_days():
    catalog = [snap("db", "full", timedelta(days=7)), snap("db", "incremental", timedelta(hours=1))]
    decision = choose_type("auto", ["db"], catalog, now=NOW, full_every_days=7)
    assert decision.type == "full"
    assert decision.per_source == {"db": "last full 7.0 days ago (full_every_days = 7)"}
    younger = choose_type("auto", ["db"], catalog, now=NOW - timedelta(seconds=1), full_every_days=7)
    assert younger.type == "incremental"


def test_incrementals_do_not_reset_the_full_clock_and_one_stale_source_makes_the_run_full():
    catalog = [
        snap("a", "full", timedelta(days=2)),
        snap("b", "full", timedelta(days=9)),
        snap("b", "incremental", timedelta(days=1)),
        snap("b", "differential", timedelta(hours=2)),
    ]
    decision = choose_type("differential", ["a", "b"], catalog, now=NOW, full_every_days=7)
    assert decision.type == "full"
    assert decision.reason == "full due: b (last full 9.0 days ago (full_every_days = 7))"
    assert decision.per_source["a"] == "last full 2.0 days ago"
    only_a = choose_type("differential", ["a"], catalog, now=NOW, full_every_days=7)
    assert only_a.type == "differential"


def test_pinned_types_ignore_the_catalog_and_unknown_policies_are_refused():
    assert (
        choose_type("full", ["a"], [snap("a", "full", timedelta(hours=1))], now=NOW, full_every_days=7).type == "full"
    )
    assert choose_type("incremental", ["a"], [], now=NOW, full_every_days=7).type == "incremental"
    with pytest.raises(ValueError):
        choose_type("weekly", ["a"], [], now=NOW, full_every_days=7)
