"""PITR replay against local replay (issue 19): the recovery of one base backup to one target
time, with the WAL fetched by `axisor-backup wal-fetch` from the repository against the same
WAL copied to a local folder beforehand (`restore_command = 'cp /folder/%f %p'`).

    .venv/bin/python bench/pitr_replay.py [--runs 2] [--wal-mb 1200] [--scale 20] [--data DIR] [--work DIR]

1. A PostgreSQL cluster under ``--data`` (default /work/bench-data/pitr-replay): ``pgbench -i
   -s SCALE``, generated once and reused while the marker beside it matches.
2. Archiving into a fresh repository the server's OS user owns: ``archive_command =
   '<wrapper> --config CFG wal-push %p && cp %p LOCAL/%f'`` (the same files into a local
   folder, after our push), ``synchronous_commit = off`` and ``checkpoint_timeout = 60s``,
   a physical base backup (``backup --source database``), then pgbench (4 clients,
   prepared) writing until ``--wal-mb`` MB of WAL were written after it, the target time, a
   little more WAL after it, the last segment archived.
3. ``--runs`` rounds, the order alternating: each recovers the same base backup to the same
   target, in a fresh folder:
   - **local**: ``restore --to-time T --target-dir DIR`` without ``--start`` (our extraction
     and recovery settings), then ``restore_command = 'cp LOCAL/%f %p'`` appended (later
     lines win), then the server started as the restore would start it;
   - **ours**: the same, with our ``wal-fetch`` as restore_command (the quick path and its
     follower);
   - **ours, whole command**: ``restore --to-time T --target-dir DIR --start --port P``, its
     wall and the phases of its report.
   The replay phase of the first two is timed identically: from ``pg_ctl start`` until
   ``pg_controldata`` says "in production" (polled every 0.05 s), and, from the server's own
   log, from "redo starts at" to "database system is ready to accept connections" after the
   promotion. Each restored server's pgbench_history row count is checked against the rows
   committed before T.

Results: a Markdown table on stdout, raw JSON in bench/results/pitr-replay-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_bench import (  # noqa: E402
    PASSPHRASE,
    ROOT,
    Cluster,
    as_server,
    chown_server,
    free_port,
    git_rev,
    pg_bin,
    prepare,
    server_python,
)
from table_at_time import server_cli  # noqa: E402

SEG = 16 * 1024 * 1024
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


def _log_time(log: str, needle: str, last: bool = False) -> float | None:
    lines = [ln for ln in log.splitlines() if needle in ln]
    if not lines:
        return None
    m = _STAMP.match(lines[-1] if last else lines[0])
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() if m else None


class Setup:
    def __init__(self, c: Cluster, work: Path) -> None:
        self.c = c
        self.d = work / "pitr-replay"
        self.local = self.d / "wal-local"
        self.wrapper = self.d / "axisor-backup"
        self.cfg = self.d / "config.toml"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return server_cli(self.d, self.cfg, self.wrapper)(*args)

    def create(self) -> None:
        shutil.rmtree(self.d, ignore_errors=True)
        self.local.mkdir(parents=True)
        self.d.chmod(0o755)
        self.wrapper.write_text(
            f"#!/bin/sh\nPYTHONPATH='{ROOT}:{sysconfig.get_paths()['purelib']}' "
            f'exec {server_python()} -m app.cli "$@"\n'
        )
        self.wrapper.chmod(0o755)
        pf = self.d / "passphrase"
        pf.write_text(PASSPHRASE + "\n")
        pf.chmod(0o600)
        self.cfg.write_text(
            f'[database]\nenabled = true\nurl = "{self.c.url()}"\nmode = "physical"\npg_bin_dir = "{self.c.bin}"\n'
            f'[storage]\nlocal_path = "{self.d / "repo"}"\npassphrase_file = "{pf}"\n'
        )
        chown_server(self.d)
        if (r := self.cli("init")).returncode:
            raise SystemExit(f"init failed: {r.stderr}")

    def archive_and_load(self, wal_mb: int) -> dict:
        c = self.c
        push = f"{self.wrapper} --config {self.cfg} wal-push %p && cp %p {self.local}/%f"
        c.psql(f"ALTER SYSTEM SET archive_command = '{push}'")
        c.psql("ALTER SYSTEM SET archive_mode = 'on'")
        # Commits not waiting for the WAL flush: pgbench writes WAL ~10x faster on this shared
        # host (~1.5 MB/s with 2 clients waiting on fsync); the WAL itself is the same kind.
        c.psql("ALTER SYSTEM SET synchronous_commit = 'off'")
        c.psql("ALTER SYSTEM SET checkpoint_timeout = '60s'")  # full-page images, as a busy server writes them
        c.restart()
        out: dict = {}
        c.psql("SELECT pg_switch_wal()")
        t = time.monotonic()
        r = self.cli("--json", "backup", "--source", "database")
        if r.returncode:
            raise SystemExit(f"physical backup failed: {r.stderr[-3000:]}")
        out["base_backup_s"] = round(time.monotonic() - t, 2)
        out["base_backup_bytes"] = json.loads(r.stdout)["snapshots"][0]["summary"]["total_bytes"]
        start = c.psql("SELECT pg_current_wal_lsn()")
        t = time.monotonic()
        while int(c.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start}')::bigint")) < wal_mb * 1e6:
            c.pgbench("-n", "-c", "4", "-M", "prepared", "-T", "10")
        out["load_s"] = round(time.monotonic() - t, 1)
        out["wal_bytes"] = int(c.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start}')::bigint"))
        time.sleep(0.3)
        out["target"] = c.psql("SELECT clock_timestamp()")
        out["rows_at_target"] = int(c.psql("SELECT count(*) FROM pgbench_history"))
        time.sleep(0.3)
        c.pgbench("-n", "-c", "2", "-t", "200")
        c.archive_current(3600)
        out["archive_s"] = round(time.monotonic() - t, 1)
        out["segments"] = len([p for p in self.local.iterdir() if len(p.name) == 24])
        chown_server(self.local)
        return out

    def reset_archiving(self) -> None:
        for k in ("archive_command", "archive_mode", "synchronous_commit", "checkpoint_timeout"):
            self.c.psql(f"ALTER SYSTEM RESET {k}")
        self.c.restart()


def _target_iso(target: str) -> str:
    return datetime.fromisoformat(target.replace(" ", "T") + (":00" if target[-3] in "+-" else "")).isoformat()


def _rows(c: Cluster, port: int) -> int:
    p = subprocess.run(
        [str(c.bin / "psql"), "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "bench",
         "-c", "SELECT count(*) FROM pgbench_history"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return int(p.stdout.strip() or -1)


def _stop(c: Cluster, dest: Path) -> None:
    subprocess.run(
        as_server([str(c.bin / "pg_ctl"), "-D", str(dest), "-m", "immediate", "-w", "stop"]), capture_output=True
    )


def replay(s: Setup, target: str, how: str) -> dict:
    """Extract with our restore (no --start), point restore_command at ``how``'s source,
    start the server and time until it is in production."""
    c = s.c
    dest = s.d / f"restored-{how}"
    if dest.exists():
        _stop(c, dest)
        shutil.rmtree(dest)
    port = free_port()
    t = time.monotonic()
    r = s.cli("--json", "restore", "--source", "database", "--to-time", target, "--target-dir", str(dest),
              "--port", str(port))  # fmt: skip
    if r.returncode:
        raise SystemExit(f"extract failed ({r.returncode}): {r.stderr[-3000:]}")
    extract_s = round(time.monotonic() - t, 2)
    if how == "local":
        with open(dest / "postgresql.auto.conf", "a") as f:
            f.write(f"restore_command = 'cp {s.local}/%f %p'\n")
    log = dest / "replay.log"
    chown_server(dest)
    load = os.getloadavg()[0]
    t = time.monotonic()
    subprocess.run(
        as_server([str(c.bin / "pg_ctl"), "-D", str(dest), "-l", str(log), "-w", "-t", "3600", "start"]),
        capture_output=True, check=True, stdin=subprocess.DEVNULL, timeout=3700,
    )  # fmt: skip
    while True:
        p = subprocess.run(as_server([str(c.bin / "pg_controldata"), "-D", str(dest)]), capture_output=True, text=True)
        if "in production" in p.stdout:
            break
        if time.monotonic() - t > 3600:
            raise SystemExit(f"{how}: not in production after an hour")
        time.sleep(0.05)
    wall = round(time.monotonic() - t, 2)
    text = log.read_text(errors="replace")
    redo, ready = _log_time(text, "redo starts at"), _log_time(text, "ready to accept connections", last=True)
    out = {
        "how": how,
        "extract_s": extract_s,
        "replay_s": wall,
        "redo_to_ready_s": round(ready - redo, 2) if redo and ready else None,
        "load": load,
        "rows": _rows(c, port),
        "fetches": text.count("restored log file"),
    }
    _stop(c, dest)
    shutil.rmtree(dest)
    return out


def whole(s: Setup, target: str) -> dict:
    c = s.c
    dest = s.d / "restored-whole"
    if dest.exists():
        _stop(c, dest)
        shutil.rmtree(dest)
    port = free_port()
    load = os.getloadavg()[0]
    t = time.monotonic()
    r = s.cli("--json", "restore", "--source", "database", "--to-time", target, "--target-dir", str(dest),
              "--start", "--port", str(port))  # fmt: skip
    wall = round(time.monotonic() - t, 2)
    if r.returncode:
        raise SystemExit(f"restore --start failed ({r.returncode}): {r.stderr[-3000:]}")
    out = {"how": "ours-whole", "wall_s": wall, "seconds": json.loads(r.stdout).get("seconds"), "load": load}
    out["rows"] = _rows(c, port)
    _stop(c, dest)
    shutil.rmtree(dest)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/bench-data/pitr-replay-pg"))
    ap.add_argument("--work", type=Path, default=Path("/work/bench-data/pitr-replay-work"))
    ap.add_argument("--scale", type=int, default=20)
    ap.add_argument("--wal-mb", type=int, default=1200)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    c, info = prepare(args.data, args.scale, pg_bin())
    args.work.mkdir(parents=True, exist_ok=True)
    chown_server(args.work)
    s = Setup(c, args.work)
    s.create()
    load_before = os.getloadavg()
    try:
        setup = s.archive_and_load(args.wal_mb)
    finally:
        s.reset_archiving()
    c.stop()  # the source cluster idle is not enough: it must not compete for the CPUs
    target = _target_iso(setup["target"])
    rounds = []
    for i in range(args.runs):
        order = ["local", "ours"] if i % 2 == 0 else ["ours", "local"]
        rounds.append({how: replay(s, target, how) for how in order} | {"whole": whole(s, target)})
        print(json.dumps(rounds[-1]), file=sys.stderr)
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rev": git_rev(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "data": info,
        "setup": setup,
        "rounds": rounds,
    }
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = ROOT / "bench" / "results" / f"pitr-replay-{stamp}.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")

    def med(how: str, key: str) -> float:
        return statistics.median(r[how][key] for r in rounds)

    print(f"WAL after the base backup: {setup['wal_bytes'] / 1e6:.0f} MB, {setup['segments']} segments archived; "
          f"rows at T {setup['rows_at_target']}")  # fmt: skip
    print("| round | local replay s | ours replay s | ratio | local redo s | ours redo s | ours whole s | load |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rounds, 1):
        lo, ou, wh = r["local"], r["ours"], r["whole"]
        print(f"| {i} | {lo['replay_s']} | {ou['replay_s']} | {ou['replay_s'] / lo['replay_s']:.2f} | "
              f"{lo['redo_to_ready_s']} | {ou['redo_to_ready_s']} | {wh['wall_s']} | {lo['load']:.1f}/{ou['load']:.1f} |")  # fmt: skip
    print(f"median ratio {med('ours', 'replay_s') / med('local', 'replay_s'):.2f}; {dest}")
    ok = all(r[h]["rows"] == setup["rows_at_target"] for r in rounds for h in ("local", "ours", "whole"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
