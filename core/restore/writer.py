"""Writing one restored file: its pieces opened and written into a temp file in its folder,
its attributes set, then renamed over its name (or kept beside it as a partial file).

What a written file means for the restore's record (counts, proofs for validation,
warnings, partial files, files whose flags are set last) is told to a ``Sink``, never kept
here: the same writer runs on the restore's worker threads, whose sink is the restorer
itself, and in worker processes (core/restore/writer_proc.py), whose sink records what
happened and hands it back to the restorer. Folder descriptors come from the caller: this
module never walks a path.
"""

from __future__ import annotations

import bisect
import errno
import os
import stat
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from core.crypto import AnyCipher
from core.errors import DamagedObject, RestoreRefused, StorageFull
from core.fsmeta import flags as fsflags
from core.fsmeta.xattrs import ACL_NAMES, remove_xattr, write_xattr
from core.repository.blobs import open_blob
from core.repository.format import BlobType, pack_key
from core.repository.tree import DIR, Node
from core.restore import fsops
from core.restore.attributes import Owners, RestoreOptions, manages, wanted_mode, wanted_xattrs
from core.restore.fsops import Parts
from core.restore.outcome import PartialFile, merge_ranges
from core.storage.backend import ObjectNotFound, StorageError
from core.storage.retry import StorageUnavailable, TransientError
from core.text import shown

_IS_ROOT = os.geteuid() == 0

MERGE_GAP = 256 * 1024
_TEMP = ".axisor-restore-"
PARTIAL_SUFFIX = b".axisor-partial"  # a partial file's bytes, beside its name (never over it)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full target (or quota): exit 10, not a traceback


@dataclass(frozen=True, slots=True)
class Piece:
    """One blob of one file, at an offset in that file's data stream (holes left out)."""

    blob_id: bytes
    pack: bytes
    offset: int  # in the pack
    length: int
    raw_length: int
    file_offset: int  # in the data stream: the file offset when the file has no holes


@dataclass(slots=True)
class FileJob:
    parts: Parts
    node: Node
    pieces: list[Piece]
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
    leftover: bool = False  # an earlier partial restore left <name>.axisor-partial: it goes once whole

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


class Sink(Protocol):
    """What the restorer is told about each file (see the module doc)."""

    def warn(self, parts: Parts, message: str) -> None: ...

    def placed(self, ordinal: int, size: int, dev: int, ino: int, whole: bool) -> None: ...

    def partial(self, pf: PartialFile) -> None: ...

    def cleared(self) -> None: ...

    def flagged(self, parts: Parts, node: Node) -> None: ...


Blobs = dict[bytes, "memoryview | DamagedObject"]
DirOf = Callable[[Parts], AbstractContextManager[int]]


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


def ranges(pieces: list[Piece], gap: int = MERGE_GAP) -> list[tuple[bytes, int, int, list[Piece]]]:
    """Group pieces per pack into (pack, start, end, pieces) runs, merging small gaps."""
    by_pack: dict[bytes, list[Piece]] = defaultdict(list)
    for p in pieces:
        by_pack[p.pack].append(p)
    out: list[tuple[bytes, int, int, list[Piece]]] = []
    for pack, items in by_pack.items():
        items.sort(key=lambda p: p.offset)
        start, end, group = items[0].offset, items[0].offset + items[0].length, [items[0]]
        for p in items[1:]:
            if p.offset <= end + gap:
                end = max(end, p.offset + p.length)
                group.append(p)
            else:
                out.append((pack, start, end, group))
                start, end, group = p.offset, p.offset + p.length, [p]
        out.append((pack, start, end, group))
    return out


def damage(key: str, exc: StorageError) -> DamagedObject:
    """A read that failed for the object's sake (missing, short) as damage to that object;
    a location that cannot be reached is no damage: it fails the restore as it is."""
    if isinstance(exc, (StorageUnavailable, TransientError)):
        raise exc
    if isinstance(exc, ObjectNotFound):
        return DamagedObject(key, "pack is missing")
    return DamagedObject(key, str(exc))


def fetch_sync(get_sync: Callable[[str, int, int], bytes], pieces: list[Piece]) -> Blobs:
    """Every piece's sealed bytes (or the damage that kept them from being read), with one
    blocking ranged read per run of close blobs in a pack: for local storage, on the
    thread or process that writes them."""
    out: Blobs = {}
    for pack, s, e, group in ranges(pieces):
        key = pack_key(pack)
        try:
            mv = memoryview(get_sync(key, s, e - s))
        except StorageError as exc:
            if len(group) == 1 or isinstance(exc, ObjectNotFound):
                out.update(dict.fromkeys((p.blob_id for p in group), damage(key, exc)))
                continue
            for p in group:  # a pack cut short: the pieces before the cut are still good
                try:
                    out[p.blob_id] = memoryview(get_sync(key, p.offset, p.length))
                except StorageError as exc2:
                    out[p.blob_id] = damage(key, exc2)
            continue
        for p in group:
            out[p.blob_id] = mv[p.offset - s : p.offset - s + p.length]
    return out


def temp_name() -> str:
    """A fresh name for a file being made beside its final one (created O_EXCL, then renamed)."""
    return f"{_TEMP}{uuid.uuid4().hex[:12]}"


def unlink_quiet(dfd: int, name: str | bytes) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass


