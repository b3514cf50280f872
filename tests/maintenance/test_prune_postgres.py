"""Prune against a real PostgreSQL server archiving through wal-push: two physical base
backups, the older one forgotten, WAL before the kept one's start removed, and
point-in-time recovery from what is left still stops exactly at a target after it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess

import psycopg

from core.config import load_config
from core.maintenance.prune import _segno
from core.service import BackupService
from wal_support import PASSPHRASE, ServerRepo, enable_archiving, switch_and_wait

from maintenance.prune_support import age_snapshots


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prune_keeps_what_pitr_from_the_kept_base_backup_needs(pg_cluster):
    c = pg_cluster()
    sr = ServerRepo.create()
    try:
        sr.write_config(
            f'url = "{c.url()}"\nmode = "physical"\npg_bin_dir = "{c.bin}"\n'
            "retention_days = 1\npitr_window_days = 0\n[retention]\nmin_keep = 1"
        )
        assert sr.cli("init").code == 0
        enable_archiving(c, sr.archive_command())
        c.psql("CREATE TABLE marks (id serial PRIMARY KEY, phase text NOT NULL)")
        c.psql("INSERT INTO marks (phase) VALUES ('before-first')")
        first = sr.cli("backup", "--json", timeout=180)
        assert first.code == 0, first.out + first.err
        for _ in range(3):
            c.psql("INSERT INTO marks (phase) VALUES ('between')")
            switch_and_wait(c)
        second = sr.cli("backup", "--json", timeout=180)
        assert second.code == 0, second.out + second.err
        base1, base2 = first.json()["snapshots"][0], second.json()["snapshots"][0]
        c.psql("INSERT INTO marks (phase) VALUES ('after-second')")
        target = c.psql("SELECT clock_timestamp()::text").replace(" ", "T").replace("+00", "+00:00")
        c.psql("INSERT INTO marks (phase) VALUES ('after-target')")
        switch_and_wait(c)
        archived = sorted(p.name for p in (sr.repo / "wal").iterdir())

        async def age() -> dict:
            svc = BackupService(load_config(sr.config), lambda confirm: PASSPHRASE, workers=2)
            try:
                return await age_snapshots(svc, {base1["id"]: 10})
            finally:
                await svc.close()

        old = asyncio.run(age())[base1["id"]]
        sr.chown()  # the aged manifest was written by this (root) test process

        r = sr.cli("--json", "prune", timeout=180)
        assert r.code == 0, r.out + r.err
        [loc] = r.json()["locations"]
        fate = {s["id"]: s for s in loc["snapshots"]}
        assert fate[old]["keep"] is False and fate[base2["id"]]["keep"] is True
        start = base2["metadata"]["start_wal_file"]
        assert loc["wal"]["keep_from"] == start
        size = base2["metadata"]["wal_segment_size"]
        removed = loc["wal"]["removed"]
        assert removed, archived  # the first base backup's WAL and the segments after it
        assert all(_segno(n[:24], size)[1] < _segno(start, size)[1] for n in removed)
        left = sorted(p.name for p in (sr.repo / "wal").iterdir())
        assert left == sorted(set(archived) - set(removed))
        assert all(n.endswith(".history") or _segno(n[:24], size)[1] >= _segno(start, size)[1] for n in left)
        v = sr.cli("--json", "verify", "--full", timeout=180)
        assert v.code == 0 and v.json()["ok"], v.out + v.err

        # Recovery from the kept base backup with the kept WAL reaches the target exactly.
        port = _free_port()
        out = sr.dir / "pitr"
        rr = sr.cli(
            "restore",
            "--source",
            "database",
            "--to-time",
            target,
            "--target-dir",
            str(out),
            "--start",
            "--port",
            str(port),
            "--json",
            timeout=300,
        )
        try:
            assert rr.code == 0, rr.out + rr.err
            assert rr.json()["base_snapshot"] == base2["id"]
            with psycopg.connect(host=str(out), port=port, user="postgres", dbname="postgres") as conn:
                phases = [p for (p,) in conn.execute("SELECT phase FROM marks ORDER BY id")]
            assert phases == ["before-first", "between", "between", "between", "after-second"]
        finally:
            argv = [str(c.bin / "pg_ctl"), "-D", str(out), "-m", "immediate", "-w", "stop"]
            if os.geteuid() == 0:
                argv = ["runuser", "-u", "postgres", "--", *argv]
            subprocess.run(argv, capture_output=True, timeout=60)
    finally:
        sr.remove()
