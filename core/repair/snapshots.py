"""Rewrite snapshots that reference lost blobs (`repair snapshots`).

A blob is lost when no index names it, or when the pack the index names is gone or has
another size (run `repair index` / `repair packs` first so that the index says the truth;
blobs of a pack that is present but rotten are only found by `repair packs`).

For each snapshot, its trees are rewritten bottom-up: a file with a lost data blob is
dropped (or, with ``truncate``, cut to the intact prefix before its first lost blob), a
folder whose tree is lost becomes an empty folder. Every loss is recorded in the new
manifest: the tag ``repaired``, one line per loss in ``warnings`` (``repair: ...``), and
``metadata.repaired`` with the original id and the totals. The new manifest keeps the
original's time, source and backup set (retention treats it as the same point); it gets
a new id. Originals are deleted only after every new manifest is written, so a crash
leaves the original, or both. A snapshot whose root tree is lost has nothing left to
keep: it is forgotten, and named in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from core.errors import DamagedObject
from core.repair.index import check_no_other_lock
from core.repository.format import SNAPSHOTS, BlobType
from core.repository.lock import Lock
from core.repository.repository import Repository
from core.repository.rollback import bury
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE, Tree
from core.storage.backend import ObjectNotFound

ProgressFn = Callable[[str, int, int | None], None]
REPAIRED_TAG = "repaired"


@dataclass(frozen=True, slots=True)
class Loss:
    path: str
    what: str  # "dropped", "truncated", "folder"
    detail: str

    def line(self) -> str:
        return f"repair: {self.path}: {self.detail}"


@dataclass
class SnapshotFix:
    snapshot: Snapshot
    losses: list[Loss] = field(default_factory=list)
    new_id: str | None = None  # the rewritten snapshot (None: dry run, or forgotten)
    unrecoverable: str | None = None  # why the whole snapshot goes (root tree lost)

    def to_dict(self) -> dict:
        return {
            "id": self.snapshot.id,
            "short_id": self.snapshot.short_id,
            "source": self.snapshot.source,
            "time": self.snapshot.time,
            "new_id": self.new_id,
            "unrecoverable": self.unrecoverable,
            "lost": [{"path": x.path, "what": x.what, "detail": x.detail} for x in self.losses],
        }


@dataclass
class SnapshotRepairReport:
    dry_run: bool
    checked: int = 0
    fixes: list[SnapshotFix] = field(default_factory=list)  # only the snapshots that lost something
    damaged_manifests: list[tuple[str, str]] = field(default_factory=list)  # left alone: `forget ID`

    def to_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "checked": self.checked,
            "repaired": [f.to_dict() for f in self.fixes if not f.unrecoverable],
            "forgotten": [f.to_dict() for f in self.fixes if f.unrecoverable],
            "damaged_manifests": [{"object": k, "reason": r} for k, r in self.damaged_manifests],
        }


def _shown(parts: tuple[bytes, ...]) -> str:
    return "/" + "/".join(p.decode("utf-8", "surrogateescape") for p in parts)


class _Rewriter:
    """Rewrites trees without their lost blobs; one memo for every snapshot."""

    def __init__(self, repo: Repository, truncate: bool, store: bool) -> None:
        self.repo = repo
        self.truncate = truncate
        self.store = store
        # tree id -> (new tree id, losses relative to the tree, files lost, bytes lost)
        self.memo: dict[bytes, tuple[bytes, list[tuple[tuple[bytes, ...], str, str]], int, int]] = {}

    def present(self, blob_id: bytes) -> bool:
        return blob_id in self.repo.index

    async def _save(self, tree: Tree) -> bytes:
        raw = tree.encode()
        if self.store:
            return await self.repo.save_blob(BlobType.TREE, raw)
        return self.repo.cipher.typed_id(BlobType.TREE, raw)

    async def load(self, tree_id: bytes) -> Tree | None:
        if not self.present(tree_id):
            return None
        try:
            return await self.repo.load_tree(tree_id)
        except DamagedObject:
            return None

    async def tree(self, tree_id: bytes) -> tuple[bytes, list, int, int]:
        if tree_id in self.memo:
            return self.memo[tree_id]
        tree = await self.load(tree_id)
        assert tree is not None, "callers check the tree opens first"
        losses: list[tuple[tuple[bytes, ...], str, str]] = []
        files_lost = bytes_lost = 0
        nodes = []
        changed = False
        for node in tree.nodes:
            if node.type == FILE and node.content:
                missing = [i for i, c in enumerate(node.content) if not self.present(c)]
                if not missing:
                    nodes.append(node)
                    continue
                changed = True
                first = missing[0]
                if self.truncate and first > 0 and not node.holes:
                    keep = node.content[:first]
                    size = 0
                    for c in keep:
                        loc = self.repo.index.lookup(c)
                        assert loc is not None
                        size += loc.raw_length
                    nodes.append(replace(node, content=keep, size=size))
                    losses.append(
                        (
                            (node.name,),
                            "truncated",
                            f"truncated to {size} of {node.size} bytes "
                            f"({len(missing)} of {len(node.content)} data blobs lost)",
                        )
                    )
                    bytes_lost += node.size - size
                else:
                    losses.append(
                        (
                            (node.name,),
                            "dropped",
                            f"file dropped: {len(missing)} of {len(node.content)} data blobs lost ({node.size} bytes)",
                        )
                    )
                    files_lost += 1
                    bytes_lost += node.size
            elif node.type == DIR and node.subtree is not None:
                sub = await self.load(node.subtree)
                if sub is None:
                    changed = True
                    empty = await self._save(Tree([]))
                    nodes.append(replace(node, subtree=empty))
                    losses.append(
                        ((node.name,), "folder", "folder contents lost (its tree is gone); restored as an empty folder")
                    )
                    continue
                new_id, sub_losses, f, b = await self.tree(node.subtree)
                if new_id != node.subtree:
                    changed = True
                    nodes.append(replace(node, subtree=new_id))
                else:
                    nodes.append(node)
                losses.extend(((node.name, *p), what, detail) for p, what, detail in sub_losses)
                files_lost += f
                bytes_lost += b
            else:
                nodes.append(node)
        new_id = await self._save(Tree(nodes)) if changed else tree_id
        self.memo[tree_id] = (new_id, losses, files_lost, bytes_lost)
        return self.memo[tree_id]


async def _drop_unusable_packs(repo: Repository) -> None:
    """Blobs in packs that are gone or cut short count as lost, whatever the index says."""
    on_storage = await repo.pack_sizes()
    repo.index.drop_packs({p for p, size in repo.index.packs() if on_storage.get(p) != size})


async def repair_snapshots(
    repo: Repository,
    *,
    snapshot_ids: list[str] | None = None,
    dry_run: bool = False,
    truncate: bool = False,
    on_progress: ProgressFn | None = None,
    now: datetime | None = None,
) -> SnapshotRepairReport:
    """Rewrite the snapshots (all, or ``snapshot_ids``) that reference lost blobs (module doc)."""
    progress = on_progress or (lambda phase, done, total: None)
    lock = Lock(repo.backend, exclusive=not dry_run, operation="repair --dry-run" if dry_run else "repair")
    async with lock:
        await repo.load_index()  # strict: a damaged index file would make everything look lost
        await _drop_unusable_packs(repo)
        report = SnapshotRepairReport(dry_run=dry_run)
        ids = snapshot_ids if snapshot_ids is not None else await repo.snapshot_ids()
        snaps: list[Snapshot] = []
        for sid in ids:
            try:
                snaps.append(await repo.load_snapshot(sid))
            except DamagedObject as exc:
                report.damaged_manifests.append((exc.key, exc.reason))
        snaps.sort(key=lambda s: (s.datetime, s.source))
        rw = _Rewriter(repo, truncate, store=not dry_run)
        when = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
        pending: list[tuple[SnapshotFix, Snapshot]] = []
        for n, snap in enumerate(snaps):
            progress("checking snapshots", n, len(snaps))
            report.checked += 1
            root = bytes.fromhex(snap.tree)
            if await rw.load(root) is None:
                report.fixes.append(
                    SnapshotFix(
                        snap,
                        [Loss("/", "folder", "root tree lost")],
                        unrecoverable="its root tree is lost: nothing is left to keep",
                    )
                )
                continue
            new_root, losses, files_lost, bytes_lost = await rw.tree(root)
            if new_root == root:
                continue
            fix = SnapshotFix(snap, [Loss(_shown(p), what, detail) for p, what, detail in losses])
            s = snap.summary
            summary = replace(
                s, total_files=max(0, s.total_files - files_lost), total_bytes=max(0, s.total_bytes - bytes_lost)
            )
            metadata = dict(snap.metadata)
            metadata["repaired"] = {
                "original": snap.id,
                "time": when,
                "files_dropped": files_lost,
                "bytes_lost": bytes_lost,
                "losses": len(fix.losses),
            }
            new = replace(
                snap,
                tree=new_root.hex(),
                summary=summary,
                metadata=metadata,
                id="",
                tags=snap.tags + (() if REPAIRED_TAG in snap.tags else (REPAIRED_TAG,)),
                warnings=snap.warnings + tuple(x.line() for x in fix.losses),
            )
            report.fixes.append(fix)
            pending.append((fix, new))
        if dry_run:
            return report
        # New trees, then the new manifests, then (only then) the originals go.
        await repo.flush()
        for fix, new in pending:
            fix.new_id = await repo.save_snapshot(new)
        gone = [f.snapshot.id for f in report.fixes]
        if gone:
            await check_no_other_lock(lock, "deleting the original snapshots")
        replaced = {f.snapshot.id: f.new_id or "" for f in report.fixes}
        for sid in gone:
            await bury(repo, sid, "repair", replaced.get(sid, ""))
            try:
                await repo.backend.delete(f"{SNAPSHOTS}/{sid}")
            except ObjectNotFound:
                pass
        return report


__all__ = ["REPAIRED_TAG", "SnapshotFix", "SnapshotRepairReport", "repair_snapshots"]
