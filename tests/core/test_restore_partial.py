"""Restore past damage: a lost pack or a flipped byte fails only the files that need it.

Real CLI runs against a repository damaged on disk: every other file is restored
bit-exact, each partial file is named with its missing byte ranges and the damaged object
(text and --json), its restored bytes are kept as NAME.axisor-partial (never over NAME),
the exit is 23, and a second location holding an intact replica (or another snapshot with
the same content there) is named and fills the partial files in with `restore --from`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

import hostile_support as H  # noqa: E402  (tests/ is on pytest's pythonpath)

PARTIAL_EXIT = 23
PACK_4MIB = "pack_size_mib = 4\n"

pytestmark = pytest.mark.usefixtures("restore_writers")  # each restore both ways: threads, worker processes


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Two snapshots of one source over several 4 MiB packs, and an offsite replica of both."""
    base = tmp_path_factory.mktemp("partial-pristine")
    env = H.make_env(base, extra_storage=PACK_4MIB)
    rnd = os.urandom
    (env.src / "big.bin").write_bytes(rnd(10_000_000))  # > 8 MiB: restored window by window
    for i in (1, 2, 3):  # < 8 MiB: restored in one batch
        (env.src / f"mid{i}.bin").write_bytes(rnd(3_000_000))
    (env.src / "docs").mkdir()
    (env.src / "docs" / "a.txt").write_text("alpha\n" * 2000)
    (env.src / "docs" / "b.txt").write_text("beta\n" * 3000)
    env.init_fast(pack_size_mib=4)
    first = env.backup()["snapshots"][0]["id"]
    (env.src / "docs" / "c.txt").write_text("gamma\n")
    second = env.backup()["snapshots"][0]["id"]
    return env, (first, second)


def _storage(base: Path, offsite: Path | None) -> str:
    extra = PACK_4MIB + f"[engine]\nstate_dir = {json.dumps(str(base / 'state'))}\n"
    if offsite is not None:
        extra += (
            f'[[storage.remote_storage]]\nname = "offsite"\nprovider = "local"\npath = {json.dumps(str(offsite))}\n'
        )
    return extra


@pytest.fixture
def world(pristine, tmp_path):
    """A private copy of the pristine repository (the source folder is shared, read-only)."""
    src_env, snaps = pristine
    env = H.AxEnv(
        base=tmp_path,
        src=src_env.src,
        repo=tmp_path / "repo",
        cfg=tmp_path / "config.toml",
        sources=[src_env.src],
        extra_storage=_storage(tmp_path, None),
    )
    shutil.copytree(src_env.repo, env.repo, symlinks=True)
    env.write_config()
    return env, snaps


def with_offsite(env, *refs: str) -> Path:
    """Add a `local`-provider location `offsite` and copy ``refs`` (default: all) to it."""
    offsite = env.base / "offsite"
    env.write_config(extra_storage=_storage(env.base, offsite))
    r = env.cli("copy", "--to", "offsite", *refs)
    assert r.code == 0, r
    return offsite


async def _layout(env):
    repo = await env.open_repo()
    files = {sid: await H.file_blobs(repo, sid) for sid in await repo.snapshot_ids()}
    return repo, files, H.tree_packs(repo)


def layout(env):
    return asyncio.run(_layout(env))


def pack_path(repo_dir: Path, pack_id: bytes) -> Path:
    h = pack_id.hex()
    return repo_dir / "data" / h[:2] / h


def missing_ranges(repo, blobs, bad) -> list[list[int]]:
    """The (offset, length) ranges of a file's blobs for which ``bad(blob, loc)``, merged."""
    out: list[list[int]] = []
    pos = 0
    for b in blobs:
        loc = repo.index.lookup(b)
        if bad(b, loc):
            if out and out[-1][0] + out[-1][1] == pos:
                out[-1][1] += loc.raw_length
            else:
                out.append([pos, loc.raw_length])
        pos += loc.raw_length
    return out


def lose_a_pack(env, snap: str) -> tuple[str, dict[str, list[list[int]]]]:
    """Delete a data-only pack holding part of ``snap``; (pack key, {path: missing ranges})."""
    repo, files, with_trees = layout(env)
    for pack in repo.index.pack_ids():
        if pack in with_trees:
            continue
        hit = {
            path: missing_ranges(repo, blobs, lambda b, loc: loc.pack_id == pack) for path, blobs in files[snap].items()
        }
        hit = {p: r for p, r in hit.items() if r}
        if hit:
            pack_path(env.repo, pack).unlink()
            h = pack.hex()
            return f"data/{h[:2]}/{h}", hit
    raise AssertionError("no data-only pack holds part of the snapshot")


