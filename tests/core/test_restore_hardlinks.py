"""Hard links in a restore over an existing tree: a link follows its first path when that is
rewritten (a new inode), and is re-linked to a first path left in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Workspace

pytestmark = pytest.mark.usefixtures("restore_writers")  # each restore both ways: threads, worker processes


def _setup(ws: Workspace, tmp_path: Path) -> tuple[Path, Path]:
    (ws.src / "a.txt").write_text("version one\n")
    os.link(ws.src / "a.txt", ws.src / "b.txt")
    ws.write_config(user_data=[ws.src])
    assert ws.cli("init").code == 0
    assert ws.cli("backup").code == 0
    target = tmp_path / "restored"
    target.mkdir()
    r = ws.cli("restore", "latest", "--target", str(target), "--json")
    assert r.code == 0, r.err
    base = target / str(ws.src).lstrip("/")
    assert os.path.samefile(base / "a.txt", base / "b.txt")
    return target, base


def _restore(ws: Workspace, target: Path) -> dict:
    r = ws.cli("restore", "latest", "--target", str(target), "--json")
    assert r.code == 0, (r.code, r.err)  # exit 16 would mean a file did not validate
    [o] = r.json()["restored"]
    assert o["validation"]["ok"]
    return o


def test_a_link_follows_its_first_path_when_that_is_rewritten(ws: Workspace, tmp_path: Path) -> None:
    target, base = _setup(ws, tmp_path)
    # Both names still share one inode, whose content went wrong: the first path is rewritten
    # (temp file, rename: a new inode), so the link must be redone, not left on the old one.
    with open(base / "a.txt", "r+") as f:
        f.write("VERSION ONE\n")
    assert (base / "b.txt").read_text() == "VERSION ONE\n"
    dry = ws.cli("restore", "latest", "--target", str(target), "--dry-run", "--json")
    actions = {
        Path(c["path"]).name: c["action"]
        for c in dry.json()["restored"][0]["changes"]
        if Path(c["path"]).name in ("a.txt", "b.txt")
    }
    assert actions == {"a.txt": "overwrite", "b.txt": "overwrite"}, dry.out
    _restore(ws, target)
    assert (base / "a.txt").read_text() == (base / "b.txt").read_text() == "version one\n"
    assert os.path.samefile(base / "a.txt", base / "b.txt")


def test_a_broken_link_is_relinked_to_a_first_path_left_in_place(ws: Workspace, tmp_path: Path) -> None:
    target, base = _setup(ws, tmp_path)
    # b.txt became a separate file with the same bytes: the content is right, the link is not.
    os.unlink(base / "b.txt")
    (base / "b.txt").write_text("version one\n")
    _restore(ws, target)
    assert os.path.samefile(base / "a.txt", base / "b.txt")
    assert (base / "b.txt").read_text() == "version one\n"
