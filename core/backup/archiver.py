"""The archiver: walks paths, stores changed file contents, builds trees bottom-up.

Pipeline (DESIGN.md, "Backup"): scan -> compare with the reference tree -> read ->
chunk -> id -> skip known -> compress -> encrypt -> pack -> upload. The walk runs on
the event loop and never waits for file contents: each directory's tree is finished by
a task that awaits its children, so reading, sealing and uploading overlap across
directories. Every stage in flight is bounded, so memory is flat whatever the data.

The walk is iterative (an explicit stack of open folders, no recursion), and every
folder is reached through its parent's descriptor (``openat`` with ``O_NOFOLLOW``), so
depth is bounded by open descriptors, not by Python's stack, and paths longer than
PATH_MAX work. Only the descriptors of the folders on the current path stay open, plus
those of folders whose small files wait in a batch (at most ``BATCH_DIRS`` per batch).
Full paths are built only to show in warnings and to match exclude patterns; no system
call is given one below a source root.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import grp
import os
import pwd
import resource
import stat
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.backup.stream import StreamWriter
from core.backup.watchdog import NO_WATCHDOG, Watchdog
from core.errors import SourceError
from core.fsmeta import flags as fsflags
from core.fsmeta import sparse
from core.fsmeta.xattrs import read_xattrs
from core.repository.blobs import SealedBlob
from core.repository.format import BlobType
from core.repository.repository import Repository
from core.repository.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK, Node, Tree
from core.text import shown

SMALL_BATCH_BYTES = 4 * 1024 * 1024
SMALL_BATCH_FILES = 256
# A batch keeps the folders of its files open until it is read: it is sent early rather
# than hold more than this many.
BATCH_DIRS = 64

# Subfolders' reference trees loaded per trip to the worker pool (core/repository's
# reference_trees): enough to make the hand-off cheap, few enough that the first
# subfolder's tree is not kept waiting for a huge folder's last.
PREFETCH_BATCH = 32
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_EUID = os.geteuid()


@dataclass
class ArchiveStats:
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    files_removed: int = 0
    dirs: int = 0
    trees_reused: int = 0  # folders whose previous tree id was kept: nothing in them changed
    total_files: int = 0
    total_bytes: int = 0
    bytes_read: int = 0
    bytes_skipped: int = 0  # sizes of unmodified files not read again: done as far as progress goes
    warnings: list[str] = field(default_factory=list)
    unreadable: int = 0
    current: bytes = b""  # the file being visited, for progress
    current_size: int | None = None  # its size, where known (a database table's, for a dump)

    @property
    def bytes_done(self) -> int:
        """Bytes of files the backup is through with or reading, comparable with a scan's total."""
        return self.bytes_read + self.bytes_skipped


@dataclass(frozen=True, slots=True)
class RootLink:
    """A source root that is a symbolic link: where it pointed, and whether it was followed."""

    path: str
    target: str
    followed: bool


@dataclass(frozen=True, slots=True)
class _Content:
    """What reading a file gave: blob ids, logical size, holes, and its attributes."""

    ids: tuple[bytes, ...]
    size: int
    holes: tuple[tuple[int, int], ...] = ()
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    flags: int = 0


class _DirFd:
    """An open folder, shared by the walk and the batches that read its small files; closed
    when the last of them lets go. Batches let go on worker threads, hence the lock."""

    __slots__ = ("fd", "refs")
    _lock = threading.Lock()

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.refs = 1

    def hold(self) -> None:
        with self._lock:
            self.refs += 1

    def release(self) -> None:
        with self._lock:
            self.refs -= 1
            last = self.refs == 0
        if last:
            os.close(self.fd)


@dataclass(frozen=True, slots=True)
class _DirPlace:
    """A folder's place in its parent until its own tree is saved. A plain value, not a
    coroutine: a cancelled backup must not leave coroutines that were never awaited."""

    name: bytes
    st: os.stat_result
    subtree: Awaitable[bytes]
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    flags: int = 0
    old: Node | None = None  # the reference snapshot's node for this folder


