"""Shared parts of the remote-storage benchmarks (bench/s3_bench.py, bench/sftp_bench.py).

Not a script. A benchmark names a server class (started fresh per tool and round, as its
own process, so its memory is never in our figures and neither tool sees the other's
files) that knows its axisor location (a `[[storage.remote_storage]]` table named
`server.name`), restic's repository and options, and its own CPU so far; `main` here does
the rest: rounds alternating who goes first, per tool `init` (not timed), one backup of
the data set and a full restore of it from the server into an empty folder, each timed
by GNU time (bench/run.py's run_timed), then a SHA-256 comparison of every restored file
(a mismatch stops the run). axisor-backup's primary location is always a local folder:
its backup step is `backup` into a local primary that copies the new packs to the remote
location in the same command, and its restore is `restore latest --from NAME`.

Results: a Markdown table on stdout (medians, and the ratios throughput = restic wall /
axisor wall, CPU and RSS = axisor / restic), raw JSON in bench/results/<kind>-<UTC>.json.
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
from pathlib import Path
from typing import Callable, Protocol

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.append(str(ROOT / "tests"))  # proc_support, sshd_support: stdlib-only helpers shared with the tests

import gen  # noqa: E402
from run import run_timed, tree_stats, verify_restore, warm  # noqa: E402

AXISOR = str(ROOT / ".venv" / "bin" / "axisor-backup")
PY = str(ROOT / ".venv" / "bin" / "python")
PASSPHRASE = "s3-bench-passphrase"
STEPS = ("backup", "restore")


class Server(Protocol):
    name: str  # the axisor location's name, and the label of the server-CPU column

    def cpu(self) -> float: ...
    def axisor_location(self) -> str: ...
    def restic_repository(self) -> str: ...
    def restic_options(self) -> list[str]: ...
    def env(self) -> dict: ...
    def stop(self) -> None: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args[0]} exited: see {log}")
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}: see {log}")


def proc_cpu(pid: int) -> float:
    """user+sys CPU seconds of a process and of its children it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def axisor_config(work: Path, data: str, location: str) -> Path:
    cfg = work / "axisor.toml"
    cfg.write_text(
        f'[application]\nuser_data = ["{data}"]\n[storage]\nlocal_path = "{work}/axisor-repo"\n'
        f"[[storage.remote_storage]]\n{location}"
    )
    return cfg


def axisor_env(work: Path, server: Server | None = None) -> dict:
    env = dict(os.environ, **(server.env() if server else {}))
    for name in ("CACHE", "CONFIG", "DATA", "STATE"):
        env[f"XDG_{name}_HOME"] = str(work / "home" / name.lower())
    env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, not what the shared .venv's editable install points at
    return env


def step(argv: list[str], env: dict, log: Path, server: Server | None = None) -> dict:
    before = server.cpu() if server else 0.0
    load = os.getloadavg()
    m = run_timed(argv, env, None, str(log), timeout=3600)
    if m["rc"] != 0:
        raise SystemExit(f"{argv[0]} {argv[1:4]} failed (exit {m['rc']}): see {log}")
    out = {k: round(m[k], 2) for k in ("wall", "cpu", "user", "sys", "rss_mib")}
    out["loadavg_before"] = [round(x, 2) for x in load]
    if server:
        time.sleep(0.2)  # the server reaps the connection's processes (sshd) before we read its CPU
        out["server_cpu"] = round(server.cpu() - before, 2)
    return out


def run_tool(tool: str, rnd: int, data: str, work_root: Path, start: Callable[[Path], Server]) -> dict:
    work = work_root / f"{tool}-r{rnd}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = start(work)
    target = work / "restore"
    log = work / "steps.log"
    try:
        if tool == "axisor":
            env = axisor_env(work, server)
            cfg = str(axisor_config(work, data, server.axisor_location()))
            step([AXISOR, "--config", cfg, "init"], env, log)
            backup = step([AXISOR, "--config", cfg, "backup"], env, log, server)
            restore = step(
                [AXISOR, "--config", cfg, "restore", "latest", "--from", server.name, "--target", str(target)],
                env,
                log,
                server,
            )
        else:
            env = dict(os.environ, **server.env())
            env.update(
                RESTIC_PASSWORD=PASSPHRASE,
                RESTIC_CACHE_DIR=str(work / "restic-cache"),
                RESTIC_REPOSITORY=server.restic_repository(),
            )
            restic = ["restic", *server.restic_options()]
            step([*restic, "init"], env, log)
            backup = step([*restic, "backup", data], env, log, server)
            restore = step([*restic, "restore", "latest", "--target", str(target)], env, log, server)
        checked = verify_restore(data, str(target))
    finally:
        server.stop()
    shutil.rmtree(work, ignore_errors=True)
    return {"tool": tool, "round": rnd, "backup": backup, "restore": restore, "verified_files": checked["files"]}


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 2)


