"""wal-fetch answered from the prefetch spool before the CLI's imports (app/wal_fetch_quick.py),
and the follower that keeps the spool ahead (core/sources/postgres/wal_follow.py): real
files, the real CLI and repository, no PostgreSQL. Every case the quick path does not
answer must end as the full program's wal-fetch does; a tampered spooled file is never
handed over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, Workspace
from wal_support import archive_ready, cli_importing, segments_dir

from app import wal_fetch_quick, wal_quick
from core.sources.postgres import wal, wal_prefetch, wal_spool

PROGRAM = [sys.executable, "-m", "app.cli"]
SEG = 16 * 1024 * 1024
NAMES = [f"0000000100000000000000{i:02X}" for i in range(1, 11)]


@pytest.fixture
def restored(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An archive of NAMES, a restore's pg_wal, and a first (full) wal-fetch that spooled
    the window after NAMES[0] and recorded the route."""
    state = tmp_path / "state"
    env = {"AXISOR_BACKUP_STATE_DIR": str(state)}
    monkeypatch.setenv("AXISOR_BACKUP_STATE_DIR", str(state))
    monkeypatch.setenv("AXISOR_BACKUP_PASSPHRASE", PASSPHRASE)
    monkeypatch.chdir(wal_quick.__file__.rsplit("/app/", 1)[0])  # the follower runs `-m app.cli` from here
    assert ws.cli("init", env=env).code == 0
    src = segments_dir(tmp_path, NAMES)
    archive_ready(ws, src, env)
    pg_wal = tmp_path / "restore" / "pg_wal"
    pg_wal.mkdir(parents=True)
    dest = pg_wal / "RECOVERYXLOG"
    r = ws.cli("wal-fetch", NAMES[0], str(dest), env=env)
    assert r.code == 0, r.err
    yield ws, src, pg_wal, dest, env
    wal_prefetch.remove_spool(pg_wal)


def _argv(ws: Workspace, name: str, dest: Path) -> list[str]:
    return ["--config", str(ws.config), "wal-fetch", name, str(dest)]


def _spooled(pg_wal: Path) -> set[str]:
    return wal_prefetch.Spool(pg_wal / wal_prefetch.DIR_NAME).names()


def _wait_for(pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_constants_are_the_programs() -> None:
    assert wal_fetch_quick.AD_WAL == wal.AD_WAL
    assert wal_fetch_quick.MAX_WAL_MANIFEST == wal.MAX_WAL_MANIFEST


def test_spooled_segments_are_handed_over_and_the_follower_keeps_ahead(restored) -> None:
    ws, src, pg_wal, dest, _ = restored
    assert NAMES[1] in _spooled(pg_wal)
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[1], dest), PROGRAM) == 0
    assert dest.read_bytes() == (src / NAMES[1]).read_bytes()
    assert NAMES[1] not in _spooled(pg_wal)
    # The follower started by that answer fills the window after the segment asked for last.
    folder = pg_wal / wal_prefetch.DIR_NAME
    assert wal_spool.read_asked(folder) == NAMES[1]
    for n in NAMES[2:]:
        _wait_for(lambda n=n: n in _spooled(pg_wal) or not (src / n).exists())
        assert wal_fetch_quick.try_fetch(_argv(ws, n, dest), PROGRAM) == 0, n
        assert dest.read_bytes() == (src / n).read_bytes()
    assert wal_spool.take_lock(folder) is None  # it runs, or it left at the archive's end with the folder
    # The end of a point-in-time restore stops it and leaves nothing behind.
    wal_prefetch.remove_spool(pg_wal)
    assert not folder.exists()


