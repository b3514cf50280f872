"""Peak RSS and wall time of a first backup and a restore, two checkouts interleaved.

Issue 19: "peak RSS <= 150 MiB on the bench sets". Each round backs up every data folder
into a fresh local repository and restores it into an empty target, once per checkout,
the checkouts alternating (the first one goes first in odd rounds): RSS is not affected
by the shared host's load, wall time is, so the walls are compared within a round.

    git worktree add --detach /tmp/rss-old <commit>
    .venv/bin/python bench/peak_memory.py --old /tmp/rss-old --new . \\
        --data /work/bench-data/scale-1 --data /work/bench-data/sys --rounds 3

Each checkout's CLI runs as ``python -m app.cli`` with cwd and PYTHONPATH = that checkout,
so it imports that checkout's code. Peak RSS and CPU are GNU time's (%M): the child's own.
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
from pathlib import Path

PASS = "bench peak memory passphrase"


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, int, float]:
    """Wall s, peak RSS KiB, CPU s of the command."""
    t = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%M %U %S", *cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if p.returncode not in (0, 7):
        raise SystemExit(f"{cmd} in {cwd} exited {p.returncode}: {p.stdout[-800:]} {p.stderr[-800:]}")
    rss, user, sys_ = p.stderr.strip().splitlines()[-1].split()
    return time.monotonic() - t, int(rss), float(user) + float(sys_)


def one(code: Path, data: Path, work: Path, steps: list[str]) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = work / "axisor.toml"
    cfg.write_text(f'[application]\nuser_data = ["{data}"]\n[storage]\nlocal_path = "{work / "repo"}"\n')
    env = dict(os.environ, AXISOR_BACKUP_PASSPHRASE=PASS, PYTHONPATH=str(code), HOME=str(work))
    cli = [sys.executable, "-m", "app.cli", "--config", str(cfg)]
    subprocess.run([*cli, "init"], cwd=code, env=env, check=True, capture_output=True)
    out: dict = {}
    if "backup" in steps:
        w, rss, cpu = timed([*cli, "backup"], code, env)
        out["backup"] = {"wall_s": round(w, 2), "rss_mib": round(rss / 1024, 1), "cpu_s": round(cpu, 2)}
    if "restore" in steps:
        w, rss, cpu = timed([*cli, "restore", "latest", "--target", str(work / "target")], code, env)
        out["restore"] = {"wall_s": round(w, 2), "rss_mib": round(rss / 1024, 1), "cpu_s": round(cpu, 2)}
    shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", default="backup,restore")
    ap.add_argument("--work", type=Path, default=Path("/work/bench-work/peak"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args()
    steps = a.steps.split(",")
    codes = {"old": a.old.resolve(), "new": a.new.resolve()}
    rows = []
    for r in range(a.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for data in a.data:
            for label in order:
                res = one(codes[label], data, a.work / label, steps)
                row = {"round": r + 1, "code": label, "data": str(data), **res}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\nmedians (RSS MiB, wall s; new/old wall ratio per round):")
    for data in a.data:
        for step in steps:
            line = [f"{data.name:10} {step:8}"]
            for label in ("old", "new"):
                got = [x[step] for x in rows if x["code"] == label and x["data"] == str(data)]
                line.append(
                    f"{label} {statistics.median(g['rss_mib'] for g in got):6.1f} MiB "
                    f"{statistics.median(g['wall_s'] for g in got):6.2f} s"
                )
            ratios = []
            for r in range(a.rounds):
                pair = {x["code"]: x[step]["wall_s"] for x in rows if x["round"] == r + 1 and x["data"] == str(data)}
                ratios.append(round(pair["new"] / pair["old"], 2))
            line.append(f"new/old wall {ratios}")
            print("  ".join(line))
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"peak-memory-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps({"old": str(codes["old"]), "new": str(codes["new"]), "rows": rows}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
