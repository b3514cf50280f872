"""Peak memory against data size: back up one 1 GB file and one 4 GB file, compare peak RSS.

Memory must stay flat as data grows (issue: the two peaks within 10 % of each other).
Data is BLAKE3 output: unique and incompressible, generated at several GB/s.

    .venv/bin/python bench/memory.py [--work /work/bench-work/memory] [--sizes 1,4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import blake3

ROOT = Path(__file__).resolve().parent.parent


def make_file(path: Path, size: int, seed: bytes) -> None:
    h = blake3.blake3(seed)
    step = 64 * 1024 * 1024
    with open(path, "wb") as f:
        for off in range(0, size, step):
            f.write(h.digest(length=min(step, size - off), seek=off))


def run(cmd: list[str], env: dict) -> tuple[float, int, float]:
    """Wall seconds, peak RSS in KiB, CPU seconds of the tool.

    Measured by /usr/bin/time, not os.wait4: a child's ru_maxrss includes the pages it
    shared with this (large) harness before exec, which would hide the tool's own figure."""
    t = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%M %U %S", *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed: {p.stderr[-500:]}")
    rss, user, sys_ = p.stderr.strip().splitlines()[-1].split()
    return time.monotonic() - t, int(rss), float(user) + float(sys_)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/work/bench-work/memory"))
    ap.add_argument("--sizes", default="1,4", help="file sizes in GB")
    args = ap.parse_args()
    exe = str(ROOT / ".venv" / "bin" / "axisor-backup")
    env = dict(os.environ, AXISOR_BACKUP_PASSPHRASE="bench")
    results = []
    for gb in [float(x) for x in args.sizes.split(",")]:
        work = args.work / f"{gb:g}GB"
        shutil.rmtree(work, ignore_errors=True)
        (work / "src").mkdir(parents=True)
        make_file(work / "src" / "big.bin", int(gb * 1e9), f"seed-{gb}".encode())
        cfg = work / "axisor.toml"
        cfg.write_text(f'[application]\nuser_data = ["{work / "src"}"]\n[storage]\nlocal_path = "{work / "repo"}"\n')
        run([exe, "--config", str(cfg), "init"], env)
        wall, rss, cpu = run([exe, "--config", str(cfg), "backup"], env)
        results.append(
            {
                "size_gb": gb,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "peak_rss_mib": round(rss / 1024, 1),
                "mb_per_s": round(gb * 1e3 / wall, 1),
            }
        )
        print(json.dumps(results[-1]), flush=True)
        shutil.rmtree(work, ignore_errors=True)
    if len(results) >= 2:
        lo, hi = results[0]["peak_rss_mib"], results[-1]["peak_rss_mib"]
        print(
            f"peak RSS {lo} MiB at {results[0]['size_gb']} GB vs {hi} MiB at {results[-1]['size_gb']} GB: "
            f"{(hi / lo - 1) * 100:+.1f} %"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
