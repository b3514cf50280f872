"""Prune: forget what retention lets go, then take the unused data off storage.

Order (docs/FORMAT.md, "Prune"), chosen so that a crash at any point leaves a repository
that verifies clean and a rerun that finishes:

1. Exclusive lock. Load every index file (keeping each pack's full entry list), adopt
   packs a crashed writer left unindexed, list packs, snapshots and WAL manifests. Any
   damaged index file, manifest or missing needed blob stops prune here, before any change.
2. Plan: retention decides each snapshot; WAL older than the oldest kept base backup's
   start segment goes; the blobs the kept snapshots and WAL manifests use are found by
   walking their trees; each indexed pack is kept, deleted (nothing used) or repacked
   (mostly unused). ``--dry-run`` stops here.
3. Delete the forgotten snapshot manifests and WAL manifests. Their blobs simply become
   unused: nothing refers to a blob except through a manifest.
4. Repack: copy the used blobs of mostly-unused packs into new packs (put, durable).
5. Write the new index, few files, naming every pack that stays and every new pack; only
   then delete the index files loaded in step 1.
6. Delete the unused and repacked packs. They are in no index any more.

Only packs and index files that prune itself loaded in step 1 are ever deleted, and
before each destructive step prune re-reads the locks and stops if anyone else holds one:
a writer that got in regardless (a lock race, a clock gone wrong) loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo

from core.errors import AxisorError, DamagedObject
from core.maintenance.repack import repack
from core.maintenance.retention import Decision, Policy, apply, is_base_backup
from core.repository.rewrite import INDEX_ENTRIES_PER_FILE, ensure_sole_holder, store_index, write_index
from core.repository.format import DATA, INDEX, SNAPSHOTS, pack_id_from_key, pack_key
from core.repository.index import Index, IndexedPack, PackEntry
from core.repository.lock import Lock
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE
from core.storage.backend import ObjectNotFound, StorageError

# A pack whose unused bytes exceed this share is rewritten with only its used blobs.
REPACK_UNUSED_FRACTION = 0.5
# Blob entries per index file written by prune: a few files, each small enough to load fast.
# Trees loaded at once while finding the used blobs.
_TREE_LOADS = 16

ProgressFn = Callable[[str, int, int | None], None]  # phase, done, total

_REPAIR_HINT = ("Data is lost: `axisor-backup repair index` drops the lost packs from the index (the next "
                "backup stores again what is still on disk), then `axisor-backup repair snapshots` rewrites "
                "the snapshots that lost data; docs/OPERATIONS.md, \"A pack was lost\".")


class PruneRefused(AxisorError):
    """Prune found the repository damaged and changed nothing (run verify)."""

    exit_code = DamagedObject.exit_code


@dataclass(frozen=True, slots=True)
class WalPlan:
    remove: tuple[str, ...]
    kept: int
    keep_from: str | None  # start WAL file of the oldest kept base backup
    reason: str


@dataclass(frozen=True, slots=True)
class PruneReport:
    dry_run: bool
    decisions: tuple[Decision, ...]
    wal: WalPlan
    packs_total: int
    packs_deleted: int
    packs_repacked: int
    packs_written: int
    packs_missing_dropped: int
    packs_adopted: int
    unindexed_packs: int  # found and left alone (dry run), or failing adoption
    blobs_used: int
    bytes_used: int
    bytes_unused: int
    bytes_deleted: int  # pack bytes removed (deleted and repacked packs)
    bytes_written: int  # bytes of the new packs
    index_files_before: int
    index_files_after: int
    delete_packs: tuple[str, ...] = field(default=())
    repack_packs: tuple[str, ...] = field(default=())
    temporary: dict | None = None  # leftovers of interrupted uploads (core.repair.temporary)

    @property
    def forgotten(self) -> list[Snapshot]:
        return [d.snapshot for d in self.decisions if not d.keep]

    @property
    def kept(self) -> list[Snapshot]:
        return [d.snapshot for d in self.decisions if d.keep]

    def to_dict(self) -> dict:
        """The JSON shape of `prune --json` (one location) and of the prune job's result."""
        return {
            "dry_run": self.dry_run,
            "snapshots": [{"id": d.snapshot.id, "short_id": d.snapshot.short_id, "time": d.snapshot.time,
                           "source": d.snapshot.source, "hostname": d.snapshot.hostname,
                           "type": d.snapshot.type, "keep": d.keep, "reasons": list(d.reasons)}
                          for d in self.decisions],
            "kept": len(self.kept), "forgotten": len(self.forgotten),
            "wal": {"removed": list(self.wal.remove), "kept": self.wal.kept, "keep_from": self.wal.keep_from,
                    "reason": self.wal.reason},
            "packs": {"total": self.packs_total, "deleted": self.packs_deleted, "repacked": self.packs_repacked,
                      "written": self.packs_written, "missing_dropped": self.packs_missing_dropped,
                      "adopted": self.packs_adopted, "unindexed": self.unindexed_packs},
            "blobs_used": self.blobs_used,
            "bytes": {"used": self.bytes_used, "unused": self.bytes_unused, "deleted": self.bytes_deleted,
                      "written": self.bytes_written},
            "index_files": {"before": self.index_files_before, "after": self.index_files_after},
            "temporary": self.temporary,
        }


