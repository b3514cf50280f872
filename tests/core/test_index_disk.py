"""The on-disk index table (issue 19): the same answers as the dict index, a damaged cache
rebuilt, concurrent readers safe."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import crypto
from core.repository import indextable
from core.repository.index import Index, PackEntry
from core.repository.repository import Repository
from core.storage.local import LocalBackend

# A few ids and packs, so duplicates, re-adds and drops of the same pack happen often.
IDS = [bytes([i * 37 % 256, i]) + bytes(30) for i in range(24)] + [os.urandom(32) for _ in range(8)]
PACKS = [bytes([p]) * 32 for p in range(6)]

entry = st.builds(
    PackEntry,
    st.integers(0, 1),
    st.sampled_from(IDS),
    st.integers(0, 2**40),
    st.integers(0, 2**33),
    st.integers(0, 2**33),
)
add = st.tuples(st.just("add"), st.sampled_from(PACKS), st.integers(0, 2**40), st.lists(entry, max_size=6))
drop = st.tuples(st.just("drop"), st.sets(st.sampled_from(PACKS + [b"\xff" * 32]), max_size=3))
ask = st.tuples(st.just("ask"), st.sampled_from(IDS))
ops = st.lists(st.one_of(add, add, drop, ask), max_size=40)


def state(index: Index) -> tuple:
    assert sorted(index.packs()) == sorted((p, index.pack_size(p)) for p in index.pack_ids())
    return (
        len(index),
        sorted(index.pack_ids()),
        {p: index.pack_size(p) for p in index.pack_ids()},
        sorted(index.blobs()),
        [index.has_pack(p) for p in PACKS],
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops, threshold=st.integers(1, 4))
def test_disk_index_answers_as_the_dict_index(tmp_path: Path, ops, threshold: int) -> None:
    ref = Index(threshold=10**9)
    disk = Index(spill_dir=tmp_path, threshold=threshold)
    try:
        for op in ops:
            if op[0] == "add":
                ref.add_pack(op[1], op[2], op[3])
                disk.add_pack(op[1], op[2], op[3])
            elif op[0] == "drop":
                assert disk.drop_packs(op[1]) == ref.drop_packs(op[1])
            else:
                assert (op[1] in disk) == (op[1] in ref)
                assert disk.lookup(op[1]) == ref.lookup(op[1])
        assert not ref.on_disk
        assert state(disk) == state(ref)
        for blob_id in IDS:
            assert disk.lookup(blob_id) == ref.lookup(blob_id)
            assert (blob_id in disk) == (blob_id in ref)
    finally:
        disk.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("tmp-", "spill-"))]


def _entries(n: int, seed: int) -> list[PackEntry]:
    import random

    r = random.Random(seed)
    return [PackEntry(r.randint(0, 1), r.randbytes(32), i * 100, 99, 200) for i in range(n)]


def test_many_blobs_spill_in_several_rounds(tmp_path: Path) -> None:
    ref = Index(threshold=10**9)
    disk = Index(spill_dir=tmp_path, threshold=500)
    packs = [(os.urandom(32), 1000 + i, _entries(50, i)) for i in range(100)]
    for i, p in enumerate(packs):
        ref.add_pack(*p)
        disk.add_pack(*p)
        if i % 30 == 29:  # a question settles the spill: several tables in turn
            assert p[2][0].id in disk
    disk.add_pack(*packs[3])  # again: nothing changes
    ref.add_pack(*packs[3])
    assert disk.on_disk
    assert state(disk) == state(ref)
    assert disk.drop_packs({packs[5][0], packs[77][0]}) == ref.drop_packs({packs[5][0], packs[77][0]}) == 100
    assert state(disk) == state(ref)


async def _repo(tmp_path: Path) -> Path:
    crypto.SCRYPT_N = 2**10
    repo = await Repository.create(LocalBackend(tmp_path / "repo"), "pw")
    for i in range(6):
        repo.index.add_pack(os.urandom(32), 5000, _entries(40, i))
        repo._unwritten.append((repo.index.pack_ids()[-1], 5000, _entries(40, i)))
        await repo._write_index()
    return tmp_path / "repo"


async def _load(path: Path, cache: Path) -> tuple[int, bool, dict]:
    crypto.SCRYPT_N = 2**10
    repo = await Repository.open(LocalBackend(path), "pw")
    repo.index_cache_dir = cache
    await repo.load_index()
    return len(repo.index), repo.index.on_disk, dict((k, v) for k, v in repo.index.blobs())


def test_cached_table_is_reused_and_damage_rebuilds_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AXISOR_INDEX_DISK_THRESHOLD", "50")
    path = asyncio.run(_repo(tmp_path))
    cache = tmp_path / "cache"
    count, on_disk, blobs = asyncio.run(_load(path, cache))
    assert count == 240 and on_disk
    [table] = [p for p in cache.iterdir() if p.suffix == ".axidx"]
    stamp = table.stat().st_mtime_ns
    assert asyncio.run(_load(path, cache)) == (count, True, blobs)
    assert table.stat().st_mtime_ns == stamp  # reused, not rebuilt
    good = table.read_bytes()
    for damage in (
        good[:-1],
        good[:100],
        b"garbage" * 10,
        good[:5000] + bytes([good[5000] ^ 1]) + good[5001:],
        bytes([good[0] ^ 1]) + good[1:],
    ):
        table.write_bytes(damage)
        assert asyncio.run(_load(path, cache)) == (count, True, blobs)
        assert table.read_bytes() == good  # rebuilt the same
    # Without a threshold low enough, the dict index: the same blobs.
    monkeypatch.delenv("AXISOR_INDEX_DISK_THRESHOLD")
    assert asyncio.run(_load(path, tmp_path / "other")) == (count, False, blobs)


def test_new_index_files_on_top_of_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AXISOR_INDEX_DISK_THRESHOLD", "100")
    path = asyncio.run(_repo(tmp_path))
    cache = tmp_path / "cache"
    asyncio.run(_load(path, cache))

    async def more() -> None:
        repo = await Repository.open(LocalBackend(path), "pw")
        repo._unwritten.append((os.urandom(32), 100, _entries(30, 99)))
        await repo._write_index()

    asyncio.run(more())
    count, on_disk, blobs = asyncio.run(_load(path, cache))
    assert count == 270 and on_disk
    monkeypatch.setenv("AXISOR_INDEX_DISK_THRESHOLD", "100000")
    assert asyncio.run(_load(path, tmp_path / "other")) == (270, False, blobs)


def _reader(path: str, cache: str, rounds: int, out) -> None:
    os.environ["AXISOR_INDEX_DISK_THRESHOLD"] = "50"
    try:
        for i in range(rounds):
            if i % 2:
                for p in Path(cache).glob("*.axidx"):
                    if not p.name.startswith("tmp-"):  # the other process may be building meanwhile
                        p.unlink(missing_ok=True)
            out.put(asyncio.run(_load(Path(path), Path(cache)))[0])
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        out.put(repr(exc))


def test_two_processes_build_and_read_the_cache_at_once(tmp_path: Path) -> None:
    path = asyncio.run(_repo(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(str(path), str(tmp_path / "cache"), 6, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in range(12)]
    for p in procs:
        p.join(30)
    assert results == [240] * 12
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".axidx")] == []


def test_table_refuses_another_tag_and_foreign_files(tmp_path: Path) -> None:
    spill = indextable.Spill(tmp_path, indextable.RECORD.size)
    spill.add(indextable.RECORD.pack(b"a" * 32, 0, 0, 1, 2, 3))
    spill.flush()
    packs = indextable.PackSpill(tmp_path)
    packs.add(b"p" * 32, 9, 0)
    packs.flush()
    table = indextable.build(tmp_path, b"t" * 32, None, set(), spill, packs, ["index/x"])
    spill.close()
    packs.close()
    assert table.find(b"a" * 32) == (0, 0, 1, 2, 3) and table.pack_no(b"p" * 32) == 0
    with pytest.raises(indextable.TableDamaged):
        indextable.Table.open(table.path, b"u" * 32)
    os.chmod(table.path, 0o666)
    with pytest.raises(indextable.TableDamaged):
        indextable.Table.open(table.path, b"t" * 32)
    table.close()
    assert not table.path.exists()


def test_verify_reads_every_index_file_despite_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AXISOR_INDEX_DISK_THRESHOLD", "50")
    path = asyncio.run(_repo(tmp_path))
    cache = tmp_path / "cache"
    asyncio.run(_load(path, cache))
    victim = sorted((path / "index").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-1])

    async def load(use_cache: bool) -> tuple[int, list]:
        repo = await Repository.open(LocalBackend(path), "pw")
        repo.index_cache_dir = cache
        damaged = await repo.load_index(strict=False, use_cache=use_cache)
        return len(repo.index), [d.key for d in damaged]

    assert asyncio.run(load(False)) == (200, [f"index/{victim.name}"])
    # The table saved by that load has the five good files; the sixth is tried again.
    assert asyncio.run(load(True)) == (200, [f"index/{victim.name}"])
    victim.unlink()  # gone (as prune or repair removes files): the table is built again
    assert asyncio.run(load(True)) == (200, [])


def test_in_from_a_thread_while_packs_are_added(tmp_path: Path) -> None:
    """Backup workers ask `in` while the event loop adds packs that spill and settle."""
    import threading

    index = Index(spill_dir=tmp_path, threshold=300)
    added: list[bytes] = []
    wrong: list[bytes] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            for blob_id in list(added[-200:]):
                if blob_id not in index:
                    wrong.append(blob_id)

    worker = threading.Thread(target=ask)
    worker.start()
    try:
        for i in range(60):
            entries = _entries(40, 1000 + i)
            index.add_pack(os.urandom(32), 4000, entries)
            added.extend(e.id for e in entries)
            if i % 7 == 0:
                assert entries[0].id in index
    finally:
        stop.set()
        worker.join()
    assert wrong == [] and len(index) == 2400
    index.close()
