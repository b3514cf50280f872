"""The restore job's choice of location for a point in time: a table as of a time (and a
PITR) names no snapshot, so it is served from the location asked for, or the primary;
with other locations configured it raised KeyError('snapshot') before."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from core.restore.job import choose_restore_location


class _Service:
    def __init__(self) -> None:
        self.config = SimpleNamespace(storage=SimpleNamespace(remote_storage=("offsite",)))
        self.used: list[str] = []

    async def use_location(self, name: str) -> None:
        self.used.append(name)

    async def choose_location(self, *_a, **_k):
        raise AssertionError("a point in time is not served by the snapshot choice")


def test_a_point_in_time_job_names_no_snapshot_and_is_served_where_asked() -> None:
    svc = _Service()
    ctx = SimpleNamespace(service=svc, log=lambda _line: None)
    table_job = {"to_time": "2026-12-04T14:32:00+00:00", "tables": ["sales.orders"], "target_db": ""}
    assert asyncio.run(choose_restore_location(ctx, table_job)) is None and svc.used == []
    assert asyncio.run(choose_restore_location(ctx, {**table_job, "from": "offsite"})) == "offsite"
    assert svc.used == ["offsite"]
