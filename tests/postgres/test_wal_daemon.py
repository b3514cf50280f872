"""wal-push through a running daemon (core/sources/postgres/wal_daemon.py, app/wal_quick.py):
the client returns once its own file is durable while the daemon stores the next ready files;
everything stays bit-exact, a conflict is still exit 17, and a daemon killed midway leaves
no marker for what it did not store, and the pushes go on without it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from wal_support import archive_ready as _archive
from conftest import PASSPHRASE, Workspace

from core.repository.repository import Repository
from core.sources.postgres.wal import list_names, load_manifest
from core.storage.local import LocalBackend

SEG = 16 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
NAMES = [f"0000000100000000000000{i:02X}" for i in range(1, 15)]


def _env(state: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    e.update(AXISOR_BACKUP_STATE_DIR=str(state), AXISOR_BACKUP_PASSPHRASE=PASSPHRASE)
    return e


def _daemon(ws: Workspace, state: Path, log: Path) -> subprocess.Popen:
    out = open(log, "w")
    p = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(ws.config), "daemon"],
        cwd=ROOT,
        env=_env(state),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while "daemon started" not in log.read_text():
        assert p.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return p


def _segments(wal: Path, names: list[str]) -> None:
    (wal / "archive_status").mkdir(parents=True, exist_ok=True)
    for n in names:
        (wal / n).write_bytes(os.urandom(1 << 20) + bytes(SEG - (1 << 20)))
        (wal / "archive_status" / f"{n}.ready").touch()


def _manifests(repo_path: Path) -> dict:
    async def go() -> dict:
        repo = await Repository.open(LocalBackend(repo_path), PASSPHRASE)
        return {n: await load_manifest(repo, n) for n in await list_names(repo)}

    return asyncio.run(go())


def _markers(state: Path) -> list[Path]:
    return [
        m
        for d in (state / "wal-ahead").iterdir()
        if d.name != "routes"
        for m in d.iterdir()
        if not m.name.startswith(".")
    ]


def test_pushes_through_the_daemon(ws: Workspace, tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"AXISOR_BACKUP_STATE_DIR": str(state)}
    assert ws.cli("init", env=env).code == 0
    wal = tmp_path / "pg_wal"
    _segments(wal, NAMES[:2])
    docs = _archive(ws, wal, env)  # a full push, which records the route, and a marker's answer
    assert docs[0]["pushed_ahead"] == NAMES[1:2] and docs[1]["from_marker"]
    _segments(wal, NAMES[2:])
    daemon = _daemon(ws, state, tmp_path / "daemon.log")
    try:
        docs = _archive(ws, wal, env)
        assert [d["name"] for d in docs] == NAMES[2:]
        assert docs[0]["through_daemon"] is True  # no marker: the daemon stored it, and the next ones
        assert all(d["through_daemon"] or d["from_marker"] for d in docs), docs
        manifests = _manifests(ws.repo)
        assert sorted(manifests) == NAMES
        # A file archived with other content: refused through the daemon as by a full push.
        changed = wal / NAMES[5]
        original = changed.read_bytes()
        changed.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
        r = ws.cli("wal-push", str(changed), env=env)
        assert r.code == 17 and "different content" in r.err
        changed.write_bytes(original)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    for n in NAMES[2:]:
        out = tmp_path / f"back-{n}"
        assert ws.cli("wal-fetch", n, str(out), env=env).code == 0
        assert out.read_bytes() == (wal / n).read_bytes()


def test_a_daemon_killed_midway_leaves_no_false_marker(ws: Workspace, tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"AXISOR_BACKUP_STATE_DIR": str(state)}
    assert ws.cli("init", env=env).code == 0
    wal = tmp_path / "pg_wal"
    _segments(wal, NAMES[:2])
    _archive(ws, wal, env)
    _segments(wal, NAMES[2:])
    daemon = _daemon(ws, state, tmp_path / "daemon.log")
    status = wal / "archive_status"
    r = ws.cli("wal-push", str(wal / NAMES[2]), "--json", env=env)  # hands it over; the daemon goes on
    assert r.code == 0 and r.json()["through_daemon"] is True, r.err
    (status / f"{NAMES[2]}.ready").rename(status / f"{NAMES[2]}.done")
    time.sleep(0.3)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=30)
    manifests = _manifests(ws.repo)
    assert NAMES[2] in manifests
    for m in _markers(state):
        assert m.name in manifests and json.loads(m.read_text())["sha256"] == manifests[m.name].sha256
    # Its socket is left behind, dead: the pushes go on without it.
    docs = _archive(ws, wal, env)
    assert [d["name"] for d in docs] == NAMES[3:]
    assert not any(d["through_daemon"] for d in docs)
    for n in (NAMES[3], NAMES[-1]):
        out = tmp_path / f"back-{n}"
        assert ws.cli("wal-fetch", n, str(out), env=env).code == 0
        assert out.read_bytes() == (wal / n).read_bytes()
