"""The daemon killed with SIGKILL mid-job (a real daemon subprocess): the client watching
gets one line and exit 21; the next daemon start marks the job interrupted, removes the
dead daemon's repository lock (and nobody else's), notifies, and reruns a by-hand backup
once or lets its schedule catch a scheduled one up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from conftest import PASSPHRASE, ROOT
from core.schedule.state import ScheduleStore


def _client(jw, *args: str) -> subprocess.Popen:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    e.update({**jw.env, "AXISOR_BACKUP_PASSPHRASE": PASSPHRASE})
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(jw.ws.config), *args],
        cwd=ROOT,
        env=e,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _locks_of(jw, pid: int) -> list:
    out = []
    for path in (jw.ws.repo / "locks").glob("*"):
        if path.name.startswith(".tmp-"):
            continue  # a lock still being written (renamed into place when whole)
        try:
            if json.loads(path.read_text())["pid"] == pid:
                out.append(path)
        except (OSError, ValueError):
            continue  # being replaced
    return out


def _kill_while_locked(jw, d) -> list:
    """SIGKILL the daemon as soon as one of its jobs holds a repository lock; that lock."""
    deadline = time.monotonic() + 60
    while not (held := _locks_of(jw, d.proc.pid)):
        assert time.monotonic() < deadline, d.log_path.read_text()
        time.sleep(0.01)
    d.signal(signal.SIGKILL)
    d.wait()
    return held


def _foreign_lock(jw):
    """A live-looking shared lock of another host: the recovery must leave it alone."""
    now = datetime.now(UTC)
    body = {
        "exclusive": False,
        "host": "elsewhere.example",
        "pid": 4242,
        "operation": "backup",
        "created": now.isoformat(),
        "refreshed": now.isoformat(),
        "expires": (now + timedelta(minutes=30)).isoformat(),
    }
    path = jw.ws.repo / "locks" / ("f" * 32)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "ConnectionResetError" not in stderr, stderr
    lines = [x for x in stderr.splitlines() if x.strip() and "runs in the daemon; Ctrl-C" not in x]
    assert len(lines) == 1, stderr
    return lines[0]


def _wait_hook(received: list, event: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in received:
            if r["body"]["event"] == event:
                return r["body"]
        time.sleep(0.05)
    raise AssertionError(f"no {event} notification: {received}")


def test_kill_9_under_a_backup_client_then_restart_reruns_it_once(jw, big, webhook):
    url, received = webhook
    jw.config(f'[notifications]\nwebhook_url = "{url}"\n')
    foreign = _foreign_lock(jw)
    d = jw.daemon()
    client = _client(jw, "backup", "--json")
    [held] = _kill_while_locked(jw, d)
    out, err = client.communicate(timeout=30)
    assert client.returncode == 21, err
    line = _one_line(err)
    job_id = d.wait_for("job submitted")["job"]
    assert line == (
        f"the daemon stopped while running job {job_id} (connection lost); the daemon re-queues it "
        f"once when it restarts — see `axisor-backup jobs {job_id}`"
    )
    assert held.exists()  # the dead daemon's lock stays until someone acts on it

    d2 = jw.daemon()
    rec = d2.wait_for("interrupted job recovered", job=job_id)
    assert rec["action"] == "requeue"
    shown = jw.cli("jobs", "--json", job_id).json()
    assert shown["state"] == "interrupted"
    recovery = shown["result"]["recovery"]
    rerun = recovery["rerun_job"]
    assert [lk["key"] for lk in recovery["locks_released"]] == [f"locks/{held.name}"]
    assert not held.exists() and foreign.exists()  # only the dead daemon's own lock
    assert (
        f"the daemon (pid {d.proc.pid} on {socket.gethostname()}) stopped while this job was running" in shown["error"]
        and f"re-queued once as job {rerun}" in shown["error"]
    )
    hook = _wait_hook(received, "job.interrupted")
    assert hook["job"]["id"] == job_id and f"re-queued once as job {rerun}" in hook["summary"]
    assert d2.wait_for("job finished", job=rerun, timeout=60)["state"] == "completed"
    again = jw.cli("jobs", "--json", rerun).json()
    assert again["params"]["resumed_from"] == job_id and again["origin"] == "cli"
    listing = jw.cli("jobs").out
    assert any(
        job_id in row and "interrupted" in row and f"daemon pid {d.proc.pid} died; re-queued once as job {rerun}" in row
        for row in listing.splitlines()
    ), listing
    v = jw.cli("verify", "--json")
    assert v.code == 0 and v.json()["ok"] is True, v.out + v.err


def test_kill_9_under_jobs_follow_then_restart_catches_the_schedule_up(jw, big, webhook):
    url, received = webhook
    jw.config(f'[schedule]\nenabled = true\ncron_expression = "0 3 * * *"\n[notifications]\nwebhook_url = "{url}"\n')

    async def owe_a_run():  # the daemon was down for three days: one catch-up run is owed
        store = await ScheduleStore.open(jw.state / "jobs.sqlite3")
        await store.set_last("backup", datetime.now(UTC) - timedelta(days=3))
        await store.close()

    asyncio.run(owe_a_run())
    d = jw.daemon()
    job_id = d.wait_for("scheduled job submitted", schedule="backup")["job"]
    follow = _client(jw, "jobs", "--follow", job_id)
    assert job_id in follow.stdout.readline()  # following it before the kill
    [held] = _kill_while_locked(jw, d)
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 21, err
    assert _one_line(err) == (
        f"the daemon stopped while following job {job_id} (connection lost); its schedule "
        f"backup catches the run up once when the daemon restarts — see "
        f"`axisor-backup jobs {job_id}`"
    )

    d2 = jw.daemon()
    assert d2.wait_for("interrupted job recovered", job=job_id)["action"] == "schedule"
    caught = d2.wait_for("scheduled job submitted", schedule="backup")
    assert caught["trigger"] == "catch-up" and caught["job"] != job_id
    assert d2.wait_for("job finished", job=caught["job"], timeout=60)["state"] == "completed"
    shown = jw.cli("jobs", "--json", job_id).json()
    assert shown["state"] == "interrupted" and "owed again by schedule backup" in shown["error"]
    assert not held.exists()
    assert "owed again by schedule backup" in _wait_hook(received, "job.interrupted")["summary"]
    history = jw.cli("schedules", "history", "backup", "--json").json()["runs"]
    assert [r["outcome"] for r in history[:3]] == ["submitted", "interrupted", "submitted"]
    assert history[1]["job_id"] == job_id


def test_a_daemon_that_cannot_make_its_socket_says_so_in_one_line(ws):
    ws.write_config()
    # The state folder would be inside a file (a mode would not stop root); short: a socket path.
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="axf") as blocker:
        r = ws.cli("daemon", env={"AXISOR_BACKUP_STATE_DIR": f"{blocker.name}/st"}, timeout=30)
    assert r.code == 21, r.err
    assert _one_line(r.err) == (
        f"error: cannot serve the daemon socket {blocker.name}/st/daemon.sock: Not a "
        "directory; set a writable [engine] state_dir or AXISOR_BACKUP_STATE_DIR"
    )
