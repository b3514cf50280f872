"""Leftovers of interrupted uploads: ``.tmp-*`` files (local, SFTP, FTP) and incomplete
multipart uploads (S3). Nothing in the repository refers to them; a live writer is still
filling the young ones, so only those untouched for ``TEMP_SAFE_AGE`` go.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from core.storage.backend import Backend, TempInfo, delete_temporary, list_temporary

# A writer rewrites its temporary file (or adds parts) continuously until it renames or
# completes it, and holds a lock refreshed every 5 minutes: one untouched for 6 hours
# belongs to a process that is gone.
TEMP_SAFE_AGE = 6 * 3600.0


@dataclass
class TempCleanup:
    removed: list[TempInfo] = field(default_factory=list)  # (would be) removed
    kept: list[TempInfo] = field(default_factory=list)  # younger than the safe age

    @property
    def removed_bytes(self) -> int:
        return sum(t.size or 0 for t in self.removed)

    def to_dict(self) -> dict:
        return {
            "removed": [t.key for t in self.removed],
            "removed_bytes": self.removed_bytes,
            "kept_young": len(self.kept),
        }


async def clean_temporary(
    backend: Backend, *, older_than: float = TEMP_SAFE_AGE, dry_run: bool = False, now: float | None = None
) -> TempCleanup:
    """Delete (or with ``dry_run`` only list) the leftovers older than ``older_than`` seconds."""
    now = time.time() if now is None else now
    out = TempCleanup()
    for t in await list_temporary(backend):
        if now - t.modified < older_than:
            out.kept.append(t)
            continue
        if not dry_run:
            await delete_temporary(backend, t.key)
        out.removed.append(t)
    return out
