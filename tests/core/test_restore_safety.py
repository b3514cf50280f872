"""Restores never write outside their target, whatever a (crafted) snapshot says and
whatever already sits in the target.

Crafted snapshots are built with the real Repository API, exactly as an attacker holding
the repository key could: trees with names like ``..``, ``a/b``, empty, NUL, absolute, and
one name twice (a symlink to the outside plus a folder of the same name).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.errors import RestoreRefused
from core.repository.format import BlobType
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE, SYMLINK, Node, Tree


import hostile_support as H  # noqa: E402  (tests/ is on pytest's pythonpath)

PAYLOAD = b"written by a crafted snapshot\n"
NOW = time.time_ns()


# --------------------------------------------------------------------------- crafting


def file_node(name: bytes, blob: bytes) -> Node:
    return Node(
        name=name,
        type=FILE,
        mode=stat.S_IFREG | 0o644,
        uid=os.getuid(),
        gid=os.getgid(),
        mtime_ns=NOW,
        size=len(PAYLOAD),
        content=(blob,),
        nlink=1,
    )


def dir_node(name: bytes, subtree: bytes) -> Node:
    return Node(
        name=name, type=DIR, mode=stat.S_IFDIR | 0o755, uid=os.getuid(), gid=os.getgid(), mtime_ns=NOW, subtree=subtree
    )


def link_node(name: bytes, target: bytes) -> Node:
    return Node(
        name=name,
        type=SYMLINK,
        mode=stat.S_IFLNK | 0o777,
        uid=os.getuid(),
        gid=os.getgid(),
        mtime_ns=NOW,
        target=target,
    )


class Crafter:
    """Builds trees bottom-up from a nested spec and commits them as a snapshot.

    spec: list of ("file", name) | ("dir", name, [children]) | ("link", name, target)
          | ("raw", name, blob id -> Node)
    """

    def __init__(self, repo) -> None:
        self.repo = repo
        self.blob = b""

    async def tree(self, spec: list) -> bytes:
        nodes = []
        for item in spec:
            kind, name = item[0], item[1]
            if kind == "file":
                nodes.append(file_node(name, self.blob))
            elif kind == "dir":
                nodes.append(dir_node(name, await self.tree(item[2])))
            elif kind == "link":
                nodes.append(link_node(name, item[2]))
            elif kind == "raw":  # item[2](data blob id) -> any Node, even an ill-typed one
                nodes.append(item[2](self.blob))
        # Tree.encode sorts by name; the sort is stable, so duplicates keep this order.
        return await self.repo.save_tree(Tree(nodes))


async def _craft(env, specs: list[list]) -> list[str]:
    repo = await env.open_repo()
    c = Crafter(repo)
    c.blob = await repo.save_blob(BlobType.DATA, PAYLOAD)
    roots = [await c.tree(spec) for spec in specs]
    await repo.flush()
    ids = []
    for i, root in enumerate(roots):
        snap = Snapshot(
            time=datetime.now(timezone.utc).isoformat(),
            source="application/user_data",
            paths=(str(env.src),),
            tree=root.hex(),
            type="full",
            backup_set=f"crafted{i}",
            tags=(f"crafted-{i}",),
        )
        ids.append(await repo.save_snapshot(snap))
    return ids


def craft(env, *specs: list) -> list[str]:
    return asyncio.run(_craft(env, list(specs)))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One repository for the whole module (opening costs a key derivation), holding one
    honest backup of a small source."""
    env = H.make_env(tmp_path_factory.mktemp("restore-safety"))
    (env.src / "sub").mkdir()
    (env.src / "sub" / "f.txt").write_text("payload\n")
    (env.src / "top.txt").write_text("top\n")
    env.init_fast()
    sid = env.backup()["snapshots"][0]["id"]
    return env, sid


PAYLOAD_NAME = "pwned"


def _escape() -> list:
    """A spec that, followed naively from the target, ends at <target>/../outside/pwned."""
    return [("dir", b"outside", [("file", b"pwned")])]


