"""What a file restore would do to its target, worked out before anything is written.

Each path of the snapshot (under the target) is compared with what is there now:

- ``create``: nothing there yet;
- ``unchanged``: same type and content (a regular file's content is compared by
  re-chunking it with the repository's chunker and comparing blob ids: a file whose size
  and mtime look right but whose bytes were changed in place is still caught), same mode,
  owner and mtime;
- ``metadata``: same content, but mode, owner, mtime, extended attributes (ACLs among
  them) or, with ``file_flags``, inode flags differ (only those are set);
- ``overwrite``: different content or type (a symlink where a file belongs, say);
- ``conflict``: a folder where a file or symlink belongs, or a file where a folder belongs
  (refused: the restore never removes a folder it was not asked to with ``--delete``);
- ``remove`` (only with ``delete``): a path under one of the snapshot's source folders that
  the snapshot does not have.

Everything is looked at through folder descriptors opened without following symlinks
(core/restore/fsops.py), so paths deeper than PATH_MAX compare too, and a symlink in the
way is a conflict, never followed.

The plan is what ``restore --dry-run`` prints, what the safety backup is sized by, and what
the restorer follows (it skips ``unchanged`` files and only fixes ``metadata`` ones).
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from core.backup.chunker import WINDOW, Chunker, ReadIntoStream
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.errors import RestoreRefused
from core.fsmeta import flags as fsflags
from core.fsmeta.sparse import ExtentReader, data_extents
from core.fsmeta.xattrs import ACL_NAMES, read_xattrs
from core.repository.tree import BLOCKDEV, CHARDEV, DEVICES, DIR, FIFO, FILE, SYMLINK, Node
from core.restore.attributes import Owners, RestoreOptions, manages, wanted_mode, wanted_xattrs
from core.restore.writer import PARTIAL_SUFFIX
from core.restore.select import included, path_parts
from core.restore.fsops import FILE_FLAGS, DirCache, Parts, open_target
from core.restore.walk import display, walk

ACTIONS = ("create", "overwrite", "metadata", "unchanged", "remove", "conflict")
_IS_ROOT = os.geteuid() == 0


@dataclass(frozen=True, slots=True)
class Change:
    path: Path  # absolute, under the target
    action: str
    kind: str  # file, dir, symlink (what the snapshot has; for remove: what is there)
    reason: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class RestorePlan:
    snapshot: str
    target: Path
    changes: tuple[Change, ...]
    roots: tuple[Path, ...]  # the snapshot's source paths under the target
    delete: bool
    # Files to be written that have a <name>.axisor-partial beside them (an earlier partial
    # restore's, not a name of the snapshot): the restorer removes it once the file is whole.
    leftovers: frozenset[Path] = frozenset()
    # Creates into an empty target counted, not listed (``itemize=False``: a restore, not a
    # dry run, needs only how many): a Change per path cost ~400 bytes and a Path each.
    bulk_creates: int = 0  # of every kind
    bulk_files: int = 0  # regular files among them
    bulk_bytes: int = 0  # their size

    def counts(self) -> dict[str, int]:
        c = Counter(ch.action for ch in self.changes)
        c["create"] += self.bulk_creates
        return {a: c.get(a, 0) for a in ACTIONS}

    def of(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def touches_existing(self) -> bool:
        """True when something already there would change (what a safety backup is for)."""
        return any(c.action in ("overwrite", "metadata", "remove") for c in self.changes)

    def content_proven(self) -> frozenset[Path]:
        """Regular files whose content the plan found equal to the snapshot's (not rewritten)."""
        # A hard link's "unchanged" says only that it still shares the first path's inode.
        return frozenset(
            c.path
            for c in self.changes
            if c.kind == FILE and c.action in ("unchanged", "metadata") and c.reason != "hard link"
        )

    def action_for(self) -> dict[Path, str]:
        """The paths the restorer treats otherwise than by writing them: a restore into an
        empty folder has none, so it looks up no path per file."""
        return {c.path: c.action for c in self.changes if c.action in ("unchanged", "metadata", "conflict")}


