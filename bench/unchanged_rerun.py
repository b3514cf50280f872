#!/usr/bin/env python3
"""Time an unchanged re-run: back up a tree of many small files, then back it up again.

    .venv/bin/python bench/unchanged_rerun.py WORK_DIR [--files 50000] [--per-dir 100] [--rounds 3]

The second and later runs find every file unchanged (same size, mtime, ctime, inode), so
they measure the walk itself: listing, stat, comparing with the reference tree, carrying
attributes over, writing trees. Files are 512-8191 bytes (like bench/gen.py's conf/ part),
deterministic. Prints one line per round and the medians (wall and process CPU) of the re-runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def generate(root: Path, files: int, per_dir: int) -> None:
    r = random.Random("unchanged-rerun")
    root.mkdir(parents=True)
    for i in range(files):
        d = root / f"d{i // per_dir // 50:03d}" / f"s{i // per_dir:05d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.conf").write_bytes(r.randbytes(r.randint(512, 8191)))


async def run(work: Path, src: Path, rounds: int) -> list[float]:
    from core import crypto
    from core.backup.run import run_backup
    from core.config import SourceSpec
    from core.repository.repository import Repository
    from core.storage.local import LocalBackend

    crypto.SCRYPT_N = 2**10
    repo_dir = work / "repo"
    await Repository.create(LocalBackend(repo_dir), "pw")
    spec = SourceSpec(name="application/user_data", category="application", paths=(src,), exclude=(), retention_days=30)
    times: list[float] = []
    cpu: list[float] = []
    for i in range(rounds + 1):
        repo = await Repository.open(LocalBackend(repo_dir), "pw")
        t0, c0 = time.perf_counter(), time.process_time()
        result = await run_backup(repo, [spec], kind="incremental")
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        s = result.results[0].snapshot.summary
        print(
            f"round {i}: {times[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU; files {s.total_files}, unmodified {s.files_unmodified}",
            flush=True,
        )
    return times[1:], cpu[1:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--per-dir", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    src = a.work / "src"
    if not src.exists():
        generate(src, a.files, a.per_dir)
    shutil.rmtree(a.work / "repo", ignore_errors=True)
    wall, cpu = asyncio.run(run(a.work, src, a.rounds))
    print(
        f"unchanged re-run, median of {len(wall)}: {statistics.median(wall):.2f} s wall, "
        f"{statistics.median(cpu):.2f} s CPU (the CPU figure holds up better on a busy machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
