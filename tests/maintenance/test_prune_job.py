"""The ``prune`` job kind in a real (embedded) engine: a dry run changes nothing, a prune
forgets and frees, and a backup submitted alongside waits for the prune's exclusive
location lock instead of failing, and keeps its snapshot."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from core.jobs.api import JobState
from core.jobs.engine import Engine

from maintenance.prune_support import PASSPHRASE, age_snapshots, make_world, restored, tree_bytes


def test_prune_job_dry_run_then_real_with_a_backup_waiting(tmp_path):
    w = make_world(tmp_path / "w")
    w.write_config(retention="min_keep = 1")
    w.init(pack_size=128 * 1024)
    asyncio.run(_scenario(w, tmp_path))


async def _scenario(w, tmp_path) -> None:
    (w.src / "old").write_bytes(os.urandom(300_000))
    first = (await w.call(lambda svc: svc.backup())).results[0].snapshot.id
    (w.src / "old").unlink()
    (w.src / "new").write_bytes(os.urandom(50_000))
    await w.call(lambda svc: svc.backup())
    await w.call(lambda svc: age_snapshots(svc, {first: 30}))
    state = Path(tempfile.mkdtemp(prefix="axp.", dir="/tmp"))
    engine = Engine(w.config, lambda confirm: PASSPHRASE, directory=state, workers=2)
    await engine.start()
    try:
        listing = w.listing()
        dry = await engine.wait((await engine.submit("prune", {"dry_run": True})).id)
        assert dry.state == JobState.COMPLETED, dry.error
        [loc] = dry.result["locations"]
        assert loc["location"] == "local" and loc["forgotten"] == 1 and loc["dry_run"] is True
        assert w.listing() == listing

        prune_job = await engine.submit("prune", {}, origin="scheduler")
        backup_job = await engine.submit("backup", {})
        pruned, backed = await asyncio.gather(engine.wait(prune_job.id), engine.wait(backup_job.id))
        assert pruned.state == JobState.COMPLETED, pruned.error
        assert backed.state == JobState.COMPLETED, backed.error
        [loc] = pruned.result["locations"]
        assert loc["forgotten"] == 1 and loc["packs"]["deleted"] + loc["packs"]["repacked"] >= 1
        assert pruned.result["exit_code"] == 0
        log = await engine.log(prune_job.id)
        assert any("forgot 1 snapshots" in line for line in log)
        [snap] = backed.result["snapshots"]
        assert snap["id"] in w.snapshot_ids()
        assert (await w.call(lambda svc: restored(svc, snap["id"], tmp_path / "r"))) == tree_bytes(w.src)
        report = await w.call(lambda svc: svc.verify(full=True))
        assert report.ok, report.damage
    finally:
        await engine.close()
        shutil.rmtree(state, ignore_errors=True)