def unsafe_specs(out: Path) -> dict[str, list]:
    """``out``: an absolute folder that symlinks and absolute names point at."""
    o = os.fsencode(str(out))
    return {
        "dotdot-dir": [("dir", b"..", _escape())],
        "nested-dotdot": [("dir", b"ok", [("dir", b"..", [("dir", b"..", _escape())])])],
        "dotdot-slash-name": [("file", b"../outside/pwned")],
        "slash-name": [("file", b"a/b"), ("dir", b"a", [])],
        "absolute-name": [("file", o + b"/pwned")],
        "empty-name": [("file", b""), ("file", b"pwned-ok")],
        "dot-name": [("dir", b".", [("file", b"pwned")])],
        "dotdot-file": [("dir", b"ok", [("file", b"..")])],
        "nul-name": [("file", b"pwn\x00ed")],
        "dup-symlink-first": [("link", b"x", o), ("dir", b"x", [("file", b"pwned")])],
        "dup-dir-first": [("dir", b"x", [("file", b"pwned")]), ("link", b"x", o)],
        "dup-deep": [("dir", b"d", [("link", b"x", o), ("dir", b"x", [("file", b"pwned")])])],
        "dup-file-and-dir": [("file", b"x"), ("dir", b"x", [("file", b"pwned")])],
    }


UNSAFE_CASES = sorted(unsafe_specs(Path("/x")))


@pytest.fixture(scope="module")
def crafted(shared, tmp_path_factory):
    """Every crafted snapshot, made in one go: {case: snapshot id}, and the absolute
    sentinel folder their symlinks and absolute names point at."""
    env, _ = shared
    out = tmp_path_factory.mktemp("outside-abs")
    specs = unsafe_specs(out)
    specs["safe"] = [("dir", b"ok", [("file", b"pwned-inside")]), ("link", b"x", os.fsencode(str(out)))]
    specs["chain-a"] = [("link", b"x", os.fsencode(str(out)))]
    specs["chain-b"] = [("dir", b"x", [("file", b"pwned")])]
    for case, spec in ILL_TYPED.items():
        specs[case] = spec
    names = list(specs)
    ids = craft(env, *(specs[n] for n in names))
    return dict(zip(names, ids)), out


@pytest.fixture
def arena(shared, crafted, tmp_path):
    """The shared repository, a restore target that does not exist yet, and empty
    sentinel folders that must stay empty: one beside the target, one absolute."""
    env, _ = shared
    ids, abs_outside = crafted
    target = tmp_path / "target"
    outside = tmp_path / "outside"
    outside.mkdir()
    yield env, target, outside, ids
    assert os.listdir(abs_outside) == [], f"restore wrote into {abs_outside}: {os.listdir(abs_outside)}"


def assert_nothing_escaped(env, target: Path, outside: Path) -> None:
    assert sorted(os.listdir(outside)) == [], f"restore wrote outside its target: {os.listdir(outside)}"
    base = target.parent
    assert sorted(os.listdir(base)) == sorted(x for x in ("outside", "target") if (base / x).exists())
    for root in (base, env.base):
        escaped = [p for p in root.rglob("*") if PAYLOAD_NAME in p.name and target not in p.parents]
        assert escaped == [], f"crafted file written outside the target: {escaped}"


# --------------------------------------------------------------------------- unsafe names


@pytest.mark.parametrize("case", UNSAFE_CASES)
def test_crafted_unsafe_tree_is_refused_with_exit_12_and_nothing_escapes(arena, case):
    env, target, outside, ids = arena
    r = env.cli("restore", ids[case], "--target", str(target))
    assert r.code == 12, r
    assert "refusing" in r.stderr
    assert "Traceback" not in r.stderr
    assert_nothing_escaped(env, target, outside)
    symlinks = [p for p in target.rglob("*") if p.is_symlink()] if target.exists() else []
    assert symlinks == [], f"a refused restore still created links: {symlinks}"


async def _restore_in_process(env, sid: str, target: Path):
    from core.restore.files import FileRestorer

    repo = await env.open_repo()
    snap = await repo.load_snapshot(sid)
    return await FileRestorer(repo, target).restore(snap)


@pytest.mark.parametrize("case", ["dotdot-dir", "dup-symlink-first", "absolute-name"])
def test_engine_raises_restore_refused_for_crafted_trees(arena, case):
    env, target, outside, ids = arena
    with pytest.raises(RestoreRefused):
        asyncio.run(_restore_in_process(env, ids[case], target))
    assert_nothing_escaped(env, target, outside)


