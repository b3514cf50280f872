"""The daemon as a real subprocess: the socket, its protocol, signals and crash recovery,
and the CLI with and without it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

from conftest import ROOT
from core.jobs.api import JobState
from core.jobs.client import DaemonClient


def ask(path, *lines: bytes, timeout: float = 10) -> list[dict]:
    """Send raw request lines on one connection; the replies, one per line."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(path))
    try:
        s.sendall(b"".join(lines))
        s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon hung up on an oversized line; its reply is already here
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    s.close()
    return [json.loads(x) for x in data.splitlines()]


def test_backup_uses_the_daemon_when_it_runs_and_an_embedded_engine_otherwise(jw):
    r = jw.cli("backup", "--json")
    assert r.code == 0, r.err
    first = r.json()["job"]
    assert "daemon" not in r.err
    listing = jw.cli("jobs", "--json").json()
    assert listing["mode"] == "embedded" and [j["id"] for j in listing["jobs"]] == [first]

    d = jw.daemon()
    assert stat.S_IMODE(jw.socket.stat().st_mode) == 0o600
    r = jw.cli("backup", "--json")
    assert r.code == 0, r.err
    second = r.json()["job"]
    assert f"job {second} runs in the daemon" in r.err
    d.wait_for("job finished", job=second, state="completed")
    listing = jw.cli("jobs", "--json").json()
    assert listing["mode"] == "daemon"
    assert [j["id"] for j in listing["jobs"]] == [second, first]  # one history, newest first
    shown = jw.cli("jobs", second)
    assert shown.code == 0 and "state     completed" in shown.out and "snapshot" in shown.out
    snaps = jw.cli("snapshots", "--json").json()["snapshots"]
    assert len(snaps) == 2
    # A source failure through the daemon keeps its exit code.
    assert jw.cli("backup", "--source", "nope").code == 2


def test_malformed_requests_get_error_replies_and_the_daemon_lives_on(jw):
    jw.daemon()
    replies = ask(
        jw.socket,
        b"this is not json\n",
        b"[1, 2]\n",
        b'{"op": "explode"}\n',
        b'{"id": 7, "op": "get"}\n',
        b'{"op": "list", "limit": "ten"}\n',
        b'{"op": "list", "states": ["sleeping"]}\n',
        b'{"op": "submit", "kind": "format-disk", "params": {}}\n',
        b'{"op": "submit", "kind": "backup", "params": [1]}\n',
        b'{"op": "get", "job": "abcdef123456"}\n',
        b"[" * 100_000 + b"\n",
        b'{"id": "p", "op": "ping"}\n',
    )
    assert [r["ok"] for r in replies] == [False] * 10 + [True]
    types = [r["error"]["type"] for r in replies[:10]]
    assert types == ["BadRequest"] * 6 + ["UsageError", "BadRequest", "JobNotFound", "BadRequest"]
    assert replies[3]["id"] == 7 and "needs 'job'" in replies[3]["error"]["message"]
    assert replies[8]["error"]["exit_code"] == 20
    assert replies[10]["id"] == "p" and replies[10]["result"]["mode"] == "daemon"
    # A line over the limit ends that connection, not the daemon.
    huge = ask(jw.socket, b'{"op": "ping", "pad": "' + b"x" * (17 * 1024 * 1024) + b'"}\n', timeout=30)
    assert huge[0]["ok"] is False and "longer than" in huge[0]["error"]["message"]
    assert ask(jw.socket, b'{"op": "ping"}\n')[0]["ok"] is True


def test_the_socket_refuses_other_users(jw):
    d = jw.daemon()
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c"]
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(jw.socket)!r})\n"
        "except PermissionError:\n"
        "    print('EACCES'); sys.exit(0)\n"
        "try:\n"
        '    s.sendall(b\'{"op": "list"}\\n\')\n'
        "except BrokenPipeError:\n"
        "    pass  # refused already; the refusal is waiting to be read\n"
        "print(s.makefile().readline())\n"
    )
    os.chmod(jw.state.parent, 0o755)
    os.chmod(jw.state, 0o755)  # let nobody reach the socket: its 0600 mode must stop them
    r = subprocess.run([*nobody, probe], capture_output=True, text=True, timeout=30, cwd="/")
    assert r.stdout.strip() == "EACCES", r.stderr
    # Even with the socket opened up, the daemon checks the peer's uid and refuses.
    os.chmod(jw.socket, 0o666)
    r = subprocess.run([*nobody, probe], capture_output=True, text=True, timeout=30, cwd="/")
    assert r.stdout.startswith("{"), (r.stdout, r.stderr)
    reply = json.loads(r.stdout)
    assert reply["ok"] is False and "refused" in reply["error"]["message"], r.stderr
    assert "jobs" not in reply
    d.wait_for("connection refused: another user")
    assert ask(jw.socket, b'{"op": "list"}\n')[0]["ok"] is True  # its owner still gets in


def test_sigterm_lets_running_jobs_finish_within_the_grace_period(jw):
    lock = jw.hold_repository_lock()
    d = jw.daemon()

    async def submit():
        client = await DaemonClient.connect(jw.socket)
        job = await client.submit("backup", {})
        await client.close()
        return job.id

    job_id = asyncio.run(submit())
    d.wait_for("job started", job=job_id)
    d.signal(signal.SIGTERM)
    d.wait_for("daemon stopping")
    refused = ask(jw.socket, b'{"op": "submit", "kind": "backup", "params": {}}\n')[0]
    assert refused["ok"] is False and "shutting down" in refused["error"]["message"]
    lock.unlink()  # the job can go on now, inside the grace period
    assert d.wait() == 0
    assert d.wait_for("job finished", job=job_id)["state"] == "completed"
    assert not jw.socket.exists()
    assert jw.cli("jobs", "--json", job_id).json()["state"] == "completed"


