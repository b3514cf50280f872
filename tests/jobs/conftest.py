"""Fixtures for the job engine: a workspace with a repository and its own short state
directory (a Unix socket path must stay under 108 bytes, so not under pytest's tmp_path),
and a real daemon subprocess with its JSON-lines log captured."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from conftest import PASSPHRASE, ROOT, CliResult, Workspace


@dataclass
class JobsWorkspace:
    ws: Workspace
    state: Path
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"AXISOR_BACKUP_STATE_DIR": str(self.state)}

    @property
    def socket(self) -> Path:
        return self.state / "daemon.sock"

    def cli(self, *args: str, env: dict | None = None, timeout: float = 120) -> CliResult:
        return self.ws.cli(*args, env={**self.env, **(env or {})}, timeout=timeout)

    def config(self, extra: str = "") -> Path:
        return self.ws.write_config(extra)

    def daemon(self, *, env: dict | None = None) -> Daemon:
        d = Daemon(self, env or {})
        self.daemons.append(d)
        d.start()
        return d

    def hold_repository_lock(self) -> Path:
        """An exclusive repository lock held by this (live) test process: jobs must wait."""
        now = datetime.now(UTC)
        # What a live holder writes: a lock claiming more than 30 minutes ahead is judged forged.
        body = {
            "exclusive": True,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "operation": "test hold",
            "created": now.isoformat(),
            "expires": (now + timedelta(minutes=30)).isoformat(),
        }
        path = self.ws.repo / "locks" / os.urandom(16).hex()
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(body))
        return path


class Daemon:
    def __init__(self, jw: JobsWorkspace, env: dict) -> None:
        self.jw = jw
        self.env = env
        self.log_path = jw.state.parent / f"daemon-{len(jw.daemons)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        e.update({"AXISOR_BACKUP_PASSPHRASE": PASSPHRASE, **self.jw.env, **self.env})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "--config", str(self.jw.ws.config), "daemon"],
            cwd=ROOT,
            env=e,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while not any(r.get("message") == "daemon started" for r in self.records()):
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon did not start: {self.log_path.read_text()}")
            time.sleep(0.05)

    def records(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))  # every line must be JSON
        return out

    def wait_for(self, message: str, timeout: float = 30, **fields) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.records():
                if r.get("message") == message and all(r.get(k) == v for k, v in fields.items()):
                    return r
            time.sleep(0.05)
        raise AssertionError(f"no log record {message!r} {fields}: {self.log_path.read_text()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def _init(ws: Workspace) -> None:
    # In-process: a CLI subprocess per test costs a second of interpreter start-up.
    from core.config import load_config
    from core.service import BackupService

    svc = BackupService(load_config(ws.config), lambda confirm: PASSPHRASE, workers=2)
    try:
        await svc.init()
    finally:
        await svc.close()


@pytest.fixture
def jw(ws: Workspace):
    state = Path(tempfile.mkdtemp(prefix="axj", dir="/tmp")) / "st"
    w = JobsWorkspace(ws, state)
    (ws.src / "a.txt").write_text("alpha\n")
    (ws.src / "sub").mkdir()
    (ws.src / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    asyncio.run(_init(ws))
    yield w
    for d in w.daemons:
        d.stop()
    shutil.rmtree(state.parent, ignore_errors=True)


@pytest.fixture
def big(jw: JobsWorkspace) -> Path:
    """Incompressible data large enough that a backup is still running when a test acts.
    Progress events come at most every 0.25 s, and the tests act on the first one that
    counts bytes: 64 MiB was once backed up before it came (CI waited forever). 256 MiB
    takes about a second here."""
    path = jw.ws.src / "big.bin"
    with open(path, "wb") as fh:
        for _ in range(256):
            fh.write(os.urandom(1 << 20))
    return path


@pytest.fixture
def webhook():
    """A local HTTP receiver: (its URL, the POSTs it received)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
