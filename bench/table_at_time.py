"""A table as of a time (issue 21): the time of `restore --to-time T --table ... --target-db
... --as ...` for a 1 GB table of a 5 GB cluster, split into its phases.

    .venv/bin/python bench/table_at_time.py [--table-gb 1] [--scale 270] [--data DIR] [--work DIR]

1. A cluster under ``--data`` (default /work/bench-data/pg-tat): ``pgbench -i -s SCALE``
   (scale 270 ~ 4 GB) plus a table ``orders`` of ``--table-gb`` GB on disk (~480-byte rows,
   a primary key), generated once and reused while the marker beside it matches.
2. Archiving into a repository the server's OS user owns (wal-push as archive_command), a
   physical base backup (timed), pgbench writes for a few seconds, the target time, an
   ``UPDATE orders`` after it (the damage), the last segment archived.
3. ``restore --to-time T --table public.orders --target-db bench --as public.orders_then``
   as the server's OS user, timed; the report's phases (recover: base backup extracted and
   WAL replayed; copy: pg_dump | pg_restore of the renamed table with its index; validate:
   rows and row checksum on both sides; cleanup: the throwaway cluster removed).

Results: a Markdown table on stdout, raw JSON in bench/results/table-at-time-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_bench import PASSPHRASE, ROOT, Cluster, as_server, chown_server, git_rev, pg_bin, prepare, server_python  # noqa: E402


def orders_sql(gb: float) -> str:
    rows = int(gb * 1e9 / 8192 * 17)  # ~17 rows of ~480 bytes per 8 KiB page
    return f"""CREATE TABLE orders (id bigint PRIMARY KEY, customer int, ref text, payload text, amount float8,
  at timestamptz);
INSERT INTO orders SELECT g, (g * 7919) % 100000, md5(g::text),
  md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) ||
  repeat(md5((g % 1000)::text), 8), random(), timestamptz '2026-01-01' + g * interval '1 second'
