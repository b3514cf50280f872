"""A file that changes while it is read is stored with a warning; the prompt works on a tty."""

from __future__ import annotations

import os
import pty
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_file_changing_during_read_is_reported(ws, monkeypatch):
    from core.config import load_config
    from core.service import BackupService

    (ws.src / "busy.log").write_text("line\n" * 1000)
    (ws.src / "big-busy.bin").write_bytes(os.urandom(1_000_000))
    real_fstat = os.fstat

    def moving_fstat(fd):
        st = real_fstat(fd)
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return st
        if "busy" in name:  # pretend a writer touched the file while we read it
            fields = list(st)
            fields[8] += 1  # st_mtime
            return os.stat_result(fields, {"st_mtime_ns": st.st_mtime_ns + 1})
        return st

    svc = BackupService(load_config(ws.config), lambda confirm: "core test passphrase")
    try:
        await svc.init()
        monkeypatch.setattr(os, "fstat", moving_fstat)
        result = await svc.backup()
    finally:
        monkeypatch.undo()
        await svc.close()
    warnings = result.results[0].snapshot.warnings
    assert any("busy.log: changed while it was read" in w for w in warnings)
    assert any("big-busy.bin: changed while it was read" in w for w in warnings)
    assert result.partial


def test_passphrase_prompt_on_a_terminal(ws):
    """With no passphrase configured, a terminal user is asked, and the answer is not echoed."""
    (ws.src / "a").write_text("a")
    assert ws.cli("init").code == 0
    assert ws.cli("backup").code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "app.cli", "--config", str(ws.config), "snapshots"], env)
    out = b""
    deadline = time.monotonic() + 30
    while b"passphrase" not in out.lower() and time.monotonic() < deadline:
        out += os.read(fd, 1024)
    assert b"Repository passphrase" in out
    os.write(fd, b"correct horse battery staple\n")
    rest = b""
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        rest += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, rest
    assert b"correct horse" not in rest  # not echoed
    assert b"application/user_data" in rest
