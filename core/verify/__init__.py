"""Verification: prove the repository can restore what its snapshots promise.

Quick: every snapshot, index, tree and WAL manifest opens; every blob a snapshot or an
archived WAL file needs is indexed; every indexed pack exists with the indexed size. Full:
also reads every pack, checks its content hash and header against the index, opens every
blob, and reads every archived WAL file back against its manifest's size and SHA-256. The
report names each damaged object and every snapshot, file and WAL file that depends on it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from core import crypto
from core.errors import DamagedObject
from core.repository.blobs import open_blob
from core.repository.format import DATA, BlobType, PACK_TRAILER, pack_id_from_key, pack_key
from core.repository.packer import PackFormatError, decode_header, parse_trailer
from core.repository.repository import ForeignPack, Repository
from core.repository.snapshot import Snapshot
from core.storage.backend import StorageError
from core.repository.tree import DIR, FILE
from core.restore.walk import display
from core.sources.postgres.wal import WalManifest, wal_key
from core.verify.retired import RetiredUse, count_retired
from core.sources.postgres.wal import list_names as list_wal_names
from core.sources.postgres.wal import load_manifest as load_wal_manifest


# A pack whose bytes changed but whose header still opens: only the blobs that fail on
# their own are lost, so only their dependents are reported.
HASH_MISMATCH = "content does not match its name (bit rot or tampering)"


@dataclass(frozen=True, slots=True)
class Damage:
    object: str  # the storage key or blob named
    reason: str
    snapshots: tuple[str, ...] = ()  # ids of snapshots that depend on it
    files: tuple[str, ...] = ()  # "snapshot-id:/path" of files that depend on it
    wal_files: tuple[str, ...] = ()  # archived WAL file names that depend on it


@dataclass
class VerifyReport:
    full: bool
    snapshots_checked: int = 0
    trees_checked: int = 0
    blobs_referenced: int = 0
    packs_checked: int = 0
    bytes_read: int = 0
    wal_files_checked: int = 0
    damage: list[Damage] = field(default_factory=list)
    unreferenced_packs: list[str] = field(default_factory=list)
    # Objects under data/ named like packs that are not packs of this repository (too large,
    # or a trailer and header that do not open): key -> why. Not damage; never read whole.
    foreign_packs: dict[str, str] = field(default_factory=dict)
    # The snapshots it opened: the verification report (core/jobs/verification.py) says
    # per snapshot what was checked, so the record must name them.
    snapshot_ids: list[str] = field(default_factory=list)
    # What is still under a key retired by `key rotate` (core/verify/retired.py); None when
    # not counted (a verification of some snapshots only): not counted is not zero.
    retired: RetiredUse | None = None

    @property
    def ok(self) -> bool:
        return not self.damage


@dataclass(frozen=True, slots=True)
class VerifyProgress:
    """Where a verification is: reading packs (``done``/``total`` packs and their bytes,
    ``current`` the pack being read), then walking snapshots (``done``/``total``)."""

    phase: str  # "reading packs" | "walking snapshots"
    done: int
    total: int
    bytes_done: int = 0
    bytes_total: int = 0
    current: str = ""


async def verify(
    repo: Repository,
    *,
    full: bool = False,
    snapshot_ids: list[str] | None = None,
    max_files_listed: int = 1000,
    on_progress: Callable[[VerifyProgress], None] | None = None,
) -> VerifyReport:
    report = VerifyReport(full=full)
    tell = on_progress or (lambda _p: None)
    problems: dict[str, str] = {}  # object -> reason

    for exc in await repo.load_index(strict=False, use_cache=False):  # every index file read: damage found
        problems[exc.key] = exc.reason

    snaps = await _load_snapshots(repo, snapshot_ids, problems)
    report.snapshots_checked = len(snaps)
    report.snapshot_ids = [s.id for s in snaps]

    # Indexed packs against what storage holds.
    on_storage = await _check_packs(repo, report, problems)

    if full:
        await _read_packs(repo, report, problems, on_storage, tell)

    bad_blobs = _bad_blobs(repo, problems)

    # Walk every snapshot: trees must open; blobs must be indexed; note dependents.
    dependents: dict[str, set[str]] = defaultdict(set)
    files: dict[str, list[str]] = defaultdict(list)
    walk = _TreeWalk(repo, report, problems, bad_blobs, max_files_listed)
    for i, snap in enumerate(snaps):
        tell(VerifyProgress("walking snapshots", i, len(snaps), current=f"{snap.short_id} {snap.source}"))
        await _walk_snapshot(walk, snap, dependents, files, max_files_listed)

    # The WAL archive belongs to no snapshot: checked when the whole repository is.
    wal_dependents: dict[str, set[str]] = defaultdict(set)
    if snapshot_ids is None:
        await _check_wal(repo, report, problems, bad_blobs, wal_dependents, full)
        report.retired = await count_retired(repo)

    for obj, reason in sorted(problems.items()):
        report.damage.append(
            Damage(
                obj,
                reason,
                tuple(sorted(dependents.get(obj, ()))),
                tuple(files.get(obj, ())),
                tuple(sorted(wal_dependents.get(obj, ()))),
            )
        )
    return report


async def _load_snapshots(repo: Repository, snapshot_ids: list[str] | None, problems: dict[str, str]) -> list[Snapshot]:
    """The snapshots to check (all, or ``snapshot_ids``); the damaged ones go to ``problems``."""
    snaps: list[Snapshot] = []
    if snapshot_ids is None:
        loaded, damaged = await repo.list_snapshots()
        snaps.extend(loaded)
        for exc in damaged:
            problems[exc.key] = exc.reason
        return snaps
    for sid in snapshot_ids:
        try:
            snaps.append(await repo.load_snapshot(sid))
        except DamagedObject as exc:
            problems[exc.key] = exc.reason
    return snaps


async def _check_packs(repo: Repository, report: VerifyReport, problems: dict[str, str]) -> dict[bytes, int]:
    """Indexed packs missing or of another size go to ``problems``; packs no index names are
    reported as unreferenced (ours) or foreign. The listing: pack id -> size."""
    on_storage = await repo.pack_sizes()
    for pid, indexed in repo.index.packs():
        key = pack_key(pid)
        size = on_storage.get(pid)
        if size is None:
            problems[key] = "pack is missing"
        elif size != indexed:
            problems[key] = f"pack is {size} bytes, the index says {indexed} (truncated?)"
    for pid in sorted(p for p in on_storage if not repo.index.has_pack(p)):
        try:
            await repo.check_unindexed_pack(pid, on_storage[pid], hash_content=False)
        except ForeignPack as exc:
            report.foreign_packs[exc.key] = exc.reason
            continue
        except (DamagedObject, StorageError):
            pass
        report.unreferenced_packs.append(pack_key(pid))
    return on_storage


def _bad_blobs(repo: Repository, problems: dict[str, str]) -> dict[bytes, str]:
    """Blob id -> the damaged object (pack or blob) that holds it. One pass over the index
    whatever the number of damaged packs (storage can delete every pack: that must cost a
    pass, not packs times blobs)."""
    bad_blobs: dict[bytes, str] = {}
    bad_packs: dict[bytes, str] = {}
    for key, reason in problems.items():
        if key.startswith(f"{DATA}/") and reason != HASH_MISMATCH:
            pid = pack_id_from_key(key)
            if pid is not None:
                bad_packs[pid] = key
        elif key.startswith("blob "):
            bad_blobs[bytes.fromhex(key.split()[1])] = key
    if bad_packs:
        for blob_id, loc in repo.index.blobs():
            if loc.pack_id in bad_packs:
                bad_blobs.setdefault(blob_id, bad_packs[loc.pack_id])
    return bad_blobs


async def _check_wal(
    repo: Repository,
    report: VerifyReport,
    problems: dict[str, str],
    bad_blobs: dict[bytes, str],
    dependents: dict[str, set[str]],
    full: bool,
) -> None:
    """Every WAL manifest opens and names indexed blobs; with ``full``, every WAL file reads
    back to its manifest's size and SHA-256 (what wal-fetch would hand to recovery)."""
    readable: list[WalManifest] = []
    for name in sorted(await list_wal_names(repo)):
        try:
            m = await load_wal_manifest(repo, name)
        except DamagedObject as exc:
            problems[exc.key] = exc.reason
            dependents[exc.key].add(name)
            continue
        if m is None:  # listed, then gone: nothing left to restore, nothing to check
            continue
        report.wal_files_checked += 1
        lost = False
        for hex_id in m.blobs:
            report.blobs_referenced += 1
            try:
                blob_id = bytes.fromhex(hex_id)
            except ValueError:
                problems[wal_key(name)] = f"malformed WAL manifest: blob id {hex_id!r} is not hex"
                dependents[wal_key(name)].add(name)
                lost = True
                break
            bad = _blob_problem(repo, blob_id, bad_blobs, "referenced by a WAL manifest but in no index (missing)")
            if bad:
                problems.setdefault(bad[0], bad[1])
                dependents[bad[0]].add(name)
                lost = True
        if full and not lost:
            readable.append(m)
    if not readable:
        return
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(3)

    async def read_back(m: WalManifest) -> None:
        key = wal_key(m.name)
        h = hashlib.sha256()
        size = 0
        async with slots:
            try:
                for hex_id in m.blobs:
                    chunk = await repo.load_blob(BlobType.DATA, bytes.fromhex(hex_id))
                    await loop.run_in_executor(repo.executor, h.update, chunk)
                    size += len(chunk)
            except DamagedObject as exc:
                problems.setdefault(key, f"cannot be read back: {exc.key}: {exc.reason}")
                dependents[key].add(m.name)
                return
        report.bytes_read += size
        if size != m.size or h.hexdigest() != m.sha256:
            problems.setdefault(
                key,
                f"content does not match its manifest ({size} bytes read back, "
                f"{m.size} expected, or a different SHA-256)",
            )
            dependents[key].add(m.name)

    await asyncio.gather(*(read_back(m) for m in readable))


