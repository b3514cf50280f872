"""Point-in-time recovery against a real cluster archiving through wal-push while pgbench runs:
the restored server holds exactly what was committed before the target, and targets outside
the recovery window are refused before anything is written."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from wal_support import PASSPHRASE, ServerRepo, enable_archiving, switch_and_wait


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="module")
def env(pg_cluster):
    c = pg_cluster()
    sr = ServerRepo.create()
    sr.write_config(f'url = "{c.url()}"\nmode = "physical"\npg_bin_dir = "{c.bin}"')
    assert sr.cli("init").code == 0
    enable_archiving(c, sr.archive_command())
    c.psql("CREATE TABLE marks (id serial PRIMARY KEY, burst text NOT NULL, at timestamptz DEFAULT clock_timestamp())")
    subprocess.run(
        [str(c.bin / "pgbench"), "-i", "-q", "-s", "2", "-h", c.host, "-p", str(c.port), "-U", "postgres", "postgres"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    r = sr.cli("backup", "--json", timeout=180)
    assert r.code == 0, r.out + r.err
    base = r.json()["snapshots"][0]
    yield c, sr, base
    sr.remove()


def _burst(c, name: str, n: int) -> None:
    with psycopg.connect(host=c.host, port=c.port, user="postgres", dbname="postgres", autocommit=True) as conn:
        for _ in range(n):  # one transaction per row: each has its own commit time
            conn.execute("INSERT INTO marks (burst) VALUES (%s)", (name,))


def _stop(data: Path, bin_dir: Path) -> None:
    subprocess.run(
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
        capture_output=True,
        timeout=60,
    )


def test_pitr_to_a_time_between_bursts_under_pgbench(env) -> None:
    c, sr, base = env
    bench = subprocess.Popen(
        [
            str(c.bin / "pgbench"),
            "-n",
            "-c",
            "2",
            "-T",
            "6",
            "-h",
            c.host,
            "-p",
            str(c.port),
            "-U",
            "postgres",
            "postgres",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1)
        _burst(c, "A", 40)
        time.sleep(0.3)
        target = datetime.fromisoformat(
            c.psql("SELECT clock_timestamp()::text").replace(" ", "T").replace("+00", "+00:00")
        )
        time.sleep(0.3)
        _burst(c, "B", 40)
    finally:
        assert bench.wait(timeout=60) == 0, bench.stderr.read()
    # Writes after the target exist in archived WAL: recovery can stop at the target.
    _burst(c, "C", 5)
    switch_and_wait(c)
    early = (target - timedelta(seconds=1)).isoformat()
    history_before = int(c.psql(f"SELECT count(*) FROM pgbench_history WHERE mtime < '{early}'"))
    assert history_before > 0

    port = _free_port()
    out = sr.dir / "pitr"
    r = sr.cli(
        "restore",
        "--source",
        "database",
        "--to-time",
        target.isoformat(),
        "--target-dir",
        str(out),
        "--start",
        "--port",
        str(port),
        "--json",
        timeout=300,
    )
    try:
        assert r.code == 0, r.out + r.err
        rep = r.json()
        assert rep["base_snapshot"] == base["id"] and rep["started"] and rep["promoted"]
        assert rep["stopped_at"] and "recovery stopping before commit" in rep["stopped_at"]
        with psycopg.connect(host=str(out), port=port, user="postgres", dbname="postgres") as conn:
            counts = dict(conn.execute("SELECT burst, count(*) FROM marks GROUP BY burst").fetchall())
            assert counts == {"A": 40}, counts
            assert not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            # pgbench's own transactions: everything well before the target is there, nothing after it.
            assert (
                conn.execute("SELECT count(*) FROM pgbench_history WHERE mtime < %s", (early,)).fetchone()[0]
                == history_before
            )
            assert conn.execute("SELECT count(*) FROM pgbench_history WHERE mtime > %s", (target,)).fetchone()[0] == 0
            # The copy never archives into the source's archive.
            assert conn.execute("SHOW archive_mode").fetchone()[0] == "off"
        assert (out / "postgresql.auto.conf").read_text().count("wal-fetch %f %p") == 1
        assert rep["seconds"]["total"] > 0
    finally:
        _stop(out, c.bin)


def test_pitr_prepares_without_starting_and_keeps_secrets_out(env) -> None:
    c, sr, base = env
    switch_and_wait(c)
    st = sr.cli("database", "status", "--json").json()
    window_from = datetime.fromisoformat(st["recovery_window"]["from"])
    target = window_from + timedelta(milliseconds=1)
    out = sr.dir / "prepared"
    r = sr.cli("restore", "--to-time", target.isoformat(), "--target-dir", str(out), "--json")
    assert r.code == 0, r.out + r.err
    rep = r.json()
    assert not rep["started"] and rep["start_command"][-1] == "start"
    assert (out / "recovery.signal").exists() and (out / "backup_label").exists()
    assert int((out / "PG_VERSION").read_text()) == base["metadata"]["server_version_num"] // 10000
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    conf = (out / "postgresql.auto.conf").read_text()
    assert "recovery_target_action = 'promote'" in conf and "archive_mode = 'off'" in conf
    assert f"--config {sr.config}" in conf and "wal-fetch %f %p" in conf
    assert PASSPHRASE not in conf


@pytest.mark.parametrize("where", ["before", "after"])
def test_target_outside_the_window_is_refused_up_front(env, where) -> None:
    c, sr, base = env
    st = sr.cli("database", "status", "--json").json()
    w = st["recovery_window"]
    if where == "before":
        target = datetime.fromisoformat(base["metadata"]["start_time"]) - timedelta(minutes=5)
    else:
        target = datetime.now(timezone.utc) + timedelta(hours=1)
    out = sr.dir / f"refused-{where}"
    r = sr.cli("restore", "--to-time", target.isoformat(), "--target-dir", str(out))
    assert r.code == 12, r.out + r.err
    assert "recovery window" in r.err and w["from"][:19].replace("T", " ") in r.err
    assert not out.exists()  # nothing written


def test_non_empty_target_dir_and_misuse_are_refused(env) -> None:
    c, sr, base = env
    busy = sr.dir / "busy"
    busy.mkdir()
    (busy / "keep").write_text("x")
    sr.chown()
    st = sr.cli("database", "status", "--json").json()
    t = st["recovery_window"]["from"]
    r = sr.cli("restore", "--to-time", t, "--target-dir", str(busy))
    assert r.code == 12 and "not empty" in r.err
    assert (busy / "keep").read_text() == "x"
    r = sr.cli("restore", "--to-time", t)
    assert r.code == 2 and "--target-dir" in r.err
    r = sr.cli("restore", "--to-time", "yesterday-ish", "--target-dir", str(sr.dir / "x"))
    assert r.code == 2 and "not a date" in r.err
    r = sr.cli("restore", base["id"], "--target-db", "scratch")
    assert r.code == 2 and "physical base backup" in r.err


def test_pitr_as_an_engine_job(env, monkeypatch, tmp_path) -> None:
    """The console's wizard submits point-in-time recovery as a restore job."""
    import asyncio

    from core.config import load_config
    from core.jobs.api import JobState
    from core.jobs.engine import Engine

    c, sr, base = env
    switch_and_wait(c)
    st = sr.cli("database", "status", "--json").json()
    target = datetime.fromisoformat(st["recovery_window"]["from"]) + timedelta(milliseconds=1)
    out = sr.dir / "pitr-job"
    monkeypatch.setenv("AXISOR_BACKUP_PROGRAM", str(sr.wrapper))
    state = tmp_path / "state"

    async def run():
        engine = Engine(load_config(sr.config), lambda confirm: PASSPHRASE, directory=state, workers=2)
        await engine.start()
        try:
            job = await engine.submit(
                "restore",
                {"source": "database", "to_time": target.isoformat(), "target_dir": str(out)},
                origin="console",
            )
            return await engine.wait(job.id)
        finally:
            await engine.close()

    job = asyncio.run(run())
    assert job.state == JobState.COMPLETED, job.error
    assert job.result["base_snapshot"] == base["id"] and not job.result["started"]
    assert (out / "recovery.signal").exists()
    if os.geteuid() == 0:
        assert out.stat().st_uid == __import__("pwd").getpwnam("postgres").pw_uid


