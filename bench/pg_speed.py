"""PostgreSQL logical backup speed on two shapes (issue 14): axisor-backup against ``pg_dump -Fc``.

    .venv/bin/python bench/pg_speed.py [--shapes many,big] [--runs 3] [--big-gb 5]
    .venv/bin/python bench/pg_speed.py --shapes wide --wide-gb 5 --dump-jobs 1,2 --runs 2

Shapes (databases in one cluster under ``--data``, default /work/bench-data/pg-speed, each
generated once and reused while the marker ``pg-speed.bench.json`` beside it matches):

- ``many``: 1,000 small tables in 10 schemas (3-5 rows each), each with a primary key, a
  unique index, a check constraint and a secondary index; every tenth table references the
  one before it (a foreign key).
- ``big``: one table of ``--big-gb`` GB on disk (pg_relation_size), ~480-byte rows: a bigint,
  an int, an md5, a 384-character text of random md5s and a repeated md5, a double and a
  timestamp (generate_series; WAL skipped: created and filled in one transaction under
  wal_level = minimal).

- ``wide``: ``--wide-gb`` GB in 4 tables of similar size (``w0`` .. ``w3``, rows as ``big``'s):
  what a parallel logical dump (issue 19, ``[database] dump_jobs``) can spread over its parts.

``--dump-jobs 1,2`` (issue 19): the axisor backup once per N (``axisor`` is N = 1,
``axisor_j2`` N = 2, ...; config ``dump_jobs = N``), beside ``pg_dump -Fc`` and, for
reference, ``pg_dump -Fd -j 2 -Z0 -f DIR`` (``pg_dump_dir_j2``: directory format to local
disk, removed after each round); the summary adds the ratio of the single stream's wall to
each N's (``speedup_jN``).

Per shape, ``--runs`` rounds, the order alternating (ABAB..., then BABA...):
``pg_dump -Fc -d DB > /dev/null`` (pg_dump's default compression: the issue's reference),
``pg_dump -Fc -Z0 -d DB > /dev/null`` (the uncompressed dump our backup reads; a floor), and
``axisor-backup --json backup --source database`` (logical mode, row checksums on, the
default) into a fresh local repository under ``--work``. With ``--daemon`` the same command
through a running daemon, and the daemon's job alone (its "job finished" record's seconds:
a scheduled backup's time, no client process). Wall (monotonic clock around the
spawn), client CPU and peak RSS (GNU time) and the server CPU the run cost (the postmaster's
reaped children). Reported: medians and ranges, the ratio axisor / pg_dump -Fc per round and
of the medians (target <= 1.15x), the load average before and after each shape.

``--before DIR`` adds the same backup by another checkout's code (``PYTHONPATH=DIR``; the
others run this checkout's, also through PYTHONPATH), ``--daemon`` a backup through a
running daemon, ``--no-z0`` drops the -Z0 dump, ``--no-fc`` the -Fc one (a reference already taken).

Both checkouts' app/ and core/ are byte-compiled first (pg_bench.compile_code), as an installed
package is: with PYTHONDONTWRITEBYTECODE set in the shell, runs before 2026-12-04 21:00 UTC
compiled every changed module (or, for ``--before`` from ``git archive``, every module) in
every backup, 0.1-0.3 s of CPU an installed program never spends.

Raw JSON (rewritten after every round): bench/results/pg-speed-<UTC timestamp>.json. ``--drop`` removes the cluster at the
end (about 5.5 GB with ``big``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_bench import EXE, Cluster, axisor_env, chown_server, compile_code, git_rev, pg_bin, run_timed, with_server_cpu  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

MANY_SCHEMAS = 10
MANY_TABLES = 1000


def many_sql() -> str:
    out = ["BEGIN;"]
    per = MANY_TABLES // MANY_SCHEMAS
    for s in range(MANY_SCHEMAS):
        out.append(f"CREATE SCHEMA app{s};")
        for t in range(per):
            name = f"app{s}.t{t:03d}"
            fk = f", prev_id int REFERENCES app{s}.t{t - 1:03d}(id)" if t % 10 == 9 else ""
            out.append(
                f"CREATE TABLE {name} (id serial PRIMARY KEY, code text NOT NULL UNIQUE, "
                f"qty int CHECK (qty >= 0), price numeric(10,2), at timestamptz DEFAULT now(){fk});"
            )
            out.append(f"CREATE INDEX ON {name} (qty, at);")
            rows = 3 + (s * per + t) % 3
            out.append(
                f"INSERT INTO {name} (code, qty, price) SELECT 'c' || g || '-{s}-{t}', g * 7, g * 1.25 "
                f"FROM generate_series(1::bigint, {rows}) g;"
            )
    out.append("COMMIT;")
    return "\n".join(out)


def big_sql(gb: float) -> str:
    # ~17 rows of ~480 bytes per 8 KiB page: rows = pages * 17.
    rows = int(gb * 1e9 / 8192 * 17)
    return f"""BEGIN;
