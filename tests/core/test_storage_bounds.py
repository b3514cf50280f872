"""What storage hands a reader is bounded before it is trusted (docs/SECURITY.md).

A storage writer without the key can plant files. An object under data/ named like a pack
must not make every backup read it whole (1.1 GB RSS in one trial before the fix): it is
bounded by the largest pack this repository writes, its trailer and header (which a file
made without the key fails) are checked with ranged reads, a long claimed header is
authenticated in pieces, and a pack is hashed over ranged reads. What is not a pack of
this repository is named by the backup and by verify, and left alone.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess

import pytest

import hostile_support as H

axenv = H.axenv

MiB = 1024 * 1024


def _plant(env: H.AxEnv, size: int, *, tail: bytes = b"", name: str | None = None) -> str:
    """A sparse file of ``size`` bytes under data/, ending with ``tail``; returns its key."""
    name = name or os.urandom(32).hex()
    path = env.repo / "data" / name[:2] / name
    with open(path, "wb") as f:
        f.truncate(size)
        if tail:
            f.seek(size - len(tail))
            f.write(tail)
    return f"data/{name[:2]}/{name}"


def _measured(env: H.AxEnv, *args: str) -> tuple[int, str, str, int]:
    """Run a command (`backup`) with --json in a child: (exit code, stdout, stderr, its peak RSS in KiB)."""
    p = subprocess.Popen(
        env.argv(*(args or ("backup",)), json_out=True),
        cwd=H.ROOT,
        env=env.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, out.decode(), err.decode(), usage.ru_maxrss


@pytest.fixture
def world(axenv):
    axenv.init_fast()
    (axenv.src / "a.txt").write_text("hello\n")
    (axenv.src / "b.bin").write_bytes(os.urandom(2 * MiB))
    code, _, err, rss = _measured(axenv)
    assert code == 0, err
    return axenv, rss


def test_junk_packs_are_named_and_never_read_whole(world):
    env, baseline = world
    from core.repository.repository import max_pack_bytes

    repo = env.run(env.open_repo())
    limit = max_pack_bytes(repo.config)
    huge = _plant(env, limit + 1)  # larger than any pack: not even opened
    plain = _plant(env, 300 * MiB)  # zeros: the trailer's magic is wrong
    # A forged trailer claiming a 250 MiB header: authenticated in pieces, never held whole.
    forged = _plant(env, 300 * MiB, tail=struct.pack("<I4s", 250 * MiB, b"AXP1"))
    (env.src / "c.txt").write_text("more\n")

    code, out, err, rss = _measured(env)
    assert code == 0, err
    for key in (huge, plain, forged):
        assert key in err, err
    assert "larger than any pack" in err and "not a pack of this repository" in err
    warned = json.loads(out)["warnings"]
    assert all(any(key in w for w in warned) for key in (huge, plain, forged)), warned
    # Flat: the 300 MiB and larger files cost no more than a few pieces of ranged reads.
    assert rss < baseline + 48 * 1024, (baseline, rss)

    # verify names them too (not as damage) and does not call them adoptable packs.
    r = env.cli("verify", json_out=True)
    assert r.code == 0, r
    assert set(r.json["foreign_packs"]) == {huge, plain, forged}
    assert not set(r.json["unreferenced_packs"]) & {huge, plain, forged}
    r = env.cli("verify")
    assert r.code == 0 and huge in r.stdout and "warning:" in r.stdout, r


def test_an_unindexed_pack_is_still_adopted_by_ranged_reads(world):
    """The real thing still works: a pack whose index file is lost is adopted (its bytes are
    hashed piece by piece against its name), one whose bytes changed is not."""
    env, _ = world
    for f in env.index_files():
        f.unlink()
    packs = env.packs()
    assert packs
    repo = env.run(env.open_repo())
    assert len(repo.index) == 0

    async def adopt():
        r = await env.open_repo()
        n = await r.adopt_unindexed_packs()
        return n, r.foreign_packs

    n, foreign = env.run(adopt())
    assert n == len(packs) and not foreign


def test_a_pack_whose_bytes_changed_is_not_adopted(world):
    env, _ = world
    for f in env.index_files():
        f.unlink()
    big = max(env.packs(), key=lambda p: p.stat().st_size)
    H.flip_byte(big, 100)  # a blob's bytes: the header still opens, the hash does not match

    async def adopt():
        r = await env.open_repo()
        n = await r.adopt_unindexed_packs()
        return n, r.foreign_packs, {p.hex() for p in r.index.pack_ids()}

    n, foreign, indexed = env.run(adopt())
    assert big.name not in indexed and not foreign


def _plant_at(env: H.AxEnv, folder: str, size: int) -> str:
    name = os.urandom(32).hex()
    with open(env.repo / folder / name, "wb") as f:
        f.truncate(size)
    return f"{folder}/{name}"


def test_index_files_and_manifests_are_bounded_before_they_are_read(world):
    """A planted manifest or index file larger than any this program writes is damaged and
    not read; one below the bound but large is authenticated in pieces first. verify names
    each, and its memory stays flat."""
    env, baseline = world
    from core.repository.repository import MAX_INDEX_FILE, MAX_SNAPSHOT_FILE

    huge_snap = _plant_at(env, "snapshots", MAX_SNAPSHOT_FILE + 1)
    big_snap = _plant_at(env, "snapshots", 60 * MiB)
    huge_index = _plant_at(env, "index", MAX_INDEX_FILE + 1)
    big_index = _plant_at(env, "index", 200 * MiB)
    code, out, err, rss = _measured(env, "verify")
    assert code == 6, err
    damage = {d["object"]: d["reason"] for d in json.loads(out)["damage"]}
    assert "not read" in damage[huge_snap] and "not read" in damage[huge_index], damage
    assert "does not authenticate" in damage[big_snap] and "does not authenticate" in damage[big_index], damage
    assert rss < baseline + 48 * 1024, (baseline, rss)
    # The catalog still lists the real snapshot, and names the planted ones.
    r = env.cli("snapshots", json_out=True)
    assert r.code == 0 and len(r.json["snapshots"]) == 1, r


def test_a_planted_config_is_bounded(axenv):
    axenv.init_fast()
    with open(axenv.repo / "config", "r+b") as f:
        f.truncate(512 * MiB)
    r = axenv.cli("snapshots", timeout=60)
    assert r.code == 3 and "not read" in r.stderr, r


def test_counts_in_a_tree_or_an_index_are_bounded_by_their_bytes():
    """A msgpack array header claiming 2^32 - 1 nodes or packs in a few bytes fails at once
    (msgpack bounds every length by the buffer): nothing is allocated for the claim. Shown
    by memory, not by time (a timed bound failed on a loaded CI machine, not on the code)."""
    import tracemalloc

    import msgpack

    from core.repository.index import IndexFormatError, decode_index
    from core.repository.tree import Tree, TreeFormatError

    claim = b"\xdd\xff\xff\xff\xff"  # array32 of 2^32 - 1 elements, none present
    tracemalloc.start()
    try:
        with pytest.raises(TreeFormatError):
            Tree.decode(b"\x82\xa1v\x01\xa5nodes" + claim)
        with pytest.raises(IndexFormatError):
            decode_index(b"\x82\xa1v\x01\xa5packs" + claim)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # a list for 2^32 - 1 elements would be 32 GiB
    # A real tree of 100,000 nodes still decodes whole.
    from restore_craft import fnode

    raw = Tree([fnode(b"f%06d" % i) for i in range(100_000)]).encode()
    assert len(Tree.decode(raw).nodes) == 100_000
    assert msgpack  # imported for the reader: the bound is msgpack's own (max_*_len = buffer size)


def test_writers_split_index_files_at_100000_entries(axenv):
    from core.repository.index import PackEntry
    from core.repository.repository import INDEX_FILE_ENTRIES

    axenv.init_fast()

    async def write():
        repo = await axenv.open_repo()
        before = set(repo.index.files)
        for _ in range(3):
            entries = [PackEntry(0, os.urandom(32), i * 30, 30, 1) for i in range(60_000)]
            repo._unwritten.append((os.urandom(32), 60_000 * 30 + 100, entries))
        await repo._write_index()
        return set(repo.index.files) - before

    written = axenv.run(write())
    assert len(written) == 3  # 60,000 + 60,000 > 100,000: one pack a file
    assert INDEX_FILE_ENTRIES == 100_000


def test_locks_wal_manifests_and_drill_reports_are_bounded_before_reading(tmp_path):
    """Planted oversized objects where locks, WAL manifests and drill reports live are never
    read whole: a lock of that size is ignored, the others are damaged objects."""
    import asyncio

    from core.drills.report import MAX_REPORT
    from core.errors import DamagedObject
    from core.repository.lock import MAX_LOCK, list_locks
    from core.repository.repo_config import bounded_get
    from core.sources.postgres.wal import MAX_WAL_MANIFEST
    from core.storage.local import LocalBackend

    backend = LocalBackend(tmp_path / "repo")
    for folder in ("locks", "wal", "drills"):
        (tmp_path / "repo" / folder).mkdir(parents=True)
    with open(tmp_path / "repo" / "locks" / ("ab" * 32), "wb") as f:
        f.truncate(MAX_LOCK + 1)
    big_manifest = tmp_path / "repo" / "wal" / "000000010000000000000001"
    with open(big_manifest, "wb") as f:
        f.truncate(MAX_WAL_MANIFEST + 1)
    big_report = tmp_path / "repo" / "drills" / "r"
    with open(big_report, "wb") as f:
        f.truncate(MAX_REPORT + 1)

    async def run() -> None:
        assert await list_locks(backend) == []
        for key, limit in (("wal/000000010000000000000001", MAX_WAL_MANIFEST), ("drills/r", MAX_REPORT)):
            with pytest.raises(DamagedObject, match="not read"):
                await bounded_get(backend, key, limit, "object")

    asyncio.run(run())
