"""Process-wide tuning every entry point applies before the engine starts any thread."""

from __future__ import annotations

import ctypes
import gc

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_process() -> None:
    tune_malloc()
    # The engine allocates few cyclic objects but many short-lived ones; the default
    # thresholds made the cyclic collector walk the whole heap hundreds of times per
    # backup (17 % of CPU in a profile). Freeze what start-up created and collect rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def tune_malloc() -> None:
    """The C library's heap settings; before any thread starts (a backup's pg_dump is
    started on threads before the program loads: app/backup_quick.py ``_prestart_dump``)."""
    # One malloc arena. With an arena per worker thread, 1 MiB chunk buffers allocated on one
    # thread and freed on another fragmented the arenas: peak RSS grew with the data size
    # (211 MiB at 0.25 GB, 293 MiB at 1 GB). With one arena it stays near 150 MiB and the
    # page-fault (sys) time drops too. The heavy work happens in C with the GIL released,
    # not in malloc, so the shared arena lock costs nothing measurable on 2 cores.
    # dlopen(NULL): the C library the interpreter already runs on. ctypes.util.find_library
    # would run ldconfig and file(1): ~0.2 s before every command, wal-push included.
    # Fixed thresholds: every chunk (up to 4 MiB), window and pack buffer comes from the heap
    # and freed memory stays there, up to 64 MiB, for the next one. With glibc's sliding
    # defaults the heap top was trimmed and refaulted all the time; fresh pages are dear in
    # this VM (../shared/reference/limits.md): 1.5 GB of random data through the chunker
    # took 5.1 s of sys time, 3.0 s with these; 657 MB of dump 55k page faults, 15k. Peak
    # RSS is unchanged (the retained memory is reused, not added).
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
