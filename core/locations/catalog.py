"""One catalog across every location: each snapshot once, with where it is and whether
each copy is complete.

A copy at a location is *complete* when its manifest is there, every blob the snapshot
needs (its trees and its files' data) is named by that location's index, and every pack
those entries point at exists there: the same standard as a quick ``verify``. Trees are
read once per catalog, from the first location that has them, and a subtree's answer
is shared by every snapshot containing it, so the cost grows with the distinct trees,
not with the number of snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import AxisorError, DamagedObject, RepositoryNotFound
from core.locations.sites import Sites, is_unavailable
from core.repository.format import DATA, pack_id_from_key
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE

__all__ = [
    "COMPLETE",
    "INCOMPLETE",
    "MISSING",
    "UNKNOWN",
    "Catalog",
    "CatalogEntry",
    "CopyState",
    "LocationScan",
    "build_catalog",
]

COMPLETE = "complete"
INCOMPLETE = "incomplete"  # the manifest is there but some pack or index entry is not
MISSING = "missing"  # not copied there (yet)
UNKNOWN = "unknown"  # the location could not be read


@dataclass(frozen=True, slots=True)
class CopyState:
    location: str
    state: str  # COMPLETE | INCOMPLETE | MISSING | UNKNOWN

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE

    @property
    def held(self) -> bool:
        return self.state in (COMPLETE, INCOMPLETE)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    snapshot: Snapshot
    copies: tuple[CopyState, ...]  # one per configured location, primary first

    @property
    def location(self) -> str | None:
        """The first location (config order) holding a complete copy, else the first holding any."""
        for want in (COMPLETE, INCOMPLETE):
            for c in self.copies:
                if c.state == want:
                    return c.location
        return None

    @property
    def holders(self) -> list[str]:
        return [c.location for c in self.copies if c.held]


@dataclass(frozen=True, slots=True)
class LocationScan:
    name: str
    where: str
    reachable: bool
    error: str | None
    snapshots: int  # manifests listed there


@dataclass(frozen=True, slots=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]  # oldest first (time, then source)
    locations: tuple[LocationScan, ...]
    damaged: tuple[tuple[str, DamagedObject], ...]  # (location, error) for manifests that do not open

    def entry(self, snapshot_id: str) -> CatalogEntry | None:
        return next((e for e in self.entries if e.snapshot.id == snapshot_id), None)


class _Site:
    """What one reachable location holds: manifests, index, packs."""

    def __init__(self, name: str, repo: Repository, ids: set[str], packs: set[bytes]) -> None:
        self.name = name
        self.repo = repo
        self.ids = ids
        self.packs = packs
        self.damaged_index: list[DamagedObject] = []  # index files that do not open (skipped)

    def has(self, blob_id: bytes) -> bool:
        loc = self.repo.index.lookup(blob_id)
        return loc is not None and loc.pack_id in self.packs


async def build_catalog(sites: Sites, names: list[str] | None = None) -> Catalog:
    """Merge the snapshots of ``names`` (default: every location). Raises the first
    location's error only when no location can be read at all."""
    names = names or sites.names
    scans: list[LocationScan] = []
    open_sites: list[_Site] = []
    first_error: BaseException | None = None
    empty: set[str] = set()
    for name in names:
        try:
            site = await _scan(sites, name)
        except AxisorError as exc:
            if not is_unavailable(exc):
                raise  # a wrong passphrase is an answer, not an outage
            first_error = first_error or exc
            reachable = isinstance(exc, RepositoryNotFound)  # answered: nothing copied there yet
            if reachable:
                empty.add(name)
            scans.append(LocationScan(name, sites.info(name).where, reachable, str(exc), 0))
            continue
        open_sites.append(site)
        scans.append(LocationScan(name, site.repo.backend.location, True, None, len(site.ids)))
    if not open_sites:
        assert first_error is not None
        raise first_error

    snaps: dict[str, Snapshot] = {}
    damaged: list[tuple[str, DamagedObject]] = []
    for site in open_sites:
        for sid in sorted(site.ids - snaps.keys()):
            try:
                snaps[sid] = await site.repo.load_snapshot(sid)
            except DamagedObject as exc:
                damaged.append((site.name, exc))
    damaged = [(n, e) for n, e in damaged if e.key.rsplit("/", 1)[-1] not in snaps]
    damaged += [(site.name, e) for site in open_sites for e in site.damaged_index]

    memo: dict[bytes, frozenset[str]] = {}
    entries = []
    for snap in sorted(snaps.values(), key=lambda s: (s.datetime, s.source)):
        whole = await _complete_at(bytes.fromhex(snap.tree), open_sites, memo)
        copies = []
        for name in names:
            holder = next((s for s in open_sites if s.name == name), None)
            if holder is None:
                state = MISSING if name in empty else UNKNOWN
            elif snap.id not in holder.ids:
                state = MISSING
            else:
                state = COMPLETE if name in whole else INCOMPLETE
            copies.append(CopyState(name, state))
        entries.append(CatalogEntry(snap, tuple(copies)))
    return Catalog(tuple(entries), tuple(scans), tuple(damaged))


