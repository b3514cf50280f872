"""Crash safety: a backup killed with SIGKILL at any moment leaves a repository that
verifies, whose next backup adopts the packs already written instead of sending them
again, and whose leftover lock (a dead PID on this host) blocks nobody.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import time

import pytest


import hostile_support as H  # noqa: E402  (tests/ is on pytest's pythonpath)

MB = 1_000_000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """~210 MB of random, half-compressible and very compressible files (~11 packs)."""
    base = tmp_path_factory.mktemp("crash-data")
    src = base / "src"
    (src / "random").mkdir(parents=True)
    (src / "text").mkdir()
    for i in range(7):
        (src / "random" / f"r{i}.bin").write_bytes(os.urandom(20 * MB))
    for i in range(4):  # base64 of random bytes: compresses to about 3/4
        (src / "text" / f"b{i}.txt").write_bytes(base64.encodebytes(os.urandom(8 * MB)))
    for i in range(2):  # repetitive: compresses to almost nothing, still several chunks
        (src / "text" / f"rep{i}.log").write_bytes(
            b"".join(os.urandom(16).hex().encode() * 2048 + b"\n" for _ in range(200))
        )
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert total > 200 * MB
    yield src, total
    shutil.rmtree(base, ignore_errors=True)  # a few hundred MB: do not keep it around


async def _pack_blobs(env) -> dict[bytes, list[bytes]]:
    """blob id -> every pack whose header lists it (read from the packs themselves)."""
    from core.repository.format import pack_id_from_key

    repo = await env.open_repo()
    where: dict[bytes, list[bytes]] = {}
    for p in env.packs():
        pid = pack_id_from_key(f"data/{p.parent.name}/{p.name}")
        for e in await repo.read_pack_header(pid, p.stat().st_size):
            where.setdefault(e.id, []).append(pid)
    return where


async def _exclusive_lock_ok(env) -> None:
    from core.repository.lock import Lock
    from core.storage.local import LocalBackend

    lock = await Lock(LocalBackend(env.repo), exclusive=True, operation="test-prune").acquire()
    await lock.release()


def _kill_at(env, moment: tuple[str, float]) -> int:
    """Start a backup and SIGKILL it at ``moment``: ("seconds", t) after the start, or
    ("new-packs", n) once n packs more than before are on storage. Return its PID."""
    before = len(env.packs())
    proc = env.popen("backup", json_out=True)
    kind, value = moment
    start = time.monotonic()
    try:
        while True:
            assert proc.poll() is None, (
                f"backup finished before the kill point {moment}: make the data set bigger\n"
                f"{proc.stderr.read().decode()}"
            )
            if kind == "seconds" and time.monotonic() - start >= value:
                break
            if kind == "new-packs" and len(env.packs()) - before >= value:
                break
            assert time.monotonic() - start < 60, "backup made no progress"
            time.sleep(0.003)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def test_backups_killed_again_and_again_leave_a_sound_repository_and_nothing_is_sent_twice(dataset, tmp_path):
    src, total = dataset
    env = H.make_env(tmp_path, src=src)
    env.init()
    dead: list[int] = []

    # Moments: during start-up, at the first pack, a few packs later, and in a run that
    # first adopted what the earlier ones left (timed by packs appearing, not by the clock,
    # so a fast machine cannot finish the backup before the kill).
    for moment in [("seconds", 0.3), ("new-packs", 1), ("new-packs", 3), ("new-packs", 2)]:
        pid = _kill_at(env, moment)
        assert env.snapshot_files() == [], f"killed at {moment}, before its commit point: no snapshot"
        locks = [json.loads(p.read_bytes()) for p in env.lock_files()]
        if moment[0] == "new-packs":  # packs are only written under the lock
            assert [lk["pid"] for lk in locks].count(pid) == 1
        if any(lk["pid"] == pid for lk in locks):
            dead.append(pid)

        # What the killed run left verifies; its whole packs are at worst unreferenced.
        r = env.cli("verify", "--full", json_out=True)
        assert r.code == 0, f"after a kill at {moment}: {r!r}"
        on_disk = {f"data/{p.parent.name}/{p.name}" for p in env.packs()}
        assert set(r.json["unreferenced_packs"]) <= on_disk
        assert r.json["packs_checked"] == len(on_disk) - len(r.json["unreferenced_packs"])

        # Its lock names a dead PID on this host: stale, it blocks not even an exclusive lock.
        assert {(lk["pid"], lk["host"]) for lk in locks} == {(p, socket.gethostname()) for p in dead}
        asyncio.run(_exclusive_lock_ok(env))

    survivors = env.packs()
    survivor_bytes = env.pack_bytes()
    assert survivors, "the killed runs wrote whole packs"

    # The next backup completes and does not send again what is already stored.
    r = env.cli("backup", json_out=True)
    assert r.code == 0, r
    snap = r.json["snapshots"][0]
    assert snap["summary"]["total_bytes"] == total
    added = snap["summary"]["data_added_packed"]
    growth = env.pack_bytes() - survivor_bytes
    assert added <= growth, (added, growth)
    assert growth < total - survivor_bytes, "the repository grew by the whole data set again"
    for p in survivors:
        assert p.exists(), f"{p} was written by a killed run and must stay (it is adopted)"
    where = asyncio.run(_pack_blobs(env))
    twice = {b.hex()[:16]: len(ps) for b, ps in where.items() if len(ps) > 1}
    assert twice == {}, f"blobs stored in more than one pack: {twice}"

    # Everything is indexed now, and the whole repository reads back clean.
    r = env.cli("verify", "--full", json_out=True)
    assert r.code == 0, r
    assert r.json["unreferenced_packs"] == []
    assert r.json["packs_checked"] == len(env.packs())

    # `unlock` clears exactly the dead processes' locks.
    r = env.cli("unlock", json_out=True)
    assert r.code == 0, r
    assert sorted(x["description"].split("pid ")[1].split()[0] for x in r.json) == sorted(map(str, dead))
    assert env.lock_files() == []
    shutil.rmtree(env.repo)  # passed: the repository is not needed for a post-mortem
