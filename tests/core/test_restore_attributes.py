"""Every attribute a tree carries is applied by a restore, on the real filesystem: extended
attributes (ACLs, capabilities), sparse holes, devices and FIFOs, inode flags, owners by
name, privilege stripping; and what the target refuses is a warning (exit 7), not a failure.

Snapshots are crafted with the Repository API (tests/restore_craft.py), so each attribute
is tested whatever the archiver records today. Runs as root; the non-root cases run the
CLI as ``nobody`` (setpriv).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

import pytest

import restore_craft as C
from core.fsmeta import acl
from core.fsmeta import flags as fsflags
from core.repository.tree import CHARDEV, FIFO

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="restores as root and as nobody"),
    pytest.mark.usefixtures("restore_writers"),  # each restore both ways: threads, worker processes
]

# A valid VFS_CAP_REVISION_2 value: effective, CAP_NET_BIND_SERVICE permitted.
CAP = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
U = 0xFFFFFFFF
ACCESS = acl.build([(0x01, 7, U), (0x02, 5, 1234), (0x04, 5, U), (0x10, 5, U), (0x20, 0, U)])
DEFAULT = acl.build([(0x01, 7, U), (0x02, 7, 4321), (0x04, 5, U), (0x10, 7, U), (0x20, 0, U)])

pytest_plugins = ["restore_craft"]  # its env and craft fixtures


def xattrs_of(path, follow=False) -> dict[str, bytes]:
    return {n: os.getxattr(path, n, follow_symlinks=follow) for n in os.listxattr(path, follow_symlinks=follow)}


def get_flags(path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return fsflags.get_flags(fd)
    finally:
        os.close(fd)


def clear_flags(path) -> None:
    """Take i, a and d off again (the rest, like ext4's extents flag, cannot go)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, fsflags.FS_IOC_GETFLAGS, buf, True)
        cur = struct.unpack_from("=i", buf)[0] & ~(fsflags.IMMUTABLE | fsflags.APPEND | 0x40)
        fcntl.ioctl(fd, fsflags.FS_IOC_SETFLAGS, struct.pack("=i", cur) + bytes(4))
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- xattrs, ACLs, capabilities


def _xattr_snapshot(craft) -> str:
    f = craft.file(
        b"f",
        b"hello\n",
        mode=stat.S_IFREG | 0o750,
        xattrs=tuple(
            sorted(
                [
                    (b"user.note", b"kept"),
                    (b"trusted.t", b"root only"),
                    (b"security.capability", CAP),
                    (b"system.posix_acl_access", ACCESS),
                ]
            )
        ),
    )
    d = C.dnode(
        b"d",
        craft.tree([craft.file(b"in", b"x")]),
        mode=stat.S_IFDIR | 0o750,
        xattrs=((b"system.posix_acl_access", ACCESS), (b"system.posix_acl_default", DEFAULT), (b"user.dir", b"1")),
    )
    return craft.commit([f, d])


def test_xattrs_acls_and_default_acl_are_applied_capability_stripped(env, craft, tmp_path):
    sid = _xattr_snapshot(craft)
    target = tmp_path / "t"
    r = env.cli("restore", sid, "--target", str(target), json_out=True)
    assert r.code == 0, r
    out = C.restored(env, target)
    x = xattrs_of(out / "f")
    assert x["user.note"] == b"kept" and x["trusted.t"] == b"root only"
    assert x["system.posix_acl_access"] == ACCESS
    assert "security.capability" not in x  # a privilege: stripped by default
    res = r.json["restored"][0]
    assert res["privileges_stripped_count"] == 1 and res["privileges_stripped"][0].endswith("/f")
    d = xattrs_of(out / "d")
    assert d["system.posix_acl_default"] == DEFAULT and d["system.posix_acl_access"] == ACCESS
    assert d["user.dir"] == b"1"
    # A default ACL is inherited by what is created in the folder afterwards.
    (out / "d" / "new").write_text("n")
    assert "system.posix_acl_access" in xattrs_of(out / "d" / "new")
    # Everything right: a second plan finds nothing to do.
    r = env.cli("restore", sid, "--target", str(target), "--dry-run", json_out=True)
    assert r.json["restored"][0]["plan"]["metadata"] == 0, r
    # An attribute changed on disk: the file is a 'metadata' change, not 'unchanged'.
    os.setxattr(out / "f", "user.note", b"tampered")
    os.setxattr(out / "f", "user.extra", b"not in the snapshot")
    r = env.cli("restore", sid, "--target", str(target), "--dry-run", json_out=True)
    changes = {c["path"]: c for c in r.json["restored"][0]["changes"]}
    assert changes[str(out / "f")]["action"] == "metadata"
    assert "extended attributes" in changes[str(out / "f")]["reason"]
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 0, r
    x = xattrs_of(out / "f")
    assert x["user.note"] == b"kept" and "user.extra" not in x


def test_preserve_privileges_keeps_capability_and_setuid(env, craft, tmp_path):
    sid = craft.commit(
        [
            craft.file(b"suid", b"#!/bin/true\n", mode=stat.S_IFREG | 0o4755),
            craft.file(b"sgid", b"x", mode=stat.S_IFREG | 0o2755),
            craft.file(b"cap", b"y", xattrs=((b"security.capability", CAP),)),
            craft.file(b"plain", b"z", mode=stat.S_IFREG | 0o755),
        ]
    )
    target = tmp_path / "t"
    r = env.cli("restore", sid, "--target", str(target))
    assert r.code == 0, r
    out = C.restored(env, target)
    assert stat.S_IMODE(os.stat(out / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "sgid").st_mode) == 0o755
    assert "security.capability" not in os.listxattr(out / "cap")
    assert "3 files had setuid/setgid/capabilities stripped" in r.stdout
    assert all(n in r.stdout for n in ("/suid", "/sgid", "/cap")) and "/plain" not in r.stdout
    target2 = tmp_path / "t2"
    r = env.cli("restore", sid, "--target", str(target2), "--preserve-privileges")
    assert r.code == 0, r
    out = C.restored(env, target2)
    assert stat.S_IMODE(os.stat(out / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(out / "sgid").st_mode) == 0o2755
    assert os.getxattr(out / "cap", "security.capability") == CAP
    assert "stripped" not in r.stdout


def test_no_acls_and_no_xattrs(env, craft, tmp_path):
    sid = _xattr_snapshot(craft)
    r = env.cli("restore", sid, "--target", str(tmp_path / "a"), "--no-acls")
    assert r.code == 0, r
    x = xattrs_of(C.restored(env, tmp_path / "a") / "f")
    assert "system.posix_acl_access" not in x and x["user.note"] == b"kept"
    assert "system.posix_acl_default" not in xattrs_of(C.restored(env, tmp_path / "a") / "d")
    r = env.cli("restore", sid, "--target", str(tmp_path / "b"), "--no-xattrs")
    assert r.code == 0, r
    assert xattrs_of(C.restored(env, tmp_path / "b") / "f") == {}
    assert xattrs_of(C.restored(env, tmp_path / "b") / "d") == {}


def test_refused_attributes_warn_per_file_and_exit_7_as_non_root():
    base, env = C.nobody_world()
    try:
        env.init_fast()
        craft = C.Craft(env)
        sid = craft.commit(
            [
                craft.file(b"f", b"data\n", xattrs=((b"trusted.t", b"v"), (b"user.ok", b"1"))),
                craft.file(b"suid", b"s", mode=stat.S_IFREG | 0o4755),
                C.fnode(b"null", type=CHARDEV, mode=stat.S_IFCHR | 0o666, rdev=os.makedev(1, 3)),
                C.fnode(b"pipe", type=FIFO, mode=stat.S_IFIFO | 0o640),
            ]
        )
        craft.close()
        C.give_to_nobody(base)
        target = env.base / "t"
        r = C.cli_as_nobody(env, base, "restore", sid, "--target", str(target), json_out=True)
        assert r.code == 7, r
        res = r.json["restored"][0]
        warnings = res["warnings"]
        out = C.restored(env, target)
        assert any(w.startswith(f"{out}/f: ") and "trusted.t" in w for w in warnings), warnings
        assert any(w.startswith(f"{out}/null: ") and "only root" in w for w in warnings), warnings
        assert (out / "f").read_bytes() == b"data\n"
        assert os.getxattr(out / "f", "user.ok") == b"1"
        assert stat.S_ISFIFO(os.lstat(out / "pipe").st_mode)
        assert stat.S_IMODE(os.lstat(out / "pipe").st_mode) == 0o640
        assert not os.path.lexists(out / "null")
        assert stat.S_IMODE(os.stat(out / "suid").st_mode) == 0o755
        assert res["validation"]["ok"] is True
        r = C.cli_as_nobody(env, base, "restore", sid, "--target", str(env.base / "t2"))
        assert r.code == 7 and "WARNING" in r.stdout and "trusted.t" in r.stdout, r
        assert "finished with" in r.stderr
        # Keeping privileges is root's alone.
        r = C.cli_as_nobody(env, base, "restore", sid, "--target", str(env.base / "t3"), "--preserve-privileges")
        assert r.code == 2, r
        assert "--preserve-privileges needs root" in r.stderr
        assert not (env.base / "t3").exists()
    finally:
        C.remove_world(base)


# --------------------------------------------------------------------------- sparse files


def _sparse_layout(size: int, runs: list[tuple[int, int]]):
    """(holes, data stream, expected file bytes) for data ``runs`` (offset, length)."""
    import random

    rnd = random.Random(size)
    holes, pos = [], 0
    stream = bytearray()
    full = bytearray(size)
    for off, length in runs:
        if off > pos:
            holes.append((pos, off - pos))
        chunk = rnd.randbytes(length)
        stream += chunk
        full[off : off + length] = chunk
        pos = off + length
    if pos < size:
        holes.append((pos, size - pos))
    return tuple(holes), bytes(stream), bytes(full)


@pytest.mark.parametrize(
    "size,piece",
    [(4 << 20, 33_333), (4 << 20, 0), (40 << 20, 33_333), (40 << 20, 0)],
    ids=["small-pieces", "small-chunked", "large-pieces", "large-chunked"],
)
def test_sparse_file_is_restored_sparse(env, craft, tmp_path, size, piece):
    runs = [(0, 5000), (1 << 20, 70_001), (3 << 20, 123_457), (size - 4096, 4096)]
    if size > 8 << 20:
        runs.insert(3, (20 << 20, 9_000_000))  # more than one chunk and one window
    holes, stream, full = _sparse_layout(size, runs)
    # Pieces of 33,333 bytes: many straddle a hole. Chunked: cut by the repository's
    # chunker, as a backup would (then the read-back validation can compare ids).
    content = craft.data(stream, piece) if piece else craft.chunked(stream)
    sid = craft.commit([C.fnode(b"sparse", size=size, holes=holes, content=content)])
    target = tmp_path / "t"
    r = env.cli("restore", sid, "--target", str(target), *([] if not piece else ["--no-validate"]), json_out=True)
    assert r.code == 0, r
    if not piece:
        assert r.json["restored"][0]["validation"]["ok"] is True
    f = C.restored(env, target) / "sparse"
    st = os.stat(f)
    assert st.st_size == size
    assert f.read_bytes() == full
    data = sum(n for _, n in runs)
    allocated = st.st_blocks * 512
    # The original's allocation is its data runs (in 4 KiB blocks): within 10 %.
    original = sum(-(-n // 4096) * 4096 + 4096 for _, n in runs)
    assert allocated <= original * 1.1, (allocated, original, data)
    if piece:
        return
    # Planned again: unchanged (holes compared by SEEK_DATA, data by chunk ids).
    r = env.cli("restore", sid, "--target", str(target), "--dry-run", json_out=True)
    assert r.json["restored"][0]["plan"]["unchanged"] >= 1 and r.json["restored"][0]["plan"]["overwrite"] == 0
    # Data written into a hole is found by the plan.
    with open(f, "r+b") as fh:
        fh.seek(2 << 20)
        fh.write(b"\x01")
    r = env.cli("restore", sid, "--target", str(target), "--dry-run", json_out=True)
    assert r.json["restored"][0]["plan"]["overwrite"] == 1, r


# --------------------------------------------------------------------------- devices, FIFOs


def test_devices_and_fifos_as_root(env, craft, tmp_path):
    sid = craft.commit(
        [
            C.fnode(b"null", type=CHARDEV, mode=stat.S_IFCHR | 0o620, rdev=os.makedev(1, 3), uid=12, gid=34),
            C.fnode(b"loop", type="blockdev", mode=stat.S_IFBLK | 0o600, rdev=os.makedev(7, 200)),
            C.fnode(
                b"pipe",
                type=FIFO,
                mode=stat.S_IFIFO | 0o604,
                mtime_ns=1_500_000_000_123_456_789,
                xattrs=((b"trusted.p", b"1"),),
            ),
        ]
    )
    target = tmp_path / "t"
    r = env.cli("restore", sid, "--target", str(target), json_out=True)
    assert r.code == 0, r
    assert r.json["restored"][0]["special"] == 3
    out = C.restored(env, target)
    st = os.lstat(out / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and stat.S_IMODE(st.st_mode) == 0o620
    assert (st.st_uid, st.st_gid) == (12, 34)
    st = os.lstat(out / "loop")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 200)
    st = os.lstat(out / "pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o604
    assert st.st_mtime_ns == 1_500_000_000_123_456_789
    assert os.getxattr(out / "pipe", "trusted.p", follow_symlinks=False) == b"1"
    assert [n for n in os.listdir(out) if n.startswith(".axisor")] == []
    r = env.cli("restore", sid, "--target", str(target), "--dry-run", json_out=True)
    assert r.json["restored"][0]["plan"]["unchanged"] >= 3, r


# --------------------------------------------------------------------------- inode flags


def test_file_flags_only_with_the_option_and_set_last(env, craft, tmp_path):
    sid = craft.commit(
        [
            craft.file(
                b"frozen", b"immutable\n", flags=fsflags.IMMUTABLE, mode=stat.S_IFREG | 0o600, nlink=2, inode=77, dev=1
            ),
            craft.file(
                b"frozen-link",
                b"immutable\n",
                flags=fsflags.IMMUTABLE,
                mode=stat.S_IFREG | 0o600,
                nlink=2,
                inode=77,
                dev=1,
            ),
            craft.file(b"log", b"append\n", flags=fsflags.APPEND | 0x40),
            C.dnode(b"d", craft.tree([craft.file(b"in", b"x")]), flags=0x40),
        ]
    )
    plain = tmp_path / "plain"
    r = env.cli("restore", sid, "--target", str(plain))
    assert r.code == 0, r
    assert get_flags(C.restored(env, plain) / "frozen") == 0
    target = tmp_path / "t"
    out = C.restored(env, target)
    try:
        r = env.cli("restore", sid, "--target", str(target), "--file-flags", json_out=True)
        assert r.code == 0, r
        assert get_flags(out / "frozen") & fsflags.IMMUTABLE
        # The hard link was made before the flag (an immutable file cannot be linked).
        assert os.stat(out / "frozen").st_ino == os.stat(out / "frozen-link").st_ino
        assert get_flags(out / "log") & (fsflags.APPEND | 0x40) == fsflags.APPEND | 0x40
        assert get_flags(out / "d") & 0x40
        # Times and mode were set before the flags.
        assert os.stat(out / "frozen").st_mtime_ns == C.NOW
        assert stat.S_IMODE(os.stat(out / "frozen").st_mode) == 0o600
        r = env.cli("restore", sid, "--target", str(target), "--file-flags", "--dry-run", json_out=True)
        assert r.json["restored"][0]["plan"]["metadata"] == 0, r
    finally:
        for p in (out / "frozen", out / "log"):
            if p.exists():
                clear_flags(p)


# --------------------------------------------------------------------------- owners


def test_owner_by_name_then_by_number_with_a_warning(env, craft, tmp_path):
    sid = craft.commit(
        [
            craft.file(b"by-name", b"1", uid=4242, gid=4343, user="root", group="root"),
            craft.file(b"unknown", b"2", uid=4244, gid=4245, user="no-such-user-axisor", group="no-such-group-axisor"),
            craft.file(b"unknown2", b"3", uid=4244, gid=0, user="no-such-user-axisor"),
        ]
    )
    target = tmp_path / "t"
    r = env.cli("restore", sid, "--target", str(target), json_out=True)
    assert r.code == 7, r
    out = C.restored(env, target)
    assert (os.stat(out / "by-name").st_uid, os.stat(out / "by-name").st_gid) == (0, 0)
    assert (os.stat(out / "unknown").st_uid, os.stat(out / "unknown").st_gid) == (4244, 4245)
    warnings = r.json["restored"][0]["warnings"]
    assert sum("owner no-such-user-axisor does not exist here: restored as uid 4244" in w for w in warnings) == 1
    assert any("group no-such-group-axisor does not exist here: restored as gid 4245" in w for w in warnings)
    r = env.cli("restore", sid, "--target", str(tmp_path / "n"), "--numeric-owner")
    assert r.code == 0, r
    f = C.restored(env, tmp_path / "n") / "by-name"
    assert (os.stat(f).st_uid, os.stat(f).st_gid) == (4242, 4343)


def test_flags_refused_is_a_warning(env, craft, tmp_path, monkeypatch):
    """A filesystem that refuses a flag (here: the ioctl fails) gives a warning, not a failure."""
    import asyncio

    from core.restore import files, writer

    def refuse(fd, flags):
        return f"file flags {fsflags.letters(flags)} not restored: {os.strerror(errno.EOPNOTSUPP)}"

    monkeypatch.setattr(writer.fsflags, "set_flags", refuse)
    sid = craft.commit([craft.file(b"f", b"1", flags=0x40)])

    async def go():
        repo = await env.open_repo()
        snap = await repo.load_snapshot(sid)
        return await files.FileRestorer(repo, tmp_path / "t", options=files.RestoreOptions(file_flags=True)).restore(
            snap
        )

    stats = asyncio.run(go())
    assert stats.files == 1 and stats.warning_count == 1
    assert "/f: file flags d not restored" in stats.warnings[0]