def file_blob_ids_fd(
    repo: Repository, fd: int, size: int, holes: tuple[tuple[int, int], ...] = ()
) -> tuple[bytes, ...]:
    """The data blob ids a backup of the open file would record (same chunker, same keyed
    ids); with ``holes``, only the bytes outside them, as a backup of a sparse file reads."""
    ids: list[bytes] = []
    raw = None if holes else os.fdopen(os.dup(fd), "rb", buffering=0)
    stream: ReadIntoStream = ExtentReader(fd, data_extents(size, holes)) if raw is None else raw
    try:
        if raw is not None:
            raw.seek(0)
        chunker = Chunker(repo.config.chunker, stream)
        try:
            while chunks := chunker.take(WINDOW):
                ids.extend(repo.cipher.blob_id(c) for c in chunks)
        finally:
            chunker.close()
    finally:
        if raw is not None:
            raw.close()
    return tuple(ids)


def file_blob_ids(repo: Repository, path: Path) -> tuple[bytes, ...]:
    """The same for a path (tools and tests; a restore works through descriptors)."""
    fd = os.open(path, FILE_FLAGS)
    try:
        return file_blob_ids_fd(repo, fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def holes_read_zero(fd: int, holes: tuple[tuple[int, int], ...]) -> bool:
    """True when every byte of ``holes`` reads as zero (real holes are skipped with
    SEEK_DATA, so a sparse file costs two calls per hole)."""
    buf = bytearray(1 << 20)
    for off, length in holes:
        end, pos = off + length, off
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break
                data = pos  # the filesystem cannot tell: read it
            if data >= end:
                break
            try:
                stop = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            except OSError:
                stop = end
            while data < stop:
                n = os.preadv(fd, [memoryview(buf)[: min(len(buf), stop - data)]], data)
                if n <= 0:
                    return True  # shorter than expected: the size check catches it
                if buf[:n].count(0) != n:
                    return False
                data += n
            pos = stop
    return True


def _stat_at(cache: DirCache | None, parts: Parts) -> os.stat_result | None:
    """lstat of ``parts`` through folder descriptors; None when it (or a folder on the
    way) is missing, or a folder on the way is a symlink (reported as a conflict there)."""
    if cache is None:
        return None
    try:
        with cache.dir(parts[:-1]) as dfd:
            return os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError, RestoreRefused):
        return None


def _meta_differs(st: os.stat_result, node: Node, opts: RestoreOptions, owners: Owners, fd: int | None) -> str:
    why = []
    mode = wanted_mode(node, opts)
    if stat.S_IMODE(st.st_mode) != mode:
        why.append(f"mode {stat.S_IMODE(st.st_mode):o} -> {mode:o}")
    if _IS_ROOT:
        ids = owners.ids(node)
        if (st.st_uid, st.st_gid) != ids:
            why.append(f"owner {st.st_uid}:{st.st_gid} -> {ids[0]}:{ids[1]}")
    if node.type != DIR and st.st_mtime_ns != node.mtime_ns:
        why.append("mtime")
    if fd is not None and opts.xattrs:
        want = {n: v for n, v in wanted_xattrs(node, opts) if node.type == DIR or n != ACL_NAMES[1]}
        have = read_xattrs(fd).pairs
        if {n: v for n, v in have if manages(n, opts)} != want:
            why.append("extended attributes")
    if fd is not None and opts.file_flags and node.flags & ~fsflags.get_flags(fd):
        why.append(f"flags {fsflags.letters(node.flags)}")
    return ", ".join(why)