def flip_a_blob(env, snap: str, name: str) -> tuple[str, str, list[list[int]]]:
    """Flip a byte in one blob of ``name`` (its second, when it has one); (path, pack key,
    ranges). Blobs are sealed one by one: the trees of the same pack still open."""
    repo, files, _with_trees = layout(env)
    path = str(env.src / name)
    blobs = files[snap][path]
    blob = blobs[min(1, len(blobs) - 1)]
    loc = repo.index.lookup(blob)
    H.flip_byte(pack_path(env.repo, loc.pack_id), loc.offset + loc.length // 2)
    h = loc.pack_id.hex()
    return path, f"data/{h[:2]}/{h}", missing_ranges(repo, blobs, lambda b, _l: b == blob)


def source_files(env) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in env.src.rglob("*") if p.is_file()}


def check_restored(env, target: Path, partial: dict[str, list[list[int]]], before: dict[str, bytes] | None = None):
    """Every file not in ``partial`` bit-exact; each partial one absent (or as it was
    before), its kept copy equal to the source outside the missing ranges and zero inside."""
    before = before or {}
    for path, data in source_files(env).items():
        final = target / path.lstrip("/")
        if path not in partial:
            assert final.read_bytes() == data, f"{path} is not bit-exact"
            continue
        if path in before:
            assert final.read_bytes() == before[path], f"{path}: the existing file was replaced"
        else:
            assert not final.exists(), f"{path}: a partial file was put in place"
        kept = final.with_name(final.name + ".axisor-partial").read_bytes()
        assert len(kept) == len(data)
        expect = bytearray(data)
        for off, length in partial[path]:
            expect[off : off + length] = bytes(length)
        assert kept == bytes(expect), f"{path}: the kept copy differs outside its missing ranges"
        assert not os.access(final.with_name(final.name + ".axisor-partial"), os.X_OK)
    assert not list(target.rglob(".axisor-restore-*")), "temp files left behind"


def partial_json(r) -> dict[str, dict]:
    (outcome,) = r.json["restored"]
    assert outcome["partial_count"] == len(outcome["partial"]) == r.json["partial_count"]
    return {p["path"]: p for p in outcome["partial"]}


# --------------------------------------------------------------------------- a lost pack


def test_lost_pack_makes_exactly_its_files_partial_and_the_rest_bit_exact(world):
    env, (s1, s2) = world
    key, hit = lose_a_pack(env, s2)
    target = env.base / "out"

    r = env.cli("restore", s2, "--target", str(target), json_out=True)
    assert r.code == PARTIAL_EXIT, r
    got = partial_json(r)
    assert set(got) == {str(target) + p for p in hit}
    for path, ranges in hit.items():
        p = got[str(target) + path]
        assert p["missing"] == ranges
        assert p["missing_bytes"] == sum(n for _o, n in ranges)
        assert {"object": key, "reason": "pack is missing"} in p["damaged"]
        assert p["kept_as"] == str(target) + path + ".axisor-partial"
        assert p["existing_left"] is False
        assert p["intact_copies"] == []
    (outcome,) = r.json["restored"]
    assert outcome["validation"]["ok"] is True  # partial files are not counted again as mismatches
    assert outcome["validation"]["partial"] == len(hit)
    assert outcome["files"] == len(source_files(env)) - len(hit)
    check_restored(env, target, hit)
    assert "Traceback" not in r.stderr and f"exit {PARTIAL_EXIT}" in r.stderr

    # The text names the same files, ranges and pack.
    shutil.rmtree(target)
    t = env.cli("restore", s2, "--target", str(target))
    assert t.code == PARTIAL_EXIT, t
    assert f"{len(hit)} PARTIAL" in t.stdout
    for path, ranges in hit.items():
        assert f"PARTIAL {target}{path}:" in t.stdout
        off, n = ranges[0]
        assert f"bytes {off}-{off + n - 1}" in t.stdout
    assert key in t.stdout and "no intact copy found" in t.stdout


# --------------------------------------------------------------------------- a flipped byte


@pytest.mark.parametrize("name", ["big.bin", "mid2.bin"])
def test_flipped_byte_makes_only_that_file_partial(world, name):
    env, (s1, s2) = world
    path, key, ranges = flip_a_blob(env, s2, name)
    target = env.base / "out"
    r = env.cli("restore", s2, "--target", str(target), json_out=True)
    assert r.code == PARTIAL_EXIT, r
    got = partial_json(r)
    assert list(got) == [str(target) + path]
    p = got[str(target) + path]
    assert p["missing"] == ranges and len(ranges) == 1
    assert [d["object"] for d in p["damaged"]] == [key]
    assert "does not authenticate" in p["damaged"][0]["reason"] or "blob" in p["damaged"][0]["reason"]
    check_restored(env, target, {path: ranges})


