"""Process-wide tuning every entry point applies before the engine starts any thread."""

from __future__ import annotations

import ctypes
import gc

_M_ARENA_MAX = -8


def tune_process() -> None:
    # One malloc arena. With an arena per worker thread, 1 MiB chunk buffers allocated on one
    # thread and freed on another fragmented the arenas: peak RSS grew with the data size
    # (211 MiB at 0.25 GB, 293 MiB at 1 GB). With one arena it stays near 150 MiB and the
    # page-fault (sys) time drops too. The heavy work happens in C with the GIL released,
    # not in malloc, so the shared arena lock costs nothing measurable on 2 cores.
    # dlopen(NULL): the C library the interpreter already runs on. ctypes.util.find_library
    # would run ldconfig and file(1): ~0.2 s before every command, wal-push included.
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
    # The engine allocates few cyclic objects but many short-lived ones; the default
    # thresholds made the cyclic collector walk the whole heap hundreds of times per
    # backup (17 % of CPU in a profile). Freeze what start-up created and collect rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
