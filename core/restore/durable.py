"""Restores are durable before they report success: what was written is flushed to disk.

One syncfs(2) of the target's filesystem after the last file, instead of an fsync per file:
it flushes the same data (every dirty page and the folder entries of that filesystem) at
the cost of one call, where 100,000 fsyncs of small files would multiply a restore's time.
The guarantee: when restore says it succeeded, a power loss does not take back what it
wrote (docs/CLI.md, restore, --no-fsync).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from core.errors import AxisorError
from core.text import shown

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def flush_filesystem(target: Path) -> None:
    """Flush the filesystem holding ``target`` (syncfs; os.sync where libc has none)."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise AxisorError(f"cannot open {shown(str(target))} to flush the restore to disk: {exc.strerror}") from None
    try:
        if _syncfs is None:
            os.sync()
            return
        if _syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise AxisorError(
                f"the restore into {shown(str(target))} could not be flushed to disk: "
                f"{os.strerror(err)}; its files may not survive a power loss"
            )
    finally:
        os.close(fd)