def _compare_file(
    repo: Repository, cache: DirCache | None, parts: Parts, dest: Path, node: Node, opts: RestoreOptions, owners: Owners
) -> Change:
    st = _stat_at(cache, parts)
    if st is None:
        return Change(dest, "create", FILE, size=node.size)
    if stat.S_ISDIR(st.st_mode):
        return Change(dest, "conflict", FILE, "a folder is there", node.size)
    if not stat.S_ISREG(st.st_mode):
        return Change(dest, "overwrite", FILE, "not a regular file there", node.size)
    if st.st_size != node.size:
        return Change(dest, "overwrite", FILE, f"size {st.st_size} -> {node.size}", node.size)
    assert cache is not None
    try:
        with cache.dir(parts[:-1]) as dfd:
            fd = os.open(parts[-1], FILE_FLAGS, dir_fd=dfd)
    except (OSError, RestoreRefused):
        return Change(dest, "overwrite", FILE, "changed while planning", node.size)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != node.size:
            return Change(dest, "overwrite", FILE, "changed while planning", node.size)
        try:
            same = file_blob_ids_fd(repo, fd, node.size, node.holes) == tuple(node.content)
            same = same and holes_read_zero(fd, node.holes)
        except OSError as exc:
            return Change(dest, "overwrite", FILE, f"unreadable ({exc.strerror})", node.size)
        if not same:
            return Change(dest, "overwrite", FILE, "content differs", node.size)
        meta = _meta_differs(st, node, opts, owners, fd)
    finally:
        os.close(fd)
    return Change(dest, "metadata", FILE, meta, 0) if meta else Change(dest, "unchanged", FILE)


def _compare_other(
    cache: DirCache | None, parts: Parts, dest: Path, node: Node, opts: RestoreOptions, owners: Owners
) -> Change:
    st = _stat_at(cache, parts)
    if st is None:  # a parent in the way is reported as a conflict there
        return Change(dest, "create", node.type)
    assert cache is not None
    if node.type == DIR:
        if stat.S_ISLNK(st.st_mode):
            return Change(dest, "conflict", DIR, "a symlink is there: a restore never writes through one")
        if not stat.S_ISDIR(st.st_mode):
            return Change(dest, "conflict", DIR, "not a folder there")
        try:
            with cache.dir(parts) as fd:
                meta = _meta_differs(os.fstat(fd), node, opts, owners, fd)
        except (OSError, RestoreRefused):
            return Change(dest, "conflict", DIR, "changed while planning")
        return Change(dest, "metadata", DIR, meta) if meta else Change(dest, "unchanged", DIR)
    if stat.S_ISDIR(st.st_mode):
        return Change(dest, "conflict", node.type, "a folder is there")
    if node.type == SYMLINK:
        if stat.S_ISLNK(st.st_mode):
            try:
                with cache.dir(parts[:-1]) as dfd:
                    if os.readlink(parts[-1], dir_fd=dfd) == node.target:
                        return Change(dest, "unchanged", SYMLINK)
            except (OSError, RestoreRefused):
                pass
            return Change(dest, "overwrite", SYMLINK, "different link")
        return Change(dest, "overwrite", SYMLINK, "not a link there")
    # device or FIFO: replaced unless the same kind (and device number) is there
    kind = {CHARDEV: stat.S_ISCHR, BLOCKDEV: stat.S_ISBLK, FIFO: stat.S_ISFIFO}[node.type]
    if not kind(st.st_mode) or (node.type in DEVICES and st.st_rdev != node.rdev):
        return Change(dest, "overwrite", node.type, f"not the same {node.type} there")
    return Change(dest, "unchanged", node.type)


