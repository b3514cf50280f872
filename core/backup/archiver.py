"""The archiver: walks paths, stores changed file contents, builds trees bottom-up.

Pipeline (DESIGN.md, "Backup"): scan -> compare with the reference tree -> read ->
chunk -> id -> skip known -> compress -> encrypt -> pack -> upload. The walk runs on
the event loop and never waits for file contents: each directory's tree is finished by
a task that awaits its children, so reading, sealing and uploading overlap across
directories. Every stage in flight is bounded, so memory is flat whatever the data.
"""

from __future__ import annotations

import asyncio
import fnmatch
import grp
import os
import pwd
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.backup.stream import StreamWriter
from core.backup.watchdog import NO_WATCHDOG, Watchdog
from core.errors import SourceError
from core.repository.blobs import SealedBlob
from core.repository.format import BlobType
from core.repository.repository import Repository
from core.repository.tree import DIR, FILE, SYMLINK, Node, Tree

SMALL_BATCH_BYTES = 4 * 1024 * 1024
SMALL_BATCH_FILES = 256


@dataclass
class ArchiveStats:
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    files_removed: int = 0
    dirs: int = 0
    total_files: int = 0
    total_bytes: int = 0
    bytes_read: int = 0
    warnings: list[str] = field(default_factory=list)
    unreadable: int = 0


@dataclass(frozen=True, slots=True)
class _Pending:
    """A file whose content is being read: the node waits for its blob ids."""

    path: bytes
    st: os.stat_result


@dataclass(frozen=True, slots=True)
class _DirPlace:
    """A folder's place in its parent until its own tree is saved. A plain value, not a
    coroutine: a cancelled backup must not leave coroutines that were never awaited."""

    name: bytes
    st: os.stat_result
    subtree: Awaitable[bytes]


@dataclass(slots=True)
class _SmallFile:
    """A small file's place in its folder until its batch is read. One future per batch,
    not per file: with tens of thousands of small files, per-file futures and coroutines
    were a large share of the event loop's time."""

    path: bytes
    name: bytes
    st: os.stat_result
    batch: asyncio.Future
    content: tuple[tuple[bytes, ...], int] | None = None  # (ids, stored size); None: dropped


# What a folder's entry becomes while the walk goes on: done, waiting for its batch or tree,
# or a large file's upload.
_Child = Node | _DirPlace | _SmallFile | Awaitable[Node]


class _NameCache:
    def __init__(self) -> None:
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        if uid not in self.users:
            try:
                self.users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self.users[uid] = ""
        return self.users[uid]

    def group(self, gid: int) -> str:
        if gid not in self.groups:
            try:
                self.groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self.groups[gid] = ""
        return self.groups[gid]


def _unchanged(old: Node | None, st: os.stat_result) -> bool:
    return (
        old is not None and old.type == FILE and old.size == st.st_size
        and old.mtime_ns == st.st_mtime_ns and old.ctime_ns == st.st_ctime_ns
        and old.inode == st.st_ino
    )