def test_pitr_from_a_secondary_location_when_the_primary_is_lost(env) -> None:
    """The base backup and every WAL file come from the replica: the primary is moved away
    while the restored server replays (its restore_command fetches with --from)."""
    c, sr, base = env
    nas = sr.dir / "nas"
    text = sr.config.read_text()
    sr.config.write_text(text + f'[[storage.remote_storage]]\nprovider = "local"\nname = "nas"\npath = "{nas}"\n')
    sr.chown()
    try:
        _burst(c, "D", 7)
        time.sleep(0.3)
        target = datetime.fromisoformat(
            c.psql("SELECT clock_timestamp()::text").replace(" ", "T").replace("+00", "+00:00")
        )
        time.sleep(0.3)
        _burst(c, "E", 3)
        switch_and_wait(c)
        r = sr.cli("copy", "--to", "nas", "--json", timeout=300)  # snapshots and the WAL archive
        assert r.code == 0, r.out + r.err
        expected = dict(
            ln.split("=")
            for ln in c.psql(
                f"SELECT burst || '=' || count(*) FROM marks WHERE at < '{target.isoformat()}' GROUP BY burst"
            ).splitlines()
        )
        lost = sr.dir / "primary-lost"
        sr.repo.rename(lost)  # the primary is gone
        port = _free_port()
        out = sr.dir / "pitr-nas"
        r = sr.cli(
            "restore",
            "--from",
            "nas",
            "--to-time",
            target.isoformat(),
            "--target-dir",
            str(out),
            "--start",
            "--port",
            str(port),
            "--json",
            timeout=300,
        )
        try:
            assert r.code == 0, r.out + r.err
            assert "--from nas" in (out / "postgresql.auto.conf").read_text()
            with psycopg.connect(host=str(out), port=port, user="postgres", dbname="postgres") as conn:
                got = {b: str(n) for b, n in conn.execute("SELECT burst, count(*) FROM marks GROUP BY burst")}
            assert got == expected and "E" not in got
        finally:
            _stop(out, c.bin)
            lost.rename(sr.repo)
    finally:
        sr.config.write_text(text)
        sr.chown()


