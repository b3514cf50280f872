"""Restores into a live tree: a dry run that changes nothing, rewriting only what differs,
--delete, validation of every restored byte, the safety snapshot, and rollback to the exact
previous state."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest


def state(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, content hash, mode and mtime."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", st.st_mode)
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture
def live(ws):
    """A source folder backed up once, then changed the way a bad day changes it."""
    (ws.src / "users").mkdir()
    (ws.src / "users" / "alice.json").write_text('{"name": "alice"}\n')
    (ws.src / "users" / "bob.json").write_text('{"name": "bob"}\n')
    (ws.src / "big.bin").write_bytes(os.urandom(3_000_000))
    (ws.src / "link").symlink_to("users/alice.json")
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    sid = r.json()["snapshots"][0]["id"]
    # The bad day: bob's file corrupted in place (same size, same mtime), alice's mode
    # changed, a stray file appeared, big.bin untouched.
    bob = ws.src / "users" / "bob.json"
    st = bob.stat()
    bob.write_text('{"name": "BOB"}\n')
    os.utime(bob, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(ws.src / "users" / "alice.json", 0o600)
    (ws.src / "users" / "stray.tmp").write_text("not in the snapshot\n")
    return ws, sid


def test_dry_run_lists_every_change_and_changes_nothing(live) -> None:
    ws, sid = live
    before = state(ws.src)
    r = ws.cli("restore", sid, "--target", "/", "--dry-run", "--delete", "--json")
    assert r.code == 0, r.err
    [o] = r.json()["restored"]
    actions = {Path(c["path"]).name: (c["action"], c["reason"]) for c in o["changes"]}
    assert actions["bob.json"] == ("overwrite", "content differs")  # same size and mtime: content caught
    assert actions["alice.json"][0] == "metadata" and "mode 600 -> 644" in actions["alice.json"][1]
    assert actions["stray.tmp"] == ("remove", "not in the snapshot")
    assert "big.bin" not in actions and "link" not in actions  # already right
    assert o["plan"]["unchanged"] >= 2 and o["plan"]["create"] == 0
    assert r.json()["restore_id"] is None and o["safety_snapshot"] is None
    assert state(ws.src) == before
    text = ws.cli("restore", sid, "--target", "/", "--dry-run")
    assert "overwrite" in text.out and "bob.json" in text.out and "content differs" in text.out


def test_restore_over_live_data_rewrites_only_what_differs_then_rollback_restores_it_exactly(live) -> None:
    ws, sid = live
    before = state(ws.src)
    big_inode = (ws.src / "big.bin").stat().st_ino
    r = ws.cli("restore", sid, "--target", "/", "--delete", "--json")
    assert r.code == 0, r.err
    data = r.json()
    [o] = data["restored"]
    assert o["files"] == 1 and o["metadata"] == 1 and o["removed"] == 1 and o["unchanged"] >= 2
    assert (ws.src / "big.bin").stat().st_ino == big_inode  # not rewritten
    assert (ws.src / "users" / "bob.json").read_text() == '{"name": "bob"}\n'
    assert not (ws.src / "users" / "stray.tmp").exists()
    assert oct((ws.src / "users" / "alice.json").stat().st_mode & 0o777) == "0o644"
    assert o["validation"]["ok"] and o["validation"]["files"] == 3
    safety = o["safety_snapshot"]
    assert safety
    show = ws.cli("show", safety, "--json").json()
    assert "safety" in show["tags"] and show["metadata"]["safety_for"]["restore"] == data["restore_id"]

    rb = ws.cli("rollback", data["restore_id"], "--json")
    assert rb.code == 0, rb.err
    assert state(ws.src) == before  # bad day and all: the exact previous state


def test_restore_into_a_new_place_then_rollback_removes_what_it_created(live, tmp_path) -> None:
    ws, sid = live
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep-me").write_text("the operator's own file\n")
    before = state(target)
    r = ws.cli("restore", sid, "--target", str(target), "--json")
    assert r.code == 0, r.err
    [o] = r.json()["restored"]
    assert o["safety_snapshot"] is None  # nothing that existed was touched: nothing to save
    assert (target / str(ws.src).lstrip("/") / "users" / "bob.json").read_text() == '{"name": "bob"}\n'
    # Rollback needs a safety snapshot; a pure create has none and says so.
    rb = ws.cli("rollback", r.json()["restore_id"])
    assert rb.code == 13 and "overwrote nothing" in rb.err
    # Restoring again over the first restore changes nothing and still validates.
    again = ws.cli("restore", sid, "--target", str(target), "--json").json()["restored"][0]
    assert again["files"] == 0 and again["validation"]["ok"] and again["safety_snapshot"] is None
    assert state(target)["keep-me"] == before["keep-me"]


def test_partially_existing_roots_are_removed_by_rollback(ws, tmp_path) -> None:
    other = tmp_path / "configs"
    other.mkdir()
    (other / "app.env").write_text("A=1\n")
    (ws.src / "f").write_text("data\n")
    ws.write_config(user_data=[ws.src], automation_configs=[other])
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    target = tmp_path / "t"
    # Only the first root exists in the target beforehand, with different content.
    first = target / str(ws.src).lstrip("/")
    first.mkdir(parents=True)
    (first / "f").write_text("local edit\n")
    before = state(target)
    res = ws.cli("restore", "latest", "--target", str(target), "--json")
    assert res.code == 0, res.err
    rid = res.json()["restore_id"]
    assert (target / str(other).lstrip("/") / "app.env").read_text() == "A=1\n"
    assert ws.cli("rollback", rid).code == 0
    after = state(target)
    # The user_data root is back as it was; the configs root did not exist and is gone again.
    assert {k: v for k, v in after.items() if not k.startswith(str(other).lstrip("/"))} == before
    assert not (target / str(other).lstrip("/")).exists()


def test_validation_names_a_file_that_differs_after_writing(live, tmp_path) -> None:
    """Core level: validation re-reads the target and names what does not match."""
    from core.config import load_config
    from core.service import BackupService
    from conftest import PASSPHRASE

    ws, sid = live
    target = tmp_path / "v"

    async def run():
        svc = BackupService(load_config(ws.config), lambda _c: PASSPHRASE)
        try:
            snap = (await svc.resolve([sid]))[0]
            outcome = await svc.restore_files(snap, target)
            assert outcome.validation is not None and outcome.validation.ok
            from core.restore.validate import validate_restore

            victim = target / str(ws.src).lstrip("/") / "big.bin"
            with open(victim, "r+b") as f:  # one flipped byte in the middle, size unchanged
                f.seek(1_500_000)
                b = f.read(1)
                f.seek(1_500_000)
                f.write(bytes([b[0] ^ 1]))
            repo = await svc.repository()
            return await validate_restore(repo, snap, target, executor=svc.executor)
        finally:
            await svc.close()

    result = asyncio.run(run())
    assert not result.ok and result.mismatches == (
        f"{target / str(ws.src).lstrip('/') / 'big.bin'}: content differs from the snapshot",
    )


def test_a_folder_in_the_way_refuses_before_writing_anything(live, tmp_path) -> None:
    ws, sid = live
    target = tmp_path / "t"
    base = target / str(ws.src).lstrip("/")
    (base / "big.bin").mkdir(parents=True)  # a folder where a file belongs
    r = ws.cli("restore", sid, "--target", str(target))
    assert r.code == 12 and "in the way" in r.err and "big.bin" in r.err
    assert sorted(p.name for p in base.iterdir()) == ["big.bin"]


def test_latest_after_a_restore_is_still_the_newest_backup_not_its_safety_snapshot(ws, tmp_path) -> None:
    (ws.src / "f").write_text("data\n")
    ws.write_config(user_data=[ws.src])
    assert ws.cli("init").code == 0
    backup = ws.cli("backup", "--json")
    assert backup.code == 0, backup.err
    target = tmp_path / "t"
    first = target / str(ws.src).lstrip("/")
    first.mkdir(parents=True)
    (first / "f").write_text("local edit\n")  # overwritten: a safety snapshot is taken first
    assert ws.cli("restore", "latest", "--target", str(target)).code == 0
    snaps = ws.cli("snapshots", "--json").json()["snapshots"]
    assert any(s["source"].startswith("safety/") for s in snaps)  # the newest one is the safety copy
    shown = ws.cli("show", "latest", "--json").json()
    assert shown["source"] == "application/user_data" and "safety" not in shown.get("tags", [])
    assert ws.cli("show", "latest:application/user_data", "--json").json()["id"] == shown["id"]


def test_a_restore_is_flushed_to_disk_before_it_reports_success(ws, tmp_path) -> None:
    """Issue 15: restores are durable (one syncfs of the target) unless --no-fsync."""
    (ws.src / "f").write_text("data\n")
    ws.write_config(user_data=[ws.src])
    assert ws.cli("init").code == 0
    assert ws.cli("backup").code == 0
    durable = ws.cli("restore", "latest", "--target", str(tmp_path / "a"), "--json")
    assert durable.code == 0 and all(r["durable"] for r in durable.json()["restored"]), durable.out
    quick = ws.cli("restore", "latest", "--target", str(tmp_path / "b"), "--no-fsync", "--json")
    assert quick.code == 0 and not any(r["durable"] for r in quick.json()["restored"]), quick.out


def test_flush_filesystem_names_a_target_it_cannot_open(tmp_path) -> None:
    import pytest

    from core.errors import AxisorError
    from core.restore.durable import flush_filesystem

    flush_filesystem(tmp_path)  # a real syncfs: returns
    with pytest.raises(AxisorError, match="cannot open .*missing"):
        flush_filesystem(tmp_path / "missing")
