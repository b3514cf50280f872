"""Who a process is: its pid and the kernel's start time of that pid, so a recycled pid
is not mistaken for the process that wrote a record (job owners, repository locks)."""

from __future__ import annotations

import os


def process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), "" when unknown or gone."""
    if pid <= 0:
        return ""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except (OSError, ValueError, OverflowError):
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def have_proc() -> bool:
    """Whether /proc tells start times here (Linux)."""
    return os.path.isdir("/proc/self")


__all__ = ["have_proc", "process_start"]