class _Batch:
    """Small files read together on one worker trip. ``future`` is done when they are."""

    __slots__ = ("future", "files", "bytes", "dirs", "_state", "_lock")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future = loop.create_future()
        self.files: list[_SmallFile] = []
        self.bytes = 0
        self.dirs: set[int] = set()
        self._state = 0  # 0 waiting, 1 read by a worker, 2 given up
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Worker: claim the batch (and the duty to release its folders)."""
        with self._lock:
            if self._state:
                return False
            self._state = 1
            return True

    def give_up(self) -> None:
        """Loop, on cancellation: release the folders unless a worker already has the batch."""
        with self._lock:
            mine = self._state == 0
            self._state = 2
        if mine:
            for f in self.files:
                f.dir.release()


@dataclass(slots=True)
class _SmallFile:
    """A small file's place in its folder until its batch is read. One future per batch,
    not per file: with tens of thousands of small files, per-file futures and coroutines
    were a large share of the event loop's time."""

    dir: _DirFd
    fs_name: bytes  # the name in ``dir`` (differs from ``name`` only for a followed root link)
    path: bytes  # shown in warnings only
    name: bytes
    # Dropped (None) once the batch is read and the node made: a folder's small files wait
    # in it until the whole folder is walked, and a stat result is ~650 bytes of objects.
    st: os.stat_result | None
    batch: asyncio.Future
    node: Node | None = None  # None: dropped


@dataclass(slots=True, eq=False)
class _Frame:
    """One open folder of the walk's stack."""

    dir: _DirFd
    path: bytes  # as stored (from the configured path); shown in warnings and matched by excludes only
    entries: list  # (fs_name, name, DirEntry | None), in name order; consumed as walked
    old: dict[bytes, Node]
    reference: Tree | None
    prefetched: dict[bytes, tuple[asyncio.Task, int]]  # subfolder -> its reference tree's batch, place
    children: list
    # (name, st, xattrs, flags, old node) of this folder in its parent; None for a source
    # root's pseudo-folder (its children go straight into the layout's folder).
    place: tuple | None
    root: bool = False  # the entries are source roots: a failure is a SourceError
    i: int = 0


# What a folder's entry becomes while the walk goes on: done, waiting for its batch or tree,
# or a large file's upload (None: it vanished or could not be read).
_Child = Node | _DirPlace | _SmallFile | Awaitable[Node | None]


@dataclass(frozen=True, slots=True)
class _Root:
    """A configured source path as it will be walked."""

    configured: bytes
    real: bytes  # the path opened: the configured one, or a followed link's target
    st: os.stat_result


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
    # Changing an xattr, an ACL or a chattr flag changes ctime: equal ctime means the old
    # node's attributes are still the file's.
    return (
        old is not None
        and old.type == FILE
        and old.size == st.st_size
        and old.mtime_ns == st.st_mtime_ns
        and old.ctime_ns == st.st_ctime_ns
        and old.inode == st.st_ino
    )


def _reusable(old: Node, st: os.stat_result, user: str, group: str) -> bool:
    """``old`` is, field for field, the node an unchanged file would get now (size, times,
    inode and, through ctime, content and attributes already compared by _unchanged): it
    can stand for it, and a folder of such nodes keeps its tree id."""
    return (
        old.mode == st.st_mode
        and old.uid == st.st_uid
        and old.gid == st.st_gid
        and old.atime_ns == st.st_atime_ns
        and old.dev == st.st_dev
        and old.nlink == st.st_nlink
        and old.user == user
        and old.group == group
        and old.subtree is None
        and not old.target
        and old.rdev == 0
    )


def _same_or(old: Node | None, new: Node) -> Node:
    """The reference node when it equals the one built now: a folder whose nodes all are
    the reference's keeps its tree id (see Archiver._finish_dir)."""
    return old if old is not None and old == new else new


def raise_open_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: a deep tree holds one descriptor per level."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


