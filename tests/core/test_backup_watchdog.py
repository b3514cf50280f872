"""The backup watchdog (core/backup/watchdog.py, issue 13): a file source in which no byte is
read and no file finishes for ``[engine] stall_timeout_seconds`` fails with exit 22, naming
the file, instead of hanging with the repository locked.

The fault is injected in the real CLI process without FUSE: a ``sitecustomize`` module on
its PYTHONPATH makes every read of a file whose name holds ``STALL`` block forever (large
files: the stream from ``os.fdopen``; small files: ``os.read``), as a hung network mount
would. The blocked thread can never be joined: the CLI must still print, release the lock
and exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, ROOT
from core.backup.watchdog import NO_WATCHDOG, Watchdog
from core.errors import BackupStalled

pytestmark = pytest.mark.timeout(180)

STALL_SITECUSTOMIZE = """
import os, threading

_fdopen, _read, _never = os.fdopen, os.read, threading.Event()


def _stalls(fd):
    try:
        return isinstance(fd, int) and "STALL" in os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False


class _Stuck:
    def __init__(self, f):
        self._f = f

    def readinto(self, b):
        _never.wait()  # a hung mount: the read never returns

    def fileno(self):
        return self._f.fileno()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fdopen(fd, *args, **kwargs):
    f = _fdopen(fd, *args, **kwargs)
    return _Stuck(f) if _stalls(fd) else f


def read(fd, n):
    if _stalls(fd):
        _never.wait()
    return _read(fd, n)


os.fdopen, os.read = fdopen, read
"""


# -- the Watchdog on its own --------------------------------------------------------------


async def test_guard_returns_the_result_while_there_is_progress() -> None:
    dog = Watchdog(0.3)

    async def work() -> str:
        for _ in range(10):  # 1 s in all, but never 0.3 s without progress
            await asyncio.sleep(0.1)
            dog.progress()
        return "done"

    assert await dog.guard(work()) == "done"
    assert not dog.fired


async def test_guard_names_the_files_being_read_when_nothing_moves() -> None:
    dog = Watchdog(0.2)
    started = asyncio.Event()
    cancelled = False

    class Never:
        def readinto(self, b: bytearray) -> int:
            return 0

        def close(self) -> None:
            pass

    async def work() -> None:
        nonlocal cancelled
        dog.reading(b"/srv/data/hung.bin", Never())  # type: ignore[arg-type]
        await asyncio.to_thread(dog.small_file, b"/srv/data/small.txt")
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled = True
            raise

    t0 = time.monotonic()
    with pytest.raises(BackupStalled) as info:
        await dog.guard(work())
    assert time.monotonic() - t0 < 2
    message = str(info.value)
    assert "/srv/data/hung.bin" in message and "/srv/data/small.txt" in message
    assert "0.2 s" in message and "stall_timeout_seconds" in message
    assert info.value.exit_code == 22
    assert cancelled and dog.fired


async def test_a_read_after_the_watchdog_fired_fails() -> None:
    dog = Watchdog(5)
    calls = []

    class Stream:
        def readinto(self, b: bytearray) -> int:
            calls.append(1)
            return 0

        def close(self) -> None:
            pass

    watched = dog.reading(b"/x", Stream())  # type: ignore[arg-type]
    assert watched.readinto(bytearray(1)) == 0
    dog.stopped = "the backup stalled"
    with pytest.raises(BackupStalled, match="/x: read stopped: the backup stalled"):
        watched.readinto(bytearray(1))
    assert calls == [1]


async def test_zero_disables_it_and_the_default_hooks_cost_nothing() -> None:
    dog = Watchdog(0)

    async def work() -> int:
        await asyncio.sleep(0.2)
        return 1

    assert await dog.guard(work()) == 1
    stream = object()
    assert NO_WATCHDOG.reading(b"/x", stream) is stream  # type: ignore[arg-type]


# -- the real CLI with a read that never returns -------------------------------------------


@pytest.mark.parametrize("name,size", [("STALL-big.bin", 3 * 1024 * 1024), ("STALL-small.txt", 1000)])
def test_a_stalled_read_fails_the_backup_naming_the_file_and_leaves_the_repository_valid(
    ws, tmp_path: Path, name: str, size: int
) -> None:
    (ws.src / "before.txt").write_text("read first\n")
    (ws.src / name).write_bytes(os.urandom(size))
    (ws.src / "zz-after.bin").write_bytes(os.urandom(1024 * 1024))
    ws.write_config("[engine]\nstall_timeout_seconds = 1\n")
    assert ws.cli("init").code == 0
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STALL_SITECUSTOMIZE)
    state = {"AXISOR_BACKUP_STATE_DIR": str(tmp_path / "state")}  # this test's own job database

    t0 = time.monotonic()
    b = ws.cli("backup", "--json", env={"PYTHONPATH": str(hook), **state}, timeout=60)
    took = time.monotonic() - t0
    assert b.code == 22, (b.code, b.out, b.err)
    assert str(ws.src / name) in b.err and "stalled" in b.err and "stall_timeout_seconds" in b.err
    assert "Traceback" not in b.err
    assert took < 15  # 1 s of stall, checks every 0.25 s, plus start-up and scrypt

    assert not list((ws.repo / "locks").iterdir())  # the lock went with the run
    v = ws.cli("verify", "--json")
    assert v.code == 0 and v.json()["ok"] is True, v.out + v.err
    job = ws.cli("jobs", "--json", env=state).json()["jobs"][0]
    assert job["state"] == "failed" and job["result"]["exit_code"] == 22 and name in job["error"]

    # Without the fault the next backup takes everything.
    again = ws.cli("backup", "--json", env=state)
    assert again.code == 0, again.err
    assert again.json()["snapshots"][0]["summary"]["total_files"] == 3
    assert json.dumps(again.json())  # a normal result


def test_ctrl_c_stops_a_backup_whose_read_never_returns_within_2_s(ws, tmp_path: Path) -> None:
    """The watchdog is off (600 s); the user presses Ctrl-C: the blocked read is abandoned
    after 1 s, the run is cancelled cleanly and the process does not wait for that thread."""
    (ws.src / "STALL-big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    assert ws.cli("init").code == 0
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STALL_SITECUSTOMIZE)
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    e.update(
        {
            "AXISOR_BACKUP_PASSPHRASE": PASSPHRASE,
            "PYTHONPATH": str(hook),
            "AXISOR_BACKUP_STATE_DIR": str(tmp_path / "state"),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(ws.config), "backup"],
        cwd=ROOT,
        env=e,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        locks = ws.repo / "locks"
        deadline = time.monotonic() + 60
        while not (locks.exists() and any(locks.iterdir())):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        time.sleep(1.0)  # the read is blocked by now
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"stopped {took:.2f} s after SIGINT with a read blocked forever")
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert took < 2.0 and "Traceback" not in err
    assert not list((ws.repo / "locks").iterdir())
    v = ws.cli("verify", "--json")
    assert v.code == 0 and v.json()["ok"] is True, v.out + v.err
