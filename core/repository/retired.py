"""What is still sealed under a key retired by `key rotate`: shared by `prune --rewrite`
(core/maintenance/reseal.py), which re-seals it, and verify (core/verify/retired.py), which
counts it."""

from __future__ import annotations

from core.errors import DamagedObject
from core.repository.format import AD_SNAPSHOT, SNAPSHOTS
from core.repository.repository import Repository

# (folder, AD prefix, whether the name is the hex of the id bytes) of every sealed object kind
# besides packs, index files and keyrings; an object's AD is the prefix then its name. The
# domains own these constants (pins, tombstones, WAL, drills): they sit above this layer, so
# they are spelled here and tests/core/test_key_rotation.py checks they match.
SEALED_OBJECTS: list[tuple[str, bytes, bool]] = [
    (SNAPSHOTS, AD_SNAPSHOT, True),
    ("wal", b"axisor/wal/v1", False),
    ("pins", b"axisor/pin/v1", False),
    ("forgotten", b"axisor/forgotten/v1", False),
    ("drills", b"axisor/drill/v1", False),
    ("restore-tests", b"axisor/restore-test/v1", False),
]


def current_view(repo: Repository) -> Repository:
    """The same repository opened with the current key only: what it opens needs no rewrite."""
    master = repo.require_full("tell data under the current key from data under a retired one")
    return Repository(repo.backend, master, repo.config, executor=repo.executor)


async def retired_packs(repo: Repository, packs: dict[bytes, tuple[int, list]]) -> tuple[list[bytes], list[str]]:
    """The packs whose header opens with a retired key only, and why each that opens with no
    key at all did not (damaged: counted as neither)."""
    current = current_view(repo)
    old, damaged = [], []
    for pack_id, (size, _entries) in packs.items():
        try:
            await current.read_pack_header(pack_id, size)
            continue
        except DamagedObject:
            pass
        try:
            await repo.read_pack_header(pack_id, size)
            old.append(pack_id)
        except DamagedObject as exc:
            damaged.append(str(exc))
    return old, damaged
