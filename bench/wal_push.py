"""Time of one `axisor-backup wal-push` of a 16 MiB segment, the whole command as the
archive_command runs it (start-up, key derivation, chunking, sealing, fsync), and of the
`test ! -f ARCH/%f && cp %p ARCH/%f` archive_command PostgreSQL's manual shows, on the same
disk in the same run.

    python3 bench/wal_push.py [--runs 10] [--dir /work/bench-data/wal]

Prints a table and writes bench/results/wal-push-<time>.json. Segments are incompressible
(random bytes, the worst case) and each has a new name, as the archiver sends them.
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

ROOT = Path(__file__).resolve().parent.parent
SEG = 16 * 1024 * 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--dir", type=Path, default=Path("/work/bench-data/wal"))
    args = ap.parse_args()
    base = args.dir
    shutil.rmtree(base, ignore_errors=True)
    (base / "segs").mkdir(parents=True)
    (base / "arch").mkdir()
    cfg = base / "config.toml"
    pf = base / "passphrase"
    pf.write_text("bench passphrase\n")
    pf.chmod(0o600)
    cfg.write_text(f'[storage]\nlocal_path = "{base / "repo"}"\npassphrase_file = "{pf}"\n')
    axisor = [sys.executable, "-m", "app.cli", "--config", str(cfg)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    subprocess.run([*axisor, "init"], cwd=ROOT, env=env, check=True, capture_output=True)
    ours, cps = [], []
    for i in range(args.runs):
        name = f"0000000100000000{i + 1:08X}"
        seg = base / "segs" / name
        seg.write_bytes(os.urandom(SEG))
        t = time.perf_counter()
        subprocess.run([*axisor, "wal-push", str(seg)], cwd=ROOT, env=env, check=True, capture_output=True)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(
            [
                "sh",
                "-c",
                f'test ! -f "{base}/arch/{name}" && cp "{seg}" "{base}/arch/{name}" && sync "{base}/arch/{name}"',
            ],
            check=True,
        )
        cps.append(time.perf_counter() - t)
    res = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": args.runs,
        "segment_bytes": SEG,
        "load_average": os.getloadavg(),
        "axisor_seconds": ours,
        "cp_sync_seconds": cps,
        "axisor_median": statistics.median(ours),
        "cp_sync_median": statistics.median(cps),
    }
    out = ROOT / "bench" / "results" / f"wal-push-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(
        f"wal-push 16 MiB (whole command): median {res['axisor_median']:.3f} s, "
        f"min {min(ours):.3f} s, max {max(ours):.3f} s"
    )
    print(f"cp + sync:                       median {res['cp_sync_median']:.3f} s")
    print(f"load average {res['load_average'][0]:.1f}; {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
