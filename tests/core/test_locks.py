"""Locks between real processes: a live exclusive holder blocks a backup (exit 5, naming
the holder), `unlock` removes only stale locks (dead PID here, or expired), and a
malformed lock file never takes every command down with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from core.errors import LockHeld
from core.repository.lock import Lock, LockInfo, list_locks
from core.storage.local import LocalBackend


import hostile_support as H  # noqa: E402  (tests/ is on pytest's pythonpath)

axenv = H.axenv

HOST = socket.gethostname()

# A separate process holds a real lock until its stdin closes (or it is killed).
HOLDER = """
import asyncio, sys
from core.repository.lock import Lock
from core.storage.local import LocalBackend

async def main():
    lock = await Lock(LocalBackend(sys.argv[1]), exclusive=sys.argv[2] == "exclusive",
                      operation=sys.argv[3]).acquire()
    print(lock.key, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await lock.release()

asyncio.run(main())
"""


class Holder:
    def __init__(self, repo: Path, kind: str, operation: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(repo), kind, operation],
            cwd=H.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        line = self.proc.stdout.readline().decode().strip()
        assert line.startswith("locks/"), self.proc.stderr.read().decode()
        self.key = line
        self.pid = self.proc.pid

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f and not f.closed:
                f.close()


@pytest.fixture
def repo_env(axenv):
    (axenv.src / "f.txt").write_text("data\n")
    axenv.init_fast()
    holders: list[Holder] = []

    def hold(kind: str, operation: str = "prune") -> Holder:
        h = Holder(axenv.repo, kind, operation)
        holders.append(h)
        return h

    yield axenv, hold
    for h in holders:
        h.close()


def write_lock(
    env,
    name: str,
    *,
    exclusive: bool,
    pid: int,
    host: str = HOST,
    created: str | None = None,
    expires: str | None = None,
    operation: str = "handmade",
) -> Path:
    now = datetime.now(timezone.utc)
    path = env.repo / "locks" / name
    path.write_text(
        json.dumps(
            {
                "exclusive": exclusive,
                "host": host,
                "pid": pid,
                "operation": operation,
                "created": created or now.isoformat(),
                "expires": expires or (now + timedelta(minutes=30)).isoformat(),
            }
        )
    )
    return path


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------- live holders


def test_live_exclusive_lock_blocks_backup_verify_and_restore_naming_the_holder(repo_env):
    env, hold = repo_env
    env.backup()
    snaps, packs = env.snapshot_files(), env.packs()
    h = hold("exclusive", "prune")

    # --lock-wait 0: fail at once instead of waiting for the holder (the default waits).
    for args in (("backup", "--lock-wait", "0"), ("verify",), ("restore", "latest", "--target", str(env.base / "out"))):
        r = env.cli(*args)
        assert r.code == 5, r
        assert "exclusive lock by prune" in r.stderr
        assert f"pid {h.pid} on {HOST}" in r.stderr
        assert "unlock" in r.stderr  # tells the operator the way out
        assert "Traceback" not in r.stderr
    assert env.snapshot_files() == snaps and env.packs() == packs
    assert [f"locks/{p.name}" for p in env.lock_files()] == [h.key], "blocked runs must not leave locks"
    assert not (env.base / "out").exists()

    # The holder is alive: `unlock` must not remove its lock.
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    assert r.json == []
    assert [f"locks/{p.name}" for p in env.lock_files()] == [h.key]

    # Killed, it cannot release: now the lock is stale and `unlock` removes exactly it.
    h.kill()
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    assert [x["key"] for x in r.json] == [h.key]
    assert f"pid {h.pid}" in r.json[0]["description"]
    assert env.lock_files() == []
    r = env.cli("backup")
    assert r.code == 0, r


def test_backup_waits_for_a_live_exclusive_holder_and_runs_when_it_lets_go(repo_env):
    env, hold = repo_env
    env.backup()
    h = hold("exclusive", "prune")
    p = env.popen("backup")
    try:
        first = p.stderr.readline().decode()  # the one note it prints while it waits
        assert "waiting" in first and "exclusive lock by prune" in first and f"pid {h.pid}" in first, first
        time.sleep(1)
        assert p.poll() is None  # still waiting, not failed
        h.release()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert b"waiting" not in err  # said once, not once per retry


def test_live_shared_lock_lets_a_backup_run_but_blocks_an_exclusive_lock(repo_env):
    env, hold = repo_env
    h = hold("shared", "backup")
    r = env.cli("backup")
    assert r.code == 0, r
    assert [f"locks/{p.name}" for p in env.lock_files()] == [h.key]

    async def exclusive():
        await Lock(LocalBackend(env.repo), exclusive=True, operation="prune").acquire()

    with pytest.raises(LockHeld) as info:
        asyncio.run(exclusive())
    assert f"pid {h.pid}" in str(info.value) and "shared lock by backup" in str(info.value)
    assert [f"locks/{p.name}" for p in env.lock_files()] == [h.key], "the refused lock was cleaned up"
    h.release()
    assert env.lock_files() == []


# --------------------------------------------------------------------------- stale and not


def test_expired_lock_of_a_live_process_is_stale(repo_env):
    env, _ = repo_env
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    write_lock(
        env,
        "expired",
        exclusive=True,
        pid=os.getpid(),  # this very process: alive
        created=past.isoformat(),
        expires=(past + timedelta(minutes=30)).isoformat(),
    )
    r = env.cli("backup")
    assert r.code == 0, r
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    assert [x["key"] for x in r.json] == ["locks/expired"]
    assert env.lock_files() == []


def test_lock_of_another_host_is_honoured_until_it_expires(repo_env):
    env, _ = repo_env
    write_lock(env, "remote", exclusive=True, pid=dead_pid(), host="some-other-host.example")
    r = env.cli("backup", "--lock-wait", "0")
    assert r.code == 5, r
    assert "some-other-host.example" in r.stderr
    r = env.cli("unlock", json_out=True)
    assert r.code == 0 and r.json == [], r  # its PID means nothing here: not provably stale
    assert (env.repo / "locks" / "remote").exists()
    r = env.cli("unlock", "--all", json_out=True)
    assert r.code == 0, r
    assert [x["key"] for x in r.json] == ["locks/remote"]
    assert env.cli("backup").code == 0


def test_unlock_keeps_live_and_removes_dead_and_expired(repo_env):
    env, hold = repo_env
    live = hold("shared", "backup")
    write_lock(env, "dead", exclusive=False, pid=dead_pid())
    past = datetime.now(timezone.utc) - timedelta(days=1)
    write_lock(env, "expired", exclusive=False, pid=os.getpid(), created=past.isoformat(), expires=past.isoformat())
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    assert sorted(x["key"] for x in r.json) == ["locks/dead", "locks/expired"]
    assert [f"locks/{p.name}" for p in env.lock_files()] == [live.key]


def test_is_stale_rules():
    now = datetime.now(timezone.utc)
    later = now + timedelta(minutes=30)

    def info(host: str, pid: int, expires: datetime) -> LockInfo:
        return LockInfo("locks/x", True, host, pid, "op", now - timedelta(minutes=1), expires)

    assert info(HOST, os.getpid(), later).is_stale(now) is False  # alive, in time
    assert info(HOST, os.getpid(), now - timedelta(seconds=1)).is_stale(now) is True  # expired
    assert info(HOST, dead_pid(), later).is_stale(now) is True  # dead here
    assert info("elsewhere.example", dead_pid(), later).is_stale(now) is False  # cannot tell
    assert info("elsewhere.example", 1, now - timedelta(seconds=1)).is_stale(now) is True


# --------------------------------------------------------------------------- malformed locks


def test_unreadable_lock_file_blocks_nothing(repo_env):
    env, _ = repo_env
    (env.repo / "locks" / "garbage").write_bytes(b"\x00not json at all")
    r = env.cli("backup")
    assert r.code == 0, r
    assert asyncio.run(list_locks(LocalBackend(env.repo))) == []


def test_lock_with_naive_timestamps_does_not_crash_commands(repo_env):
    """A lock written without a UTC offset (by hand, or by another tool) is read as UTC."""
    env, _ = repo_env
    write_lock(
        env, "naive", exclusive=False, pid=dead_pid(), created="2026-01-01T00:00:00", expires="2099-01-01T00:00:00"
    )
    r = env.cli("verify")
    assert r.code == 0, r
    assert "Traceback" not in r.stderr
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    assert [x["key"] for x in r.json] == ["locks/naive"]


@pytest.mark.parametrize("pid", [2**40, 0, -1, "own-group"], ids=["huge", "zero", "minus-one", "own-group"])
def test_lock_naming_an_impossible_pid_here_is_stale(repo_env, pid):
    """No process holds a lock as PID 0 or a negative number (kill(2) reads those as process
    groups: "all of mine", "everything", a group) or as a PID beyond any kernel's range."""
    env, _ = repo_env
    if pid == "own-group":
        pid = -os.getpgid(0)
    write_lock(env, "impossible", exclusive=True, pid=pid)
    r = env.cli("backup")
    assert r.code == 0, r
    assert "Traceback" not in r.stderr
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    assert [x["key"] for x in r.json] == ["locks/impossible"]


# --------------------------------------------------------------------------- forged and reused


def _forge(env, name: str, *, host: str = HOST, pid: int | None = None, **fields) -> None:
    now = datetime.now(timezone.utc)
    body = {
        "exclusive": True,
        "host": host,
        "pid": os.getpid() if pid is None else pid,
        "operation": "forged",
        "created": now.isoformat(),
        "expires": (now + timedelta(minutes=30)).isoformat(),
    }
    body.update(fields)
    (env.repo / "locks" / name).write_text(json.dumps(body))


def test_a_real_lock_records_its_holder_start_time_and_refresh():
    from core.jobs.store import process_start

    raw = Lock(LocalBackend("/nonexistent"), exclusive=False, operation="read")._body()
    body = json.loads(raw)
    assert body["pid"] == os.getpid() and body["start"] == process_start(os.getpid()) != ""
    assert body["refreshed"] and body["created"] <= body["refreshed"] < body["expires"]


@pytest.mark.parametrize("host", [HOST, "elsewhere.example"], ids=["this-host", "other-host"])
def test_locks_dated_ten_years_ahead_are_stale_even_for_a_live_pid(repo_env, host):
    env, _ = repo_env
    future = datetime.now(timezone.utc) + timedelta(days=3653)
    _forge(
        env,
        "future-created",
        host=host,
        created=future.isoformat(),
        expires=(future + timedelta(minutes=30)).isoformat(),
    )
    _forge(env, "future-expiry", host=host, expires=future.isoformat())
    _forge(env, "future-refresh", host=host, refreshed=future.isoformat(), expires=future.isoformat())
    r = env.cli("backup", "--lock-wait", "0")
    assert r.code == 0, r  # none of them blocks an exclusive-conflicting writer
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    why = {x["key"]: x["reason"] for x in r.json}
    assert set(why) == {"locks/future-created", "locks/future-expiry", "locks/future-refresh"}
    assert "future" in why["locks/future-created"] and "forged" in why["locks/future-created"]
    assert "30 minutes ahead" in why["locks/future-expiry"]
    assert "refresh time" in why["locks/future-refresh"]
    assert all(x["stale"] is True and x["host"] == host for x in r.json)


def test_expiry_is_bounded_by_the_refresh_time_whatever_the_file_says(repo_env):
    env, _ = repo_env
    now = datetime.now(timezone.utc)
    far = (now + timedelta(days=3653)).isoformat()
    _forge(env, "fresh", host="elsewhere.example", refreshed=now.isoformat(), expires=far)
    r = env.cli("backup", "--lock-wait", "0")
    assert r.code == 5, r  # written just now by another host: trusted, for now
    info = [i for i in asyncio.run(list_locks(LocalBackend(env.repo))) if i.key == "locks/fresh"][0]
    assert info.trusted_until() == now + timedelta(minutes=30)
    assert not info.is_stale(now + timedelta(minutes=29))
    assert "bounded" in info.stale_reason(now + timedelta(minutes=31))
    _forge(env, "fresh", host="elsewhere.example", refreshed=(now - timedelta(minutes=31)).isoformat(), expires=far)
    assert env.cli("backup", "--lock-wait", "0").code == 0


def test_dead_and_reused_pids_of_this_host_are_stale(repo_env):
    from core.jobs.store import process_start

    env, hold = repo_env
    live = hold("shared", "backup")
    me = process_start(os.getpid())
    _forge(env, "dead", pid=dead_pid(), start="12345")
    _forge(env, "reused", pid=os.getpid(), start=str(int(me) + 1))  # a live pid, but another process
    _forge(env, "mine", pid=os.getpid(), start=me)  # this very process: alive, and the same one
    r = env.cli("backup", "--lock-wait", "0")
    assert r.code == 5 and "forged" in r.stderr and f"pid {os.getpid()}" in r.stderr, r  # only "mine" holds
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    why = {x["key"]: x["reason"] for x in r.json}
    assert set(why) == {"locks/dead", "locks/reused"}
    assert why["locks/dead"].startswith("no process")
    assert "is now another process" in why["locks/reused"]
    assert sorted(p.name for p in env.lock_files()) == sorted(["mine", live.key.split("/")[1]])


def test_unlock_says_what_it_removed_and_why_and_all_says_it_removed_live_ones(repo_env):
    env, hold = repo_env
    live = hold("shared", "backup")
    pid = dead_pid()
    past = datetime.now(timezone.utc) - timedelta(hours=3)
    write_lock(env, "dead", exclusive=True, pid=pid, operation="prune", created=past.isoformat())
    r = env.cli("unlock")
    assert r.code == 0, r
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r
    assert (
        f"removed exclusive lock locks/dead by prune (host {HOST}, pid {pid}, age 3 h 0 min): "
        f"stale: no process {pid} on this host"
    ) == lines[0], r
    r = env.cli("unlock")
    assert r.code == 0 and r.stdout.strip().startswith("no stale locks"), r
    r = env.cli("unlock", "--all", json_out=True)
    assert r.code == 0, r
    assert [(x["key"], x["stale"], x["pid"], x["operation"], x["exclusive"]) for x in r.json] == [
        (live.key, False, live.pid, "backup", False)
    ]
    assert "--all" in r.json[0]["reason"] and r.json[0]["age_seconds"] >= 0 and r.json[0]["description"]
    assert "warning: --all removed 1 live lock" in r.stderr
    live2 = hold("shared", "verify")
    r = env.cli("unlock", "--all")
    assert r.code == 0, r
    assert f"removed shared lock {live2.key} by verify (host {HOST}, pid {live2.pid}, age " in r.stdout
    assert "LIVE, removed because of --all" in r.stdout
    assert "--all removed 1 live lock: if that process is still running" in r.stdout


class _SlowLocal(LocalBackend):
    """A real local backend whose writes and deletes take a while in their thread, so a
    cancellation lands while the thread still works (as a console's worker stopped on exit)."""

    async def put(self, key, data):
        def slow():
            time.sleep(0.05)
            self._put_sync(key, data)

        await asyncio.to_thread(slow)

    async def delete(self, key):
        await asyncio.sleep(0)
        await asyncio.to_thread(lambda: (time.sleep(0.05), os.unlink(self._path(key))))


@pytest.mark.parametrize("at", [0.0, 0.01, 0.03, 0.06, 0.08, 0.12])
def test_a_cancelled_locker_leaves_no_lock_behind(tmp_path, at):
    """The console's restore wizard read under a shared lock; closing the console cancelled
    that read as the lock was written or deleted, and the lock stayed: never stale (its
    process lives), it refused the next prune until the console's process exited (CI failed
    on it). Cancelled anywhere in acquire, the held section or release, no lock remains, and
    the cancellation still reaches the caller."""
    backend = _SlowLocal(tmp_path / "repo")
    (tmp_path / "repo" / "locks").mkdir(parents=True)

    async def read():
        async with Lock(backend, exclusive=False, operation="read"):
            await asyncio.sleep(0.04)

    async def main():
        task = asyncio.create_task(read())
        await asyncio.sleep(at)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await list_locks(backend) == []
        await Lock(backend, exclusive=True, operation="prune").acquire()  # not refused

    asyncio.run(main())


def test_a_lock_cancelled_while_refreshing_leaves_no_lock_behind(tmp_path, monkeypatch):
    """The refresher writes a new lock before deleting the old; cancelled between the two
    (release() while a refresh is under way), both are gone afterwards."""
    import core.repository.lock as lockmod

    monkeypatch.setattr(lockmod, "REFRESH_EVERY", timedelta(seconds=0.01))
    backend = _SlowLocal(tmp_path / "repo")
    (tmp_path / "repo" / "locks").mkdir(parents=True)

    async def main():
        for wait in (0.02, 0.04, 0.07, 0.1):
            lock = await Lock(backend, exclusive=False, operation="read").acquire()
            await asyncio.sleep(wait)
            await lock.release()
            assert await list_locks(backend) == [], wait

    asyncio.run(main())