async def _scan(sites: Sites, name: str) -> _Site:
    repo = await sites.repository(name)
    # A damaged index file is named (as a damaged object) and skipped: the catalog still
    # lists every snapshot, and copies whose blobs it indexed show as incomplete until
    # `repair index` rebuilds the index from the packs.
    damaged_index = await repo.load_index(strict=False)
    ids = set(await repo.snapshot_ids())  # also notes their sizes: each read is bounded without a stat
    packs = set()
    async for info in repo.backend.list(f"{DATA}/"):
        pid = pack_id_from_key(info.key)
        if pid is not None:
            packs.add(pid)
    site = _Site(name, repo, ids, packs)
    site.damaged_index = damaged_index
    return site


async def _complete_at(tree_id: bytes, sites: list[_Site], memo: dict[bytes, frozenset[str]]) -> frozenset[str]:
    """Names of the ``sites`` holding this tree and everything below it.

    Always asked about every readable site, so one memo serves every snapshot. Iterative
    (an explicit stack of open trees): a snapshot of a folder 3,000 levels deep must not
    overflow Python's stack."""
    if tree_id in memo:
        return memo[tree_id]
    stack = [await _open_tree(tree_id, sites)]
    while stack:
        top = stack[-1]
        if top.names and top.subtrees:
            sub = top.subtrees.pop()
            if sub in memo:
                top.names &= memo[sub]
            else:
                stack.append(await _open_tree(sub, sites))
            continue
        stack.pop()
        memo[top.tree_id] = frozenset(top.names)
        if stack:
            stack[-1].names &= memo[top.tree_id]
    return memo[tree_id]


@dataclass(slots=True)
class _OpenTree:
    tree_id: bytes
    names: set[str]  # sites holding the tree and every file blob in it, so far
    subtrees: list[bytes]  # still to be asked about


async def _open_tree(tree_id: bytes, sites: list[_Site]) -> _OpenTree:
    ok = [s for s in sites if s.has(tree_id)]
    tree = None
    for site in ok:
        try:
            tree = await site.repo.load_tree(tree_id)
            break
        except AxisorError:
            continue  # damaged or unreadable there: another copy may open
    names = {s.name for s in ok} if tree is not None else set()
    subtrees: list[bytes] = []
    for node in tree.nodes if tree is not None else ():
        if not names:
            break
        if node.type == FILE:
            for blob_id in node.content:
                names = {s.name for s in ok if s.name in names and s.has(blob_id)}
                if not names:
                    break
        elif node.type == DIR and node.subtree is not None:
            subtrees.append(node.subtree)
    subtrees.reverse()  # popped from the end: asked in name order
    return _OpenTree(tree_id, names, subtrees)
