#!/usr/bin/env python3
"""Bandwidth limits (issue 19): the rate a limited backup upload and restore download
achieve, axisor-backup against restic, on the same data in the same run.

    .venv/bin/python bench/bandwidth.py WORK_DIR [--rates 2048,4096,8192] [--mib 48] [--out FILE.json]

Both tools write a local repository (restic's local backend is limited too). For each set
rate (KiB/s) and tool: a fresh repository, ``backup --limit-upload RATE`` of the data,
then ``restore --limit-download RATE`` of it into an empty folder, each timed. Bytes
moved: an upload is the repository's growth during the backup, a download the whole
repository (a restore of the only snapshot reads every pack, plus a few KiB of keys,
index and snapshot files). Two figures each:

- wall: bytes / the command's wall time. Start-up is in it (a Python process on a busy
  2-core host takes ~1.4 s before its first byte; both tools derive the key with scrypt),
  so this ratio errs low, the more so the shorter the run.
- net: bytes / (wall time - the same tool's ``snapshots`` on that repository, timed right
  after): start-up, key derivation and opening the repository taken out, the same way
  for both tools. That is the limiter's own accuracy.

- counted (axisor only): the bytes through the limiter (ThrottledBackend's payload
  calls of 64 KiB and more, timestamped by a hook this script installs in the child
  process) over the span from the first such call's start to the last one's end: the
  limiter's accuracy as the program sees it, with no start-up at all.

restic runs with --no-cache so that it, too, reads everything from the repository.
The data is incompressible (random files of 6 MiB, as bench/gen.py's bin/ part), so
neither tool's compression changes the bytes. Prints a Markdown table; --out writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bandwidth bench passphrase"
FILE_MIB = 6


@dataclass
class Measure:
    tool: str
    direction: str  # "upload" (backup) or "download" (restore)
    set_kib: int
    bytes: int
    seconds: float
    startup: float  # the same tool's `snapshots` on the repository: start, key, open
    counted_kib: float | None  # axisor: bytes through the limiter / their span

    @property
    def achieved_kib(self) -> float:
        return self.bytes / self.seconds / 1024

    @property
    def ratio(self) -> float:
        return self.achieved_kib / self.set_kib

    @property
    def net_kib(self) -> float:
        return self.bytes / max(1e-9, self.seconds - self.startup) / 1024

    @property
    def net_ratio(self) -> float:
        return self.net_kib / self.set_kib


def make_data(src: Path, mib: int) -> None:
    if src.exists() and sum(p.stat().st_size for p in src.iterdir()) == mib * 1024 * 1024:
        return
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    r = random.Random("bandwidth")
    for i in range(mib // FILE_MIB):
        (src / f"f{i:03d}.bin").write_bytes(r.randbytes(FILE_MIB * 1024 * 1024))
    rest = mib % FILE_MIB
    if rest:
        (src / "rest.bin").write_bytes(r.randbytes(rest * 1024 * 1024))


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run(argv: list[str], env: dict[str, str]) -> float:
    """Run ``argv`` to its end; its wall time."""
    started = time.monotonic()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return took


# Runs the real command line (app.cli.main) with a hook on ThrottledBackend's payload
# calls: each call's start, end and bytes go to $BW_STATS as JSON when the command ends.
_HOOK = """
import json, os, sys, threading, time
import core.storage.throttle as th
calls, lock = [], threading.Lock()
def note(t0, n):
    with lock:
        calls.append((t0, time.monotonic(), n))
put, get, get_sync = th.ThrottledBackend.put, th.ThrottledBackend.get, th.ThrottledLocalBackend.get_sync
async def hooked_put(self, key, data):
    t0 = time.monotonic(); await put(self, key, data); note(t0, th.payload_size(data))
async def hooked_get(self, key, offset=0, length=None):
    t0 = time.monotonic(); data = await get(self, key, offset, length); note(t0, len(data)); return data
def hooked_get_sync(self, key, offset=0, length=None):
    t0 = time.monotonic(); data = get_sync(self, key, offset, length); note(t0, len(data)); return data
th.ThrottledBackend.put, th.ThrottledBackend.get = hooked_put, hooked_get
th.ThrottledLocalBackend.get_sync = hooked_get_sync
from app.cli import main
code = main(sys.argv[1:])
with open(os.environ["BW_STATS"], "w") as f:
    json.dump(calls, f)
