"""The backup side of issue 13: every attribute of every shape lands in the snapshot's
nodes exactly; deep and hostile trees; unreadable and symlinked source roots.

Backups run through the real CLI (exit codes and warnings are the contract); the snapshot
is then read with the Repository API, tree by tree, and compared field by field with the
source as tests/fs_shapes.py sees it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

import fs_shapes as S
import hostile_support as H
from core.fsmeta import sparse
from core.repository.format import BlobType
from core.repository.tree import DIR, Node
from core.text import shown

axenv = H.axenv
REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(not S.IS_ROOT, reason="devices, capabilities, chattr and owners need root")


# -- reading a snapshot back --------------------------------------------------------------


async def _nodes(env: H.AxEnv, below: Path, snapshot: str = "latest") -> tuple[dict[bytes, Node], object]:
    """Every node under ``below`` in the snapshot: relative path (bytes, b"" = below) -> node.
    Iterative, so a tree of any depth loads."""
    repo = await env.open_repo()
    snap = await repo.find_snapshot(snapshot)
    tree = await repo.load_tree(bytes.fromhex(snap.tree))
    node = None
    for part in os.fsencode(below).strip(b"/").split(b"/"):
        node = tree.find(part)
        assert node is not None, f"{part!r} not in the snapshot"
        if node.type == DIR:
            tree = await repo.load_tree(node.subtree)
    out: dict[bytes, Node] = {b"": node}
    todo = [(b"", node)]
    while todo:
        rel, n = todo.pop()
        if n.type != DIR:
            continue
        for child in (await repo.load_tree(n.subtree)).nodes:
            sub = rel + b"/" + child.name if rel else child.name
            out[sub] = child
            todo.append((sub, child))
    return out, (repo, snap)


async def _content(repo, node: Node) -> tuple[bytes, int]:
    """(SHA-256 of the logical file, holes filled with zeros; bytes the blobs hold)."""
    data = b"".join([await repo.load_blob(BlobType.DATA, i) for i in node.content])
    logical = bytearray()
    pos = 0
    for off, length in sparse.data_extents(node.size, node.holes):
        logical += bytes(off - len(logical))
        logical += data[pos : pos + length]
        pos += length
    logical += bytes(node.size - len(logical))
    return hashlib.sha256(bytes(logical)).hexdigest(), len(data)


def _expected_holes(size: int, islands) -> tuple[tuple[int, int], ...]:
    out, pos = [], 0
    for off, length in islands:
        if off > pos:
            out.append((pos, off - pos))
        pos = off + length
    if pos < size:
        out.append((pos, size - pos))
    return tuple(out)


def _mismatches(nodes: dict[bytes, Node], state: dict[bytes, S.Entry], file_atimes: dict[bytes, int]) -> list[str]:
    bad: list[str] = []
    for rel, e in state.items():
        n = nodes.get(rel)
        where = shown(rel) or "(root)"
        if n is None:
            bad.append(f"{where}: not in the snapshot")
            continue
        want = {
            "type": e.type,
            "mode": e.mode,
            "uid": e.uid,
            "gid": e.gid,
            "mtime_ns": e.mtime_ns,
            "xattrs": e.xattrs,
            "flags": e.flags,
            "rdev": e.rdev,
        }
        if e.type == "symlink":
            want["target"] = e.target
        if e.type == "file":
            want.update(size=e.size, nlink=e.nlink, inode=e.inode[1], dev=e.inode[0])
        if rel in file_atimes:
            want["atime_ns"] = file_atimes[rel]
        for k, v in want.items():
            if getattr(n, k) != v:
                bad.append(f"{where}: {k} {getattr(n, k)!r} in the snapshot, {v!r} on disk")
    for rel in nodes.keys() - state.keys():
        bad.append(f"{shown(rel)}: in the snapshot, not on disk")
    return bad


@pytest.fixture
def shapes(axenv):
    src = axenv.base / "shapes"
    s = S.build(src)
    axenv.write_config([src])
    yield s
    s.close()
    S.unfreeze(src)


# -- every attribute ------------------------------------------------------------------------


def test_every_shape_is_stored_exactly(axenv, shapes):
    src = shapes.root
    # Access times first (listing folders changes only folders' atimes); the backup reads
    # with O_NOATIME, so files keep theirs.
    file_atimes = {}
    for rel in S._all(os.fsencode(src)):
        st = os.lstat(shapes.path(rel))
        if not stat.S_ISDIR(st.st_mode) and not stat.S_ISSOCK(st.st_mode):
            file_atimes[rel] = st.st_atime_ns
    axenv.init_fast()
    r = axenv.cli("backup", json_out=True)
    assert r.code == 7, r  # the socket
    snap = r.json["snapshots"][0]
    assert [w for w in snap["warnings"] if "control.sock" in w] == [
        f"{src}/special/control.sock: skipped: a socket cannot be backed up"
    ], snap["warnings"]
    assert len(snap["warnings"]) == 1, snap["warnings"]

    state = S.state(src)
    nodes, (repo, _) = asyncio.run(_nodes(axenv, src))
    assert _mismatches(nodes, state, file_atimes) == []

    async def contents():
        return {rel: await _content(repo, n) for rel, n in nodes.items() if n.type == "file"}

    got = asyncio.run(contents())
    for rel, (digest, _) in got.items():
        assert digest == state[rel].sha256, shown(rel)

    # Sparse files: the logical size, the holes, and only the data stored.
    big = nodes[b"sparse/sparse.img"]
    assert big.size == S.SPARSE_SIZE
    assert big.holes == _expected_holes(S.SPARSE_SIZE, S.SPARSE_ISLANDS)
    assert got[b"sparse/sparse.img"][1] == sum(length for _, length in S.SPARSE_ISLANDS) == big.data_size
    small = nodes[b"sparse/small-sparse.img"]
    assert small.size == S.SMALL_SPARSE_SIZE and small.data_size == 4096
    assert small.holes == _expected_holes(S.SMALL_SPARSE_SIZE, S.SMALL_SPARSE_ISLANDS)
    hole = nodes[b"sparse/all-hole.img"]
    assert hole.content == () and hole.holes == ((0, 8 * S.MIB),)
    assert snap["summary"]["data_added"] < 16 * S.MIB  # not the 72 MiB of logical size

    # Attributes by kind, spelled out (the comparison above already covers them).
    assert (b"user.binary", b"\x00\xff\x01 not utf-8") in nodes[b"files/xattrs.txt"].xattrs
    assert (b"user.folder", b"on a folder") in nodes[b"files"].xattrs
    assert dict(nodes[b"acl/file-acl.txt"].xattrs)[b"system.posix_acl_access"] == S.ACCESS_ACL
    assert dict(nodes[b"acl/default-acl"].xattrs)[b"system.posix_acl_default"] == S.DEFAULT_ACL
    assert nodes[b"special/fifo"].type == "fifo"
    assert nodes[b"names/" + S.NEWLINE].type == "file"
    assert {n.name for n in nodes.values()} >= set(S.HOSTILE_NAMES)
    links = {rel: n.inode for rel, n in nodes.items() if rel.startswith(b"links/") and n.type == "file"}
    assert len(set(links.values())) == 1 and all(nodes[r].nlink == 3 for r in links)
    assert nodes[b"modes/setuid"].mode & stat.S_ISUID and nodes[b"modes/setgid"].mode & stat.S_ISGID
    if S.IS_ROOT:
        assert nodes[b"special/null-dev"].type == "chardev" and nodes[b"special/null-dev"].rdev == os.makedev(1, 3)
        assert nodes[b"special/loop-dev"].type == "blockdev"
        assert dict(nodes[b"modes/cap-bin"].xattrs)[b"security.capability"] == S.CAPABILITY
        assert nodes[b"flags/immutable"].flags & 0x10 and nodes[b"flags/append-only"].flags & 0x20
        assert (b"trusted.note", b"on a symlink") in nodes[b"files/link"].xattrs
        assert nodes[b"owners/by-nobody"].user == "nobody"
        assert nodes[b"owners/by-no-user"].uid == S.NO_USER_UID and nodes[b"owners/by-no-user"].user == ""


def test_unchanged_files_carry_their_attributes_and_changed_ones_are_read_again(axenv, shapes):
    axenv.init_fast()
    assert axenv.cli("backup").code == 7
    first, _ = asyncio.run(_nodes(axenv, shapes.root))

    r = axenv.cli("backup", json_out=True)
    assert r.code == 7, r
    summary = r.json["snapshots"][0]["summary"]
    assert summary["bytes_read"] == 0 and summary["files_changed"] == 0, summary
    second, _ = asyncio.run(_nodes(axenv, shapes.root))

    def same(nodes):  # reading a symlink updates its atime, and so its folder's tree id
        return {
            rel: replace(n, atime_ns=0 if n.type == "symlink" else n.atime_ns, subtree=None) for rel, n in nodes.items()
        }

    assert same(second) == same(first)  # xattrs, flags, holes: carried over, not lost

    # An attribute change changes ctime: the file is read again, with its new attributes.
    os.setxattr(shapes.path(b"files/xattrs.txt"), b"user.comment", b"changed")
    os.removexattr(shapes.path(b"files/xattrs.txt"), b"user.empty")
    r = axenv.cli("backup", json_out=True)
    assert r.json["snapshots"][0]["summary"]["files_changed"] == 1
    third, _ = asyncio.run(_nodes(axenv, shapes.root))
    assert third[b"files/xattrs.txt"].xattrs == (
        (b"user.binary", b"\x00\xff\x01 not utf-8"),
        (b"user.comment", b"changed"),
    )


# -- deep and hostile trees -----------------------------------------------------------------


def test_a_tree_3000_levels_deep_is_stored_whole(axenv):
    deep = axenv.src / "deep"
    deep.mkdir()
    rel = S.make_deep(deep, 3000)
    assert len(rel) > 4096 * 8
    fd = os.open(deep, os.O_RDONLY)
    os.setxattr(fd, b"user.top", b"1")
    os.close(fd)
    axenv.init_fast()
    # A small soft limit, as a service manager may give: the backup raises it to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 1024)
    try:
        p = subprocess.run(
            axenv.argv("backup", json_out=True),
            cwd=H.ROOT,
            env=axenv.env(),
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),
        )
        assert p.returncode == 0, p.stderr
        nodes, _ = asyncio.run(_nodes(axenv, axenv.src))
        leaf = nodes[b"deep/" + rel]
        assert leaf.type == "file" and leaf.size == len(b"bottom\n")
        assert sum(1 for k in nodes if k.startswith(b"deep/")) == 3001
        assert nodes[b"deep"].xattrs == ((b"user.top", b"1"),)
        # Unchanged: the re-run carries all of it over.
        p = subprocess.run(
            axenv.argv("backup", json_out=True),
            cwd=H.ROOT,
            env=axenv.env(),
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["snapshots"][0]["summary"]["files_unmodified"] == 1
        # The catalog walks every tree of every snapshot (is it complete at each location?).
        r = axenv.cli("snapshots", json_out=True)
        assert r.code == 0 and len(r.json["snapshots"]) == 2, r
        assert axenv.cli("verify").code == 0
    finally:
        S.remove_deep(deep)


def test_hostile_names_are_stored_as_bytes_and_shown_escaped(axenv):
    import socket

    names = [b"sock\n\x1b[2J\xff"]
    for n in S.HOSTILE_NAMES:
        (axenv.src / os.fsdecode(n)).write_bytes(n)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(os.fsencode(axenv.src), names[0]))
    try:
        axenv.init_fast()
        r = axenv.cli("backup", json_out=True)
    finally:
        sock.close()
    assert r.code == 7, r
    warnings = r.json["snapshots"][0]["warnings"]
    assert warnings == [f"{axenv.src}/sock\\n\\x1b[2J\\xff: skipped: a socket cannot be backed up"]
    assert "\x1b" not in r.stdout + r.stderr
    nodes, (repo, _) = asyncio.run(_nodes(axenv, axenv.src))
    assert set(nodes) - {b""} == set(S.HOSTILE_NAMES)
    for n in S.HOSTILE_NAMES:
        assert asyncio.run(repo.load_blob(BlobType.DATA, nodes[n].content[0])) == n


async def test_files_that_change_vanish_or_turn_into_folders_mid_backup(ws, monkeypatch):
    """Never a traceback, never the whole backup lost: each such file is stored or skipped
    with a warning naming it; everything else is stored."""
    from core.config import load_config
    from core.service import BackupService

    (ws.src / "ok.txt").write_text("fine")
    (ws.src / "becomes-dir.txt").write_text("soon a folder")
    (ws.src / "gone.txt").write_text("soon gone")
    (ws.src / "big-becomes-fifo.bin").write_bytes(os.urandom(1_000_000))
    (ws.src / "gone-dir").mkdir()
    (ws.src / "gone-dir" / "x").write_text("x")
    real_open = os.open
    src = os.fsencode(ws.src)

    def racing_open(path, flags, *a, dir_fd=None, **k):
        name = os.fsencode(path) if isinstance(path, (str, bytes)) else b""
        if dir_fd is not None:
            here = os.path.join(src, name)
            if name == b"becomes-dir.txt" and os.path.isfile(here):
                os.unlink(here)
                os.mkdir(here)
            elif name == b"gone.txt" and os.path.exists(here):
                os.unlink(here)
            elif name == b"big-becomes-fifo.bin" and os.path.isfile(here):
                os.unlink(here)
                os.mkfifo(here)
            elif name == b"gone-dir" and os.path.isdir(here):
                shutil.rmtree(here)
        return real_open(path, flags, *a, dir_fd=dir_fd, **k)

    svc = BackupService(load_config(ws.config), lambda confirm: "core test passphrase")
    try:
        await svc.init()
        monkeypatch.setattr(os, "open", racing_open)
        result = await svc.backup()
        monkeypatch.undo()
        names = [p for p, _ in await svc.ls("latest")]
    finally:
        monkeypatch.undo()
        await svc.close()
    snap = result.results[0].snapshot
    assert snap is not None and result.partial
    w = "\n".join(snap.warnings)
    assert f"{ws.src}/becomes-dir.txt: not read: Is a directory" in w, w
    assert f"{ws.src}/gone.txt: vanished before it was read" in w, w
    assert f"{ws.src}/big-becomes-fifo.bin: changed type while the backup ran; not stored" in w, w
    assert f"{ws.src}/gone-dir: vanished before it was read" in w, w
    assert any(n.endswith("/ok.txt") for n in names)
    assert not any(n.endswith(("gone.txt", "becomes-dir.txt", "big-becomes-fifo.bin")) for n in names)


# -- source roots ---------------------------------------------------------------------------


def _as_nobody(env: H.AxEnv, *args: str) -> H.CliResult:
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *env.argv(*args, json_out=True)]
    e = env.env()
    e["HOME"] = str(env.base)
    e["AXISOR_BACKUP_STATE_DIR"] = str(env.base / "state")
    p = subprocess.run(cmd, cwd=H.ROOT, env=e, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    return H.CliResult(tuple(args), p.returncode, p.stdout, p.stderr)


@pytest.mark.skipif(not S.IS_ROOT or shutil.which("setpriv") is None, reason="runs the CLI as nobody (needs root)")
def test_an_unreadable_source_root_fails_with_exit_11_keeps_the_last_snapshot_and_turns_status_red():
    base = Path(tempfile.mkdtemp(prefix="axisor-nobody-"))
    try:
        os.chmod(base, 0o755)
        env = H.make_env(base)
        (env.src / "a.txt").write_text("a")
        env.init_fast()
        for p in [base, *base.rglob("*")]:
            os.chown(p, 65534, 65534)
        first = _as_nobody(env, "backup")
        assert first.code == 0, first
        assert _as_nobody(env, "status").json["level"] == "ok"

        os.chmod(env.src, 0o000)  # the folder itself: nobody may not list it
        r = _as_nobody(env, "backup")
        assert r.code == 11, r
        assert r.json["snapshots"] == []
        assert r.json["failed"] == [
            {"source": "application/user_data", "error": f"source path {env.src} cannot be read: permission denied"}
        ]
        assert "application/user_data" in r.stderr and str(env.src) in r.stderr
        snaps = _as_nobody(env, "snapshots").json["snapshots"]
        assert [s["id"] for s in snaps] == [first.json["snapshots"][0]["id"]]  # still the newest good one

        status = _as_nobody(env, "status")
        assert status.code == 2 and status.json["level"] == "critical", status
        check = {c["name"]: c for c in status.json["checks"]}["source application/user_data"]
        assert check["level"] == "critical" and "could not read the source" in check["message"]
    finally:
        os.chmod(base / "src", 0o755) if (base / "src").exists() else None
        shutil.rmtree(base)


def test_a_missing_source_root_is_exit_11_without_a_snapshot(axenv):
    axenv.write_config([axenv.src / "not-there"])
    axenv.init_fast()
    r = axenv.cli("backup", json_out=True)
    assert r.code == 11, r
    assert r.json["snapshots"] == [] and "does not exist" in r.json["failed"][0]["error"]
    assert axenv.snapshot_files() == []


def test_a_symlinked_source_root_is_followed_and_recorded(axenv):
    real = axenv.base / "real-data"
    real.mkdir()
    (real / "inside.txt").write_text("inside")
    link = axenv.base / "data-link"
    link.symlink_to(real)
    axenv.write_config([link])
    axenv.init_fast()
    r = axenv.cli("backup", json_out=True)
    assert r.code == 0, r
    snap = r.json["snapshots"][0]
    assert snap["metadata"]["root_links"] == [{"path": str(link), "target": str(real), "followed": True}]
    assert snap["paths"] == [str(link)]
    nodes, _ = asyncio.run(_nodes(axenv, link))
    assert nodes[b""].type == "dir" and nodes[b"inside.txt"].size == len("inside")
    shown_snapshot = axenv.cli("show", "latest")
    assert f"root link  {link} -> {real} (target archived)" in shown_snapshot.stdout

    # follow_root_symlink = false: only the link, with the note.
    cfg = axenv.cfg.read_text()
    axenv.cfg.write_text(cfg.replace("[application]\n", "[application]\nfollow_root_symlink = false\n"))
    r = axenv.cli("backup", json_out=True)
    assert r.code == 0, r
    assert r.json["snapshots"][0]["metadata"]["root_links"][0]["followed"] is False
    nodes, _ = asyncio.run(_nodes(axenv, link))
    assert nodes[b""].type == "symlink" and nodes[b""].target == os.fsencode(real) and len(nodes) == 1


# -- attributes that cannot be read -----------------------------------------------------------


async def test_an_attribute_that_cannot_be_read_is_a_warning_naming_the_file(ws, monkeypatch):
    from core.config import load_config
    from core.service import BackupService

    odd = ws.src / "odd\x1bname.txt"
    odd.write_text("x")
    os.setxattr(odd, b"user.secret", b"s")
    os.setxattr(odd, b"user.fine", b"f")
    (ws.src / "plain.txt").write_text("y")
    real_getxattr = os.getxattr

    def refusing_getxattr(target, name, *a, **k):
        if os.fsencode(name) == b"user.secret":
            raise PermissionError(13, "Permission denied")
        return real_getxattr(target, name, *a, **k)

    svc = BackupService(load_config(ws.config), lambda confirm: "core test passphrase")
    try:
        await svc.init()
        monkeypatch.setattr(os, "getxattr", refusing_getxattr)
        result = await svc.backup()
        monkeypatch.undo()
    finally:
        monkeypatch.undo()
        await svc.close()
    snap = result.results[0].snapshot
    assert result.partial and snap is not None
    assert list(snap.warnings) == [
        f"{ws.src}/odd\\x1bname.txt: extended attribute user.secret not read: Permission denied"
    ]


def test_stored_extent_of_a_sparse_file_that_shrank_while_read():
    from core.backup.archiver import _stored_extent

    holes = ((0, 10), (20, 10), (40, 60))  # size 100: data 10-20, 30-40
    assert _stored_extent(100, holes, 20) == (100, holes)  # all read
    assert _stored_extent(100, holes, 15) == (35, ((0, 10), (20, 10)))  # stopped inside the second run
    assert _stored_extent(100, holes, 10) == (20, ((0, 10),))  # stopped at the end of the first run
    assert _stored_extent(100, holes, 0) == (10, ((0, 10),))
    assert _stored_extent(50, (), 42) == (42, ())  # not sparse: what was read


@pytest.mark.skipif(not S.IS_ROOT or shutil.which("setpriv") is None, reason="runs the CLI as nobody (needs root)")
def test_as_another_user_unreadable_entries_below_the_root_are_warnings_and_the_rest_is_stored():
    base = Path(tempfile.mkdtemp(prefix="axisor-nobody-"))
    try:
        os.chmod(base, 0o755)
        env = H.make_env(base)
        (env.src / "ok.txt").write_text("ok")
        (env.src / "private").mkdir()
        (env.src / "private" / "inside.txt").write_text("hidden")
        (env.src / "secret.txt").write_text("secret")
        os.setxattr(env.src / "ok.txt", b"user.tag", b"mine")
        env.init_fast()
        for p in [base, *base.rglob("*")]:
            os.chown(p, 65534, 65534)
        os.chmod(env.src / "private", 0o000)
        os.chmod(env.src / "secret.txt", 0o000)
        r = _as_nobody(env, "backup")
        assert r.code == 7, r
        warnings = sorted(r.json["snapshots"][0]["warnings"])
        assert warnings == [
            f"{env.src}/private: not read: Permission denied",
            f"{env.src}/secret.txt: not read: Permission denied",
        ]
        nodes, _ = asyncio.run(_nodes(env, env.src))
        assert set(nodes) == {b"", b"ok.txt"}
        assert nodes[b"ok.txt"].xattrs == ((b"user.tag", b"mine"),) and nodes[b"ok.txt"].uid == 65534
    finally:
        for p in (base / "src" / "private", base / "src" / "secret.txt"):
            if p.exists():
                os.chmod(p, 0o755)
        shutil.rmtree(base)


def _fds_below(path: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target == str(path) or target.startswith(str(path) + "/"):
            out.append(target)
    return out


def test_a_cancelled_backup_leaves_no_folder_open(axenv):
    """Folders stay open while a batch holds one of their files: cancelling must close them all."""
    from core.backup.run import run_backup
    from core.config import SourceSpec

    for d in range(120):
        sub = axenv.src / f"d{d:03d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(20):
            (sub / f"f{f}.txt").write_bytes(os.urandom(2000))
    axenv.init_fast()
    spec = SourceSpec("application/user_data", "application", (axenv.src,), (), 30)

    async def main():
        repo = await axenv.open_repo()
        task = None

        def progress(source, stats):
            if stats.bytes_read > 400_000 and task is not None:
                task.cancel()

        task = asyncio.ensure_future(run_backup(repo, [spec], on_progress=progress))
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)  # a worker still reading a batch closes its folders when done
        assert _fds_below(axenv.src) == []
        assert await repo.list_snapshots() == ([], [])

        # And a finished one leaves none either.
        repo = await axenv.open_repo()
        result = await run_backup(repo, [spec])
        assert result.results[0].snapshot.summary.total_files == 2400
        assert _fds_below(axenv.src) == []

    asyncio.run(main())


@pytest.mark.skipif(not S.IS_ROOT or shutil.which("setpriv") is None, reason="runs the CLI as nobody (needs root)")
def test_as_another_user_every_shape_it_can_make_is_stored_exactly():
    base = Path(tempfile.mkdtemp(prefix="axisor-nobody-"))
    try:
        os.chmod(base, 0o755)
        env = H.make_env(base)
        env.init_fast()
        for p in [base, *base.rglob("*")]:
            os.chown(p, 65534, 65534)
        src = base / "shapes"
        made = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                sys.executable,
                "-c",
                "import sys, json; sys.path[:0] = ['tests', '.']; import fs_shapes as S; from pathlib import Path; "
                f"s = S.build(Path({str(src)!r})); print(json.dumps(sorted(s.skipped)))",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout) == ["capability", "chattr +i/+a", "devices", "foreign owners", "symlink xattr"]
        env.write_config([src])
        file_atimes = {
            rel: os.lstat(os.path.join(os.fsencode(src), rel)).st_atime_ns
            for rel in S._all(os.fsencode(src))
            if not stat.S_ISDIR(os.lstat(os.path.join(os.fsencode(src), rel)).st_mode)
        }
        r = _as_nobody(env, "backup")
        assert r.code == 7, r
        assert r.json["snapshots"][0]["warnings"] == [
            f"{src}/special/control.sock: skipped: a socket cannot be backed up"
        ]
        nodes, _ = asyncio.run(_nodes(env, src))
        assert _mismatches(nodes, S.state(src), file_atimes) == []
        assert nodes[b"sparse/sparse.img"].holes == _expected_holes(S.SPARSE_SIZE, S.SPARSE_ISLANDS)
        assert dict(nodes[b"acl/default-acl"].xattrs)[b"system.posix_acl_default"] == S.DEFAULT_ACL
        assert nodes[b"files/xattrs.txt"].uid == 65534 and nodes[b"files/xattrs.txt"].user == "nobody"
    finally:
        shutil.rmtree(base)
