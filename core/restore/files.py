"""Restoring a snapshot's files into a target directory.

Plan: walk the trees; files are grouped into batches (many small files, or one window of a
large file); each batch's blobs are fetched with one ranged read per run of neighbouring
blobs in a pack, then opened (decrypt, decompress, id check) and written on worker
threads into temp files that are renamed into place. Directories, symlinks, hard links and
directory metadata come last, so nothing is ever written through a link the restore made.
Every directory used is checked with lstat: a symlink where a folder should be is refused.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import stat
import uuid
from collections import defaultdict
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DamagedObject, RestoreRefused
from core.repository.blobs import open_blob
from core.repository.format import BlobType, pack_key
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE, SYMLINK, Node
from core.storage.backend import StorageError
from core.restore.walk import display, walk

_IS_ROOT = os.geteuid() == 0
_OWN_IDS = (os.geteuid(), os.getegid())

BATCH_BYTES = 8 * 1024 * 1024
BATCH_FILES = 512
MERGE_GAP = 256 * 1024
# Remote storage: a request costs a round trip (and, on S3, a billed request); reading a few
# MiB of unneeded blobs between two needed ones is cheaper than a second request.
REMOTE_MERGE_GAP = 16 * 1024 * 1024
IN_FLIGHT = 4


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    unchanged: int = 0  # already right: not written
    metadata: int = 0  # same content: only mode, owner or times set
    removed: int = 0  # with --delete: paths the snapshot does not have
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Piece:
    """One blob of one file, at an offset in that file."""

    blob_id: bytes
    pack: bytes
    offset: int  # in the pack
    length: int
    raw_length: int
    file_offset: int


@dataclass(slots=True)
class _FileJob:
    path: Path
    node: Node
    pieces: list[_Piece]
    temp: Path | None = None


def included(path: str, patterns: tuple[str, ...]) -> bool:
    """A path is restored when it or any folder above it matches a pattern."""
    if not patterns:
        return True
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if any(fnmatch.fnmatchcase(prefix, p) or fnmatch.fnmatchcase(prefix[1:], p) for p in patterns):
            return True
    return False


class FileRestorer:
    def __init__(self, repo: Repository, target: Path, *, include: tuple[str, ...] = (),
                 executor: Executor | None = None, actions: dict[Path, str] | None = None,
                 removals: list[Path] | None = None) -> None:
        self.repo = repo
        self.target = Path(os.path.abspath(target))
        self.include = include
        self.executor = executor
        self.stats = RestoreStats()
        self._checked_dirs: set[Path] = set()
        self._dirs: list[tuple[Path, Node]] = []
        self._symlinks: list[tuple[Path, Node]] = []
        self._links: list[tuple[Path, Path, Node]] = []
        self._first_by_inode: dict[tuple[int, int], Path] = {}
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._tasks: set[asyncio.Task] = set()
        self._failure: BaseException | None = None
        self._local = hasattr(repo.backend, "get_sync")
        # From a RestorePlan: what is already right is not written again.
        self._actions = actions or {}
        self._removals = removals or []
        self._meta_only: list[tuple[Path, Node]] = []

    async def restore(self, snap: Snapshot) -> RestoreStats:
        self._prepare_target()
        batch: list[_FileJob] = []
        batch_bytes = 0
        async for parts, node in walk(self.repo, bytes.fromhex(snap.tree)):
            shown = display(parts)
            if node.type == DIR:
                if included(shown, self.include):
                    self._dirs.append((self._dest(parts), node))
                continue
            if not included(shown, self.include):
                continue
            dest = self._dest(parts)
            action = self._actions.get(dest)
            if action == "conflict":
                raise RestoreRefused(f"{dest}: the restore would have to replace a folder or put one over a file")
            if node.type == FILE and node.nlink > 1 and action in ("unchanged", "metadata"):
                # A first path left in place is still what later hard links to it link to.
                self._first_by_inode.setdefault((node.dev, node.inode), dest)
            if action == "unchanged" and node.type != DIR:
                self.stats.unchanged += 1
                continue
            if action == "metadata" and node.type == FILE:
                self._meta_only.append((dest, node))
                continue
            if node.type == SYMLINK:
                self._symlinks.append((dest, node))
            elif node.type == FILE:
                key = (node.dev, node.inode)
                if node.nlink > 1 and key in self._first_by_inode:
                    self._links.append((dest, self._first_by_inode[key], node))
                    continue
                if node.nlink > 1:
                    self._first_by_inode[key] = dest
                job = _FileJob(dest, node, self._plan(node, shown))
                if node.size > BATCH_BYTES:
                    await self._submit(self._large_file(job))
                    continue
                batch.append(job)
                batch_bytes += node.size
                if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_FILES:
                    await self._submit(self._small_files(batch))
                    batch, batch_bytes = [], 0
        if batch:
            await self._submit(self._small_files(batch))
        await self._drain()
        await self._run(self._finish)
        return self.stats

    # -- planning -----------------------------------------------------------------------

    def _dest(self, parts: tuple[bytes, ...]) -> Path:
        return self.target.joinpath(*(os.fsdecode(p) for p in parts))

    def _plan(self, node: Node, shown: str) -> list[_Piece]:
        pieces = []
        pos = 0
        for blob_id in node.content:
            loc = self.repo.index.lookup(blob_id)
            if loc is None:
                raise RestoreRefused(f"{shown}: blob {blob_id.hex()[:16]} is in no index; run verify")
            pieces.append(_Piece(blob_id, loc.pack_id, loc.offset, loc.length, loc.raw_length, pos))
            pos += loc.raw_length
        if pos != node.size:
            raise RestoreRefused(f"{shown}: stored content is {pos} bytes but the tree says {node.size}")
        return pieces

    def _prepare_target(self) -> None:
        if self.target.is_symlink() and not self.target.is_dir():
            raise RestoreRefused(f"restore target {self.target} is a dangling symlink")
        self.target.mkdir(parents=True, exist_ok=True)
        if not self.target.is_dir():
            raise RestoreRefused(f"restore target {self.target} is not a folder")
        self._checked_dirs.add(self.target)

    def _ensure_dir(self, path: Path) -> None:
        """Create ``path`` and its parents below the target, refusing symlinks and files."""
        if path in self._checked_dirs:
            return
        if path.parent != path and path.parent not in self._checked_dirs:
            if self.target not in path.parents:
                raise RestoreRefused(f"{path} is outside the restore target {self.target}")
            self._ensure_dir(path.parent)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise RestoreRefused(f"{path} is a symlink; refusing to restore through it")
        if not stat.S_ISDIR(st.st_mode):
            raise RestoreRefused(f"{path} exists and is not a folder; move it away first")
        self._checked_dirs.add(path)

    # -- fetching -----------------------------------------------------------------------

    async def _fetch(self, pieces: list[_Piece]) -> dict[bytes, memoryview]:
        """Read every piece with one ranged read per run of close blobs in one pack; a whole
        restore reads each pack once into a small cache instead (neighbouring batches use
        the same packs, and each remote request is a round trip)."""
        if not self.include:
            return await self._fetch_packs(pieces)
        ranges = _ranges(pieces, REMOTE_MERGE_GAP)

        async def get(pack: bytes, start: int, end: int) -> bytes:
            try:
                return await self.repo.backend.get(pack_key(pack), start, end - start)
            except StorageError as exc:  # missing or short: the pack is damaged
                raise DamagedObject(pack_key(pack), str(exc)) from None

        datas = await asyncio.gather(*(get(pack, s, e) for pack, s, e, _ in ranges))
        return _slice(ranges, datas)

    async def _fetch_packs(self, pieces: list[_Piece]) -> dict[bytes, memoryview]:
        packs = list(dict.fromkeys(p.pack for p in pieces))
        datas = dict(zip(packs, await asyncio.gather(*(self._whole_pack(k) for k in packs))))
        out: dict[bytes, memoryview] = {}
        for p in pieces:
            data = datas[p.pack]
            if p.offset + p.length > len(data):
                raise DamagedObject(pack_key(p.pack), f"shorter ({len(data)} bytes) than the index says")
            out[p.blob_id] = memoryview(data)[p.offset:p.offset + p.length]
        return out

    async def _whole_pack(self, pack: bytes) -> bytes:
        try:
            return await self.repo.whole_pack(pack_key(pack))
        except StorageError as exc:  # missing: the pack is damaged
            raise DamagedObject(pack_key(pack), str(exc)) from None

    def _fetch_sync(self, pieces: list[_Piece]) -> dict[bytes, memoryview]:
        """The same on a worker thread, for a local backend: no trip through the loop."""
        get_sync = self.repo.backend.get_sync  # type: ignore[attr-defined]
        ranges = _ranges(pieces)
        datas = []
        for pack, s, e, _ in ranges:
            try:
                datas.append(get_sync(pack_key(pack), s, e - s))
            except StorageError as exc:
                raise DamagedObject(pack_key(pack), str(exc)) from None
        return _slice(ranges, datas)

    def _open(self, piece: _Piece, sealed: memoryview) -> bytes:
        return open_blob(self.repo.cipher, BlobType.DATA, piece.blob_id, sealed, piece.raw_length,
                         pack_key(piece.pack))

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

    def _write_small(self, jobs: list[_FileJob], blobs: dict[bytes, memoryview]) -> None:
        for job in jobs:
            self._ensure_dir(job.path.parent)
            fd, temp = self._create_temp(job.path)
            try:
                for piece in job.pieces:
                    data = self._open(piece, blobs[piece.blob_id])
                    _write_all(fd, data)
                self._apply_file_meta(fd, job.node)
            except BaseException:
                os.close(fd)
                _unlink_quiet(temp)  # never leave a half file behind, not even a temp one
                raise
            os.close(fd)
            self._place(temp, job)

    async def _large_file(self, job: _FileJob) -> None:
        self._ensure_dir(job.path.parent)
        fd, temp = self._create_temp(job.path)
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
                    pending.add(asyncio.ensure_future(self._window(fd, w)))
                await asyncio.gather(*pending)
            except BaseException:
                # Let windows still writing finish before the descriptor is closed: a
                # closed number can be reused at once by another file.
                await asyncio.gather(*pending, return_exceptions=True)
                raise
            self._apply_file_meta(fd, job.node)
        except BaseException:
            os.close(fd)
            _unlink_quiet(temp)
            raise
        os.close(fd)
        self._place(temp, job)

    async def _window(self, fd: int, pieces: list[_Piece]) -> None:
        if self._local:
            await self._run(lambda: self._write_window(fd, pieces, self._fetch_sync(pieces)))
        else:
            await self._run(self._write_window, fd, pieces, await self._fetch(pieces))

    def _write_window(self, fd: int, pieces: list[_Piece], blobs: dict[bytes, memoryview]) -> None:
        for piece in pieces:
            data = self._open(piece, blobs[piece.blob_id])
            view = memoryview(data)
            off = piece.file_offset
            while view:
                n = os.pwrite(fd, view, off)
                view, off = view[n:], off + n

    def _create_temp(self, final: Path) -> tuple[int, Path]:
        temp = final.parent / f".axisor-restore-{uuid.uuid4().hex[:12]}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        return fd, temp

    def _apply_file_meta(self, fd: int, node: Node) -> None:
        if _IS_ROOT and (node.uid, node.gid) != _OWN_IDS:
            os.fchown(fd, node.uid, node.gid)
        os.fchmod(fd, stat.S_IMODE(node.mode))
        os.utime(fd, ns=(node.atime_ns, node.mtime_ns))

    def _place(self, temp: Path, job: _FileJob) -> None:
        try:
            os.replace(temp, job.path)
        except OSError as exc:
            _unlink_quiet(temp)
            raise RestoreRefused(f"cannot put {job.path} in place: {exc.strerror}") from None
        self.stats.files += 1
        self.stats.bytes += job.node.size

    # -- last: links and folder metadata -----------------------------------------------

    def _finish(self) -> None:
        for path, _node in self._dirs:
            self._ensure_dir(path)
        for path, node in self._symlinks:
            self._ensure_dir(path.parent)
            temp = path.parent / f".axisor-restore-{uuid.uuid4().hex[:12]}"
            os.symlink(node.target, temp)
            if os.geteuid() == 0:
                os.lchown(temp, node.uid, node.gid)
            os.utime(temp, ns=(node.atime_ns, node.mtime_ns), follow_symlinks=False)
            try:
                os.replace(temp, path)
            except OSError as exc:
                _unlink_quiet(temp)
                raise RestoreRefused(f"cannot put symlink {path} in place: {exc.strerror}") from None
            self.stats.symlinks += 1
        for path, first, _node in self._links:
            self._ensure_dir(path.parent)
            temp = path.parent / f".axisor-restore-{uuid.uuid4().hex[:12]}"
            os.link(first, temp, follow_symlinks=False)
            os.replace(temp, path)
            self.stats.hardlinks += 1
        for path, node in self._meta_only:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                raise RestoreRefused(f"{path} changed while restoring (no longer a regular file)")
            if _IS_ROOT and (node.uid, node.gid) != (st.st_uid, st.st_gid):
                os.chown(path, node.uid, node.gid, follow_symlinks=False)
            os.chmod(path, stat.S_IMODE(node.mode))
            os.utime(path, ns=(node.atime_ns, node.mtime_ns), follow_symlinks=False)
            self.stats.metadata += 1
        for path in self._removals:  # files and links first, folders deepest first: the plan's order
            if self.target not in path.parents:
                raise RestoreRefused(f"{path} is outside the restore target {self.target}")
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            try:
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError as exc:
                raise RestoreRefused(f"cannot remove {path} (--delete): {exc.strerror}") from None
            self.stats.removed += 1
        # Deepest first, so setting a folder's mtime is not undone by writing inside it.
        for path, node in sorted(self._dirs, key=lambda d: len(d[0].parts), reverse=True):
            if os.geteuid() == 0:
                os.chown(path, node.uid, node.gid, follow_symlinks=False)
            os.chmod(path, stat.S_IMODE(node.mode))  # lstat-checked above: a real folder
            os.utime(path, ns=(node.atime_ns, node.mtime_ns), follow_symlinks=False)
            self.stats.dirs += 1


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
            out[p.blob_id] = mv[p.offset - s: p.offset - s + p.length]
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
