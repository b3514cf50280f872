"""A damaged repository and bad input: every failure is named, has its exit code, and
loses nothing.

The repository is damaged on the real filesystem (a flipped byte, a truncated file) and
the real CLI runs in a subprocess, because the exit code and the message are the contract
an operator (and a monitoring script) relies on.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


import hostile_support as H  # noqa: E402  (tests/ is on pytest's pythonpath)

axenv = H.axenv

PACK_4MIB = "pack_size_mib = 4\n"


# --------------------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Two snapshots of one source, several 4 MiB packs; built once, copied per test."""
    base = tmp_path_factory.mktemp("damage-pristine")
    env = H.make_env(base, extra_storage=PACK_4MIB)
    rnd = os.urandom
    (env.src / "big.bin").write_bytes(rnd(10_000_000))  # > 8 MiB: restored window by window
    for i in (1, 2, 3):  # < 8 MiB: restored in one piece
        (env.src / f"mid{i}.bin").write_bytes(rnd(3_000_000))
    (env.src / "docs").mkdir()
    (env.src / "docs" / "a.txt").write_text("alpha\n" * 2000)
    (env.src / "docs" / "b.txt").write_text("beta\n" * 3000)
    env.init_fast(pack_size_mib=4)
    first = env.backup()["snapshots"][0]["id"]
    (env.src / "docs" / "c.txt").write_text("gamma\n")
    second = env.backup()["snapshots"][0]["id"]
    assert first != second
    assert len(env.packs()) >= 3, "the world needs several packs to damage one of them"
    return env, (first, second)


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
        extra_storage=PACK_4MIB,
    )
    shutil.copytree(src_env.repo, env.repo, symlinks=True)
    env.write_config()
    return env, snaps


async def _layout(env):
    """(repo, {snapshot id: {path: blob ids}}, packs holding trees)."""
    repo = await env.open_repo()
    files = {}
    for sid in await repo.snapshot_ids():
        files[sid] = await H.file_blobs(repo, sid)
    return repo, files, H.tree_packs(repo)


def layout(env):
    return asyncio.run(_layout(env))


def pack_path(env, pack_id: bytes) -> Path:
    h = pack_id.hex()
    return env.repo / "data" / h[:2] / h


