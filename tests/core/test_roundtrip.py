"""Backup then restore gives back every byte and every piece of metadata."""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path


def make_platform_tree(root: Path) -> None:
    rnd = random.Random(7)
    (root / "users" / "alice").mkdir(parents=True)
    (root / "users" / "alice" / "profile.json").write_text('{"name": "alice"}\n')
    (root / "users" / "empty.txt").write_bytes(b"")
    (root / "users" / "one").write_bytes(b"x")
    (root / "empty-dir").mkdir()
    (root / "deep" / "a" / "b" / "c").mkdir(parents=True)
    (root / "deep" / "a" / "b" / "c" / "leaf.bin").write_bytes(rnd.randbytes(300_000))
    # Several chunks: compressible text followed by random bytes.
    big = b"".join(b"row %d,alice@example.com,2026-11-26\n" % i for i in range(60_000)) + rnd.randbytes(3_000_000)
    (root / "dump.sql").write_bytes(big)
    (root / "secret.key").write_bytes(b"k" * 100)
    os.chmod(root / "secret.key", 0o600)
    os.chmod(root / "users" / "one", 0o4755)
    os.chmod(root / "deep" / "a", 0o750)
    os.symlink("users/alice/profile.json", root / "rel-link")
    os.symlink("/nonexistent/target", root / "dangling-link")
    os.symlink("empty-dir", root / "dir-link")
    os.link(root / "secret.key", root / "secret-hardlink.key")
    weird = os.fsencode(str(root)) + b"/caf\xe9-\xff.txt"
    with open(weird, "wb") as f:
        f.write(b"latin-1 name")
    os.chown(root / "users" / "alice" / "profile.json", 1234, 4321)
    os.lchown(root / "rel-link", 1234, 4321)
    os.utime(root / "dump.sql", ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321))
    os.utime(root / "rel-link", ns=(1_500_000_000_000_000_001, 1_500_000_000_000_000_002), follow_symlinks=False)
    os.utime(root / "empty-dir", ns=(1_400_000_000_000_000_000, 1_400_000_000_000_000_000))


def state(root: Path) -> dict[bytes, tuple]:
    """Everything a restore must reproduce, keyed by path relative to root."""
    out: dict[bytes, tuple] = {}
    broot = os.fsencode(str(root))
    inodes: dict[int, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, broot)
            st = os.lstat(p)
            entry = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
            if stat.S_ISLNK(st.st_mode):
                entry += [os.readlink(p), st.st_mtime_ns]
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    entry += [st.st_size, hashlib.sha256(f.read()).hexdigest(), st.st_mtime_ns]
                # Hard links: the first name of an inode stands for the group.
                entry.append(inodes.setdefault(st.st_ino, rel))
            else:
                entry.append(st.st_mtime_ns)
            out[rel] = tuple(entry)
    return out


def test_restore_is_byte_and_metadata_identical(ws):
    make_platform_tree(ws.src)
    assert ws.cli("init").code == 0
    b = ws.cli("backup", "--json")
    assert b.code == 0, b.err
    snap = b.json()["snapshots"][0]
    assert snap["summary"]["total_files"] == 8
    target = ws.root / "restored"
    # users/one is setuid: a restore strips that unless asked (as root) to keep privileges.
    r = ws.cli("restore", "latest", "--target", str(target), "--preserve-privileges")
    assert r.code == 0, r.err
    restored = target / str(ws.src).lstrip("/")
    assert state(restored) == state(ws.src)
    # The restored hard link is a hard link, not a copy.
    assert os.stat(restored / "secret.key").st_ino == os.stat(restored / "secret-hardlink.key").st_ino
    assert os.stat(restored / "empty-dir").st_mtime_ns == 1_400_000_000_000_000_000


def test_sockets_are_skipped_with_a_warning_and_partial_exit_fifos_are_kept(ws):
    import socket

    (ws.src / "ok.txt").write_text("fine")
    os.mkfifo(ws.src / "pipe")  # stored as a node (issue 13), never opened
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ws.src / "control.sock"))
    try:
        ws.cli("init")
        b = ws.cli("backup", "--json")
    finally:
        sock.close()
    assert b.code == 7
    warnings = b.json()["snapshots"][0]["warnings"]
    assert any("control.sock" in w and "socket" in w for w in warnings), warnings
    assert not any("pipe" in w for w in warnings)
    listing = ws.cli("ls", "latest").out.splitlines()
    assert any(line.endswith("/ok.txt") for line in listing)
    assert any(line.endswith("/pipe") for line in listing)
    assert not any(line.endswith("/control.sock") for line in listing)


async def test_unreadable_file_is_reported_and_the_rest_is_stored(ws, monkeypatch):
    """Root reads everything, so the permission error is injected at open()."""
    from core.config import load_config
    from core.service import BackupService

    (ws.src / "ok.txt").write_text("fine")
    (ws.src / "locked.txt").write_text("no")
    (ws.src / "big-locked.bin").write_bytes(os.urandom(2_000_000))
    real_open = os.open
    blocked = {b"locked.txt", b"big-locked.bin"}

    def guarded_open(path, *a, **k):
        # Files are opened by name relative to their folder's descriptor (dir_fd).
        if isinstance(path, (str, bytes)) and os.fsencode(path).rsplit(b"/", 1)[-1] in blocked:
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    svc = BackupService(load_config(ws.config), lambda confirm: "core test passphrase")
    try:
        await svc.init()
        monkeypatch.setattr(os, "open", guarded_open)
        result = await svc.backup()
        monkeypatch.undo()
    finally:
        await svc.close()
    assert result.partial
    snap = result.results[0].snapshot
    assert any("locked.txt: not read: Permission denied" in w for w in snap.warnings)
    assert any("big-locked.bin: not read" in w for w in snap.warnings)
    svc = BackupService(load_config(ws.config), lambda confirm: "core test passphrase")
    try:
        names = [p for p, _ in await svc.ls("latest")]
    finally:
        await svc.close()
    assert any(n.endswith("/ok.txt") for n in names)
    assert not any(n.endswith("locked.txt") or n.endswith("big-locked.bin") for n in names)


def test_include_restores_only_matching_paths(ws):
    make_platform_tree(ws.src)
    ws.cli("init")
    ws.cli("backup")
    target = ws.root / "partial"
    r = ws.cli("restore", "latest", "--target", str(target), "--include", "*/users/alice*")
    assert r.code == 0, r.err
    restored = target / str(ws.src).lstrip("/")
    assert (restored / "users" / "alice" / "profile.json").read_text() == '{"name": "alice"}\n'
    assert not (restored / "dump.sql").exists()
    assert not (restored / "users" / "empty.txt").exists()


def test_restore_over_existing_tree_replaces_changed_files(ws):
    make_platform_tree(ws.src)
    ws.cli("init")
    ws.cli("backup")
    target = ws.root / "t"
    ws.cli("restore", "latest", "--target", str(target), "--preserve-privileges")
    restored = target / str(ws.src).lstrip("/")
    (restored / "dump.sql").write_bytes(b"clobbered")
    r = ws.cli("restore", "latest", "--target", str(target), "--preserve-privileges")
    assert r.code == 0, r.err
    assert state(restored) == state(ws.src)
    leftovers = [p for p in restored.rglob(".axisor-restore-*")]
    assert leftovers == []