CREATE TABLE big (id bigint NOT NULL, k int, name text, payload text, score float8, at timestamptz);
INSERT INTO big SELECT g, (g * 7919) % 100000, md5(g::text),
  md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) ||
  repeat(md5((g % 1000)::text), 8), random(), timestamptz '2026-01-01' + g * interval '1 second'
FROM generate_series(1::bigint, {rows}) g;
COMMIT;"""


WIDE_TABLES = 4


def wide_sql(gb: float) -> str:
    """``big_sql``'s rows in WIDE_TABLES tables of gb / WIDE_TABLES each, one transaction each."""
    one = big_sql(gb / WIDE_TABLES)
    return "\n".join(
        one.replace("TABLE big ", f"TABLE w{i} ").replace("INTO big ", f"INTO w{i} ") for i in range(WIDE_TABLES)
    )


def prepare(root: Path, shapes: list[str], big_gb: float, bin_dir: Path, wide_gb: float = 5.0) -> tuple[Cluster, dict]:
    marker = root.parent / f"{root.name}.bench.json"
    info = json.loads(marker.read_text()) if marker.exists() else {}
    c = Cluster(root, bin_dir)
    if not c.data.exists():
        info = {}
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        chown_server(root)
        subprocess.run(
            ["runuser", "-u", "postgres", "--"] * (os.geteuid() == 0)
            + [
                str(bin_dir / "initdb"),
                "-D",
                str(c.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        # WAL skipped for tables created and filled in one transaction: generation writes 5 GB once.
        with open(c.data / "postgresql.conf", "a") as f:
            f.write("wal_level = minimal\nmax_wal_senders = 0\nmax_wal_size = 4GB\n")
    c.start()
    for shape in shapes:
        want = {"many": {"tables": MANY_TABLES}, "big": {"gb": big_gb}, "wide": {"gb": wide_gb, "tables": WIDE_TABLES}}[
            shape
        ]
        if info.get(shape, {}).get("params") == want:
            continue
        c.psql(f"DROP DATABASE IF EXISTS {shape}", db="postgres")
        c.psql(f"CREATE DATABASE {shape}", db="postgres")
        t = time.monotonic()
        text = {"many": many_sql, "big": lambda: big_sql(big_gb), "wide": lambda: wide_sql(wide_gb)}[shape]()
        p = subprocess.run(
            [
                str(bin_dir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(c.port),
                "-U",
                "postgres",
                "-d",
                shape,
            ],
            input=text,
            text=True,
            capture_output=True,
            timeout=7200,
        )
        if p.returncode:
            raise SystemExit(f"generating {shape} failed: {p.stderr[-2000:]}")
        c.psql("VACUUM ANALYZE", db=shape)
        info[shape] = {
            "params": want,
            "generated_seconds": round(time.monotonic() - t, 1),
            "database_size": int(c.psql(f"SELECT pg_database_size('{shape}')", db=shape)),
            "tables": int(
                c.psql(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                    "c.relnamespace WHERE relkind = 'r' AND nspname NOT IN "
                    "('pg_catalog', 'information_schema')",
                    db=shape,
                )
            ),
        }
        if shape == "big":
            info[shape]["table_bytes"] = int(c.psql("SELECT pg_relation_size('big')", db=shape))
            info[shape]["rows"] = int(c.psql("SELECT reltuples::bigint FROM pg_class WHERE relname = 'big'", db=shape))
        marker.write_text(json.dumps(info, indent=2) + "\n")
    return c, info


def axisor_run(c: Cluster, work: Path, db: str, n: int, src: Path | None = None, jobs: int = 1) -> dict:
    """One backup into a fresh repository; ``src``: another checkout's code (on PYTHONPATH, with
    this checkout's .venv), for a before/after comparison in the same run; ``jobs``: its
    ``[database] dump_jobs`` (1 writes no such line: the default)."""
    repo = work / f"repo-{db}-{n}"
    shutil.rmtree(repo, ignore_errors=True)
    cfg = work / f"axisor-{db}.toml"
    cfg.write_text(
        f'[database]\nenabled = true\nurl = "{c.url(db)}"\nmode = "logical"\npg_bin_dir = "{c.bin}"\n'
        + (f"dump_jobs = {jobs}\n" if jobs != 1 else "")
        + f'[storage]\nlocal_path = "{repo}"\n'
    )
    env = axisor_env()
    env["XDG_STATE_HOME"] = str(work / "state")
    env["XDG_CACHE_HOME"] = str(work / "cache")
    exe = [str(EXE)]
    # This checkout's code, or ``src``'s: the venv's console script alone would import the
    # checkout the venv was installed from (an editable install of the main checkout).
    env["PYTHONPATH"] = str(src or ROOT)
    subprocess.run([*exe, "--config", str(cfg), "init"], env=env, check=True, capture_output=True)
    subprocess.run(["sync"], check=False)
    res = with_server_cpu(
        c,
        lambda: run_timed(
            [*exe, "--config", str(cfg), "--json", "backup", "--source", "database"], env=env, stdout=subprocess.PIPE
        ),
    )
    res["repo_bytes"] = sum(f.stat().st_size for f in repo.rglob("*") if f.is_file())
    shutil.rmtree(repo, ignore_errors=True)
    return res


class Daemon:
    """``axisor-backup daemon`` serving one repository for a shape's rounds: a backup then runs
    in a process that has already imported everything (scheduled backups run there). Its
    repository is kept across rounds (a daemon holds it open), so rounds after the first
    store nothing new; the dump, checksums and counts are done every time."""

    def __init__(self, c: Cluster, work: Path, db: str) -> None:
        self.dir = work / f"daemon-{db}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.cfg = self.dir / "axisor.toml"
        self.cfg.write_text(
            f'[database]\nenabled = true\nurl = "{c.url(db)}"\nmode = "logical"\n'
            f'pg_bin_dir = "{c.bin}"\n[storage]\nlocal_path = "{self.dir / "repo"}"\n'
        )
        self.env = axisor_env()
        self.env["XDG_STATE_HOME"] = str(self.dir / "state")
        self.env["XDG_CACHE_HOME"] = str(self.dir / "cache")
        self.env["PYTHONPATH"] = str(ROOT)  # this checkout's code (see axisor_run)
        subprocess.run([str(EXE), "--config", str(self.cfg), "init"], env=self.env, check=True, capture_output=True)
        self.log = open(self.dir / "daemon.log", "wb")
        self.proc = subprocess.Popen(
            [str(EXE), "--config", str(self.cfg), "daemon"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not list((self.dir / "state").rglob("daemon.sock")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start: {(self.dir / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def run(self, c: Cluster) -> dict:
        subprocess.run(["sync"], check=False)
        res = with_server_cpu(
            c,
            lambda: run_timed(
                [str(EXE), "--config", str(self.cfg), "--json", "backup", "--source", "database"],
                env=self.env,
                stdout=subprocess.PIPE,
            ),
        )
        # The job's own time in the daemon (its "job finished" record): what a scheduled
        # backup takes, with no client process around it.
        self.log.flush()
        done = [
            r
            for r in map(json.loads, (self.dir / "daemon.log").read_text().splitlines())
            if r.get("message") == "job finished"
        ]
        res["job_s"] = done[-1]["seconds"] if done else None
        return res

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()


def pg_dump_run(c: Cluster, db: str, z0: bool) -> dict:
    argv = [str(c.bin / "pg_dump"), "-Fc", *(["-Z0"] if z0 else []), "-d", c.url(db)]
    return with_server_cpu(c, lambda: run_timed(argv))


def pg_dump_dir_run(c: Cluster, work: Path, db: str, jobs: int) -> dict:
    """``pg_dump -Fd -j JOBS -Z0 -f DIR``: the directory format pg_dump parallelises, written
    whole to local disk (what a backup would then have to store); the folder removed after."""
    out = work / f"dir-{db}"
    shutil.rmtree(out, ignore_errors=True)
    argv = [str(c.bin / "pg_dump"), "-Fd", "-j", str(jobs), "-Z0", "-f", str(out), "-d", c.url(db)]
    try:
        res = with_server_cpu(c, lambda: run_timed(argv))
        res["dir_bytes"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return res


TOOLS = ("pg_dump", "pg_dump_z0", "axisor")


def bench_shape(
    c: Cluster,
    work: Path,
    db: str,
    runs: int,
    before: Path | None = None,
    z0: bool = True,
    save=lambda out: None,
    daemon: bool = False,
    dump_jobs: tuple[int, ...] = (),
    fc: bool = True,
) -> dict:
    tools = (
        tuple(t for t in TOOLS if (z0 or t != "pg_dump_z0") and (fc or t != "pg_dump"))
        + (("axisor_before",) if before is not None else ())
        + (("axisor_daemon",) if daemon else ())
        + tuple(f"axisor_j{n}" for n in dump_jobs if n != 1)
        + (("pg_dump_dir_j2",) if dump_jobs else ())
    )
    out: dict = {"loadavg_before": os.getloadavg(), "uptime_before": uptime(), "runs": []}
    d = Daemon(c, work, db) if daemon else None
    try:
        return _rounds(c, work, db, runs, before, tools, out, save, d)
    finally:
        if d is not None:
            d.stop()


def _rounds(
    c: Cluster, work: Path, db: str, runs: int, before: Path | None, tools: tuple, out: dict, save, d: Daemon | None
) -> dict:
    for n in range(1, runs + 1):
        order = list(tools) if n % 2 else list(reversed(tools))
        r: dict = {}
        for tool in order:
            if tool == "axisor":
                r[tool] = axisor_run(c, work, db, n)
            elif tool == "axisor_daemon":
                assert d is not None
                r[tool] = d.run(c)
            elif tool == "axisor_before":
                r[tool] = axisor_run(c, work, db, n, before)
            elif tool.startswith("axisor_j"):
                r[tool] = axisor_run(c, work, db, n, jobs=int(tool[len("axisor_j") :]))
            elif tool == "pg_dump_dir_j2":
                r[tool] = pg_dump_dir_run(c, work, db, 2)
            else:
                r[tool] = pg_dump_run(c, db, tool == "pg_dump_z0")
        r["loadavg"] = os.getloadavg()
        out["runs"].append(r)
        save(out)  # every round: an interrupted run keeps what it measured
        print(
            f"{db} run {n}: "
            + ", ".join(f"{k} {r[k]['wall_s']:.2f} s" for k in order)
            + (f" (ratio {r['axisor']['wall_s'] / r['pg_dump']['wall_s']:.3f}" if "pg_dump" in r else " (")
            + f", load {r['loadavg'][0]:.1f})",
            flush=True,
        )
    out["loadavg_after"] = os.getloadavg()
    out["uptime_after"] = uptime()
    summ: dict = {}
    for t in tools:
        walls = [r[t]["wall_s"] for r in out["runs"]]
        summ[t] = {
            "wall_s": statistics.median(walls),
            "wall_min": min(walls),
            "wall_max": max(walls),
            **{k: statistics.median(r[t][k] for r in out["runs"]) for k in ("cpu_s", "server_cpu_s", "peak_rss_mib")},
        }
    if "pg_dump" in tools:  # --no-fc leaves the reference out
        _ratios(out, summ, tools)
    for t in (t for t in tools if t.startswith("axisor_j")):
        sp = [r["axisor"]["wall_s"] / r[t]["wall_s"] for r in out["runs"]]
        summ[f"speedup_{t[7:]}"] = {
            "median": round(statistics.median(sp), 3),
            "range": [round(min(sp), 3), round(max(sp), 3)],
            "of_medians": round(summ["axisor"]["wall_s"] / summ[t]["wall_s"], 3),
        }
    for other in ("axisor_before", "axisor_daemon"):
        if other in tools and "pg_dump" in tools:
            rb = [r[other]["wall_s"] / r["pg_dump"]["wall_s"] for r in out["runs"]]
            summ[f"ratio_{other[7:]}_median"] = round(statistics.median(rb), 3)
            summ[f"ratio_{other[7:]}_range"] = [round(min(rb), 3), round(max(rb), 3)]
    out["summary"] = summ
    return out


def _ratios(out: dict, summ: dict, tools: tuple) -> None:
    """axisor / pg_dump -Fc (and -Z0, and the daemon's job alone) per round and of the medians."""
    ratios = [r["axisor"]["wall_s"] / r["pg_dump"]["wall_s"] for r in out["runs"]]
    ratios_z0 = [r["axisor"]["wall_s"] / r["pg_dump_z0"]["wall_s"] for r in out["runs"] if "pg_dump_z0" in r] or [0.0]
    summ["ratio_of_medians"] = round(summ["axisor"]["wall_s"] / summ["pg_dump"]["wall_s"], 3)
    summ["ratio_median"] = round(statistics.median(ratios), 3)
    summ["ratio_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    summ["ratio_z0_median"] = round(statistics.median(ratios_z0), 3)
    summ["ratio_z0_range"] = [round(min(ratios_z0), 3), round(max(ratios_z0), 3)]
    if "axisor_daemon" in tools and all(r["axisor_daemon"].get("job_s") for r in out["runs"]):
        jobs = [r["axisor_daemon"]["job_s"] for r in out["runs"]]
        rj = [r["axisor_daemon"]["job_s"] / r["pg_dump"]["wall_s"] for r in out["runs"]]
        summ["daemon_job_s"] = {"median": statistics.median(jobs), "min": min(jobs), "max": max(jobs)}
        summ["ratio_daemon_job_median"] = round(statistics.median(rj), 3)
        summ["ratio_daemon_job_range"] = [round(min(rj), 3), round(max(rj), 3)]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/bench-data/pg-speed"))
    ap.add_argument("--work", type=Path, default=Path("/work/bench-work/pg-speed"))
    ap.add_argument("--shapes", default="many,big")
    ap.add_argument("--big-gb", type=float, default=5.0)
    ap.add_argument("--wide-gb", type=float, default=5.0, help="the wide shape's size (4 tables)")
    ap.add_argument(
        "--dump-jobs",
        default="",
        help="e.g. 1,2: an axisor backup per dump_jobs N, beside pg_dump -Fc and pg_dump -Fd -j 2 -Z0 (issue 19)",
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--no-z0", action="store_true", help="leave out pg_dump -Fc -Z0 (saves a dump per round)")
    ap.add_argument("--no-fc", action="store_true", help="leave out pg_dump -Fc (its reference taken in another run)")
    ap.add_argument("--daemon", action="store_true", help="also time backups through a running axisor-backup daemon")
    ap.add_argument("--before", type=Path, help="another checkout (e.g. a worktree of main) run as axisor_before")
    ap.add_argument("--drop", action="store_true", help="remove the cluster (and its marker) at the end")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    a = ap.parse_args()
    shapes = [s for s in a.shapes.split(",") if s]
    bin_dir = pg_bin()
    dump_jobs = tuple(int(n) for n in a.dump_jobs.split(",") if n)
    c, info = prepare(a.data, shapes, a.big_gb, bin_dir, a.wide_gb)
    compile_code(ROOT, *([a.before] if a.before else []))
    results: dict = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "before": str(a.before) if a.before else None,
        "databases": info,
        "pg_version": c.psql("SHOW server_version", db="postgres"),
        "nproc": os.cpu_count(),
        "shapes": {},
    }
    try:
        if a.prepare_only:
            print(json.dumps(info, indent=2))
            return 0
        a.work.mkdir(parents=True, exist_ok=True)
        a.out.mkdir(parents=True, exist_ok=True)
        path = a.out / f"pg-speed-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"

        def save(shape: str, partial: dict) -> None:
            results["shapes"][shape] = partial
            path.write_text(json.dumps(results, indent=2) + "\n")

        for shape in shapes:
            results["shapes"][shape] = bench_shape(
                c,
                a.work,
                shape,
                a.runs,
                a.before,
                not a.no_z0,
                lambda out, shape=shape: save(shape, out),
                a.daemon,
                dump_jobs,
                not a.no_fc,
            )
    finally:
        c.stop()
        if a.drop:
            shutil.rmtree(a.data, ignore_errors=True)
            (a.data.parent / f"{a.data.name}.bench.json").unlink(missing_ok=True)
        shutil.rmtree(a.work, ignore_errors=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    for shape, res in results["shapes"].items():
        s = res["summary"]
        d = info[shape]
        print(
            f"\n{shape}: {d['tables']} tables, pg_database_size {d['database_size'] / 1e9:.2f} GB; "
            f"{a.runs} rounds; load {res['loadavg_before'][0]:.1f} before, {res['loadavg_after'][0]:.1f} after"
        )
        print(
            "| program | wall s median (min-max) | client CPU s | server CPU s | peak RSS MiB |\n|---|---|---|---|---|"
        )
        extra = sorted(t for t in s if t.startswith(("axisor_j", "pg_dump_dir")))
        for t in [t for t in (*TOOLS, "axisor_before", "axisor_daemon", *extra) if t in s]:
            x = s[t]
            print(
                f"| {t} | {x['wall_s']:.2f} ({x['wall_min']:.2f}-{x['wall_max']:.2f}) | {x['cpu_s']:.2f} | "
                f"{x['server_cpu_s']:.2f} | {x['peak_rss_mib']:.0f} |"
            )
        print(
            ""
            if "ratio_median" not in s
            else f"axisor / pg_dump -Fc: {s['ratio_median']:.3f}x median of rounds ({s['ratio_range'][0]:.3f}-"
            f"{s['ratio_range'][1]:.3f}), {s['ratio_of_medians']:.3f}x of medians; target <= 1.15x. "
            f"axisor / pg_dump -Fc -Z0: {s['ratio_z0_median']:.3f}x ({s['ratio_z0_range'][0]:.3f}-"
            f"{s['ratio_z0_range'][1]:.3f})"
            + "".join(
                f"; {o}: {s[f'ratio_{o}_median']:.3f}x ({s[f'ratio_{o}_range'][0]:.3f}-{s[f'ratio_{o}_range'][1]:.3f})"
                for o in ("before", "daemon")
                if f"ratio_{o}_median" in s
            )
        )
        for key in sorted(k for k in s if k.startswith("speedup_")):
            sp = s[key]
            print(
                f"single stream / {key[8:]}: {sp['median']:.3f}x median of rounds "
                f"({sp['range'][0]:.3f}-{sp['range'][1]:.3f}), {sp['of_medians']:.3f}x of medians"
            )
        if "ratio_daemon_job_median" in s:
            j = s["daemon_job_s"]
            print(
                f"the daemon's job alone (a scheduled backup, no client): {j['median']:.2f} s "
                f"({j['min']:.2f}-{j['max']:.2f}), {s['ratio_daemon_job_median']:.3f}x "
                f"({s['ratio_daemon_job_range'][0]:.3f}-{s['ratio_daemon_job_range'][1]:.3f})"
            )
    print(f"raw: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
