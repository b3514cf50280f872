"""Drill reports in a real repository: sealed, bound to their id, written once; the history
with its RTO trend; Markdown that names every step and check."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import PASSPHRASE
from core.config import parse_config
from core.drills.report import (
    stored_reports,
    CheckResult,
    DrillReport,
    RpoResult,
    Step,
    history,
    load_report,
    new_drill_id,
    store_report,
)
from core.errors import DamagedObject, SnapshotNotFound, UsageError
from core.service import BackupService


def report(scenario: str = "database-loss", rto: float = 12.5, passed: bool = True) -> DrillReport:
    return DrillReport(
        id=new_drill_id(),
        scenario=scenario,
        location="local",
        started="2026-11-26T09:00:00+00:00",
        finished="2026-11-26T09:00:13+00:00",
        passed=passed,
        rto_seconds=rto,
        rto_objective_seconds=14400.0,
        steps=(Step("restore database", "ok", 3.25, "snapshot 1a2b3c4d"),),
        checks=(CheckResult("row counts exact", "rows", "pass" if passed else "fail", "2 | tables", 10, 10),),
        rpo=(RpoResult("database", "2026-11-26T08:00:00+00:00", 3600.0, 93600.0, "ok"),),
        restored=({"source": "database", "snapshot": "ab" * 32, "target": "axisor on /tmp/x:5432"},),
        cleanup=("folder /tmp/axd.x",),
    )


@pytest.fixture
async def service(tmp_path: Path):
    svc = BackupService(
        parse_config({"storage": {"local_path": str(tmp_path / "repo")}}, base_dir=tmp_path), lambda _c: PASSPHRASE
    )
    await svc.init()
    yield svc
    await svc.close()


async def test_stored_sealed_once_and_bound_to_its_id(service, tmp_path) -> None:
    repo = await service.repository(load_index=False)
    first, second = report(rto=20.0), report(rto=15.5)
    await store_report(repo, first)
    await store_report(repo, second)
    raw = (tmp_path / "repo" / "drills" / first.id).read_bytes()
    assert b"row counts exact" not in raw and b"database-loss" not in raw  # sealed
    assert await load_report(repo, first.id) == first
    with pytest.raises(UsageError, match="never rewritten"):
        await store_report(repo, replace(first, passed=False))
    # A report moved onto another id does not authenticate.
    forged = new_drill_id()
    shutil.copy(tmp_path / "repo" / "drills" / first.id, tmp_path / "repo" / "drills" / forged)
    with pytest.raises(DamagedObject, match="does not authenticate"):
        await load_report(repo, forged)
    with pytest.raises(SnapshotNotFound):
        await load_report(repo, "not-an-id")
    reports, damaged = await stored_reports(service)
    assert {r.id for r in reports} == {first.id, second.id} and [d.key for d in damaged] == [f"drills/{forged}"]


def test_history_trend_per_scenario() -> None:
    rows = history([report(rto=20.0), report("corrupted-table", rto=5.0), report(rto=14.0, passed=False)])
    assert [r["rto_change_seconds"] for r in rows] == [None, None, -6.0]
    assert rows[2]["failures"] == ["row counts exact: 2 | tables"] and rows[2]["worst_rpo_seconds"] == 3600.0


def test_markdown_lists_every_step_and_check() -> None:
    md = report(passed=False).markdown()
    assert md.splitlines()[0].endswith("database-loss — FAILED")
    assert "| restore database | ok | 3.25 | snapshot 1a2b3c4d |" in md
    assert "| row counts exact | rows | fail | 2 \\| tables |" in md  # a | in a detail cannot break the table
    assert "| database | 2026-11-26T08:00:00+00:00 | 3600 s | 93600 s | ok |" in md
    assert "- removed folder /tmp/axd.x" in md


def test_the_forecast_rides_in_extra_so_older_readers_still_read_the_report() -> None:
    """Readers before forecasts refuse unknown top-level keys (DrillReport(**data)); the
    forecast therefore lives in the free-form `extra` they ignore (docs/FORMAT.md)."""
    import json

    r = replace(report(), extra={"forecast": {"expected_seconds": 10.0, "scenario": "database-loss"}})
    data = json.loads(r.encode())
    assert "forecast" not in data and data["extra"]["forecast"]["expected_seconds"] == 10.0
    known = {f for f in DrillReport.__dataclass_fields__}
    assert set(data) - {"failures"} <= known
    assert DrillReport.from_dict(data).forecast == {"expected_seconds": 10.0, "scenario": "database-loss"}
