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
from dataclasses import dataclass, field

from core import crypto
from core.errors import DamagedObject
from core.repository.blobs import open_blob
from core.repository.format import DATA, BlobType, PACK_TRAILER, pack_id_from_key, pack_key
from core.repository.packer import PackFormatError, decode_header, parse_trailer
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE
from core.restore.walk import display
from core.sources.postgres.wal import WalManifest, wal_key
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

    @property
    def ok(self) -> bool:
        return not self.damage


async def verify(repo: Repository, *, full: bool = False, snapshot_ids: list[str] | None = None,
                 max_files_listed: int = 1000) -> VerifyReport:
    report = VerifyReport(full=full)
    problems: dict[str, str] = {}  # object -> reason
    bad_blobs: dict[bytes, str] = {}  # blob id -> object key that holds it

    for exc in await repo.load_index(strict=False):
        problems[exc.key] = exc.reason

    snaps: list[Snapshot] = []
    if snapshot_ids is None:
        loaded, damaged = await repo.list_snapshots()
        snaps.extend(loaded)
        for exc in damaged:
            problems[exc.key] = exc.reason
    else:
        for sid in snapshot_ids:
            try:
                snaps.append(await repo.load_snapshot(sid))
            except DamagedObject as exc:
                problems[exc.key] = exc.reason
    report.snapshots_checked = len(snaps)

    # Indexed packs against what storage holds.
    on_storage: dict[bytes, int] = {}
    async for info in repo.backend.list(f"{DATA}/"):
        pid = pack_id_from_key(info.key)
        if pid is not None:
            on_storage[pid] = info.size
    for pid in repo.index.pack_ids():
        key = pack_key(pid)
        size = on_storage.get(pid)
        if size is None:
            problems[key] = "pack is missing"
        elif size != repo.index.pack_size(pid):
            problems[key] = f"pack is {size} bytes, the index says {repo.index.pack_size(pid)} (truncated?)"
    report.unreferenced_packs = sorted(pack_key(p) for p in on_storage if not repo.index.has_pack(p))

    if full:
        await _read_packs(repo, report, problems, on_storage)

    for key, reason in problems.items():
        if key.startswith(f"{DATA}/") and reason != HASH_MISMATCH:
            pid = pack_id_from_key(key)
            for blob_id, loc in repo.index.blobs():
                if loc.pack_id == pid:
                    bad_blobs[blob_id] = key
        elif key.startswith("blob "):
            bad_blobs[bytes.fromhex(key.split()[1])] = key

    # Walk every snapshot: trees must open; blobs must be indexed; note dependents.
    dependents: dict[str, set[str]] = defaultdict(set)
    files: dict[str, list[str]] = defaultdict(list)
    for snap in snaps:
        await _walk_snapshot(repo, snap, report, problems, bad_blobs, dependents, files, max_files_listed)

    # The WAL archive belongs to no snapshot: checked when the whole repository is.
    wal_dependents: dict[str, set[str]] = defaultdict(set)
    if snapshot_ids is None:
        await _check_wal(repo, report, problems, bad_blobs, wal_dependents, full)

    for obj, reason in sorted(problems.items()):
        report.damage.append(Damage(obj, reason, tuple(sorted(dependents.get(obj, ()))),
                                    tuple(files.get(obj, ())), tuple(sorted(wal_dependents.get(obj, ())))))
    return report


async def _check_wal(repo: Repository, report: VerifyReport, problems: dict[str, str],
                     bad_blobs: dict[bytes, str], dependents: dict[str, set[str]], full: bool) -> None:
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
            problems.setdefault(key, f"content does not match its manifest ({size} bytes read back, "
                                     f"{m.size} expected, or a different SHA-256)")
            dependents[key].add(m.name)

    await asyncio.gather(*(read_back(m) for m in readable))


async def _walk_snapshot(repo: Repository, snap: Snapshot, report: VerifyReport, problems: dict[str, str],
                         bad_blobs: dict[bytes, str], dependents: dict[str, set[str]],
                         files: dict[str, list[str]], cap: int) -> None:
    stack: list[tuple[tuple[bytes, ...], bytes]] = [((), bytes.fromhex(snap.tree))]
    while stack:
        prefix, tree_id = stack.pop()
        bad = _blob_problem(repo, tree_id, bad_blobs)
        if bad:
            problems.setdefault(bad[0], bad[1])
            dependents[bad[0]].add(snap.id)
            files[bad[0]].append(f"{snap.short_id}:{display(prefix) if prefix else '/'} (folder)")
            continue
        try:
            tree = await repo.load_tree(tree_id)
        except DamagedObject as exc:
            key = f"tree {tree_id.hex()}"
            problems.setdefault(key, exc.reason)
            dependents[key].add(snap.id)
            continue
        report.trees_checked += 1
        for node in tree.nodes:
            path = prefix + (node.name,)
            if node.type == DIR and node.subtree is not None:
                stack.append((path, node.subtree))
            elif node.type == FILE:
                for blob_id in node.content:
                    report.blobs_referenced += 1
                    bad = _blob_problem(repo, blob_id, bad_blobs)
                    if bad:
                        problems.setdefault(bad[0], bad[1])
                        dependents[bad[0]].add(snap.id)
                        if len(files[bad[0]]) < cap:
                            files[bad[0]].append(f"{snap.short_id}:{display(path)}")
                        break


def _blob_problem(repo: Repository, blob_id: bytes, bad_blobs: dict[bytes, str],
                  missing: str = "referenced by a snapshot but in no index (missing)") -> tuple[str, str] | None:
    if blob_id in bad_blobs:
        return bad_blobs[blob_id], ""
    if blob_id not in repo.index:
        return f"blob {blob_id.hex()}", missing
    return None


async def _read_packs(repo: Repository, report: VerifyReport, problems: dict[str, str],
                      on_storage: dict[bytes, int]) -> None:
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
            reason = await loop.run_in_executor(repo.executor, _check_pack, repo, pid, data,
                                                expected.get(pid, {}))
            report.packs_checked += 1
            for obj, why in reason:
                problems[obj] = why

    await asyncio.gather(*(check(pid) for pid in repo.index.pack_ids() if pid in on_storage))


def _check_pack(repo: Repository, pid: bytes, data: bytes, expected: dict[bytes, tuple]) -> list[tuple[str, str]]:
    key = pack_key(pid)
    if crypto.content_hash(data) != pid:
        out = [(key, HASH_MISMATCH)]
    else:
        out = []
    try:
        header_len = parse_trailer(data[-PACK_TRAILER.size:], len(data))
        start = len(data) - PACK_TRAILER.size - header_len
        entries = decode_header(repo.cipher, data[start:start + header_len], start)
    except PackFormatError as exc:
        return [(key, str(exc))]
    in_header = {e.id: e for e in entries}
    for blob_id, (btype, off, length, raw) in expected.items():
        e = in_header.get(blob_id)
        if e is None or (e.offset, e.length) != (off, length):
            out.append((f"blob {blob_id.hex()}", f"index places it in {key} but the pack header does not"))
            continue
        try:
            open_blob(repo.cipher, btype, blob_id, memoryview(data)[off:off + length], raw, key)
        except DamagedObject as exc:
            out.append((f"blob {blob_id.hex()}", f"in {key}: {exc.reason}"))
    return out