class FileWriter:
    """Writes files into folders the caller holds open; reports to ``sink``."""

    def __init__(self, cipher: AnyCipher, target: Path, options: RestoreOptions, sink: Sink) -> None:
        self.cipher = cipher
        self.target = target
        self.options = options
        self.sink = sink
        self.owners = Owners(options.numeric_owner)  # the restorer's too: one lookup cache

    def where(self, parts: Parts) -> str:
        return fsops.display(self.target, parts)

    def dest(self, parts: Parts) -> Path:
        return self.target.joinpath(*(os.fsdecode(p) for p in parts))

    def full(self, parts: Parts | None, exc: OSError, folder: str | None = None) -> StorageFull:
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

    def write_small(self, jobs: list[FileJob], blobs: Blobs, dir_of: DirOf) -> None:
        """Each file of a batch written whole and put in place (or kept as partial)."""
        for job in jobs:
            with dir_of(job.parts[:-1]) as dfd:
                fd, temp = self.create_temp(dfd, job.parts)
                try:
                    if job.extents is not None:
                        os.ftruncate(fd, job.node.size)
                    self.write_pieces(fd, job, job.pieces, blobs)
                    if job.lost:
                        os.ftruncate(fd, job.node.size)  # a range lost at the end is a hole too
                        self.keep_partial(dfd, fd, temp, job)
                        continue
                    self.apply_meta(fd, job.parts, job.node, fresh=True)
                    self.place(dfd, fd, temp, job)
                except BaseException as exc:
                    unlink_quiet(dfd, temp)  # never leave a half file behind, not even a temp one
                    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                        raise self.full(job.parts, exc) from None
                    raise
                finally:
                    os.close(fd)

    def write_pieces(self, fd: int, job: FileJob, pieces: list[Piece], blobs: Blobs) -> None:
        """Open and write each piece at its offset; a piece that cannot be read or opened
        is left unwritten (a hole) and recorded in ``job``."""
        for piece in pieces:
            got = blobs[piece.blob_id]
            if not isinstance(got, DamagedObject):
                try:
                    data = open_blob(
                        self.cipher, BlobType.DATA, piece.blob_id, got, piece.raw_length, pack_key(piece.pack)
                    )
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

    def create_temp(self, dfd: int, parts: Parts) -> tuple[int, str]:
        temp = temp_name()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        except (FileNotFoundError, FileExistsError) as exc:  # the folder was removed, or a name planted
            raise RestoreRefused(
                f"cannot create {self.where(parts)}: {exc.strerror} (the folder changed while restoring)"
            ) from None
        except OSError as exc:
            if exc.errno in NO_SPACE:  # no inode left, or the quota's count of files reached
                raise self.full(parts, exc) from None
            raise
        return fd, temp

    def keep_partial(self, dfd: int, fd: int, temp: str, job: FileJob) -> None:
        """A file with lost ranges: its bytes go to <name>.axisor-partial (replacing an
        older one), never over its name; it is recorded as partial."""
        parts = job.parts
        if _IS_ROOT:
            uid, gid = self.owners.ids(job.node, lambda m: self.sink.warn(parts, m))
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
            unlink_quiet(dfd, temp)
            kept, note = None, f"its restored part was not kept: {exc.strerror}"
        missing = merge_ranges(r for off, length in job.lost for r in job.file_ranges(off, length))
        self.sink.partial(
            PartialFile(
                self.where(parts),
                self.dest(parts),
                parts,
                job.node.size,
                tuple(job.node.content),
                missing,
                sorted(job.damage.items()),
                frozenset(job.failed),
                kept,
                existing,
                note,
            )
        )

    def place(self, dfd: int, fd: int, temp: str, job: FileJob) -> None:
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
            unlink_quiet(dfd, temp)
            raise RestoreRefused(f"cannot put {self.where(job.parts)} in place: {exc.strerror}") from None
        self.sink.placed(job.ordinal, node.size, st.st_dev, st.st_ino, whole)
        if job.leftover:
            # The file is whole now: an earlier partial restore's bytes of it can go.
            name = job.parts[-1] + PARTIAL_SUFFIX
            try:
                if stat.S_ISREG(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=dfd)
                    self.sink.cleared()
            except FileNotFoundError:
                pass
        if self.options.file_flags and node.flags:
            self.sink.flagged(job.parts, node)

    def apply_meta(self, fd: int, parts: Parts, node: Node, fresh: bool) -> None:
        """Owner, extended attributes, mode, times on an open file or folder, in that order
        (a chown clears setuid bits and capabilities, so it comes first). ``fresh``: a file
        this restore created (it has no attributes to remove)."""
        opts = self.options
        if _IS_ROOT:
            uid, gid = self.owners.ids(node, lambda m: self.sink.warn(parts, m))
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != (uid, gid):
                try:
                    os.fchown(fd, uid, gid)
                except OSError as exc:
                    self.sink.warn(parts, f"owner {uid}:{gid} not restored: {exc.strerror}")
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
                        self.sink.warn(parts, why)
        for name, value in want:
            if name == ACL_NAMES[1] and node.type != DIR:
                continue  # a default ACL only means something on a folder
            if why := write_xattr(fd, name, value):
                self.sink.warn(parts, why)
        os.fchmod(fd, wanted_mode(node, opts))
        os.utime(fd, ns=(node.atime_ns, node.mtime_ns))

    def set_flags(self, fd: int, parts: Parts, node: Node) -> None:
        if why := fsflags.set_flags(fd, node.flags):
            self.sink.warn(parts, why)
