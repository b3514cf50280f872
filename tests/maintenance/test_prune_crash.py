"""A prune that dies at any point leaves a repository that verifies clean, and the next
prune finishes the job.

Every step: storage is made to fail at the k-th write or delete of a prune, for every k
the prune makes (fault injection: nothing after that point reaches storage, exactly as
when the process dies). Real deaths: a prune subprocess is killed with SIGKILL at moments
chosen by watching storage change.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from maintenance.prune_support import Crash, World, age_snapshots, make_world, restored, tree_bytes


def _build(w: World) -> tuple[list[str], dict[str, dict[str, bytes]]]:
    """Four snapshots with churn; the first two old enough to be forgotten. Returns the
    ids that stay and their expected content."""
    expected: dict[str, dict[str, bytes]] = {}
    ids = []
    for round_ in range(4):
        if round_ == 0:
            for i in range(60):
                (w.src / f"f{i:02d}").write_bytes(os.urandom(15_000))
        elif round_ == 1:
            for i in range(30):  # their packs end up wholly unused
                (w.src / f"f{i:02d}").unlink()
        elif round_ == 2:
            for i in range(30, 60):  # three in four go: their packs end up mostly unused
                if i % 4:
                    (w.src / f"f{i:02d}").unlink()
        for i in range(10):
            if (i + round_) % 3 == 0:
                (w.src / f"g{i}").write_bytes(os.urandom(12_000 + 1000 * round_))
        (w.src / f"big{round_}").write_bytes(os.urandom(300_000))
        result = w.run(lambda svc: svc.backup())
        sid = result.results[0].snapshot.id
        ids.append(sid)
        expected[sid] = tree_bytes(w.src)
    w.run(lambda svc: age_snapshots(svc, {ids[0]: 50, ids[1]: 40}))
    return ids[2:], {sid: expected[sid] for sid in ids[2:]}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash-template")
    w = make_world(base / "w")
    w.write_config(retention="min_keep = 1")
    w.init(pack_size=128 * 1024)
    keep, expected = _build(w)
    return w, keep, expected


def _copy(template: World, dest) -> World:
    shutil.copytree(template.root, dest)
    w = World(dest, dest / "src", dest / "repo", dest / "config.toml")
    w.write_config(retention="min_keep = 1")
    text = w.cfg.read_text().replace(str(template.root), str(dest))
    w.cfg.write_text(text)
    return w


def _check_clean(w: World) -> None:
    v = w.run(lambda svc: svc.verify(full=True))
    assert v.ok, v.damage


def test_a_crash_at_every_write_or_delete_leaves_a_clean_repository(template, tmp_path):
    tw, keep, expected = template
    # How many mutations a whole prune makes (on a copy).
    probe = _copy(tw, tmp_path / "probe")
    svc_holder = {}

    async def counted(svc):
        svc_holder["backend"] = svc.backend
        return await svc.prune()

    report = probe.run(counted, crash_after=10**9)
    total = svc_holder["backend"].mutations
    assert report.packs_deleted and report.packs_repacked and len(report.forgotten) == 2, report
    assert total > 10
    print(f"a whole prune makes {total} writes and deletes")
    steps = list(range(total)) if total <= 60 else sorted({round(i * (total - 1) / 59) for i in range(60)})
    for k in steps:
        w = _copy(tw, tmp_path / f"k{k}")
        with pytest.raises(Crash):
            w.run(lambda svc: svc.prune(), crash_after=k)
        w.unlock_all()  # what `unlock` does for a dead process's lock
        after = w.run(lambda svc: svc.verify())
        assert after.ok, (k, after.damage)
        assert set(keep) <= w.snapshot_ids(), f"crash at mutation {k} lost a kept snapshot"
        again = w.run(lambda svc: svc.prune())
        assert w.snapshot_ids() == set(keep)
        assert {s.id for s in again.kept} == set(keep)
        sample = k in (steps[0], steps[len(steps) // 2], steps[-1])
        final = w.run(lambda svc: svc.verify(full=sample))
        assert final.ok and not final.unreferenced_packs, (k, final.damage, final.unreferenced_packs)
        if sample:
            for sid in keep:
                assert w.run(lambda svc: restored(svc, sid, tmp_path / f"r{k}-{sid[:8]}")) == expected[sid]
        shutil.rmtree(w.root)


def _wait_for(proc, cond, limit: float = 60.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.0005)
    return False


@pytest.mark.parametrize("moment", ["lock", "snapshot-deleted", "new-pack", "index-rewritten", "pack-deleted"])
def test_sigkill_during_prune_then_rerun(template, tmp_path, moment):
    tw, keep, expected = template
    w = _copy(tw, tmp_path / "w")
    snaps0 = w.snapshot_ids()
    index0 = {p.name for p in w.index_files()}
    packs0 = {p.name for p in w.packs()}
    locks = w.repo / "locks"
    conditions = {
        "lock": lambda: any(locks.iterdir()),
        "snapshot-deleted": lambda: w.snapshot_ids() != snaps0,
        "new-pack": lambda: bool({p.name for p in w.packs()} - packs0),
        "index-rewritten": lambda: bool({p.name for p in w.index_files()} - index0),
        "pack-deleted": lambda: bool(packs0 - {p.name for p in w.packs()}),
    }
    proc = w.popen("prune")
    try:
        hit = _wait_for(proc, conditions[moment])
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert hit or proc.returncode == 0, proc.stderr.read().decode()
    print(f"{moment}: {'killed' if proc.returncode == -signal.SIGKILL else 'finished first'}")
    # The dead prune's lock names a PID that is gone: stale at once, nobody has to unlock.
    _check_clean(w)
    assert set(keep) <= w.snapshot_ids()
    r = w.cli("prune")
    assert r.returncode == 0, r.stderr
    assert w.snapshot_ids() == set(keep)
    v = w.run(lambda svc: svc.verify(full=True))
    assert v.ok and not v.unreferenced_packs, v.damage
    for sid in keep:
        assert w.run(lambda svc: restored(svc, sid, tmp_path / f"r-{sid[:8]}")) == expected[sid]
