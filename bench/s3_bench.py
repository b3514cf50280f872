"""Backup to and restore from the S3 test server: axisor-backup against restic (issue 4).

moto runs as its own process (a fresh one per tool and round, so neither tool meets the
other's objects and moto's memory is never counted against ours). Rounds alternate the
tools. Each step's wall time, CPU and peak RSS come from GNU time (bench/run.py's
run_timed); every restore is compared with the source by SHA-256.

axisor-backup's primary location is always a local folder: its "backup to S3" is a
backup into the local primary that then copies the new packs to the S3 location (one
process, one command); its restore reads from S3 (`restore --from s3`). restic writes
straight to `s3:` and reads back from it.

    .venv/bin/python bench/s3_bench.py [--data DIR] [--rounds 3] [--tools axisor,restic]
    .venv/bin/python bench/s3_bench.py --memory 200,600   # peak RSS vs size, backup and copy --to

Results: a Markdown table on stdout, raw JSON in bench/results/s3-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import gen  # noqa: E402
from run import run_timed, tree_stats, verify_restore, warm  # noqa: E402

AXISOR = str(ROOT / ".venv" / "bin" / "axisor-backup")
PY = str(ROOT / ".venv" / "bin" / "python")
KEYS = {"AWS_ACCESS_KEY_ID": "bench-key", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
PASSPHRASE = "s3-bench-passphrase"


class Moto:
    """moto's S3 in server mode as a separate process."""

    def __init__(self, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"moto exited: see {log}")
                time.sleep(0.1)
        raise SystemExit(f"moto did not listen on {self.port}")

    def cpu(self) -> float:
        """moto's user+sys CPU seconds so far: what the server spent serving the tool."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def axisor_config(work: Path, data: str, endpoint: str, bucket: str) -> Path:
    cfg = work / "axisor.toml"
    cfg.write_text(
        f'[application]\nuser_data = ["{data}"]\n[storage]\nlocal_path = "{work}/axisor-repo"\n'
        f'[[storage.remote_storage]]\nprovider = "aws-s3"\nname = "s3"\nbucket_name = "{bucket}"\n'
        f'endpoint = "{endpoint}"\nregion = "us-east-1"\n'
    )
    return cfg


def step(argv: list[str], env: dict, log: Path, moto: Moto | None = None) -> dict:
    before = moto.cpu() if moto else 0.0
    m = run_timed(argv, env, None, str(log), timeout=3600)
    if m["rc"] != 0:
        raise SystemExit(f"{argv[0]} {argv[1:4]} failed (exit {m['rc']}): see {log}")
    out = {k: round(m[k], 2) for k in ("wall", "cpu", "user", "sys", "rss_mib")}
    if moto:
        out["server_cpu"] = round(moto.cpu() - before, 2)
    return out


def run_tool(tool: str, rnd: int, data: str, work_root: Path) -> dict:
    work = work_root / f"{tool}-r{rnd}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    moto = Moto(work / "moto.log")
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    target = work / "restore"
    log = work / "steps.log"
    env = dict(os.environ, **KEYS)
    try:
        if tool == "axisor":
            for name in ("CACHE", "CONFIG", "DATA", "STATE"):
                env[f"XDG_{name}_HOME"] = str(work / "home" / name.lower())
            env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
            cfg = str(axisor_config(work, data, moto.endpoint, bucket))
            step([AXISOR, "--config", cfg, "init"], env, log)
            backup = step([AXISOR, "--config", cfg, "backup"], env, log, moto)
            restore = step(
                [AXISOR, "--config", cfg, "restore", "latest", "--from", "s3", "--target", str(target)], env, log, moto
            )
        else:
            env.update(
                RESTIC_PASSWORD=PASSPHRASE,
                RESTIC_CACHE_DIR=str(work / "restic-cache"),
                RESTIC_REPOSITORY=f"s3:{moto.endpoint}/{bucket}",
            )
            step(["restic", "init"], env, log)
            backup = step(["restic", "backup", data], env, log, moto)
            restore = step(["restic", "restore", "latest", "--target", str(target)], env, log, moto)
        checked = verify_restore(data, str(target))
    finally:
        moto.stop()
    shutil.rmtree(target, ignore_errors=True)
    return {"tool": tool, "round": rnd, "backup": backup, "restore": restore, "verified_files": checked["files"]}


def measure_memory(sizes_mb: list[int], work_root: Path) -> list[dict]:
    """Peak RSS of `backup` (primary + copy to S3) and of `copy --to` S3 at each data size:
    incompressible files of 50 MiB, so every byte is a new chunk that crosses the wire."""
    import blake3

    out = []
    for size in sizes_mb:
        work = work_root / f"mem-{size}"
        shutil.rmtree(work, ignore_errors=True)
        src = work / "src"
        src.mkdir(parents=True)
        h = blake3.blake3(f"s3-mem-{size}".encode())
        piece = 50 * 1024 * 1024
        for i in range(max(1, size // 50)):
            (src / f"f{i:03d}.bin").write_bytes(h.digest(length=piece, seek=i * piece))
        env = dict(os.environ, **KEYS, AXISOR_BACKUP_PASSPHRASE=PASSPHRASE)
        moto = Moto(work / "moto.log")
        try:
            cfg = str(axisor_config(work, str(src), moto.endpoint, f"mem-b-{uuid.uuid4().hex[:8]}"))
            step([AXISOR, "--config", cfg, "init"], env, work / "steps.log")
            backup = step([AXISOR, "--config", cfg, "backup"], env, work / "steps.log")
            # A second, empty bucket: the whole repository goes over again, by copy alone.
            cfg2 = str(axisor_config(work, str(src), moto.endpoint, f"mem-c-{uuid.uuid4().hex[:8]}"))
            copy = step([AXISOR, "--config", cfg2, "copy", "--to", "s3"], env, work / "steps.log")
        finally:
            moto.stop()
        out.append({"size_mib": size, "backup": backup, "copy": copy})
        print(json.dumps(out[-1]), flush=True)
        shutil.rmtree(work, ignore_errors=True)
    return out


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 2)


def summarize(runs: list[dict], tools: list[str], data_bytes: int) -> tuple[dict, str]:
    summ: dict = {}
    for tool in tools:
        mine = [r for r in runs if r["tool"] == tool]
        summ[tool] = {
            s: {k: med([r[s][k] for r in mine]) for k in ("wall", "cpu", "rss_mib", "server_cpu")}
            for s in ("backup", "restore")
        }
    lines = [
        "| tool | step | wall s (median) | MB/s | CPU s | peak RSS MiB | moto CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        for s in ("backup", "restore"):
            v = summ[tool][s]
            lines.append(
                f"| {tool} | {s} | {v['wall']} | {data_bytes / 1e6 / v['wall']:.1f} | {v['cpu']} | "
                f"{v['rss_mib']:.0f} | {v['server_cpu']} |"
            )
    if "axisor" in summ and "restic" in summ:
        lines += [
            "",
            "| step | throughput (restic wall / axisor wall) | CPU axisor/restic | RSS axisor/restic |",
            "|---|---|---|---|",
        ]
        summ["ratios"] = {}
        for s in ("backup", "restore"):
            a, r = summ["axisor"][s], summ["restic"][s]
            ratio = {
                "throughput": round(r["wall"] / a["wall"], 2),
                "cpu": round(a["cpu"] / r["cpu"], 2),
                "rss": round(a["rss_mib"] / r["rss_mib"], 2),
            }
            summ["ratios"][s] = ratio
            lines.append(f"| {s} | {ratio['throughput']} | {ratio['cpu']} | {ratio['rss']} |")
    return summ, "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="data set (default /work/bench-data/scale-1 if it exists, else scale-0.05)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tools", default="axisor,restic")
    ap.add_argument("--work", type=Path, default=Path("/work/bench-work/s3"))
    ap.add_argument("--memory", help="instead: peak RSS of backup and copy --to at these sizes in MiB, e.g. 200,600")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if a.memory:
        mem = measure_memory([int(x) for x in a.memory.split(",")], a.work)
        path = a.out / f"s3-memory-{stamp}.json"
        path.write_text(json.dumps({"kind": "s3-memory", "runs": mem}, indent=1) + "\n")
        print(f"raw results: {path}")
        return 0
    tools = a.tools.split(",")
    if "restic" in tools and shutil.which("restic") is None:
        raise SystemExit("restic not found: run bench/setup.sh")
    data = a.data or (
        "/work/bench-data/scale-1" if os.path.isdir("/work/bench-data/scale-1") else "/work/bench-data/scale-0.05"
    )
    if not os.path.isdir(data):
        gen.generate(data, 0.05, 1)
    files, data_bytes = tree_stats(data)
    warm(data)
    runs = []
    for rnd in range(1, a.rounds + 1):
        order = tools if rnd % 2 else tools[::-1]  # alternate who goes first
        for tool in order:
            r = run_tool(tool, rnd, data, a.work)
            runs.append(r)
            print(json.dumps(r), flush=True)
    summ, table = summarize(runs, tools, data_bytes)
    version = subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.strip()
    path = a.out / f"s3-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "kind": "s3",
                "data": data,
                "files": files,
                "bytes": data_bytes,
                "restic": version,
                "runs": runs,
                "summary": summ,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\ndata: {data} ({files} files, {data_bytes / 1e6:.1f} MB); rounds: {a.rounds}\n")
    print(table)
    print(f"\nraw results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
