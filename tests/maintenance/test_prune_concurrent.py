"""Writers next to a prune lose nothing.

Backups in other processes either run before or after the prune's exclusive lock, or
fail cleanly with exit 5 and succeed when retried; what they committed restores. A lock
that appears while prune runs stops it before its next delete. A writer that ignores
locks altogether (the worst case) keeps the packs and index files it wrote after prune
loaded the index: prune deletes only what it loaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from core.errors import LockHeld
from core.maintenance.prune import prune
from core.maintenance.retention import Policy
from core.repository.repository import Repository
from core.sources.postgres import wal as walmod
from core.storage.local import LocalBackend

from maintenance.prune_support import PASSPHRASE, World, age_snapshots, make_world, restored, tree_bytes


def _fill(w: World, rounds: int) -> list[str]:
    ids = []
    for r in range(rounds):
        for i in range(40):
            if (i + r) % 2 == 0:
                (w.src / f"f{i:02d}").write_bytes(os.urandom(12_000))
        (w.src / f"big{r}").write_bytes(os.urandom(500_000))
        ids.append(w.run(lambda svc: svc.backup()).results[0].snapshot.id)
    return ids


def test_backups_in_other_processes_while_prune_runs_lose_nothing(tmp_path):
    w = make_world(tmp_path / "w")
    others = []
    for name in ("a", "b"):
        src = tmp_path / f"src-{name}"
        src.mkdir()
        cfg = tmp_path / f"config-{name}.toml"
        others.append((src, cfg))
    w.write_config(retention="min_keep = 1")
    w.init(pack_size=128 * 1024)
    for (src, cfg), key in zip(others, ("log_files", "simulation_data")):
        cfg.write_text(
            w.cfg.read_text()
            .replace("[application]\n", f"[application]\n{key} = [{json.dumps(str(src))}]\n")
            .replace(f"user_data = [{json.dumps(str(w.src))}]\n", "")
        )
    committed: dict[str, dict[str, bytes]] = {}
    codes = []
    for round_ in range(3):
        ids = _fill(w, 3)
        w.run(lambda svc: age_snapshots(svc, {sid: 10 + i for i, sid in enumerate(ids[:2])}))
        procs = []
        prune_proc = w.popen("prune")
        for i, (src, cfg) in enumerate(others):
            for n in range(15):
                (src / f"x{n}").write_bytes(os.urandom(30_000))
            time.sleep(0.15 * i * round_)  # a different overlap each round
            procs.append((w.popen("--json", "backup", cfg=cfg), src))
        out, err = prune_proc.communicate(timeout=120)
        codes.append(("prune", prune_proc.returncode))
        assert prune_proc.returncode in (0, 5), err.decode()
        for p, src in procs:
            out, err = p.communicate(timeout=120)
            codes.append(("backup", p.returncode))
            assert p.returncode in (0, 5), err.decode()
            if p.returncode == 0:
                for s in json.loads(out)["snapshots"]:
                    committed[s["id"]] = tree_bytes(src)
            else:
                assert b"locked" in err
    # Whatever ran when, every committed backup is intact and the repository is clean.
    assert ("backup", 0) in codes and ("prune", 0) in codes, codes
    r = w.cli("prune")  # a final prune with nobody around
    assert r.returncode == 0, r.stderr
    report = w.run(lambda svc: svc.verify(full=True))
    assert report.ok, report.damage
    present = w.snapshot_ids()
    for sid, files in committed.items():
        assert sid in present  # newest of its source: min_keep holds it
        got = w.run(lambda svc: restored(svc, sid, tmp_path / f"r-{sid[:8]}"))
        assert got == files


class _Hooked:
    """Fault injection: runs ``hook`` once, just before prune's first delete, or with
    ``on_lock_listing=n`` just before the n-th listing of locks/ (acquiring a lock lists
    twice; the third listing is prune's check before its first delete)."""

    def __init__(self, inner, hook, on_lock_listing: int | None = None) -> None:
        self.inner, self.hook, self.fired = inner, hook, False
        self.on_lock_listing, self.listings = on_lock_listing, 0
        self.location = inner.location

    async def delete(self, key):
        if self.on_lock_listing is None and not self.fired and not key.startswith("locks/"):
            self.fired = True
            await self.hook()
        return await self.inner.delete(key)

    async def list(self, prefix):
        if prefix == "locks/":
            self.listings += 1
            if self.listings == self.on_lock_listing and not self.fired:
                self.fired = True
                await self.hook()
        async for info in self.inner.list(prefix):
            yield info

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _aged_world(tmp_path) -> tuple[World, list[str]]:
    w = make_world(tmp_path / "w")
    w.write_config(retention="min_keep = 1")
    w.init(pack_size=128 * 1024)
    ids = _fill(w, 3)
    moved = w.run(lambda svc: age_snapshots(svc, {ids[0]: 20, ids[1]: 10}))
    return w, [moved[ids[0]], moved[ids[1]], ids[2]]


async def _open(w: World, backend) -> Repository:
    repo = await Repository.open(backend, PASSPHRASE)
    return repo


def test_a_lock_taken_while_prune_runs_stops_it_before_any_delete(tmp_path):
    w, ids = _aged_world(tmp_path)
    listing = w.listing()
    raw = LocalBackend(w.repo)

    async def foreign_lock():
        # Another host's backup that got its lock in (a lock race, a skewed clock).
        now = datetime.now(timezone.utc)
        body = {
            "exclusive": False,
            "host": "other-host-" + socket.gethostname(),
            "pid": 4242,
            "operation": "backup",
            "created": now.isoformat(),
            "expires": (now + timedelta(minutes=30)).isoformat(),
        }
        await raw.put("locks/" + os.urandom(16).hex(), json.dumps(body).encode())

    async def run():
        repo = await _open(w, _Hooked(raw, foreign_lock, on_lock_listing=3))
        return await prune(repo, lambda s: Policy(retention_days=1, min_keep=1))

    with pytest.raises(LockHeld, match="prune stopped before deleting snapshots"):
        asyncio.run(run())
    assert w.snapshot_ids() == set(ids)
    assert w.listing() == listing
    w.unlock_all()
    assert w.run(lambda svc: svc.verify(full=True)).ok


def test_a_wal_push_that_ignores_locks_keeps_what_it_wrote(tmp_path):
    w, ids = _aged_world(tmp_path)
    raw = LocalBackend(w.repo)
    segment = tmp_path / "000000010000000000000042"
    segment.write_bytes(os.urandom(300_000))
    pushed = {}

    async def sneaky_push():
        # The worst case: a writer that takes no lock at all writes a pack, an index
        # file and a manifest after prune has loaded the index and made its plan.
        other = await _open(w, raw)
        pushed["result"] = await walmod.push(other, segment)

    async def run():
        repo = await _open(w, _Hooked(raw, sneaky_push))
        return await prune(repo, lambda s: Policy(retention_days=1, min_keep=1))

    report = asyncio.run(run())
    assert len(report.forgotten) == 2 and report.packs_deleted > 0
    assert pushed["result"].already is False
    out = tmp_path / "fetched"
    assert w.run(lambda svc: svc.wal_fetch(segment.name, out)) == 300_000
    assert out.read_bytes() == segment.read_bytes()
    v = w.run(lambda svc: svc.verify(full=True))
    assert v.ok and v.wal_files_checked == 1, v.damage