def test_replay_progress_names_the_segment_and_its_lsn() -> None:
    from core.sources.postgres.pitr import replay_position

    log = 'LOG:  restored log file "000000010000000000000003" from archive\nLOG:  restored log file "00000001000000020000004A" from archive\n'
    assert replay_position(log) == "WAL segment 00000001000000020000004A (LSN 2/4A000000)"
    assert replay_position(log, 1024 * 1024) == "WAL segment 00000001000000020000004A (LSN 2/4A00000)"
    assert replay_position("nothing restored yet") is None


def test_pitr_replays_through_the_quick_wal_fetch(env) -> None:
    """Recovery of several segments: after the first full wal-fetch, the spooled segments are
    handed over by the quick path (app/wal_fetch_quick.py) and its follower keeps the spool
    ahead; the data at the target is exact and nothing is left in pg_wal after promotion."""
    c, sr, base = env
    for i in range(6):  # six segments, each with rows of its own
        _burst(c, f"S{i}", 5)
        c.psql("SELECT pg_switch_wal()")
    time.sleep(0.3)
    target = datetime.fromisoformat(c.psql("SELECT clock_timestamp()::text").replace(" ", "T").replace("+00", "+00:00"))
    time.sleep(0.3)
    _burst(c, "after", 5)
    switch_and_wait(c)
    out = sr.dir / "pitr-quick"
    port = _free_port()
    r = sr.cli("restore", "--to-time", target.isoformat(), "--target-dir", str(out), "--port", str(port), "--json")
    assert r.code == 0, r.out + r.err
    # The same program, its imports written down per run: a quick answer never imports app.cli_run.
    calls = sr.dir / "calls.log"
    logging = sr.dir / "axisor-logged"
    command = sr.wrapper.read_text().splitlines()[1].replace("-m app.cli", "-X importtime -m app.cli")
    logging.write_text(f'#!/bin/sh\necho "CALL $*" >> {calls}\n{command} 2>> {calls}\n')
    logging.chmod(0o755)
    conf = out / "postgresql.auto.conf"
    conf.write_text(conf.read_text().replace(f"{sr.wrapper} ", f"{logging} "))
    calls.touch()
    calls.chmod(0o666)
    sr.chown()
    start = [str(c.bin / "pg_ctl"), "-D", str(out), "-l", str(out / "replay.log"), "-w", "-t", "120", "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True, timeout=180)
    try:
        deadline = time.monotonic() + 120
        while True:  # promoted? (a query during replay may be cancelled by it: asked again)
            try:
                with psycopg.connect(host=str(out), port=port, user="postgres", dbname="postgres") as conn:
                    if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        counts = dict(
                            conn.execute(
                                "SELECT burst, count(*) FROM marks WHERE burst LIKE 'S%' OR burst = 'after' "
                                "GROUP BY burst"
                            ).fetchall()
                        )
                        break
            except psycopg.Error:
                pass
            assert time.monotonic() < deadline, (out / "replay.log").read_text()[-3000:]
            time.sleep(0.1)
        assert counts == {f"S{i}": 5 for i in range(6)}, counts
        runs = calls.read_text().split("CALL ")[1:]
        segments = [b for b in runs if b.split()[3][:24].isalnum() and len(b.split()[3]) == 24]
        quick = [b for b in segments if "app.wal_fetch_quick" in b and "app.cli_run" not in b]
        assert len(segments) >= 6 and len(quick) >= 3, [b.splitlines()[0] for b in runs]
    finally:
        _stop(out, c.bin)
    from core.sources.postgres.wal_prefetch import remove_spool

    remove_spool(out / "pg_wal")
    assert not (out / "pg_wal" / ".axisor-prefetch").exists()
