"""A database-loss drill to a point in time: PITR from a physical base backup and WAL the
server archived itself, into a throwaway data directory started on a free port, checked by
the operator's SQL, then stopped and removed."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime

import psycopg

from wal_support import ServerRepo, enable_archiving, switch_and_wait


def _burst(c, name: str, n: int) -> None:
    with psycopg.connect(host=c.host, port=c.port, user="postgres", dbname="postgres", autocommit=True) as conn:
        for _ in range(n):
            conn.execute("INSERT INTO marks (burst) VALUES (%s)", (name,))


def test_drill_to_a_point_in_time(pg_cluster) -> None:
    c = pg_cluster()
    sr = ServerRepo.create()
    try:
        db = f'url = "{c.url()}"\nmode = "physical"\npg_bin_dir = "{c.bin}"'
        sr.write_config(db)
        # A job store of its own: never a daemon or job history of anything else on this machine.
        sr.config.write_text(sr.config.read_text() + f'[engine]\nstate_dir = "{sr.dir / "state"}"\n')
        sr.chown()
        assert sr.cli("init").code == 0
        enable_archiving(c, sr.archive_command())
        c.psql("CREATE TABLE marks (id serial PRIMARY KEY, burst text NOT NULL)")
        r = sr.cli("backup", "--json", timeout=180)
        assert r.code == 0, r.out + r.err
        _burst(c, "A", 30)
        time.sleep(0.3)
        target = datetime.fromisoformat(
            c.psql("SELECT clock_timestamp()::text").replace(" ", "T").replace("+00", "+00:00")
        )
        time.sleep(0.3)
        _burst(c, "B", 20)
        switch_and_wait(c)
        scratch = sr.dir / "scratch"
        scratch.mkdir()
        text = sr.config.read_text() + (
            f'[drills]\nwork_dir = "{scratch}"\n'
            '[[drills.checks]]\nname = "only the first burst"\n'
            'sql = "SELECT string_agg(DISTINCT burst, \',\') FROM marks"\nexpect = "A"\n'
            '[[drills.checks]]\nname = "thirty marks"\nsql = "SELECT count(*) FROM marks"\nexpect = 30\n'
        )
        sr.config.write_text(text)
        sr.chown()
        r = sr.cli("drill", "--to-time", target.isoformat(), "--json", timeout=300)
        assert r.code == 0, r.out + r.err
        rep = r.json()
        assert rep["passed"] and rep["to_time"] == target.isoformat()
        names = {x["name"]: x for x in rep["checks"]}
        assert names["recovered server promoted"]["status"] == "pass"
        assert "recovery stopping before commit" in names["recovered server promoted"]["detail"]
        assert names["only the first burst"]["status"] == "pass"
        assert names["thirty marks"]["actual"] == 30
        assert [x["source"] for x in rep["rpo"]] == ["database"]
        assert [s["name"] for s in rep["steps"]][:3] == [
            "open location",
            "point-in-time recovery",
            "connect to the recovered server",
        ]
        assert any(x.startswith("cluster ") for x in rep["cleanup"])
        assert list(scratch.iterdir()) == []
        port = int(rep["restored"][0]["target"].rsplit("port ", 1)[1].rstrip(")"))
        with socket.socket() as s:  # the recovered server's port is free again
            s.bind(("127.0.0.1", port))
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            assert str(scratch) not in cmd, cmd
        # From the primary only: WAL is fetched through the primary's wal-fetch.
        assert c.psql("SELECT count(*) FROM marks") == "50"  # the live server untouched
    finally:
        sr.remove()
