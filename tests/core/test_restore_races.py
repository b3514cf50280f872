"""A restore acts only through folder descriptors: a user who can write inside the target
and swaps a folder for a symlink to the outside between the plan and the act changes
nothing outside. Also: untrusted targets are refused as root, and trees deeper than
PATH_MAX restore.

The swaps are made deterministic by wrapping one step of the restorer (after the plan,
before the writes / the metadata / the removals); one test races a real thread.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from pathlib import Path

import pytest

import restore_craft as C
from core.errors import RestoreRefused
from core.restore import files

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the attack matters when the restore runs as root"),
]
# The attacks: each restore both ways (small files on threads, and in worker processes).
BOTH_WAYS = pytest.mark.usefixtures("restore_writers")

pytest_plugins = ["restore_craft"]  # its env and craft fixtures


@pytest.fixture
def outside(tmp_path):
    """A root-only folder with a root-only file: nothing may change them."""
    o = tmp_path / "outside"
    o.mkdir(mode=0o700)
    os.chmod(o, 0o700)
    (o / "secret").write_text("root only\n")
    os.chmod(o / "secret", 0o600)
    (o / "extra").write_text("must survive --delete\n")
    yield o
    assert sorted(os.listdir(o)) == ["extra", "secret"], os.listdir(o)
    assert stat.S_IMODE(os.stat(o).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(o / "secret").st_mode) == 0o600
    assert (o / "secret").read_text() == "root only\n"
    assert (o / "extra").read_text() == "must survive --delete\n"


def snapshot_with_sub(env) -> str:
    c = C.Craft(env)
    try:
        sub = c.tree(
            [c.file(b"f", b"payload\n", mode=stat.S_IFREG | 0o777), c.file(b"extra", b"x\n", mode=stat.S_IFREG | 0o666)]
        )
        return c.commit([C.dnode(b"sub", sub, mode=stat.S_IFDIR | 0o777), c.file(b"top", b"t")])
    finally:
        c.close()


def swap(folder: Path, to: Path) -> None:
    """What the attacker does: move the folder away, put a symlink to ``to`` in its place."""
    os.rename(folder, folder.with_name(folder.name + ".moved"))
    os.symlink(to, folder)


def restore(env, sid, target, **kw):
    async def go():
        from core.config import load_config
        from core.service import BackupService

        svc = BackupService(load_config(env.cfg), lambda confirm: env.passphrase, workers=2)
        try:
            snaps = await svc.resolve([sid])
            return await svc.restore_many(snaps, target, **kw)
        finally:
            await svc.close()

    return asyncio.run(go())


@BOTH_WAYS
def test_folder_swapped_before_metadata_is_never_followed(env, tmp_path, outside, monkeypatch):
    """After the files are written and before folder modes are set: sub -> outside.
    The old code chmod'ed by path (outside would become 0777)."""
    sid = snapshot_with_sub(env)
    target = tmp_path / "t"
    sub = C.restored(env, target) / "sub"
    real_finish = files.FileRestorer._finish

    def finish(self):
        swap(sub, outside)
        return real_finish(self)

    monkeypatch.setattr(files.FileRestorer, "_finish", finish)
    try:
        restore(env, sid, target, validate=False)
    except RestoreRefused:
        pass  # refused or done through the held descriptor: either way nothing outside changes


@BOTH_WAYS
def test_folder_swapped_before_files_are_created_is_refused(env, tmp_path, outside, monkeypatch):
    """Restore over an existing tree: the plan saw a real folder; then it becomes a symlink
    to outside before the first file is written there."""
    sid = snapshot_with_sub(env)
    target = tmp_path / "t"
    restore(env, sid, target)
    sub = C.restored(env, target) / "sub"
    (sub / "f").write_text("changed, so the restore writes it again\n")
    real = files.FileRestorer._restore

    async def attacked(self, snap):
        swap(sub, outside)
        return await real(self, snap)

    monkeypatch.setattr(files.FileRestorer, "_restore", attacked)
    with pytest.raises(RestoreRefused, match="symlink"):
        restore(env, sid, target, safety=False)


@BOTH_WAYS
def test_file_swapped_for_a_symlink_before_metadata_fix(env, tmp_path, outside, monkeypatch):
    """A 'metadata' change (mode differs): the file becomes a symlink to a root file
    before the chmod. The old code chmod'ed the symlink's target."""
    sid = snapshot_with_sub(env)
    target = tmp_path / "t"
    restore(env, sid, target)
    f = C.restored(env, target) / "sub" / "f"
    os.chmod(f, 0o600)
    real_finish = files.FileRestorer._finish

    def finish(self):
        os.unlink(f)
        os.symlink(outside / "secret", f)
        return real_finish(self)

    monkeypatch.setattr(files.FileRestorer, "_finish", finish)
    with pytest.raises(RestoreRefused, match="changed while restoring"):
        restore(env, sid, target, safety=False)


@BOTH_WAYS
def test_delete_through_a_swapped_folder_removes_nothing_outside(env, tmp_path, outside, monkeypatch):
    c = C.Craft(env)
    try:
        sid = c.commit([C.dnode(b"sub", c.tree([c.file(b"f", b"payload\n")]))])
    finally:
        c.close()
    target = tmp_path / "t"
    restore(env, sid, target)
    sub = C.restored(env, target) / "sub"
    (sub / "extra").write_text("not in the snapshot: --delete removes it\n")
    real = files.FileRestorer._finish

    def finish(self):
        assert any(p.name == "extra" for p in self._removals)
        swap(sub, outside)
        return real(self)

    monkeypatch.setattr(files.FileRestorer, "_finish", finish)
    try:
        restore(env, sid, target, delete=True, safety=False)
    except RestoreRefused:
        pass


