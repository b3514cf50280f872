"""Every shape a file tree can take, built on the real filesystem, and a field-by-field
comparison of two trees. Shared by the backup tests (what a snapshot must carry), the
restore tests (what must come back) and the end-to-end test.

    import fs_shapes as S

    shapes = S.build(tmp_path / "src")          # returns a Shapes record
    try:
        ...back up shapes.root, restore it to target...
        assert S.compare_trees(shapes.root, target) == []
    finally:
        S.unfreeze(shapes.root)                  # chattr -i/-a, or nothing can be removed

``build`` makes what the running user can make: as root everything; as another user the
root-only shapes (device, capability, chattr +i/+a, foreign owners, trusted.* xattrs) are
left out and named in ``Shapes.skipped`` with the reason, so a test can tell "not made"
from "lost". What was made is described in ``Shapes`` (paths relative to the root, bytes).

``compare_trees(expected, actual)`` returns a list of differences, one readable line each
(names shown escaped), empty when the trees match on: type, full mode (setuid/setgid and
sticky bits included), uid/gid, size, content (SHA-256), mtime in ns, every extended
attribute the process can read (ACLs as system.posix_acl_*, capabilities as
security.capability), inode flags, symlink target, device number, hard-link groups, and
for sparse files allocated blocks within 10 % (plus one 64 KiB of slack for filesystem
granularity). Sockets are skipped by default (they are never backed up). Keyword
arguments switch checks off or on where a restore legitimately differs (``owner=False``
as non-root, ``atime=True`` to compare access times, ``root_meta=False`` to ignore the
top folder's own metadata).

``state(root)`` returns the same facts as a dict (relative path -> ``Entry``) for tests
that compare a tree with something else, e.g. a snapshot's nodes.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from core.fsmeta import acl
from core.fsmeta import flags as fsflags
from core.fsmeta.xattrs import read_xattrs
from core.text import shown

IS_ROOT = os.geteuid() == 0
MIB = 1024 * 1024

# Names that break naive code: stored and restored byte for byte.
NON_UTF8 = b"bad-\xff\xfe-name.txt"
NEWLINE = b"new\nline.txt"
ESCAPES = b"esc-\x1b[31mred\x1b[0m-\x07.txt"
LONG = b"L" * 251 + b".txt"  # 255 bytes, the most Linux allows
HOSTILE_NAMES = (NON_UTF8, NEWLINE, ESCAPES, LONG)

NO_USER_UID = 54321  # a uid with no passwd entry (checked at build time)
# security.capability as setcap writes it: VFS_CAP_REVISION_2, effective, cap_net_bind_service
# (bit 10) permitted.
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
# user::rw-, user:nobody:r--, group::r--, mask::r--, other::---
ACCESS_ACL = acl.build(
    [(0x01, 6, 0xFFFFFFFF), (0x02, 4, 65534), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
)
# default: user::rwx, group::r-x, group:nogroup:r-x, mask::r-x, other::---
DEFAULT_ACL = acl.build(
    [(0x01, 7, 0xFFFFFFFF), (0x04, 5, 0xFFFFFFFF), (0x08, 5, 65534), (0x10, 5, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
)
SPARSE_SIZE = 64 * MIB
# (offset, length) of the data islands of sparse.img; the rest, including the end, is holes.
SPARSE_ISLANDS = ((1 * MIB, 1 * MIB), (30 * MIB, 512 * 1024), (60 * MIB, 2 * MIB))
SMALL_SPARSE_SIZE = 100 * 1024  # below the chunker's minimum: read by the small-file path
SMALL_SPARSE_ISLANDS = ((0, 4096),)


@dataclass
class Shapes:
    root: Path
    # relative path (bytes) -> what it is; only what was actually made
    made: dict[bytes, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # shape -> why not made
    socket_path: bytes | None = None
    _sockets: list[socket.socket] = field(default_factory=list, repr=False)

    def path(self, rel: bytes) -> bytes:
        return os.path.join(os.fsencode(self.root), rel)

    def close(self) -> None:
        for s in self._sockets:
            s.close()
        self._sockets.clear()


def _write(path: bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _sparse(path: bytes, size: int, islands: tuple[tuple[int, int], ...], seed: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i, (off, length) in enumerate(islands):
            block = hashlib.sha256(seed + bytes([i])).digest() * (length // 32 + 1)
            os.pwrite(fd, block[:length], off)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def build(root: Path) -> Shapes:
    """Create ``root`` (must not exist) holding every shape the running user can make."""
    os.mkdir(root)
    s = Shapes(root)
    r = os.fsencode(root)
    j = lambda *parts: os.path.join(r, *parts)  # noqa: E731

    def made(rel: bytes, what: str) -> None:
        s.made[rel] = what

    def skip(shape: str, why: str) -> None:
        s.skipped[shape] = why

    # -- plain content, xattrs ---------------------------------------------------------
    for d in (
        b"files",
        b"acl",
        b"links",
        b"links/other",
        b"special",
        b"owners",
        b"modes",
        b"names",
        b"sparse",
        b"flags",
        b"empty-dir",
    ):
        os.mkdir(j(d))
    _write(j(b"files/plain.txt"), b"plain text\n" * 100)
    made(b"files/plain.txt", "file")
    _write(j(b"files/empty"), b"")
    made(b"files/empty", "empty file")
    _write(j(b"files/big.bin"), hashlib.sha256(b"big").digest() * (3 * MIB // 32))  # streamed, not batched
    made(b"files/big.bin", "large file")
    _write(j(b"files/xattrs.txt"), b"has attributes\n")
    os.setxattr(j(b"files/xattrs.txt"), b"user.comment", b"hello")
    os.setxattr(j(b"files/xattrs.txt"), b"user.binary", b"\x00\xff\x01 not utf-8")
    os.setxattr(j(b"files/xattrs.txt"), b"user.empty", b"")
    made(b"files/xattrs.txt", "file with user.* xattrs")
    os.setxattr(j(b"files"), b"user.folder", b"on a folder")
    made(b"files", "folder with a user.* xattr")
    _write(j(b"files/big-xattr.bin"), hashlib.sha256(b"bx").digest() * (256 * 1024 // 32))
    os.setxattr(j(b"files/big-xattr.bin"), b"user.note", b"large file, attribute")
    made(b"files/big-xattr.bin", "large file with a user.* xattr")
    os.symlink(b"plain.txt", j(b"files/link"))
    made(b"files/link", "symlink")
    os.symlink(b"/nonexistent/target\xff", j(b"files/dangling"))
    made(b"files/dangling", "dangling symlink, non-UTF-8 target")
    if IS_ROOT:
        # user.* is refused on symlinks; trusted.* is allowed (to root).
        os.setxattr(j(b"files/link"), b"trusted.note", b"on a symlink", follow_symlinks=False)
        made(b"files/link", "symlink with a trusted.* xattr")
    else:
        skip("symlink xattr", "trusted.* needs root")

    # -- ACLs ----------------------------------------------------------------------------
    _write(j(b"acl/file-acl.txt"), b"acl\n")
    os.setxattr(j(b"acl/file-acl.txt"), b"system.posix_acl_access", ACCESS_ACL)
    made(b"acl/file-acl.txt", "file with an access ACL")
    os.mkdir(j(b"acl/default-acl"))
    os.setxattr(j(b"acl/default-acl"), b"system.posix_acl_default", DEFAULT_ACL)
    made(b"acl/default-acl", "folder with a default ACL")
    _write(j(b"acl/default-acl/inherits.txt"), b"inherits\n")  # gets an access ACL from the default
    made(b"acl/default-acl/inherits.txt", "file with an inherited ACL")

    # -- sparse --------------------------------------------------------------------------
    _sparse(j(b"sparse/sparse.img"), SPARSE_SIZE, SPARSE_ISLANDS, b"big")
    made(b"sparse/sparse.img", "sparse file, 64 MiB, 3 data islands")
    _sparse(j(b"sparse/small-sparse.img"), SMALL_SPARSE_SIZE, SMALL_SPARSE_ISLANDS, b"small")
    made(b"sparse/small-sparse.img", "small sparse file")
    _sparse(j(b"sparse/all-hole.img"), 8 * MIB, (), b"")
    made(b"sparse/all-hole.img", "file that is one hole")

    # -- hard links ----------------------------------------------------------------------
    _write(j(b"links/a"), b"linked content\n")
    os.link(j(b"links/a"), j(b"links/b"))
    os.link(j(b"links/a"), j(b"links/other/c"))
    for rel in (b"links/a", b"links/b", b"links/other/c"):
        made(rel, "hard link (3)")

    # -- special files -------------------------------------------------------------------
    os.mkfifo(j(b"special/fifo"), 0o640)
    made(b"special/fifo", "FIFO")
    if IS_ROOT:
        os.mknod(j(b"special/null-dev"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        made(b"special/null-dev", "char device 1:3")
        os.mknod(j(b"special/loop-dev"), 0o600 | stat.S_IFBLK, os.makedev(7, 200))
        made(b"special/loop-dev", "block device 7:200")
    else:
        skip("devices", "mknod needs root")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(j(b"special/control.sock"))
        s._sockets.append(sock)
        s.socket_path = b"special/control.sock"
    except OSError as exc:  # a path over 108 bytes
        sock.close()
        skip("socket", f"bind: {exc}")

    # -- owners and modes ----------------------------------------------------------------
    _write(j(b"modes/setuid"), b"#!/bin/sh\n")
    _write(j(b"modes/setgid"), b"#!/bin/sh\n")
    os.mkdir(j(b"modes/setgid-dir"))
    os.mkdir(j(b"modes/sticky-dir"))
    _write(j(b"owners/by-nobody"), b"nobody's\n")
    _write(j(b"owners/by-no-user"), b"a uid without a name\n")
    if IS_ROOT:
        import pwd

        try:
            pwd.getpwuid(NO_USER_UID)
            skip("uid without user", f"uid {NO_USER_UID} has a user here")
        except KeyError:
            os.chown(j(b"owners/by-no-user"), NO_USER_UID, NO_USER_UID)
            made(b"owners/by-no-user", f"owned by uid {NO_USER_UID} (no user)")
        os.chown(j(b"owners/by-nobody"), 65534, 65534)
        made(b"owners/by-nobody", "owned by nobody:nogroup")
        os.chown(j(b"modes/setuid"), 65534, 0)  # chown first: it clears setuid bits
    else:
        skip("foreign owners", "chown needs root")
    os.chmod(j(b"modes/setuid"), 0o4755)
    os.chmod(j(b"modes/setgid"), 0o2750)
    os.chmod(j(b"modes/setgid-dir"), 0o2775)
    os.chmod(j(b"modes/sticky-dir"), 0o1777)
    os.chmod(j(b"owners/by-no-user"), 0o600)
    for rel, what in (
        (b"modes/setuid", "setuid 4755"),
        (b"modes/setgid", "setgid 2750"),
        (b"modes/setgid-dir", "setgid folder"),
        (b"modes/sticky-dir", "sticky folder"),
    ):
        made(rel, what)
    if IS_ROOT:
        _write(j(b"modes/cap-bin"), b"\x7fELF not really\n")
        os.chmod(j(b"modes/cap-bin"), 0o755)
        os.setxattr(j(b"modes/cap-bin"), b"security.capability", CAPABILITY)
        made(b"modes/cap-bin", "file capability cap_net_bind_service+ep")
    else:
        skip("capability", "security.capability needs CAP_SETFCAP")

    # -- hostile names -------------------------------------------------------------------
    for name in HOSTILE_NAMES:
        _write(j(b"names", name), b"named " + name + b"\n")
        made(b"names/" + name, "hostile name")
    os.mkdir(j(b"names", b"dir-\xff\n\x1b"))
    _write(j(b"names", b"dir-\xff\n\x1b", LONG), b"inside\n")
    made(b"names/dir-\xff\n\x1b/" + LONG, "hostile folder name")

    # -- times: nanoseconds, every entry, children before parents ----------------------
    base = 1_600_000_000_123_456_789
    entries = sorted(_all(r), key=lambda p: -p.count(b"/"))
    for i, p in enumerate(entries):
        if p == s.socket_path:
            continue
        ns = (base + i * 1_000_000_007, base - 86_400_000_000_000 + i * 999_999_937)
        os.utime(j(p) if p else r, ns=(ns[1], ns[0]), follow_symlinks=False)

    # -- inode flags, last (immutable forbids every later change) -----------------------
    if IS_ROOT:
        for rel, bit in ((b"flags/immutable", fsflags.IMMUTABLE), (b"flags/append-only", fsflags.APPEND)):
            _write(j(rel), rel + b"\n")
            fd = os.open(j(rel), os.O_RDONLY)
            try:
                why = fsflags.set_flags(fd, bit | 0x40)  # plus d (no dump)
            finally:
                os.close(fd)
            if why:
                skip(rel.decode(), why)
            else:
                made(rel, f"chattr +{fsflags.letters(bit)}d")
        os.utime(j(b"flags"), ns=(base, base))
    else:
        skip("chattr +i/+a", "needs CAP_LINUX_IMMUTABLE")
    return s


def unfreeze(root: Path | bytes) -> None:
    """Clear +i and +a under ``root`` (restored copies too) so the tree can be removed."""
    r = os.fsencode(root)
    if not os.path.isdir(r):
        return
    for p in [r, *(os.path.join(r, x) for x in _all(r))]:
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            continue
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            buf = bytearray(8)
            import fcntl

            fcntl.ioctl(fd, fsflags.FS_IOC_GETFLAGS, buf, True)
            cur = struct.unpack_from("=i", buf)[0]
            if cur & (fsflags.IMMUTABLE | fsflags.APPEND):
                struct.pack_into("=i", buf, 0, cur & ~(fsflags.IMMUTABLE | fsflags.APPEND))
                fcntl.ioctl(fd, fsflags.FS_IOC_SETFLAGS, buf)
        except OSError:
            pass
        finally:
            os.close(fd)


def _all(root: bytes) -> list[bytes]:
    """Every entry below ``root``, relative, bytes, parents before children."""
    out: list[bytes] = []
    todo = [b""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in sorted(it, key=lambda e: e.name):
                sub = os.path.join(rel, e.name) if rel else e.name
                out.append(sub)
                if e.is_dir(follow_symlinks=False):
                    todo.append(sub)
    return out


@dataclass(frozen=True)
class Entry:
    """What compare_trees looks at, for one path."""

    type: str  # file, dir, symlink, chardev, blockdev, fifo, socket
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    atime_ns: int
    sha256: str | None
    xattrs: tuple[tuple[bytes, bytes], ...]
    flags: int
    target: bytes | None
    rdev: int
    blocks: int
    sparse: bool
    inode: tuple[int, int]
    nlink: int


_TYPES = (
    (stat.S_ISREG, "file"),
    (stat.S_ISDIR, "dir"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISCHR, "chardev"),
    (stat.S_ISBLK, "blockdev"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
)


def entry(path: bytes | str | Path) -> Entry:
    p = os.fsencode(path)
    st = os.lstat(p)
    kind = next(name for test, name in _TYPES if test(st.st_mode))
    digest = None
    fl = 0
    if kind in ("file", "dir"):
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            fl = fsflags.get_flags(fd)
            if kind == "file":
                h = hashlib.sha256()
                while chunk := os.read(fd, MIB):
                    h.update(chunk)
                digest = h.hexdigest()
        finally:
            os.close(fd)
    got = read_xattrs(p, follow=False)
    return Entry(
        type=kind,
        mode=st.st_mode,
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if kind in ("file", "symlink") else 0,
        mtime_ns=st.st_mtime_ns,
        atime_ns=st.st_atime_ns,
        sha256=digest,
        xattrs=got.pairs,
        flags=fl,
        target=os.readlink(p) if kind == "symlink" else None,
        rdev=st.st_rdev if kind in ("chardev", "blockdev") else 0,
        blocks=st.st_blocks,
        sparse=kind == "file" and st.st_size > 0 and st.st_blocks * 512 < st.st_size,
        inode=(st.st_dev, st.st_ino),
        nlink=st.st_nlink,
    )


def state(root: Path | bytes | str, *, sockets: bool = False) -> dict[bytes, Entry]:
    """Relative path (bytes; b"" is the root itself) -> Entry."""
    r = os.fsencode(root)
    out = {b"": entry(r)}
    for rel in _all(r):
        e = entry(os.path.join(r, rel))
        if e.type == "socket" and not sockets:
            continue
        out[rel] = e
    return out


def _link_groups(st: dict[bytes, Entry]) -> dict[bytes, frozenset[bytes]]:
    by_inode: dict[tuple[int, int], set[bytes]] = {}
    for rel, e in st.items():
        if e.type == "file" and e.nlink > 1:
            by_inode.setdefault(e.inode, set()).add(rel)
    return {rel: frozenset(group) for group in by_inode.values() for rel in group}


def compare_trees(
    expected: Path | bytes | str,
    actual: Path | bytes | str,
    *,
    owner: bool = True,
    atime: bool = False,
    sockets: bool = False,
    root_meta: bool = True,
    symlink_times: bool = True,
    block_tolerance: float = 0.10,
) -> list[str]:
    """Every difference between two trees, one line each; [] when they match."""
    a, b = state(expected, sockets=sockets), state(actual, sockets=sockets)
    diffs: list[str] = []
    for rel in sorted(a.keys() - b.keys()):
        diffs.append(f"{shown(rel)}: missing")
    for rel in sorted(b.keys() - a.keys()):
        diffs.append(f"{shown(rel)}: unexpected")
    for rel in sorted(a.keys() & b.keys()):
        x, y = a[rel], b[rel]
        where = shown(rel) if rel else "(root)"
        if x.type != y.type:
            diffs.append(f"{where}: type {x.type} != {y.type}")
            continue
        fields = ["size", "sha256", "target", "rdev", "xattrs", "flags", "mode", "mtime_ns"]
        if owner:
            fields += ["uid", "gid"]
        if atime:
            fields.append("atime_ns")
        if not rel and not root_meta:
            fields = ["type"]
        if x.type == "symlink" and not symlink_times:
            fields = [f for f in fields if f not in ("mtime_ns", "atime_ns")]
        for f in fields:
            va, vb = getattr(x, f), getattr(y, f)
            if va != vb:
                if f == "xattrs":
                    da, db = dict(va), dict(vb)
                    names = sorted(n for n in da.keys() | db.keys() if da.get(n) != db.get(n))
                    diffs.append(
                        f"{where}: xattrs differ: "
                        + ", ".join(f"{shown(n)} {da.get(n)!r} != {db.get(n)!r}" for n in names)
                    )
                elif f == "mode":
                    diffs.append(f"{where}: mode {va:o} != {vb:o}")
                elif f == "flags":
                    diffs.append(f"{where}: flags {fsflags.letters(va) or '-'} != {fsflags.letters(vb) or '-'}")
                else:
                    diffs.append(f"{where}: {f} {va!r} != {vb!r}")
        if x.sparse:
            slack = 128  # 64 KiB in 512-byte blocks: filesystem allocation granularity
            if abs(x.blocks - y.blocks) > block_tolerance * x.blocks + slack:
                diffs.append(f"{where}: allocated blocks {x.blocks} != {y.blocks} (sparse file not kept sparse?)")
    ga, gb = _link_groups(a), _link_groups(b)
    for rel in sorted(ga.keys() | gb.keys()):
        if ga.get(rel, frozenset([rel])) != gb.get(rel, frozenset([rel])):
            diffs.append(
                f"{shown(rel)}: hard links {sorted(map(shown, ga.get(rel, [rel])))} != "
                f"{sorted(map(shown, gb.get(rel, [rel])))}"
            )
    return diffs


def make_deep(root: Path | bytes, depth: int, name: bytes = b"deep-folder", leaf: bytes = b"bottom\n") -> bytes:
    """``depth`` nested folders under ``root`` (which must exist), made relative to each
    parent's descriptor so the path may exceed PATH_MAX, with a file ``leaf.txt`` at the
    bottom. Returns the relative path of that file (bytes; far longer than PATH_MAX)."""
    fd = os.open(os.fsencode(root), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        f = os.open(b"leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, leaf)
        os.close(f)
    finally:
        os.close(fd)
    return b"/".join([name] * depth + [b"leaf.txt"])


def remove_deep(root: Path | bytes) -> None:
    """Remove a tree of any depth (shutil.rmtree recurses and stops near 1,000 levels)."""
    r = os.fsencode(root)
    if not os.path.lexists(r):
        return
    top = os.open(os.path.dirname(r) or b".", os.O_RDONLY | os.O_DIRECTORY)
    stack = [(top, os.path.basename(r))]  # (parent fd, name to remove in it)
    try:
        while stack:
            pfd, name = stack[-1]
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
            except OSError:  # not a folder
                os.unlink(name, dir_fd=pfd)
                stack.pop()
                continue
            sub = None
            with os.scandir(fd) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        sub = os.fsencode(e.name)
                        break
                    os.unlink(e.name, dir_fd=fd)
            if sub is not None:
                stack.append((fd, sub))
                continue
            os.close(fd)
            os.rmdir(name, dir_fd=pfd)
            stack.pop()
            if stack and pfd != top:
                os.close(pfd)
    finally:
        os.close(top)


__all__ = [
    "CAPABILITY",
    "Entry",
    "HOSTILE_NAMES",
    "IS_ROOT",
    "Shapes",
    "build",
    "compare_trees",
    "entry",
    "make_deep",
    "remove_deep",
    "state",
    "unfreeze",
]
