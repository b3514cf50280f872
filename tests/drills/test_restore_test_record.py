"""Restore-test records in the repository (core/drills/restore_test_record.py): sealed,
written once, bound to their id; what is read back is what was written, and anything else
is refused by name."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PASSPHRASE
from core.config import parse_config
from core.drills.report import new_drill_id
from core.drills.restore_test_record import (
    OUTCOMES,
    RestoreTestRecord,
    load_record,
    store_record,
    stored_records,
)
from core.errors import DamagedObject, SnapshotNotFound, UsageError
from core.service import BackupService


def record(**changes) -> RestoreTestRecord:
    base = RestoreTestRecord(
        id=new_drill_id(),
        snapshot="ab" * 32,
        source="application/user_data",
        location="local",
        kind="files",
        started="2026-12-04T11:00:00+00:00",
        finished="2026-12-04T11:00:03+00:00",
        outcome="passed",
        checked=6,
        sampled=6,
        total=24,
        seed=5,
        items=("/srv/a", "/srv/we[i]rd*.txt"),
        method="read back",
        job="8ae45f097bc3",
    )
    return replace(base, **changes)


@pytest.fixture
async def service(tmp_path: Path):
    svc = BackupService(
        parse_config({"storage": {"local_path": str(tmp_path / "repo")}}, base_dir=tmp_path), lambda _c: PASSPHRASE
    )
    await svc.init()
    yield svc
    await svc.close()


async def test_stored_sealed_once_and_bound_to_its_id(service, tmp_path: Path) -> None:
    repo = await service.repository(load_index=False)
    first, second = record(), record(outcome="failed", checked=5, failures=("/srv/a: content differs",))
    await store_record(repo, first)
    await store_record(repo, replace(second, stored="x", store_error="y", exit_code=16))
    raw = (tmp_path / "repo" / "restore-tests" / first.id).read_bytes()
    assert b"user_data" not in raw and b"/srv/a" not in raw  # sealed
    assert await load_record(repo, first.id) == first
    # What only says where it went, or why not, is not part of the stored object.
    assert await load_record(repo, second.id) == second
    with pytest.raises(UsageError, match="never rewritten"):
        await store_record(repo, replace(first, outcome="failed"))
    forged = new_drill_id()
    shutil.copy(tmp_path / "repo" / "restore-tests" / first.id, tmp_path / "repo" / "restore-tests" / forged)
    with pytest.raises(DamagedObject, match="does not authenticate"):
        await load_record(repo, forged)
    with pytest.raises(SnapshotNotFound):
        await load_record(repo, "not-an-id")
    (tmp_path / "repo" / "restore-tests" / "tmp-partial-write").write_bytes(b"junk")  # ignored by name
    records, damaged = await stored_records(service)
    assert [r.id for r in records] == sorted([first.id, second.id])
    assert [d.key for d in damaged] == [f"restore-tests/{forged}"]


def test_summary_says_the_share_and_why_not() -> None:
    assert record().summary() == "6 of 24 files (25%)"
    failed = record(outcome="failed", checked=5, failures=("/srv/a: content differs from the snapshot",))
    assert failed.summary() == "5 of 24 files (20.8%): /srv/a: content differs from the snapshot"
    cancelled = record(outcome="cancelled", checked=0, error="cancelled")
    assert cancelled.summary() == "0 of 24 files (0%): cancelled" and not cancelled.passed


TEXT = st.text(max_size=20)


@settings(max_examples=150, deadline=None)
@given(
    outcome=st.sampled_from(OUTCOMES),
    kind=st.sampled_from(("files", "tables")),
    numbers=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
    seed=st.integers(0, 2**63),
    items=st.lists(TEXT, max_size=5),
    failures=st.lists(TEXT, max_size=3),
    error=st.one_of(st.none(), TEXT),
)
def test_a_record_reads_back_as_written(outcome, kind, numbers, seed, items, failures, error) -> None:
    checked, sampled, total = numbers
    r = record(
        outcome=outcome,
        kind=kind,
        checked=checked,
        sampled=sampled,
        total=total,
        seed=seed,
        items=tuple(items),
        failures=tuple(failures),
        error=error,
    )
    assert RestoreTestRecord.from_dict(json.loads(r.encode())) == r


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"outcome": "fine"},
        {"unknown_key": 1},
        {"version": None},
        {"checked": None},
        {"total": -1},
        {"seed": "5"},
    ],
)
def test_a_record_of_another_shape_is_refused(change: dict) -> None:
    data = json.loads(record().encode())
    data.update(change)
    with pytest.raises((ValueError, TypeError)):
        RestoreTestRecord.from_dict(data)
