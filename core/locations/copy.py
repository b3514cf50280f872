"""Copy snapshots from one location's repository to another's, packs as they are.

Both locations hold replicas of one repository (same config object, same key files), so
a pack is valid in either place byte for byte: nothing is decrypted, re-chunked or
re-encrypted. The write order on the target is the repository's own: every pack a
snapshot needs that the target lacks, then one index file naming them, then the
snapshot manifest last. A copy killed at any point leaves at worst unindexed packs,
which the next copy indexes instead of sending again; running it twice changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from core import crypto
from core.errors import DamagedObject
from core.repository import repo_config
from core.repository.keyring import MAX_KEYRING
from core.repository.format import (
    KEYRING,
    AD_INDEX,
    CONFIG,
    INDEX,
    KEYS,
    PACK_TRAILER,
    SNAPSHOTS,
    pack_key,
)
from core.repository.index import IndexedPack, PackEntry, encode_index
from core.repository.lock import Lock
from core.repository.packer import PackFormatError, decode_header, parse_trailer
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE
from core.storage.backend import Backend, LocationRefused, ObjectExists, ObjectNotFound

__all__ = ["CopyProgress", "CopyResult", "copy_snapshots", "ensure_replica", "missing_snapshots"]

# Packs in flight at once: each is held whole in memory (16 MiB by default) between its
# read and its write, so this bounds memory as well as concurrency.
PARALLEL_PACKS = 4
PACKS_PER_INDEX = 64


@dataclass(frozen=True, slots=True)
class CopyProgress:
    snapshot: str  # id of the snapshot being copied
    snapshots_done: int
    snapshots_total: int
    packs_done: int
    packs_total: int
    bytes_copied: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    source: str  # location names
    target: str
    copied: tuple[str, ...] = ()  # snapshot ids whose manifest this run wrote
    present: tuple[str, ...] = ()  # already there (their packs were still checked)
    packs_copied: int = 0
    packs_indexed: int = 0  # already on the target but unindexed (an interrupted copy)
    bytes_copied: int = 0
    created: bool = False  # the target was initialised as a replica by this run
    error: str | None = None  # the target failed midway; ``pending`` were not copied
    pending: tuple[str, ...] = ()
    wal_copied: tuple[str, ...] = ()  # archived WAL files whose manifest this run wrote
    # What the target would not do and the copy went on without (an append-only location
    # keeps a key file removed at the source: the old passphrase still opens it).
    warnings: tuple[str, ...] = ()


@dataclass
class _Run:
    source: Repository
    target: Repository
    on_progress: Callable[[CopyProgress], None] | None
    done_trees: set[bytes] = field(default_factory=set)  # fully ensured on the target this run
    unwritten: list[IndexedPack] = field(default_factory=list)
    packs_copied: int = 0
    packs_indexed: int = 0
    bytes_copied: int = 0


async def ensure_replica(source: Backend, target: Backend, target_name: str) -> tuple[bool, list[str]]:
    """Make ``target`` a replica of ``source``'s repository: (created now, warnings).

    A new replica gets the key files first and the config last (as ``init`` does), so a
    config is never visible without a key that opens it. Key files are mirrored on every
    call: a passphrase added at the source works at the target, and one removed there
    (``key remove``, ``key passwd``) stops opening the target too. A target holding another
    repository is refused before anything is written to it.
    """
    from core.locations.sites import LocationMismatch

    config = await source.get(CONFIG)
    created = False
    if await target.exists():
        theirs = (await repo_config.read_public(target)).get("id")
        ours = json.loads(config).get("id")
        if theirs != ours:
            raise LocationMismatch(
                f"location {target_name!r} ({target.location}) holds another repository (id "
                f"{str(theirs)[:8]}, not {str(ours)[:8]}); point it at an empty place or at a replica"
            )
    else:
        await target.create()
        created = True
    warnings = await _mirror_keys(source, target)
    await _mirror_keyrings(source, target)
    if created:
        try:
            await target.put(CONFIG, config)
        except ObjectExists:
            pass  # a concurrent copy initialised it; the caller checks the id on open
    return created, warnings


async def _mirror_keys(source: Backend, target: Backend) -> list[str]:
    """Make the target's key files the source's; the warnings for removals it refused."""
    have = {info.key async for info in target.list(f"{KEYS}/")}
    want = {info.key async for info in source.list(f"{KEYS}/")}
    if not want:
        return []  # never strip a replica of every key because one listing came back empty
    for key in sorted(want - have):
        try:
            await target.put(key, await source.get(key))
        except ObjectExists:
            pass
    refused = []
    for key in sorted(have - want):
        try:
            await target.delete(key)
        except ObjectNotFound:
            pass
        except LocationRefused:
            # Append-only: copies must go on (the backups matter more), but the removed
            # key's passphrase still opens this location: said on every copy until fixed.
            refused.append(
                f"{target.location} keeps {key}, removed at the source: its passphrase still opens this "
                "append-only location; remove it from a trusted host (`axisor-backup key remove` there)"
            )
    return refused


async def _mirror_keyrings(source: Backend, target: Backend) -> None:
    """Give the target every keyring object of the source (never removes one): blobs copied
    byte for byte may be sealed under a key the source retired (docs/FORMAT.md "Keyring")."""
    have = {info.key async for info in target.list(f"{KEYRING}/")}
    async for info in source.list(f"{KEYRING}/"):
        if info.key not in have and info.size <= MAX_KEYRING:
            try:
                await target.put(info.key, await source.get(info.key))
            except (ObjectExists, ObjectNotFound):
                pass


async def missing_snapshots(source: Repository, target: Backend) -> list[str]:
    """Ids of snapshots at ``source`` that ``target`` lacks (no manifest), oldest first."""
    have = {info.key.rsplit("/", 1)[-1] async for info in target.list(f"{SNAPSHOTS}/")}
    snaps, _damaged = await source.list_snapshots()
    return [s.id for s in snaps if s.id not in have]


async def copy_snapshots(
    source: Repository,
    target: Repository,
    snapshots: list[Snapshot],
    *,
    source_name: str,
    target_name: str,
    wal: list[str] | None = None,
    on_progress: Callable[[CopyProgress], None] | None = None,
) -> CopyResult:
    """Copy ``snapshots`` (oldest first is best), then the archived WAL files ``wal``
    (names; None: every one the target lacks), from ``source`` to ``target``.

    Both repositories must be opened with the same master key. Holds a shared lock on
    each. Raises on failure; manifests written before the failure stay valid.
    """
    run = _Run(source, target, on_progress)
    copied: list[str] = []
    present: list[str] = []
    async with (
        Lock(source.backend, exclusive=False, operation="copy"),
        Lock(target.backend, exclusive=False, operation="copy"),
    ):
        await source.load_index()
        await target.load_index()
        have = {info.key.rsplit("/", 1)[-1] async for info in target.backend.list(f"{SNAPSHOTS}/")}
        for n, snap in enumerate(snapshots):
            await _copy_one(run, snap, n, len(snapshots))
            if snap.id in have:
                present.append(snap.id)
            else:
                copied.append(snap.id)
        wal_copied = await _copy_wal(run, wal)
        await _copy_pins(run)
    return CopyResult(
        source_name,
        target_name,
        tuple(copied),
        tuple(present),
        run.packs_copied,
        run.packs_indexed,
        run.bytes_copied,
        wal_copied=tuple(wal_copied),
    )


async def _copy_one(run: _Run, snap: Snapshot, n: int, total: int) -> None:
    packs, visited = await _packs_needed(run, snap)
    await _ensure_packs(run, packs, snap.id, n, total)
    await _write_index(run)
    # The manifest last: it is the commit point on the target as it was on the source.
    await _copy_object(run, f"{SNAPSHOTS}/{snap.id}")
    run.done_trees |= visited


async def _copy_wal(run: _Run, names: list[str] | None) -> list[str]:
    """WAL manifests (and their packs) the target lacks, so a replica can serve
    point-in-time recovery too. One index file for all of them, then the manifests."""
    from core.sources.postgres.wal import WAL, list_names, load_manifest

    if names is None:
        have = {info.key.rsplit("/", 1)[-1] async for info in run.target.backend.list(f"{WAL}/")}
        names = [n for n in await list_names(run.source) if n not in have]
    if not names:
        return []
    packs: set[bytes] = set()
    for name in names:
        manifest = await load_manifest(run.source, name)
        if manifest is None:
            raise DamagedObject(f"{WAL}/{name}", f"missing at {run.source.backend.location}")
        for blob in manifest.blobs:
            blob_id = bytes.fromhex(blob)
            if blob_id in run.target.index:
                continue
            loc = run.source.index.lookup(blob_id)
            if loc is None:
                raise DamagedObject(
                    f"blob {blob}", f"WAL file {name} needs it but no index at {run.source.backend.location} names it"
                )
            packs.add(loc.pack_id)
    await _ensure_packs(run, packs, "wal", 0, 1)
    await _write_index(run)
    for name in sorted(names):
        await _copy_object(run, f"{WAL}/{name}")
    return sorted(names)


async def _copy_pins(run: _Run) -> None:
    """The tripwire's pins the target lacks (core/repository/pins.py), as they are: a pinned
    snapshot stays at every location holding it, so a prune there keeps it too. Sealed
    with the snapshot id, not the place: a replica opens them with the same key."""
    from core.repository.pins import PINS

    have = {info.key async for info in run.target.backend.list(f"{PINS}/")}
    async for info in run.source.backend.list(f"{PINS}/"):
        if info.key not in have:
            await _copy_object(run, info.key)


async def _copy_object(run: _Run, key: str) -> None:
    """Copy one commit object (a manifest) as it is."""
    try:
        data = await run.source.backend.get(key)
    except ObjectNotFound:
        raise DamagedObject(key, f"missing at {run.source.backend.location}") from None
    try:
        await run.target.backend.put(key, data)
    except ObjectExists:
        pass  # content-named (or, for WAL, the same file): already there


async def _ensure_packs(run: _Run, packs: set[bytes], label: str, n: int, total: int) -> None:
    """Make every pack in ``packs`` present at the target and queued for its index."""
    done = 0

    def report() -> None:
        if run.on_progress:
            run.on_progress(CopyProgress(label, n, total, done, len(packs), run.bytes_copied))

    report()
    slots = asyncio.Semaphore(PARALLEL_PACKS)

    async def one(pack_id: bytes) -> None:
        nonlocal done
        async with slots:
            entries, size, sent = await _transfer_pack(run, pack_id)
        run.target.index.add_pack(pack_id, size, entries)
        run.unwritten.append((pack_id, size, entries))
        if sent:
            run.packs_copied += 1
            run.bytes_copied += size
        else:
            run.packs_indexed += 1
        done += 1
        report()
        if len(run.unwritten) >= PACKS_PER_INDEX:
            await _write_index(run)

    tasks = [asyncio.create_task(one(p)) for p in sorted(packs)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _packs_needed(run: _Run, snap: Snapshot) -> tuple[set[bytes], set[bytes]]:
    """Source packs holding blobs of ``snap`` that the target's index lacks, and the trees seen."""
    packs: set[bytes] = set()
    visited: set[bytes] = set()

    def need(blob_id: bytes, what: str) -> None:
        if blob_id in run.target.index:
            return
        loc = run.source.index.lookup(blob_id)
        if loc is None:
            raise DamagedObject(
                f"{what} {blob_id.hex()}",
                f"snapshot {snap.short_id} needs it but no index at "
                f"{run.source.backend.location} names it; cannot copy this snapshot",
            )
        packs.add(loc.pack_id)

    stack = [bytes.fromhex(snap.tree)]
    while stack:
        tree_id = stack.pop()
        if tree_id in visited or tree_id in run.done_trees:
            continue
        visited.add(tree_id)
        need(tree_id, "tree")
        tree = await run.source.load_tree(tree_id)
        for node in tree.nodes:
            if node.type == FILE:
                for blob_id in node.content:
                    need(blob_id, "blob")
            elif node.type == DIR and node.subtree is not None:
                stack.append(node.subtree)
    return packs, visited


