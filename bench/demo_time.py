"""How long `scripts/demo` takes to reach the console, and how long its backup can be watched.

The committed tree is cloned into a scratch folder (never run in a checkout whose .venv is
shared: bootstrap would rebuild it), and `scripts/demo` runs there in an 80x24
pseudo-terminal, as a person would start it: `scripts/bootstrap --demo` makes a new .venv
(its packages come from uv's cache: "after the first download"), the command-line steps
run, then PostgreSQL, the data to watch, the daemon and the console. The demo is given
`--timing FILE --quit-after-backup`: it notes the console's first frame and the start and
end of the console's backup, and leaves when that backup ends. Each run after the first
reuses the clone (its .venv exists): the time of a second `scripts/demo`.

    .venv/bin/python bench/demo_time.py [--runs 2] [--watch-mib 3584] [--keep]

Prints one JSON object per run and a Markdown table; writes bench/results/demo-<time>.json.
Targets (issue 18): the console's first frame under 30 s from `scripts/demo`, and a
backup to watch for about 20 s.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = re.compile(rb"(?:== \[\s*[\d.]+s\] |bootstrap \[\s*\d+s\] )([^\r\n\x1b]*)")


def run_once(clone: Path, work: Path, watch_mib: int, timeout: float) -> dict:
    timing = work / "timing.jsonl"
    timing.unlink(missing_ok=True)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXISOR_BACKUP", "VIRTUAL_ENV", "TMUX", "UV_"))}
    env["TERM"] = "xterm-256color"
    started = time.time()
    proc = subprocess.Popen(
        [
            "scripts/demo",
            "--timing",
            str(timing),
            "--quit-after-backup",
            "--watch-mib",
            str(watch_mib),
            str(work / "demo"),
        ],
        cwd=clone,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    steps: list[tuple[float, str]] = []
    log = open(work / "pty.log", "wb")  # everything the demo wrote, for when it fails
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: nothing holds the terminal any more; the process is ending
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                break
            log.write(data)
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                m = STEP.search(line)
                if m:
                    steps.append((round(time.time() - started, 1), m.group(1).decode(errors="replace").strip()))
            buf = buf[-4096:]  # the console's frames have no newline: keep the buffer small
        if proc.poll() is None:
            proc.kill()
            tail = (work / "pty.log").read_bytes()[-3000:].decode(errors="replace")
            raise SystemExit(f"the demo did not finish within {timeout:.0f} s; its last output:\n{tail}")
        # Drain what is left (the demo's last lines) so the child is not blocked on the pty.
        while select.select([master], [], [], 0.1)[0]:
            try:
                if not os.read(master, 65536):
                    break
            except OSError:
                break
    finally:
        os.close(master)
        log.close()
    if proc.wait() != 0:
        tail = (work / "pty.log").read_bytes()[-3000:].decode(errors="replace")
        raise SystemExit(f"scripts/demo exited {proc.returncode}; its last output:\n{tail}")
    marks = [json.loads(line) for line in timing.read_text().splitlines()]
    at = {m["event"]: m for m in marks}
    frame = at["console first frame"]["at"]
    backup = at.get("backup finished", {})
    watch = (backup["finished"] - backup["started"]) if backup.get("started") and backup.get("finished") else None
    return {
        "to_console_seconds": round(frame - started, 1),
        "bootstrap_seconds": round(at["demo started"]["at"] - started, 1),
        "demo_steps_seconds": round(at["console starting"]["at"] - at["demo started"]["at"], 1),
        # CPU of the demo's own process and the programs it waited for, from its start to the
        # console's first frame (the daemon and the data writer run beside it, not counted).
        "demo_cpu_to_console_seconds": round(at["console first frame"]["cpu"] - at["demo started"]["cpu"], 1),
        "watchable_backup_seconds": None if watch is None else round(watch, 1),
        "backup_state": backup.get("state"),
        "backup_bytes": backup.get("bytes"),
        "steps": steps,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--watch-mib", type=int, default=3584)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = p.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="axisor-demo-bench."))
    clone = scratch / "axisor"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout.strip()
    results = []
    try:
        for i in range(args.runs):
            r = run_once(clone, scratch, args.watch_mib, args.timeout)
            r["run"] = "fresh clone, new .venv" if i == 0 else "again"
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\ncommit {commit}, load average {load:.1f} at the end\n")
    print("| run | to console | of which bootstrap | demo steps | demo CPU to console | watchable backup | bytes |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['to_console_seconds']} s | {r['bootstrap_seconds']} s | {r['demo_steps_seconds']} s | "
            f"{r['demo_cpu_to_console_seconds']} s | {r['watchable_backup_seconds']} s ({r['backup_state']}) | "
            f"{r['backup_bytes']} |"
        )
    out = ROOT / "bench" / "results" / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps({"commit": commit, "load_average": load, "watch_mib": args.watch_mib, "runs": results}, indent=1)
        + "\n"
    )
    print(f"\n{out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
