"""PostgreSQL benchmark (issue 3): logical backup of a ~1 GB database against pg_dump alone,
and the time of a point-in-time restore.

    .venv/bin/python bench/pg_bench.py [--runs 3] [--scale 64] [--no-pitr]

1. A PostgreSQL cluster under ``--data`` (default /work/bench-data/pg) holding database
   ``bench``: ``pgbench -i -s SCALE`` (scale 64 ~ 1.0 GB of pg_database_size). Generated once;
   reused while the marker ``bench.json`` beside it matches the scale.
2. ``--runs`` rounds, each timing (order alternating between rounds):
   ``pg_dump -Fc -Z0 -d bench > /dev/null`` and ``axisor-backup backup --source database``
   (logical mode) into a fresh repository under ``--work`` on the same disk. Wall, user+sys
   CPU and peak RSS of the client program come from GNU time (the server's own work is the
   same for both and not counted).
3. Unless ``--no-pitr``: archiving on (wal-push as archive_command, run as the server's OS
   user), a physical base backup, pgbench writes for a few seconds around a target time, then
   ``restore --source database --to-time T --target-dir DIR --start`` timed, and the restored
   server's pgbench_history checked against the rows committed before T.

Results: a Markdown summary on stdout, raw JSON in bench/results/pg-<UTC timestamp>.json.
Runs as root (the cluster as ``postgres``) or as an ordinary user (the cluster as that user).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE = ROOT / ".venv" / "bin" / "axisor-backup"
PASSPHRASE = "pg bench passphrase"
GNU_TIME = "/usr/bin/time"


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql (scripts/bootstrap)")
    return found[-1].parent


def as_server(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def chown_server(path: Path) -> None:
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam("postgres")
    for dirpath, dirnames, filenames in os.walk(path):
        for n in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
            os.lchown(n, pw.pw_uid, pw.pw_gid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, data_root: Path, bin_dir: Path) -> None:
        self.root = data_root
        self.data = data_root / "data"
        self.bin = bin_dir
        self.port = 0

    def url(self, db: str = "bench") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "bench") -> str:
        p = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise SystemExit(f"psql failed: {sql}: {p.stderr}")
        return p.stdout.strip()

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            as_server([str(self.bin / "pg_ctl"), "-D", str(self.data), *args]),
            capture_output=True,
            text=True,
            timeout=600,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self.ctl("-m", "fast", "-w", "stop", check=False)  # a cluster left running by an interrupted run
        self.port = free_port()
        self.ctl(
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "120",
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
            "start",
        )

    def server_cpu(self) -> float:
        """CPU seconds of the server's backends that have exited (the postmaster's reaped
        children) plus the postmaster's own: a run's server work is the difference."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def archive_current(self, timeout: float, poll: float = 0.5) -> str:
        """Switch to a new WAL segment and wait until archive_command has archived the one
        switched from (its name, returned); SystemExit with pg_stat_archiver after ``timeout``."""
        last = self.psql("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + timeout
        while self.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[:24] < last:
            if time.monotonic() > deadline:
                raise SystemExit(f"{last} not archived: {self.psql('SELECT * FROM pg_stat_archiver')}")
            time.sleep(poll)
        return last

    def restart(self) -> None:
        self.ctl("-l", str(self.root / "server.log"), "-m", "fast", "-w", "-t", "120", "restart")

    def stop(self) -> None:
        self.ctl("-m", "fast", "-w", "stop", check=False)

    def pgbench(self, *args: str) -> str:
        p = subprocess.run(
            [str(self.bin / "pgbench"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *args, "bench"],
            capture_output=True,
            text=True,
            timeout=3600,
            stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise SystemExit(f"pgbench {args} failed: {p.stderr[-2000:]}")
        return p.stdout + p.stderr


def prepare(data_root: Path, scale: int, bin_dir: Path) -> tuple[Cluster, dict]:
    marker = data_root.parent / f"{data_root.name}.bench.json"
    c = Cluster(data_root, bin_dir)
    if marker.exists() and json.loads(marker.read_text()).get("scale") == scale and c.data.exists():
        c.start()
        return c, json.loads(marker.read_text())
    if c.data.exists():
        c.stop()
    shutil.rmtree(data_root, ignore_errors=True)
    marker.unlink(missing_ok=True)
    data_root.mkdir(parents=True)
    data_root.chmod(0o755)
    chown_server(data_root)
    subprocess.run(
        as_server(
            [
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
            ]
        ),
        check=True,
        capture_output=True,
        timeout=300,
    )
    c.start()
    c.psql("CREATE DATABASE bench", db="postgres")
    t = time.monotonic()
    c.pgbench("-i", "-q", "-s", str(scale))
    c.psql("CHECKPOINT")
    info = {
        "scale": scale,
        "generated_seconds": round(time.monotonic() - t, 1),
        "database_size": int(c.psql("SELECT pg_database_size('bench')")),
        "accounts": int(c.psql("SELECT count(*) FROM pgbench_accounts")),
    }
    marker.write_text(json.dumps(info, indent=2) + "\n")
    return c, info


def run_timed(argv: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> dict:
    """Wall, user+sys CPU and peak RSS of one program, via GNU time (its own small parent:
    a child forked from this process would report this process's pages too)."""
    t = time.monotonic()
    p = subprocess.run(
        [GNU_TIME, "-f", "@@ %M %U %S", *argv],
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    wall = time.monotonic() - t
    lines = p.stderr.strip().splitlines()
    stats = [x for x in lines if x.startswith("@@ ")]
    if p.returncode != 0 or not stats:
        raise SystemExit(f"{argv[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
    _, rss, user, sys_ = stats[-1].split()
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(float(user) + float(sys_), 2),
        "peak_rss_mib": round(int(rss) / 1024, 1),
    }


def axisor_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
    return env


def with_server_cpu(c: Cluster, run) -> dict:
    before = c.server_cpu()
    res = run()
    time.sleep(0.3)  # let the postmaster reap the run's backends
    res["server_cpu_s"] = round(c.server_cpu() - before, 2)
    return res


def logical_round(c: Cluster, work: Path, n: int, order: list[str]) -> dict:
    out: dict = {}
    for tool in order:
        if tool == "pg_dump":
            out["pg_dump"] = with_server_cpu(
                c, lambda: run_timed([str(c.bin / "pg_dump"), "-Fc", "-Z0", "-d", c.url()])
            )
            continue
        repo = work / f"repo-{n}"
        shutil.rmtree(repo, ignore_errors=True)
        cfg = work / "axisor.toml"
        # "axisor": the default (exact counts and row checksums); "axisor_counts": row_checksums = false.
        checksums = "true" if tool == "axisor" else "false"
        cfg.write_text(
            f'[database]\nenabled = true\nurl = "{c.url()}"\nmode = "logical"\npg_bin_dir = "{c.bin}"\n'
            f'row_checksums = {checksums}\n[storage]\nlocal_path = "{repo}"\n'
        )
        env = axisor_env()
        subprocess.run([str(EXE), "--config", str(cfg), "init"], env=env, check=True, capture_output=True)
        res = with_server_cpu(
            c,
            lambda: run_timed(
                [str(EXE), "--config", str(cfg), "--json", "backup", "--source", "database"],
                env=env,
                stdout=subprocess.PIPE,
            ),
        )
        res["repo_bytes"] = sum(f.stat().st_size for f in repo.rglob("*") if f.is_file())
        out[tool] = res
        shutil.rmtree(repo, ignore_errors=True)
    return out


# -- point-in-time restore --------------------------------------------------------------------


def server_python() -> str:
    want = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (f"/usr/bin/{want}", f"/usr/local/bin/{want}", shutil.which(want) or ""):
        if cand and os.access(cand, os.X_OK) and not cand.startswith(str(Path.home())):
            return cand
    raise SystemExit(f"no system {want} the postgres user can run")


def pitr(c: Cluster, work: Path) -> dict:
    """Archive into a repository the server's OS user owns, take a base backup, write around a
    target time, and time the restore to that time, started and promoted."""
    d = work / "pitr"
    if d.exists():
        subprocess.run(
            as_server([str(c.bin / "pg_ctl"), "-D", str(d / "restored"), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(d)
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
        f'[storage]\nlocal_path = "{d / "repo"}"\npassphrase_file = "{pf}"\n'
    )
    chown_server(d)

    def cli(*args: str, server: bool = True) -> subprocess.CompletedProcess:
        argv = [str(wrapper), "--config", str(cfg), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        env["AXISOR_BACKUP_PROGRAM"] = str(wrapper)
        return subprocess.run(
            as_server(argv) if server else argv,
            capture_output=True,
            text=True,
            env=env,
            cwd="/tmp",
            timeout=3600,
            stdin=subprocess.DEVNULL,
        )

    r = cli("init")
    if r.returncode:
        raise SystemExit(f"init failed: {r.stderr}")
    c.psql(f"ALTER SYSTEM SET archive_command = '{wrapper} --config {cfg} wal-push %p'")
    c.psql("ALTER SYSTEM SET archive_mode = 'on'")
    c.restart()
    out: dict = {}
    try:
        c.psql("SELECT pg_switch_wal()")
        t = time.monotonic()
        r = cli("--json", "backup", "--source", "database")
        if r.returncode:
            raise SystemExit(f"physical backup failed: {r.stderr}")
        out["base_backup_s"] = round(time.monotonic() - t, 2)
        snap = json.loads(r.stdout)["snapshots"][0]
        out["base_backup_bytes"] = snap["summary"]["total_bytes"]
        c.pgbench("-n", "-c", "2", "-T", "4")
        time.sleep(0.5)
        target = c.psql("SELECT clock_timestamp()")
        expected = int(c.psql("SELECT count(*) FROM pgbench_history"))
        time.sleep(0.5)
        c.pgbench("-n", "-c", "2", "-T", "4")
        c.archive_current(600, poll=0.2)
        status = json.loads(cli("--json", "database", "status").stdout)
        out["segments_archived"] = status["segments"]
        port = free_port()
        dest = d / "restored"
        target_iso = datetime.fromisoformat(
            target.replace(" ", "T") + (":00" if target[-3] in "+-" else "")
        ).isoformat()
        t = time.monotonic()
        r = cli(
            "--json",
            "restore",
            "--source",
            "database",
            "--to-time",
            target_iso,
            "--target-dir",
            str(dest),
            "--start",
            "--port",
            str(port),
        )
        out["restore_s"] = round(time.monotonic() - t, 2)
        if r.returncode:
            raise SystemExit(f"PITR restore failed ({r.returncode}): {r.stderr[-3000:]}")
        out["restore_report"] = json.loads(r.stdout)
        got = subprocess.run(
            [
                str(c.bin / "psql"),
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "bench",
                "-c",
                "SELECT count(*) FROM pgbench_history",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        out["rows_expected"] = expected
        out["rows_restored"] = int(got.stdout.strip() or -1)
        subprocess.run(
            as_server([str(c.bin / "pg_ctl"), "-D", str(dest), "-m", "fast", "-w", "stop"]), capture_output=True
        )
        out["target"] = target_iso
    finally:
        c.psql("ALTER SYSTEM RESET archive_command")
        c.psql("ALTER SYSTEM RESET archive_mode")
        c.restart()
    return out


def compile_code(*trees: Path) -> None:
    """Byte-compile each checkout's app/ and core/, as an installed package has them: without
    it (PYTHONDONTWRITEBYTECODE in a shell, a fresh checkout) every run compiles the modules
    it imports again, ~0.1-0.2 s of CPU that an installed program never spends."""
    for tree in trees:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "app", "core"],
            cwd=tree,
            check=True,
            stdout=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        )


def git_rev() -> str:
    p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return p.stdout.strip() + ("+dirty" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/bench-data/pg"))
    ap.add_argument("--work", type=Path, default=Path("/work/bench-work/pg"))
    ap.add_argument("--scale", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-pitr", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    a = ap.parse_args()

    bin_dir = pg_bin()
    c, info = prepare(a.data, a.scale, bin_dir)
    a.work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": info,
        "loadavg_before": os.getloadavg(),
        "git": git_rev(),
        "pg_version": c.psql("SHOW server_version"),
        "runs": [],
    }
    try:
        results["database"]["size_now"] = int(c.psql("SELECT pg_database_size('bench')"))
        dump_size = None
        for n in range(1, a.runs + 1):
            order = ["pg_dump", "axisor", "axisor_counts"] if n % 2 else ["axisor_counts", "axisor", "pg_dump"]
            r = logical_round(c, a.work, n, order)
            results["runs"].append(r)
            print(f"run {n}: " + ", ".join(f"{k} {v['wall_s']:.2f} s" for k, v in r.items()), flush=True)
        p = subprocess.run(
            [str(c.bin / "pg_dump"), "-Fc", "-Z0", "-d", c.url()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        dump_size = len(p.stdout)
        results["dump_bytes"] = dump_size
        results["loadavg_after_logical"] = os.getloadavg()
        if not a.no_pitr:
            results["pitr"] = pitr(c, a.work)
    finally:
        c.stop()

    def med(tool: str, key: str) -> float:
        return statistics.median(r[tool][key] for r in results["runs"])

    summ = {
        t: {k: med(t, k) for k in ("wall_s", "cpu_s", "server_cpu_s", "peak_rss_mib")}
        for t in ("pg_dump", "axisor", "axisor_counts")
    }
    summ["ratio_wall"] = round(summ["axisor"]["wall_s"] / summ["pg_dump"]["wall_s"], 3)
    summ["ratio_cpu_client_plus_server"] = round(
        (summ["axisor"]["cpu_s"] + summ["axisor"]["server_cpu_s"])
        / (summ["pg_dump"]["cpu_s"] + summ["pg_dump"]["server_cpu_s"]),
        3,
    )
    summ["ratios_per_run"] = [round(r["axisor"]["wall_s"] / r["pg_dump"]["wall_s"], 3) for r in results["runs"]]
    summ["ratio_wall_counts_only"] = round(summ["axisor_counts"]["wall_s"] / summ["pg_dump"]["wall_s"], 3)
    summ["ratios_per_run_counts_only"] = [
        round(r["axisor_counts"]["wall_s"] / r["pg_dump"]["wall_s"], 3) for r in results["runs"]
    ]
    results["summary"] = summ
    a.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = a.out / f"pg-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")

    size_gb = info["database_size"] / 1e9
    print(
        f"\ndatabase bench: pgbench scale {info['scale']}, {size_gb:.2f} GB; dump {dump_size / 1e6:.0f} MB; "
        f"{a.runs} runs, medians"
    )
    print("| program | wall s (min-max) | CPU s | server CPU s | peak RSS MiB |\n|---|---|---|---|---|")
    for t in ("pg_dump", "axisor", "axisor_counts"):
        walls = [r[t]["wall_s"] for r in results["runs"]]
        print(
            f"| {t} | {summ[t]['wall_s']:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {summ[t]['cpu_s']:.2f} | "
            f"{summ[t]['server_cpu_s']:.2f} | {summ[t]['peak_rss_mib']:.0f} |"
        )
    print(
        f"\naxisor / pg_dump wall: {summ['ratio_wall']:.3f}x (per run: {summ['ratios_per_run']}); target <= 1.15x; "
        f"CPU (client + server): {summ['ratio_cpu_client_plus_server']:.3f}x; "
        f"row_checksums = false: {summ['ratio_wall_counts_only']:.3f}x "
        f"(per run: {summ['ratios_per_run_counts_only']}); "
        f"load average {results['loadavg_before'][0]:.1f} before, {results['loadavg_after_logical'][0]:.1f} after"
    )
    if "pitr" in results:
        pt = results["pitr"]
        print(
            f"PITR: base backup {pt['base_backup_s']} s; restore to {pt['target']} and start: {pt['restore_s']} s; "
            f"pgbench_history rows {pt['rows_restored']} (expected {pt['rows_expected']})"
        )
    print(f"raw: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