def _extras(cache: DirCache, target: Path, root: Parts, keep: set[Path]) -> Iterator[Change]:
    """Everything under ``root`` (not following links) that the snapshot does not have;
    a removed folder is reported after its content. Iterative, through descriptors."""

    def dest(parts: Parts) -> Path:
        return target.joinpath(*(os.fsdecode(p) for p in parts))

    stack: list[tuple[Parts, list[Parts] | None]] = [(root, None)]
    while stack:
        parts, pending = stack[-1]
        if pending is None:
            subdirs: list[Parts] = []
            try:
                with cache.dir(parts) as fd, os.scandir(fd) as it:
                    for e in it:
                        p = parts + (os.fsencode(e.name),)
                        if e.is_dir(follow_symlinks=False):
                            subdirs.append(p)
                            continue
                        d = dest(p)
                        if d not in keep:
                            link = e.is_symlink()
                            size = 0 if link else e.stat(follow_symlinks=False).st_size
                            yield Change(d, "remove", SYMLINK if link else FILE, "not in the snapshot", size)
            except (FileNotFoundError, NotADirectoryError, RestoreRefused):
                stack.pop()
                continue
            subdirs.reverse()
            stack[-1] = (parts, subdirs)
            continue
        if pending:
            stack.append((pending.pop(), None))
            continue
        stack.pop()
        if parts != root and dest(parts) not in keep:
            yield Change(dest(parts), "remove", DIR, "not in the snapshot")


async def plan_restore(
    repo: Repository,
    snap: Snapshot,
    target: Path,
    *,
    include: tuple[str, ...] = (),
    delete: bool = False,
    executor: Executor | None = None,
    options: RestoreOptions | None = None,
    itemize: bool = True,
) -> RestorePlan:
    """Compare the snapshot with ``target`` (see module doc). The index must be loaded.
    As root, a target other users can change is refused unless the options allow it.
    ``itemize=False``: creates into an empty target are counted, not listed (bulk_*)."""
    opts = options or RestoreOptions()
    target = Path(os.path.abspath(target))
    root_fd = open_target(target, create=False, check_trust=_IS_ROOT and not opts.allow_untrusted_target)
    if root_fd is not None and _empty(root_fd):
        # An empty target plans like a missing one: every path is a create, known without
        # a stat or a trip to the worker pool per path. (Something written into it meanwhile
        # is replaced by the restore, as it would be a moment after any plan.)
        os.close(root_fd)
        root_fd = None
    cache = DirCache(root_fd, target) if root_fd is not None else None
    try:
        if cache is None and not itemize:
            return await _plan_bulk(repo, snap, target, include, delete)
        return await _plan(repo, snap, target, cache, include, delete, executor, opts)
    finally:
        if cache is not None:
            cache.close()
            os.close(cache.root_fd)


def _empty(dir_fd: int) -> bool:
    fd = os.dup(dir_fd)  # scandir leaves a descriptor it is given open
    try:
        with os.scandir(fd) as entries:
            return next(entries, None) is None
    finally:
        os.close(fd)


def _follow_firsts(changes: list[Change], followers: list[tuple[int, Path]]) -> None:
    """A link that shares the first path's inode is only unchanged if the first path is: an
    overwrite puts a new file (a new inode) there, and the link must follow it."""
    if not followers:
        return
    firsts = {c.path: c.action for c in changes if c.reason != "hard link"}
    for i, first in followers:
        if firsts.get(first) not in ("unchanged", "metadata"):
            changes[i] = Change(changes[i].path, "overwrite", FILE, "hard link")


