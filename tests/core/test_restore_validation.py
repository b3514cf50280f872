"""Restore validation: checked as written by default, read back on request (issue 19).

Written files are proven while they are written (each blob's id recomputed after
decryption, every piece counted, the size right) and validation then only checks that
the very inode written is at each name; `--read-back` re-chunks every file from disk.
Both walk the snapshot again and count every file: none is skipped silently.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from conftest import PASSPHRASE

pytestmark = pytest.mark.usefixtures("restore_writers")  # each restore both ways: threads, worker processes


@pytest.fixture
def tree(ws):
    """Small files, a large file restored in several windows, hard links, a symlink, a sparse file."""
    (ws.src / "conf").mkdir()
    for i in range(40):
        (ws.src / "conf" / f"c{i}.ini").write_text(f"[s]\nkey = {i}\n" * (i + 1))
    (ws.src / "big.bin").write_bytes(os.urandom(20_000_000))  # > 8 MiB: written in windows
    (ws.src / "a").write_bytes(b"linked\n" * 1000)
    os.link(ws.src / "a", ws.src / "b")
    (ws.src / "l").symlink_to("a")
    with open(ws.src / "sparse", "wb") as f:
        f.seek(5_000_000)
        f.write(b"end")
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    return ws, r.json()["snapshots"][0]["id"]


FILES = 40 + 4  # conf/*, big.bin, a, b, sparse


def test_a_fresh_restore_is_proven_as_written_and_every_file_is_counted(tree, tmp_path) -> None:
    ws, sid = tree
    r = ws.cli("restore", sid, "--target", str(tmp_path / "t"), "--json")
    assert r.code == 0, r.err
    v = r.json()["restored"][0]["validation"]
    assert v["ok"] and v["method"] == "written"
    assert v["files"] == FILES and v["symlinks"] == 1
    assert v["read_back"] == 0  # every file (the hard link too) was proven while written
    text = ws.cli("restore", sid, "--target", str(tmp_path / "u"))
    assert text.code == 0 and f"({FILES} checked as written, 0 read back) match the snapshot" in text.out


def test_read_back_rechunks_every_file(tree, tmp_path) -> None:
    ws, sid = tree
    r = ws.cli("restore", sid, "--target", str(tmp_path / "t"), "--read-back", "--json")
    assert r.code == 0, r.err
    v = r.json()["restored"][0]["validation"]
    assert v["ok"] and v["method"] == "read-back" and v["read_back"] == FILES == v["files"]


def _restore_then(ws, sid, target: Path, damage, *, read_back: bool = False, patch=None):
    """Restore at core level, apply ``damage(target_root)``, validate again with the restore's record."""
    from core.config import load_config
    from core.restore.validate import validate_restore
    from core.service import BackupService

    async def run():
        svc = BackupService(load_config(ws.config), lambda _c: PASSPHRASE)
        try:
            snap = (await svc.resolve([sid]))[0]
            outcome = await svc.restore_files(snap, target)
            if damage is None:
                return outcome.validation
            damage(target / str(ws.src).lstrip("/"))
            repo = await svc.repository()
            assert outcome.stats is not None
            return await validate_restore(
                repo, snap, target, executor=svc.executor, placed=outcome.stats.placed, read_back=read_back
            )
        finally:
            await svc.close()

    return asyncio.run(run())


def _swap_for_a_copy(root: Path) -> None:
    shutil.copy2(root / "conf" / "c3.ini", root / "conf" / "copy")
    os.replace(root / "conf" / "copy", root / "conf" / "c3.ini")


def test_a_file_replaced_after_it_was_restored_is_named(tree, tmp_path) -> None:
    ws, sid = tree
    target = tmp_path / "t"
    v = _restore_then(ws, sid, target, _swap_for_a_copy)
    where = target / str(ws.src).lstrip("/") / "conf" / "c3.ini"
    assert not v.ok and v.mismatches == (f"{where}: replaced by another file after it was restored",)
    assert v.files == FILES  # still counted: checked, and found wrong


def test_read_back_judges_content_not_inodes(tree, tmp_path) -> None:
    """The same bytes under another inode are the snapshot's content; a flipped byte in
    place is not, and only a read-back sees it (the documented limit of 'as written')."""
    ws, sid = tree
    v = _restore_then(ws, sid, tmp_path / "t", _swap_for_a_copy, read_back=True)
    assert v.ok and v.read_back == FILES

    def flip(root: Path) -> None:
        with open(root / "big.bin", "r+b") as f:
            f.seek(9_000_000)
            b = f.read(1)
            f.seek(9_000_000)
            f.write(bytes([b[0] ^ 1]))

    assert _restore_then(ws, sid, tmp_path / "u", flip).ok  # same inode, same size: not seen as written
    v = _restore_then(ws, sid, tmp_path / "w", flip, read_back=True)
    assert not v.ok and v.mismatches[0].endswith("big.bin: content differs from the snapshot")


def test_a_window_the_restorer_dropped_is_read_back_and_caught(tree, tmp_path, monkeypatch) -> None:
    """A bug that loses a window of a large file (its pieces never written) cannot pass as
    written: the file's piece count falls short, so it is not proven, and is read back."""
    from core.restore import files

    ws, sid = tree
    original = files.FileRestorer._write_window
    calls = {"n": 0}

    def dropping(self, fd, job, pieces, blobs):
        calls["n"] += 1
        if job.parts[-1] == b"big.bin" and calls["n"] == 2:
            return  # the bug: a window silently not written
        return original(self, fd, job, pieces, blobs)

    monkeypatch.setattr(files.FileRestorer, "_write_window", dropping)
    v = _restore_then(ws, sid, tmp_path / "t", None)
    assert not v.ok and v.read_back == 1
    assert v.mismatches[0].endswith("big.bin: content differs from the snapshot")


def test_the_record_costs_sixteen_bytes_a_node() -> None:
    from core.restore.outcome import Placed

    p = Placed()
    p.extend_to(1_000_000)
    p.record(999_999, 7, 42)
    assert p.get(999_999) == (7, 42) and p.get(5) is None and p.get(2_000_000) is None
    assert p._dev.itemsize + p._ino.itemsize == 16
