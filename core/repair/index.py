"""Rebuild the index from the packs themselves (`repair index`, `repair packs`).

Under the exclusive lock, in this order (docs/FORMAT.md, "Repair"):

1. Load every index file that opens; a damaged one is named and its content ignored
   (the packs it named are on storage and are indexed again from their own headers).
2. List ``data/``. An indexed pack that is gone is dropped. A pack that no index names,
   that has another size than its index entry, or that was asked to be checked, is read
   whole: when its BLAKE3 matches its name and its header opens, it is indexed from the
   header; otherwise it is damaged.
3. Salvage: every blob of a damaged pack (as the old index and, when it still opens, its
   header list them) that no sound pack holds is opened (decrypt, decompress, id check)
   and its sealed bytes are copied into new packs. A damaged pack of which nothing is
   known (no index entry, no header) is left alone.
4. Put the new packs, delete the damaged index files (a rebuilt one may take the same
   content-derived name), put new index files naming every sound and new pack, then delete
   the old sound index files, then the damaged packs.

A crash between steps leaves what prune's crashes leave (unindexed packs, old and new
index files side by side); a second run finishes. ``dry_run`` stops before step 4's puts
(salvage is computed, nothing is written) and takes only a shared lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from core import crypto
from core.errors import DamagedObject, UsageError
from core.repository.rewrite import INDEX_ENTRIES_PER_FILE, ensure_sole_holder, store_index, write_index
from core.repair.temporary import TEMP_SAFE_AGE, TempCleanup, clean_temporary
from core.repository.blobs import open_blob
from core.repository.format import INDEX, PACK_TRAILER, pack_key
from core.repository.index import IndexedPack, PackEntry
from core.repository.lock import Lock
from core.repository.packer import Packer, PackFormatError, decode_header, parse_trailer
from core.repository.repository import ForeignPack, Repository
from core.storage.backend import ObjectExists, ObjectNotFound, StorageError

# Blob entries per index file written by a rebuild (as prune writes them).
_HEAD = 1 + crypto.NONCE_SIZE  # flag | nonce, the packer's "head" of a sealed blob

ProgressFn = Callable[[str, int, int | None], None]  # phase, done, total


@dataclass
class RebuildReport:
    dry_run: bool
    index_files_before: int = 0
    index_files_after: int = 0
    damaged_index_files: list[tuple[str, str]] = field(default_factory=list)  # key, reason
    packs_on_storage: int = 0
    packs_indexed: int = 0  # in the index afterwards
    packs_missing: list[str] = field(default_factory=list)  # indexed, gone: dropped
    packs_reindexed: list[str] = field(default_factory=list)  # indexed from their own header
    packs_damaged: list[tuple[str, str]] = field(default_factory=list)  # salvaged, then deleted
    packs_unreadable: list[tuple[str, str]] = field(default_factory=list)  # nothing known: left alone
    packs_checked: int = 0  # read whole
    bytes_read: int = 0
    blobs_salvaged: int = 0
    packs_written: int = 0
    blobs_lost: list[str] = field(default_factory=list)  # hex ids indexed before, in no pack now
    changed: bool = False
    temporary: TempCleanup | None = None

    def to_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "changed": self.changed,
            "index_files": {
                "before": self.index_files_before,
                "after": self.index_files_after,
                "damaged": [{"object": k, "reason": r} for k, r in self.damaged_index_files],
            },
            "packs": {
                "on_storage": self.packs_on_storage,
                "indexed": self.packs_indexed,
                "checked": self.packs_checked,
                "missing": self.packs_missing,
                "reindexed": self.packs_reindexed,
                "damaged": [{"object": k, "reason": r} for k, r in self.packs_damaged],
                "unreadable": [{"object": k, "reason": r} for k, r in self.packs_unreadable],
                "written": self.packs_written,
            },
            "bytes_read": self.bytes_read,
            "blobs": {
                "salvaged": self.blobs_salvaged,
                "lost": len(self.blobs_lost),
                "lost_ids": self.blobs_lost[:1000],
            },
            "temporary": self.temporary.to_dict() if self.temporary else None,
        }


async def check_no_other_lock(lock: Lock, step: str) -> None:
    """Stop before a destructive step when anyone else holds a live lock (as prune does)."""
    await ensure_sole_holder(lock, "repair", step, "nothing was deleted")


def _header_of(repo: Repository, data: bytes) -> list[PackEntry]:
    """The entries of a whole pack's header; PackFormatError when it does not open."""
    header_len = parse_trailer(data[-PACK_TRAILER.size :], len(data))
    start = len(data) - PACK_TRAILER.size - header_len
    return decode_header(repo.cipher, data[start : start + header_len], start)


def _inspect(repo: Repository, pid: bytes, data: bytes) -> tuple[bool, list[PackEntry] | None, str]:
    """(sound, header entries or None, reason) for a whole pack (worker thread)."""
    try:
        entries: list[PackEntry] | None = _header_of(repo, data)
        reason = ""
    except (PackFormatError, DamagedObject) as exc:
        entries, reason = None, f"header does not open ({exc})"
    if crypto.content_hash(data) != pid:
        return False, entries, reason or "content does not match its name (bit rot, tampering or truncation)"
    return entries is not None, entries, reason


