"""A restore job over a damaged blob: the job fails with exit 23 and its result carries
the partial files (path, missing ranges, damaged object); every other file is restored."""

from __future__ import annotations

from conftest import PASSPHRASE
from core.config import load_config
from core.jobs.api import JobState
from core.jobs.engine import Engine


async def _flip_a_blob_of(repo_dir, name: bytes) -> tuple[str, list[list[int]]]:
    from core.repository.repository import Repository
    from core.repository.tree import FILE
    from core.restore.walk import walk
    from core.storage.local import LocalBackend

    repo = await Repository.open(LocalBackend(repo_dir), PASSPHRASE)
    await repo.load_index()
    (sid,) = await repo.snapshot_ids()
    snap = await repo.load_snapshot(sid)
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        if node.type == FILE and parts[-1] == name:
            blob = node.content[0]
            loc = repo.index.lookup(blob)
            h = loc.pack_id.hex()
            path = repo_dir / "data" / h[:2] / h
            data = bytearray(path.read_bytes())
            data[loc.offset + loc.length // 2] ^= 0x20
            path.chmod(0o644)
            path.write_bytes(bytes(data))
            return f"data/{h[:2]}/{h}", [[0, loc.raw_length]]
    raise AssertionError("file not found")


async def test_a_restore_job_with_a_damaged_blob_fails_23_and_names_the_partial_file(jw):
    jw.config()
    engine = Engine(load_config(jw.ws.config), lambda confirm: PASSPHRASE, directory=jw.state, workers=2)
    await engine.start()
    try:
        backup = await engine.wait((await engine.submit("backup", {})).id)
        assert backup.state == JobState.COMPLETED
        key, ranges = await _flip_a_blob_of(jw.ws.repo, b"b.bin")
        target = jw.ws.root / "restored"
        job = await engine.wait((await engine.submit("restore", {"snapshots": ["latest"], "target": str(target)})).id)
        assert job.state == JobState.FAILED
        assert job.result["exit_code"] == 23 and job.result["partial_count"] == 1
        [pf] = job.result["partial"]
        dest = target / str(jw.ws.src / "sub" / "b.bin").lstrip("/")
        assert pf["path"] == str(dest) and pf["missing"] == ranges
        assert [d["object"] for d in pf["damaged"]] == [key]
        assert job.result["restored"][0]["partial"][0]["path"] == str(dest)
        assert "could not be restored in full" in job.error
        assert not dest.exists() and dest.with_name("b.bin.axisor-partial").exists()
        assert (target / str(jw.ws.src / "a.txt").lstrip("/")).read_bytes() == b"alpha\n"
        log = await engine.log(job.id)
        assert any(f"PARTIAL {dest}" in line and key in line for line in log), log
    finally:
        await engine.close()
