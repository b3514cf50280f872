"""Restoring a snapshot's files into a target directory.

Plan: walk the trees; files are grouped into batches (many small files, or one window of a
large file); each batch's blobs are fetched with one ranged read per run of neighbouring
blobs in a pack, then opened (decrypt, decompress, id check) and written on worker
threads into temp files that are renamed into place. Directories, symlinks, devices,
FIFOs, hard links and directory metadata come last, so nothing is ever written through a
link the restore made.

Every filesystem operation is relative to a folder descriptor opened with
O_DIRECTORY|O_NOFOLLOW (core/restore/fsops.py): a symlink where a folder should be is
refused, and a folder swapped for a symlink while the restore runs is never followed. As
root, a target that a user other than root can change (it or a folder above it) is refused
unless ``allow_untrusted_target``.

Attributes: owner (by name when the name exists here, else by number with a warning; only
root), mode (setuid/setgid stripped unless ``preserve_privileges``), extended attributes
(ACLs and file capabilities among them; capabilities stripped unless
``preserve_privileges``), times, and with ``file_flags`` the inode flags, set last. Where
the filesystem refuses one, the restore goes on and records a warning naming the path.
Sparse files are restored sparse: only the data runs are written, at their offsets.

Damage fails only the files that need it. A blob that is in no index, a pack that is
missing or shorter than the index says, or a blob that does not open leaves its byte range
of that file unwritten (a hole, reading as zeros); every other file is written as usual. A
file with such a range is a *partial* file: it is never renamed over its name (whatever is
there, a good older copy or nothing, stays as it was); its bytes are kept beside it as
``<name>.axisor-partial`` (mode without execute or privilege bits, times not set) and it is
listed in ``RestoreStats.partial`` with the missing ranges and the damaged objects. A later
restore that writes the file in full removes that leftover.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import itertools
import os
import stat
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DamagedObject, RestoreRefused, StorageFull
from core.fsmeta import flags as fsflags
from core.fsmeta.sparse import data_extents
from core.fsmeta.xattrs import ACL_NAMES, remove_xattr, write_xattr
from core.repository.blobs import open_blob
from core.repository.format import BlobType, pack_key
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import CHARDEV, DEVICES, DIR, FIFO, FILE, SYMLINK, Node
from core.restore import fsops
from core.restore.attributes import Owners, RestoreOptions, has_privileges, manages, wanted_mode, wanted_xattrs
from core.restore.outcome import PartialFile, RestoreStats, merge_ranges
from core.restore.select import included, path_parts
from core.restore.fsops import DIR_FLAGS, FILE_FLAGS, DirCache, Parts
from core.restore.walk import display, walk
from core.storage.backend import ObjectNotFound, StorageError
from core.storage.retry import StorageUnavailable, TransientError
from core.text import shown

_IS_ROOT = os.geteuid() == 0

BATCH_BYTES = 8 * 1024 * 1024
BATCH_FILES = 512
MERGE_GAP = 256 * 1024
# Remote storage: a request costs a round trip (and, on S3, a billed request); reading a few
# MiB of unneeded blobs between two needed ones is cheaper than a second request.
REMOTE_MERGE_GAP = 16 * 1024 * 1024
IN_FLIGHT = 4
_TEMP = ".axisor-restore-"
PARTIAL_SUFFIX = b".axisor-partial"  # a partial file's bytes, beside its name (never over it)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full target (or quota): exit 10, not a traceback


@dataclass(frozen=True, slots=True)
class _Piece:
    """One blob of one file, at an offset in that file's data stream (holes left out)."""

    blob_id: bytes
    pack: bytes
    offset: int  # in the pack
    length: int
    raw_length: int
    file_offset: int  # in the data stream: the file offset when the file has no holes


@dataclass(slots=True)
class _FileJob:
    parts: Parts
    node: Node
    pieces: list[_Piece]
    # Sparse files: the data runs, and where each starts in the data stream.
    extents: list[tuple[int, int]] | None = None
    starts: list[int] | None = None
    # Damage met on the way: data-stream ranges not written, damaged objects, failed blobs.
    # Windows of one file append from several worker threads (each append is atomic).
    lost: list[tuple[int, int]] = field(default_factory=list)
    damage: dict[str, str] = field(default_factory=dict)
    failed: set[bytes] = field(default_factory=set)
    # Bytes of each piece written, its blob's id verified (windows of a large file append
    # from several threads: list.append is atomic where `+=` on an int is not).
    written: list[int] = field(default_factory=list)
    ordinal: int = -1  # in the snapshot's walk (Placed)

    def file_ranges(self, stream_off: int, length: int) -> list[tuple[int, int]]:
        """A range of the data stream as ranges of the file (a sparse file's runs)."""
        if self.extents is None:
            return [(stream_off, length)]
        out = []
        starts = self.starts or []
        i = bisect.bisect_right(starts, stream_off) - 1
        while length > 0 and 0 <= i < len(self.extents):
            off, run = self.extents[i]
            within = stream_off - starts[i]
            n = min(length, run - within)
            out.append((off + within, n))
            stream_off, length, i = stream_off + n, length - n, i + 1
        return out


