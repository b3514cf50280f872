"""Prune end to end on real repositories: what goes, what stays, and that what stays
still restores byte for byte."""

from __future__ import annotations

import io
import json
import os

import pytest

from core.backup.single_file import single_file_snapshot
from core.backup.stream import StreamWriter
from core.repository.lock import Lock
from core.sources.postgres.wal import WalNotFound

from maintenance.prune_support import World, age_snapshots, make_world, now_plus, restored, tree_bytes


@pytest.fixture
def world(tmp_path) -> World:
    w = make_world(tmp_path / "w")
    w.write_config(retention="min_keep = 1")
    w.init(pack_size=256 * 1024)
    return w


def write_files(folder, names, size=20_000):
    for n in names:
        (folder / n).write_bytes(os.urandom(size))


def backup(w: World) -> str:
    result = w.run(lambda svc: svc.backup())
    (r,) = result.results
    assert r.error is None
    return r.snapshot.id


def test_prune_deletes_unused_packs_repacks_mostly_unused_ones_and_compacts_the_index(world, tmp_path):
    w = world
    names = [f"f{i:03d}" for i in range(100)]
    write_files(w.src, names)
    first = backup(w)
    # Files 0-49 vanish: the packs holding only them become unused. Of 50-99 every fifth
    # stays: their packs become mostly unused.
    for i, n in enumerate(names):
        if i < 50 or i % 5:
            (w.src / n).unlink()
    second = backup(w)
    expected_second = tree_bytes(w.src)
    assert len(expected_second) == 10
    (moved,) = w.run(lambda svc: age_snapshots(svc, {first: 100})).values()
    before_packs, before_bytes = len(w.packs()), sum(p.stat().st_size for p in w.packs())
    assert len(w.index_files()) == 2

    report = w.run(lambda svc: svc.prune())
    assert [d.snapshot.id for d in report.decisions if not d.keep] == [moved]
    assert [d.snapshot.id for d in report.decisions if d.keep] == [second]
    assert report.packs_deleted >= 3, report
    assert report.packs_repacked >= 2, report
    assert report.packs_written >= 1
    after_bytes = sum(p.stat().st_size for p in w.packs())
    assert after_bytes < before_bytes / 3, (before_bytes, after_bytes)
    assert len(w.packs()) == before_packs - report.packs_deleted - report.packs_repacked + report.packs_written
    assert len(w.index_files()) == 1
    assert w.snapshot_ids() == {second}

    v = w.run(lambda svc: svc.verify(full=True))
    assert v.ok and not v.unreferenced_packs, v.damage
    assert w.run(lambda svc: restored(svc, second, tmp_path / "r1")) == expected_second

    # Nothing left to do: a second prune changes nothing on storage.
    listing = w.listing()
    again = w.run(lambda svc: svc.prune())
    assert (again.packs_deleted, again.packs_repacked, again.index_files_after) == (0, 0, 1)
    assert w.listing() == listing


def test_dry_run_shows_what_goes_and_why_and_changes_nothing(world):
    w = world
    write_files(w.src, ["a", "b"])
    ids = [backup(w)]
    for n in ("c", "d", "e"):
        write_files(w.src, [n])
        ids.append(backup(w))
    moved = w.run(lambda svc: age_snapshots(svc, {ids[0]: 40, ids[1]: 30, ids[2]: 20}))
    w.write_config(retention="min_keep = 1\nkeep_monthly = 1", application="retention_days = 25")
    listing = w.listing()

    r = w.cli("--json", "prune", "--dry-run")
    assert r.returncode == 0, r.stderr
    whole = json.loads(r.stdout)
    assert whole["dry_run"] is True and [loc["location"] for loc in whole["locations"]] == ["local"]
    out = whole["locations"][0]
    assert out["dry_run"] is True and out["error"] is None
    fate = {s["id"]: (s["keep"], s["reasons"]) for s in out["snapshots"]}
    assert fate[moved[ids[0]]][0] is False and fate[moved[ids[0]]][1][0].startswith("no rule keeps it")
    assert fate[moved[ids[1]]][0] is False
    assert fate[moved[ids[2]]] == (True, ["retention_days 25 (application)"])
    assert fate[ids[3]][0] is True and "min_keep 1" in fate[ids[3]][1]
    assert any(x.startswith("keep_monthly") for x in fate[ids[3]][1])
    assert (out["kept"], out["forgotten"]) == (2, 2)
    assert out["index_files"]["before"] == 4 and out["index_files"]["after"] == 1
    assert w.listing() == listing  # not one byte changed
    assert not list((w.repo / "locks").iterdir())

    text = w.cli("prune", "--dry-run")
    assert text.returncode == 0
    assert "would forget" in text.stdout and "would keep" in text.stdout and "retention_days 25" in text.stdout
    assert w.listing() == listing

    real = w.cli("--json", "prune")
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["locations"][0]["forgotten"] == 2
    assert w.snapshot_ids() == {moved[ids[2]], ids[3]}
    assert w.cli("verify", "--full").returncode == 0


