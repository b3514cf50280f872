"""The shared fixture itself: compare_trees must see every difference it promises to."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import fs_shapes as S


@pytest.mark.skipif(shutil.which("cp") is None, reason="needs GNU cp")
def test_compare_trees_sees_what_cp_a_keeps_and_what_it_loses(tmp_path):
    shapes = S.build(tmp_path / "src")
    copy = tmp_path / "copy"
    try:
        assert S.compare_trees(shapes.root, shapes.root) == []
        subprocess.run(["cp", "-a", "--sparse=always", str(shapes.root), str(copy)], check=True)
        diffs = S.compare_trees(shapes.root, copy)
        # cp -a keeps xattrs, ACLs, capabilities, owners, modes, times, links, devices,
        # FIFOs and holes; it does not copy inode flags.
        expected = (
            [f"flags/{n}: flags {f} != -" for n, f in (("append-only", "ad"), ("immutable", "id"))] if S.IS_ROOT else []
        )
        assert sorted(diffs) == expected

        os.setxattr(copy / "files" / "xattrs.txt", b"user.comment", b"other")
        os.chmod(copy / "modes" / "setgid", 0o750)
        os.truncate(copy / "files" / "plain.txt", 10)
        os.unlink(copy / "links" / "b")
        with open(copy / "links" / "b", "wb") as f:
            f.write(b"linked content\n")  # same bytes, no longer a hard link
        os.utime(copy / "files" / "empty", ns=(1, 2))
        with open(copy / "sparse" / "all-hole.img", "r+b") as f:
            f.write(b"\0" * (4 * S.MIB))  # same bytes, no longer sparse
        diffs = "\n".join(S.compare_trees(shapes.root, copy))
        for needle in (
            "files/xattrs.txt: xattrs differ: user.comment b'hello' != b'other'",
            "modes/setgid: mode 102750 != 100750",
            "files/plain.txt: size 1100 != 10",
            "links/b: hard links",
            "files/empty: mtime_ns",
            "sparse/all-hole.img: allocated blocks",
            "files/plain.txt: sha256",
        ):
            assert needle in diffs, diffs
    finally:
        shapes.close()
        S.unfreeze(shapes.root)
        S.unfreeze(copy)
