"""What holds memory at the peak of one CLI command, run in this process (issue 19).

    cd <checkout> && AXISOR_BACKUP_PASSPHRASE=... .venv/bin/python bench/trace_peak.py \\
        [--tracemalloc FRAMES] -- --config <file> backup

Without --tracemalloc: a thread samples VmRSS every 10 ms and, at each new high, glibc's
mallinfo2 (heap size, in use, free, mmapped): how much of the peak is the C heap's free
but resident memory. With --tracemalloc N: Python allocations traced with N frames, a
snapshot taken at each new high of the traced total (3 % steps), and the top allocators
of the highest one printed by traceback (tracing itself inflates RSS several-fold: read
the RSS figures from a run without it). Output goes to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import threading
import time
import tracemalloc

sys.path.insert(0, os.getcwd())


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
        + ("keepcost",)
    ]


def _rss_mib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("cli", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.cli[1:] if a.cli[:1] == ["--"] else a.cli
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    best: dict = {"rss": 0, "traced": 0, "snap": None}
    t0 = time.monotonic()
    stop = threading.Event()
    if a.tracemalloc:
        tracemalloc.start(a.tracemalloc)

    def watch() -> None:
        while not stop.wait(0.01):
            rss = _rss_mib()
            if rss > best["rss"]:
                m = libc.mallinfo2()
                best.update(
                    rss=rss,
                    at_s=round(time.monotonic() - t0, 1),
                    heap=m.arena >> 20,
                    heap_used=m.uordblks >> 20,
                    heap_free=m.fordblks >> 20,
                    mmapped=m.hblkhd >> 20,
                )
            if a.tracemalloc:
                cur, _ = tracemalloc.get_traced_memory()
                if cur > best["traced"] * 1.03 + (1 << 20):
                    best["traced"] = cur
                    best["snap"] = tracemalloc.take_snapshot()

    threading.Thread(target=watch, daemon=True).start()
    from app.cli import main as cli_main

    rc = cli_main(argv)
    stop.set()
    snap = best.pop("snap")
    best["total_s"] = round(time.monotonic() - t0, 1)
    print(f"rc={rc}; at the RSS peak (MiB, s): {best}", file=sys.stderr)
    if snap is not None:
        print(f"top allocators at {best['traced'] / 2**20:.1f} MiB traced:", file=sys.stderr)
        snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        for st in snap.statistics("traceback")[: a.top]:
            print(f"{st.size / 2**20:8.2f} MiB {st.count:7d} blocks", file=sys.stderr)
            for line in st.traceback.format()[-2 * a.tracemalloc :]:
                print("      " + line, file=sys.stderr)
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