@dataclass
class _PackInfo:
    size: int
    entries: list[PackEntry]


def _segment_of(name: str) -> str | None:
    """The 24-digit segment a WAL file belongs to; None for timeline .history files."""
    if name.endswith(".history"):
        return None
    return name[:24]


def _segno(segment: str, segment_size: int) -> tuple[int, int]:
    per_log = 0x100000000 // segment_size
    return int(segment[:8], 16), int(segment[8:16], 16) * per_log + int(segment[16:24], 16)


def plan_wal(names: list[str], kept: list[Snapshot]) -> WalPlan:
    """Which archived WAL files no kept base backup can need.

    Recovery from a base backup reads WAL forward from its start segment and never before
    it, on any timeline, so a segment numbered below every kept base backup's start segment
    is needed by none of them. Timeline history files are tiny and recovery reads them to
    find its way: they always stay. Without any kept base backup nothing is removed."""
    bases = [s for s in kept if is_base_backup(s)]
    starts: list[tuple[int, str, int]] = []
    for s in bases:
        start = s.metadata.get("start_wal_file")
        size = s.metadata.get("wal_segment_size") or 16 * 1024 * 1024
        if not isinstance(start, str) or len(start) != 24 or not isinstance(size, int) or size <= 0:
            return WalPlan((), len(names), None, f"base backup {s.short_id} records no start WAL file: "
                                                 "all WAL kept")
        starts.append((_segno(start, size)[1], start, size))
    if not starts:
        return WalPlan((), len(names), None, "no base backup is kept: all WAL kept")
    first_no, first_name, size = min(starts)
    remove = []
    for n in names:
        seg = _segment_of(n)
        if seg is not None and _segno(seg, size)[1] < first_no:
            remove.append(n)
    return WalPlan(tuple(sorted(remove)), len(names) - len(remove), first_name,
                   f"older than {first_name}, the start of the oldest kept base backup")


async def _check_lock(lock: Lock, step: str) -> None:
    await ensure_sole_holder(lock, "prune", step, "nothing it relies on was deleted")


async def _load_packs(repo: Repository, packs: dict[bytes, _PackInfo], files: set[str]) -> None:
    async for info in repo.backend.list(f"{INDEX}/"):
        if info.key in files:
            continue
        try:
            content = await repo.read_index_file(info.key, info.size)
        except DamagedObject as exc:
            raise PruneRefused(f"prune changed nothing: {exc}. `axisor-backup repair index` rebuilds the "
                               "index without it.") from None
        for pack_id, size, entries in content:
            if pack_id not in packs:
                packs[pack_id] = _PackInfo(size, list(entries))
            repo.index.add_pack(pack_id, size, entries)
        repo.index.files.add(info.key)
        files.add(info.key)