async def _commit_base(svc, data: bytes, start_wal: str, age_days: float) -> str:
    """A physical base backup snapshot as backup_physical commits one (metadata as it records)."""
    repo = await svc.repository()
    async with Lock(repo.backend, exclusive=False, operation="backup"):
        writer = StreamWriter(repo)
        ids, size = await writer.store(io.BytesIO(data))
        await writer.drain()
        stop = now_plus(-age_days)
        snap = await single_file_snapshot(
            repo,
            name="base.tar",
            ids=ids,
            size=size,
            before=[0, 0, 0],
            source="database",
            paths=("postgresql://db01/app",),
            backup_set=os.urandom(8).hex(),
            tags=(),
            metadata={
                "mode": "physical",
                "start_wal_file": start_wal,
                "wal_segment_size": 16 * 1024 * 1024,
                "timeline": 1,
                "stop_time": stop.isoformat(),
                "start_time": stop.isoformat(),
            },
        )
        return await repo.save_snapshot(snap)


def test_wal_older_than_the_oldest_kept_base_backup_goes_history_files_stay(world, tmp_path):
    w = world
    w.write_config(
        retention="min_keep = 1",
        application="retention_days = 30\n[database]\nretention_days = 5\npitr_window_days = 7",
    )
    wal_dir = tmp_path / "pg_wal"
    wal_dir.mkdir()
    names = [f"0000000100000000000000{n:02X}" for n in range(0x0E, 0x25)]
    names += ["00000002.history", "000000010000000000000010.00000028.backup"]
    content = {}
    for n in names:
        content[n] = os.urandom(30_000)
        (wal_dir / n).write_bytes(content[n])

    async def setup(svc):
        for n in names:
            await svc.wal_push(wal_dir / n)
        ids = {}
        for label, start, age in (
            ("b1", "000000010000000000000010", 20),
            ("b2", "000000010000000000000018", 10),
            ("b3", "000000010000000000000020", 1),
        ):
            ids[label] = (await _commit_base(svc, os.urandom(200_000), start, age), age)
        moved = await age_snapshots(svc, {sid: age for sid, age in ids.values()})
        return {label: moved[sid] for label, (sid, _) in ids.items()}

    bases = w.run(setup)
    report = w.run(lambda svc: svc.prune())
    fate = {d.snapshot.id: d for d in report.decisions}
    assert not fate[bases["b1"]].keep
    assert any(r.startswith("pitr_window 1w") for r in fate[bases["b2"]].reasons)
    assert fate[bases["b3"]].reasons == ("retention_days 5 (database)", "min_keep 1")
    gone = {f"0000000100000000000000{n:02X}" for n in range(0x0E, 0x18)} | {"000000010000000000000010.00000028.backup"}
    assert set(report.wal.remove) == gone
    assert report.wal.keep_from == "000000010000000000000018"
    left = {p.name for p in (w.repo / "wal").iterdir()}
    assert left == set(names) - gone
    assert "00000002.history" in left

    async def fetch_all(svc):
        for n in sorted(left):
            await svc.wal_fetch(n, tmp_path / "out")
            assert (tmp_path / "out").read_bytes() == content[n]
        with pytest.raises(WalNotFound):
            await svc.wal_fetch("000000010000000000000017", tmp_path / "out")

    w.run(fetch_all)
    v = w.run(lambda svc: svc.verify(full=True))
    assert v.ok and v.wal_files_checked == len(left) and not v.unreferenced_packs, v.damage
    # The removed WAL's data left storage with it: every remaining pack holds something used.
    assert report.packs_deleted >= len(gone) // 2


def test_prune_refuses_a_damaged_manifest_and_forget_clears_the_way(world):
    w = world
    write_files(w.src, ["a"])
    first = backup(w)
    write_files(w.src, ["b"])
    second = backup(w)
    path = w.repo / "snapshots" / first
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0x01
    os.chmod(path, 0o600)
    path.write_bytes(bytes(raw))
    listing = w.listing()
    r = w.cli("prune")
    assert r.returncode == 9, r.stderr
    assert f"snapshots/{first}" in r.stderr and "changed nothing" in r.stderr and "forget" in r.stderr
    assert w.listing() == listing
    f = w.cli("forget", first[:12])
    assert f.returncode == 0, f.stderr
    assert w.snapshot_ids() == {second}
    assert w.cli("prune").returncode == 0
    assert w.cli("verify", "--full").returncode == 0


