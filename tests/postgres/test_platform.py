"""The whole platform at one instant (issue 21, part 2): files snapshots record the
database's WAL position and clock around their scan, and `restore --platform --to-time T`
pairs the database recovered to T with each files source's snapshot, reporting the skew.
Real PostgreSQL archiving through wal-push, real files, the real CLI as the server's user."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from wal_support import ServerRepo, enable_archiving, switch_and_wait


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _db_now(c) -> datetime:
    return datetime.fromisoformat(c.psql("SELECT clock_timestamp()::text").replace(" ", "T").replace("+00", "+00:00"))


def _mark(c, burst: str) -> None:
    with psycopg.connect(host=c.host, port=c.port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute("INSERT INTO marks (burst) VALUES (%s)", (burst,))


@pytest.fixture(scope="module")
def platform(pg_cluster):
    c = pg_cluster()
    sr = ServerRepo.create()
    app = sr.dir / "app"
    app.mkdir()
    (app / "attachment.txt").write_text("version 1\n")
    sr.write_config(f'url = "{c.url()}"\nmode = "physical"\npg_bin_dir = "{c.bin}"')
    sr.config.write_text(sr.config.read_text() + f'[application]\nuser_data = ["{app}"]\n')
    sr.chown()
    assert sr.cli("init").code == 0
    enable_archiving(c, sr.archive_command())
    c.psql("CREATE TABLE marks (id serial PRIMARY KEY, burst text NOT NULL)")
    before_all = _db_now(c)
    r = sr.cli("backup", "--json", timeout=180)  # the base backup and the first files snapshot
    assert r.code == 0, r.out + r.err
    first = next(s for s in r.json()["snapshots"] if s["source"] == "application/user_data")
    _mark(c, "A")
    (app / "attachment.txt").write_text("version 2\n")
    sr.chown()
    r = sr.cli("backup", "--source", "application/user_data", "--json", timeout=120)
    assert r.code == 0, r.out + r.err
    second = r.json()["snapshots"][0]
    at = _db_now(c)
    _mark(c, "B")
    switch_and_wait(c)
    yield c, sr, first, second, at, before_all
    sr.remove()


def test_a_files_snapshot_records_the_database_position_around_its_scan(platform) -> None:
    c, sr, first, second, at, _ = platform
    r = sr.cli("show", second["id"], "--json", as_server=False)
    assert r.code == 0, r.err
    pos = r.json()["metadata"]["db_position"]
    start, end = datetime.fromisoformat(pos["start"]["time"]), datetime.fromisoformat(pos["end"]["time"])
    assert start <= end <= at
    assert pos["start"]["lsn"] and pos["end"]["lsn"]


def test_the_plan_pairs_each_source_with_the_database_at_t(platform) -> None:
    c, sr, first, second, at, before_all = platform
    r = sr.cli("restore", "--platform", "--to-time", at.isoformat(), "--dry-run", "--json", as_server=False)
    assert r.code == 0, r.out + r.err
    plan = r.json()
    (choice,) = plan["files"]
    assert choice["snapshot"] == second["id"] and choice["scan"]["basis"] == "database clock"
    assert 0 <= choice["skew_seconds"] < 60 and plan["problems"] == []
    # Between the two files snapshots: the first one, further from T.
    mid = datetime.fromisoformat(second["time"]) - timedelta(milliseconds=1)
    r = sr.cli("restore", "--platform", "--to-time", mid.isoformat(), "--dry-run", "--json", as_server=False)
    if r.code == 0:  # the second scan may have begun before its manifest's time: either way, said
        assert r.json()["files"][0]["snapshot"] in (first["id"], second["id"])
    # Before anything was backed up: nothing to pair with, refused (exit 12), naming why.
    early = (before_all - timedelta(hours=1)).isoformat()
    r = sr.cli("restore", "--platform", "--to-time", early, "--dry-run", as_server=False)
    assert r.code == 12, r.out + r.err
    assert "no snapshot of application/user_data" in r.out and "recovery window" in r.out


def test_the_platform_comes_back_to_t(platform) -> None:
    c, sr, first, second, at, _ = platform
    files, data = sr.dir / "platform-files", sr.dir / "platform-db"
    port = _free_port()
    r = sr.cli(
        "restore", "--platform", "--to-time", at.isoformat(), "--target", str(files), "--target-dir", str(data),
        "--start", "--port", str(port), "--json", timeout=300,
    )  # fmt: skip
    try:
        assert r.code == 0, r.out + r.err
        restored = next(files.rglob("attachment.txt"))
        assert restored.read_text() == "version 2\n"
        with psycopg.connect(host=str(data), port=port, user="postgres", dbname="postgres") as conn:
            assert [b for (b,) in conn.execute("SELECT burst FROM marks ORDER BY id")] == ["A"]
    finally:
        argv = [str(c.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, capture_output=True, timeout=60)
    assert Path(data).exists()