def test_an_existing_file_at_the_target_is_never_replaced_by_a_partial_one(world):
    env, (s1, s2) = world
    path, _key, ranges = flip_a_blob(env, s2, "mid1.bin")
    target = env.base / "out"
    final = target / path.lstrip("/")
    final.parent.mkdir(parents=True)
    final.write_bytes(b"the copy an operator had before")
    r = env.cli("restore", s2, "--target", str(target), json_out=True)
    assert r.code == PARTIAL_EXIT, r
    p = partial_json(r)[str(final)]
    assert p["existing_left"] is True
    check_restored(env, target, {path: ranges}, before={path: b"the copy an operator had before"})
    assert r.json["restored"][0]["safety_snapshot"]  # it was going to be overwritten: backed up first

    # The same content already there is simply right: nothing to fetch, nothing partial.
    final.write_bytes((env.src / "mid1.bin").read_bytes())
    os.utime(final, ns=((env.src / "mid1.bin").stat().st_atime_ns, (env.src / "mid1.bin").stat().st_mtime_ns))
    r = env.cli("restore", s2, "--target", str(target), json_out=True)
    assert r.code == 0, r
    assert r.json["partial_count"] == 0
    # ...and the leftover of the earlier partial restore is not the file: it stays until the
    # file is written whole by a restore (the plan found it right, so nothing was written).


# --------------------------------------------------------------------------- other locations


def test_a_second_location_is_named_and_restore_from_it_fills_the_partial_files(world):
    env, (s1, s2) = world
    with_offsite(env)
    key, hit = lose_a_pack(env, s2)
    target = env.base / "out"

    r = env.cli("restore", s2, "--target", str(target), json_out=True)
    assert r.code == PARTIAL_EXIT, r
    got = partial_json(r)
    assert set(got) == {str(target) + p for p in hit}
    for p in got.values():
        assert p["intact_copies"] == [{"location": "offsite", "snapshot": s2}]
    check_restored(env, target, hit)

    t = env.cli("restore", s2, "--target", str(env.base / "out-text"))
    assert t.code == PARTIAL_EXIT, t
    assert f"intact copy: location offsite, snapshot {s2[:8]}" in t.stdout
    assert f"axisor-backup restore {s2[:8]} --from offsite --target" in t.stdout

    fill = env.cli("restore", s2, "--from", "offsite", "--target", str(target), json_out=True)
    assert fill.code == 0, fill
    (outcome,) = fill.json["restored"]
    assert outcome["files"] == len(hit)  # exactly the partial files were written
    assert outcome["partial_cleared"] == len(hit)
    assert outcome["validation"]["ok"] is True
    check_restored(env, target, {})
    assert not list(target.rglob("*.axisor-partial"))


def test_another_snapshot_with_the_same_content_elsewhere_is_named_and_fills_it(world):
    env, (s1, s2) = world
    print_text = os.environ.get("SHOW_TEXT")
    with_offsite(env, s1)  # offsite holds only the first snapshot
    path, key, ranges = flip_a_blob(env, s2, "mid3.bin")  # same content in both snapshots
    target = env.base / "out"
    r = env.cli("restore", s2, "--target", str(target), json_out=True)
    assert r.code == PARTIAL_EXIT, r
    p = partial_json(r)[str(target) + path]
    assert p["intact_copies"] == [{"location": "offsite", "snapshot": s1}]

    t = env.cli("restore", s2, "--target", str(env.base / "out-text"))
    assert f"intact copy: location offsite, snapshot {s1[:8]} (another snapshot" in t.stdout
    assert f"--include {path}" in t.stdout
    if print_text:
        print(t.stdout, t.stderr)

    fill = env.cli("restore", s1, "--from", "offsite", "--target", str(target), "--include", path, json_out=True)
    assert fill.code == 0, fill
    assert fill.json["restored"][0]["files"] == 1
    check_restored(env, target, {})


# --------------------------------------------------------------------------- after `repair index`


def test_after_repair_index_dropped_a_lost_pack_its_blobs_in_no_index_make_files_partial(world):
    """The runbook's order: a lost pack, `repair index` (its blobs leave the index), then a
    restore: blobs in no index have no known length, so the span from the first to the end
    of the last one is reported missing (exact when they are one run)."""
    env, (s1, s2) = world
    key, hit = lose_a_pack(env, s2)
    r = env.cli("repair", "index")
    assert r.code == 0, r
    target = env.base / "out"
    r = env.cli("restore", s2, "--target", str(target), json_out=True)
    assert r.code == PARTIAL_EXIT, r
    got = partial_json(r)
    assert set(got) == {str(target) + p for p in hit}
    expect = {}
    for path, ranges in hit.items():
        p = got[str(target) + path]
        first, last = ranges[0], ranges[-1]
        assert p["missing"] == [[first[0], last[0] + last[1] - first[0]]]
        assert all(d["object"].startswith("blob ") and "in no index" in d["reason"] for d in p["damaged"])
        expect[path] = p["missing"]
    check_restored(env, target, expect)


