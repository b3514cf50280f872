"""Any folder (e.g. a copy of system folders) against restic: first backup, unchanged
re-run, and restore with validation on (the default), with what validation costs.

    python3 bench/folders.py --data /work/bench-data/sys [--runs 3]

Per run, each tool in turn: a fresh repository, the first backup, an unchanged re-run;
then, interleaved, restic restore, axisor restore (validation as written, the default),
axisor restore --read-back, axisor restore --no-validate, each into an empty folder
(page cache warm for all). The first axisor restore of run 1 is compared with the source
by SHA-256 (bench/run.py's check). Prints medians and ratios (restic wall / axisor wall:
> 1 means axisor is faster) and writes bench/results/folders-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as bench  # noqa: E402  (bench/run.py: run_timed, warm, verify_restore, TOOLS, fill)

VARIANTS = {
    "restic": ("restic", []),
    "axisor": ("axisor", []),
    "axisor --read-back": ("axisor", ["--read-back"]),
    "axisor --no-validate": ("axisor", ["--no-validate"]),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", default="/work/bench-work/folders")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--axisor-bin", default=os.path.join(bench.REPO_ROOT, ".venv/bin/axisor-backup"))
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    data = os.path.abspath(a.data)
    work = a.work
    bench.rm(work)
    os.makedirs(os.path.join(work, "logs"))
    passphrase = "bench passphrase for restore validation"
    envs: dict[str, dict] = {}
    ctxs: dict[str, dict] = {}
    backups: dict[str, list[dict]] = {f"{t} {s}": [] for s in ("first", "unchanged") for t in ("restic", "axisor")}

    def backup(run_no: int) -> None:
        for tool in ("restic", "axisor"):
            spec = bench.TOOLS[tool]
            ctxs[tool], envs[tool] = bench.prepare_tool(tool, a.axisor_bin, data, work, passphrase)
            for step in ("init", "first", "unchanged"):
                argv = bench.fill(spec["init" if step == "init" else "backup"], ctxs[tool])
                os.sync()
                m = bench.run_timed(
                    argv, envs[tool], None, os.path.join(work, "logs", f"{tool}-{step}-{run_no}.log"), a.timeout
                )
                if m["rc"] != 0:
                    raise SystemExit(f"{tool} {step} failed: see {work}/logs/{tool}-{step}-{run_no}.log")
                if step != "init":
                    backups[f"{tool} {step}"].append(m)
                print(
                    f"  run {run_no} {tool:7} {step:9} {m['wall']:7.2f} s wall {m['cpu']:7.2f} s cpu "
                    f"{m['rss_mib']:6.1f} MiB",
                    file=sys.stderr,
                    flush=True,
                )

    files, size = bench.tree_stats(data)
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for run_no in range(1, a.runs + 1):
        bench.warm(data)
        backup(run_no)
        for variant, (tool, extra) in VARIANTS.items():
            target = os.path.join(work, "target")
            bench.rm(target)
            os.makedirs(target)
            argv = bench.fill(bench.TOOLS[tool]["restore"], dict(ctxs[tool], target=target)) + extra
            os.sync()
            load = os.getloadavg()[0]
            m = bench.run_timed(
                argv,
                envs[tool],
                None,
                os.path.join(work, "logs", f"{variant.replace(' ', '')}-{run_no}.log"),
                a.timeout,
            )
            if m["rc"] != 0:
                raise SystemExit(f"{variant} restore failed (exit {m['rc']}): see {work}/logs")
            m["loadavg1_before"] = load
            if run_no == 1 and variant == "axisor":
                m["verify"] = bench.verify_restore(data, target)
            results[variant].append(m)
            print(
                f"  run {run_no} {variant:22} {m['wall']:7.2f} s wall {m['cpu']:7.2f} s cpu "
                f"{m['rss_mib']:6.1f} MiB  load {load:.1f}",
                file=sys.stderr,
                flush=True,
            )
    bench.rm(os.path.join(work, "target"))
    med = {v: statistics.median(m["wall"] for m in ms) for v, ms in results.items()}
    print(f"\nData: {data}: {files:,} files, {size / 1e9:.2f} GB; medians of {a.runs} runs\n")
    print("| restore | wall s (min–max) | CPU s | peak RSS MiB | restic wall / this wall |")
    print("|---|---|---|---|---|")
    for v, ms in results.items():
        walls = [m["wall"] for m in ms]
        print(
            f"| {v} | {med[v]:.2f} ({min(walls):.2f}–{max(walls):.2f}) | "
            f"{statistics.median(m['cpu'] for m in ms):.2f} | {max(m['rss_mib'] for m in ms):.0f} | "
            f"{med['restic'] / med[v]:.2f}x |"
        )
    cost = med["axisor"] / med["axisor --no-validate"] - 1
    cost_rb = med["axisor --read-back"] / med["axisor --no-validate"] - 1
    print("\n| backup | wall s (min–max) | CPU s | peak RSS MiB | restic wall / axisor wall |")
    print("|---|---|---|---|---|")
    bmed = {k: statistics.median(m["wall"] for m in ms) for k, ms in backups.items()}
    for k, ms in backups.items():
        walls = [m["wall"] for m in ms]
        tool, step = k.split()
        print(
            f"| {k} | {bmed[k]:.2f} ({min(walls):.2f}–{max(walls):.2f}) | "
            f"{statistics.median(m['cpu'] for m in ms):.2f} | {max(m['rss_mib'] for m in ms):.0f} | "
            f"{bmed['restic ' + step] / bmed['axisor ' + step]:.2f}x |"
        )
    print(f"\nvalidation cost: as written {cost:+.1%}, read back {cost_rb:+.1%} (vs --no-validate)")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(bench.HERE, "results", f"folders-{stamp}.json")
    with open(out, "w") as f:
        json.dump(
            {
                "when": stamp,
                "data": data,
                "files": files,
                "bytes": size,
                "git": bench.git_rev(),
                "runs": results,
                "backups": backups,
                "median_wall": med,
                "median_backup_wall": bmed,
                "validation_cost": cost,
                "read_back_cost": cost_rb,
            },
            f,
            indent=1,
        )
    print(f"raw: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