def test_every_case_not_answered_is_the_full_programs(
    restored, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ws, src, pg_wal, dest, env = restored
    folder = pg_wal / wal_prefetch.DIR_NAME
    spooled = folder / NAMES[1]
    assert spooled.exists()

    def full(name: str) -> int:
        return ws.cli("wal-fetch", name, str(dest), env=env).code

    # Not restore_command's shape, not a segment: never answered here.
    for argv in (
        ["--config", str(ws.config), "wal-fetch", "--from", "x", NAMES[1], str(dest)],
        ["--config", str(ws.config), "wal-fetch", NAMES[1], str(dest), "--json"],
        ["wal-fetch", NAMES[1], str(dest)],
        _argv(ws, "00000002.history", dest),
        _argv(ws, NAMES[1] + ".partial", dest),
    ):
        assert wal_fetch_quick.try_fetch(argv, PROGRAM) is None, argv
    # A history file spooled under that name is not looked at either; the full program
    # answers as ever (not archived: exit 1).
    (folder / "00000002.history").write_bytes(b"1\t0/0\tforged\n")
    assert wal_fetch_quick.try_fetch(_argv(ws, "00000002.history", dest), PROGRAM) is None
    assert full("00000002.history") == 1

    # No spooled copy (here: a segment the archive does not hold): the full program, exit 1.
    missing = "0000000100000000000000FF"
    assert wal_fetch_quick.try_fetch(_argv(ws, missing, dest), PROGRAM) is None
    assert full(missing) == 1
    # Spooled but not archived (planted): not answered, and the full program says exit 1.
    (folder / missing).write_bytes(bytes(SEG))
    assert wal_fetch_quick.try_fetch(_argv(ws, missing, dest), PROGRAM) is None
    assert full(missing) == 1

    # A wrong passphrase, no cached key, a state folder of the config's own: the full program.
    monkeypatch.setenv("AXISOR_BACKUP_PASSPHRASE", "not the passphrase")
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[1], dest), PROGRAM) is None
    monkeypatch.setenv("AXISOR_BACKUP_PASSPHRASE", PASSPHRASE)
    cache = Path(env["AXISOR_BACKUP_STATE_DIR"]) / "keycache"
    saved = {p: p.read_bytes() for p in cache.iterdir()}
    for p in saved:
        p.chmod(0o644)  # readable by others: not trusted, as KeyCache would not
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[1], dest), PROGRAM) is None
    for p in saved:
        p.unlink()
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[1], dest), PROGRAM) is None
    for p, raw in saved.items():
        p.write_bytes(raw)
        p.chmod(0o600)
    assert spooled.exists()  # none of these touched the spooled copy
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[1], dest), PROGRAM) == 0
    assert dest.read_bytes() == (src / NAMES[1]).read_bytes()


def test_a_tampered_spooled_file_is_never_handed_over(restored) -> None:
    ws, src, pg_wal, dest, env = restored
    folder = pg_wal / wal_prefetch.DIR_NAME
    dest.write_bytes(b"before")
    for n, tamper in (
        (NAMES[1], lambda b: b"\x00" + b[1:]),  # same size, other bytes
        (NAMES[2], lambda b: b[:-1]),  # cut short
        (NAMES[3], lambda b: b + b"\x00"),  # longer
    ):
        p = folder / n
        p.write_bytes(tamper(p.read_bytes()))
        assert wal_fetch_quick.try_fetch(_argv(ws, n, dest), PROGRAM) is None
        assert not p.exists() and dest.read_bytes() == b"before"
    # Another archived segment's bytes under this name: its manifest says otherwise.
    (folder / NAMES[4]).write_bytes((src / NAMES[5]).read_bytes())
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[4], dest), PROGRAM) is None
    assert dest.read_bytes() == b"before"
    # A damaged manifest in the repository: not answered; the full program reports it (exit 9).
    manifest = ws.repo / "wal" / NAMES[6]
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes()[:-1] + b"\x00")
    assert (folder / NAMES[6]).exists()
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[6], dest), PROGRAM) is None
    assert ws.cli("wal-fetch", NAMES[6], str(dest), env=env).code == 9
    assert dest.read_bytes() == b"before"
    # The full program fetches the tampered ones again, bit-exact.
    for n in NAMES[1:5]:
        assert ws.cli("wal-fetch", n, str(dest), env=env).code == 0
        assert dest.read_bytes() == (src / n).read_bytes()


