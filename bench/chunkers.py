"""Measure the content-defined chunker candidates on this machine.

Candidates: pyfastcdc (Cython, FastCDC 2020; the GIL is released in its inner loop) and
fastcdc (iscc's package). Each is timed single-threaded and with two threads on
independent buffers (does it scale across cores, i.e. release the GIL?), on SQL-like
text and on random bytes, at the parameters the repository uses (min 256 KiB, avg 1 MiB,
max 8 MiB). The chosen one must sustain well over 1 GB/s per core.

Runs in a scratch venv so the candidates do not become project dependencies:

    python3 bench/chunkers.py            # creates /work/bench-work/chunkers-venv on first use
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

VENV = Path(os.environ.get("CHUNKERS_VENV", "/work/bench-work/chunkers-venv"))
MIN, AVG, MAX = 256 * 1024, 1024 * 1024, 8 * 1024 * 1024
SIZE = 64 * 1024 * 1024


def data_sets() -> dict[str, bytes]:
    import random

    rnd = random.Random(1)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9))) for _ in range(5000)]
    rows = []
    n = 0
    while n < SIZE:
        row = b"%d\t%s@example.com\t2026-11-%02d 12:%02d:%02d\t%s\n" % (
            n,
            rnd.choice(words),
            rnd.randint(1, 28),
            rnd.randint(0, 59),
            rnd.randint(0, 59),
            b" ".join(rnd.choice(words) for _ in range(8)),
        )
        rows.append(row)
        n += len(row)
    return {"sql": b"".join(rows)[:SIZE], "random": rnd.randbytes(SIZE)}


def cutters() -> dict:
    out = {}
    try:
        from pyfastcdc import FastCDC

        cdc = FastCDC(AVG, min_size=MIN, max_size=MAX, seed=12345)
        out["pyfastcdc"] = lambda buf: sum(1 for _ in cdc.cut_buf(buf))
    except ImportError:
        pass
    try:
        import fastcdc

        out["fastcdc (iscc)"] = lambda buf: sum(1 for _ in fastcdc.fastcdc(buf, MIN, AVG, MAX, fat=False))
    except ImportError:
        pass
    return out


def rate(fn, buf: bytes, threads: int) -> tuple[float, int]:
    """MB/s over all threads, each cutting its own copy for ~1 s."""
    bufs = [bytes(buf) for _ in range(threads)]
    counts = [0] * threads
    done = [0.0] * threads

    def work(i: int) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            counts[i] += fn(bufs[i])
            done[i] += len(bufs[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    return sum(done) / wall / 1e6, sum(counts)


def measure() -> None:
    results = []
    sets = data_sets()
    for name, fn in cutters().items():
        for kind, buf in sets.items():
            one, chunks = rate(fn, buf, 1)
            two, _ = rate(fn, buf, 2)
            results.append(
                {
                    "chunker": name,
                    "data": kind,
                    "mb_s_1_thread": round(one),
                    "mb_s_2_threads": round(two),
                    "scaling": round(two / one, 2),
                    "mean_chunk_kib": round(SIZE / max(1, chunks / max(1, one * 1e6 / SIZE)) / 1024),
                }
            )
    print("| chunker | data | 1 thread MB/s | 2 threads MB/s | scaling |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['chunker']} | {r['data']} | {r['mb_s_1_thread']} | {r['mb_s_2_threads']} | {r['scaling']} |")
    print(json.dumps(results))


def main() -> int:
    if "--inside" in sys.argv:
        measure()
        return 0
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "pyfastcdc>=0.3.1,<0.4", "fastcdc"], check=True)
    return subprocess.run([str(py), __file__, "--inside"]).returncode


if __name__ == "__main__":
    sys.exit(main())