def pack_key(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"data/{h[:2]}/{h}"


def dependents_of_pack(files: dict, repo, pack_id: bytes) -> set[str]:
    """``short-id:/path`` of every file with a blob in the pack, as verify reports them."""
    out = set()
    for sid, by_path in files.items():
        for path, blobs in by_path.items():
            if any(repo.index.lookup(b).pack_id == pack_id for b in blobs):
                out.add(f"{sid[:8]}:{path}")
    return out


def damage_for(report: dict, obj: str) -> dict:
    found = [d for d in report["damage"] if d["object"] == obj]
    assert found, f"{obj} not named in the report: {json.dumps(report['damage'], indent=1)}"
    return found[0]


# --------------------------------------------------------------------------- (a) a flipped byte


def test_flipped_byte_in_a_data_blob_full_verify_names_blob_pack_snapshots_and_files(world):
    env, (s1, s2) = world
    repo, files, _ = layout(env)
    big = str(env.src / "big.bin")
    blob = files[s1][big][1]
    assert files[s2][big][1] == blob, "both snapshots share big.bin's chunks"
    loc = repo.index.lookup(blob)
    H.flip_byte(pack_path(env, loc.pack_id), loc.offset + loc.length // 2)

    quick = env.cli("verify", json_out=True)
    assert quick.code == 0, quick  # quick verify reads no pack content: by design it passes
    assert quick.json["ok"] is True

    full = env.cli("verify", "--full", json_out=True)
    assert full.code == 6, full
    report = full.json
    assert report["ok"] is False
    d = damage_for(report, f"blob {blob.hex()}")
    assert pack_key(loc.pack_id) in d["reason"]
    assert set(d["snapshots"]) == {s1, s2}
    assert set(d["files"]) == {f"{s1[:8]}:{big}", f"{s2[:8]}:{big}"}
    # The pack itself is named too (its content no longer matches its name).
    assert pack_key(loc.pack_id) in {x["object"] for x in report["damage"]}
    # Nothing else is blamed: the other files are intact.
    blamed = {f for x in report["damage"] for f in x["files"]}
    assert blamed == {f"{s1[:8]}:{big}", f"{s2[:8]}:{big}"}

    text = env.cli("verify", "--full")
    assert text.code == 6, text
    assert f"blob {blob.hex()}" in text.stdout and big in text.stdout and s1[:8] in text.stdout


# --------------------------------------------------------------------------- (b) a truncated pack


def test_truncated_pack_quick_verify_names_pack_snapshots_and_files(world):
    env, (s1, s2) = world
    repo, files, with_trees = layout(env)
    data_only = [p for p in repo.index.pack_ids() if p not in with_trees]
    assert data_only, "expected at least one pack without trees"
    victim = data_only[0]
    expected_files = dependents_of_pack(files, repo, victim)
    assert expected_files, "the victim pack holds somebody's data"
    path = pack_path(env, victim)
    os.truncate(path, path.stat().st_size // 2)

    for args in (("verify",), ("verify", "--full")):
        r = env.cli(*args, json_out=True)
        assert r.code == 6, r
        d = damage_for(r.json, pack_key(victim))
        assert "truncated" in d["reason"] or "trailer" in d["reason"] or "short" in d["reason"], d
        assert set(d["snapshots"]) == {s1, s2}
        assert set(d["files"]) == expected_files


def test_missing_pack_quick_verify_names_it(world):
    env, (s1, s2) = world
    repo, files, with_trees = layout(env)
    victim = next(p for p in repo.index.pack_ids() if p not in with_trees)
    pack_path(env, victim).unlink()
    r = env.cli("verify", json_out=True)
    assert r.code == 6, r
    d = damage_for(r.json, pack_key(victim))
    assert "missing" in d["reason"]
    assert set(d["files"]) == dependents_of_pack(files, repo, victim)


# --------------------------------------------------------------------------- (c) a damaged index


@pytest.mark.parametrize("how", ["truncate", "flip", "empty"])
def test_damaged_index_is_named_by_readers_exit_9_for_writers_and_6_for_verify(world, how):
    env, _ = world
    victim = env.index_files()[0]
    key = f"index/{victim.name}"
    if how == "truncate":
        os.truncate(victim, victim.stat().st_size // 2)
    elif how == "flip":
        H.flip_byte(victim, victim.stat().st_size // 2)
    else:
        os.truncate(victim, 0)

    # Reading carries on without it (naming it); writing stops until `repair index`.
    r = env.cli("snapshots")
    assert r.code == 0, r
    assert key in r.stderr
    assert "Traceback" not in r.stderr

    if how == "truncate":
        r = env.cli("backup")
        assert r.code == 9, r
        assert key in r.stderr and "repair index" in r.stderr

    r = env.cli("verify", json_out=True)
    assert r.code == 6, r  # verify reports damage; it does not die of it
    assert key in {d["object"] for d in r.json["damage"]}


# --------------------------------------------------------------------------- (d) a damaged snapshot


@pytest.mark.parametrize("how", ["flip", "truncate", "renamed", "foreign"])
def test_damaged_snapshot_others_still_listed_and_verify_names_it(world, how):
    env, (s1, s2) = world
    victim = env.repo / "snapshots" / s1
    key = f"snapshots/{s1}"
    if how == "flip":
        H.flip_byte(victim, 40)
    elif how == "truncate":
        os.truncate(victim, 20)
    elif how == "renamed":  # intact bytes under a name that is not theirs
        other = "ab" * 32
        victim.rename(victim.with_name(other))
        key = f"snapshots/{other}"
    else:  # a file some other program dropped there
        victim.rename(victim.with_name("notes.txt"))
        key = "snapshots/notes.txt"

    r = env.cli("snapshots", json_out=True)
    assert r.code == 0, r
    assert [s["id"] for s in r.json["snapshots"]] == [s2]
    assert [d["object"] for d in r.json["damaged"]] == [key]
    assert key in r.stderr and "warning" in r.stderr

    r = env.cli("verify", json_out=True)
    assert r.code == 6, r
    assert key in {d["object"] for d in r.json["damage"]}
    assert r.json["snapshots_checked"] == 1

    # The intact snapshot still restores.
    target = env.base / "out"
    r = env.cli("restore", s2, "--target", str(target))
    assert r.code == 0, r
    restored = target / str(env.src).lstrip("/")
    assert (restored / "docs" / "c.txt").read_text() == "gamma\n"


def test_verify_of_a_named_damaged_snapshot_reports_it_exit_6(world):
    """docs/CLI.md: verify exits 0 when no damage is found and 6 otherwise, also with
    SNAPSHOT references; the damaged manifest is named in the report."""
    env, (s1, s2) = world
    H.flip_byte(env.repo / "snapshots" / s1, 40)
    for ref in (s1, s1[:8]):
        r = env.cli("verify", ref, json_out=True)
        assert r.code == 6, r
        assert f"snapshots/{s1}" in {d["object"] for d in r.json["damage"]}
    r = env.cli("verify", s2, json_out=True)  # the intact one still verifies on its own
    assert r.code == 0, r


def test_verify_latest_with_a_damaged_index_reports_it_exit_6(world):
    env, (s1, s2) = world
    victim = env.index_files()[0]
    os.truncate(victim, victim.stat().st_size // 2)
    r = env.cli("verify", "latest", json_out=True)
    assert r.code == 6, r
    assert f"index/{victim.name}" in {d["object"] for d in r.json["damage"]}


MALFORMED_MANIFESTS = {
    # Authentic bytes (sealed with the repository key) whose content is not a usable
    # manifest: written by a buggy or newer tool, or crafted by someone holding the key.
    "tree-not-hex": {"tree": "not-a-hex-id"},
    "time-not-iso": {"time": "yesterday"},
    "time-without-offset": {"time": "2026-01-01T00:00:00"},
    "time-not-text": {"time": 1767225600},
}


@pytest.mark.parametrize("case", sorted(MALFORMED_MANIFESTS))
def test_malformed_manifest_is_reported_as_damaged_not_a_crash(world, case):
    env, (s1, s2) = world

    async def craft() -> str:
        from core.repository.snapshot import Snapshot

        repo = await env.open_repo()
        good = await repo.load_snapshot(s2)
        fields = {
            "time": good.time,
            "source": good.source,
            "paths": good.paths,
            "tree": good.tree,
            "backup_set": "crafted",
        }
        fields.update(MALFORMED_MANIFESTS[case])
        return await repo.save_snapshot(Snapshot(**fields))

    bad = asyncio.run(craft())
    key = f"snapshots/{bad}"

    r = env.cli("snapshots", json_out=True)
    assert r.code == 0, r
    assert sorted(x["id"] for x in r.json["snapshots"]) == sorted([s1, s2])
    assert [d["object"] for d in r.json["damaged"]] == [key]

    r = env.cli("verify", json_out=True)
    assert r.code == 6, r
    assert key in {d["object"] for d in r.json["damage"]}

    r = env.cli("restore", bad, "--target", str(env.base / "out"))
    assert r.code == 9, r
    assert key in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- (e) restore of damage


def _restore_damaged(env, snap: str, kind: str, damage: str) -> tuple[str, str]:
    """Damage one blob of a file of ``kind`` (small: restored in one piece; large: window by
    window) that sits in a pack without trees, so the restore gets as far as the file.
    Return (file path, pack key)."""
    repo, files, with_trees = layout(env)
    names = ("mid1.bin", "mid2.bin", "mid3.bin") if kind == "small" else ("big.bin",)
    for name in names:
        path = str(env.src / name)
        for b in files[snap][path]:
            loc = repo.index.lookup(b)
            if loc.pack_id not in with_trees:
                pack = pack_path(env, loc.pack_id)
                if damage == "flip":
                    H.flip_byte(pack, loc.offset + loc.length // 2)
                else:
                    os.truncate(pack, loc.offset + 10)
                return path, pack_key(loc.pack_id)
    raise AssertionError(f"no blob of {names} sits in a data-only pack")


@pytest.mark.parametrize(
    "kind,damage",
    [
        ("small", "flip"),
        ("large", "flip"),
        ("small", "truncate"),
        ("large", "truncate"),
    ],
)
def test_restore_of_damaged_pack_exits_23_naming_it_and_writes_no_half_file(world, kind, damage):
    """Damaged file content no longer stops the restore (tests/core/test_restore_partial.py
    covers the rest): the file is reported partial, exit 23, and never put over its name."""
    env, (s1, s2) = world
    victim, key = _restore_damaged(env, s2, kind, damage)
    target = env.base / "out"
    final = target / victim.lstrip("/")
    final.parent.mkdir(parents=True)
    final.write_bytes(b"the copy an operator had before")

    r = env.cli("restore", s2, "--target", str(target))
    assert r.code == 23, r
    assert key in r.stdout and f"PARTIAL {final}" in r.stdout
    assert "Traceback" not in r.stderr
    # The file at the final path is untouched: never half-written.
    assert final.read_bytes() == b"the copy an operator had before"
    leftovers = sorted(str(p) for p in target.rglob(".axisor-restore-*"))
    assert leftovers == [], f"restore left temp files behind: {leftovers}"
    # Everything else is there.
    assert (target / str(env.src).lstrip("/") / "docs" / "c.txt").read_text() == "gamma\n"


def test_restore_into_fresh_target_leaves_no_damaged_file(world):
    env, (s1, s2) = world
    victim, key = _restore_damaged(env, s2, "small", "flip")
    target = env.base / "fresh"
    r = env.cli("restore", s2, "--target", str(target))
    assert r.code == 23, r
    assert key in r.stdout
    final = target / victim.lstrip("/")
    assert not final.exists()
    assert final.with_name(final.name + ".axisor-partial").exists()


def test_damaged_tree_blob_names_the_folder_and_restore_exits_9(world):
    env, (s1, s2) = world
    repo, files, with_trees = layout(env)

    async def docs_tree():
        from core.restore.walk import walk

        snap = await repo.load_snapshot(s2)
        async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
            if parts[-1] == b"docs":
                return node.subtree

    tree_id = asyncio.run(docs_tree())
    loc = repo.index.lookup(tree_id)
    H.flip_byte(pack_path(env, loc.pack_id), loc.offset + loc.length // 2)

    r = env.cli("verify", "--full", json_out=True)
    assert r.code == 6, r
    d = damage_for(r.json, f"blob {tree_id.hex()}")
    assert s2 in d["snapshots"]
    assert f"{s2[:8]}:{env.src / 'docs'} (folder)" in d["files"]

    r = env.cli("ls", s2)
    assert r.code == 9, r
    assert pack_key(loc.pack_id) in r.stderr
    r = env.cli("restore", s2, "--target", str(env.base / "out"))
    assert r.code == 9, r
    assert pack_key(loc.pack_id) in r.stderr


def test_only_key_file_damaged_exits_9_naming_it(world):
    env, _ = world
    (key_file,) = (env.repo / "keys").iterdir()
    os.truncate(key_file, key_file.stat().st_size // 2)
    r = env.cli("snapshots")
    assert r.code == 9, r
    assert f"keys/{key_file.name}" in r.stderr
    assert "Traceback" not in r.stderr


def test_one_damaged_key_file_does_not_lock_out_the_others(world):
    env, _ = world
    (old_key,) = (env.repo / "keys").iterdir()
    e = env.env()
    e["AXISOR_BACKUP_NEW_PASSPHRASE"] = "second passphrase"
    p = subprocess.run(
        env.argv("key", "add"), cwd=H.ROOT, env=e, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert p.returncode == 0, p.stderr
    H.flip_byte(old_key, 20)  # breaks the JSON of the first key file
    r = env.cli("snapshots", json_out=True, passphrase="second passphrase")
    assert r.code == 0, r
    assert len(r.json["snapshots"]) == 2


# --------------------------------------------------------------------------- (f)-(h) opening


def test_unknown_repository_version_exits_8_naming_the_version(world):
    env, _ = world
    cfg = env.repo / "config"
    d = json.loads(cfg.read_bytes())
    d["version"] = 99
    cfg.write_text(json.dumps(d))
    for args in (("snapshots",), ("backup",)):
        r = env.cli(*args)
        assert r.code == 8, r
        assert "version 99" in r.stderr
        assert "Traceback" not in r.stderr
    assert len(env.snapshot_files()) == 2


def test_missing_repository_exits_3(axenv):
    (axenv.src / "f").write_text("x")
    for args in (("backup",), ("restore", "latest", "--target", str(axenv.base / "t"))):
        r = axenv.cli(*args)
        assert r.code == 3, r
        assert str(axenv.repo) in r.stderr and "init" in r.stderr
    assert not axenv.repo.exists(), "a failed command must not create the repository"
    assert not (axenv.base / "t").exists()


def test_empty_folder_is_not_a_repository_exit_3(axenv):
    axenv.repo.mkdir()
    r = axenv.cli("snapshots")
    assert r.code == 3, r


def test_wrong_passphrase_exits_4_and_does_not_echo_it(world):
    env, _ = world
    wrong = "not-the-passphrase-4711"
    for args in (("backup",), ("verify",)):
        r = env.cli(*args, passphrase=wrong)
        assert r.code == 4, r
        assert "wrong passphrase" in r.stderr
        assert wrong not in r.stderr + r.stdout
    assert env.lock_files() == []


# --------------------------------------------------------------------------- (i) config


def test_malformed_config_exits_2_naming_each_key_path(axenv):
    axenv.cfg.write_text('[application]\nuser_data = "not-a-list"\n[storage]\nlocal_path = 5\npack_size_mib = 1\n')
    r = axenv.cli("snapshots")
    assert r.code == 2, r
    for key in ("application.user_data", "storage.local_path", "storage.pack_size_mib"):
        assert key in r.stderr, key
    r = axenv.cli("config", "check", json_out=True)
    assert r.code == 2, r
    assert {p["key"] for p in r.json["problems"]} >= {
        "application.user_data",
        "storage.local_path",
        "storage.pack_size_mib",
    }


def test_toml_syntax_error_exits_2_naming_the_file(axenv):
    axenv.cfg.write_text("[storage\nlocal_path = '/x'\n")
    r = axenv.cli("backup")
    assert r.code == 2, r
    assert str(axenv.cfg) in r.stderr and "TOML" in r.stderr


# --------------------------------------------------------------------------- (j) a missing source


def test_missing_source_path_exits_11_naming_it_and_writes_no_snapshot(world):
    env, _ = world
    missing = env.base / "no-such-folder"
    env.write_config(sources=[env.src, missing])
    packs_before = env.packs()
    r = env.cli("backup")
    assert r.code == 11, r
    assert str(missing) in r.stderr
    assert "Traceback" not in r.stderr
    assert len(env.snapshot_files()) == 2
    assert env.packs() == packs_before
    assert env.lock_files() == [], "the backup's lock must be released"
    assert env.tmp_files() == []
