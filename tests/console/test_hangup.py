"""The SSH session drops while the console runs a backup: the terminal hangs up (its pty
master closes), the console closes its UI, the embedded engine finishes the backup, the
snapshot is committed and the process exits, instead of polling a dead terminal forever.

A pty of our own rather than tmux: the console is our child (so its exit is seen by wait(),
not guessed from /proc), and the hang-up is exactly the kernel's (the session leader's
controlling terminal goes away). The backup is held mid-job deterministically: a prune's
exclusive lock makes it wait (and retry) until the test lets it go, after the hang-up."""

from __future__ import annotations

import fcntl
import asyncio
import json
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from console_support import PASSPHRASE, ROOT, build_platform
from core.repository.lock import Lock
from core.storage.local import LocalBackend

_CSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHMNOZ\\]")


class _Screen:
    """Everything the console wrote to the pty, escape sequences removed."""

    def __init__(self, master: int) -> None:
        self._master = master
        self._raw = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the other side is gone, or we closed the master
                return
            if not data:
                return
            with self._lock:
                self._raw += data

    def text(self) -> str:
        with self._lock:
            return _CSI.sub(b"", bytes(self._raw)).decode("utf-8", "replace")

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared; screen ends with {self.text()[-500:]!r}")
            time.sleep(0.1)


def _cli(platform, *args: str) -> dict:
    env = {**os.environ, "AXISOR_BACKUP_PASSPHRASE": PASSPHRASE}
    p = subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(platform.config_path), *args, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _make_controlling_tty() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_a_dropped_terminal_closes_the_console_after_its_backup_finishes(tmp_path: Path) -> None:
    platform = build_platform(tmp_path)
    before = len(_cli(platform, "snapshots")["snapshots"])
    (platform.users / "new.txt").write_text("written after the last backup\n")
    prune = None

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "AXISOR_BACKUP_PASSPHRASE": PASSPHRASE, "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(platform.config_path), "console", "--no-daemon"],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=_make_controlling_tty,
    )
    os.close(slave)
    screen = _Screen(master)
    try:
        screen.wait_for("app/user_data")
        # Held as a stopped prune's lock file would be (a Lock lives in one event loop).
        prune = asyncio.run(Lock(LocalBackend(platform.repo), exclusive=True, operation="prune").acquire()).key
        os.write(master, b"b")  # back up now: it starts, and waits for the prune's lock
        deadline = time.monotonic() + 60
        while not any(j["kind"] == "backup" and j["state"] == "running" for j in _cli(platform, "jobs")["jobs"]):
            assert time.monotonic() < deadline, "the backup never started"
            assert proc.poll() is None, screen.text()[-500:]
            time.sleep(0.1)
        os.close(master)  # the terminal goes away: the kernel hangs up the console's session
        master = -1
        hung_up = datetime.now(timezone.utc)
        time.sleep(1.0)
        assert proc.poll() is None  # the job is still running: the console waits for it
        asyncio.run(LocalBackend(platform.repo).delete(prune))
        prune = None
        code = proc.wait(timeout=120)
    finally:
        if prune is not None:
            asyncio.run(LocalBackend(platform.repo).delete(prune))
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0
    # The console's own backup (the fixture's backups are jobs too).
    [backup] = [j for j in _cli(platform, "jobs")["jobs"] if j["kind"] == "backup" and j["origin"] == "console"]
    assert backup["state"] == "completed", backup
    assert datetime.fromisoformat(backup["finished_at"]) > hung_up  # finished after the hang-up
    assert len(_cli(platform, "snapshots")["snapshots"]) > before  # and committed before the process left