def test_passphrase_from_the_config_file(restored, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ws, src, pg_wal, dest, env = restored
    pf = tmp_path / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    pf.chmod(0o600)
    ws.write_config(f'passphrase_file = "{pf}"')
    monkeypatch.delenv("AXISOR_BACKUP_PASSPHRASE")
    # A new config's bytes: no route until a full wal-fetch records one.
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[1], dest), PROGRAM) is None
    assert ws.cli("wal-fetch", NAMES[1], str(dest), env=env, passphrase=None).code == 0
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[2], dest), PROGRAM) == 0
    assert dest.read_bytes() == (src / NAMES[2]).read_bytes()
    pf.chmod(0o640)  # the full program refuses such a file: so is the quick path
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[3], dest), PROGRAM) is None
    pf.chmod(0o600)
    pf.write_text("another passphrase\n")
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[3], dest), PROGRAM) is None
    pf.write_text(PASSPHRASE + "\n")
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[3], dest), PROGRAM) == 0


def test_the_cli_answers_before_its_imports(restored) -> None:
    """Through `python -m app.cli`, as restore_command runs it: no engine, no config validation."""
    ws, src, pg_wal, dest, env = restored
    p = cli_importing(_argv(ws, NAMES[1], dest), env, PASSPHRASE)
    assert p.returncode == 0, p.stderr
    imported = p.stderr
    assert "app.wal_fetch_quick" in imported
    assert "core.service" not in imported and "core.config" not in imported and "core.crypto" not in imported
    assert dest.read_bytes() == (src / NAMES[1]).read_bytes()


def test_the_follower_by_hand(restored, tmp_path: Path) -> None:
    """`wal-fetch --ahead`: exits at once while another holds the spool's lock or there is no
    spool; else fills the window after .asked and leaves at the archive's end, tidy."""
    ws, src, pg_wal, dest, env = restored
    folder = pg_wal / wal_prefetch.DIR_NAME
    nowhere = tmp_path / "elsewhere" / "RECOVERYXLOG"
    nowhere.parent.mkdir()
    r = ws.cli("--json", "wal-fetch", "--ahead", NAMES[1], str(nowhere), env=env)
    assert r.code == 0 and r.json()["fetched_ahead"] == 0, r.err
    held = wal_spool.take_lock(folder)
    assert held is not None
    try:
        r = ws.cli("--json", "wal-fetch", "--ahead", NAMES[1], str(dest), env=env)
        assert r.code == 0 and r.json()["fetched_ahead"] == 0, r.err
    finally:
        os.close(held)
    # Recovery asked for the last but one: the follower spools the last, then, with the
    # archive's end reached, waits for recovery to take it (idle), taken here meanwhile.
    wal_spool.note_asked(folder, NAMES[-2])
    follower = subprocess.Popen(
        [*PROGRAM, "--config", str(ws.config), "--json", "wal-fetch", "--ahead", NAMES[-2], str(dest)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: NAMES[-1] in _spooled(pg_wal))
    assert _spooled(pg_wal) == {NAMES[-2], NAMES[-1]}  # what recovery passed is swept
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[-1], dest), PROGRAM) == 0
    out, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0 and json.loads(out)["fetched_ahead"] >= 1
    assert not folder.exists(), [p.name for p in folder.iterdir()]  # nothing spooled, nothing left behind


def test_a_file_swapped_while_hashed_is_not_handed_over(restored, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, src, pg_wal, dest, env = restored
    assert (pg_wal / wal_prefetch.DIR_NAME / NAMES[1]).exists()
    real = wal_spool.file_digest

    def swapping(path: Path) -> tuple[int, str]:
        digest = real(path)  # the checked bytes; then other bytes under the name
        swapped = path.with_name(".swap")
        swapped.write_bytes(b"\xff" * path.stat().st_size)
        os.replace(swapped, path)
        return digest

    monkeypatch.setattr(wal_spool, "file_digest", swapping)
    dest.write_bytes(b"before")
    assert wal_fetch_quick.try_fetch(_argv(ws, NAMES[1], dest), PROGRAM) is None
    assert dest.read_bytes() == b"before"
    monkeypatch.setattr(wal_spool, "file_digest", real)
    assert ws.cli("wal-fetch", NAMES[1], str(dest), env=env).code == 0  # the full program: fetched again
    assert dest.read_bytes() == (src / NAMES[1]).read_bytes()
