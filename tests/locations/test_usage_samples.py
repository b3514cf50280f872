"""Usage samples after a write: measuring usage lists a whole location, so it is done only
when a sample is due (one per SAMPLE_EVERY), not after every backup."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import core.locations.ops as ops_module
from core.locations.monitor import SAMPLE_EVERY, MonitorState
from core.locations.ops import LocationOps
from core.storage.backend import StorageUsage


class _Sites:
    def backend(self, name: str) -> object:
        return object()


def test_sample_due_only_once_a_slot(tmp_path) -> None:
    state = MonitorState(tmp_path / "locations.json")
    now = datetime.now(timezone.utc)
    assert state.sample_due("local", now)  # none yet
    state.add_sample("local", StorageUsage(bytes_used=10, objects=1), now)
    assert not state.sample_due("local", now + SAMPLE_EVERY - timedelta(seconds=1))
    assert state.sample_due("local", now + SAMPLE_EVERY)
    assert state.sample_due("other", now)


def test_a_write_lists_the_location_only_when_a_sample_is_due(tmp_path, monkeypatch) -> None:
    listed: list[object] = []

    async def usage_of(backend) -> StorageUsage:
        listed.append(backend)
        return StorageUsage(bytes_used=123, objects=4)

    monkeypatch.setattr(ops_module, "usage_of", usage_of)
    state = MonitorState(tmp_path / "locations.json")
    ops = LocationOps(_Sites(), state)  # type: ignore[arg-type]
    asyncio.run(ops.after_write("local"))
    asyncio.run(ops.after_write("local"))
    assert len(listed) == 1
    [sample] = state.read()["locations"]["local"]["samples"]
    assert sample[1:] == [123, 4]