sys.exit(code)
"""


def counted_rate(stats: Path) -> float:
    """Bytes/s through the limiter, from the first payload call's start to the last one's
    end; only data-sized calls (64 KiB and more: packs, pack ranges), not the lock, key
    and snapshot files read or written around them."""
    calls = [c for c in json.loads(stats.read_text()) if c[2] >= 64 * 1024]
    span = max(end for _, end, _ in calls) - min(start for start, _, _ in calls)
    return sum(n for _, _, n in calls) / span


class Axisor:
    name = "axisor"

    def __init__(self, work: Path, src: Path) -> None:
        self.repo = work / "axisor-repo"
        self.config = work / "axisor.toml"
        self.config.write_text(f'[application]\nuser_data = ["{src}"]\n[storage]\nlocal_path = "{self.repo}"\n')
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")},
            "AXISOR_BACKUP_PASSPHRASE": PASSWORD,
            "AXISOR_BACKUP_STATE_DIR": str(work / "axisor-state"),
            "PYTHONPATH": str(ROOT),
            "BW_STATS": str(work / "axisor-stats.json"),
        }
        self.stats = work / "axisor-stats.json"

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-c", _HOOK, "--config", str(self.config), *args]

    def counted(self) -> float | None:
        return counted_rate(self.stats) / 1024

    def init(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        run(self.cmd("init"), self.env)

    def backup(self, kib: int) -> float:
        return run(self.cmd("--limit-upload", str(kib), "backup"), self.env)

    def restore(self, kib: int, target: Path) -> float:
        return run(
            self.cmd("--limit-download", str(kib), "restore", "latest", "--target", str(target), "--no-fsync"), self.env
        )

    def startup(self) -> float:
        return run(self.cmd("snapshots"), self.env)


class Restic:
    name = "restic"

    def __init__(self, work: Path, src: Path) -> None:
        self.repo = work / "restic-repo"
        self.src = src
        self.env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": str(self.repo)}

    def init(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        run(["restic", "init", "--no-cache"], self.env)

    def backup(self, kib: int) -> float:
        return run(["restic", "--no-cache", "--limit-upload", str(kib), "backup", str(self.src)], self.env)

    def restore(self, kib: int, target: Path) -> float:
        return run(
            ["restic", "--no-cache", "--limit-download", str(kib), "restore", "latest", "--target", str(target)],
            self.env,
        )

    def startup(self) -> float:
        return run(["restic", "--no-cache", "snapshots"], self.env)

    def counted(self) -> float | None:
        return None


def measure(tool: Axisor | Restic, kib: int, work: Path) -> list[Measure]:
    tool.init()
    before = tree_bytes(tool.repo)
    up = tool.backup(kib)
    up_counted = tool.counted()
    stored = tree_bytes(tool.repo)
    target = work / f"{tool.name}-restored"
    shutil.rmtree(target, ignore_errors=True)
    down = tool.restore(kib, target)
    down_counted = tool.counted()
    shutil.rmtree(target, ignore_errors=True)
    startup = tool.startup()
    return [
        Measure(tool.name, "upload", kib, stored - before, up, startup, up_counted),
        Measure(tool.name, "download", kib, stored, down, startup, down_counted),
    ]


def table(results: list[Measure]) -> str:
    lines = [
        "| set KiB/s | direction | tool | MiB moved | wall s | start-up s | wall / set | net / set | counted / set |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        counted = "" if m.counted_kib is None else f"{m.counted_kib / m.set_kib:.3f}"
        lines.append(
            f"| {m.set_kib} | {m.direction} | {m.tool} | {m.bytes / 1048576:.1f} | {m.seconds:.2f} | "
            f"{m.startup:.2f} | {m.ratio:.3f} | {m.net_ratio:.3f} | {counted} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--rates", default="2048,4096,8192", help="KiB/s, comma-separated")
    ap.add_argument("--mib", type=int, default=48, help="data size in MiB")
    ap.add_argument("--tools", default="axisor,restic")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    src = a.work / "src"
    make_data(src, a.mib)
    tools = {"axisor": Axisor(a.work, src), "restic": Restic(a.work, src)}
    results: list[Measure] = []
    for kib in (int(r) for r in a.rates.split(",")):
        for name in a.tools.split(","):  # the tools alternate within each rate
            for m in measure(tools[name], kib, a.work):
                print(
                    f"{m.tool:7} {m.direction:8} set {m.set_kib:6} KiB/s: {m.bytes / 1048576:6.1f} MiB in "
                    f"{m.seconds:6.2f} s wall = {m.achieved_kib:7.0f} KiB/s ({m.ratio:.3f}); net of "
                    f"{m.startup:.2f} s start-up {m.net_kib:7.0f} KiB/s ({m.net_ratio:.3f})"
                    + (
                        ""
                        if m.counted_kib is None
                        else f"; counted {m.counted_kib:7.0f} KiB/s ({m.counted_kib / m.set_kib:.3f})"
                    ),
                    flush=True,
                )
                results.append(m)
    print()
    print(table(results))
    if a.out:
        a.out.write_text(
            json.dumps(
                {
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "mib": a.mib,
                    "results": [
                        {
                            **asdict(m),
                            "achieved_kib": round(m.achieved_kib, 1),
                            "ratio": round(m.ratio, 4),
                            "net_kib": round(m.net_kib, 1),
                            "net_ratio": round(m.net_ratio, 4),
                        }
                        for m in results
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