@BOTH_WAYS
def test_racing_thread_swapping_a_folder_changes_nothing_outside(env, tmp_path, outside):
    """The real thing: a thread flips sub between a folder and a symlink to outside as
    fast as it can while restores run over and over."""
    c = C.Craft(env)
    try:
        names = [c.file(b"f%03d" % i, b"payload %d\n" % i, mode=stat.S_IFREG | 0o777) for i in range(60)]
        sid = c.commit([C.dnode(b"sub", c.tree(names), mode=stat.S_IFDIR | 0o777)])
    finally:
        c.close()
    target = tmp_path / "t"
    restore(env, sid, target)
    sub = C.restored(env, target) / "sub"
    moved = sub.with_name("sub.real")
    stop = threading.Event()

    def attacker():
        while not stop.is_set():
            try:
                os.rename(sub, moved)
                os.symlink(outside, sub)
                time.sleep(0.0005)
                os.unlink(sub)
                os.rename(moved, sub)
            except OSError:
                pass

    t = threading.Thread(target=attacker, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:  # the attacker may move sub between the check and the listing
                for p in sub.glob("f*") if sub.is_dir() and not sub.is_symlink() else ():
                    try:
                        os.chmod(p, 0o600)  # make every restore rewrite modes
                    except OSError:
                        pass
            except OSError:
                pass
            try:
                restore(env, sid, target, safety=False, validate=False, delete=True)
            except (RestoreRefused, OSError):
                pass  # the restore may fail under attack; it must not reach outside
    finally:
        stop.set()
        t.join()


# --------------------------------------------------------------------------- untrusted targets


@pytest.mark.parametrize("how", ["owned-by-nobody", "world-writable", "group-writable"])
def test_untrusted_target_is_refused_as_root(env, tmp_path, how):
    sid = snapshot_with_sub(env)
    parent = tmp_path / "shared"
    parent.mkdir()
    if how == "owned-by-nobody":
        os.chown(parent, 65534, 65534)
    elif how == "world-writable":
        os.chmod(parent, 0o777)
    else:
        os.chown(parent, 0, 100)
        os.chmod(parent, 0o775)
    target = parent / "t"
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 12, r
    assert "refusing to restore as root" in r.stderr and str(parent) in r.stderr
    assert "--allow-untrusted-target" in r.stderr
    assert not target.exists()
    r = env.cli("restore", sid, "--target", str(target), "--allow-untrusted-target")
    assert r.code == 0, r
    assert (C.restored(env, target) / "sub" / "f").read_bytes() == b"payload\n"


def test_sticky_world_writable_folder_above_a_root_folder_is_trusted(env, tmp_path):
    sid = snapshot_with_sub(env)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)  # like /tmp: others cannot rename root's entries
    r = env.cli("restore", sid, "--target", str(sticky / "t"))
    assert r.code == 0, r


# --------------------------------------------------------------------------- deep trees

DEPTH = 3000


def deep_snapshot(env) -> str:
    c = C.Craft(env)
    try:
        sub = c.tree(
            [
                c.file(b"leaf", b"at the bottom\n"),
                C.fnode(b"link", type="symlink", mode=stat.S_IFLNK | 0o777, target=b"leaf"),
            ]
        )
        for i in range(DEPTH):
            sub = c.tree(
                [C.dnode(b"d", sub, mode=stat.S_IFDIR | 0o750)] + ([c.file(b"f", b"%d" % i)] if i % 500 == 0 else [])
            )
        return c.commit([C.dnode(b"deep", sub)])
    finally:
        c.close()


def open_deep(root: Path, depth: int) -> int:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def test_a_tree_3000_folders_deep_restores_plans_and_deletes(env, tmp_path):
    sid = deep_snapshot(env)
    target = tmp_path / "t"
    r = env.cli("restore", sid, "--target", str(target), json_out=True, timeout=600)
    assert r.code == 0, r
    res = r.json["restored"][0]
    assert res["validation"]["ok"] is True and res["dirs"] >= DEPTH
    top = C.restored(env, target) / "deep"
    fd = open_deep(top, DEPTH)
    try:
        with open(os.open("leaf", os.O_RDONLY, dir_fd=fd), "rb") as f:
            assert f.read() == b"at the bottom\n"
        assert os.readlink("link", dir_fd=fd) == "leaf"
        st = os.fstat(fd)
        assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_mtime_ns == C.NOW
        # Something the snapshot does not have, far below PATH_MAX.
        with open(os.open("stray", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "wb") as f:
            f.write(b"stray")
    finally:
        os.close(fd)
    r = env.cli("restore", sid, "--target", str(target), "--delete", "--dry-run", json_out=True, timeout=600)
    assert r.code == 0, r
    plan = r.json["restored"][0]["plan"]
    assert plan["remove"] == 1 and plan["create"] == 0 and plan["overwrite"] == 0 and plan["metadata"] == 0, plan
    # The removal itself (in-process, without the safety snapshot: backing up a tree this deep
    # is the archiver's part, rewritten to walk through descriptors on its own branch).
    [outcome] = restore(env, sid, target, delete=True, safety=False)
    assert outcome.stats.removed == 1 and outcome.validation.ok
    fd = open_deep(top, DEPTH)
    try:
        assert sorted(os.listdir(fd)) == ["leaf", "link"]
    finally:
        os.close(fd)
