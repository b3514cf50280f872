"""Issue 13's promise, end to end on the real filesystem: a tree with every shape a file can
take (xattrs, an access ACL, a default ACL on a folder, a file capability, a sparse file,
hard links, a device, a FIFO, chattr +i/+a, nanosecond times, owners by name and by bare id,
setuid/setgid, hostile names, a 3,000-level folder chain) is backed up and restored through
the real CLI, and the restore equals the original field by field (tests/fs_shapes.py)."""

from __future__ import annotations

import os

import pytest

import fs_shapes as S
import hostile_support as H

axenv = H.axenv

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="every shape needs root; tests/core/test_backup_attributes.py covers the non-root user"
)


def _chain(root) -> tuple[list[tuple[int, int, int, int]], bytes]:
    """Mode, owner and mtime of every folder of a make_deep chain, and its leaf's bytes,
    read through relative opens (no path is ever longer than one name)."""
    fd = os.open(os.fsencode(root), os.O_RDONLY | os.O_DIRECTORY)
    levels = []
    try:
        while True:
            try:
                nfd = os.open(b"deep-folder", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                break
            os.close(fd)
            fd = nfd
            st = os.fstat(fd)
            levels.append((st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns))
        leaf = os.open(b"leaf.txt", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            return levels, os.read(leaf, 1 << 20)
        finally:
            os.close(leaf)
    finally:
        os.close(fd)


def test_every_shape_round_trips_field_by_field(axenv, tmp_path):
    src = axenv.base / "shapes"
    shapes = S.build(src)
    deep_root = tmp_path / "deep-src"
    deep_root.mkdir()
    S.make_deep(deep_root, 3000)
    target = tmp_path / "restored"
    try:
        assert shapes.skipped == {}, shapes.skipped  # as root every shape is made
        axenv.write_config(sources=[src, deep_root])
        axenv.init_fast()
        backup = axenv.cli("backup", "--json")
        # Exit 7: the socket is skipped, with a warning naming it; everything else is kept.
        assert backup.code == 7, backup
        warnings = [w for s in backup.json["snapshots"] for w in s["warnings"]]
        assert warnings and all("socket" in w for w in warnings), warnings

        restore = axenv.cli(
            "restore", "latest", "--target", str(target), "--preserve-privileges", "--file-flags", "--json"
        )
        assert restore.code == 0, restore
        restored = target / str(src).lstrip("/")
        assert S.compare_trees(src, restored) == []
        deep_back = target / str(deep_root).lstrip("/")
        assert _chain(deep_back) == _chain(deep_root)  # paths past PATH_MAX: walked by descriptor
    finally:
        S.unfreeze(src)
        if target.exists():
            if (target / str(src).lstrip("/")).exists():
                S.unfreeze(target / str(src).lstrip("/"))
            S.remove_deep(target)
        S.remove_deep(deep_root)
        shapes.close()


def test_without_asking_privileges_are_stripped_and_named(axenv, tmp_path):
    src = axenv.base / "shapes"
    shapes = S.build(src)
    target = tmp_path / "restored"
    try:
        axenv.write_config(sources=[src])
        axenv.init_fast()
        assert axenv.cli("backup").code == 7
        restore = axenv.cli("restore", "latest", "--target", str(target), "--json")
        assert restore.code == 0, restore
        diffs = S.compare_trees(src, target / str(src).lstrip("/"))
        # Only what the default restore leaves out by design: setuid/setgid bits, file
        # capabilities, and chattr flags (restored only with --file-flags).
        assert diffs and all(("mode" in d or "security.capability" in d or "flags" in d) for d in diffs), diffs
        stripped = str(restore.json)
        assert "stripped" in stripped
    finally:
        S.unfreeze(src)
        if target.exists():
            S.unfreeze(target)
        shapes.close()
