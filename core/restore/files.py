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
import contextlib
import functools
import itertools
import logging
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path

from core.crypto import Cipher
from core.errors import DamagedObject, RestoreRefused
from core.fsmeta.sparse import data_extents
from core.fsmeta.xattrs import ACL_NAMES, write_xattr
from core.repository.format import pack_key
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import CHARDEV, DEVICES, DIR, FIFO, FILE, SYMLINK, Node
from core.restore import fsops, writer_proc
from core.restore.attributes import RestoreOptions, has_privileges, wanted_mode, wanted_xattrs
from core.restore.fsops import DIR_FLAGS, FILE_FLAGS, DirCache, Parts
from core.restore.outcome import PartialFile, RestoreStats
from core.restore.select import included, path_parts
from core.restore.walk import display, walk
from core.restore.writer import (
    NO_SPACE,
    FileJob,
    FileWriter,
    Piece,
    damage,
    fetch_sync,
    ranges,
    temp_name,
    unlink_quiet,
)
from core.storage.backend import ObjectNotFound, StorageError
from core.storage.local import LocalBackend
from core.text import shown

_IS_ROOT = os.geteuid() == 0
log = logging.getLogger(__name__)

BATCH_BYTES = 8 * 1024 * 1024
BATCH_FILES = 512
# Remote storage: a request costs a round trip (and, on S3, a billed request); reading a few
# MiB of unneeded blobs between two needed ones is cheaper than a second request.
REMOTE_MERGE_GAP = 16 * 1024 * 1024
IN_FLIGHT = 4
# A snapshot of at least this many files restores its small files in worker processes
# (core/restore/writer_proc.py); the environment variable changes it (0: always, as the
# tests that run the restore both ways set it).
POOL_MIN_FILES = 4096
POOL_FILES_ENV = "AXISOR_RESTORE_PROCESS_FILES"


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
        # Local storage is read on the thread (or process) that writes, without the loop.
        # Only a local backend has get_sync: it is not part of the Backend protocol.
        self._get_sync: Callable[[str, int, int], bytes] | None = getattr(repo.backend, "get_sync", None)
        self.writer = FileWriter(repo.cipher, self.target, self.options, self)
        self._pool_start: asyncio.Future[writer_proc.WriterPool] | None = None
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

    def warn(self, parts: Parts, message: str) -> None:
        with self._stats_lock:
            self.stats.warn(f"{self.where(parts)}: {message}")

    async def restore(self, snap: Snapshot) -> RestoreStats:
        try:
            self._prepare_target()
        except OSError as exc:
            if exc.errno in NO_SPACE:  # the target folder itself cannot be created
                raise self.writer.full(None, exc, shown(str(self.target))) from None
            raise
        try:
            self._start_pool(snap)
            return await self._restore(snap)
        except OSError as exc:
            # A full target met where no file is being written (a folder, a link): still
            # exit 10 naming the target, never a traceback.
            if exc.errno in NO_SPACE:
                raise self.writer.full(None, exc, exc.filename if isinstance(exc.filename, str) else None) from None
            raise
        finally:
            await self._stop_pool()
            assert self._cache is not None
            self._cache.close()
            os.close(self._cache.root_fd)

    def _start_pool(self, snap: Snapshot) -> None:
        """Worker processes for the small files of a restore of many from local storage
        (core/restore/writer_proc.py says why); a few files are not worth starting them.
        They start beside the walk; if they cannot start, the threads write every batch
        (a speed-up, never a need)."""
        backend = self.repo.backend
        cipher = self.repo.cipher
        if (
            self.include
            or snap.summary.total_files < _pool_min_files()
            or not isinstance(backend, LocalBackend)
            or not isinstance(cipher, Cipher)
        ):
            return
        workers = max(2, os.cpu_count() or 2)
        start = functools.partial(
            writer_proc.WriterPool.start, workers, cipher, backend.root, self.target, self.options
        )
        self._pool_start = asyncio.get_running_loop().run_in_executor(self.executor, start)

    async def _ready_pool(self) -> writer_proc.WriterPool | None:
        """The worker processes once they have started (the walk goes on meanwhile: this
        waits in one batch's task), or None: not wanted, or they could not start."""
        if self._pool_start is None:
            return None
        try:
            return await asyncio.shield(self._pool_start)
        except Exception:
            return None

    async def _stop_pool(self) -> None:
        if self._pool_start is None:
            return
        try:
            pool = await self._pool_start
        except Exception as exc:
            log.debug("restore worker processes did not start (%s): small files were written on threads", exc)
            return
        await self._run(pool.close)

    async def _restore(self, snap: Snapshot) -> RestoreStats:
        batch: list[FileJob] = []
        batch_bytes = 0
        placed = self.stats.placed
        ordinal = -1
        async for parts, node in walk(self.repo, bytes.fromhex(snap.tree)):
            ordinal += 1
            if ordinal % 4096 == 0:
                placed.extend_to(ordinal + 4096)
            shown_path = display(parts) if self.include else ""
            if node.type == DIR:
                if included(shown_path, self.include):
                    self._dirs.append((parts, node))
                continue
            if not included(shown_path, self.include):
                continue
            if self._set_aside(parts, node, ordinal):
                continue
            job = self._file_job(parts, node)
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

    def _file_job(self, parts: Parts, node: Node) -> FileJob:
        """A file to write: its data extents (a sparse file's) and the pieces to fetch."""
        job = FileJob(parts, node, [])
        if node.holes:
            job.extents = data_extents(node.size, node.holes)
            job.starts = []
            pos = 0
            for _off, length in job.extents:
                job.starts.append(pos)
                pos += length
        job.pieces = self._plan(node, job)
        job.leftover = bool(self._leftovers) and self._dest(parts) in self._leftovers
        return job

    def _dest(self, parts: Parts) -> Path:
        return self.target.joinpath(*(os.fsdecode(p) for p in parts))

    def _plan(self, node: Node, job: FileJob) -> list[Piece]:
        """The file's pieces. A blob in no index is lost: its length is unknown, so the
        whole span from the first such blob to the end of the last one (known from the
        blobs after it and the file's size) is left unwritten, and recorded in ``job``."""
        locs = [self.repo.index.lookup(b) for b in node.content]
        known = sum(loc.raw_length for loc in locs if loc is not None)
        unknown = [i for i, loc in enumerate(locs) if loc is None]
        if (known != node.data_size) if not unknown else (known >= node.data_size):
            raise RestoreRefused(
                f"{shown(display(job.parts))}: stored content is {known} bytes but the tree says {node.data_size}"
            )
        pieces = []
        pos = 0
        first, last = (unknown[0], unknown[-1]) if unknown else (len(locs), len(locs))
        for i in range(first):
            loc = locs[i]
            assert loc is not None
            pieces.append(Piece(node.content[i], loc.pack_id, loc.offset, loc.length, loc.raw_length, pos))
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
            pieces.append(Piece(node.content[i], loc.pack_id, loc.offset, loc.length, loc.raw_length, pos))
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

    async def _fetch(self, pieces: list[Piece]) -> dict[bytes, memoryview | DamagedObject]:
        """Read every piece with one ranged read per run of close blobs in one pack; a whole
        restore reads each pack once into a small cache instead (neighbouring batches use
        the same packs, and each remote request is a round trip)."""
        if not self.include:
            return await self._fetch_packs(pieces)
        runs = ranges(pieces, REMOTE_MERGE_GAP)
        get = self.repo.backend.get

        async def one(pack: bytes, start: int, end: int, group: list[Piece]) -> dict:
            key = pack_key(pack)
            try:
                mv = memoryview(await get(key, start, end - start))
            except StorageError as exc:
                if len(group) == 1 or isinstance(exc, ObjectNotFound):
                    return dict.fromkeys((p.blob_id for p in group), damage(key, exc))
                out: dict = {}  # a pack cut short: the pieces before the cut are still good
                for p in group:
                    try:
                        out[p.blob_id] = memoryview(await get(key, p.offset, p.length))
                    except StorageError as exc2:
                        out[p.blob_id] = damage(key, exc2)
                return out
            return {p.blob_id: mv[p.offset - start : p.offset - start + p.length] for p in group}

        out: dict[bytes, memoryview | DamagedObject] = {}
        for part in await asyncio.gather(*(one(pack, s, e, g) for pack, s, e, g in runs)):
            out.update(part)
        return out

    async def _fetch_packs(self, pieces: list[Piece]) -> dict[bytes, memoryview | DamagedObject]:
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
            return damage(pack_key(pack), exc)

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

    async def _small_files(self, jobs: list[FileJob]) -> None:
        assert self._cache is not None
        dir_of = functools.partial(self._cache.dir, create=True)
        if (pool := await self._ready_pool()) is not None:
            await self._run(pool.write, jobs, dir_of, self)
        elif self._get_sync is not None:
            get_sync = self._get_sync
            pieces = [p for j in jobs for p in j.pieces]
            await self._run(lambda: self.writer.write_small(jobs, fetch_sync(get_sync, pieces), dir_of))
        else:
            blobs = await self._fetch([p for j in jobs for p in j.pieces])
            await self._run(self.writer.write_small, jobs, blobs, dir_of)

    async def _large_file(self, job: FileJob) -> None:
        assert self._cache is not None
        with self._cache.dir(job.parts[:-1], create=True) as dfd:
            fd, temp = self.writer.create_temp(dfd, job.parts)
            try:
                # Windows land out of order (pwrite); set the final length first.
                os.ftruncate(fd, job.node.size)
                windows: list[list[Piece]] = [[]]
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
                    await self._run(self.writer.keep_partial, dfd, fd, temp, job)
                else:
                    await self._run(self.writer.apply_meta, fd, job.parts, job.node, True)
                    self.writer.place(dfd, fd, temp, job)
            except BaseException as exc:
                unlink_quiet(dfd, temp)
                if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                    raise self.writer.full(job.parts, exc) from None
                raise
            finally:
                os.close(fd)

    async def _window(self, fd: int, job: FileJob, pieces: list[Piece]) -> None:
        if self._get_sync is not None:
            get_sync = self._get_sync
            await self._run(lambda: self._write_window(fd, job, pieces, fetch_sync(get_sync, pieces)))
        else:
            await self._run(self._write_window, fd, job, pieces, await self._fetch(pieces))

    def _write_window(
        self, fd: int, job: FileJob, pieces: list[Piece], blobs: dict[bytes, memoryview | DamagedObject]
    ) -> None:
        self.writer.write_pieces(fd, job, pieces, blobs)

    # -- what the writer tells (core/restore/writer.py, Sink) --------------------------------

    def placed(self, ordinal: int, size: int, dev: int, ino: int, whole: bool) -> None:
        with self._stats_lock:
            if whole:
                self.stats.placed.record(ordinal, dev, ino)
            self.stats.files += 1
            self.stats.bytes += size
            files, nbytes = self.stats.files, self.stats.bytes
        if self.on_written is not None:
            self.on_written(files, nbytes)

    def partial(self, pf: PartialFile) -> None:
        with self._stats_lock:
            self.stats.partial.append(pf)
            self._partial_by_parts[pf.inner] = pf

    def cleared(self) -> None:
        with self._stats_lock:
            self.stats.partial_cleared += 1

    def flagged(self, parts: Parts, node: Node) -> None:
        with self._stats_lock:
            self._flagged.append((parts, node))

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
                    self.writer.apply_meta(fd, parts, node, fresh=False)
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
                    self.writer.set_flags(fd, parts, node)
                finally:
                    os.close(fd)
        # Deepest first, so setting a folder's mtime is not undone by writing inside it,
        # and a folder's flags come after its children's.
        for parts, node in sorted(self._dirs, key=lambda d: len(d[0]), reverse=True):
            with cache.dir(parts) as fd:
                self.writer.apply_meta(fd, parts, node, fresh=False)
                if self.options.file_flags and node.flags:
                    self.writer.set_flags(fd, parts, node)
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
                temp = temp_name()
                try:
                    os.link(first[-1], temp, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                except OSError as exc:
                    raise RestoreRefused(
                        f"cannot link {self.where(parts)} to {self.where(first)}: {exc.strerror}"
                    ) from None
                try:
                    os.replace(temp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
                except OSError as exc:
                    unlink_quiet(dfd, temp)
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
            uid, gid = self.writer.owners.ids(node, lambda m: self.warn(parts, m))
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


def _pool_min_files() -> int:
    try:
        return int(os.environ.get(POOL_FILES_ENV, POOL_MIN_FILES))
    except ValueError:
        return POOL_MIN_FILES
