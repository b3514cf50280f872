"""Giving the C heap's free pages back to the kernel where much was just freed (issue 19).

app/process.py keeps freed memory in the heap (one arena, a 64 MiB trim threshold): fresh
pages are dear in this VM, and reused ones are not. But a backup's buffers -- chunks of
128 KiB to 4 MiB, their compressed and sealed forms, chunker windows -- live for different
times, so the holes they leave are seldom the size the next one asks for and the heap grows
past what is live: at the peak of a first backup of the mixed bench set the heap was
109 MiB, 79 MiB of it free and all of it resident. glibc's malloc_trim also returns the
whole free pages inside the heap (madvise), not just its top. Called every two stored packs
(core/repository/repository.py, TRIM_EVERY_PACKS): peak RSS ~148 -> ~139 MiB on that set,
~178 -> ~170 MiB on a tree of system folders; the price is page faults when the returned
pages are used again (bench/RESULTS.md, "Peak memory (issue 19)").
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _find_trim() -> Callable[[int], int] | None:
    try:
        # dlopen(NULL): the C library the interpreter runs on (as app/process.py does).
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: nothing to give back this way


_trim = _find_trim()


def release_free_pages() -> bool:
    """Return the heap's free pages to the kernel; False where there is no malloc_trim."""
    if _trim is None:
        return False
    _trim(0)
    return True