@dataclass(slots=True)
class _Below:
    """What is damaged in a tree or beneath it: the damaged objects, and per object the
    paths (relative to the tree, at most ``cap`` each) of the files and folders they cost."""

    problems: set[str] = field(default_factory=set)
    paths: dict[str, list[tuple[tuple[bytes, ...], bool]]] = field(default_factory=dict)  # (path, folder)

    def add(self, key: str, path: tuple[bytes, ...], folder: bool, cap: int) -> None:
        self.problems.add(key)
        listed = self.paths.setdefault(key, [])
        if len(listed) < cap:
            listed.append((path, folder))


class _TreeWalk:
    """Every tree reachable from the checked snapshots, each opened and checked once.

    A snapshot's trees form a DAG (equal folders are one tree), and a key holder can build
    one with 2^n paths from n trees: the walk remembers what it found beneath each tree
    (nothing, for almost all of them) and reuses it wherever the tree appears again, in this
    snapshot or another, so the work is linear in trees, not in paths."""

    def __init__(
        self, repo: Repository, report: VerifyReport, problems: dict[str, str], bad_blobs: dict[bytes, str], cap: int
    ) -> None:
        self.repo, self.report, self.problems, self.bad_blobs, self.cap = repo, report, problems, bad_blobs, cap
        self.clean: set[bytes] = set()  # trees with nothing damaged beneath them
        self.dirty: dict[bytes, _Below] = {}

    def _done(self, tree_id: bytes) -> _Below | None:
        """What was found beneath a finished tree (an empty _Below when clean), or None."""
        if tree_id in self.clean:
            return _Below()
        return self.dirty.get(tree_id)

    def _finish(self, tree_id: bytes, below: _Below) -> None:
        if below.problems:
            self.dirty[tree_id] = below
        else:
            self.clean.add(tree_id)

    async def below(self, root: bytes) -> _Below:
        # Iterative post-order: a tree is finished once every subtree is.
        open_trees: dict[bytes, tuple[_Below, list[tuple[bytes, bytes]]]] = {}
        stack: list[tuple[bytes, bool]] = [(root, False)]
        while stack:
            tree_id, expanded = stack.pop()
            if not expanded:
                if self._done(tree_id) is not None or tree_id in open_trees:
                    continue  # finished already, or an ancestor (a cycle: reported when it finishes)
                own = await self._open(tree_id)
                if own is None:
                    continue  # finished by _open (damaged or missing)
                open_trees[tree_id] = own
                stack.append((tree_id, True))
                stack.extend((sub, False) for _, sub in reversed(own[1]) if self._done(sub) is None)
                continue
            below, subdirs = open_trees.pop(tree_id)
            for name, sub in subdirs:
                child = self._done(sub)
                if child is None:  # only a cycle leaves a subtree unfinished here
                    key = f"tree {sub.hex()}"
                    self.problems.setdefault(key, "tree contains itself (a cycle)")
                    below.add(key, (name,), True, self.cap)
                    continue
                below.problems |= child.problems
                for key, listed in child.paths.items():
                    for path, folder in listed:
                        below.add(key, (name,) + path, folder, self.cap)
            self._finish(tree_id, below)
        done = self._done(root)
        assert done is not None
        return done

    async def _open(self, tree_id: bytes) -> tuple[_Below, list[tuple[bytes, bytes]]] | None:
        """Load and check one tree: its files' blobs now, its subtrees for later. None when
        the tree itself is lost or damaged (then it is finished here)."""
        bad = _blob_problem(self.repo, tree_id, self.bad_blobs)
        if bad:
            self.problems.setdefault(bad[0], bad[1])
            below = _Below()
            below.add(bad[0], (), True, self.cap)
            self._finish(tree_id, below)
            return None
        try:
            tree = await self.repo.load_tree(tree_id)
        except DamagedObject as exc:
            key = f"tree {tree_id.hex()}"
            self.problems.setdefault(key, exc.reason)
            self._finish(tree_id, _Below({key}))
            return None
        self.report.trees_checked += 1
        own = _Below()
        subdirs: list[tuple[bytes, bytes]] = []
        for node in tree.nodes:
            if node.type == DIR and node.subtree is not None:
                subdirs.append((node.name, node.subtree))
            elif node.type == FILE:
                for blob_id in node.content:
                    self.report.blobs_referenced += 1
                    bad = _blob_problem(self.repo, blob_id, self.bad_blobs)
                    if bad:
                        self.problems.setdefault(bad[0], bad[1])
                        own.add(bad[0], (node.name,), False, self.cap)
                        break
        return own, subdirs