FROM generate_series(1::bigint, {rows}) g;
VACUUM ANALYZE orders;"""


def with_orders(c: Cluster, gb: float) -> dict:
    marker = c.root.parent / f"{c.root.name}.orders.json"
    if marker.exists() and json.loads(marker.read_text()).get("gb") == gb:
        return json.loads(marker.read_text())
    c.psql("DROP TABLE IF EXISTS orders")
    t = time.monotonic()
    for stmt in orders_sql(gb).split(";\n"):
        if stmt.strip():
            c.psql(stmt)
    info = {
        "gb": gb,
        "generated_seconds": round(time.monotonic() - t, 1),
        "table_bytes": int(c.psql("SELECT pg_table_size('orders')")),
        "rows": int(c.psql("SELECT count(*) FROM orders")),
    }
    marker.write_text(json.dumps(info, indent=2) + "\n")
    return info


def server_cli(d: Path, cfg: Path, wrapper: Path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        env["AXISOR_BACKUP_PROGRAM"] = str(wrapper)
        return subprocess.run(
            as_server([str(wrapper), "--config", str(cfg), *args]),
            capture_output=True, text=True, env=env, cwd="/tmp", timeout=7200, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    return cli


def run(c: Cluster, work: Path) -> dict:
    d = work / "tat"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    d.chmod(0o755)
    wrapper = d / "axisor-backup"
    wrapper.write_text(
        f"#!/bin/sh\nPYTHONPATH='{ROOT}:{sysconfig.get_paths()['purelib']}' exec {server_python()} -m app.cli \"$@\"\n"
    )
    wrapper.chmod(0o755)
    pf = d / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    pf.chmod(0o600)
    cfg = d / "config.toml"
    cfg.write_text(
        f'[database]\nenabled = true\nurl = "{c.url()}"\nmode = "physical"\npg_bin_dir = "{c.bin}"\n'
        f'[storage]\nlocal_path = "{d / "repo"}"\npassphrase_file = "{pf}"\n[drills]\nwork_dir = "{d}"\n'
    )
    chown_server(d)
    cli = server_cli(d, cfg, wrapper)
    if cli("init").returncode:
        raise SystemExit("init failed")
    c.psql(f"ALTER SYSTEM SET archive_command = '{wrapper} --config {cfg} wal-push %p'")
    c.psql("ALTER SYSTEM SET archive_mode = 'on'")
    c.restart()
    out: dict = {}
    try:
        t = time.monotonic()
        r = cli("--json", "backup", "--source", "database")
        if r.returncode:
            raise SystemExit(f"base backup failed: {r.stderr[-2000:]}")
        out["base_backup_s"] = round(time.monotonic() - t, 2)
        out["base_backup_bytes"] = json.loads(r.stdout)["snapshots"][0]["summary"]["total_bytes"]
        c.pgbench("-n", "-c", "2", "-T", "4")
        time.sleep(0.5)
        target = c.psql("SELECT clock_timestamp()")
        out["expected"] = c.psql("SELECT count(*) || ':' || sum(amount::numeric)::text FROM orders")
        time.sleep(0.5)
        c.psql("UPDATE orders SET amount = 0 WHERE id % 10 = 0")  # the damage after T
        c.archive_current(1800)
        at = datetime.fromisoformat(target.replace(" ", "T") + (":00" if target[-3] in "+-" else "")).isoformat()
        c.psql("DROP TABLE IF EXISTS orders_then")
        t = time.monotonic()
        r = cli("--json", "restore", "--to-time", at, "--table", "public.orders", "--target-db", "bench",
                "--as", "public.orders_then")  # fmt: skip
        out["wall_s"] = round(time.monotonic() - t, 2)
        if r.returncode:
            raise SystemExit(f"table-at-time restore failed ({r.returncode}): {r.stderr[-3000:]}")
        out["report"] = json.loads(r.stdout)
        out["restored"] = c.psql("SELECT count(*) || ':' || sum(amount::numeric)::text FROM orders_then")
        out["target"] = at
    finally:
        c.psql("DROP TABLE IF EXISTS orders_then")
        c.psql("ALTER SYSTEM RESET archive_command")
        c.psql("ALTER SYSTEM RESET archive_mode")
        c.restart()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/bench-data/pg-tat"))
    ap.add_argument("--work", type=Path, default=Path("/work/bench-data/pg-tat-work"))
    ap.add_argument("--scale", type=int, default=270)
    ap.add_argument("--table-gb", type=float, default=1.0)
    args = ap.parse_args()
    c, info = prepare(args.data, args.scale, pg_bin())
    info["orders"] = with_orders(c, args.table_gb)
    info["cluster_bytes"] = int(c.psql("SELECT sum(pg_database_size(datname)) FROM pg_database"))
    args.work.mkdir(parents=True, exist_ok=True)
    chown_server(args.work)
    load = os.getloadavg()
    out = run(c, args.work)
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rev": git_rev(),
        "load_before": load,
        "load_after": os.getloadavg(),
        "data": info,
        **out,
    }
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = ROOT / "bench" / "results" / f"table-at-time-{stamp}.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    s = out["report"]["seconds"]
    print(f"cluster {info['cluster_bytes'] / 1e9:.2f} GB, orders {info['orders']['table_bytes'] / 1e9:.2f} GB "
          f"({info['orders']['rows']} rows); base backup {out['base_backup_s']} s")  # fmt: skip
    print("| phase | seconds |\n|---|---|")
    for k in ("recover", "copy", "validate", "cleanup", "total"):
        print(f"| {k} | {s.get(k)} |")
    print(f"wall {out['wall_s']} s; rows at T {out['expected']}, in the copy {out['restored']}; {dest}")
    return 0 if out["expected"] == out["restored"] else 1


if __name__ == "__main__":
    sys.exit(main())
