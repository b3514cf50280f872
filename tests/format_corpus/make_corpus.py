"""Write one corpus repository with the code of this checkout, for tests/core/test_format_corpus.py.

Run by hand, from the repository root, when a format version is introduced (see
docs/FORMAT.md, "Versioning policy"):

    .venv/bin/python tests/format_corpus/make_corpus.py v1/basic        (or v1/attributes, v2/write-only, v2/dump-parts, v3/rotated)

It creates ``tests/format_corpus/<version>/<name>/`` (refusing to overwrite one that exists:
a corpus folder is never regenerated, it is what an old writer wrote) holding

    repo/            the repository exactly as the writer left it (without its empty folders:
                     git keeps none; the test re-creates the layout docs/FORMAT.md prescribes)
    passphrase       the passphrase, one line (a corpus holds no secret worth keeping)
    manifest.json    what every snapshot must restore to (below)

What is stored, from a deterministic source tree (fixed names, modes, mtimes; seeded bytes):
regular files (empty, small, a 2.5 MiB one cut into several chunks: sparse seeded noise over
a repeated block, so it compresses to ~170 KB but still has content-defined cut points),
a symlink (relative, dangling), a hard-link pair, nested folders (one 0700), a non-UTF-8 file
name, modes 0644/0600/0755/4755, fixed mtimes. Snapshot 1: the first backup (full).
Snapshot 2: an incremental one after one file changed and one was removed. Snapshot 3: a
database-style snapshot (source ``database``, one streamed file, committed the way a logical
dump is) made in-process without PostgreSQL. The backups of the file source run through the
real CLI (``backup --json``); the repository is created in-process with scrypt N = 2^10 (the
cost is stored in the key file, so every reader pays little) and a 4 MiB pack size.

Scene ``dump-parts`` (v2/dump-parts, written by the build that added tree version 3): one
database-style snapshot whose dump is in 3 parts (the further parts' nodes carry ``dp``, the
metadata ``dump_parts``), as ``[database] dump_jobs = 3`` commits one; its tree is version 3.

Scene ``attributes`` (v1/attributes, written as root by the build that added tree version 2
and the node keys ``rd``, ``x``, ``fl``, ``hz``): user.* xattrs (short text, binary, empty)
on a file and on a folder, an access ACL on a file, a default ACL on a folder and a file
that inherited it (system.posix_acl_*, built with core/fsmeta/acl.build), a sparse file
(8 MiB, two small data islands, ending in a hole), a FIFO, nanosecond mtimes, and as root a
character device (1:3), a block device (7:200), a file capability (security.capability)
and a file with chattr +a (set after the times, cleared before the folder is removed).
Snapshot 1: full; snapshot 2: incremental after one file of the plain sub-folder changed
(the sparse file, the FIFO and the rest carried over). The root folder's tree is version 2
(FIFO, device, holes); ``text/`` and ``shared/`` hold no new type and no holes, so their
trees are version 1 even though they carry ``x`` keys: ``tree_versions`` in the manifest
says which versions the trees use, and the test checks it.

``manifest.json``::

    {"format_version": 1, "program_version": "0.1.0", "created_by": "tests/format_corpus/make_corpus.py",
     "snapshots": [{"id": "<64 hex>", "source": "...", "type": "full", "total_files": 9,
                    "restore_root": "<path below the restore target where the entries are>",
                    "entries": {"<path relative to restore_root>": {
                        "type": "file" | "dir" | "symlink", "mode": <permission bits incl. setuid>,
                        "mtime_ns": int, "size": int, "sha256": "hex"            (files),
                        "target": "..."                                         (symlinks),
                        "hardlink": "<first path of its hard-link group>"        (files linked > 1)
                        -- scene attributes only (absent from v1/basic) --
                        "type": ... | "chardev" | "blockdev" | "fifo",
                        "xattrs": {"<name>": "<hex value>"}     (every non-symlink; {} when none),
                        "flags": int                            (files, folders: the kept chattr flags),
                        "holes": [[offset, length], ...]        (sparse files),
                        "rdev": int                             (devices)}}}],
     "tree_versions": [1, 2]                                    (scene attributes: versions of its trees)}

Paths are ``os.fsdecode`` strings (a non-UTF-8 byte is a lone surrogate, which JSON keeps as
``\\udcXX``); ``os.fsencode`` gives the bytes back. ``"."`` is the source folder itself.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

PASSPHRASE = "axisor format corpus"
T0 = 1_700_000_000_000_000_000  # fixed mtimes, ns
BIG_SIZE = 5 * 1024 * 1024 // 2


def big_bytes() -> bytes:
    """2.5 MiB: a repeated 4 KiB block of 10 letters with every 16th byte seeded noise. The noise
    keeps FastCDC's rolling hash varied (cuts appear whatever the repository's gear seed:
    3 to 7 chunks in 40 tries), the rest makes zstd shrink it to ~170 KB."""
    r = random.Random(13)
    block = bytes(r.choice(b"abcdefgh \n") for _ in range(4096))
    out = bytearray((block * (BIG_SIZE // 4096 + 1))[:BIG_SIZE])
    for k in range(0, BIG_SIZE, 16):
        out[k] = r.randrange(256)
    return bytes(out)


def make_tree(src: Path) -> None:
    r = random.Random(7)
    (src / "docs" / "nested" / "deeper").mkdir(parents=True)
    (src / "private").mkdir()
    (src / "empty-dir").mkdir()
    (src / "empty.txt").write_bytes(b"")
    (src / "hello.txt").write_bytes(b"hello, corpus\n")
    (src / "docs" / "readme.md").write_bytes(b"# corpus\n\nversion 1 of the format.\n")
    (src / "docs" / "nested" / "deeper" / "leaf.bin").write_bytes(r.randbytes(3000))
    (src / "docs" / "to-remove.txt").write_bytes(b"removed before the second snapshot\n")
    (src / "docs" / "to-change.txt").write_bytes(b"first version\n")
    (src / "private" / "secret.key").write_bytes(b"k" * 64)
    (src / "big.bin").write_bytes(big_bytes())
    (src / "tool.sh").write_bytes(b"#!/bin/sh\necho corpus\n")
    (src / "setuid-tool").write_bytes(b"\x7fELF not really\n")
    with open(os.fsencode(str(src)) + b"/caf\xe9-\xff.txt", "wb") as f:  # not UTF-8
        f.write(b"latin-1 name\n")
    os.link(src / "private" / "secret.key", src / "private" / "secret-link.key")
    os.symlink("docs/readme.md", src / "readme-link")
    os.symlink("../nowhere/at/all", src / "docs" / "dangling-link")
    for path, mode in [
        ("empty.txt", 0o644),
        ("hello.txt", 0o644),
        ("docs/readme.md", 0o644),
        ("docs/nested/deeper/leaf.bin", 0o600),
        ("docs/to-remove.txt", 0o644),
        ("docs/to-change.txt", 0o644),
        ("private/secret.key", 0o600),
        ("big.bin", 0o644),
        ("tool.sh", 0o755),
        ("setuid-tool", 0o4755),
        ("private", 0o700),
        ("docs", 0o755),
        ("docs/nested", 0o750),
        ("docs/nested/deeper", 0o755),
        ("empty-dir", 0o755),
        (".", 0o755),
    ]:
        os.chmod(src / path, mode)
    os.chmod(os.fsencode(str(src)) + b"/caf\xe9-\xff.txt", 0o644)
    stamp(src, T0)


def stamp(src: Path, base: int) -> None:
    """Fixed mtimes (and atimes) for everything, folders last (writing into one changes it)."""
    broot = os.fsencode(str(src))
    everything = []
    for dirpath, dirnames, filenames in os.walk(broot):
        everything += [os.path.join(dirpath, n) for n in filenames]
        everything += [os.path.join(dirpath, n) for n in dirnames]
    for i, p in enumerate(sorted(everything, key=lambda p: (-p.count(b"/"), p))):
        t = base + (i + 1) * 1_000_000_007
        os.utime(p, ns=(t, t), follow_symlinks=False)
    os.utime(broot, ns=(base, base))


def entries(src: Path, *, attributes: bool = False) -> dict[str, dict]:
    """What a restore of ``src`` must give back, path by path (with ``attributes``: xattrs,
    flags, holes, device numbers and the special types too; v1/basic was written without)."""
    broot = os.fsencode(str(src))
    out: dict[str, dict] = {}
    groups: dict[tuple[int, int], str] = {}
    paths = [broot]
    for dirpath, dirnames, filenames in os.walk(broot):
        paths += [os.path.join(dirpath, n) for n in dirnames + filenames]
    for p in sorted(paths):
        rel = "." if p == broot else os.fsdecode(os.path.relpath(p, broot))
        st = os.lstat(p)
        e: dict = {"mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}
        if stat.S_ISLNK(st.st_mode):
            e = {"type": "symlink", **e, "target": os.fsdecode(os.readlink(p))}
        elif stat.S_ISDIR(st.st_mode):
            e = {"type": "dir", **e}
        elif attributes and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            e = {"type": "chardev" if stat.S_ISCHR(st.st_mode) else "blockdev", **e, "rdev": st.st_rdev}
        elif attributes and stat.S_ISFIFO(st.st_mode):
            e = {"type": "fifo", **e}
        else:
            with open(p, "rb") as f:
                data = f.read()
            e = {"type": "file", **e, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            if st.st_nlink > 1:
                e["hardlink"] = groups.setdefault((st.st_dev, st.st_ino), rel)
        if attributes:
            e.update(extended(p, st))
        out[rel] = e
    return out


def extended(p: bytes, st: os.stat_result) -> dict:
    """xattrs (every non-symlink), kept inode flags (files, folders), holes (sparse files)."""
    from core.fsmeta import flags as fsflags

    out: dict = {}
    if stat.S_ISLNK(st.st_mode):
        return out
    out["xattrs"] = {
        n: os.getxattr(p, n, follow_symlinks=False).hex() for n in sorted(os.listxattr(p, follow_symlinks=False))
    }
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            out["flags"] = fsflags.get_flags(fd)
            if stat.S_ISREG(st.st_mode) and st.st_blocks * 512 < st.st_size:
                out["holes"] = [list(h) for h in file_holes(fd, st.st_size)]
        finally:
            os.close(fd)
    return out


def file_holes(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of each hole, by SEEK_DATA/SEEK_HOLE (independent of core/fsmeta)."""
    out, pos = [], 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole after pos
            data = size
        if data > pos:
            out.append((pos, data - pos))
        if data >= size:
            break
        pos = os.lseek(fd, data, os.SEEK_HOLE)
    return out


