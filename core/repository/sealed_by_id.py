"""Small sealed objects named by an id: the tripwire's pins (core/repository/pins.py) and
the tombstones of deleted snapshots (core/repository/rollback.py), by snapshot id; drill
reports and restore-test records (core/drills/), by their own ids (``open_sealed``). Each is
``<folder>/<id>``, sealed with AD ``<kind's AD>`` || the id (renamed onto another id it does
not authenticate), written once, and read bounded.
"""

from __future__ import annotations

import re

from core import crypto
from core.errors import DamagedObject
from core.repository.repo_config import bounded_get
from core.storage.backend import ObjectExists

SNAPSHOT_ID = re.compile(r"[0-9a-f]{64}")


async def put_once(repo, folder: str, ad: bytes, snapshot_id: str, plain: bytes) -> bool:
    """Write ``folder/<id>``; False when one is there already (the first one stands)."""
    if not SNAPSHOT_ID.fullmatch(snapshot_id):
        raise ValueError(f"{snapshot_id!r} is not a snapshot id")
    try:
        await repo.backend.put(f"{folder}/{snapshot_id}", repo.cipher.seal(plain, ad + snapshot_id.encode("ascii")))
    except ObjectExists:
        return False
    return True


async def open_sealed(repo, folder: str, ad: bytes, snapshot_id: str, limit: int, what: str) -> bytes:
    """The plaintext of ``folder/<id>``: DamagedObject when larger than ``limit`` or when it
    does not authenticate; ObjectNotFound passes through."""
    key = f"{folder}/{snapshot_id}"
    sealed = await bounded_get(repo.backend, key, limit, what)
    try:
        return repo.cipher.open(sealed, ad + snapshot_id.encode("ascii"))
    except crypto.DecryptError as exc:
        raise DamagedObject(key, f"does not authenticate ({exc}); truncated, tampered or renamed") from None


__all__ = ["SNAPSHOT_ID", "open_sealed", "put_once"]
