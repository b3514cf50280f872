"""The ``copy`` job kind, and the restore job's choice of location, in a real embedded engine."""

from __future__ import annotations

import shutil

from conftest import PASSPHRASE
from locations_support import tree_digest
from core.config import load_config
from core.jobs.api import JobState, connect_engine


async def test_copy_job_copies_and_a_failing_target_fails_the_job_with_every_outcome(sites, tmp_path, monkeypatch):
    sites.ok("init")
    snap = sites.ok("backup", "--json").json()["snapshots"][0]["id"]
    offsite = sites.add_local("offsite", tmp_path / "offsite")
    (tmp_path / "blocked").write_text("not a folder")
    sites.add_local("usb", tmp_path / "blocked" / "repo")
    monkeypatch.setenv("AXISOR_BACKUP_STATE_DIR", str(sites.state))
    engine = await connect_engine(load_config(sites.ws.config), lambda confirm: PASSPHRASE, prefer_daemon=False)
    try:
        job = await engine.wait((await engine.submit("copy", {"locations": ["offsite"]})).id)
        assert job.state is JobState.COMPLETED, job.error
        (copy,) = job.result["copies"]
        assert copy["target"] == "offsite" and copy["copied"] == [snap] and copy["created"] is True
        assert (offsite / "snapshots" / snap).is_file()

        job = await engine.wait((await engine.submit("copy", {}, origin="scheduler")).id)
        assert job.state is JobState.FAILED and "usb" in job.error
        outcomes = {c["target"]: c for c in job.result["copies"]}
        assert outcomes["offsite"]["error"] is None and outcomes["offsite"]["present"] == []
        assert outcomes["offsite"]["copied"] == [] and "blocked" in outcomes["usb"]["error"]
        assert job.result["exit_code"] == 1

        # A restore job falls back the same way when the primary is lost.
        shutil.rmtree(sites.ws.repo)
        target = tmp_path / "restored"
        job = await engine.wait((await engine.submit("restore", {"snapshots": ["latest"], "target": str(target)})).id)
        assert job.state is JobState.COMPLETED, job.error
        assert any("restoring from location offsite" in line for line in await engine.log(job.id))
        assert tree_digest(target / str(sites.ws.src).lstrip("/")) == tree_digest(sites.ws.src)
    finally:
        await engine.close()
