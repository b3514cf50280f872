"""What every rewriter of the repository shares (prune, repair): the check before each
destructive step that nobody else holds a live lock, and writing a new index.

Both delete what other processes may rely on (index files, packs, snapshots). The
exclusive lock they hold is checked again before each deletion, because a lock file
written by another host after ours (clock skew, a slow listing) is the one case the lock
alone cannot rule out.
"""

from __future__ import annotations

import os
import socket

from core.errors import LockHeld
from core.repository.format import AD_INDEX, INDEX
from core.repository.index import Index, IndexedPack, encode_index
from core.repository.lock import Lock, list_locks
from core.repository.repository import INDEX_FILE_ENTRIES, Repository

# Entries per index file, as every index writer keeps them (a pack's entries are never split).
INDEX_ENTRIES_PER_FILE = INDEX_FILE_ENTRIES


async def ensure_sole_holder(lock: Lock, operation: str, step: str, nothing_lost: str) -> None:
    """Raise LockHeld (naming the other holder) when anyone else holds a live lock."""
    me = (socket.gethostname(), os.getpid())
    for other in await list_locks(lock.backend):
        if other.key == lock.key or (other.host, other.pid) == me or other.is_stale():
            continue
        raise LockHeld(
            f"{operation} stopped before {step}: {lock.backend.location} is also locked by "
            f"{other.describe()}; {nothing_lost}. Run {operation} again later."
        )


async def store_index(repo: Repository, packs: list[IndexedPack]) -> str:
    """Seal and store one index file for ``packs``; its key. Content-named, so storing the
    same file twice is harmless."""
    return await repo.store_object(INDEX, AD_INDEX, encode_index(packs))


async def write_index(repo: Repository, packs: list[IndexedPack]) -> tuple[Index, set[str]]:
    """Store ``packs`` as index files of about INDEX_ENTRIES_PER_FILE entries each; the new
    in-memory index and the keys written (the caller deletes the old files after them)."""
    new_index = Index()
    new_files: set[str] = set()
    batch: list[IndexedPack] = []
    count = 0
    for pack in packs:
        batch.append(pack)
        new_index.add_pack(*pack)
        count += len(pack[2])
        if count >= INDEX_ENTRIES_PER_FILE:
            new_files.add(await store_index(repo, batch))
            batch, count = [], 0
    if batch:
        new_files.add(await store_index(repo, batch))
    return new_index, new_files
