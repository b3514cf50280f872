"""Peak RSS of `backup` and `restore` of many small files in ONE folder, old code against new.

Issue 13 asks that memory not get worse with the metadata work ("restoring 100,000 files in
one folder took 314 MB RSS (backup 277 MB)"). This runs the same data through two checkouts
with the same interpreter, alternating, and prints peak RSS (GNU time, %M) per run:

    git worktree add --detach /tmp/h7-old 977de91          # the code before the work
    .venv/bin/python bench/many_files_memory.py --old /tmp/h7-old --new . --rounds 3

Each checkout's CLI runs as ``python -m app.cli`` with cwd = that checkout, so it imports
that checkout's code (checked: the script prints ``app.cli.__file__`` for each). Each round
makes a fresh repository (``init``), backs up the folder, restores it into an empty target.
Files: N files of 200-1,999 bytes (seeded), one folder, fixed mtimes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PASS = "bench many files passphrase"


def make_files(src: Path, n: int) -> None:
    """n files of 200-1,999 seeded bytes in ``src``, fixed mtimes; kept between runs."""
    marker = src.parent / f".complete-{n}"
    if marker.exists():
        return
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    r = random.Random(42)
    for i in range(n):
        p = src / f"file-{i:06d}.txt"
        p.write_bytes(r.randbytes(r.randrange(200, 2000)))
        os.utime(p, ns=(1_700_000_000_000_000_000 + i, 1_700_000_000_000_000_000 + i))
    marker.write_text("")


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, int, float]:
    """Wall s, peak RSS KiB, CPU s of the command (GNU time: the child's own figure)."""
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/h7-bench-many"))
    args = ap.parse_args()
    work = args.work
    src = work / "data" / "src"
    make_files(src, args.files)
    py = sys.executable
    results: list[dict] = []
    for label, tree in (("old", args.old), ("new", args.new)):
        p = subprocess.run(
            [py, "-c", "import app.cli; print(app.cli.__file__)"],
            cwd=tree.resolve(),
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"# {label}: {p.stdout.strip()}", flush=True)
    for rnd in range(args.rounds):
        order = [("old", args.old), ("new", args.new)]
        if rnd % 2:
            order.reverse()
        for label, tree in order:
            run = work / f"run-{label}"
            shutil.rmtree(run, ignore_errors=True)
            (run / "state").mkdir(parents=True)
            cfg = run / "config.toml"
            cfg.write_text(
                f"[application]\nuser_data = [{json.dumps(str(src))}]\n"
                f"[storage]\nlocal_path = {json.dumps(str(run / 'repo'))}\n"
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
            env.update(
                AXISOR_BACKUP_PASSPHRASE=PASS, AXISOR_BACKUP_STATE_DIR=str(run / "state"), PYTHONDONTWRITEBYTECODE="1"
            )
            cli = [py, "-m", "app.cli", "--config", str(cfg)]
            cwd = tree.resolve()
            timed([*cli, "init"], cwd, env)
            for step, extra in (("backup", []), ("restore", ["latest", "--target", str(run / "target")])):
                wall, rss, cpu = timed([*cli, step, *extra], cwd, env)
                row = {
                    "round": rnd + 1,
                    "code": label,
                    "step": step,
                    "wall_s": round(wall, 1),
                    "cpu_s": round(cpu, 1),
                    "peak_rss_mib": round(rss / 1024, 1),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
            shutil.rmtree(run, ignore_errors=True)
    print("\n| step | code | peak RSS MiB (each round) | median | CPU s median |")
    print("|---|---|---|---|---|")
    for step in ("backup", "restore"):
        for label in ("old", "new"):
            rows = [r for r in results if r["step"] == step and r["code"] == label]
            rss = [r["peak_rss_mib"] for r in rows]
            print(
                f"| {step} | {label} | {', '.join(map(str, rss))} | {statistics.median(rss)} | "
                f"{statistics.median(r['cpu_s'] for r in rows)} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