# --------------------------------------------------------------------------- ranges of sparse files


def test_lost_ranges_of_a_sparse_file_are_file_offsets():
    from core.fsmeta.sparse import data_extents
    from core.restore.writer import FileJob as _FileJob
    from core.restore.outcome import merge_ranges

    holes = ((100, 50), (300, 100))  # data runs: 0-99, 150-299, 400-499
    extents = data_extents(500, holes)
    job = _FileJob((b"f",), None, [], extents=extents, starts=[0, 100, 250])
    assert job.file_ranges(0, 10) == [(0, 10)]
    assert job.file_ranges(90, 20) == [(90, 10), (150, 10)]  # straddles the first hole
    assert job.file_ranges(240, 60) == [(290, 10), (400, 50)]
    assert merge_ranges([(10, 5), (0, 10), (30, 1), (15, 2)]) == [(0, 17), (30, 1)]


def test_with_include_ranged_reads_make_the_same_partial_file(world):
    """--include reads ranges, not whole packs: a short or failing range is damage too."""
    env, (s1, s2) = world
    key, hit = lose_a_pack(env, s2)
    path = sorted(hit)[0]
    target = env.base / "out"
    r = env.cli("restore", s2, "--target", str(target), "--include", path, json_out=True)
    assert r.code == PARTIAL_EXIT, r
    got = partial_json(r)
    assert list(got) == [str(target) + path]
    assert got[str(target) + path]["missing"] == hit[path]
    kept = (target / path.lstrip("/")).with_name(Path(path).name + ".axisor-partial").read_bytes()
    expect = bytearray(Path(path).read_bytes())
    for off, n in hit[path]:
        expect[off : off + n] = bytes(n)
    assert kept == bytes(expect)


def cut_a_pack(env, snap: str) -> tuple[str, dict[str, list[list[int]]]]:
    """Cut a data-only pack holding part of ``snap`` in the middle of one of its blobs;
    (pack key, {path: missing ranges}): the blobs before the cut are intact."""
    repo, files, with_trees = layout(env)
    for pack in repo.index.pack_ids():
        if pack in with_trees:
            continue
        offsets = sorted(loc.offset for _b, loc in repo.index.blobs() if loc.pack_id == pack)
        if len(offsets) < 4:
            continue
        cut = offsets[len(offsets) // 2] + 10
        hit = {
            path: missing_ranges(repo, blobs, lambda b, loc: loc.pack_id == pack and loc.offset + loc.length > cut)
            for path, blobs in files[snap].items()
        }
        hit = {p: r for p, r in hit.items() if r}
        if hit:
            os.truncate(pack_path(env.repo, pack), cut)
            h = pack.hex()
            return f"data/{h[:2]}/{h}", hit
    raise AssertionError("no data-only pack with several blobs holds part of the snapshot")


@pytest.mark.parametrize("damage", ["lost", "cut"])
@pytest.mark.parametrize("include", [False, True])
def test_remote_style_reads_whole_packs_or_ranges_make_the_same_partial_files(world, damage, include):
    """Remote backends have no get_sync: whole packs (a full restore) or ranged reads
    (--include) go through the async fetch; a missing or cut pack is damage there too, and
    the blobs before a cut survive."""
    from concurrent.futures import ThreadPoolExecutor

    from core.repository.repository import Repository
    from core.restore.files import FileRestorer
    from core.storage.local import LocalBackend

    env, (s1, s2) = world
    key, hit = lose_a_pack(env, s2) if damage == "lost" else cut_a_pack(env, s2)

    class AsyncOnly:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            if name == "get_sync":
                raise AttributeError(name)
            return getattr(self.inner, name)

    async def run():
        pool = ThreadPoolExecutor(2)
        try:
            repo = await Repository.open(AsyncOnly(LocalBackend(env.repo)), env.passphrase)
            repo.executor = pool
            await repo.load_index()
            snap = await repo.load_snapshot(s2)
            pats = tuple(sorted(hit)) if include else ()
            return await FileRestorer(repo, env.base / "out", executor=pool, include=pats).restore(snap)
        finally:
            pool.shutdown()

    stats = asyncio.run(run())
    got = {pf.path: [list(r) for r in pf.missing] for pf in stats.partial}
    assert got == {str(env.base / "out") + p: r for p, r in hit.items()}
    assert all(key in dict(pf.damaged) for pf in stats.partial)
    if damage == "lost":
        assert all(dict(pf.damaged)[key] == "pack is missing" for pf in stats.partial)
    if not include:
        check_restored(env, env.base / "out", hit)
