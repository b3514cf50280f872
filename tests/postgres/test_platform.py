"""The whole platform at one instant (issue 21, part 2): files snapshots record the
database's WAL position and clock around their scan, and `restore --platform --to-time T`
pairs the database recovered to T with each files source's snapshot, reporting the skew.
Real PostgreSQL archiving through wal-push, real files, the real CLI as the server's user."""

from __future__ import annotations

import asyncio
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
    sr.config.write_text(
        sr.config.read_text()
        + f'[engine]\nstate_dir = "{sr.dir / "state"}"\n'
        + f'[application]\nuser_data = ["{app}"]\n'
    )
    sr.chown()
    assert sr.cli("init").code == 0
    enable_archiving(c, sr.archive_command())
    c.psql("CREATE TABLE marks (id serial PRIMARY KEY, burst text NOT NULL)")
    # What the application keeps in the database about its files: the drill's cross-check.
    c.psql("CREATE TABLE attachments (path text NOT NULL)")
    c.psql(f"INSERT INTO attachments VALUES ('attachment.txt'), ('{app}/attachment.txt'), ('lost/invoice.pdf')")
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


def _drill(sr: ServerRepo, at: datetime, query: str) -> dict:
    scratch = sr.dir / "scratch"
    scratch.mkdir(exist_ok=True)
    base = sr.config.read_text().split("[drills]")[0]
    sr.config.write_text(
        base + f'[drills]\nwork_dir = "{scratch}"\n'
        '[[drills.checks]]\nname = "attachments exist"\nsource = "application/user_data"\n'
        f'paths_sql = "{query}"\n'
    )
    sr.chown()
    r = sr.cli("drill", "--scenario", "platform-loss", "--to-time", at.isoformat(), "--json", timeout=300)
    assert r.code in (0, 19), r.out + r.err
    return {"code": r.code, **r.json()}


def test_the_platform_loss_drill_reports_the_skew_and_cross_checks_the_files(platform) -> None:
    c, sr, first, second, at, _ = platform
    rep = _drill(sr, at, "SELECT path FROM attachments WHERE path NOT LIKE 'lost/%'")
    checks = {x["name"]: x for x in rep["checks"]}
    assert rep["code"] == 0 and rep["passed"], checks
    skew = checks["application/user_data skew"]
    assert skew["status"] == "info" and "database clock" in skew["detail"] and 0 <= skew["actual"] < 60
    assert checks["attachments exist"]["status"] == "pass"
    assert "all 2 paths" in checks["attachments exist"]["detail"]
    assert [r["snapshot"] for r in rep["restored"] if r.get("source") == "application/user_data"] == [second["id"]]

    # A file the database names that the restored files lack fails the drill, named.
    rep = _drill(sr, at, "SELECT path FROM attachments")
    checks = {x["name"]: x for x in rep["checks"]}
    assert rep["code"] == 19 and not rep["passed"]
    assert checks["attachments exist"]["status"] == "fail"
    assert "1 of 3 paths" in checks["attachments exist"]["detail"]
    assert "lost/invoice.pdf" in checks["attachments exist"]["detail"]

    # The console's drill report shows the same: the skew per source and the cross-check's
    # missing path (read-only: it only reads the stored reports).
    asyncio.run(_console_report(sr, rep["id"]))
    sr.chown()


async def _console_report(sr: ServerRepo, report_id: str) -> None:
    from textual.widgets import DataTable, Markdown

    from app.console import ConsoleApp
    from console_support import console, settle
    from core.config import load_config
    from screens.drills import DrillsScreen

    passphrase = sr.passphrase_file.read_text().strip()
    app = ConsoleApp(load_config(sr.config), lambda _c=False: passphrase, read_only=True, prefer_daemon=False)
    async with console(app, (120, 40)) as pilot:
        await pilot.press("x")
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, DrillsScreen)
        table = screen.query_one("#drill-history", DataTable)
        table.move_cursor(row=table.get_row_index(report_id))
        await pilot.press("o")
        await settle(pilot, app)
        report = screen.query_one("#drill-report", Markdown).source
    assert "platform-loss — FAILED" in report
    assert "| application/user_data skew | skew | info |" in report and "database clock" in report
    assert "| attachments exist | cross-check | fail |" in report and "lost/invoice.pdf" in report
    assert "Point in time:" in report
