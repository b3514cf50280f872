"""An unchanged re-run keeps the previous snapshot's nodes and tree ids (core/backup/archiver.py,
``_reusable`` and ``_finish_dir``): nothing is encoded where nothing changed, and everything
that did change (a file's bytes, a folder's entries, a name the owner's uid now maps to) is
stored anew, with the trees above it. The reference trees come a batch at a time
(Repository.reference_trees), each batch answering exactly as reference_tree would."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from core import crypto
from core.backup import archiver as archiver_mod
from core.backup.archiver import Archiver
from core.repository.repository import Repository
from core.repository.tree import DIR, Node, Tree
from core.storage.local import LocalBackend

PASSPHRASE = "unchanged re-run passphrase"


@pytest.fixture(autouse=True)
def _cheap_kdf(monkeypatch):
    monkeypatch.setattr(crypto, "SCRYPT_N", 2**10)


def _source(root: Path) -> None:
    for d in ("a/b/c", "a/x", "d", "empty"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for rel, body in {
        "a/b/c/deep.txt": b"deep\n" * 100,
        "a/b/one.txt": b"one\n",
        "a/x/two.bin": bytes(range(256)) * 300,
        "d/three.txt": b"three\n" * 7000,
        "top.txt": b"top\n",
    }.items():
        (root / rel).write_bytes(body)
    os.symlink("top.txt", root / "link")
    os.mkfifo(root / "d" / "fifo")
    # Reading a symlink or listing a folder sets its atime while that is not after its
    # ctime (relatime), and a node's atime is part of it: put them ahead, as time would.
    ahead = time.time_ns() + 60 * 10**9
    for p in (root / "link", *(Path(d) for d, _dirs, _files in os.walk(root))):
        st = os.lstat(p)
        os.utime(p, ns=(ahead, st.st_mtime_ns), follow_symlinks=False)


async def _archive(repo: Repository, src: Path, reference: Tree | None) -> tuple[bytes, Archiver]:
    arch = Archiver(repo, workers=2, reread_all=False)
    root = await arch.archive([src], reference)
    await repo.flush()
    return root, arch


async def _trees(repo: Repository, tree_id: bytes, prefix: bytes = b"") -> dict[bytes, bytes]:
    """Every folder below ``tree_id``: path -> its tree id."""
    out = {prefix: tree_id}
    for n in (await repo.load_tree(tree_id)).nodes:
        if n.type == DIR and n.subtree is not None:
            out.update(await _trees(repo, n.subtree, prefix + b"/" + n.name))
    return out


def test_an_unchanged_rerun_keeps_every_tree_and_a_change_renews_only_its_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _source(src)

    async def run() -> None:
        repo = await Repository.create(LocalBackend(tmp_path / "repo"), PASSPHRASE)
        first, a1 = await _archive(repo, src, None)
        assert a1.stats.trees_reused == 0
        folders = await _trees(repo, first)

        blobs_before = repo.stats.blobs
        second, a2 = await _archive(repo, src, await repo.load_tree(first))
        assert second == first
        # Every folder below the virtual ones (/, tmp, ... down to src) kept its id with
        # nothing encoded: src itself and its 6 folders.
        assert a2.stats.trees_reused == 7, a2.stats
        assert a2.stats.files_unmodified == 5 and repo.stats.blobs == blobs_before

        (src / "a" / "b" / "c" / "deep.txt").write_bytes(b"changed\n")
        third, a3 = await _archive(repo, src, await repo.load_tree(second))
        after = await _trees(repo, third)
        changed = {p for p in after if after[p] != folders.get(p)}
        src_key = max(folders, key=len).split(b"/src")[0] + b"/src"
        rel = {p.split(src_key, 1)[1] for p in changed if p.startswith(src_key)}
        assert rel == {b"", b"/a", b"/a/b", b"/a/b/c"}, rel  # the path to the change, nothing else
        assert a3.stats.trees_reused == 3  # a/x, d, empty
        assert a3.stats.files_changed == 1

    asyncio.run(run())


def test_a_file_whose_owner_name_changed_is_not_reused(tmp_path: Path, monkeypatch) -> None:
    """The same uid, another name for it (/etc/passwd edited): no ctime changes, yet the node
    built now differs, so the reference's node must not stand for it."""
    src = tmp_path / "src"
    _source(src)

    async def run() -> None:
        repo = await Repository.create(LocalBackend(tmp_path / "repo"), PASSPHRASE)
        first, _ = await _archive(repo, src, None)
        monkeypatch.setattr(archiver_mod._NameCache, "user", lambda self, uid: "renamed")
        second, a2 = await _archive(repo, src, await repo.load_tree(first))
        assert second != first
        assert a2.stats.files_unmodified == 5
        assert a2.stats.trees_reused == 1  # the empty folder: no node in it changed
        nodes: list[Node] = []
        todo = [second]
        while todo:
            for n in (await repo.load_tree(todo.pop())).nodes:
                nodes.append(n)
                if n.type == DIR and n.subtree is not None:
                    todo.append(n.subtree)
        below = [n for n in nodes if n.name in (b"deep.txt", b"one.txt", b"two.bin", b"three.txt", b"link", b"fifo")]
        assert len(below) == 6 and {n.user for n in below} == {"renamed"}

    asyncio.run(run())


def test_reference_trees_answers_as_reference_tree_does(tmp_path: Path) -> None:
    """A batch with a good tree, one the index does not hold and one whose pack is damaged:
    the trees, None and None, exactly as one reference_tree call each would answer."""
    src = tmp_path / "src"
    _source(src)

    async def run() -> None:
        backend = LocalBackend(tmp_path / "repo")
        repo = await Repository.create(backend, PASSPHRASE, pack_size=1)  # a pack per blob
        first, _ = await _archive(repo, src, None)
        folders = await _trees(repo, first)
        good = [t for p, t in folders.items() if p.endswith(b"/a/x")][0]
        damaged = [t for p, t in folders.items() if p.endswith(b"/d")][0]
        missing = os.urandom(32)
        loc = repo.index.lookup(damaged)
        assert loc is not None
        pack = tmp_path / "repo" / "data" / loc.pack_id.hex()[:2] / loc.pack_id.hex()
        raw = bytearray(pack.read_bytes())
        raw[loc.offset + 20] ^= 0xFF
        pack.write_bytes(bytes(raw))

        fresh = await Repository.open(backend, PASSPHRASE)
        await fresh.load_index()
        ids = [good, missing, damaged, good]
        batch = await fresh.reference_trees(ids)
        one_by_one = [await fresh.reference_tree(t) for t in ids]
        assert [t.nodes if t else None for t in batch] == [t.nodes if t else None for t in one_by_one]
        assert batch[0] is not None and [n.name for n in batch[0].nodes] == [b"two.bin"]
        assert batch[1] is None and batch[2] is None
        assert fresh.trees.get(good) is not None  # kept for the next walk, as load_tree keeps it

    asyncio.run(run())
