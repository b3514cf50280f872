"""Prune: forget what retention lets go, then take the unused data off storage.

Order (docs/FORMAT.md, "Prune"), chosen so that a crash at any point leaves a repository
that verifies clean and a rerun that finishes:

1. Exclusive lock. Load every index file (keeping each pack's full entry list), adopt
   packs a crashed writer left unindexed, list packs, snapshots and WAL manifests. Any
   damaged index file, manifest or missing needed blob stops prune here, before any change.
2. Plan (core.maintenance.prune_plan, pure): retention decides each snapshot; WAL older
   than the oldest kept base backup's start segment goes; the blobs the kept snapshots
   and WAL manifests use are found by walking their trees (loaded here first); each
   indexed pack is kept, deleted (nothing used) or repacked (mostly unused). ``--dry-run``
   stops here and reports the plan.
3. Delete the forgotten snapshot manifests and WAL manifests. Their blobs simply become
   unused: nothing refers to a blob except through a manifest.
4. Repack: copy the used blobs of mostly-unused packs into new packs (put, durable).
5. Write the new index, few files, naming every pack that stays and every new pack; only
   then delete the index files loaded in step 1.
6. Delete the unused and repacked packs. They are in no index any more.

Only packs and index files that prune itself loaded in step 1 are ever deleted, and
before each destructive step prune re-reads the locks and stops if anyone else holds one:
a writer that got in regardless (a lock race, a clock gone wrong) loses nothing.

Prune reads through an index of its own. The repository's in-memory index is left alone,
except once: when step 5 has replaced the index files on storage, the repository is given
the new index (``Repository.replace_index``), since the old one names packs step 6 deletes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone, tzinfo

from core.errors import DamagedObject
from core.maintenance.prune_plan import (
    REPACK_UNUSED_FRACTION,
    REPAIR_HINT,
    Holdings,
    PackInfo,
    PrunePlan,
    PruneRefused,
    TreeRefs,
    WalPlan,
    kept_roots,
    plan_prune,
    plan_wal,
)
from core.maintenance.prune_plan import _segno  # noqa: F401  (tests of the WAL arithmetic import it from here)
from core.maintenance.repack import repack
from core.maintenance.retention import Decision, Policy, apply
from core.repository.rewrite import ensure_sole_holder, store_index, write_index
from core.repository.format import INDEX, SNAPSHOTS, pack_key
from core.repository.index import Index, IndexedPack
from core.repository.lock import Lock
from core.repository.pins import load_pins, pinned_ids
from core.repository.rollback import bury
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.storage.backend import ObjectLocked, ObjectNotFound, StorageError, innermost

log = logging.getLogger(__name__)

# Trees loaded at once while finding the used blobs.
_TREE_LOADS = 16

ProgressFn = Callable[[str, int, int | None], None]  # phase, done, total


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
            "snapshots": [
                {
                    "id": d.snapshot.id,
                    "short_id": d.snapshot.short_id,
                    "time": d.snapshot.time,
                    "source": d.snapshot.source,
                    "hostname": d.snapshot.hostname,
                    "type": d.snapshot.type,
                    "keep": d.keep,
                    "reasons": list(d.reasons),
                }
                for d in self.decisions
            ],
            "kept": len(self.kept),
            "forgotten": len(self.forgotten),
            "wal": {
                "removed": list(self.wal.remove),
                "kept": self.wal.kept,
                "keep_from": self.wal.keep_from,
                "reason": self.wal.reason,
            },
            "packs": {
                "total": self.packs_total,
                "deleted": self.packs_deleted,
                "repacked": self.packs_repacked,
                "written": self.packs_written,
                "missing_dropped": self.packs_missing_dropped,
                "adopted": self.packs_adopted,
                "unindexed": self.unindexed_packs,
            },
            "blobs_used": self.blobs_used,
            "bytes": {
                "used": self.bytes_used,
                "unused": self.bytes_unused,
                "deleted": self.bytes_deleted,
                "written": self.bytes_written,
            },
            "index_files": {"before": self.index_files_before, "after": self.index_files_after},
            "temporary": self.temporary,
        }


def _report(
    plan: PrunePlan, holdings: Holdings, adopted: int, dry_run: bool, written: list[IndexedPack], index_files_after: int
) -> PruneReport:
    return PruneReport(
        dry_run=dry_run,
        decisions=plan.decisions,
        wal=plan.wal,
        packs_total=len(holdings.packs),
        packs_deleted=len(plan.delete),
        packs_repacked=len(plan.repack),
        packs_written=len(written),
        packs_missing_dropped=len(plan.missing),
        packs_adopted=adopted,
        unindexed_packs=holdings.unindexed,
        blobs_used=len(plan.used),
        bytes_used=plan.bytes_used,
        bytes_unused=plan.bytes_unused,
        bytes_deleted=sum(holdings.on_storage[p] for p in plan.gone),
        bytes_written=sum(size for _, size, _ in written),
        index_files_before=len(holdings.index_files),
        index_files_after=index_files_after,
        delete_packs=tuple(pack_key(p) for p in plan.delete),
        repack_packs=tuple(pack_key(p) for p, _ in plan.repack),
    )


async def _check_lock(lock: Lock, step: str) -> None:
    await ensure_sole_holder(lock, "prune", step, "nothing it relies on was deleted")


# -- 1. what is there ----------------------------------------------------------------------


async def _load_packs(repo: Repository) -> tuple[dict[bytes, PackInfo], set[str]]:
    """Every indexed pack with its full entry list (the first index file naming it wins)."""
    packs: dict[bytes, PackInfo] = {}
    files: set[str] = set()
    async for info in repo.backend.list(f"{INDEX}/"):
        if info.key in files:
            continue
        try:
            content = await repo.read_index_file(info.key, info.size)
        except DamagedObject as exc:
            raise PruneRefused(
                f"prune changed nothing: {exc}. `axisor-backup repair index` rebuilds the index without it."
            ) from None
        for pack_id, size, entries in content:
            packs.setdefault(pack_id, PackInfo(size, tuple(entries)))
        files.add(info.key)
    return packs, files


async def _adopt(
    repo: Repository,
    unindexed: list[bytes],
    on_storage: dict[bytes, int],
    packs: dict[bytes, PackInfo],
    index_files: set[str],
) -> int:
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
            packs[pid] = PackInfo(size, tuple(entries))
    return len(found)


async def _wal_manifests(repo: Repository) -> dict[str, tuple[str, ...]]:
    from core.sources.postgres.wal import list_names, load_manifest

    manifests: dict[str, tuple[str, ...]] = {}
    for name in sorted(await list_names(repo)):
        try:
            m = await load_manifest(repo, name)
        except DamagedObject as exc:
            raise PruneRefused(f"prune changed nothing: {exc}. Run `axisor-backup verify`.") from None
        if m is not None:
            manifests[name] = m.blobs
    return manifests


async def _snapshots(repo: Repository) -> list[Snapshot]:
    snaps, damaged = await repo.list_snapshots()
    if damaged:
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise PruneRefused(
            f"prune changed nothing: {damaged[0]}{more}. "
            "Run `axisor-backup verify`; `axisor-backup forget ID` removes a manifest that cannot be repaired."
        )
    return snaps


async def _survey(repo: Repository, dry_run: bool, progress: ProgressFn) -> tuple[Holdings, int, list[Snapshot]]:
    """Step 1: the holdings (after adopting unindexed packs, unless a dry run), how many
    packs were adopted, and the snapshots."""
    progress("loading index", 0, None)
    packs, index_files = await _load_packs(repo)
    on_storage = await repo.pack_sizes()
    unindexed = [pid for pid in on_storage if pid not in packs]
    adopted = 0
    if unindexed and not dry_run:
        progress("adopting unindexed packs", 0, len(unindexed))
        adopted = await _adopt(repo, unindexed, on_storage, packs, index_files)
    progress("reading snapshots", 0, None)
    snaps = await _snapshots(repo)
    holdings = Holdings(
        packs=packs, on_storage=on_storage, index_files=frozenset(index_files), wal=await _wal_manifests(repo)
    )
    return holdings, adopted, snaps


async def _load_trees(
    repo: Repository, index: Index, roots: Iterable[bytes], progress: ProgressFn
) -> dict[bytes, TreeRefs]:
    """Every indexed tree reachable from ``roots``. An unindexed one is skipped: the plan
    refuses, naming the snapshot that needs it."""
    trees: dict[bytes, TreeRefs] = {}
    seen = set(roots)
    queue = list(dict.fromkeys(roots))
    loaded = 0
    while queue:
        # From the end: taking from the front would copy the rest of the queue every batch
        # (quadratic in the number of folders); the order does not matter.
        batch = [t for t in queue[-_TREE_LOADS:] if t in index]
        del queue[-_TREE_LOADS:]
        try:
            loaded_trees = await asyncio.gather(*(repo.load_tree(t, index=index) for t in batch))
        except DamagedObject as exc:
            raise PruneRefused(f"prune changed nothing: {exc}. {REPAIR_HINT}") from None
        for tree_id, tree in zip(batch, loaded_trees):
            refs = trees[tree_id] = TreeRefs.of(tree)
            fresh = [t for t in refs.subtrees if t not in seen]
            seen.update(fresh)
            queue.extend(fresh)
        loaded += len(batch)
        progress("finding used data", loaded, None)
    return trees


# -- 3. to 6. carrying the plan out ------------------------------------------------------------


async def _delete_each(repo: Repository, keys: list[str], phase: str, progress: ProgressFn) -> list[str]:
    """Delete ``keys``; the ones S3 Object Lock still holds are skipped and returned (only
    packs get here locked: snapshots still locked are kept by the plan, ``_locked``)."""
    locked = []
    for i, key in enumerate(keys):
        progress(phase, i, len(keys))
        try:
            await repo.backend.delete(key)
        except ObjectNotFound:
            pass
        except ObjectLocked:
            locked.append(key)
    return locked


async def _locked(repo: Repository, snaps: list[Snapshot]) -> dict[str, str]:
    """Snapshot id -> why it stays: its manifest is still under S3 Object Lock (a location
    without a lock answers nothing, and nothing is asked of it)."""
    locked_until = getattr(innermost(repo.backend), "locked_until", None)
    if locked_until is None:
        return {}
    out = {}
    for s in snaps:
        until = await locked_until(f"{SNAPSHOTS}/{s.id}")
        if until is not None:
            out[s.id] = f"locked by S3 Object Lock until {until:%Y-%m-%d %H:%M} UTC"
    return out


async def _forget(repo: Repository, lock: Lock, plan: PrunePlan, progress: ProgressFn) -> None:
    from core.sources.postgres.wal import wal_key

    if plan.forget or plan.wal.remove:
        await _check_lock(lock, "deleting snapshots")
    for s in plan.forget:  # each disappearance explained first (core/repository/rollback.py)
        await bury(repo, s.id, "prune")
    await _delete_each(repo, [f"{SNAPSHOTS}/{s.id}" for s in plan.forget], "deleting snapshots", progress)
    await _delete_each(repo, [wal_key(n) for n in plan.wal.remove], "deleting WAL", progress)


async def _repack(
    repo: Repository, plan: PrunePlan, holdings: Holdings, pack_size: int, progress: ProgressFn
) -> list[IndexedPack]:
    if not plan.repack:
        return []
    total = sum(holdings.on_storage[pid] for pid, _ in plan.repack)
    progress("repacking", 0, total)
    return await repack(
        repo,
        [(pid, list(keep)) for pid, keep in plan.repack],
        pack_size,
        lambda done: progress("repacking", done, total),
    )


async def _replace_index(
    repo: Repository, lock: Lock, plan: PrunePlan, holdings: Holdings, written: list[IndexedPack], progress: ProgressFn
) -> int:
    """Step 5: the new index files, then the old ones go; the number of new files."""
    progress("writing index", 0, None)
    new_index, new_files = await write_index(
        repo, [(pid, holdings.packs[pid].size, list(holdings.packs[pid].entries)) for pid in plan.stay] + written
    )
    old_files = sorted(k for k in holdings.index_files if k not in new_files)
    await _check_lock(lock, "deleting index files")
    await _delete_each(repo, old_files, "deleting index files", progress)
    new_index.files = set(new_files)
    repo.replace_index(new_index)
    return len(new_files)


async def _delete_packs(repo: Repository, lock: Lock, plan: PrunePlan, progress: ProgressFn) -> list[str]:
    """The packs S3 Object Lock still holds stay, unindexed: a later prune adopts and
    deletes them once the lock has passed."""
    if plan.gone:
        await _check_lock(lock, "deleting packs")
    return await _delete_each(repo, [pack_key(pid) for pid in plan.gone], "deleting packs", progress)


async def execute(
    repo: Repository, lock: Lock, plan: PrunePlan, holdings: Holdings, pack_size: int, progress: ProgressFn
) -> tuple[list[IndexedPack], int]:
    """Steps 3 to 6 of ``plan``; the packs written and how many index files there are now."""
    await _forget(repo, lock, plan, progress)
    written = await _repack(repo, plan, holdings, pack_size, progress)
    if not plan.rewrite_index:
        return written, len(holdings.index_files)
    files_after = await _replace_index(repo, lock, plan, holdings, written, progress)
    still_locked = await _delete_packs(repo, lock, plan, progress)
    if still_locked:
        log.info("prune: %d packs still under S3 Object Lock stay until a later prune", len(still_locked))
    return written, files_after


# -- the whole ---------------------------------------------------------------------------------


async def prune(
    repo: Repository,
    policy_for: Callable[[str], Policy],
    *,
    now: datetime | None = None,
    tz: tzinfo | None = None,
    dry_run: bool = False,
    pack_size: int | None = None,
    on_progress: ProgressFn | None = None,
    pinned: Mapping[str, str] | None = None,
) -> PruneReport:
    """Apply retention and remove what no kept snapshot or WAL file needs (see module doc).
    ``pinned``: snapshot id -> why, pins read elsewhere (the primary's, when pruning a
    copy); this location's own pins are read here, under the lock."""
    now = now or datetime.now(timezone.utc)
    progress = on_progress or (lambda phase, done, total: None)
    lock = Lock(repo.backend, exclusive=not dry_run, operation="prune --dry-run" if dry_run else "prune")
    async with lock:
        holdings, adopted, snaps = await _survey(repo, dry_run, progress)
        pins, damaged_pins = await load_pins(repo)
        keep = {**(pinned or {}), **pinned_ids(pins, damaged_pins)}
        retention = apply(snaps, policy_for, now, tz, keep)
        locked = await _locked(repo, retention.forget)
        if locked:  # kept, and said why: deleting them would only be refused
            retention = apply(snaps, policy_for, now, tz, {**keep, **locked})
        trees = await _load_trees(repo, holdings.index(), kept_roots(retention), progress)
        plan = plan_prune(retention, holdings, trees)
        if dry_run:
            report = _report(plan, holdings, adopted, True, [], plan.index_files_after)
        else:
            written, files_after = await execute(
                repo, lock, plan, holdings, pack_size or repo.config.pack_size, progress
            )
            report = _report(plan, holdings, adopted, False, written, files_after)
        # Leftovers of interrupted uploads, old enough that no live writer is filling them.
        from core.repair.temporary import clean_temporary

        temp = await clean_temporary(repo.backend, dry_run=dry_run)
        return replace(report, temporary=temp.to_dict())


async def forget(repo: Repository, snapshot_ids: list[str]) -> list[str]:
    """Delete snapshot manifests by id, under an exclusive lock, without opening them (so a
    damaged manifest can be removed). Their data goes at the next prune."""
    async with Lock(repo.backend, exclusive=True, operation="forget"):
        for sid in snapshot_ids:
            await bury(repo, sid, "forget")
            try:
                await repo.backend.delete(f"{SNAPSHOTS}/{sid}")
            except ObjectNotFound:
                pass
    return snapshot_ids


__all__ = [
    "REPACK_UNUSED_FRACTION",
    "PrunePlan",
    "PruneRefused",
    "PruneReport",
    "WalPlan",
    "execute",
    "forget",
    "plan_prune",
    "plan_wal",
    "prune",
]
