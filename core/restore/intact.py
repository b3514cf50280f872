"""Where a partial file still has an intact copy: in the other locations.

After a restore left files partial (core/restore/files.py), each other location is asked,
under a shared lock there: does it hold the same snapshot (same id, so the same tree and
the same content), or else another snapshot of the same source with a file at the same
path and the same content blob ids? Such a copy counts as intact when every one of its
blobs is in that location's index, every pack holding them is there at the size its index
says, and the blobs that failed here are read and opened (decrypted, id-checked) there.
The first such snapshot per location is named (the same snapshot first, then the newest).

The restore's own location is not searched: content is stored by id, so another snapshot
there with the same content refers to the very same stored blobs, and those are what
failed.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import AxisorError
from core.repository.blobs import open_blob
from core.repository.format import BlobType, pack_key
from core.repository.lock import Lock
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import FILE, Tree
from core.restore.outcome import PartialFile
from core.storage.backend import StorageError

MAX_CANDIDATES = 30  # snapshots per location looked into for each partial file


async def _node_content(
    repo: Repository, snap: Snapshot, inner: tuple[bytes, ...], trees: dict[bytes, Tree]
) -> tuple[bytes, ...] | None:
    """The content blob ids of the file at ``inner`` in ``snap``, or None."""
    tree_id = bytes.fromhex(snap.tree)
    for i, name in enumerate(inner):
        tree = trees.get(tree_id)
        if tree is None:
            tree = await repo.load_tree(tree_id)
            if len(trees) > 512:
                trees.clear()
            trees[tree_id] = tree
        node = tree.find(name)
        if node is None:
            return None
        if i == len(inner) - 1:
            return tuple(node.content) if node.type == FILE else None
        if node.subtree is None:
            return None
        tree_id = node.subtree
    return None


async def _readable(repo: Repository, pf: PartialFile, sizes: dict[bytes, int | None]) -> bool:
    locs = []
    for blob_id in pf.content:
        loc = repo.index.lookup(blob_id)
        if loc is None:
            return False
        locs.append((blob_id, loc))
    for pack in {loc.pack_id for _b, loc in locs}:
        if pack not in sizes:
            try:
                sizes[pack] = (await repo.backend.stat(pack_key(pack))).size
            except StorageError:
                sizes[pack] = None
        if sizes[pack] != repo.index.pack_size(pack):
            return False
    for blob_id, loc in locs:
        if blob_id not in pf.failed:
            continue
        key = pack_key(loc.pack_id)
        try:
            sealed = await repo.backend.get(key, loc.offset, loc.length)
            await repo._run(open_blob, repo.cipher, BlobType.DATA, blob_id, sealed, loc.raw_length, key)
        except (AxisorError, OSError):
            return False
    return True


async def search_location(
    name: str, repo: Repository, snap: Snapshot, partial: list[PartialFile], note: Callable[[str], None]
) -> None:
    """Add ``(name, snapshot id)`` to each partial file of ``snap`` that ``name`` holds intact."""
    try:
        async with Lock(repo.backend, exclusive=False, operation="read"):
            await repo.load_index(strict=False)
            snaps, _damaged = await repo.list_snapshots()
            same = [s for s in snaps if s.id == snap.id]
            others = sorted(
                (s for s in snaps if s.source == snap.source and s.id != snap.id), key=lambda s: s.time, reverse=True
            )[:MAX_CANDIDATES]
            sizes: dict[bytes, int | None] = {}
            trees: dict[bytes, Tree] = {}
            for pf in partial:
                for cand in same + others:
                    if cand.id == snap.id:
                        content: tuple[bytes, ...] | None = pf.content
                    else:
                        try:
                            content = await _node_content(repo, cand, pf.inner, trees)
                        except AxisorError:
                            continue  # a damaged tree there: try the next snapshot
                    if content != pf.content:
                        continue
                    if await _readable(repo, pf, sizes):
                        pf.intact.append((name, cand.id))
                    # Same content, same stored blobs there: another snapshot would not differ.
                    break
    except (AxisorError, OSError) as exc:
        note(f"location {name} was not searched for intact copies: {exc}")