class Archiver:
    def __init__(
        self,
        repo: Repository,
        *,
        workers: int,
        reread_all: bool,
        exclude: tuple[str, ...] = (),
        follow_root_symlink: bool = True,
        on_progress: Callable[[ArchiveStats], None] | None = None,
    ) -> None:
        self.repo = repo
        self.reread_all = reread_all
        self.exclude = exclude
        self.follow_root_symlink = follow_root_symlink
        self.root_links: list[RootLink] = []
        self.stats = ArchiveStats()
        self.names = _NameCache()
        self.on_progress = on_progress
        self._loop = asyncio.get_running_loop()
        self._streams = StreamWriter(repo, slots=workers + 1, spawn=self._spawn)
        self._batch_slots = asyncio.Semaphore(workers + 2)
        self._stream_slots = asyncio.Semaphore(2)
        self._tasks: set[asyncio.Task] = set()
        self._failure: BaseException | None = None
        self._batch = _Batch(self._loop)
        self._sent: set[_Batch] = set()  # sent, not yet done: given up if the backup stops
        self.watch: Watchdog = NO_WATCHDOG  # set by the run: names the file of a stalled read

    # -- public -------------------------------------------------------------------------

    async def archive(self, paths: list[Path], reference: Tree | None) -> bytes:
        """Store ``paths`` (absolute) and return the root tree id.

        The root tree mirrors the paths' absolute locations, as restic does, so a restore
        recreates srv/axisor/users under its target and nothing collides.

        A path that is missing or cannot be read at all raises SourceError before anything
        is stored: no snapshot is written, so the previous one stays the newest good one."""
        raise_open_file_limit()
        layout: dict = {}
        for p in paths:
            parts = [os.fsencode(x) for x in Path(os.path.abspath(p)).parts[1:]]
            if not parts:
                raise SourceError("backing up / as a whole is not supported; list the folders instead")
            d = layout
            for part in parts[:-1]:
                d = d.setdefault(part, {})
                if not isinstance(d, dict):
                    break
            else:
                d[parts[-1]] = self._root(p)  # a leaf: archive the real thing here
        try:
            root = await self._virtual_dir(b"/", layout, reference)
            await self._send_batch()  # the walk is over: the last small files go now
            await self._drain()
        except BaseException:
            await self._cancel_all()
            raise
        return root.result()

    def _root(self, p: Path) -> _Root:
        """Check a configured path and decide what is walked for it (SourceError if nothing)."""
        configured = os.fsencode(os.path.abspath(p))
        try:
            st = os.lstat(configured)
        except FileNotFoundError:
            raise SourceError(f"source path {shown(configured)} does not exist") from None
        except OSError as exc:
            raise SourceError(
                f"source path {shown(configured)} cannot be read: {(exc.strerror or str(exc)).lower()}"
            ) from None
        real = configured
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(configured)
            self.root_links.append(RootLink(shown(configured), shown(target), self.follow_root_symlink))
            if self.follow_root_symlink:
                try:
                    st = os.stat(target)
                except FileNotFoundError:
                    raise SourceError(
                        f"source path {shown(configured)} is a symbolic link to {shown(target)}, which does not exist"
                    ) from None
                except OSError as exc:
                    raise SourceError(
                        f"source path {shown(configured)} (a symbolic link to {shown(target)}) "
                        f"cannot be read: {(exc.strerror or str(exc)).lower()}"
                    ) from None
                real = target
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            # Can it be read at all? A folder must open and list; a file must open.
            flags = _DIR_FLAGS if stat.S_ISDIR(st.st_mode) else _read_flags(st) | os.O_NONBLOCK
            try:
                fd = os.open(real, flags)
                try:
                    if stat.S_ISDIR(st.st_mode):
                        with os.scandir(fd) as it:
                            next(it, None)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise SourceError(
                    f"source path {shown(configured)} cannot be read: {(exc.strerror or 'error').lower()}"
                ) from None
        return _Root(configured, real, st)

    # -- walking ------------------------------------------------------------------------

    async def _virtual_dir(self, real: bytes, layout: dict, reference: Tree | None) -> asyncio.Future:
        children: list[_Child] = []
        for name in sorted(layout):
            path = os.path.join(real, name)
            old = reference.find(name) if reference else None
            spec = layout[name]
            if isinstance(spec, _Root):
                await self._walk_root(spec, name, old, children)
            else:
                sub = await self._load_subtree(old)
                st = os.lstat(path)
                fut = await self._virtual_dir(path, spec, sub)
                children.append(_DirPlace(name, st, fut))
        return self._spawn(self._finish_dir(children, reference, None))

    async def _walk_root(self, root: _Root, name: bytes, old: Node | None, children: list) -> None:
        parent, base = os.path.split(root.real)
        try:
            # O_PATH: the parent need not be readable, only searchable, as for a path lookup.
            pfd = os.open(parent or b"/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceError(
                f"source path {shown(root.configured)} cannot be read: {(exc.strerror or 'error').lower()}"
            ) from None
        # Shown and matched as configured: a followed link's children appear below the
        # configured path, as they are stored (metadata.root_links says where they were).
        frame = _Frame(
            _DirFd(pfd),
            os.path.dirname(root.configured),
            [(base, name, None)],
            {name: old} if old else {},
            None,
            {},
            children,
            None,
            root=True,
        )
        await self._walk(frame)

    async def _load_subtree(self, old: Node | None) -> Tree | None:
        if old is None or old.type != DIR or old.subtree is None:
            return None
        return await self.repo.reference_tree(old.subtree)

    def _excluded(self, path: bytes, name: bytes) -> bool:
        return bool(self.exclude) and is_excluded(self.exclude, path, name)

    async def _walk(self, top: _Frame) -> None:
        """Depth first, in name order, with an explicit stack of open folders."""
        stack = [top]
        try:
            while stack:
                if self._failure is not None:
                    raise self._failure  # storage failed (full disk...): stop walking
                fr = stack[-1]
                if fr.i == len(fr.entries):
                    stack.pop()
                    self._leave(fr, stack[-1].children if stack else None)
                    continue
                entry = fr.entries[fr.i]
                fr.entries[fr.i] = None  # a huge folder's entries go as they are walked
                fr.i += 1
                child = await self._visit(fr, *entry)
                if isinstance(child, _Frame):
                    stack.append(child)
                elif child is not None:
                    fr.children.append(child)
        except BaseException:
            for fr in stack:
                fr.dir.release()
            raise

    def _leave(self, fr: _Frame, parent_children: list | None) -> None:
        fr.dir.release()
        for task, _ in fr.prefetched.values():  # folders that vanished before they were entered
            task.cancel()  # (a batch shared with entered ones is done by now)
        if fr.place is not None:
            assert parent_children is not None
            name, st, xattrs, flags, old = fr.place
            reference_id = old.subtree if old is not None and fr.reference is not None else None
            fut = self._spawn(self._finish_dir(fr.children, fr.reference, reference_id))
            parent_children.append(_DirPlace(name, st, fut, xattrs, flags, old))

    async def _visit(
        self, fr: _Frame, fs_name: bytes, name: bytes, entry: os.DirEntry | None
    ) -> _Child | _Frame | None:
        """One entry of an open folder: its node, something that will give it, a folder to
        enter, or None (skipped, with a warning when something was lost)."""
        path = fr.path + b"/" + name if fr.path != b"/" else b"/" + name
        if self._excluded(path, name):
            return None
        old = fr.old.get(name)
        try:
            if entry is not None and entry.is_dir(follow_symlinks=False):
                return await self._enter(fr, fs_name, name, path, old)
            st = (
                entry.stat(follow_symlinks=False)
                if entry is not None
                else os.stat(fs_name, dir_fd=fr.dir.fd, follow_symlinks=False)
            )
        except FileNotFoundError:
            self._lost(fr, path, "vanished before it was read")
            return None
        except OSError as exc:
            self._lost(fr, path, f"not read: {exc.strerror}", unreadable=True)
            return None
        mode = st.st_mode
        if stat.S_ISREG(mode):
            return await self._file(fr, fs_name, name, path, st, old)
        if stat.S_ISDIR(mode):  # it was something else when listed
            return await self._enter(fr, fs_name, name, path, old)
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(fs_name, dir_fd=fr.dir.fd)
            except FileNotFoundError:
                self._lost(fr, path, "vanished before it was read")
                return None
            except OSError as exc:
                self._lost(fr, path, f"not read: {exc.strerror}", unreadable=True)
                return None
            return _same_or(
                old, self._node(name, SYMLINK, st, target=target, xattrs=self._xattrs_at(fr, fs_name, path))
            )
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = CHARDEV if stat.S_ISCHR(mode) else BLOCKDEV
            return _same_or(old, self._node(name, kind, st, rdev=st.st_rdev, xattrs=self._xattrs_at(fr, fs_name, path)))
        if stat.S_ISFIFO(mode):  # never opened: an open would wait for a writer
            return _same_or(old, self._node(name, FIFO, st, xattrs=self._xattrs_at(fr, fs_name, path)))
        what = "socket" if stat.S_ISSOCK(mode) else "special file"
        self._warn(f"{shown(path)}: skipped: a {what} cannot be backed up")
        return None

    def _lost(self, fr: _Frame, path: bytes, why: str, *, unreadable: bool = False) -> None:
        if fr.root:
            raise SourceError(f"source path {shown(path)}: {why}")
        if unreadable:
            self.stats.unreadable += 1
        self._warn(f"{shown(path)}: {why}")

    async def _enter(self, fr: _Frame, fs_name: bytes, name: bytes, path: bytes, old: Node | None) -> _Frame | None:
        """Open a folder below ``fr`` and list it: the frame the walk continues with."""
        try:
            fd = os.open(fs_name, _DIR_FLAGS | (os.O_NOATIME if _EUID == 0 else 0), dir_fd=fr.dir.fd)
        except FileNotFoundError:
            self._lost(fr, path, "vanished before it was read")
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                self._lost(fr, path, "changed type while the backup ran; not read")
                return None
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self._lost(fr, path, f"not read: too many open folders ({exc.strerror})", unreadable=True)
                return None
            self._lost(fr, path, f"not read: {exc.strerror}", unreadable=True)
            return None
        try:
            st = os.fstat(fd)
            xattrs, fl, problems = _fd_attributes(fd)
            with os.scandir(fd) as it:
                listed = [(os.fsencode(e.name), e) for e in it]
        except OSError as exc:
            os.close(fd)
            self._lost(fr, path, f"not read: {exc.strerror}", unreadable=True)
            return None
        for p in problems:
            self._warn(f"{shown(path)}: {p}")
        listed.sort(key=_first)
        self.stats.dirs += 1
        ahead = fr.prefetched.pop(name, None)
        try:
            reference = (await ahead[0])[ahead[1]] if ahead is not None else await self._load_subtree(old)
        except BaseException:
            os.close(fd)
            raise
        old_nodes = {n.name: n for n in reference.nodes} if reference else {}
        # Start loading every subfolder's old tree now, so the walk does not wait for
        # one storage round trip per folder; a batch of them per trip to the worker pool.
        prefetched: dict[bytes, tuple[asyncio.Task, int]] = {}
        if old_nodes:
            wanted = []
            for n, e in listed:
                o = old_nodes.get(n)
                if o is not None and o.type == DIR and o.subtree is not None and e.is_dir(follow_symlinks=False):
                    wanted.append((n, o.subtree))
            for start in range(0, len(wanted), PREFETCH_BATCH):
                part = wanted[start : start + PREFETCH_BATCH]
                task = self._spawn(self.repo.reference_trees([tree_id for _, tree_id in part]))
                for k, (n, _) in enumerate(part):
                    prefetched[n] = (task, k)
        entries = [(n, n, e) for n, e in listed]
        return _Frame(_DirFd(fd), path, entries, old_nodes, reference, prefetched, [], (name, st, xattrs, fl, old))

    def _xattrs_at(self, fr: _Frame, fs_name: bytes, path: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """A symlink's, device's or FIFO's attributes, without opening it and without a long path."""
        got = read_xattrs(b"/proc/self/fd/%d/%s" % (fr.dir.fd, fs_name), follow=False)
        for p in got.problems:
            self._warn(f"{shown(path)}: {p}")
        return got.pairs

    async def _finish_dir(self, children: list, reference: Tree | None, reference_id: bytes | None) -> bytes:
        """Save a folder's tree and return its id. ``reference``: the previous snapshot's
        tree of this folder, stored as ``reference_id``."""
        nodes: list[Node] = []
        for c in children:
            if isinstance(c, Node):
                nodes.append(c)
            elif isinstance(c, _SmallFile):
                await c.batch
                if c.node is not None:  # None: it vanished or could not be read
                    nodes.append(c.node)
            elif isinstance(c, _DirPlace):
                node = self._node(c.name, DIR, c.st, subtree=await c.subtree, xattrs=c.xattrs, flags=c.flags)
                nodes.append(_same_or(c.old, node))
            else:
                node = await c
                if node is not None:
                    nodes.append(node)
        if reference is not None:
            if (
                reference_id is not None
                and len(nodes) == len(reference.nodes)
                and all(a is b for a, b in zip(nodes, reference.nodes))
                and reference_id in self.repo.index
            ):
                # Every node is the reference's own, in its order: the tree would encode to
                # the same bytes, so its id is the stored one (indexed here, checked above).
                # Most folders of an unchanged re-run end here, with nothing encoded.
                self.stats.trees_reused += 1
                return reference_id
            present = {n.name for n in nodes}
            self.stats.files_removed += sum(1 for n in reference.nodes if n.name not in present)
        return await self.repo.save_tree(Tree(nodes))

    def _node(self, name: bytes, kind: str, st: os.stat_result, **extra) -> Node:
        return Node(
            name=name,
            type=kind,
            mode=st.st_mode,
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=st.st_mtime_ns,
            atime_ns=st.st_atime_ns,
            ctime_ns=st.st_ctime_ns,
            user=self.names.user(st.st_uid),
            group=self.names.group(st.st_gid),
            **extra,
        )

    def _file_node(self, name: bytes, st: os.stat_result, c: _Content) -> Node:
        # c.size is what was actually stored (plus holes), which differs from st when the
        # file changed while it was read; the restore checks against the stored length.
        return self._node(
            name,
            FILE,
            st,
            size=c.size,
            inode=st.st_ino,
            dev=st.st_dev,
            nlink=st.st_nlink,
            content=c.ids,
            holes=c.holes,
            xattrs=c.xattrs,
            flags=c.flags,
        )

    # -- files --------------------------------------------------------------------------

    async def _file(
        self, fr: _Frame, fs_name: bytes, name: bytes, path: bytes, st: os.stat_result, old: Node | None
    ) -> _Child | None:
        self.stats.total_files += 1
        self.stats.total_bytes += st.st_size
        self.stats.current = path
        if self.stats.total_files % 512 == 0:
            self._progress()  # unmodified files are never read: progress must move all the same
        unchanged = _unchanged(old, st)
        if unchanged and old is not None and not self.reread_all and all(c in self.repo.index for c in old.content):
            self.stats.files_unmodified += 1
            self.stats.bytes_skipped += st.st_size
            if _reusable(old, st, self.names.user(st.st_uid), self.names.group(st.st_gid)):
                return old
            # Attributes too: any change to them would have changed ctime.
            return self._file_node(name, st, _Content(old.content, old.size, old.holes, old.xattrs, old.flags))
        if old is None:
            self.stats.files_new += 1
        elif unchanged:
            self.stats.files_unmodified += 1
        else:
            self.stats.files_changed += 1
        if st.st_size <= self.repo.config.chunker.min_size:
            b = self._batch
            fr.dir.hold()
            slot = _SmallFile(fr.dir, fs_name, path, name, st, b.future)
            b.files.append(slot)
            b.bytes += st.st_size
            b.dirs.add(id(fr.dir))
            if b.bytes >= SMALL_BATCH_BYTES or len(b.files) >= SMALL_BATCH_FILES or len(b.dirs) >= BATCH_DIRS:
                await self._send_batch()
            return slot
        await self._stream_slots.acquire()
        try:
            # Opened here, relative to the folder, and read on; same flags as small files:
            # never follow a symlink swapped in since the scan, never wait on a FIFO.
            f = os.fdopen(os.open(fs_name, _read_flags(st) | os.O_NONBLOCK, dir_fd=fr.dir.fd), "rb", buffering=0)
        except OSError as exc:
            self._stream_slots.release()
            if isinstance(exc, FileNotFoundError):
                self._lost(fr, path, "vanished before it was read")
                return None
            self._lost(fr, path, f"not read: {exc.strerror}", unreadable=True)
            return None
        task = self._spawn(self._stream(f, path, st))
        return self._after(task, name, st)

    async def _after(self, content: Awaitable[_Content | None], name: bytes, st: os.stat_result) -> Node | None:
        result = await content
        if result is None:
            return None
        return self._file_node(name, st, result)

    async def _send_batch(self) -> None:
        batch, self._batch = self._batch, _Batch(self._loop)
        if batch.files:
            try:
                await self._batch_slots.acquire()
            except BaseException:
                batch.give_up()  # cancelled while waiting: its folders are closed here
                raise
            self._sent.add(batch)
            self._spawn(self._run_batch(batch))

    async def _run_batch(self, batch: _Batch) -> None:
        done = batch.future
        try:
            results = await self._loop.run_in_executor(self.repo.executor, self._read_small, batch)
            for slot, (content, sealed, warnings) in zip(batch.files, results):
                for w in warnings:
                    self._warn(w)
                if sealed is not None and self.repo.claim(sealed.id):
                    await self.repo.add_sealed(sealed)
                # The node now, not when the folder is finished: until then a folder of
                # 20,000 small files held a stat result, a _Content and the node's inputs
                # for each (bench/RESULTS.md, "Peak memory (issue 19)").
                if content is not None:
                    assert slot.st is not None
                    slot.node = self._file_node(slot.name, slot.st, content)
                slot.st = None
            done.set_result(None)
        except BaseException as exc:
            batch.give_up()
            if not done.done():
                done.set_exception(exc)
                done.exception()  # retrieved here; the task's own failure is what is raised
            raise
        finally:
            self._sent.discard(batch)
            self._batch_slots.release()
            self._progress()

    def _read_small(self, batch: _Batch) -> list[tuple[_Content | None, SealedBlob | None, list[str]]]:
        """Worker thread: read, id and seal whole small files."""
        if not batch.start():
            return []
        repo = self.repo
        out: list[tuple[_Content | None, SealedBlob | None, list[str]]] = []
        try:
            for p in batch.files:
                warnings: list[str] = []
                self.watch.small_file(p.path)  # watchdog: this thread reads p.path now
                data, content = self._read_one(p, warnings)
                if content is None or not data:
                    out.append((content, None, warnings))
                    continue
                blob_id = repo.cipher.blob_id(data)
                content = _Content((blob_id,), content.size, content.holes, content.xattrs, content.flags)
                sealed = None if repo.has_blob(blob_id) else repo.seal(BlobType.DATA, blob_id, data)
                out.append((content, sealed, warnings))
        finally:
            self.watch.small_file(None)  # watchdog: this thread's batch is read
            for p in batch.files:
                p.dir.release()
        return out

    def _read_one(self, p: _SmallFile, warnings: list[str]) -> tuple[bytes, _Content | None]:
        shown_path = shown(p.path)
        st = p.st
        assert st is not None  # dropped only after the batch is read
        try:
            fd = os.open(p.fs_name, _read_flags(st) | os.O_NONBLOCK, dir_fd=p.dir.fd)
        except FileNotFoundError:
            warnings.append(f"{shown_path}: vanished before it was read")
            return b"", None
        except OSError as exc:
            self.stats.unreadable += 1
            warnings.append(f"{shown_path}: not read: {exc.strerror}")
            return b"", None
        try:
            holes: tuple[tuple[int, int], ...] = ()
            if sparse.maybe_sparse(st):
                holes = sparse.holes(fd, st.st_size)
            if holes:
                data = b"".join(os.pread(fd, length, off) for off, length in sparse.data_extents(st.st_size, holes))
            else:
                data = os.read(fd, st.st_size)
            after = os.fstat(fd)
            if not stat.S_ISREG(after.st_mode):
                warnings.append(f"{shown_path}: changed type while the backup ran; not stored")
                return b"", None
            xattrs, fl, problems = _fd_attributes(fd)
        except OSError as exc:
            self.stats.unreadable += 1
            warnings.append(f"{shown_path}: not read: {exc.strerror}")
            return b"", None
        finally:
            os.close(fd)
        warnings.extend(f"{shown_path}: {m}" for m in problems)
        self.stats.bytes_read += len(data)
        size, holes = _stored_extent(st.st_size, holes, len(data))
        if _changed(st, after, len(data), holes):
            warnings.append(_changed_warning(p.path))
        return data, _Content((), size, holes, xattrs, fl)

    async def _stream(self, f, path: bytes, st: os.stat_result) -> _Content | None:
        """A large file: chunk on a worker thread, seal chunks on the others."""
        try:
            with f:
                fd = f.fileno()
                try:
                    now, holes, (xattrs, fl, problems) = await self._loop.run_in_executor(
                        self.repo.executor, _large_file_meta, fd, st
                    )
                except OSError as exc:
                    self._unreadable(path, exc.strerror or "unreadable")
                    return None
                if not stat.S_ISREG(now.st_mode):
                    self._warn(f"{shown(path)}: changed type while the backup ran; not stored")
                    return None
                for m in problems:
                    self._warn(f"{shown(path)}: {m}")
                stream = sparse.ExtentReader(fd, sparse.data_extents(st.st_size, holes)) if holes else f
                watched = self.watch.reading(path, stream)  # watchdog: each read is progress
                try:
                    ids, read = await self._streams.store(watched, self._read_progress)
                    after = os.fstat(fd)
                except OSError as exc:
                    self._unreadable(path, exc.strerror or "read error")
                    return None
                finally:
                    watched.close()  # f itself is closed by the with
            size, holes = _stored_extent(st.st_size, holes, read) if holes else (read, ())
            if _changed(st, after, read, holes):
                self._warn(_changed_warning(path))
            return _Content(ids, size, holes, xattrs, fl)
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
        # Batches never sent, or sent but not started by a worker: their folders close here
        # (a worker that has started one closes them when it is done).
        for batch in (self._batch, *self._sent):
            batch.give_up()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _warn(self, message: str) -> None:
        self.stats.warnings.append(message)

    def _unreadable(self, path: bytes, why: str) -> None:
        self.stats.unreadable += 1
        self._warn(f"{shown(path)}: not read: {why}")

    def _progress(self) -> None:
        if self.on_progress:
            self.on_progress(self.stats)


def is_excluded(patterns: tuple[str, ...], path: bytes, name: bytes) -> bool:
    """A pattern matches the entry's name or its full path (the scanner uses the same rule)."""
    p, n = os.fsdecode(path), os.fsdecode(name)
    return any(fnmatch.fnmatch(n, pat) or fnmatch.fnmatch(p, pat) for pat in patterns)


def _first(pair: tuple) -> bytes:
    return pair[0]


def _read_flags(st: os.stat_result) -> int:
    # O_NOATIME is allowed only to the file's owner (or root).
    if _EUID == 0 or st.st_uid == _EUID:
        return os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME | os.O_CLOEXEC
    return os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _fd_attributes(fd: int) -> tuple[tuple[tuple[bytes, bytes], ...], int, list[str]]:
    """An open file's or folder's xattrs and inode flags, and what could not be read."""
    got = read_xattrs(fd)
    problems = list(got.problems)
    try:
        fl = fsflags.get_flags(fd)
    except OSError as exc:
        fl = 0
        problems.append(f"file flags not read: {exc.strerror}")
    return got.pairs, fl, problems


def _large_file_meta(fd: int, st: os.stat_result):
    """Worker: what a large file is now, its holes (if it may have any) and attributes."""
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode):
        return now, (), ((), 0, [])
    holes = sparse.holes(fd, st.st_size) if sparse.maybe_sparse(st) else ()
    return now, holes, _fd_attributes(fd)


def _stored_extent(size: int, holes: tuple[tuple[int, int], ...], read: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """The logical size and holes that match ``read`` bytes of data stored.

    When everything expected was read, (size, holes). A sparse file that shrank while it
    was read gave fewer bytes: the file then ends where the data read ended, and only the
    holes before that point are kept (the restore recreates exactly what was stored)."""
    if not holes:
        return read, ()
    if read >= size - sum(length for _, length in holes):
        return size, holes
    pos, left, kept = 0, read, []
    for off, length in sparse.data_extents(size, holes):
        if off > pos:
            kept.append((pos, off - pos))  # the hole before this data run
        if left <= length:
            return off + left, tuple(kept)
        left -= length
        pos = off + length
    return pos, tuple(kept)


def _changed(st: os.stat_result, after: os.stat_result, read: int, holes: tuple[tuple[int, int], ...]) -> bool:
    expected = st.st_size - sum(length for _, length in holes)
    return after.st_mtime_ns != st.st_mtime_ns or after.st_size != st.st_size or read != expected


def _changed_warning(path: bytes) -> str:
    return f"{shown(path)}: changed while it was read; the stored copy may be inconsistent"