def test_safe_crafted_tree_restores(arena, crafted):
    """The crafting itself is sound: the same shapes with honest names restore fine."""
    env, target, outside, ids = arena
    r = env.cli("restore", ids["safe"], "--target", str(target))
    assert r.code == 0, r
    assert (target / "ok" / "pwned-inside").read_bytes() == PAYLOAD
    assert os.readlink(target / "x") == str(crafted[1])


# Trees whose names are fine but whose fields have the wrong type or range: what the
# msgpack decoder accepts but the restore cannot use. They must read as damaged trees.
ILL_TYPED = {
    "content-not-ids": [("raw", b"f", lambda blob: dataclasses.replace(file_node(b"f", blob), content=(123,)))],
    "subtree-not-an-id": [("raw", b"d", lambda blob: dataclasses.replace(dir_node(b"d", blob), subtree="abc"))],
    "target-not-bytes": [("raw", b"l", lambda blob: dataclasses.replace(link_node(b"l", b"t"), target=5))],
    "uid-out-of-range": [("raw", b"f", lambda blob: dataclasses.replace(file_node(b"f", blob), uid=2**40))],
}


@pytest.mark.parametrize("case", sorted(ILL_TYPED))
def test_ill_typed_tree_is_a_damaged_object_not_a_crash(arena, case):
    env, target, outside, ids = arena
    sid = ids[case]
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 9, r
    assert "Traceback" not in r.stderr and "tree" in r.stderr
    r = env.cli("verify", sid, json_out=True)
    assert r.code == 6, r
    assert any(sid in d["snapshots"] for d in r.json["damage"]), r
    assert_nothing_escaped(env, target, outside)


def test_second_snapshot_cannot_write_through_a_symlink_the_first_restored(arena):
    env, target, outside, ids = arena
    r = env.cli("restore", ids["chain-a"], ids["chain-b"], "--target", str(target))
    assert r.code == 12, r
    assert "symlink" in r.stderr


# --------------------------------------------------------------------------- hostile targets


@pytest.fixture
def real_snapshot(arena, shared):
    env, target, outside, _ = arena
    return env, target, outside, shared[1]


def test_symlink_at_the_top_of_the_restore_path_is_refused(real_snapshot):
    env, target, outside, sid = real_snapshot
    first = Path(str(env.src).lstrip("/")).parts[0]  # "tmp": the path mirrors the source
    target.mkdir()
    os.symlink(outside, target / first)
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 12, r
    assert "symlink" in r.stderr and str(target / first) in r.stderr
    assert os.listdir(outside) == []


def test_symlink_deep_in_the_restore_path_is_refused(real_snapshot):
    env, target, outside, sid = real_snapshot
    restored_src = target / str(env.src).lstrip("/")
    restored_src.mkdir(parents=True)
    os.symlink(outside, restored_src / "sub")
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 12, r
    assert str(restored_src / "sub") in r.stderr
    assert os.listdir(outside) == []
    assert os.readlink(restored_src / "sub") == str(outside)  # left as it was


def test_symlink_at_a_file_path_is_replaced_not_written_through(real_snapshot):
    env, target, outside, sid = real_snapshot
    victim = outside / "victim.txt"
    victim.write_text("precious\n")
    restored_src = target / str(env.src).lstrip("/")
    (restored_src / "sub").mkdir(parents=True)
    os.symlink(victim, restored_src / "sub" / "f.txt")
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 0, r
    assert victim.read_text() == "precious\n"
    assert os.listdir(outside) == ["victim.txt"]
    f = restored_src / "sub" / "f.txt"
    assert not f.is_symlink() and f.read_text() == "payload\n"


def test_dangling_symlink_as_target_is_refused(real_snapshot):
    env, target, outside, sid = real_snapshot
    os.symlink(outside / "does-not-exist", target)
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 12, r
    assert os.listdir(outside) == []


def test_file_where_a_folder_belongs_is_refused(real_snapshot):
    env, target, outside, sid = real_snapshot
    restored_src = target / str(env.src).lstrip("/")
    restored_src.mkdir(parents=True)
    (restored_src / "sub").write_text("a file, not a folder\n")
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 12, r
    assert (restored_src / "sub").read_text() == "a file, not a folder\n"