def pwrite_all(fd: int, data, off: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view, off = view[n:], off + n


def write_mapped(fd: int, data, stream_off: int, extents: list[tuple[int, int]], starts: list[int]) -> None:
    """Write ``data``, found at ``stream_off`` in a sparse file's data stream, at its file
    offsets: a piece may straddle one hole or many."""
    view = memoryview(data)
    i = bisect.bisect_right(starts, stream_off) - 1
    while view:
        if i >= len(extents):
            raise RestoreRefused("stored content is longer than the file's data runs")
        off, length = extents[i]
        within = stream_off - starts[i]
        n = min(len(view), length - within)
        pwrite_all(fd, view[:n], off + within)
        view, stream_off, i = view[n:], stream_off + n, i + 1


class FileRestorer:
    def __init__(
        self,
        repo: Repository,
        target: Path,
        *,
        include: tuple[str, ...] = (),
        executor: Executor | None = None,
        actions: dict[Path, str] | None = None,
        removals: list[Path] | None = None,
        options: RestoreOptions | None = None,
        leftovers: frozenset[Path] = frozenset(),
        on_written: Callable[[int, int], None] | None = None,
    ) -> None:
        """``on_written(files, bytes)``: after each file put in place, from the worker
        thread that wrote it (the caller hands it to its event loop thread-safely)."""
        self.on_written = on_written
        self.repo = repo
        self.target = Path(os.path.abspath(target))
        self.include = include
        self.executor = executor
        self.options = options or RestoreOptions()
        self.stats = RestoreStats()
        self._owners = Owners(self.options.numeric_owner)
        self._cache: DirCache | None = None
        self._dirs: list[tuple[Parts, Node]] = []
        self._others: list[tuple[Parts, Node]] = []  # symlinks, devices, FIFOs
        # Later hard links: (path, first path, their walk ordinals).
        self._links: list[tuple[Parts, Parts, int, int]] = []
        self._flagged: list[tuple[Parts, Node]] = []  # files whose flags are set last
        self._first_by_inode: dict[tuple[int, int], tuple[Parts, int]] = {}
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._tasks: set[asyncio.Task] = set()
        self._failure: BaseException | None = None
        self._local = hasattr(repo.backend, "get_sync")
        self._stats_lock = threading.Lock()
        # From a RestorePlan: what is already right is not written again.
        self._actions = actions or {}
        self._removals = removals or []
        self._meta_only: list[tuple[Parts, Node]] = []
        # Files whose <name>.axisor-partial (an earlier partial restore's) goes once they are whole.
        self._leftovers = leftovers
        self._partial_by_parts: dict[Parts, PartialFile] = {}

    def where(self, parts: Parts) -> str:
        return fsops.display(self.target, parts)

    def _full(self, parts: Parts | None, exc: OSError, folder: str | None = None) -> StorageFull:
        """The error for a target that ran out of space (or quota, or inodes) while writing
        ``parts`` (or creating ``folder``, a shown path). The file being written was a temp
        file, removed again: what was at its name stays."""
        what = (
            f" while writing {self.where(parts)}"
            if parts is not None
            else f" while creating the folder {folder}"
            if folder
            else ""
        )
        return StorageFull(
            f"the restore target {shown(str(self.target))} is full: {exc.strerror}{what}; files "
            "not restored yet are as they were (free space there and restore again)"
        )

    def warn(self, parts: Parts, message: str) -> None:
        with self._stats_lock:
            self.stats.warn(f"{self.where(parts)}: {message}")

    async def restore(self, snap: Snapshot) -> RestoreStats:
        try:
            self._prepare_target()
        except OSError as exc:
            if exc.errno in NO_SPACE:  # the target folder itself cannot be created
                raise self._full(None, exc, shown(str(self.target))) from None
            raise
        try:
            return await self._restore(snap)
        except OSError as exc:
            # A full target met where no file is being written (a folder, a link): still
            # exit 10 naming the target, never a traceback.
            if exc.errno in NO_SPACE:
                raise self._full(None, exc, exc.filename if isinstance(exc.filename, str) else None) from None
            raise
        finally:
            assert self._cache is not None
            self._cache.close()
            os.close(self._cache.root_fd)

    async def _restore(self, snap: Snapshot) -> RestoreStats:
        batch: list[_FileJob] = []
        batch_bytes = 0
        placed = self.stats.placed
        ordinal = -1
        async for parts, node in walk(self.repo, bytes.fromhex(snap.tree)):
            ordinal += 1
            if ordinal % 4096 == 0:
                placed.extend_to(ordinal + 4096)
            shown_path = display(parts)
            if node.type == DIR:
                if included(shown_path, self.include):
                    self._dirs.append((parts, node))
                continue
            if not included(shown_path, self.include):
                continue
            if self._set_aside(parts, node, ordinal):
                continue
            job = self._file_job(parts, node, shown_path)
            job.ordinal = ordinal
            if node.size > BATCH_BYTES:
                await self._submit(self._large_file(job))
                continue
            batch.append(job)
            batch_bytes += node.data_size
            if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_FILES:
                await self._submit(self._small_files(batch))
                batch, batch_bytes = [], 0
        if batch:
            await self._submit(self._small_files(batch))
        await self._drain()
        await self._run(self._finish)
        return self.stats

    # -- planning -----------------------------------------------------------------------

    def _set_aside(self, parts: Parts, node: Node, ordinal: int) -> bool:
        """Deal with an entry whose content is not written now: unchanged, metadata only, not
        a file (created at the end), a later hard link. False: the file's content is written."""
        action = self._actions.get(self._dest(parts)) if self._actions else None
        if action == "conflict":
            raise RestoreRefused(
                f"{self.where(parts)}: the restore would have to replace a folder or put one over a file"
            )
        if node.type == FILE and has_privileges(node) and not self.options.preserve_privileges:
            self.stats.strip(self.where(parts))
        if node.type == FILE and node.nlink > 1 and action in ("unchanged", "metadata"):
            # A first path left in place is still what later hard links to it link to.
            self._first_by_inode.setdefault((node.dev, node.inode), (parts, ordinal))
        if action == "unchanged":
            self.stats.unchanged += 1
            return True
        if action == "metadata" and node.type == FILE:
            self._meta_only.append((parts, node))
            return True
        if node.type != FILE:
            self._others.append((parts, node))
            return True
        key = (node.dev, node.inode)
        if node.nlink > 1 and key in self._first_by_inode:
            first, first_ordinal = self._first_by_inode[key]
            self._links.append((parts, first, ordinal, first_ordinal))
            return True
        if node.nlink > 1:
            self._first_by_inode[key] = (parts, ordinal)
        return False

    def _file_job(self, parts: Parts, node: Node, shown_path: str) -> _FileJob:
        """A file to write: its data extents (a sparse file's) and the pieces to fetch."""
        job = _FileJob(parts, node, [])
        if node.holes:
            job.extents = data_extents(node.size, node.holes)
            job.starts = []
            pos = 0
            for _off, length in job.extents:
                job.starts.append(pos)
                pos += length
        job.pieces = self._plan(node, shown_path, job)
        return job

    def _dest(self, parts: Parts) -> Path:
        return self.target.joinpath(*(os.fsdecode(p) for p in parts))

    def _plan(self, node: Node, shown_path: str, job: _FileJob) -> list[_Piece]:
        """The file's pieces. A blob in no index is lost: its length is unknown, so the
        whole span from the first such blob to the end of the last one (known from the
        blobs after it and the file's size) is left unwritten, and recorded in ``job``."""
        locs = [self.repo.index.lookup(b) for b in node.content]
        known = sum(loc.raw_length for loc in locs if loc is not None)
        unknown = [i for i, loc in enumerate(locs) if loc is None]
        if (known != node.data_size) if not unknown else (known >= node.data_size):
            raise RestoreRefused(
                f"{shown(shown_path)}: stored content is {known} bytes but the tree says {node.data_size}"
            )
        pieces = []
        pos = 0
        first, last = (unknown[0], unknown[-1]) if unknown else (len(locs), len(locs))
        for i in range(first):
            loc = locs[i]
            assert loc is not None
            pieces.append(_Piece(node.content[i], loc.pack_id, loc.offset, loc.length, loc.raw_length, pos))
            pos += loc.raw_length
        if not unknown:
            return pieces
        end = node.data_size - sum(loc.raw_length for loc in locs[last + 1 :] if loc is not None)
        job.lost.append((pos, end - pos))
        for i in unknown:
            job.damage.setdefault(
                f"blob {node.content[i].hex()}", "in no index (its pack was lost, or the index was rebuilt without it)"
            )
            job.failed.add(node.content[i])
        pos = end
        for i in range(last + 1, len(locs)):
            loc = locs[i]
            assert loc is not None
            pieces.append(_Piece(node.content[i], loc.pack_id, loc.offset, loc.length, loc.raw_length, pos))
            pos += loc.raw_length
        return pieces

    def _prepare_target(self) -> None:
        check = _IS_ROOT and not self.options.allow_untrusted_target
        fd = fsops.open_target(self.target, create=True, check_trust=check)
        assert fd is not None
        self._cache = DirCache(fd, self.target)

    # -- fetching -----------------------------------------------------------------------

    # A fetch returns each piece's sealed bytes by blob id, or the DamagedObject that kept
    # them from being read (a missing or short pack): that fails the files needing the
    # blob, not the restore. A location that cannot be reached still fails the restore.

    async def _fetch(self, pieces: list[_Piece]) -> dict[bytes, memoryview | DamagedObject]:
        """Read every piece with one ranged read per run of close blobs in one pack; a whole
        restore reads each pack once into a small cache instead (neighbouring batches use
        the same packs, and each remote request is a round trip)."""
        if not self.include:
            return await self._fetch_packs(pieces)
        ranges = _ranges(pieces, REMOTE_MERGE_GAP)
        get = self.repo.backend.get

        async def one(pack: bytes, start: int, end: int, group: list[_Piece]) -> dict:
            key = pack_key(pack)
            try:
                mv = memoryview(await get(key, start, end - start))
            except StorageError as exc:
                if len(group) == 1 or isinstance(exc, ObjectNotFound):
                    return dict.fromkeys((p.blob_id for p in group), _damage(key, exc))
                out: dict = {}  # a pack cut short: the pieces before the cut are still good
                for p in group:
                    try:
                        out[p.blob_id] = memoryview(await get(key, p.offset, p.length))
                    except StorageError as exc2:
                        out[p.blob_id] = _damage(key, exc2)
                return out
            return {p.blob_id: mv[p.offset - start : p.offset - start + p.length] for p in group}

        out: dict[bytes, memoryview | DamagedObject] = {}
        for part in await asyncio.gather(*(one(pack, s, e, g) for pack, s, e, g in ranges)):
            out.update(part)
        return out

    async def _fetch_packs(self, pieces: list[_Piece]) -> dict[bytes, memoryview | DamagedObject]:
        packs = list(dict.fromkeys(p.pack for p in pieces))
        datas = dict(zip(packs, await asyncio.gather(*(self._whole_pack(k) for k in packs))))
        out: dict[bytes, memoryview | DamagedObject] = {}
        for p in pieces:
            data = datas[p.pack]
            if isinstance(data, DamagedObject):
                out[p.blob_id] = data
            elif p.offset + p.length > len(data):
                out[p.blob_id] = DamagedObject(pack_key(p.pack), f"shorter ({len(data)} bytes) than the index says")
            else:
                out[p.blob_id] = memoryview(data)[p.offset : p.offset + p.length]
        return out

    async def _whole_pack(self, pack: bytes) -> bytes | DamagedObject:
        try:
            return await self.repo.whole_pack(pack_key(pack))
        except StorageError as exc:  # missing: the pack is damaged
            return _damage(pack_key(pack), exc)

    def _fetch_sync(self, pieces: list[_Piece]) -> dict[bytes, memoryview | DamagedObject]:
        """The same on a worker thread, for a local backend: no trip through the loop."""
        # Only for a local backend (self._local): get_sync is not part of the Backend protocol.
        get_sync: Callable[[str, int, int], bytes] = getattr(self.repo.backend, "get_sync")
        out: dict[bytes, memoryview | DamagedObject] = {}
        for pack, s, e, group in _ranges(pieces):
            key = pack_key(pack)
            try:
                mv = memoryview(get_sync(key, s, e - s))
            except StorageError as exc:
                if len(group) == 1 or isinstance(exc, ObjectNotFound):
                    out.update(dict.fromkeys((p.blob_id for p in group), _damage(key, exc)))
                    continue
                for p in group:  # a pack cut short: the pieces before the cut are still good
                    try:
                        out[p.blob_id] = memoryview(get_sync(key, p.offset, p.length))
                    except StorageError as exc2:
                        out[p.blob_id] = _damage(key, exc2)
                continue
            for p in group:
                out[p.blob_id] = mv[p.offset - s : p.offset - s + p.length]
        return out

    def _open(self, piece: _Piece, sealed: memoryview) -> bytes:
        return open_blob(self.repo.cipher, BlobType.DATA, piece.blob_id, sealed, piece.raw_length, pack_key(piece.pack))

    # -- writing ------------------------------------------------------------------------

    async def _submit(self, coro) -> None:
        if self._failure:
            coro.close()
            raise self._failure
        await self._slots.acquire()
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            self._slots.release()
            if not t.cancelled() and t.exception() and not self._failure:
                self._failure = t.exception()

        task.add_done_callback(done)

    async def _drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._failure:
            raise self._failure

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _small_files(self, jobs: list[_FileJob]) -> None:
        pieces = [p for j in jobs for p in j.pieces]
        if self._local:
            await self._run(lambda: self._write_small(jobs, self._fetch_sync(pieces)))
        else:
            await self._run(self._write_small, jobs, await self._fetch(pieces))

    def _write_small(self, jobs: list[_FileJob], blobs: dict[bytes, memoryview | DamagedObject]) -> None:
        assert self._cache is not None
        for job in jobs:
            with self._cache.dir(job.parts[:-1], create=True) as dfd:
                fd, temp = self._create_temp(dfd, job.parts)
                try:
                    if job.extents is not None:
                        os.ftruncate(fd, job.node.size)
                    self._write_pieces(fd, job, job.pieces, blobs)
                    if job.lost:
                        os.ftruncate(fd, job.node.size)  # a range lost at the end is a hole too
                        self._keep_partial(dfd, fd, temp, job)
                        continue
                    self._apply_meta(fd, job.parts, job.node, fresh=True)
                    self._place(dfd, fd, temp, job)
                except BaseException as exc:
                    _unlink_quiet(dfd, temp)  # never leave a half file behind, not even a temp one
                    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                        raise self._full(job.parts, exc) from None
                    raise
                finally:
                    os.close(fd)

    async def _large_file(self, job: _FileJob) -> None:
        assert self._cache is not None
        with self._cache.dir(job.parts[:-1], create=True) as dfd:
            fd, temp = self._create_temp(dfd, job.parts)
            try:
                # Windows land out of order (pwrite); set the final length first.
                os.ftruncate(fd, job.node.size)
                windows: list[list[_Piece]] = [[]]
                size = 0
                for p in job.pieces:
                    if size >= BATCH_BYTES:
                        windows.append([])
                        size = 0
                    windows[-1].append(p)
                    size += p.raw_length
                # Windows are independent (pwrite at their offsets): keep two in flight so
                # both cores decompress while the next window is read.
                pending: set[asyncio.Future] = set()
                try:
                    for w in windows:
                        if len(pending) >= 2:
                            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                            for d in done:
                                d.result()
                        pending.add(asyncio.ensure_future(self._window(fd, job, w)))
                    await asyncio.gather(*pending)
                except BaseException:
                    # Let windows still writing finish before the descriptor is closed: a
                    # closed number can be reused at once by another file.
                    await asyncio.gather(*pending, return_exceptions=True)
                    raise
                if job.lost:
                    await self._run(self._keep_partial, dfd, fd, temp, job)
                else:
                    await self._run(self._apply_meta, fd, job.parts, job.node, True)
                    self._place(dfd, fd, temp, job)
            except BaseException as exc:
                _unlink_quiet(dfd, temp)
                if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                    raise self._full(job.parts, exc) from None
                raise
            finally:
                os.close(fd)

    async def _window(self, fd: int, job: _FileJob, pieces: list[_Piece]) -> None:
        if self._local:
            await self._run(lambda: self._write_window(fd, job, pieces, self._fetch_sync(pieces)))
        else:
            await self._run(self._write_window, fd, job, pieces, await self._fetch(pieces))

    def _write_window(
        self, fd: int, job: _FileJob, pieces: list[_Piece], blobs: dict[bytes, memoryview | DamagedObject]
    ) -> None:
        self._write_pieces(fd, job, pieces, blobs)

    def _write_pieces(
        self, fd: int, job: _FileJob, pieces: list[_Piece], blobs: dict[bytes, memoryview | DamagedObject]
    ) -> None:
        """Open and write each piece at its offset; a piece that cannot be read or opened
        is left unwritten (a hole) and recorded in ``job``."""
        for piece in pieces:
            got = blobs[piece.blob_id]
            if not isinstance(got, DamagedObject):
                try:
                    data = self._open(piece, got)
                except DamagedObject as exc:
                    got = exc
            if isinstance(got, DamagedObject):
                job.lost.append((piece.file_offset, piece.raw_length))
                job.damage.setdefault(got.key, got.reason)
                job.failed.add(piece.blob_id)
                continue
            if job.extents is not None:
                write_mapped(fd, data, piece.file_offset, job.extents, job.starts or [])
            else:
                pwrite_all(fd, data, piece.file_offset)
            job.written.append(len(data))

    def _keep_partial(self, dfd: int, fd: int, temp: str, job: _FileJob) -> None:
        """A file with lost ranges: its bytes go to <name>.axisor-partial (replacing an
        older one), never over its name; it is recorded as partial."""
        parts = job.parts
        if _IS_ROOT:
            uid, gid = self._owners.ids(job.node, lambda m: self.warn(parts, m))
            try:
                os.fchown(fd, uid, gid)
            except OSError:
                pass
        # Holes where data belongs: never a program to run, never a privileged one.
        os.fchmod(fd, wanted_mode(job.node, self.options) & 0o666)
        name = parts[-1] + PARTIAL_SUFFIX
        try:
            os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            existing = True
        except FileNotFoundError:
            existing = False
        kept: str | None = self.where(parts[:-1] + (name,))
        note = ""
        try:
            os.replace(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            _unlink_quiet(dfd, temp)
            kept, note = None, f"its restored part was not kept: {exc.strerror}"
        ranges = merge_ranges(r for off, length in job.lost for r in job.file_ranges(off, length))
        pf = PartialFile(
            self.where(parts),
            self._dest(parts),
            parts,
            job.node.size,
            tuple(job.node.content),
            ranges,
            sorted(job.damage.items()),
            frozenset(job.failed),
            kept,
            existing,
            note,
        )
        with self._stats_lock:
            self.stats.partial.append(pf)
            self._partial_by_parts[parts] = pf

    def _create_temp(self, dfd: int, parts: Parts) -> tuple[int, str]:
        temp = f"{_TEMP}{uuid.uuid4().hex[:12]}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        except (FileNotFoundError, FileExistsError) as exc:  # the folder was removed, or a name planted
            raise RestoreRefused(
                f"cannot create {self.where(parts)}: {exc.strerror} (the folder changed while restoring)"
            ) from None
        except OSError as exc:
            if exc.errno in NO_SPACE:  # no inode left, or the quota's count of files reached
                raise self._full(parts, exc) from None
            raise
        return fd, temp

    def _place(self, dfd: int, fd: int, temp: str, job: _FileJob) -> None:
        """Rename the written temp file over the final name (same folder descriptor)."""
        st = os.fstat(fd)
        node = job.node
        # The write-time proof validation relies on: one verified piece per blob of the
        # snapshot's list, their bytes adding up to the data, the file as long as the
        # snapshot says. A file that falls short is not recorded: validation reads it back.
        whole = len(job.written) == len(node.content) and sum(job.written) == node.data_size and st.st_size == node.size
        try:
            os.replace(temp, job.parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            _unlink_quiet(dfd, temp)
            raise RestoreRefused(f"cannot put {self.where(job.parts)} in place: {exc.strerror}") from None
        with self._stats_lock:
            if whole:
                self.stats.placed.record(job.ordinal, st.st_dev, st.st_ino)
            self.stats.files += 1
            self.stats.bytes += job.node.size
            files, nbytes = self.stats.files, self.stats.bytes
        if self.on_written is not None:
            self.on_written(files, nbytes)
        if self._leftovers and self._dest(job.parts) in self._leftovers:
            # The file is whole now: an earlier partial restore's bytes of it can go.
            name = job.parts[-1] + PARTIAL_SUFFIX
            try:
                if stat.S_ISREG(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=dfd)
                    with self._stats_lock:
                        self.stats.partial_cleared += 1
            except FileNotFoundError:
                pass
        if self.options.file_flags and job.node.flags:
            with self._stats_lock:
                self._flagged.append((job.parts, job.node))

    # -- attributes -----------------------------------------------------------------------

    def _apply_meta(self, fd: int, parts: Parts, node: Node, fresh: bool) -> None:
        """Owner, extended attributes, mode, times on an open file or folder, in that order
        (a chown clears setuid bits and capabilities, so it comes first). ``fresh``: a file
        this restore created (it has no attributes to remove)."""
        opts = self.options
        if _IS_ROOT:
            uid, gid = self._owners.ids(node, lambda m: self.warn(parts, m))
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != (uid, gid):
                try:
                    os.fchown(fd, uid, gid)
                except OSError as exc:
                    self.warn(parts, f"owner {uid}:{gid} not restored: {exc.strerror}")
        want = wanted_xattrs(node, opts)
        if not fresh and opts.xattrs:
            keep = {n for n, _ in want}
            try:
                present = [os.fsencode(n) for n in os.listxattr(fd)]
            except OSError:
                present = []
            for name in present:
                if name not in keep and manages(name, opts):
                    if why := remove_xattr(fd, name):
                        self.warn(parts, why)
        for name, value in want:
            if name == ACL_NAMES[1] and node.type != DIR:
                continue  # a default ACL only means something on a folder
            if why := write_xattr(fd, name, value):
                self.warn(parts, why)
        os.fchmod(fd, wanted_mode(node, opts))
        os.utime(fd, ns=(node.atime_ns, node.mtime_ns))

    def _set_flags(self, fd: int, parts: Parts, node: Node) -> None:
        if why := fsflags.set_flags(fd, node.flags):
            self.warn(parts, why)

    # -- last: links, devices, folder metadata ---------------------------------------------

    def _finish(self) -> None:
        assert self._cache is not None
        cache = self._cache
        for parts, _node in self._dirs:
            with cache.dir(parts, create=True):
                pass
        self._place_others()
        self._make_links()
        for parts, node in self._meta_only:
            with cache.dir(parts[:-1]) as dfd:
                fd = self._open_regular(dfd, parts)
                try:
                    self._apply_meta(fd, parts, node, fresh=False)
                finally:
                    os.close(fd)
            if self.options.file_flags and node.flags:
                self._flagged.append((parts, node))
            self.stats.metadata += 1
        for path in self._removals:  # files and links first, folders deepest first: the plan's order
            if self.target not in path.parents:
                raise RestoreRefused(f"{shown(str(path))} is outside the restore target {shown(str(self.target))}")
            parts = path_parts(self.target, path)
            try:
                with cache.dir(parts[:-1]) as dfd:
                    self._remove(dfd, parts)
            except FileNotFoundError:
                continue
        # Flags last: an immutable or append-only file can no longer be renamed or linked.
        for parts, node in self._flagged:
            with cache.dir(parts[:-1]) as dfd:
                fd = self._open_regular(dfd, parts)
                try:
                    self._set_flags(fd, parts, node)
                finally:
                    os.close(fd)
        # Deepest first, so setting a folder's mtime is not undone by writing inside it,
        # and a folder's flags come after its children's.
        for parts, node in sorted(self._dirs, key=lambda d: len(d[0]), reverse=True):
            with cache.dir(parts) as fd:
                self._apply_meta(fd, parts, node, fresh=False)
                if self.options.file_flags and node.flags:
                    self._set_flags(fd, parts, node)
            self.stats.dirs += 1

    def _make_links(self) -> None:
        """Later hard links, linked to their first path's restored file (never to a partial one)."""
        assert self._cache is not None
        cache = self._cache
        for parts, first, ordinal, first_ordinal in self._links:
            if first in self._partial_by_parts:  # nothing whole to link to: partial as well
                pf = self._partial_by_parts[first]
                self.stats.partial.append(
                    PartialFile(
                        self.where(parts),
                        self._dest(parts),
                        parts,
                        pf.size,
                        pf.content,
                        pf.missing,
                        pf.damaged,
                        pf.failed,
                        None,
                        self._exists(parts),
                        f"hard link to {pf.path}, which is partial: not linked",
                    )
                )
                continue
            with cache.dir(first[:-1]) as sfd, cache.dir(parts[:-1], create=True) as dfd:
                temp = f"{_TEMP}{uuid.uuid4().hex[:12]}"
                try:
                    os.link(first[-1], temp, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                except OSError as exc:
                    raise RestoreRefused(
                        f"cannot link {self.where(parts)} to {self.where(first)}: {exc.strerror}"
                    ) from None
                try:
                    os.replace(temp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
                except OSError as exc:
                    _unlink_quiet(dfd, temp)
                    raise RestoreRefused(f"cannot put {self.where(parts)} in place: {exc.strerror}") from None
            if (proven := self.stats.placed.get(first_ordinal)) is not None:
                self.stats.placed.record(ordinal, *proven)  # the same inode: proven as its first path was
            self.stats.hardlinks += 1

    def _exists(self, parts: Parts) -> bool:
        assert self._cache is not None
        try:
            with self._cache.dir(parts[:-1]) as dfd:
                os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            return True
        except (OSError, RestoreRefused):
            return False

    def _open_regular(self, dfd: int, parts: Parts) -> int:
        try:
            fd = os.open(parts[-1], FILE_FLAGS, dir_fd=dfd)
        except OSError as exc:
            raise RestoreRefused(f"{self.where(parts)} changed while restoring ({exc.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RestoreRefused(f"{self.where(parts)} changed while restoring (no longer a regular file)")
        return fd

    def _remove(self, dfd: int, parts: Parts) -> None:
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(name, dir_fd=dfd)  # its content was removed before it
            else:
                os.unlink(name, dir_fd=dfd)  # a symlink is removed, never followed
        except FileNotFoundError:
            return
        except OSError as exc:
            raise RestoreRefused(f"cannot remove {self.where(parts)} (--delete): {exc.strerror}") from None
        assert self._cache is not None
        self._cache.forget(parts)
        self.stats.removed += 1

    def _place_others(self) -> None:
        """Symlinks, devices and FIFOs: each made in a private folder (0700, ours) beside its
        final place, where no other user can swap it before its owner, mode and times are
        set; then renamed into place. One private folder per parent folder, not per entry
        (a folder made and removed per symlink was a tenth of a restore of system folders)."""
        assert self._cache is not None
        for parent, group in itertools.groupby(self._others, key=lambda other: other[0][:-1]):
            todo = []
            for parts, node in group:
                if node.type in DEVICES and not _IS_ROOT:
                    self.warn(
                        parts,
                        f"{'character' if node.type == CHARDEV else 'block'} device not restored: "
                        "only root can create devices",
                    )
                else:
                    todo.append((parts, node))
            if not todo:
                continue
            with self._cache.dir(parent, create=True) as dfd, self._stage(dfd, parent) as sfd:
                for parts, node in todo:
                    self._place_other(dfd, sfd, parts, node)

    @contextlib.contextmanager
    def _stage(self, dfd: int, parent: Parts) -> Iterator[int]:
        """A private folder in ``dfd``, checked to be ours and closed to others; removed after."""
        stage = f".axisor-stage-{uuid.uuid4().hex[:12]}"
        os.mkdir(stage, 0o700, dir_fd=dfd)
        try:
            sfd = os.open(stage, DIR_FLAGS, dir_fd=dfd)
            try:
                st = os.fstat(sfd)
                if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
                    raise RestoreRefused(
                        f"{self.where(parent)} changed while restoring (a private folder was replaced)"
                    )
                yield sfd
            finally:
                os.close(sfd)
        finally:
            try:
                os.rmdir(stage, dir_fd=dfd)
            except OSError:
                pass

    def _place_other(self, dfd: int, sfd: int, parts: Parts, node: Node) -> None:
        try:
            self._make_other(sfd, parts, node)
            try:
                os.replace(b"n", parts[-1], src_dir_fd=sfd, dst_dir_fd=dfd)
            except OSError as exc:
                raise RestoreRefused(f"cannot put {self.where(parts)} in place: {exc.strerror}") from None
        except BaseException:
            try:  # the private folder must be empty for the next entry and for its removal
                os.unlink(b"n", dir_fd=sfd)
            except OSError:
                pass
            raise
        if node.type == SYMLINK:
            self.stats.symlinks += 1
        else:
            self.stats.special += 1

    def _make_other(self, sfd: int, parts: Parts, node: Node) -> None:
        opts = self.options
        if node.type == SYMLINK:
            os.symlink(node.target, b"n", dir_fd=sfd)
        elif node.type == FIFO:
            os.mkfifo(b"n", 0o600, dir_fd=sfd)
        else:
            kind = stat.S_IFCHR if node.type == CHARDEV else stat.S_IFBLK
            try:
                os.mknod(b"n", kind | 0o600, node.rdev, dir_fd=sfd)
            except OSError as exc:
                raise RestoreRefused(f"cannot create device {self.where(parts)}: {exc.strerror}") from None
        if _IS_ROOT:
            uid, gid = self._owners.ids(node, lambda m: self.warn(parts, m))
            try:
                os.chown(b"n", uid, gid, dir_fd=sfd, follow_symlinks=False)
            except OSError as exc:
                self.warn(parts, f"owner {uid}:{gid} not restored: {exc.strerror}")
        # Nothing else can reach the private folder: names in it are safe to use.
        proc = f"/proc/self/fd/{sfd}/n"
        for name, value in wanted_xattrs(node, opts):
            if name == ACL_NAMES[1]:
                continue
            if why := write_xattr(proc, name, value, follow=False):
                self.warn(parts, why)
        if node.type != SYMLINK:
            os.chmod(b"n", wanted_mode(node, opts), dir_fd=sfd)
        os.utime(b"n", ns=(node.atime_ns, node.mtime_ns), dir_fd=sfd, follow_symlinks=False)


def _ranges(pieces: list[_Piece], gap: int = MERGE_GAP) -> list[tuple[bytes, int, int, list[_Piece]]]:
    """Group pieces per pack into (pack, start, end, pieces) runs, merging small gaps."""
    by_pack: dict[bytes, list[_Piece]] = defaultdict(list)
    for p in pieces:
        by_pack[p.pack].append(p)
    ranges: list[tuple[bytes, int, int, list[_Piece]]] = []
    for pack, items in by_pack.items():
        items.sort(key=lambda p: p.offset)
        start, end, group = items[0].offset, items[0].offset + items[0].length, [items[0]]
        for p in items[1:]:
            if p.offset <= end + gap:
                end = max(end, p.offset + p.length)
                group.append(p)
            else:
                ranges.append((pack, start, end, group))
                start, end, group = p.offset, p.offset + p.length, [p]
        ranges.append((pack, start, end, group))
    return ranges


def _slice(ranges: list[tuple[bytes, int, int, list[_Piece]]], datas: list[bytes]) -> dict[bytes, memoryview]:
    out: dict[bytes, memoryview] = {}
    for (_pack, s, _e, group), data in zip(ranges, datas):
        mv = memoryview(data)
        for p in group:
            out[p.blob_id] = mv[p.offset - s : p.offset - s + p.length]
    return out


def _damage(key: str, exc: StorageError) -> DamagedObject:
    """A read that failed for the object's sake (missing, short) as damage to that object;
    a location that cannot be reached is no damage: it fails the restore as it is."""
    if isinstance(exc, (StorageUnavailable, TransientError)):
        raise exc
    if isinstance(exc, ObjectNotFound):
        return DamagedObject(key, "pack is missing")
    return DamagedObject(key, str(exc))


def _unlink_quiet(dfd: int, name: str | bytes) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