def _salvage(repo: Repository, key: str, data: bytes, entries: list[PackEntry]) -> list[tuple[PackEntry, bytes]]:
    """The blobs of a damaged pack that still open, with their sealed bytes (worker thread)."""
    good = []
    for e in entries:
        if e.offset < 0 or e.offset + e.length > len(data):
            continue  # cut off
        sealed = data[e.offset : e.offset + e.length]
        try:
            open_blob(repo.cipher, e.type, e.id, sealed, e.raw_length, key)
        except DamagedObject:
            continue
        good.append((e, sealed))
    return good


async def rebuild(
    repo: Repository,
    *,
    dry_run: bool = False,
    check: set[bytes] | Literal["all"] | None = None,
    on_progress: ProgressFn | None = None,
    temp_age: float = TEMP_SAFE_AGE,
) -> RebuildReport:
    """Rebuild the index (see module doc). ``check``: packs to read whole even when their
    index entry looks right (a set of pack ids, or ``"all"``); None for `repair index`."""
    progress = on_progress or (lambda phase, done, total: None)
    lock = Lock(repo.backend, exclusive=not dry_run, operation="repair --dry-run" if dry_run else "repair")
    async with lock:
        report = await _rebuild(repo, lock, dry_run, check, progress)
        report.temporary = await clean_temporary(repo.backend, older_than=temp_age, dry_run=dry_run)
    return report


Known = dict[bytes, tuple[int, list[PackEntry]]]  # pack id -> (size, entries), by the index files