class Archiver:
    def __init__(self, repo: Repository, *, workers: int, reread_all: bool,
                 exclude: tuple[str, ...] = (),
                 on_progress: Callable[[ArchiveStats], None] | None = None) -> None:
        self.repo = repo
        self.reread_all = reread_all
        self.exclude = exclude
        self.stats = ArchiveStats()
        self.names = _NameCache()
        self.on_progress = on_progress
        self._loop = asyncio.get_running_loop()
        self._streams = StreamWriter(repo, slots=workers + 1, spawn=self._spawn)
        self._batch_slots = asyncio.Semaphore(workers + 2)
        self._stream_slots = asyncio.Semaphore(2)
        self._tasks: set[asyncio.Task] = set()
        self._failure: BaseException | None = None
        self._batch: list[_SmallFile] = []
        self._batch_future: asyncio.Future = self._loop.create_future()
        self._batch_bytes = 0
        self.watch: Watchdog = NO_WATCHDOG  # set by the run: names the file of a stalled read

    # -- public -------------------------------------------------------------------------

    async def archive(self, paths: list[Path], reference: Tree | None) -> bytes:
        """Store ``paths`` (absolute) and return the root tree id.

        The root tree mirrors the paths' absolute locations, as restic does, so a restore
        recreates srv/axisor/users under its target and nothing collides."""
        layout: dict = {}
        for p in paths:
            parts = [os.fsencode(x) for x in Path(os.path.abspath(p)).parts[1:]]
            if not parts:
                raise SourceError("backing up / as a whole is not supported; list the folders instead")
            d = layout
            for part in parts[:-1]:
                d = d.setdefault(part, {})
                if d is None:
                    break
            else:
                d[parts[-1]] = None  # a leaf: archive the real thing here
        for p in paths:
            try:
                os.lstat(p)
            except FileNotFoundError:
                raise SourceError(f"source path {p} does not exist") from None
            except PermissionError:
                raise SourceError(f"source path {p} cannot be read: permission denied") from None
        root = await self._virtual_dir(b"/", layout, reference)
        await self._send_batch()  # the walk is over: the last small files go now
        await self._drain()
        return root.result()

    # -- walking ------------------------------------------------------------------------

    async def _virtual_dir(self, real: bytes, layout: dict, reference: Tree | None) -> asyncio.Future:
        children: list[_Child] = []
        for name in sorted(layout):
            path = os.path.join(real, name)
            old = reference.find(name) if reference else None
            if layout[name] is None:
                node = await self._entry(path, name, old)
                if node is not None:
                    children.append(node)
            else:
                sub = await self._load_subtree(old)
                st = os.lstat(path)
                fut = await self._virtual_dir(path, layout[name], sub)
                children.append(_DirPlace(name, st, fut))
        return self._spawn(self._finish_dir(children, reference))

    async def _load_subtree(self, old: Node | None) -> Tree | None:
        if old is None or old.type != DIR or old.subtree is None:
            return None
        return await self.repo.reference_tree(old.subtree)

    def _excluded(self, path: bytes, name: bytes) -> bool:
        if not self.exclude:
            return False
        p, n = os.fsdecode(path), os.fsdecode(name)
        return any(fnmatch.fnmatch(n, pat) or fnmatch.fnmatch(p, pat) for pat in self.exclude)

    async def _entry(self, path: bytes, name: bytes, old: Node | None,
                     st: os.stat_result | None = None,
                     subtree: Awaitable[Tree | None] | None = None) -> _Child | None:
        """Start archiving one entry; return its node, or an awaitable for it (None if skipped)."""
        if self._excluded(path, name):
            return None
        try:
            st = st or os.lstat(path)
        except FileNotFoundError:
            self._warn(f"{os.fsdecode(path)}: vanished before it was read")
            return None
        except PermissionError:
            self._unreadable(path, "permission denied")
            return None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            sub = await (subtree if subtree is not None else self._load_subtree(old))
            try:
                fut = await self._dir(path, sub)
            except OSError as exc:
                self._unreadable(path, exc.strerror or "unreadable folder")
                return None
            return _DirPlace(name, st, fut)
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                self._unreadable(path, exc.strerror or "unreadable link")
                return None
            return self._node(name, SYMLINK, st, target=target)
        if stat.S_ISREG(mode):
            return await self._file(path, name, st, old)
        self._warn(f"{os.fsdecode(path)}: skipped special file (device, socket or FIFO)")
        return None

    async def _dir(self, path: bytes, reference: Tree | None) -> asyncio.Future:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        self.stats.dirs += 1
        old_nodes = {n.name: n for n in reference.nodes} if reference else {}
        # Start loading every subfolder's old tree now, so the walk does not wait for
        # one storage round trip per folder.
        prefetched: dict[bytes, asyncio.Task] = {}
        for e in entries:
            old = old_nodes.get(e.name)
            if old is not None and old.type == DIR and old.subtree is not None and \
                    e.is_dir(follow_symlinks=False):
                prefetched[e.name] = self._spawn(self.repo.reference_tree(old.subtree))
        children: list[_Child] = []
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            node = await self._entry(e.path, e.name, old_nodes.get(e.name), st, prefetched.get(e.name))
            if node is not None:
                children.append(node)
        return self._spawn(self._finish_dir(children, reference))

    async def _finish_dir(self, children: list, reference: Tree | None) -> bytes:
        nodes: list[Node] = []
        for c in children:
            if isinstance(c, Node):
                nodes.append(c)
            elif isinstance(c, _SmallFile):
                await c.batch
                if c.content is not None:  # None: it vanished or could not be read
                    nodes.append(self._file_node(c.name, c.st, *c.content))
            elif isinstance(c, _DirPlace):
                nodes.append(self._node(c.name, DIR, c.st, subtree=await c.subtree))
            else:
                node = await c
                if node is not None:
                    nodes.append(node)
        if reference is not None:
            present = {n.name for n in nodes}
            self.stats.files_removed += sum(1 for n in reference.nodes if n.name not in present)
        return await self.repo.save_tree(Tree(nodes))

    def _node(self, name: bytes, kind: str, st: os.stat_result, **extra) -> Node:
        return Node(
            name=name, type=kind, mode=st.st_mode, uid=st.st_uid, gid=st.st_gid,
            mtime_ns=st.st_mtime_ns, atime_ns=st.st_atime_ns, ctime_ns=st.st_ctime_ns,
            user=self.names.user(st.st_uid), group=self.names.group(st.st_gid), **extra,
        )

    def _file_node(self, name: bytes, st: os.stat_result, content: tuple[bytes, ...],
                   size: int | None = None) -> Node:
        # size is what was actually stored, which differs from st when the file changed
        # while it was read; the restore checks against the stored length.
        return self._node(name, FILE, st, size=st.st_size if size is None else size, inode=st.st_ino,
                          dev=st.st_dev, nlink=st.st_nlink, content=content)

    # -- files --------------------------------------------------------------------------

    async def _file(self, path: bytes, name: bytes, st: os.stat_result,
                    old: Node | None) -> Awaitable[Node] | None:
        if self._failure is not None:
            raise self._failure  # storage failed (full disk...): stop walking
        self.stats.total_files += 1
        self.stats.total_bytes += st.st_size
        unchanged = _unchanged(old, st)
        if unchanged and not self.reread_all and all(c in self.repo.index for c in old.content):
            self.stats.files_unmodified += 1
            return self._file_node(name, st, old.content)
        if old is None:
            self.stats.files_new += 1
        elif unchanged:
            self.stats.files_unmodified += 1
        else:
            self.stats.files_changed += 1
        if st.st_size <= self.repo.config.chunker.min_size:
            if not self._batch:
                self._batch_future = self._loop.create_future()
            slot = _SmallFile(path, name, st, self._batch_future)
            self._batch.append(slot)
            self._batch_bytes += st.st_size
            if self._batch_bytes >= SMALL_BATCH_BYTES or len(self._batch) >= SMALL_BATCH_FILES:
                await self._send_batch()
            return slot
        await self._stream_slots.acquire()
        task = self._spawn(self._stream(path, st))
        return self._after(task, name, st)

    async def _after(self, content: Awaitable[tuple[tuple[bytes, ...], int] | None], name: bytes,
                     st: os.stat_result) -> Node | None:
        result = await content
        if result is None:
            return None
        ids, size = result
        return self._file_node(name, st, ids, size)

    async def _send_batch(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if batch:
            await self._batch_slots.acquire()
            self._spawn(self._run_batch(batch))

    async def _run_batch(self, batch: list[_SmallFile]) -> None:
        done = batch[0].batch
        try:
            results = await self._loop.run_in_executor(self.repo.executor, self._read_small, batch)
            for slot, (content, sealed, warning) in zip(batch, results):
                if warning:
                    self._warn(warning)
                if sealed is not None and self.repo.claim(sealed.id):
                    await self.repo.add_sealed(sealed)
                slot.content = content
            done.set_result(None)
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
                done.exception()  # retrieved here; the task's own failure is what is raised
            raise
        finally:
            self._batch_slots.release()
            self._progress()

    def _read_small(self, files: list[_SmallFile]) -> list[tuple[tuple[tuple[bytes, ...], int] | None,
                                                                 SealedBlob | None, str | None]]:
        """Worker thread: read, id and seal whole small files."""
        repo = self.repo
        out = []
        for p in files:
            self.watch.small_file(p.path)  # watchdog: this thread reads p.path now
            try:
                fd = os.open(p.path, _read_flags(p.st))
            except FileNotFoundError:
                out.append((None, None, f"{os.fsdecode(p.path)}: vanished before it was read"))
                continue
            except OSError as exc:
                self.stats.unreadable += 1
                out.append((None, None, f"{os.fsdecode(p.path)}: not read: {exc.strerror}"))
                continue
            try:
                data = os.read(fd, p.st.st_size)
                after = os.fstat(fd)
            finally:
                os.close(fd)
            self.stats.bytes_read += len(data)
            warning = _changed_warning(p, after, len(data))
            if not data:
                out.append((((), 0), None, warning))
                continue
            blob_id = repo.cipher.blob_id(data)
            sealed = None if repo.has_blob(blob_id) else repo.seal(BlobType.DATA, blob_id, data)
            out.append((((blob_id,), len(data)), sealed, warning))
        self.watch.small_file(None)  # watchdog: this thread's batch is read
        return out

    async def _stream(self, path: bytes, st: os.stat_result) -> tuple[tuple[bytes, ...], int] | None:
        """A large file: chunk on a worker thread, seal chunks on the others."""
        try:
            try:
                # Same flags as small files: never follow a symlink swapped in since the scan.
                f = os.fdopen(os.open(path, _read_flags(st)), "rb", buffering=0)
            except FileNotFoundError:
                self._warn(f"{os.fsdecode(path)}: vanished before it was read")
                return None
            except OSError as exc:
                self._unreadable(path, exc.strerror or "unreadable")
                return None
            f = self.watch.reading(path, f)  # watchdog: each read is progress; names a stalled file
            with f:
                ids, size = await self._streams.store(f, self._read_progress)
                after = os.fstat(f.fileno())
            warning = _changed_warning(_Pending(path, st), after, size)
            if warning:
                self._warn(warning)
            return ids, size
        finally:
            self._stream_slots.release()

    def _read_progress(self, n: int) -> None:
        self.stats.bytes_read += n
        self._progress()

    # -- bookkeeping --------------------------------------------------------------------

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def _drain(self) -> None:
        await self._send_batch()
        while self._tasks and self._failure is None:
            await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_EXCEPTION)
        if self._failure is not None:
            await self._cancel_all()
            raise self._failure

    async def _cancel_all(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _warn(self, message: str) -> None:
        self.stats.warnings.append(message)

    def _unreadable(self, path: bytes, why: str) -> None:
        self.stats.unreadable += 1
        self._warn(f"{os.fsdecode(path)}: not read: {why}")

    def _progress(self) -> None:
        if self.on_progress:
            self.on_progress(self.stats)


_EUID = os.geteuid()


def _read_flags(st: os.stat_result) -> int:
    # O_NOATIME is allowed only to the file's owner (or root).
    if _EUID == 0 or st.st_uid == _EUID:
        return os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME
    return os.O_RDONLY | os.O_NOFOLLOW


def _changed_warning(p: _Pending | _SmallFile, after: os.stat_result, read: int) -> str | None:
    if after.st_mtime_ns != p.st.st_mtime_ns or after.st_size != p.st.st_size or read != p.st.st_size:
        return f"{os.fsdecode(p.path)}: changed while it was read; the stored copy may be inconsistent"
    return None
