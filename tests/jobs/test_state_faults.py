"""Faults of the engine's state folder. A full one ([engine] state_dir on a 1 MiB tmpfs)
makes `backup` exit 10 (storage full) with one line naming the folder, whatever moment
the space runs out (opening the job database, recording the start, or the final record),
and never hangs: the engine announces a job's end and sets its done signal even when the
record cannot be written. Real mounts need root and skip otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PASSPHRASE, ROOT
from core.config import load_config
from core.errors import StorageFull
from core.jobs.api import JobState
from core.jobs.engine import Engine
from core.jobs.kinds import JobContext, register

root_only = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a small tmpfs"
)


async def _quick(ctx: JobContext, params: dict) -> dict:
    return {"done": True}


register("test-quick", _quick)


@pytest.fixture
def small_state(jw):
    """A 1 MiB tmpfs named as [engine] state_dir in the config (not through the environment)."""
    mnt = jw.state.parent / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode:  # root in a container without CAP_SYS_ADMIN: say so, do not error
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    jw.config(f'[engine]\nstate_dir = "{mnt}"\n')
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _backup(jw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
    # A hang is the bug this guards against: the timeout fails the test instead of the suite.
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(jw.ws.config), "backup"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )


def _fill(folder, leave: int) -> None:
    filler = folder / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(folder)
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


def _assert_full_or_ok(r: subprocess.CompletedProcess, folder) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode == 0:
        return
    assert r.returncode == 10, (r.returncode, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), r.stderr
    assert f"the state folder {folder} is full" in errors[0], r.stderr


@root_only
def test_full_state_folder_fails_backup_with_exit_10_naming_it(jw, small_state):
    _fill(small_state, 0)
    r = _backup(jw)
    _assert_full_or_ok(r, small_state)
    assert r.returncode == 10


@root_only
def test_state_folder_running_full_at_any_moment_never_hangs(jw, small_state):
    assert _backup(jw).returncode == 0  # the job database exists, as on any used machine
    codes = set()
    for leave_kib in range(0, 144, 8):  # from "cannot open it" to "only the last record fails"
        _fill(small_state, leave_kib * 1024)
        r = _backup(jw)
        _assert_full_or_ok(r, small_state)
        codes.add(r.returncode)
    assert 10 in codes


async def test_engine_ends_a_job_whose_final_record_cannot_be_written(jw):
    jw.config()
    engine = Engine(load_config(jw.ws.config), lambda confirm: PASSPHRASE, directory=jw.state, workers=2)
    await engine.start()
    store = engine.store
    real_update = store.update

    async def update(job):
        if job.state.finished:
            raise StorageFull(f"the state folder {jw.state} is full: cannot write the job database")
        await real_update(job)

    store.update = update  # type: ignore[method-assign]
    events = await engine.subscribe()
    job = await engine.submit("test-quick", {})
    done = await asyncio.wait_for(engine.wait(job.id), timeout=30)
    assert done.state == JobState.COMPLETED
    assert done.result["exit_code"] == 10 and "is full" in done.result["record_error"]
    assert done.result["done"] is True  # what the job returned is kept
    finished = None
    async with asyncio.timeout(30):
        async for ev in events:
            if ev.type == "finished" and ev.job.id == job.id:
                finished = ev
                break
    assert finished is not None and "is full" in finished.message
    assert not engine.busy
    store.update = real_update  # type: ignore[method-assign]
    await asyncio.wait_for(engine.close(), timeout=30)
