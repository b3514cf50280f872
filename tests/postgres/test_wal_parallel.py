"""Parallel WAL pushes ahead (core/sources/postgres/wal_ahead.py) and wal-fetch's prefetch
spool (core/sources/postgres/wal_prefetch.py), through the real CLI and repository.

Segments are 16 MiB, each different (a random head), with a zero tail that repeats across
segments: parallel pushes must store each segment once, keep it bit-exact, and never leave a
marker or spooled file that claims more than the repository holds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import PASSPHRASE, Workspace
from wal_support import archive_ready as _archive
from wal_support import segments_dir

from app import wal_quick
from core.repository.repository import Repository
from core.sources.postgres import wal_prefetch
from core.sources.postgres.wal import list_names, load_manifest
from core.storage.local import LocalBackend

SEG = 16 * 1024 * 1024
NAMES = [f"0000000100000000000000{i:02X}" for i in range(1, 11)]


def _manifests(repo_path: Path) -> dict:
    async def go() -> dict:
        repo = await Repository.open(LocalBackend(repo_path), PASSPHRASE)
        return {n: await load_manifest(repo, n) for n in await list_names(repo)}

    return asyncio.run(go())


def test_parallel_ahead_pushes_store_each_segment_once_and_bit_exact(ws: Workspace, tmp_path: Path) -> None:
    env = {"AXISOR_BACKUP_STATE_DIR": str(tmp_path / "state")}
    assert ws.cli("init", env=env).code == 0
    wal = segments_dir(tmp_path, NAMES)
    docs = _archive(ws, wal, env)
    assert [d["name"] for d in docs] == NAMES
    full = [d["name"] for d in docs if not d["from_marker"]]
    ahead = [n for d in docs for n in d["pushed_ahead"]]
    assert full[0] == NAMES[0] and len(ahead) >= 3, docs  # the first push stored others in parallel
    # No segment was stored twice: what was pushed ahead was answered from its marker.
    assert len(set(ahead)) == len(ahead) and not set(ahead) & set(full)
    assert sorted(ahead + full) == NAMES
    manifests = _manifests(ws.repo)
    assert sorted(manifests) == NAMES
    for n in NAMES:
        out = tmp_path / "out" / n
        out.parent.mkdir(exist_ok=True)
        r = ws.cli("wal-fetch", n, str(out), env=env)
        assert r.code == 0, r.err
        assert out.read_bytes() == (wal / n).read_bytes()


def test_a_push_killed_midway_leaves_no_marker_claiming_what_is_not_stored(ws: Workspace, tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"AXISOR_BACKUP_STATE_DIR": str(state)}
    assert ws.cli("init", env=env).code == 0
    wal = segments_dir(tmp_path, NAMES)
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    e.update(env, AXISOR_BACKUP_PASSPHRASE=PASSPHRASE)
    # Killed at several moments of its pushes ahead: a marker may exist only for a segment
    # whose manifest is in the repository.
    for delay in (0.6, 1.2):
        p = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "--config", str(ws.config), "wal-push", str(wal / NAMES[0])],
            cwd=Path(__file__).resolve().parents[2],
            env=e,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        manifests = _manifests(ws.repo)
        markers = (
            [
                m
                for d in (state / "wal-ahead").glob("*")
                if d.name != wal_quick.ROUTES  # routes name configs, not segments
                for m in d.iterdir()
                if not m.name.startswith(".")
            ]
            if (state / "wal-ahead").exists()
            else []
        )
        for m in markers:
            assert m.name in manifests, (m.name, sorted(manifests))
            rec = json.loads(m.read_text())
            assert rec["sha256"] == manifests[m.name].sha256
    # Then the archiver catches up as usual (a dead shared lock blocks no push), every
    # segment bit-exact.
    docs = _archive(ws, wal, env)
    assert [d["name"] for d in docs] == NAMES
    for n in (NAMES[0], NAMES[5], NAMES[-1]):
        out = tmp_path / f"back-{n}"
        assert ws.cli("wal-fetch", n, str(out), env=env).code == 0
        assert out.read_bytes() == (wal / n).read_bytes()


def test_wal_fetch_prefetches_into_a_bounded_spool_and_never_uses_a_bad_copy(ws: Workspace, tmp_path: Path) -> None:
    env = {"AXISOR_BACKUP_STATE_DIR": str(tmp_path / "state")}
    assert ws.cli("init", env=env).code == 0
    src = segments_dir(tmp_path, NAMES)
    _archive(ws, src, env)
    pg_wal = tmp_path / "restore" / "pg_wal"
    pg_wal.mkdir(parents=True)
    spool = pg_wal / wal_prefetch.DIR_NAME
    dest = pg_wal / "RECOVERYXLOG"

    def fetch(n: str) -> None:
        r = ws.cli("wal-fetch", n, str(dest), env=env)
        assert r.code == 0, r.err
        assert dest.read_bytes() == (src / n).read_bytes()

    def names() -> set[str]:  # not the follower's steering files (wal_spool.py) or a temp file
        return {p.name for p in spool.iterdir() if not p.name.startswith(".")}

    fetch(NAMES[0])
    spooled = sorted(names())
    window = min(wal_prefetch.PREFETCH_FILES, wal_prefetch.PREFETCH_BYTES // SEG)
    assert spooled == NAMES[1 : 1 + window]  # the next ones, bounded
    assert sum(p.stat().st_size for p in spool.iterdir()) <= wal_prefetch.PREFETCH_BYTES

    # A spooled copy that does not match its manifest is not handed over: fetched again.
    bad = spool / NAMES[1]
    bad.write_bytes(b"\0" + bad.read_bytes()[1:])
    fetch(NAMES[1])
    # The next is answered from the spool (handed over by rename: gone from the spool).
    fetch(NAMES[2])
    assert NAMES[2] not in names()
    # Recovery moved on: what it passed is swept (by the quick wal-fetch, and by the follower
    # it started once a fetch under way lands); the archive's end is no error.
    fetch(NAMES[6])
    deadline = time.monotonic() + 30
    while names() & set(NAMES[:7]) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = names()
    assert not left & set(NAMES[:7]) and left <= set(NAMES[7:])
    fetch(NAMES[-1])
    assert ws.cli("wal-fetch", "0000000100000000000000FF", str(dest), env=env).code == 1
    # Another timeline: asked for and missing is normal.
    assert ws.cli("wal-fetch", "000000020000000000000002", str(dest), env=env).code == 1
    wal_prefetch.remove_spool(pg_wal)
    assert not spool.exists()