async def _adopt(repo: Repository, unindexed: list[bytes], on_storage: dict[bytes, int],
                 packs: dict[bytes, _PackInfo], index_files: set[str]) -> int:
    """Index the packs an interrupted writer left unindexed, as a backup would (FORMAT.md,
    Invariant 7), but only those in prune's own listing: a pack that appears later is
    another writer's, and prune never touches it."""
    found: list[IndexedPack] = []
    for pid in unindexed:
        try:
            # Bounded, header first, hashed over ranged reads: a planted file is never read whole.
            entries = await repo.check_unindexed_pack(pid, on_storage[pid])
        except (DamagedObject, StorageError):
            continue  # verify reports it; it is not prune's to judge or delete
        found.append((pid, on_storage[pid], entries))
    if found:
        index_files.add(await store_index(repo, found))
        for pid, size, entries in found:
            packs[pid] = _PackInfo(size, list(entries))
            repo.index.add_pack(pid, size, entries)
    return len(found)


async def _used_blobs(repo: Repository, snaps: list[Snapshot], wal_blobs: set[bytes],
                      progress: ProgressFn) -> set[bytes]:
    used: set[bytes] = set(wal_blobs)
    owner: dict[bytes, str] = {}
    queue: list[bytes] = []
    for s in snaps:
        root = bytes.fromhex(s.tree)
        if root not in used:
            used.add(root)
            owner[root] = s.id
            queue.append(root)
    loaded = 0
    while queue:
        # From the end: taking from the front would copy the rest of the queue every batch
        # (quadratic in the number of folders); the order does not matter, ``used`` dedups.
        batch = queue[-_TREE_LOADS:]
        del queue[-_TREE_LOADS:]
        for tree_id in batch:
            if tree_id not in repo.index:
                raise PruneRefused(
                    f"prune changed nothing: tree {tree_id.hex()[:16]} of snapshot {owner[tree_id][:8]} is in no "
                    f"index. {_REPAIR_HINT}")
        try:
            trees = await asyncio.gather(*(repo.load_tree(t) for t in batch))
        except DamagedObject as exc:
            raise PruneRefused(f"prune changed nothing: {exc}. {_REPAIR_HINT}") from None
        for tree_id, tree in zip(batch, trees):
            for node in tree.nodes:
                if node.type == DIR and node.subtree is not None and node.subtree not in used:
                    used.add(node.subtree)
                    owner[node.subtree] = owner[tree_id]
                    queue.append(node.subtree)
                elif node.type == FILE:
                    for blob_id in node.content:
                        if blob_id not in used:
                            if blob_id not in repo.index:
                                raise PruneRefused(
                                    f"prune changed nothing: data blob {blob_id.hex()[:16]} of snapshot "
                                    f"{owner[tree_id][:8]} is in no index. {_REPAIR_HINT}")
                            used.add(blob_id)
        loaded += len(batch)
        progress("finding used data", loaded, None)
    return used


def _choose_copies(packs: dict[bytes, _PackInfo], usable: set[bytes], used: set[bytes]) -> dict[bytes, bytes]:
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


async def prune(repo: Repository, policy_for: Callable[[str], Policy], *, now: datetime | None = None,
                tz: tzinfo | None = None, dry_run: bool = False, pack_size: int | None = None,
                on_progress: ProgressFn | None = None) -> PruneReport:
    """Apply retention and remove what no kept snapshot or WAL file needs (see module doc)."""
    now = now or datetime.now(timezone.utc)
    progress = on_progress or (lambda phase, done, total: None)
    lock = Lock(repo.backend, exclusive=not dry_run, operation="prune --dry-run" if dry_run else "prune")
    async with lock:
        report = await _prune(repo, lock, policy_for, now, tz, dry_run,
                              pack_size or repo.config.pack_size, progress)
        # Leftovers of interrupted uploads, old enough that no live writer is filling them.
        from dataclasses import replace

        from core.repair.temporary import clean_temporary

        temp = await clean_temporary(repo.backend, dry_run=dry_run)
        return replace(report, temporary=temp.to_dict())


