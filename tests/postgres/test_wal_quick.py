"""A wal-push answered from its marker before the CLI's imports (app/wal_quick.py): only
when the route recorded by a full push still holds for this config file, this repository
and this file; otherwise the full program runs."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, Workspace
from wal_support import cli_importing

from app import wal_quick

SEG = 16 * 1024 * 1024
NAMES = [f"0000000100000000000000{i:02X}" for i in range(1, 5)]


def _pushed_ahead(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    state = tmp_path / "state"
    env = {"AXISOR_BACKUP_STATE_DIR": str(state)}
    monkeypatch.setenv("AXISOR_BACKUP_STATE_DIR", str(state))
    assert ws.cli("init", env=env).code == 0
    wal = tmp_path / "pg_wal"
    (wal / "archive_status").mkdir(parents=True)
    for n in NAMES:
        (wal / n).write_bytes(os.urandom(1 << 16) + bytes(SEG - (1 << 16)))
        (wal / "archive_status" / f"{n}.ready").touch()
    r = ws.cli("wal-push", str(wal / NAMES[0]), "--json", env=env)
    assert r.code == 0, r.err
    assert r.json()["pushed_ahead"] == NAMES[1:]
    return wal, env


def _argv(ws: Workspace, file: Path, *extra: str) -> list[str]:
    return ["--config", str(ws.config), "wal-push", str(file), *extra]


def test_answered_only_while_the_route_holds(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wal, env = _pushed_ahead(ws, tmp_path, monkeypatch)
    # Not archive_command's shape: the full program decides.
    assert wal_quick.try_answer(["wal-push", str(wal / NAMES[1])]) is None
    assert wal_quick.try_answer(_argv(ws, wal / NAMES[1], "--no-lock")) is None
    assert wal_quick.try_answer(_argv(ws, wal / NAMES[1], "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["from_marker"] is True and doc["name"] == NAMES[1] and doc["size"] == SEG
    assert wal_quick.try_answer(_argv(ws, wal / NAMES[1])) is None  # a marker answers once

    # Another config file content: the route is not this one's (its marker is left alone).
    original = ws.config.read_bytes()
    ws.config.write_bytes(original + b"\n# edited\n")
    assert wal_quick.try_answer(_argv(ws, wal / NAMES[2])) is None
    ws.config.write_bytes(original)

    # A file that is not what was stored is never answered (the full push refuses it).
    changed = wal / NAMES[2]
    changed.write_bytes(b"\xff" + changed.read_bytes()[1:])
    assert wal_quick.try_answer(_argv(ws, changed)) is None
    assert ws.cli("wal-push", str(changed), env=env).code == 17

    # A state folder set in the config: only the full program reads it.
    monkeypatch.delenv("AXISOR_BACKUP_STATE_DIR")
    assert wal_quick.quick_state_dir(b'[engine]\nstate_dir = "/somewhere"\n') is None
    assert wal_quick.quick_state_dir(b"[engine]\n") == wal_quick._default_state_dir()
    assert wal_quick.quick_state_dir(b"not toml [") is None
    monkeypatch.setenv("AXISOR_BACKUP_STATE_DIR", env["AXISOR_BACKUP_STATE_DIR"])

    # A new repository at the same path has another id: no answer from the old route.
    shutil.rmtree(ws.repo)
    assert ws.cli("init", env=env).code == 0
    assert wal_quick.try_answer(_argv(ws, wal / NAMES[3])) is None
    assert ws.cli("wal-push", str(wal / NAMES[3]), env=env, passphrase="wrong").code != 0


def test_the_cli_answers_before_its_imports(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, env = _pushed_ahead(ws, tmp_path, monkeypatch)
    p = cli_importing(["--config", str(ws.config), "wal-push", str(wal / NAMES[1]), "--json"], env, PASSPHRASE)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["from_marker"] is True
    imported = p.stderr
    assert "app.wal_quick" in imported and "core.service" not in imported and "core.config" not in imported
    # What was answered is archived: bit-exact back.
    out = tmp_path / "back"
    assert ws.cli("wal-fetch", NAMES[1], str(out), env=env).code == 0
    assert out.read_bytes() == (wal / NAMES[1]).read_bytes()


def test_an_answer_by_identity_reads_nothing_and_any_change_is_seen(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marker holds the file's identity as the push read it (wal_markers.py): an answer
    compares it instead of hashing again; a change since (even one that restores the size
    and mtime) is hashed, and different bytes go to the full push, which refuses them."""
    from core.sources.postgres import wal_markers

    wal, env = _pushed_ahead(ws, tmp_path, monkeypatch)
    state = Path(env["AXISOR_BACKUP_STATE_DIR"])
    markers = [p for p in (state / "wal-ahead").rglob("0000*") if p.parent.name != "routes"]
    assert markers and all(json.loads(p.read_text()).get("identity") for p in markers)
    folder = markers[0].parent
    hit = wal_markers.Markers(folder).take(wal / NAMES[1])
    assert hit is not None and hit.hashed is False
    # Other bytes, same size, the old mtime put back: ctime tells; the full push refuses (17).
    changed = wal / NAMES[2]
    st = changed.stat()
    changed.write_bytes(b"\xff" + changed.read_bytes()[1:])
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert wal_markers.Markers(folder).take(changed) is None
    assert ws.cli("wal-push", str(changed), env=env).code == 17
    # The same bytes under a new inode: no identity match, hashed, answered.
    same = wal / NAMES[3]
    data = same.read_bytes()
    same.unlink()
    same.write_bytes(data)
    hit = wal_markers.Markers(folder).take(same)
    assert hit is not None and hit.hashed is True
    # A file changed just before the read: no identity recorded (hashed at the answer).
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"x")
    started = time.time_ns()
    st = os.stat(fresh)
    assert wal_markers.stable_identity(st, st, started) == ""
    assert wal_markers.stable_identity(st, st, started + 10**9) == wal_markers.identity(st)
    changed_st = os.stat(changed)
    assert wal_markers.stable_identity(st, changed_st, started + 10**9) == ""