def test_prune_waits_for_no_lock_it_cannot_take(world):
    w = world
    write_files(w.src, ["a"])
    backup(w)
    import asyncio

    from core.storage.local import LocalBackend

    async def held():
        lock = await Lock(LocalBackend(w.repo), exclusive=False, operation="backup").acquire()
        try:
            listing = w.listing()
            r = await asyncio.to_thread(w.cli, "prune", "--lock-wait", "0")
            return r, listing
        finally:
            await lock.release()

    r, listing = asyncio.run(held())
    assert r.returncode == 5, r.stderr
    assert "shared lock by backup" in r.stderr
    assert w.listing() == listing
    assert w.cli("prune").returncode == 0


def test_prune_covers_every_location(world, tmp_path):
    w = world
    nas = tmp_path / "nas"
    w.write_config(retention="min_keep = 1")
    w.cfg.write_text(
        w.cfg.read_text().replace(
            "[retention]",
            f'[[storage.remote_storage]]\nprovider = "local"\nname = "nas"\npath = {json.dumps(str(nas))}\n[retention]',
        )
    )
    write_files(w.src, ["a"], size=200_000)
    write_files(w.src, ["b", "c"], size=5_000)
    first = backup(w)
    (w.src / "a").unlink()
    second = backup(w)
    expected = tree_bytes(w.src)

    # Each backup was copied to the NAS as it finished; age the first one in both places.
    assert {p.name for p in (nas / "snapshots").iterdir()} == {first, second}

    async def age_both(svc):
        moved = await age_snapshots(svc, {first: 60})
        assert await age_snapshots(svc, {first: 60}, location="nas") == moved
        return moved

    w.run(age_both)
    nas_bytes = sum(p.stat().st_size for p in (nas / "data").glob("*/*"))

    dry = w.cli("--json", "prune", "--location", "nas", "--dry-run")
    assert [loc["location"] for loc in json.loads(dry.stdout)["locations"]] == ["nas"]
    r = w.cli("--json", "prune")
    assert r.returncode == 0, r.stderr
    locs = {loc["location"]: loc for loc in json.loads(r.stdout)["locations"]}
    assert set(locs) == {"local", "nas"}
    assert locs["local"]["forgotten"] == 1 and locs["nas"]["forgotten"] == 1
    assert locs["nas"]["packs"]["deleted"] + locs["nas"]["packs"]["repacked"] > 0, locs["nas"]["packs"]
    assert w.snapshot_ids() == {second}
    assert {p.name for p in (nas / "snapshots").iterdir()} == {second}
    assert sum(p.stat().st_size for p in (nas / "data").glob("*/*")) < nas_bytes - 150_000
    assert w.run(lambda svc: restored(svc, second, tmp_path / "r")) == expected


def test_a_truncated_pack_is_never_a_source_of_kept_data(world):
    from core.maintenance.prune import PruneRefused
    from core.restore.walk import walk

    w = world
    write_files(w.src, ["old"], size=200_000)
    first = backup(w)
    (w.src / "old").unlink()
    write_files(w.src, ["new"], size=200_000)
    second = backup(w)
    w.run(lambda svc: age_snapshots(svc, {first: 60}))

    async def pack_holding(svc, snapshot_id: str, name: str):
        repo = await svc.repository()
        snap = await repo.load_snapshot(snapshot_id)
        async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
            if parts[-1] == name.encode():
                pid = repo.index.lookup(node.content[0]).pack_id.hex()
                return w.repo / "data" / pid[:2] / pid

    def truncate(path):
        data = path.read_bytes()
        os.chmod(path, 0o600)
        path.write_bytes(data[:-100])
        return data

    # Needed by the kept snapshot: prune refuses and changes nothing.
    needed = w.run(lambda svc: pack_holding(svc, second, "new"))
    original = truncate(needed)
    listing = w.listing()
    with pytest.raises(PruneRefused, match="missing or truncated packs"):
        w.run(lambda svc: svc.prune())
    assert w.listing() == listing
    needed.write_bytes(original)
    # Needed by nothing kept: it goes like any unused pack.
    (moved,) = w.snapshot_ids() - {second}
    unneeded = w.run(lambda svc: pack_holding(svc, moved, "old"))
    truncate(unneeded)
    report = w.run(lambda svc: svc.prune())
    assert len(report.forgotten) == 1 and not unneeded.exists()
    v = w.run(lambda svc: svc.verify(full=True))
    assert v.ok and not v.unreferenced_packs, v.damage
