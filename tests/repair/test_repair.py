"""`axisor-backup repair index|packs|snapshots`: damage is planted on the real filesystem
(a lost, truncated or bit-flipped pack, a damaged index file, a lost tree) and the real CLI
runs in a subprocess, because exit codes and messages are the contract.

Each test ends the way an operator's night ends: verify clean, and the files that were
not lost restore bit-exact."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

import hostile_support as H  # noqa: E402  (tests/ is on pytest's pythonpath)

PACK_4MIB = "pack_size_mib = 4\n"


# --------------------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One snapshot of one source over several 4 MiB packs; built once, copied per test."""
    base = tmp_path_factory.mktemp("repair-pristine")
    env = H.make_env(base, extra_storage=PACK_4MIB)
    (env.src / "big.bin").write_bytes(os.urandom(10_000_000))
    for i in (1, 2, 3):
        (env.src / f"mid{i}.bin").write_bytes(os.urandom(3_000_000))
    (env.src / "docs").mkdir()
    (env.src / "docs" / "a.txt").write_text("alpha\n" * 2000)
    (env.src / "docs" / "b.txt").write_text("beta\n" * 3000)
    env.init_fast(pack_size_mib=4)
    first = env.backup()["snapshots"][0]["id"]
    assert len(env.packs()) >= 3
    return env, first


@pytest.fixture
def world(pristine, tmp_path):
    """A private copy of the repository (the source folder is shared, read-only)."""
    src_env, snap = pristine
    env = H.AxEnv(
        base=tmp_path,
        src=src_env.src,
        repo=tmp_path / "repo",
        cfg=tmp_path / "config.toml",
        sources=[src_env.src],
        extra_storage=PACK_4MIB,
    )
    shutil.copytree(src_env.repo, env.repo, symlinks=True)
    env.write_config()
    return env, snap, src_env.src


def pack_path(env, pack_id: bytes) -> Path:
    h = pack_id.hex()
    return env.repo / "data" / h[:2] / h


