"""wal-push ahead of the archiver (core/sources/postgres/wal_ahead.py): one push also stores
the files the server has marked ready, and their own pushes are answered from a marker
without opening the repository, only when the file is exactly what was stored."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from conftest import Workspace
from wal_support import ServerRepo, enable_archiving

SEG = 16 * 1024 * 1024

NAMES = [f"0000000100000000000000{i:02X}" for i in range(1, 6)]


def _pg_wal(root: Path) -> Path:
    """A pg_wal as the server leaves it: five segments, each with its .ready status file."""
    wal = root / "pg_wal"
    (wal / "archive_status").mkdir(parents=True)
    for i, n in enumerate(NAMES):
        (wal / n).write_bytes(os.urandom(1 << 20) + bytes(SEG - (1 << 20)))
        (wal / "archive_status" / f"{n}.ready").touch()
    return wal


def _documents(text: str) -> list[dict]:
    """The JSON documents one after another in ``text`` (the pushes' --json output)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
    return docs


def test_push_ahead_then_answer_from_markers_only_for_identical_files(ws: Workspace, tmp_path: Path) -> None:
    env = {"AXISOR_BACKUP_STATE_DIR": str(tmp_path / "state")}
    assert ws.cli("init", env=env).code == 0
    wal = _pg_wal(tmp_path)

    r = ws.cli("wal-push", str(wal / NAMES[0]), "--json", env=env)
    assert r.code == 0, r.err
    first = r.json()
    assert first["from_marker"] is False and first["pushed_ahead"] == NAMES[1:]

    # The server asks for the next one: answered from the marker, so the repository is not
    # even opened (a wrong passphrase would otherwise fail).
    wrong = "not the passphrase"
    r = ws.cli("wal-push", str(wal / NAMES[2]), "--json", env=env, passphrase=wrong)
    assert r.code == 0, r.err
    assert r.json()["from_marker"] is True and r.json()["already_archived"] is True
    # A marker answers once.
    assert ws.cli("wal-push", str(wal / NAMES[2]), env=env, passphrase=wrong).code != 0
    assert ws.cli("wal-push", str(wal / NAMES[2]), env=env).code == 0  # the full push: identical

    # A file that changed since it was pushed ahead is never answered from its marker: the
    # full push runs and refuses it.
    changed = wal / NAMES[3]
    changed.write_bytes(b"\xff" + changed.read_bytes()[1:])
    assert ws.cli("wal-push", str(changed), env=env, passphrase=wrong).code != 0
    r = ws.cli("wal-push", str(changed), env=env)
    assert r.code == 17 and "different content" in r.err

    # What was pushed ahead is really archived.
    out = tmp_path / "fetched"
    assert ws.cli("wal-fetch", NAMES[4], str(out), env=env).code == 0
    assert out.read_bytes() == (wal / NAMES[4]).read_bytes()

    # Markers belong to one repository: a new one at the same path gets no answer from them.
    r = ws.cli("wal-push", str(wal / NAMES[1]), "--json", env=env, passphrase=wrong)
    assert r.code == 0 and r.json()["from_marker"] is True  # (this repository's marker)
    shutil.rmtree(ws.repo)
    assert ws.cli("init", env=env).code == 0
    assert ws.cli("wal-push", str(wal / NAMES[4]), env=env, passphrase=wrong).code != 0


def test_the_server_archiver_catches_up_through_markers(pg_cluster) -> None:
    c = pg_cluster()
    sr = ServerRepo.create()
    try:
        assert sr.cli("init").code == 0
        # The archive is down while the server writes six segments: they pile up as .ready.
        enable_archiving(c, "false")
        c.psql("CREATE TABLE filler (x int)")
        segs = []
        for _ in range(6):
            c.psql("INSERT INTO filler SELECT generate_series(1, 1000)")
            segs.append(c.psql("SELECT pg_walfile_name(pg_switch_wal())"))
        log = sr.dir / "pushes.log"
        log.touch()
        sr.chown()
        c.psql(f"ALTER SYSTEM SET archive_command = '{sr.archive_command()} --json >> {log}'")
        c.psql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 120
        while c.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[:24] < segs[-1]:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        pushes = _documents(log.read_text())
        by_name = {p["name"]: p for p in pushes}
        assert all(s in by_name for s in segs)
        ahead = {n for p in pushes for n in p["pushed_ahead"]}
        answered = [p["name"] for p in pushes if p["from_marker"]]
        assert set(segs[1:]) <= ahead | {p["name"] for p in pushes if not p["from_marker"]}
        assert len(answered) >= 3, pushes  # most of the backlog cost no repository opening
        assert all(n in ahead for n in answered)
        r = sr.cli("database", "status", "--json", as_server=False)
        assert r.code == 0, r.err
        assert r.json()["gaps"] == []
        for s in segs:  # the archived bytes are the server's
            live = c.dir / "data" / "pg_wal" / s
            out = Path(f"/tmp/{s}.ahead")
            try:
                assert sr.cli("wal-fetch", s, str(out), as_server=False).code == 0
                if live.exists():
                    assert out.read_bytes() == live.read_bytes()
            finally:
                out.unlink(missing_ok=True)
    finally:
        sr.remove()