def test_sigterm_stops_jobs_cleanly_when_the_grace_period_runs_out(jw):
    jw.config("[engine]\nshutdown_grace_seconds = 1\n")
    lock = jw.hold_repository_lock()
    d = jw.daemon()
    r = ask(jw.socket, b'{"op": "submit", "kind": "backup", "params": {}}\n')[0]
    job_id = r["result"]["job"]["id"]
    d.wait_for("job started", job=job_id)
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    finished = d.wait_for("job finished", job=job_id)
    assert finished["state"] == "cancelled" and "daemon stopped" in finished["error"]
    lock.unlink()
    assert jw.cli("verify", "--json").json()["ok"] is True


def test_sighup_reloads_the_config_and_rejects_an_invalid_one(jw):
    d = jw.daemon()
    good = jw.ws.config.read_text()
    jw.ws.config.write_text(good + "[schedule]\nmax_concurrent = 99\n")
    d.signal(signal.SIGHUP)
    rejected = d.wait_for("config reload rejected; the previous config stays in force")
    assert any("schedule.max_concurrent" in p for p in rejected["problems"])
    assert ask(jw.socket, b'{"op": "ping"}\n')[0]["ok"] is True
    jw.ws.config.write_text(good + "[schedule]\nmax_concurrent = 3\n")
    d.signal(signal.SIGHUP)
    assert d.wait_for("config reloaded")["max_concurrent"] == 3
    assert d.proc.poll() is None


def test_jobs_follow_and_job_cancel_against_the_daemon(jw):
    lock = jw.hold_repository_lock()
    d = jw.daemon()
    r = ask(jw.socket, b'{"op": "submit", "kind": "backup", "params": {}, "origin": "api"}\n')[0]
    job_id = r["result"]["job"]["id"]
    d.wait_for("job started", job=job_id)
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    follow = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(jw.ws.config), "jobs", "--follow", "--json", job_id],
        cwd=ROOT,
        env={**e, **jw.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = json.loads(follow.stdout.readline())
    assert first["job"]["id"] == job_id and first["job"]["state"] == "running"
    c = jw.cli("job", "cancel", job_id, "--json")
    assert c.code == 0 and c.json()["state"] == "cancelled", c.err
    out, _ = follow.communicate(timeout=30)
    last = json.loads(out.splitlines()[-1])
    assert last["type"] == "finished" and last["job"]["state"] == "cancelled"
    assert follow.returncode == 130
    lock.unlink()
    assert jw.cli("jobs", "--json", "--state", "cancelled").json()["jobs"][0]["id"] == job_id


def test_embedded_backup_finishes_after_the_terminal_hangs_up(jw):
    lock = jw.hold_repository_lock()  # keeps the job running (waiting) until the test lets go
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    e.update({**jw.env, "AXISOR_BACKUP_PASSPHRASE": "correct horse battery staple"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(jw.ws.config), "backup"],
        cwd=ROOT,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    import sqlite3

    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and proc.poll() is None
        try:
            db = sqlite3.connect(jw.state / "jobs.sqlite3")
            row = db.execute("SELECT state, progress FROM jobs").fetchone()
            db.close()
        except sqlite3.Error:
            row = None
        if row and row[0] == "running" and row[1] and "repository lock" in json.loads(row[1])["phase"]:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGHUP)
    proc.stdout.close()  # the terminal is gone: nobody reads any more
    proc.stderr.close()
    time.sleep(0.5)
    assert proc.poll() is None  # the hang-up did not end it
    lock.unlink()
    assert proc.wait(timeout=120) == 0
    [job] = jw.cli("jobs", "--json").json()["jobs"]
    assert job["state"] == "completed"
    assert job["result"]["snapshots"][0]["summary"]["total_files"] == 2
    assert JobState(job["state"]).finished


def test_jobs_follow_without_a_daemon_reads_the_job_database(jw):
    assert jw.cli("backup", env={"AXISOR_BACKUP_PASSPHRASE": "not it"}).code == 4
    failed = jw.cli("jobs", "--json").json()["jobs"][0]
    r = jw.cli("jobs", "--follow", "--json", failed["id"])
    assert r.code == 4  # the job's own exit code
    [event] = [json.loads(line) for line in r.out.splitlines()]
    assert event["type"] == "finished" and event["job"]["state"] == "failed"
    assert jw.cli("jobs", "0123456789ab").code == 20
    assert jw.cli("job", "cancel", failed["id"], "--json").json()["state"] == "failed"  # already over: no-op


def test_daemon_refuses_to_start_without_a_passphrase_or_beside_another_daemon(jw):
    r = jw.ws.cli("daemon", passphrase=None, env=jw.env, timeout=30)
    assert r.code == 2 and "no passphrase" in r.err
    d = jw.daemon()
    r = jw.cli("daemon", timeout=30)
    assert r.code == 21 and f"another daemon (pid {d.proc.pid}) already serves {jw.socket}" in r.err
    assert ask(jw.socket, b'{"op": "ping"}\n')[0]["result"]["pid"] == d.proc.pid  # the first one is untouched
