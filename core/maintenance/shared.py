"""What prune and repair share: the check before each destructive step that nobody else
holds a live lock, and writing one index file.

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
from core.repository.index import IndexedPack, encode_index
from core.repository.lock import Lock, list_locks
from core.repository.repository import Repository
from core.storage.backend import ObjectExists


async def ensure_sole_holder(lock: Lock, operation: str, step: str, nothing_lost: str) -> None:
    """Raise LockHeld (naming the other holder) when anyone else holds a live lock."""
    me = (socket.gethostname(), os.getpid())
    for other in await list_locks(lock.backend):
        if other.key == lock.key or (other.host, other.pid) == me or other.is_stale():
            continue
        raise LockHeld(f"{operation} stopped before {step}: {lock.backend.location} is also locked by "
                       f"{other.describe()}; {nothing_lost}. Run {operation} again later.")


async def store_index(repo: Repository, packs: list[IndexedPack]) -> str:
    """Seal and store one index file for ``packs``; its key. Content-named, so storing the
    same file twice is harmless."""
    plain = encode_index(packs)
    index_id = repo.cipher.blob_id(plain)
    key = f"{INDEX}/{index_id.hex()}"
    try:
        await repo.backend.put(key, repo.cipher.seal(plain, AD_INDEX + index_id))
    except ObjectExists:
        pass  # content-named: an identical index file is already durable
    return key
