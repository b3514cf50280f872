"""A rough check of the headline ratios against restic, for a developer, in under 3 minutes.

    .venv/bin/python bench/smoke.py [--scale 0.1] [--runs 1]

Runs bench/run.py on a small copy of the mixed data set (scale 0.3: about 420 MB in
about 6,600 files, generated once under /work/bench-data) with axisor and restic, and
prints the three headline figures of issue 19 next to their goals: first backup and
restore as restic's wall time over ours (> 1: we are faster) and our peak RSS. It is a
smoke test of direction, not a measurement: small data exaggerates start-up costs and the
host's noise; bench/run.py at scale 1 with --runs 3 is the measurement.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as bench  # noqa: E402

GOALS = {"first": 1.8, "restore": 1.3}
RSS_GOAL_MIB = 150


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="axisor-smoke.") as out:
        rc = bench.main(
            [
                "--scale",
                str(a.scale),
                "--runs",
                str(a.runs),
                "--tools",
                "axisor,restic",
                "--work",
                "/work/bench-work/smoke",
                "--out",
                out,
            ]
        )
        if rc:
            return rc
        [path] = glob.glob(os.path.join(out, "results-*.json"))
        with open(path) as f:
            summ = json.load(f)["summary"]
    ours, theirs = summ["axisor"], summ["restic"]
    print(f"\nsmoke (scale {a.scale}, {a.runs} run(s), {time.monotonic() - started:.0f} s):")
    for step, goal in GOALS.items():
        ratio = theirs[step]["wall"] / ours[step]["wall"]
        print(f"  {step:8} {ratio:5.2f}x restic   (goal >= {goal}x: {'met' if ratio >= goal else 'NOT met'})")
    rss = max(ours[st]["rss_mib"] for st in bench.STEPS)
    print(
        f"  peak RSS {rss:5.0f} MiB       (goal <= {RSS_GOAL_MIB} MiB: {'met' if rss <= RSS_GOAL_MIB else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