async def _prune(repo: Repository, lock: Lock, policy_for: Callable[[str], Policy], now: datetime,
                 tz: tzinfo | None, dry_run: bool, pack_size: int, progress: ProgressFn) -> PruneReport:
    from core.sources.postgres.wal import list_names, load_manifest, wal_key

    # -- 1. what is there ------------------------------------------------------------------
    progress("loading index", 0, None)
    repo.index = Index()
    packs: dict[bytes, _PackInfo] = {}
    index_files: set[str] = set()
    await _load_packs(repo, packs, index_files)
    on_storage: dict[bytes, int] = {}
    async for info in repo.backend.list(f"{DATA}/"):
        pid = pack_id_from_key(info.key)
        if pid is not None:
            on_storage[pid] = info.size
    unindexed = [pid for pid in on_storage if pid not in packs]
    adopted = 0
    if unindexed and not dry_run:
        progress("adopting unindexed packs", 0, len(unindexed))
        adopted = await _adopt(repo, unindexed, on_storage, packs, index_files)
    index_files_before = len(index_files)
    unindexed_left = len([pid for pid in on_storage if pid not in packs])

    progress("reading snapshots", 0, None)
    snaps, damaged = await repo.list_snapshots()
    if damaged:
        raise PruneRefused(
            f"prune changed nothing: {damaged[0]}{f' (and {len(damaged) - 1} more)' if len(damaged) > 1 else ''}. "
            "Run `axisor-backup verify`; `axisor-backup forget ID` removes a manifest that cannot be repaired.")
    wal_names = sorted(await list_names(repo))
    manifests = {}
    for name in wal_names:
        try:
            m = await load_manifest(repo, name)
        except DamagedObject as exc:
            raise PruneRefused(f"prune changed nothing: {exc}. Run `axisor-backup verify`.") from None
        if m is not None:
            manifests[name] = m

    # -- 2. the plan -----------------------------------------------------------------------
    plan = apply(snaps, policy_for, now, tz)
    kept = plan.keep
    wal = plan_wal(list(manifests), kept)
    removed_wal = set(wal.remove)
    wal_blobs: set[bytes] = set()
    for name, m in manifests.items():
        if name not in removed_wal:
            for hex_id in m.blobs:
                blob_id = bytes.fromhex(hex_id)
                if blob_id not in repo.index:
                    raise PruneRefused(f"prune changed nothing: WAL file {name} names blob {hex_id[:16]}, which "
                                       "is in no index. Run `axisor-backup verify`.")
                wal_blobs.add(blob_id)
    used = await _used_blobs(repo, kept, wal_blobs, progress)

    # A pack whose size on storage differs from its index entry is truncated or foreign:
    # never a source of kept data.
    usable = {pid for pid, p in packs.items() if on_storage.get(pid) == p.size}
    chosen = _choose_copies(packs, usable, used)
    missing_needed = [b for b in used if b not in chosen]
    if missing_needed:
        where = repo.index.lookup(missing_needed[0])
        key = pack_key(where.pack_id) if where else "?"
        raise PruneRefused(f"prune changed nothing: {len(missing_needed)} needed blobs are only in missing or "
                           f"truncated packs (e.g. {key}). {_REPAIR_HINT}")
    delete: list[bytes] = []
    rewrite: list[bytes] = []
    missing_dropped = 0
    bytes_used = bytes_unused = 0
    for pid, p in packs.items():
        if pid not in on_storage:
            missing_dropped += 1  # nothing needed is there (checked above): just unindex it
            continue
        keep_bytes = sum(e.length for e in p.entries if chosen.get(e.id) == pid)
        total = sum(e.length for e in p.entries)
        bytes_used += keep_bytes
        bytes_unused += total - keep_bytes
        if keep_bytes == 0:
            delete.append(pid)
        elif total - keep_bytes > REPACK_UNUSED_FRACTION * total:
            rewrite.append(pid)
    stay = [pid for pid in packs if pid in on_storage and pid not in delete and pid not in rewrite]
    entries_after = sum(len(packs[pid].entries) for pid in stay)
    files_needed = max(1, -(-entries_after // INDEX_ENTRIES_PER_FILE)) if stay or rewrite else 0
    rewrite_index = bool(delete or rewrite or missing_dropped or len(index_files) > files_needed)

    def report(written: list[IndexedPack], files_after: int) -> PruneReport:
        return PruneReport(
            dry_run=dry_run, decisions=plan.decisions, wal=wal, packs_total=len(packs),
            packs_deleted=len(delete), packs_repacked=len(rewrite), packs_written=len(written),
            packs_missing_dropped=missing_dropped, packs_adopted=adopted, unindexed_packs=unindexed_left,
            blobs_used=len(used), bytes_used=bytes_used, bytes_unused=bytes_unused,
            bytes_deleted=sum(on_storage[p] for p in delete + rewrite),
            bytes_written=sum(size for _, size, _ in written), index_files_before=index_files_before,
            index_files_after=files_after,
            delete_packs=tuple(pack_key(p) for p in delete), repack_packs=tuple(pack_key(p) for p in rewrite))

    if dry_run:
        return report([], files_needed if rewrite_index else len(index_files))

    # -- 3. forget ---------------------------------------------------------------------------
    forget = plan.forget
    if forget or removed_wal:
        await _check_lock(lock, "deleting snapshots")
    for i, s in enumerate(forget):
        progress("deleting snapshots", i, len(forget))
        try:
            await repo.backend.delete(f"{SNAPSHOTS}/{s.id}")
        except ObjectNotFound:
            pass
    for i, name in enumerate(sorted(removed_wal)):
        progress("deleting WAL", i, len(removed_wal))
        try:
            await repo.backend.delete(wal_key(name))
        except ObjectNotFound:
            pass

    # -- 4. repack ---------------------------------------------------------------------------
    written: list[IndexedPack] = []
    if rewrite:
        total = sum(on_storage[p] for p in rewrite)
        progress("repacking", 0, total)
        written = await repack(repo, [(pid, [e for e in packs[pid].entries if chosen.get(e.id) == pid])
                                      for pid in rewrite], pack_size,
                               lambda done: progress("repacking", done, total))

    if not rewrite_index:
        return report(written, len(index_files))

    # -- 5. the new index, then the old one goes -----------------------------------------------
    progress("writing index", 0, None)
    new_index, new_files = await write_index(repo, [(pid, packs[pid].size, packs[pid].entries) for pid in stay]
                                             + written)
    old_files = sorted(k for k in index_files if k not in new_files)
    await _check_lock(lock, "deleting index files")
    for i, key in enumerate(old_files):
        progress("deleting index files", i, len(old_files))
        try:
            await repo.backend.delete(key)
        except ObjectNotFound:
            pass
    new_index.files = set(new_files)
    repo.index = new_index

    # -- 6. packs nothing names any more ---------------------------------------------------------
    gone = delete + rewrite
    if gone:
        await _check_lock(lock, "deleting packs")
    for i, pid in enumerate(gone):
        progress("deleting packs", i, len(gone))
        try:
            await repo.backend.delete(pack_key(pid))
        except ObjectNotFound:
            pass
    return report(written, len(new_files))


async def forget(repo: Repository, snapshot_ids: list[str]) -> list[str]:
    """Delete snapshot manifests by id, under an exclusive lock, without opening them (so a
    damaged manifest can be removed). Their data goes at the next prune."""
    async with Lock(repo.backend, exclusive=True, operation="forget"):
        for sid in snapshot_ids:
            try:
                await repo.backend.delete(f"{SNAPSHOTS}/{sid}")
            except ObjectNotFound:
                pass
    return snapshot_ids


__all__ = ["PruneRefused", "PruneReport", "WalPlan", "forget", "plan_wal", "prune"]