async def _walk_snapshot(
    walk: _TreeWalk, snap: Snapshot, dependents: dict[str, set[str]], files: dict[str, list[str]], cap: int
) -> None:
    below = await walk.below(bytes.fromhex(snap.tree))
    for key in below.problems:
        dependents[key].add(snap.id)
    for key, listed in below.paths.items():
        for path, folder in listed:
            if len(files[key]) >= cap:
                break
            if folder:
                files[key].append(f"{snap.short_id}:{display(path) if path else '/'} (folder)")
            else:
                files[key].append(f"{snap.short_id}:{display(path)}")


def _blob_problem(
    repo: Repository,
    blob_id: bytes,
    bad_blobs: dict[bytes, str],
    missing: str = "referenced by a snapshot but in no index (missing)",
) -> tuple[str, str] | None:
    if blob_id in bad_blobs:
        return bad_blobs[blob_id], ""
    if blob_id not in repo.index:
        return f"blob {blob_id.hex()}", missing
    return None


async def _read_packs(
    repo: Repository,
    report: VerifyReport,
    problems: dict[str, str],
    on_storage: dict[bytes, int],
    tell: Callable[[VerifyProgress], None],
) -> None:
    expected: dict[bytes, dict[bytes, tuple]] = defaultdict(dict)
    for blob_id, loc in repo.index.blobs():
        expected[loc.pack_id][blob_id] = (loc.type, loc.offset, loc.length, loc.raw_length)
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(3)

    async def check(pid: bytes) -> None:
        key = pack_key(pid)
        async with slots:
            try:
                data = await repo.backend.get(key)
            except Exception as exc:  # any storage failure is damage to report, not a crash
                problems[key] = f"cannot be read: {exc}"
                return
            report.bytes_read += len(data)
            reason = await loop.run_in_executor(repo.executor, _check_pack, repo, pid, data, expected.get(pid, {}))
            report.packs_checked += 1
            for obj, why in reason:
                problems[obj] = why
            tell(
                VerifyProgress("reading packs", report.packs_checked, len(wanted), report.bytes_read, total_bytes, key)
            )

    wanted = [pid for pid in repo.index.pack_ids() if pid in on_storage]
    total_bytes = sum(on_storage[pid] for pid in wanted)
    tell(VerifyProgress("reading packs", 0, len(wanted), 0, total_bytes))
    await asyncio.gather(*(check(pid) for pid in wanted))


def _check_pack(repo: Repository, pid: bytes, data: bytes, expected: dict[bytes, tuple]) -> list[tuple[str, str]]:
    key = pack_key(pid)
    if crypto.content_hash(data) != pid:
        out = [(key, HASH_MISMATCH)]
    else:
        out = []
    try:
        header_len = parse_trailer(data[-PACK_TRAILER.size :], len(data))
        start = len(data) - PACK_TRAILER.size - header_len
        entries = decode_header(repo.cipher, data[start : start + header_len], start)
    except PackFormatError as exc:
        return [(key, str(exc))]
    in_header = {e.id: e for e in entries}
    for blob_id, (btype, off, length, raw) in expected.items():
        e = in_header.get(blob_id)
        if e is None or (e.offset, e.length) != (off, length):
            out.append((f"blob {blob_id.hex()}", f"index places it in {key} but the pack header does not"))
            continue
        try:
            open_blob(repo.cipher, btype, blob_id, memoryview(data)[off : off + length], raw, key)
        except DamagedObject as exc:
            out.append((f"blob {blob_id.hex()}", f"in {key}: {exc.reason}"))
    return out
