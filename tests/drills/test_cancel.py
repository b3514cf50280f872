"""A drill cancelled while its throwaway cluster runs removes it all the same, and its report
(stored in the repository) says it was cancelled. Also: the drill job kind in a real engine."""

from __future__ import annotations

import asyncio

import pytest

from conftest import PASSPHRASE
from core.config import load_config
from core.drills.report import Step, list_reports
from core.drills.run import DrillRequest, run_drill
from core.jobs.api import JobState, connect_engine
from core.service import BackupService


async def test_cancelled_drill_cleans_up_and_records_it(platform) -> None:
    svc = BackupService(load_config(platform.config()), lambda _c: PASSPHRASE)
    seen: list[str] = []
    task: asyncio.Task | None = None

    def listener(item) -> None:
        if isinstance(item, Step):
            seen.append(f"{item.name}:{item.status}")
            if item.name == "start throwaway cluster":
                assert list(platform.scratch.iterdir())  # the cluster is there now
                task.cancel()  # delivered at the drill's next await: inside the restore

    try:
        task = asyncio.ensure_future(run_drill(svc, DrillRequest("database-loss"), listener=listener))
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == ["open location:ok", "start throwaway cluster:ok", "restore database:failed", "cleanup:ok"]
        assert platform.left_behind() == []
        reports, _ = await list_reports(await svc.repository(load_index=False))
        last = reports[-1]
        assert last.error == "cancelled" and not last.passed
        assert last.steps[2].detail == "cancelled"
        assert any(c.startswith("cluster ") for c in last.cleanup)
    finally:
        await svc.close()


async def test_drill_runs_as_a_job_in_the_engine(platform, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AXISOR_BACKUP_STATE_DIR", str(tmp_path / "state"))
    config = load_config(platform.config())
    engine = await connect_engine(config, lambda _c: PASSPHRASE, prefer_daemon=False)
    try:
        job = await engine.submit("drill", {"scenario": "corrupted-table"}, origin="console")
        done = await engine.wait(job.id)
        assert done.state == JobState.COMPLETED, done.error
        assert done.result["passed"] and done.result["exit_code"] == 0
        assert done.result["markdown"].startswith(f"# Drill {done.result['id']}: corrupted-table — PASSED")
        log = await engine.log(job.id)
        assert "step start throwaway cluster: ok" in " ".join(log)
        assert any(line.startswith("check public.orders checksum: pass") for line in log)
        assert platform.left_behind() == []
    finally:
        await engine.close()