async def _transfer_pack(run: _Run, pack_id: bytes) -> tuple[list[PackEntry], int, bool]:
    """Put one pack on the target unless it is there; return its entries, size, and whether it was sent."""
    key = pack_key(pack_id)
    try:
        info = await run.target.backend.stat(key)
    except ObjectNotFound:
        info = None
    if info is not None:
        # Left by an interrupted copy: index it instead of sending it again.
        try:
            return await run.target.read_pack_header(pack_id, info.size), info.size, False
        except DamagedObject as exc:
            # Objects are never overwritten, so a damaged one cannot be repaired by a put.
            raise DamagedObject(
                key, f"at {run.target.backend.location}: {exc.reason}; remove that object there and copy again"
            ) from None
    try:
        data = await run.source.backend.get(key)
    except ObjectNotFound:
        raise DamagedObject(key, f"missing at {run.source.backend.location}; cannot copy it") from None
    loop = asyncio.get_running_loop()
    entries = await loop.run_in_executor(run.source.executor, _check_pack, run.source.cipher, pack_id, data, key)
    try:
        await run.target.backend.put(key, data)
    except ObjectExists:
        pass  # raced with another copy: same name, same bytes
    return entries, len(data), True


def _check_pack(cipher: crypto.AnyCipher, pack_id: bytes, data: bytes, key: str) -> list[PackEntry]:
    """Worker thread: a pack is copied only when its hash and header hold, so damage
    at the source is reported instead of spread to every location."""
    if crypto.content_hash(data) != pack_id:
        raise DamagedObject(key, "content does not match its name at the source; not copied")
    try:
        header_len = parse_trailer(data[-PACK_TRAILER.size :], len(data))
        start = len(data) - PACK_TRAILER.size - header_len
        return decode_header(cipher, data[start : len(data) - PACK_TRAILER.size], start)
    except PackFormatError as exc:
        raise DamagedObject(key, f"{exc}; not copied") from None


async def _write_index(run: _Run) -> None:
    batch, run.unwritten = run.unwritten, []
    if not batch:
        return
    key = await run.target.store_object(INDEX, AD_INDEX, encode_index(batch))
    run.target.index.files.add(key)
