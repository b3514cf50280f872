"""Prune's plan: what goes and what stays, decided from what prune read. Pure: no I/O.

``plan_prune`` takes retention's decisions (core.maintenance.retention.apply, pure too),
what step 1 of prune found on storage (``Holdings``) and the trees the kept snapshots
reach (``TreeRefs`` by tree id, loaded by prune before it plans), and returns a frozen
``PrunePlan``: the snapshots and WAL files to forget, and each indexed pack's fate (stay,
delete, repack with the blobs to copy, or unindex when it is gone from storage). Anything
a kept snapshot or WAL file needs that is in no index or only in missing or truncated
packs raises PruneRefused: prune then changes nothing.

The executor (core.maintenance.prune) carries the plan out; ``--dry-run`` shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.errors import AxisorError, DamagedObject
from core.maintenance.retention import Decision, RetentionPlan, is_base_backup
from core.repository.rewrite import INDEX_ENTRIES_PER_FILE
from core.repository.format import pack_key
from core.repository.index import Index, PackEntry
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE, Tree

# A pack whose unused bytes exceed this share is rewritten with only its used blobs.
REPACK_UNUSED_FRACTION = 0.5

REPAIR_HINT = (
    "Data is lost: `axisor-backup repair index` drops the lost packs from the index (the next "
    "backup stores again what is still on disk), then `axisor-backup repair snapshots` rewrites "
    'the snapshots that lost data; docs/OPERATIONS.md, "A pack was lost".'
)


class PruneRefused(AxisorError):
    """Prune found the repository damaged and changed nothing (run verify)."""

    exit_code = DamagedObject.exit_code


@dataclass(frozen=True, slots=True)
class PackInfo:
    """An indexed pack: its size by the index and every blob entry the index lists."""

    size: int
    entries: tuple[PackEntry, ...]


@dataclass(frozen=True, slots=True)
class Holdings:
    """What step 1 of prune read from storage; no decision in it. Never mutated."""

    packs: Mapping[bytes, PackInfo]  # every indexed pack (the first index file naming one wins)
    on_storage: Mapping[bytes, int]  # pack id -> size, from the listing of data/
    index_files: frozenset[str]  # the index files loaded (and written by adoption)
    wal: Mapping[str, tuple[str, ...]]  # WAL file name -> the hex blob ids its manifest names

    @property
    def unindexed(self) -> int:
        """Packs on storage that no index names."""
        return sum(1 for pid in self.on_storage if pid not in self.packs)

    def index(self) -> Index:
        """An in-memory index of every pack, to load trees through."""
        index = Index()
        for pid, p in self.packs.items():
            index.add_pack(pid, p.size, list(p.entries))
        index.files = set(self.index_files)
        return index


@dataclass(frozen=True, slots=True)
class TreeRefs:
    """What one tree points at: its folders' trees and its files' data blobs."""

    subtrees: tuple[bytes, ...]
    blobs: tuple[bytes, ...]

    @classmethod
    def of(cls, tree: Tree) -> TreeRefs:
        subtrees = tuple(n.subtree for n in tree.nodes if n.type == DIR and n.subtree is not None)
        blobs = tuple(b for n in tree.nodes if n.type == FILE for b in n.content)
        return cls(subtrees, blobs)


@dataclass(frozen=True, slots=True)
class WalPlan:
    remove: tuple[str, ...]
    kept: int
    keep_from: str | None  # start WAL file of the oldest kept base backup
    reason: str


@dataclass(frozen=True, slots=True)
class PrunePlan:
    decisions: tuple[Decision, ...]  # every snapshot, oldest first
    forget: tuple[Snapshot, ...]
    wal: WalPlan
    used: frozenset[bytes]  # every blob a kept snapshot or WAL file needs
    stay: tuple[bytes, ...]  # packs kept as they are
    delete: tuple[bytes, ...]  # packs holding nothing used
    repack: tuple[tuple[bytes, tuple[PackEntry, ...]], ...]  # mostly unused packs, with the entries to copy
    missing: tuple[bytes, ...]  # indexed packs gone from storage: only unindexed
    bytes_used: int
    bytes_unused: int
    rewrite_index: bool  # the index files are rewritten (anything unindexed, or too many files)
    index_files_after: int  # how many index files there will be (written by the plan's packs)

    @property
    def gone(self) -> tuple[bytes, ...]:
        """The packs deleted at the end: unused ones, then the repacked ones."""
        return self.delete + tuple(pid for pid, _ in self.repack)


def _segment_of(name: str) -> str | None:
    """The 24-digit segment a WAL file belongs to; None for timeline .history files."""
    if name.endswith(".history"):
        return None
    return name[:24]


def _segno(segment: str, segment_size: int) -> tuple[int, int]:
    per_log = 0x100000000 // segment_size
    return int(segment[:8], 16), int(segment[8:16], 16) * per_log + int(segment[16:24], 16)


def plan_wal(names: Iterable[str], kept: list[Snapshot]) -> WalPlan:
    """Which archived WAL files no kept base backup can need.

    Recovery from a base backup reads WAL forward from its start segment and never before
    it, on any timeline, so a segment numbered below every kept base backup's start segment
    is needed by none of them. Timeline history files are tiny and recovery reads them to
    find its way: they always stay. Without any kept base backup nothing is removed."""
    names = list(names)
    starts: list[tuple[int, str, int]] = []
    for s in (s for s in kept if is_base_backup(s)):
        start = s.metadata.get("start_wal_file")
        size = s.metadata.get("wal_segment_size") or 16 * 1024 * 1024
        if not isinstance(start, str) or len(start) != 24 or not isinstance(size, int) or size <= 0:
            return WalPlan((), len(names), None, f"base backup {s.short_id} records no start WAL file: all WAL kept")
        starts.append((_segno(start, size)[1], start, size))
    if not starts:
        return WalPlan((), len(names), None, "no base backup is kept: all WAL kept")
    first_no, first_name, size = min(starts)
    remove = [n for n in names if (seg := _segment_of(n)) is not None and _segno(seg, size)[1] < first_no]
    return WalPlan(
        tuple(sorted(remove)),
        len(names) - len(remove),
        first_name,
        f"older than {first_name}, the start of the oldest kept base backup",
    )


def kept_roots(retention: RetentionPlan) -> list[bytes]:
    """The root trees of the kept snapshots: where prune starts loading trees."""
    return [bytes.fromhex(s.tree) for s in retention.keep]


def _indexed_blobs(holdings: Holdings) -> set[bytes]:
    return {e.id for p in holdings.packs.values() for e in p.entries}


def _wal_blobs(holdings: Holdings, wal: WalPlan, indexed: set[bytes]) -> set[bytes]:
    removed = set(wal.remove)
    blobs: set[bytes] = set()
    for name, hex_ids in holdings.wal.items():
        if name in removed:
            continue
        for hex_id in hex_ids:
            blob_id = bytes.fromhex(hex_id)
            if blob_id not in indexed:
                raise PruneRefused(
                    f"prune changed nothing: WAL file {name} names blob {hex_id[:16]}, which "
                    "is in no index. Run `axisor-backup verify`."
                )
            blobs.add(blob_id)
    return blobs


def _used_blobs(
    kept: list[Snapshot], wal_blobs: set[bytes], trees: Mapping[bytes, TreeRefs], indexed: set[bytes]
) -> frozenset[bytes]:
    """Every blob the kept snapshots reach through ``trees``, plus ``wal_blobs``."""
    used = set(wal_blobs)
    owner: dict[bytes, str] = {}  # tree id -> a snapshot that reaches it (named when it is lost)
    stack: list[bytes] = []
    for s in kept:
        root = bytes.fromhex(s.tree)
        if root not in used:
            used.add(root)
            owner[root] = s.id
            stack.append(root)
    while stack:
        tree_id = stack.pop()
        if tree_id not in indexed:
            raise PruneRefused(
                f"prune changed nothing: tree {tree_id.hex()[:16]} of snapshot "
                f"{owner[tree_id][:8]} is in no index. {REPAIR_HINT}"
            )
        refs = trees.get(tree_id)
        if refs is None:
            raise ValueError(f"tree {tree_id.hex()} was not loaded before planning")
        for sub in refs.subtrees:
            if sub not in used:
                used.add(sub)
                owner[sub] = owner[tree_id]
                stack.append(sub)
        for blob_id in refs.blobs:
            if blob_id not in used:
                if blob_id not in indexed:
                    raise PruneRefused(
                        f"prune changed nothing: data blob {blob_id.hex()[:16]} of snapshot "
                        f"{owner[tree_id][:8]} is in no index. {REPAIR_HINT}"
                    )
                used.add(blob_id)
    return frozenset(used)


def _choose_copies(packs: Mapping[bytes, PackInfo], usable: set[bytes], used: frozenset[bytes]) -> dict[bytes, bytes]:
    """blob id -> the pack whose copy stays. A blob stored twice (a crashed run's copy, a
    WAL push, which does not deduplicate) keeps the copy in the most-used pack, so the
    other pack can go whole instead of being repacked. Only ``usable`` packs (on storage
    with their indexed size) are chosen."""
    share: dict[bytes, float] = {}
    for pid, p in packs.items():
        if pid not in usable:
            continue
        total = sum(e.length for e in p.entries) or 1
        share[pid] = sum(e.length for e in p.entries if e.id in used) / total
    chosen: dict[bytes, bytes] = {}
    for pid in sorted(share, key=lambda p: (-share[p], p)):
        for e in packs[pid].entries:
            if e.id in used and e.id not in chosen:
                chosen[e.id] = pid
    return chosen


def _refuse_unreadable(holdings: Holdings, used: frozenset[bytes], chosen: dict[bytes, bytes]) -> None:
    """Stop when a needed blob has no copy in a pack that is on storage whole."""
    missing = [b for b in used if b not in chosen]
    if not missing:
        return
    pid = next((pid for pid, p in holdings.packs.items() if any(e.id == missing[0] for e in p.entries)), None)
    key = pack_key(pid) if pid is not None else "?"
    raise PruneRefused(
        f"prune changed nothing: {len(missing)} needed blobs are only in missing or "
        f"truncated packs (e.g. {key}). {REPAIR_HINT}"
    )


@dataclass(frozen=True, slots=True)
class _PackFates:
    stay: tuple[bytes, ...]
    delete: tuple[bytes, ...]
    repack: tuple[tuple[bytes, tuple[PackEntry, ...]], ...]
    missing: tuple[bytes, ...]
    bytes_used: int
    bytes_unused: int


def _pack_fates(holdings: Holdings, chosen: dict[bytes, bytes]) -> _PackFates:
    stay: list[bytes] = []
    delete: list[bytes] = []
    repack: list[tuple[bytes, tuple[PackEntry, ...]]] = []
    missing: list[bytes] = []
    bytes_used = bytes_unused = 0
    for pid, p in holdings.packs.items():
        if pid not in holdings.on_storage:
            missing.append(pid)  # nothing needed is there (checked before): just unindex it
            continue
        keep = tuple(e for e in p.entries if chosen.get(e.id) == pid)
        keep_bytes = sum(e.length for e in keep)
        total = sum(e.length for e in p.entries)
        bytes_used += keep_bytes
        bytes_unused += total - keep_bytes
        if keep_bytes == 0:
            delete.append(pid)
        elif total - keep_bytes > REPACK_UNUSED_FRACTION * total:
            repack.append((pid, keep))
        else:
            stay.append(pid)
    return _PackFates(tuple(stay), tuple(delete), tuple(repack), tuple(missing), bytes_used, bytes_unused)


def plan_prune(retention: RetentionPlan, holdings: Holdings, trees: Mapping[bytes, TreeRefs]) -> PrunePlan:
    """The whole plan (see the module doc). ``trees`` holds at least every indexed tree the
    kept snapshots reach; raises PruneRefused when kept data is lost."""
    kept = retention.keep
    wal = plan_wal(holdings.wal, kept)
    indexed = _indexed_blobs(holdings)
    used = _used_blobs(kept, _wal_blobs(holdings, wal, indexed), trees, indexed)
    # A pack whose size on storage differs from its index entry is truncated or foreign:
    # never a source of kept data.
    usable = {pid for pid, p in holdings.packs.items() if holdings.on_storage.get(pid) == p.size}
    chosen = _choose_copies(holdings.packs, usable, used)
    _refuse_unreadable(holdings, used, chosen)
    fates = _pack_fates(holdings, chosen)
    entries_after = sum(len(holdings.packs[pid].entries) for pid in fates.stay)
    files_needed = max(1, -(-entries_after // INDEX_ENTRIES_PER_FILE)) if fates.stay or fates.repack else 0
    rewrite_index = bool(fates.delete or fates.repack or fates.missing or len(holdings.index_files) > files_needed)
    return PrunePlan(
        decisions=retention.decisions,
        forget=tuple(retention.forget),
        wal=wal,
        used=used,
        stay=fates.stay,
        delete=fates.delete,
        repack=fates.repack,
        missing=fates.missing,
        bytes_used=fates.bytes_used,
        bytes_unused=fates.bytes_unused,
        rewrite_index=rewrite_index,
        index_files_after=files_needed if rewrite_index else len(holdings.index_files),
    )


__all__ = [
    "Holdings",
    "PackInfo",
    "PrunePlan",
    "PruneRefused",
    "TreeRefs",
    "WalPlan",
    "kept_roots",
    "plan_prune",
    "plan_wal",
]