async def _rebuild(
    repo: Repository, lock: Lock, dry_run: bool, check: set[bytes] | Literal["all"] | None, progress: ProgressFn
) -> RebuildReport:
    report = RebuildReport(dry_run=dry_run)
    # -- 1. what the index files say ------------------------------------------------------
    progress("loading index", 0, None)
    known, files = await _read_index_files(repo, report)
    old_blobs = {e.id for _, entries in known.values() for e in entries}
    # -- 2. what is on storage -------------------------------------------------------------
    on_storage = await repo.pack_sizes()
    report.packs_on_storage = len(on_storage)
    report.packs_missing = sorted(pack_key(p) for p in known if p not in on_storage)
    to_read = _packs_to_read(repo, known, on_storage, check)
    keep: Known = {p: known[p] for p in known if p in on_storage and p not in to_read}
    damaged: list[tuple[bytes, list[PackEntry]]] = []
    for n, pid in enumerate(sorted(to_read)):
        progress("reading packs", n, len(to_read))
        found = await _read_pack(repo, report, pid, known, on_storage, keep)
        if found is not None:
            damaged.append((pid, found))
    # -- 3. salvage ------------------------------------------------------------------------
    have = {e.id for _, entries in keep.values() for e in entries}
    written = await _salvage_packs(repo, report, damaged, have, dry_run, progress)
    report.packs_written = len(written)
    # -- 4. the new index, then the old index files and the damaged packs go ---------------
    new_packs: list[IndexedPack] = [(p, size, entries) for p, (size, entries) in sorted(keep.items())] + written
    report.packs_indexed = len(new_packs)
    report.blobs_lost = sorted(b.hex() for b in old_blobs - have)
    report.changed = bool(report.damaged_index_files or report.packs_missing or report.packs_reindexed or damaged)
    if not report.changed:
        report.index_files_after = report.index_files_before
        return report
    entries_after = sum(len(e) for _, _, e in new_packs)
    report.index_files_after = max(1, -(-entries_after // INDEX_ENTRIES_PER_FILE)) if new_packs else 0
    if not dry_run:
        await _replace(repo, lock, report, files, new_packs, [pid for pid, _ in damaged], progress)
    return report


async def _read_index_files(repo: Repository, report: RebuildReport) -> tuple[Known, list[str]]:
    """Every pack the readable index files name (the first naming wins), and those files;
    the damaged ones go to the report."""
    known: Known = {}
    files: list[str] = []
    async for info in repo.backend.list(f"{INDEX}/"):
        try:
            content = await repo.read_index_file(info.key, info.size)
        except DamagedObject as exc:
            report.damaged_index_files.append((info.key, exc.reason))
            continue
        files.append(info.key)
        for pid, size, entries in content:
            known.setdefault(pid, (size, list(entries)))
    report.index_files_before = len(files) + len(report.damaged_index_files)
    return known, files


def _packs_to_read(
    repo: Repository, known: Known, on_storage: dict[bytes, int], check: set[bytes] | Literal["all"] | None
) -> set[bytes]:
    """Packs read whole: unindexed or of another size than indexed, and those ``check`` names."""
    to_read = {p for p, size in on_storage.items() if p not in known or known[p][0] != size}
    if check == "all":
        return to_read | set(on_storage)
    if check:
        absent = [p for p in check if p not in on_storage and p not in known]
        if absent:
            raise UsageError(f"no pack {pack_key(absent[0])} in {repo.backend.location}")
        to_read |= {p for p in check if p in on_storage}
    return to_read


async def _read_pack(
    repo: Repository, report: RebuildReport, pid: bytes, known: Known, on_storage: dict[bytes, int], keep: Known
) -> list[PackEntry] | None:
    """Read one pack whole and judge it: a sound one goes into ``keep``; a damaged one's
    entries (header and index together) are returned for salvage; the rest is reported."""
    key = pack_key(pid)
    if pid not in known:
        # Named by no index: nothing is known to salvage unless its header opens, so a
        # file that is not one of our packs is named and never read whole.
        try:
            await repo.check_unindexed_pack(pid, on_storage[pid], hash_content=False)
        except ForeignPack as exc:
            report.packs_unreadable.append((key, exc.reason))
            return None
        except (DamagedObject, StorageError):
            pass  # read whole below, which says what is wrong with it
    try:
        data = await repo.backend.get(key)
    except (ObjectNotFound, StorageError) as exc:
        report.packs_unreadable.append((key, str(exc)))
        if pid in known:
            keep[pid] = known[pid]  # not ours to judge from a failed read: left as it was
        return None
    report.packs_checked += 1
    report.bytes_read += len(data)
    sound, header, reason = await repo._run(_inspect, repo, pid, data)
    if sound:
        assert header is not None
        keep[pid] = (len(data), header)
        if pid not in known or known[pid][0] != len(data):
            report.packs_reindexed.append(key)
        return None
    entries = {e.id: e for e in (header or [])}
    for e in known.get(pid, (0, []))[1]:
        entries.setdefault(e.id, e)
    if not entries:
        report.packs_unreadable.append((key, reason))  # no index entry, no header: left alone
        return None
    report.packs_damaged.append((key, reason))
    # The bytes are re-read at salvage time: at most one pack is held in memory.
    return list(entries.values())


async def _salvage_packs(
    repo: Repository,
    report: RebuildReport,
    damaged: list[tuple[bytes, list[PackEntry]]],
    have: set[bytes],
    dry_run: bool,
    progress: ProgressFn,
) -> list[IndexedPack]:
    """Copy the blobs of damaged packs that still open and are in no sound pack (``have``,
    updated) into new packs (stored unless a dry run); the new packs."""
    written: list[IndexedPack] = []
    packer = Packer()

    async def ship() -> None:
        nonlocal packer
        if not packer.entries:
            return
        full, packer = packer, Packer()
        pack_id, parts, entries = await repo._run(full.finalize, repo.cipher)
        if not dry_run:
            try:
                await repo.backend.put(pack_key(pack_id), parts)
            except ObjectExists:
                pass  # content-named: the same bytes are there already
        written.append((pack_id, full.size, list(entries)))

    for n, (pid, entries) in enumerate(damaged):
        progress("salvaging", n, len(damaged))
        key = pack_key(pid)
        try:
            data = await repo.backend.get(key)
        except (ObjectNotFound, StorageError):
            data = b""
        for e, sealed in await repo._run(_salvage, repo, key, data, [e for e in entries if e.id not in have]):
            packer.add(e.type, e.id, bytes(sealed[:_HEAD]), bytes(sealed[_HEAD:]), e.raw_length)
            have.add(e.id)
            report.blobs_salvaged += 1
            if packer.size >= repo.config.pack_size:
                await ship()
    await ship()
    return written


async def _delete_all(repo: Repository, keys: list[str]) -> None:
    for key in keys:
        try:
            await repo.backend.delete(key)
        except ObjectNotFound:
            pass


async def _replace(
    repo: Repository,
    lock: Lock,
    report: RebuildReport,
    files: list[str],
    new_packs: list[IndexedPack],
    damaged: list[bytes],
    progress: ProgressFn,
) -> None:
    """Delete the damaged index files, write the new index; only then delete the old sound
    index files, then the damaged packs."""
    # The damaged index files first: nothing in them can be read, so nothing is lost, and
    # index files are named by their content: a rebuilt file with the same entries takes the
    # very name of the damaged one, and its put would meet the damaged bytes there ("already
    # stored") and leave them in place, reported repaired.
    await check_no_other_lock(lock, "deleting damaged index files")
    await _delete_all(repo, sorted(k for k, _ in report.damaged_index_files))
    progress("writing index", 0, None)
    new_index, new_files = await write_index(repo, new_packs)
    report.index_files_after = len(new_files)
    old = sorted(k for k in files if k not in new_files)
    await check_no_other_lock(lock, "deleting index files")
    await _delete_all(repo, old)
    new_index.files = set(new_files)
    repo.replace_index(new_index)
    if damaged:
        await check_no_other_lock(lock, "deleting damaged packs")
    await _delete_all(repo, [pack_key(pid) for pid in damaged])


__all__ = ["RebuildReport", "check_no_other_lock", "rebuild", "store_index"]