def pack_key(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"data/{h[:2]}/{h}"


async def _layout(env, sid):
    repo = await env.open_repo()
    return repo, await H.file_blobs(repo, sid), H.tree_packs(repo)


def layout(env, sid):
    return asyncio.run(_layout(env, sid))


def data_pack(repo, files, with_trees) -> tuple[bytes, set[str]]:
    """A pack without trees, and the paths of the files with a blob in it."""
    victim = next(p for p in repo.index.pack_ids() if p not in with_trees)
    hit = {path for path, blobs in files.items() if any(repo.index.lookup(b).pack_id == victim for b in blobs)}
    assert hit
    return victim, hit


def snapshot_of_repo(root: Path) -> dict[str, bytes]:
    """Every file of the repository (name -> bytes), to prove a dry run changed nothing."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).parts[0] == "locks"
    }


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def restore_and_compare(env, ref: str, src: Path, target: Path, skip: set[str] = frozenset()) -> None:
    r = env.cli("restore", ref, "--target", str(target), "--json", timeout=300)
    assert r.code == 0, r
    for p in src.rglob("*"):
        if p.is_file() and str(p) not in skip:
            restored = target / str(p).lstrip("/")
            assert restored.is_file(), f"{p} was not restored"
            assert digest(restored) == digest(p), f"{p} differs after restore"


# --------------------------------------------------------------------------- lost pack


def test_lost_pack_repair_index_then_backup_heals_and_history_is_repaired(world, tmp_path):
    env, s1, src = world
    repo, files, with_trees = layout(env, s1)
    victim, hit = data_pack(repo, files, with_trees)
    pack_path(env, victim).unlink()

    before = snapshot_of_repo(env.repo)
    dry = env.cli("repair", "index", "--dry-run", json_out=True)
    assert dry.code == 0, dry
    loc = dry.json["locations"][0]
    assert loc["packs"]["missing"] == [pack_key(victim)]
    assert loc["blobs"]["lost"] > 0
    assert snapshot_of_repo(env.repo) == before, "a dry run changed the repository"

    r = env.cli("repair", "index")
    assert r.code == 0, r
    assert pack_key(victim) in r.stdout and "repair snapshots" in r.stdout
    again = env.cli("repair", "index", json_out=True)
    assert again.code == 0 and again.json["locations"][0]["changed"] is False, again

    # Healing: the next backup stores the lost blobs again (the files are still on disk).
    b = env.backup()
    s2 = b["snapshots"][0]["id"]
    assert b["snapshots"][0]["summary"]["data_added"] > 0, b
    v = env.cli("verify", "--full", s2, json_out=True)
    assert v.code == 0, v
    # The old snapshot shares the blob ids, which are stored again: it is whole again too.
    v = env.cli("verify", "--full", json_out=True)
    assert v.code == 0, v
    restore_and_compare(env, s2, src, tmp_path / "restored")


def test_lost_pack_backup_without_repair_still_stores_the_lost_blobs(world):
    """Even before anyone runs repair, a backup never references a blob whose pack is gone."""
    env, s1, _src = world
    repo, files, with_trees = layout(env, s1)
    victim, _hit = data_pack(repo, files, with_trees)
    pack_path(env, victim).unlink()
    b = env.backup()
    assert b["snapshots"][0]["summary"]["data_added"] > 0, b
    # The old index files still name the lost copies (readers take the first one they
    # loaded); `repair index` drops them, and then everything verifies without another backup.
    assert env.cli("repair", "index").code == 0
    v = env.cli("verify", "--full", json_out=True)
    assert v.code == 0, v


def test_lost_pack_repair_snapshots_records_losses_and_restores_the_rest(world, tmp_path):
    env, s1, src = world
    repo, files, with_trees = layout(env, s1)
    victim, hit = data_pack(repo, files, with_trees)
    pack_path(env, victim).unlink()

    pr = env.cli("prune")
    assert pr.code == 9, pr
    assert "repair index" in pr.stderr + pr.stdout

    assert env.cli("repair", "index").code == 0
    before = snapshot_of_repo(env.repo)
    dry = env.cli("repair", "snapshots", "--dry-run", json_out=True)
    assert dry.code == 0, dry
    assert snapshot_of_repo(env.repo) == before, "a dry run changed the repository"
    planned = dry.json["locations"][0]["repaired"]
    assert [f["id"] for f in planned] == [s1]
    assert {x["path"] for x in planned[0]["lost"]} == hit

    r = env.cli("repair", "snapshots", json_out=True)
    assert r.code == 0, r
    fixed = r.json["locations"][0]["repaired"][0]
    new = fixed["new_id"]
    assert new and new != s1
    assert [p.name for p in env.snapshot_files()] == [new], "the original is forgotten once the new one is written"

    show = env.cli("show", new, json_out=True)
    assert show.code == 0, show
    manifest = show.json
    assert "repaired" in manifest["tags"]
    assert manifest["metadata"]["repaired"]["original"] == s1
    assert all(any(path in w for w in manifest["warnings"]) for path in hit), manifest["warnings"]
    text = env.cli("repair", "snapshots", "--dry-run")
    assert "none references lost data" in text.stdout, text

    v = env.cli("verify", "--full", json_out=True)
    assert v.code == 0, v
    restore_and_compare(env, new, src, tmp_path / "restored", skip=hit)
    for path in hit:
        assert not (tmp_path / "restored" / path.lstrip("/")).exists(), f"{path} was lost but restored"
    # With the damage repaired, prune works again.
    assert env.cli("prune").code == 0


def test_repair_snapshots_truncate_keeps_the_intact_prefix(world, tmp_path):
    env, s1, src = world
    repo, files, with_trees = layout(env, s1)
    big = str(src / "big.bin")
    blobs = files[big]
    assert len(blobs) >= 3
    first_pack = repo.index.lookup(blobs[0]).pack_id
    # A later pack of big.bin that holds no tree (which packs hold trees depends on the
    # order the walk finishes folders in): losing it truncates big.bin and nothing else.
    later = [repo.index.lookup(b).pack_id for b in blobs[1:]]
    candidates = [p for p in later if p != first_pack and p not in with_trees]
    assert candidates, "the world needs big.bin to span packs"
    pack_path(env, candidates[-1]).unlink()
    assert env.cli("repair", "index").code == 0
    r = env.cli("repair", "snapshots", "--truncate", json_out=True)
    assert r.code == 0, r
    fixed = r.json["locations"][0]["repaired"][0]
    lost = {x["path"]: x for x in fixed["lost"]}
    assert lost[big]["what"] == "truncated"
    assert env.cli("verify", json_out=True).code == 0
    target = tmp_path / "restored"
    assert env.cli("restore", fixed["new_id"], "--target", str(target)).code == 0
    restored = (target / big.lstrip("/")).read_bytes()
    original = Path(big).read_bytes()
    assert 0 < len(restored) < len(original) and original.startswith(restored)


# --------------------------------------------------------------------------- truncated, flipped


def test_truncated_pack_repair_index_salvages_the_blobs_before_the_cut(world, tmp_path):
    env, s1, src = world
    repo, files, with_trees = layout(env, s1)
    victim, _hit = data_pack(repo, files, with_trees)
    entries = sorted((loc.offset, loc.length, bid) for bid, loc in repo.index.blobs() if loc.pack_id == victim)
    assert len(entries) >= 2
    cut = entries[-1][0] + 10  # inside the last blob: every earlier one is intact
    os.truncate(pack_path(env, victim), cut)

    r = env.cli("repair", "index", json_out=True)
    assert r.code == 0, r
    loc = r.json["locations"][0]
    assert [d["object"] for d in loc["packs"]["damaged"]] == [pack_key(victim)]
    assert loc["blobs"]["salvaged"] == len(entries) - 1
    assert loc["blobs"]["lost"] == 1
    assert not pack_path(env, victim).exists()
    assert env.cli("repair", "snapshots").code == 0
    v = env.cli("verify", "--full", json_out=True)
    assert v.code == 0, v


def test_flipped_byte_repair_packs_salvages_the_other_blobs(world, tmp_path):
    env, s1, src = world
    repo, files, with_trees = layout(env, s1)
    big = str(src / "big.bin")
    blob = files[big][1]
    loc = repo.index.lookup(blob)
    victim = loc.pack_id
    count = sum(1 for _, x in repo.index.blobs() if x.pack_id == victim)
    H.flip_byte(pack_path(env, victim), loc.offset + loc.length // 2)
    assert env.cli("verify", "--full").code == 6

    assert env.cli("repair", "index", json_out=True).json["locations"][0]["changed"] is False, (
        "repair index reads no pack whose size is right"
    )
    before = snapshot_of_repo(env.repo)
    dry = env.cli("repair", "packs", "--dry-run", json_out=True)
    assert dry.code == 0, dry
    assert snapshot_of_repo(env.repo) == before
    r = env.cli("repair", "packs", victim.hex()[:12], json_out=True)
    assert r.code == 0, r
    out = r.json["locations"][0]
    assert [d["object"] for d in out["packs"]["damaged"]] == [pack_key(victim)]
    assert out["blobs"]["salvaged"] == count - 1 and out["blobs"]["lost_ids"] == [blob.hex()]
    r = env.cli("repair", "snapshots", json_out=True)
    assert r.code == 0, r
    fixed = r.json["locations"][0]["repaired"][0]
    assert [x["path"] for x in fixed["lost"]] == [big]
    assert env.cli("verify", "--full").code == 0
    restore_and_compare(env, fixed["new_id"], src, tmp_path / "restored", skip={big})


# --------------------------------------------------------------------------- index files, trees


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_index_file_repair_index_rebuilds_it_from_the_packs(world, how):
    env, s1, _src = world
    victim = env.index_files()[0]
    if how == "truncate":
        os.truncate(victim, victim.stat().st_size // 2)
    else:
        H.flip_byte(victim, victim.stat().st_size // 2)
    r = env.cli("snapshots", json_out=True)
    assert r.code == 0, r  # one bad index file no longer blocks reading the catalog
    assert f"index/{victim.name}" in r.stderr
    b = env.cli("backup")
    assert b.code == 9 and "repair index" in b.stderr, b

    r = env.cli("repair", "index", json_out=True)
    assert r.code == 0, r
    loc = r.json["locations"][0]
    assert [d["object"] for d in loc["index_files"]["damaged"]] == [f"index/{victim.name}"]
    assert loc["blobs"]["lost"] == 0 and loc["packs"]["reindexed"]
    # Gone, or (a rebuilt file with the same entries has the same name) holding sound bytes:
    # verify reads every index file.
    assert env.cli("verify", "--full").code == 0
    assert env.cli("backup").code == 0


def test_a_rebuilt_index_file_that_takes_the_damaged_ones_name_replaces_it(tmp_path):
    """Index files are named by their content: one small backup has one pack and one index
    file, and the index rebuilt from that pack has the very same entries, so the same name.
    Its put met the damaged bytes ("already stored"), repair reported success, and the
    damaged file stayed: the next backup refused again (exit 9)."""
    env = H.make_env(tmp_path)
    (env.src / "one.txt").write_text("one pack, one index file\n" * 100)
    env.init_fast()
    env.backup()
    (victim,) = env.index_files()
    H.flip_byte(victim, victim.stat().st_size // 2)
    assert env.cli("backup").code == 9
    r = env.cli("repair", "index", json_out=True)
    assert r.code == 0, r
    assert [d["object"] for d in r.json["locations"][0]["index_files"]["damaged"]] == [f"index/{victim.name}"]
    assert env.index_files() == [victim]  # the same name, now holding the rebuilt, sound entries
    assert env.cli("verify", "--full").code == 0
    assert env.cli("backup").code == 0


def test_lost_tree_folder_is_emptied_and_recorded(world, tmp_path):
    env, s1, src = world
    repo, files, with_trees = layout(env, s1)
    snap = asyncio.run(repo.load_snapshot(s1))

    async def docs_tree():
        tree = await repo.load_tree(bytes.fromhex(snap.tree))
        node = None
        for part in [*Path(str(src)).parts[1:], "docs"]:
            node = tree.find(part.encode())
            tree = await repo.load_tree(node.subtree)
        return node.subtree

    docs = asyncio.run(docs_tree())
    # Plant the loss in the index: rewrite it without the docs tree (its pack also holds
    # other trees, which must survive).
    from core.repair.index import store_index

    async def drop_blob():
        r = await env.open_repo()
        packs = {}
        for key in [f"index/{p.name}" for p in env.index_files()]:
            for pid, size, entries in await r.read_index_file(key):
                packs[pid] = (pid, size, [e for e in entries if e.id != docs])
            await r.backend.delete(key)
        await store_index(r, list(packs.values()))

    asyncio.run(drop_blob())
    r = env.cli("repair", "snapshots", json_out=True)
    assert r.code == 0, r
    fixed = r.json["locations"][0]["repaired"][0]
    assert [(x["path"], x["what"]) for x in fixed["lost"]] == [(f"{src}/docs", "folder")]
    assert env.cli("verify").code == 0
    target = tmp_path / "restored"
    assert env.cli("restore", fixed["new_id"], "--target", str(target)).code == 0
    assert (target / str(src).lstrip("/") / "docs").is_dir()
    assert not any((target / str(src).lstrip("/") / "docs").iterdir())


# --------------------------------------------------------------------------- leftovers


def test_old_temporary_files_go_young_ones_stay_in_prune_and_repair(world):
    env, _s1, _src = world
    old = [env.repo / "data" / "ab" / ".tmp-old1", env.repo / "snapshots" / ".tmp-old2"]
    young = env.repo / "data" / "cd" / ".tmp-young"
    for p in old + [young]:
        p.write_bytes(b"x" * 1000)
    past = time.time() - 7 * 3600
    for p in old:
        os.utime(p, (past, past))
    r = env.cli("repair", "index", "--dry-run", json_out=True)
    assert sorted(r.json["locations"][0]["temporary"]["removed"]) == sorted(str(p.relative_to(env.repo)) for p in old)
    assert all(p.exists() for p in old)
    pr = env.cli("prune", json_out=True)
    assert pr.code == 0, pr
    assert not any(p.exists() for p in old) and young.exists()
    assert pr.json["locations"][0]["temporary"]["removed_bytes"] == 2000
    os.utime(young, (past, past))
    assert env.cli("repair", "index").code == 0
    assert not young.exists()


def test_lost_tree_pack_the_next_backup_still_runs_and_heals(world, tmp_path):
    """A pack holding the parent snapshot's trees is lost: the incremental backup cannot
    compare with the parent's folders, so it reads them again, and stores every tree anew."""
    env, s1, src = world
    repo, _files, with_trees = layout(env, s1)
    for pid in with_trees:
        pack_path(env, pid).unlink()
    assert env.cli("repair", "index").code == 0
    b = env.backup()
    s2 = b["snapshots"][0]["id"]
    assert env.cli("verify", "--full", s2).code == 0
    restore_and_compare(env, s2, src, tmp_path / "restored")
    r = env.cli("repair", "snapshots", json_out=True)
    assert r.code == 0, r
    # Trees hold folder times, so the old ones rarely come back: the old snapshot lost its
    # root and is forgotten, named; the new one is whole and untouched.
    out = r.json["locations"][0]
    assert [f["id"] for f in out["forgotten"]] == [s1] and out["repaired"] == []
    assert [p.name for p in env.snapshot_files()] == [s2]
    assert env.cli("verify", "--full").code == 0


def test_runbook_a_pack_was_lost(world, tmp_path):
    """docs/OPERATIONS.md, "A pack was lost", run as written: one pack deleted, a byte of
    another rotted; PACK_ID is the rotten pack as `verify --full` names it."""
    import re
    import shlex

    env, s1, src = world
    repo, files, with_trees = layout(env, s1)
    data_packs = [p for p in repo.index.pack_ids() if p not in with_trees]
    assert len(data_packs) >= 2
    lost, rotten = data_packs[0], data_packs[1]
    pack_path(env, lost).unlink()
    H.flip_byte(pack_path(env, rotten), 100)
    text = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    start = text.index("\n## A pack was lost\n")
    end = text.find("\n## ", start + 1)
    (block,) = re.findall(r"```sh\n(.*?)```", text[start : end if end != -1 else None], re.S)
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    for n, line in enumerate(lines):
        argv = shlex.split(line, comments=True)
        assert argv[0] == "axisor-backup"
        args = [pack_key(rotten) if a == "PACK_ID" else a for a in argv[1:]]
        r = env.cli(*args, timeout=300)
        assert r.code == (6 if n == 0 else 0), r
        if n == 0:
            assert pack_key(lost) in r.stdout and pack_key(rotten) in r.stdout
    newest = sorted(p.name for p in env.snapshot_files())
    assert s1 in newest, "the old snapshot was healed by the backup, not rewritten"
    restore_and_compare(env, s1, src, tmp_path / "restored")