def _hard_link_change(cache: DirCache | None, parts: Parts, first_parts: Parts, dest: Path) -> Change:
    """A later path of a hard-linked file: unchanged when it already shares the first
    path's inode in the target (and is no symlink), else written."""
    a, b = _stat_at(cache, parts), _stat_at(cache, first_parts)
    linked = (
        a is not None and b is not None and not stat.S_ISLNK(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    )
    return Change(dest, "unchanged" if linked else ("overwrite" if a is not None else "create"), FILE, "hard link")


def _leftovers(cache: DirCache, target: Path, changes: list[Change], keep: set[Path]) -> set[Path]:
    """Files to be written whose partial file an interrupted restore left beside them (and
    that the snapshot does not hold under that name itself)."""
    leftovers = set()
    for c in changes:
        if c.kind == FILE and c.action in ("create", "overwrite"):
            parts = path_parts(target, c.path)
            st = _stat_at(cache, parts[:-1] + (parts[-1] + PARTIAL_SUFFIX,))
            if (
                st is not None
                and stat.S_ISREG(st.st_mode)
                and c.path.with_name(c.path.name + PARTIAL_SUFFIX.decode()) not in keep
            ):
                leftovers.add(c.path)
    return leftovers


async def _plan_bulk(
    repo: Repository, snap: Snapshot, target: Path, include: tuple[str, ...], delete: bool
) -> RestorePlan:
    """Every path a create (an empty or missing target), counted as ``_plan`` would list it:
    a later path of a hard-linked file a file of no bytes, a folder only where included."""
    creates = files = size = 0
    firsts: set[tuple[int, int]] = set()
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        if include and not included(display(parts), include):
            continue
        creates += 1
        if node.type == FILE:
            files += 1
            key = (node.dev, node.inode)
            if node.nlink > 1 and key in firsts:
                continue
            if node.nlink > 1:
                firsts.add(key)
            size += node.size
    roots = tuple(target.joinpath(*Path(os.path.abspath(p)).parts[1:]) for p in snap.paths)
    return RestorePlan(snap.id, target, (), roots, delete, bulk_creates=creates, bulk_files=files, bulk_bytes=size)


async def _plan(
    repo: Repository,
    snap: Snapshot,
    target: Path,
    cache: DirCache | None,
    include: tuple[str, ...],
    delete: bool,
    executor: Executor | None,
    opts: RestoreOptions,
) -> RestorePlan:
    loop = asyncio.get_running_loop()
    owners = Owners(opts.numeric_owner)
    changes: list[Change] = []
    pending: list[asyncio.Future] = []
    keep: set[Path] = set()
    first_by_inode: dict[tuple[int, int], tuple[Parts, Path]] = {}
    followers: list[tuple[int, Path]] = []  # (index in changes, first path) of "unchanged" hard links
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        if include and not included(display(parts), include) and node.type != DIR:
            continue
        dest = target.joinpath(*map(os.fsdecode, parts))
        if cache is not None:  # an empty target has nothing to keep from --delete or leftovers
            keep.add(dest)
        if node.type == FILE:
            key = (node.dev, node.inode)
            if node.nlink > 1 and key in first_by_inode:
                first_parts, first = first_by_inode[key]
                change = _hard_link_change(cache, parts, first_parts, dest)
                if change.action == "unchanged":
                    followers.append((len(changes), first))
                changes.append(change)
                continue
            if node.nlink > 1:
                first_by_inode[key] = (parts, dest)
            if cache is None:  # nothing there to compare: a create, decided here
                changes.append(Change(dest, "create", FILE, size=node.size))
                continue
            pending.append(loop.run_in_executor(executor, _compare_file, repo, cache, parts, dest, node, opts, owners))
            if len(pending) >= 64:
                changes.extend(await asyncio.gather(*pending))
                pending = []
        elif node.type == DIR:
            if included(display(parts), include):
                changes.append(_compare_other(cache, parts, dest, node, opts, owners))
        else:
            changes.append(_compare_other(cache, parts, dest, node, opts, owners))
    changes.extend(await asyncio.gather(*pending))
    _follow_firsts(changes, followers)
    roots = tuple(target.joinpath(*Path(os.path.abspath(p)).parts[1:]) for p in snap.paths)
    leftovers = _leftovers(cache, target, changes, keep) if cache is not None else set()
    if delete and cache is not None:
        for root in roots:
            if included("/" + str(root.relative_to(target)), include):
                changes.extend(
                    await loop.run_in_executor(
                        executor, lambda: list(_extras(cache, target, path_parts(target, root), keep))
                    )
                )
    return RestorePlan(snap.id, target, tuple(changes), roots, delete, frozenset(leftovers))