def summarize(runs: list[dict], tools: list[str], data_bytes: int, server_label: str) -> tuple[dict, str]:
    summ: dict = {}
    for tool in tools:
        mine = [r for r in runs if r["tool"] == tool]
        summ[tool] = {
            s: {k: med([r[s][k] for r in mine]) for k in ("wall", "cpu", "rss_mib", "server_cpu")} for s in STEPS
        }
        for s in STEPS:
            summ[tool][s]["walls"] = [r[s]["wall"] for r in mine]
    lines = [
        f"| tool | step | wall s (median) | walls per round | MB/s | CPU s | peak RSS MiB | {server_label} CPU s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        for s in STEPS:
            v = summ[tool][s]
            lines.append(
                f"| {tool} | {s} | {v['wall']} | {', '.join(f'{w:.2f}' for w in v['walls'])} | "
                f"{data_bytes / 1e6 / v['wall']:.1f} | {v['cpu']} | {v['rss_mib']:.0f} | {v['server_cpu']} |"
            )
    if "axisor" in summ and "restic" in summ:
        lines += [
            "",
            "| step | throughput (restic wall / axisor wall), medians | per round | CPU axisor/restic | "
            "RSS axisor/restic |",
            "|---|---|---|---|---|",
        ]
        summ["ratios"] = {}
        for s in STEPS:
            a, r = summ["axisor"][s], summ["restic"][s]
            rounds = sorted({x["round"] for x in runs})
            per_round = []
            for n in rounds:
                aw = [x[s]["wall"] for x in runs if x["tool"] == "axisor" and x["round"] == n]
                rw = [x[s]["wall"] for x in runs if x["tool"] == "restic" and x["round"] == n]
                if aw and rw:
                    per_round.append(round(rw[0] / aw[0], 2))
            ratio = {
                "throughput": round(r["wall"] / a["wall"], 2),
                "per_round": per_round,
                "cpu": round(a["cpu"] / r["cpu"], 2),
                "rss": round(a["rss_mib"] / r["rss_mib"], 2),
            }
            summ["ratios"][s] = ratio
            lines.append(
                f"| {s} | {ratio['throughput']} | {', '.join(str(x) for x in per_round)} | {ratio['cpu']} | "
                f"{ratio['rss']} |"
            )
    return summ, "\n".join(lines)


def arguments(description: str, default_work: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="data set (default /work/bench-data/scale-1 if it exists, else scale-0.05)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tools", default="axisor,restic")
    ap.add_argument("--work", type=Path, default=Path(default_work))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return ap


def main(a: argparse.Namespace, kind: str, start: Callable[[Path], Server], server_label: str, notes: dict) -> int:
    """The rounds of one remote benchmark: `kind` names the JSON (bench/results/<kind>-<UTC>.json)."""
    a.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
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
    up_start = uptime()
    print(up_start, flush=True)
    runs = []
    for rnd in range(1, a.rounds + 1):
        order = tools if rnd % 2 else tools[::-1]  # alternate who goes first
        for tool in order:
            r = run_tool(tool, rnd, data, a.work, start)
            runs.append(r)
            print(json.dumps(r), flush=True)
    up_end = uptime()
    summ, table = summarize(runs, tools, data_bytes, server_label)
    version = subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.strip()
    path = a.out / f"{kind}-{stamp}.json"
    doc = {
        "kind": kind,
        "data": data,
        "files": files,
        "bytes": data_bytes,
        "restic": version,
        "uptime_start": up_start,
        "uptime_end": up_end,
        **notes,
        "runs": runs,
        "summary": summ,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\ndata: {data} ({files} files, {data_bytes / 1e6:.1f} MB); rounds: {a.rounds}\n")
    print(table)
    print(f"\nstart: {up_start}\nend:   {up_end}")
    print(f"\nraw results: {path}")
    return 0