# -- scene "attributes" -------------------------------------------------------------------

T1 = 1_600_000_000_123_456_789  # nanosecond parts that are not round
USER_XATTRS = {b"user.comment": b"short text", b"user.binary": b"\x00\xff\x01 binary \x80\x7f", b"user.empty": b""}
SPARSE_SIZE = 8 * 1024 * 1024
SPARSE_ISLANDS = ((1024 * 1024, 64 * 1024), (5 * 1024 * 1024, 16 * 1024))  # the rest is holes
APPEND_ONLY = "append-only.log"


def acls() -> tuple[bytes, bytes]:
    from core.fsmeta import acl

    me = 0xFFFFFFFF  # the id field of the owner/group/mask/other entries
    # user::rw-, user:65534:r--, group::r--, mask::r--, other::---
    access = acl.build([(0x01, 6, me), (0x02, 4, 65534), (0x04, 4, me), (0x10, 4, me), (0x20, 0, me)])
    # default: user::rwx, group::r-x, group:65534:r-x, mask::r-x, other::---
    default = acl.build([(0x01, 7, me), (0x04, 5, me), (0x08, 5, 65534), (0x10, 5, me), (0x20, 0, me)])
    return access, default


def make_attribute_tree(src: Path) -> None:
    """The scene of v1/attributes (see the header). Flags come last: see set_append_only."""
    os.umask(0o022)
    r = random.Random(11)
    access, default = acls()
    is_root = os.geteuid() == 0
    (src / "text").mkdir()
    (src / "shared").mkdir()
    (src / "special").mkdir()
    (src / "text" / "notes.txt").write_bytes(b"a file with user.* attributes\n")
    (src / "text" / "changed.txt").write_bytes(b"first version\n")
    (src / "text" / "acl.txt").write_bytes(b"a file with an access ACL\n")
    (src / APPEND_ONLY).write_bytes(b"line 1\nline 2\n")
    for path, mode in [
        ("text", 0o755),
        ("shared", 0o750),
        ("special", 0o755),
        (".", 0o755),
        ("text/notes.txt", 0o644),
        ("text/changed.txt", 0o644),
        ("text/acl.txt", 0o640),
        (APPEND_ONLY, 0o644),
    ]:
        os.chmod(src / path, mode)  # before the ACLs: a chmod rewrites an ACL's mask
    for name, value in USER_XATTRS.items():
        os.setxattr(src / "text" / "notes.txt", name, value)
    os.setxattr(src / "text", b"user.folder", b"on a folder")
    os.setxattr(src / "text" / "acl.txt", b"system.posix_acl_access", access)
    os.setxattr(src / "shared", b"system.posix_acl_default", default)
    (src / "shared" / "inherited.txt").write_bytes(b"inherits the folder's default ACL\n")  # 0640 + ACL
    fd = os.open(src / "sparse.img", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for off, length in SPARSE_ISLANDS:
            block = r.randbytes(512)
            os.pwrite(fd, (block * (length // 512))[:length], off)
        os.ftruncate(fd, SPARSE_SIZE)
    finally:
        os.close(fd)
    os.mkfifo(src / "special" / "fifo", 0o640)
    os.chmod(src / "special" / "fifo", 0o640)
    if is_root:
        os.mknod(src / "special" / "null-dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(src / "special" / "loop-dev", 0o600 | stat.S_IFBLK, os.makedev(7, 200))
        for dev in ("null-dev", "loop-dev"):
            os.chmod(src / "special" / dev, 0o600)
        (src / "cap-bin").write_bytes(b"\x7fELF not really\n")
        os.chmod(src / "cap-bin", 0o755)
        # VFS_CAP_REVISION_2, effective, cap_net_bind_service permitted (as setcap writes it)
        os.setxattr(src / "cap-bin", b"security.capability", struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0))
    stamp(src, T1)


def set_append_only(src: Path, on: bool) -> None:
    """chattr +a (after the times: an append-only file refuses utime) or -a (before removal)."""
    from core.fsmeta import flags as fsflags

    fd = os.open(src / APPEND_ONLY, os.O_RDONLY)
    try:
        if on:
            if why := fsflags.set_flags(fd, fsflags.APPEND):
                raise SystemExit(f"chattr +a {APPEND_ONLY}: {why} (run as root on ext4/xfs/btrfs)")
        else:
            buf = bytearray(8)
            fcntl.ioctl(fd, fsflags.FS_IOC_GETFLAGS, buf, True)
            struct.pack_into("=i", buf, 0, struct.unpack_from("=i", buf)[0] & ~fsflags.APPEND)
            fcntl.ioctl(fd, fsflags.FS_IOC_SETFLAGS, buf)
    finally:
        os.close(fd)


def tree_versions(repo_path: Path) -> list[int]:
    """The versions (msgpack ``v``) of every tree every snapshot reaches."""
    import msgpack

    async def go() -> list[int]:
        from core.repository.format import BlobType
        from core.repository.repository import Repository
        from core.storage.local import LocalBackend

        repo = await Repository.open(LocalBackend(repo_path), PASSPHRASE)
        await repo.load_index()
        snaps, _ = await repo.list_snapshots()
        seen: set[bytes] = set()
        todo = [bytes.fromhex(s.tree) for s in snaps]
        versions: set[int] = set()
        while todo:
            tid = todo.pop()
            if tid in seen:
                continue
            seen.add(tid)
            raw = msgpack.unpackb(await repo.load_blob(BlobType.TREE, tid), raw=False)
            versions.add(raw["v"])
            todo += [n["st"] for n in raw["nodes"] if n.get("st")]
        return sorted(versions)

    return asyncio.run(go())


def snapshot_record(result: dict, src: Path, *, attributes: bool = False) -> dict:
    return {
        "id": result["id"],
        "source": result["source"],
        "type": result["type"],
        "total_files": result["summary"]["total_files"],
        "restore_root": result["paths"][0].lstrip("/"),
        "entries": entries(src, attributes=attributes),
    }


def scene_attributes(work: Path, src: Path) -> tuple[list[dict], dict]:
    make_attribute_tree(src)
    set_append_only(src, True)
    try:
        snapshots = []
        first = cli(work, "backup")["snapshots"][0]
        snapshots.append(snapshot_record(first, src, attributes=True))
        (src / "text" / "changed.txt").write_bytes(b"second version, longer than the first\n")
        t = T1 + 86_400 * 10**9 + 1
        os.utime(src / "text" / "changed.txt", ns=(t, t))
        os.utime(src / "text", ns=(t + 7, t + 7))
        second = cli(work, "backup")["snapshots"][0]
        assert second["type"] == "incremental" and second["summary"]["files_changed"] >= 1, second
        snapshots.append(snapshot_record(second, src, attributes=True))
    finally:
        set_append_only(src, False)
    versions = tree_versions(work / "repo")
    if versions != [1, 2]:
        raise SystemExit(f"trees of versions {versions}: the scene must hold both 1 and 2")
    return snapshots, {"tree_versions": versions}


def cli(work: Path, *args: str, passphrase: str = PASSPHRASE, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env.update(
        AXISOR_BACKUP_PASSPHRASE=passphrase, AXISOR_BACKUP_STATE_DIR=str(work / "state"), PYTHONDONTWRITEBYTECODE="1"
    )
    env.update(env_extra or {})
    p = subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(work / "config.toml"), "--json", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if p.returncode != 0:
        raise SystemExit(f"axisor-backup {' '.join(args)} -> exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout)


async def create_repo(repo: Path) -> None:
    from core import crypto
    from core.repository.repository import Repository
    from core.storage.local import LocalBackend

    saved = crypto.SCRYPT_N
    crypto.SCRYPT_N = 2**10
    try:
        await Repository.create(LocalBackend(repo), PASSPHRASE, pack_size=4 * 1024 * 1024)
    finally:
        crypto.SCRYPT_N = saved


async def database_like_snapshot(repo_path: Path, parts: int = 1) -> tuple[dict, dict]:
    """A snapshot committed exactly as a logical dump is (StreamWriter + single_file_snapshot),
    from a seeded byte stream instead of pg_dump; ``parts`` > 1: as a dump in parts is
    (dump_jobs: further files with their part number, tree version 3, ``dump_parts``)."""
    from core.backup.single_file import single_file_snapshot
    from core.backup.stream import StreamWriter
    from core.repository.format import BlobType
    from core.repository.lock import Lock
    from core.repository.repository import Repository
    from core.storage.local import LocalBackend

    dump = b"PGDMP" + b"".join(
        b"COPY corpus.t%d FROM stdin;\n%s\n\\.\n" % (i, b"row\t%d\n" % i * 50) for i in range(40)
    )
    repo = await Repository.open(LocalBackend(repo_path), PASSPHRASE)
    async with Lock(repo.backend, exclusive=False, operation="backup"):
        await repo.load_index()
        before = list(repo.stats.by_type.get(BlobType.DATA, [0, 0, 0]))
        writer = StreamWriter(repo)
        ids, size = await writer.store(io.BytesIO(dump))
        more = [b"PGDMP part %d\n" % k + b"row\t%d\n" % k * 300 for k in range(1, parts)]
        stored = [await writer.store(io.BytesIO(d)) for d in more]
        await writer.drain()
        metadata = {
            "mode": "logical",
            "format": "custom",
            "dump_file": "corpus.dump",
            "dump_size": size,
            "dbname": "corpus",
            "tables": {},
            "total_tables": 0,
            "total_records": 0,
            "checksum_method": "count-only",
            "checksums": {},
            "large_objects": None,
            "application_version": None,
            "duration_seconds": 0.0,
        }
        if parts > 1:
            metadata["dump_parts"] = [
                {"part": 0, "file": "corpus.dump", "size": size, "tables": []},
                *(
                    {"part": k, "file": f"corpus.dump.part{k}", "size": n, "tables": [f"corpus.t{k}"]}
                    for k, (_, n) in enumerate(stored, 1)
                ),
            ]
        snap = await single_file_snapshot(
            repo,
            name="corpus.dump",
            ids=ids,
            size=size,
            before=before,
            source="database",
            paths=("corpus on /run/postgresql:5432",),
            backup_set="c0ffee0000000001",
            tags=("corpus",),
            metadata=metadata,
            parts=tuple((f"corpus.dump.part{k}", c, n) for k, (c, n) in enumerate(stored, 1)),
        )
        snap_id = await repo.save_snapshot(snap)
        tree = await repo.load_tree(bytes.fromhex(snap.tree))
    node = tree.nodes[0]
    files = {"corpus.dump": dump, **{f"corpus.dump.part{k}": d for k, d in enumerate(more, 1)}}
    entries = {
        name: {
            "type": "file",
            "mode": stat.S_IMODE(node.mode),
            "mtime_ns": node.mtime_ns,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name, data in files.items()
    }
    return (
        {
            "id": snap_id,
            "source": "database",
            "type": "full",
            "total_files": len(files),
            "restore_root": "",
            "entries": entries,
        },
        metadata,
    )


def chunks_of(work: Path, snap_id: str, path: str) -> int:
    async def go() -> int:
        from core.repository.repository import Repository
        from core.storage.local import LocalBackend

        repo = await Repository.open(LocalBackend(work / "repo"), PASSPHRASE)
        await repo.load_index()
        snaps, _ = await repo.list_snapshots()
        snap = next(s for s in snaps if s.id == snap_id)
        tree = await repo.load_tree(bytes.fromhex(snap.tree))
        for part in (snap.paths[0].strip("/") + "/" + path).split("/"):
            node = next(n for n in tree.nodes if n.name == os.fsencode(part))
            if node.subtree is not None:
                tree = await repo.load_tree(node.subtree)
        return len(node.content)

    return asyncio.run(go())


def scene_basic(work: Path, src: Path) -> tuple[list[dict], dict]:
    make_tree(src)
    snapshots = []
    first = cli(work, "backup")["snapshots"][0]
    snapshots.append(
        {
            "id": first["id"],
            "source": first["source"],
            "type": first["type"],
            "total_files": first["summary"]["total_files"],
            "restore_root": first["paths"][0].lstrip("/"),
            "entries": entries(src),
        }
    )
    if (n := chunks_of(work, first["id"], "big.bin")) < 2:
        raise SystemExit(f"big.bin is {n} chunk(s) with this repository's gear seed: run again")

    (src / "docs" / "to-change.txt").write_bytes(b"second version, longer than the first\n")
    os.unlink(src / "docs" / "to-remove.txt")
    stamp(src, T0 + 86_400 * 10**9)
    second = cli(work, "backup")["snapshots"][0]
    assert second["type"] == "incremental" and second["summary"]["files_changed"] >= 1, second
    assert second["summary"]["files_removed"] == 1, second
    snapshots.append(
        {
            "id": second["id"],
            "source": second["source"],
            "type": second["type"],
            "total_files": second["summary"]["total_files"],
            "restore_root": second["paths"][0].lstrip("/"),
            "entries": entries(src),
        }
    )

    db, _ = asyncio.run(database_like_snapshot(work / "repo"))
    snapshots.append(db)
    return snapshots, {}


WRITER_PASSPHRASE = "axisor format corpus, write-only"


def scene_write_only(work: Path, src: Path) -> tuple[list[dict], dict]:
    """v2/write-only: two backups by a write-only key (two sessions; the second incremental,
    from the host's own cache), then one by the full key after another change."""
    make_tree(src)
    cli(work, "key", "add", "--write-only", env_extra={"AXISOR_BACKUP_NEW_PASSPHRASE": WRITER_PASSPHRASE})
    snapshots = []
    first = cli(work, "backup", passphrase=WRITER_PASSPHRASE)["snapshots"][0]
    snapshots.append(snapshot_record(first, src))
    (src / "docs" / "to-change.txt").write_bytes(b"second version, longer than the first\n")
    t = T0 + 86_400 * 10**9 + 1
    os.utime(src / "docs" / "to-change.txt", ns=(t, t))
    os.utime(src / "docs", ns=(t + 7, t + 7))
    second = cli(work, "backup", passphrase=WRITER_PASSPHRASE)["snapshots"][0]
    assert second["type"] == "incremental" and second["summary"]["files_unmodified"] >= 5, second
    snapshots.append(snapshot_record(second, src))
    os.unlink(src / "docs" / "to-remove.txt")
    stamp(src, T0 + 2 * 86_400 * 10**9)
    third = cli(work, "backup")["snapshots"][0]
    snapshots.append(snapshot_record(third, src))
    return snapshots, {"writer_passphrase": WRITER_PASSPHRASE}


def scene_rotated(work: Path, src: Path) -> tuple[list[dict], dict]:
    """v3/rotated: a backup by a write-only key and one by the full key, then `key rotate`
    (the repository becomes version 3; the old key retired into a keyring), then a backup
    under the new key. No `prune --rewrite`: the corpus keeps packs, index files and
    manifests under the retired key (write-only sessions included) beside new ones."""
    make_tree(src)
    cli(work, "key", "add", "--write-only", env_extra={"AXISOR_BACKUP_NEW_PASSPHRASE": WRITER_PASSPHRASE})
    snapshots = [snapshot_record(cli(work, "backup", passphrase=WRITER_PASSPHRASE)["snapshots"][0], src)]
    (src / "docs" / "to-change.txt").write_bytes(b"second version, longer than the first\n")
    t = T0 + 86_400 * 10**9 + 1
    os.utime(src / "docs" / "to-change.txt", ns=(t, t))
    os.utime(src / "docs", ns=(t + 7, t + 7))
    snapshots.append(snapshot_record(cli(work, "backup")["snapshots"][0], src))
    cli(work, "key", "rotate")
    os.unlink(src / "docs" / "to-remove.txt")
    stamp(src, T0 + 2 * 86_400 * 10**9)
    snapshots.append(snapshot_record(cli(work, "backup")["snapshots"][0], src))
    return snapshots, {}


def scene_dump_parts(work: Path, src: Path) -> tuple[list[dict], dict]:
    """v2/dump-parts: written by the build that added dump parts (issue 19): a database-style
    snapshot whose dump is in 3 parts (tree version 3, node key ``dp``, ``dump_parts``)."""
    db, _ = asyncio.run(database_like_snapshot(work / "repo", parts=3))
    return [db], {"tree_versions": [3]}


SCENES = {
    "dump-parts": scene_dump_parts,
    "basic": scene_basic,
    "attributes": scene_attributes,
    "write-only": scene_write_only,
    "rotated": scene_rotated,
}
# The repository version a scene leaves (REPO_VERSION, what `init` writes, unless named).
SCENE_VERSIONS = {"rotated": 3}


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1].count("/") != 1:
        raise SystemExit(__doc__.split("\n\n")[1])
    from core import __version__
    from core.repository.format import REPO_VERSION

    version, name = sys.argv[1].split("/")
    if name not in SCENES:
        raise SystemExit(f"no scene {name!r}: one of {', '.join(SCENES)}")
    writes = SCENE_VERSIONS.get(name, REPO_VERSION)
    if version != f"v{writes}":
        raise SystemExit(f"this checkout writes format version {writes} for {name}, not {version}")
    dest = HERE / version / name
    if dest.exists():
        raise SystemExit(f"{dest} exists: corpus folders are never regenerated")
    with tempfile.TemporaryDirectory(prefix="axisor-corpus-") as tmp:
        work = Path(tmp)
        src = work / "src"
        src.mkdir()
        (work / "state").mkdir()
        (work / "config.toml").write_text(
            f"[application]\nuser_data = [{json.dumps(str(src))}]\n"
            f"[storage]\nlocal_path = {json.dumps(str(work / 'repo'))}\npack_size_mib = 4\n"
        )
        asyncio.run(create_repo(work / "repo"))
        snapshots, extra = SCENES[name](work, src)

        for lock in (work / "repo" / "locks").iterdir():
            lock.unlink()
        dest.mkdir(parents=True)
        shutil.copytree(
            work / "repo", dest / "repo", ignore=lambda d, names: [n for n in names if n.startswith(".tmp-")]
        )
        (dest / "passphrase").write_text(PASSPHRASE + "\n")
        (dest / "manifest.json").write_text(
            json.dumps(
                {
                    "format_version": writes,
                    "program_version": __version__,
                    "created_by": "tests/format_corpus/make_corpus.py",
                    "snapshots": snapshots,
                    **extra,
                },
                indent=1,
                sort_keys=True,
            )
            + "\n"
        )
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"wrote {dest} ({size} bytes, {len(snapshots)} snapshots)")


if __name__ == "__main__":
    main()
