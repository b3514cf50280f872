"""Restore progress: files and bytes written of what the restore plans will write.

Exact totals: a plan (core/restore/plan.py) knows every file it creates or overwrites and
its size. The writes happen on worker threads; reports reach the caller on its event loop,
at most every 0.1 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.repository.tree import FILE


@dataclass(frozen=True, slots=True)
class RestoreProgress:
    """Files and bytes written of what the plans say will be written (exact: the plan
    knows every file to create or overwrite), and the source being restored."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    current: str


class RestoreMeter:
    """Adds up the written files across the snapshots of one restore and reports them,
    at most every 0.1 s, on the event loop (the writes happen on worker threads)."""

    def __init__(self, plans: list, on_progress: Callable[[RestoreProgress], None] | None) -> None:
        writes = [c for p in plans for c in p.changes if c.kind == FILE and c.action in ("create", "overwrite")]
        self.files_total = len(writes) + sum(p.bulk_files for p in plans)
        self.bytes_total = sum(c.size for c in writes) + sum(p.bulk_bytes for p in plans)
        self.on_progress = on_progress
        self.loop = asyncio.get_running_loop()
        self.base_files = self.base_bytes = 0
        self.last = 0.0

    def written(self, source: str) -> Callable[[int, int], None] | None:
        on_progress = self.on_progress
        if on_progress is None:
            return None

        def tell(files: int, nbytes: int) -> None:
            now = time.monotonic()
            if now - self.last < 0.1:
                return
            self.last = now
            self.loop.call_soon_threadsafe(
                on_progress,
                RestoreProgress(
                    self.base_files + files, self.files_total, self.base_bytes + nbytes, self.bytes_total, source
                ),
            )

        return tell

    def finished(self, files: int, nbytes: int, source: str = "") -> None:
        """A snapshot is restored (called on the loop): its figures are final, reported now
        whatever the throttle held back."""
        self.base_files += files
        self.base_bytes += nbytes
        if self.on_progress is not None:
            self.on_progress(
                RestoreProgress(self.base_files, self.files_total, self.base_bytes, self.bytes_total, source)
            )


__all__ = ["RestoreMeter", "RestoreProgress"]
