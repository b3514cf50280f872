"""Child processes of the test process, read from /proc (shared by the PostgreSQL tests that
check a backup leaves no pg_dump behind)."""

from __future__ import annotations

import os
from pathlib import Path


def children(name: str) -> list[int]:
    """Our child processes named ``name`` that have not been reaped."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and comm == name:
            found.append(int(stat.parent.name))
    return found
