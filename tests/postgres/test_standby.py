"""Physical backups from a streaming standby (``backup_standby = true``, issue 14): files read
from the standby, pg_backup_start/stop on the primary, WAL archived by the primary; restored to a
point in time, the data written on the primary before the backup is there, exact."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from core.config import ConfigError, parse_config
from wal_support import ServerRepo, enable_archiving, switch_and_wait

DIGEST = "SELECT count(*) || ':' || md5(string_agg(id::text || v, ',' ORDER BY id)) FROM t"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _config(c, s, **extra: str) -> str:
    lines = [f'url = "{s.url()}"', 'mode = "physical"', f'pg_bin_dir = "{c.bin}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def env(pg_cluster, pg_standby):
    c = pg_cluster()
    sr = ServerRepo.create()
    sr.write_config(f'url = "{c.url()}"\nmode = "physical"')
    assert sr.cli("init").code == 0
    enable_archiving(c, sr.archive_command())
    c.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g")
    c.psql("CREATE TABLE marks (id serial PRIMARY KEY, burst text NOT NULL)")
    s = pg_standby(c)
    assert s.psql("SELECT pg_is_in_recovery()") == "t"
    yield c, s, sr
    sr.remove()


def test_a_standby_is_refused_without_backup_standby_naming_the_option(env) -> None:
    c, s, sr = env
    sr.write_config(_config(c, s))
    r = sr.cli("backup", "--json", timeout=120)
    assert r.code == 14, (r.out, r.err)
    assert "is a standby" in r.err and "backup_standby = true" in r.err and "primary_host" in r.err, r.err
    # The primary's address given, but the server configured is the primary itself: refused too.
    sr.write_config(_config(c, c, backup_standby="true", primary_port=str(c.port)))
    r = sr.cli("backup", "--json", timeout=120)
    assert r.code == 14 and "is not a standby" in r.err, (r.out, r.err)


def test_replay_that_does_not_reach_the_start_is_a_bounded_wait_with_a_clear_message(env) -> None:
    c, s, sr = env
    sr.write_config(
        _config(
            c,
            s,
            backup_standby="true",
            primary_host='"127.0.0.1"',
            primary_port=str(c.port),
            standby_timeout_seconds="2",
        )
    )
    snaps = sorted((sr.repo / "snapshots").iterdir())
    s.psql("SELECT pg_wal_replay_pause()")
    try:
        t0 = time.monotonic()
        r = sr.cli("backup", "--json", timeout=120)
        assert r.code == 14, (r.out, r.err)
        assert "has not replayed past the backup's start" in r.err and "standby_timeout_seconds" in r.err, r.err
        assert "pg_is_wal_replay_paused" in r.err and time.monotonic() - t0 < 30
    finally:
        s.psql("SELECT pg_wal_replay_resume()")
    assert sorted((sr.repo / "snapshots").iterdir()) == snaps  # nothing half-written


def test_backup_from_the_standby_restores_the_primarys_data_exactly(env) -> None:
    c, s, sr = env
    c.psql("INSERT INTO marks (burst) SELECT 'A' FROM generate_series(1, 40)")
    c.psql("UPDATE t SET v = 'changed' WHERE id % 1000 = 0")
    want = c.psql(DIGEST)
    sr.write_config(_config(c, s, backup_standby="true", primary_port=str(c.port)))
    # Writes go on while the standby's files are copied: replay changes pages under the copy.
    stop = threading.Event()

    def churn() -> None:
        with psycopg.connect(c.url(), autocommit=True) as conn:
            i = 0
            while not stop.is_set():
                i += 1
                conn.execute("INSERT INTO churn SELECT %s * 100 + g, md5(g::text) FROM generate_series(1, 100) g", (i,))
                conn.execute("UPDATE churn SET v = md5(v) WHERE id BETWEEN %s AND %s", (i * 50, i * 50 + 300))
                time.sleep(0.02)

    c.psql("CREATE TABLE IF NOT EXISTS churn (id int PRIMARY KEY, v text)")
    writer = threading.Thread(target=churn)
    writer.start()
    try:
        r = sr.cli("backup", "--json", timeout=180)
    finally:
        stop.set()
        writer.join(60)
    assert r.code == 0, (r.out, r.err)
    churned = c.psql(DIGEST.replace("FROM t", "FROM churn"))
    assert int(churned.split(":")[0]) > 100  # it did write during the backup
    [snap] = r.json()["snapshots"]
    md = snap["metadata"]
    assert md["backup_from"] == "standby" and f":{s.port}" in md["standby"] and f":{c.port}" in md["primary"]
    assert md["system_identifier"] == c.psql("SELECT system_identifier FROM pg_control_system()")
    assert md["standby_files"] > 500 and md["pg_basebackup_version"] is None
    lsn = lambda x: (lambda a, b: (int(a, 16) << 32) | int(b, 16))(*x.split("/"))  # noqa: E731
    assert lsn(md["start_lsn"]) <= lsn(md["stop_lsn"])
    assert md["start_wal_file"] == c.psql(f"SELECT pg_walfile_name('{md['start_lsn']}')")

    # The archiving that matters is the primary's: `database archiving` checks it there.
    r = sr.cli("database", "archiving", "--json", as_server=False)
    assert r.json()["server"].endswith(f":{c.port}"), (r.out, r.err)

    # After the backup: the target between two bursts written on the primary.
    time.sleep(0.2)
    target = c.psql("SELECT clock_timestamp()::text")
    time.sleep(0.2)
    c.psql("INSERT INTO marks (burst) SELECT 'B' FROM generate_series(1, 7)")
    c.psql("UPDATE t SET v = 'after' WHERE id < 10")
    switch_and_wait(c)

    port = _free_port()
    out = sr.dir / "pitr"
    when = datetime.fromisoformat(target.replace(" ", "T").replace("+00", "+00:00")).isoformat()
    r = sr.cli(
        "restore",
        "--source",
        "database",
        "--to-time",
        when,
        "--target-dir",
        str(out),
        "--start",
        "--port",
        str(port),
        "--json",
        timeout=300,
    )
    try:
        assert r.code == 0, (r.out, r.err)
        rep = r.json()
        assert rep["base_snapshot"] == snap["id"] and rep["started"] and rep["promoted"]
        # The label in the copy is the primary's; the standby's own files stayed out.
        assert "BACKUP FROM: primary" in (out / "backup_label.old").read_text()
        assert not (out / "standby.signal").exists()
        with psycopg.connect(host=str(out), port=port, user="postgres", dbname="postgres") as conn:
            assert conn.execute(DIGEST).fetchone()[0] == want
            assert conn.execute(DIGEST.replace("FROM t", "FROM churn")).fetchone()[0] == churned
            counts = dict(conn.execute("SELECT burst, count(*) FROM marks GROUP BY burst").fetchall())
            assert counts == {"A": 40}, counts
            assert not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    finally:
        subprocess.run(
            _as_postgres([str(c.bin / "pg_ctl"), "-D", str(out), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )


def test_config_rules_for_backup_standby(tmp_path: Path) -> None:
    def problems(db: dict) -> dict[str, str]:
        with pytest.raises(ConfigError) as info:
            parse_config({"storage": {"local_path": "/x"}, "database": db}, base_dir=tmp_path)
        return {p.key: p.message for p in info.value.problems}

    assert (
        "required with backup_standby"
        in problems({"mode": "physical", "backup_standby": True})["database.primary_host"]
    )
    assert 'mode = "physical"' in problems({"backup_standby": True, "primary_port": 5432})["database.backup_standby"]
    assert (
        "only applies with backup_standby"
        in problems({"mode": "physical", "primary_host": "db1"})["database.primary_host"]
    )
    cfg = parse_config(
        {
            "storage": {"local_path": "/x"},
            "database": {"mode": "physical", "backup_standby": True, "primary_host": "db1", "primary_port": 5433},
        },
        base_dir=tmp_path,
    )
    assert (
        cfg.database.backup_standby,
        cfg.database.primary_host,
        cfg.database.primary_port,
        cfg.database.standby_timeout_seconds,
    ) == (True, "db1", 5433, 60)


def test_database_check_checks_the_standby_and_the_archiving_primary(env) -> None:
    """`database check` with backup_standby: the pair is checked, and the WAL switch is forced on
    the primary (it archives), whose segment must arrive (tests/postgres/test_dbcheck.py: the rest)."""
    c, s, sr = env
    sr.write_config(_config(c, s, backup_standby="true", primary_host='"127.0.0.1"', primary_port=str(c.port)))
    r = sr.cli("database", "check", timeout=120)
    assert r.code == 0, (r.out, r.err)
    lines = r.out.splitlines()
    assert any(ln.strip().startswith("ok      standby and primary:") and "is a standby" in ln for ln in lines), r.out
    assert any(ln.strip().startswith("ok      WAL archived:") for ln in lines), r.out
    assert lines[-1] == "ok: all 7 checks passed", r.out
