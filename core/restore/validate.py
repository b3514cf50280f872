"""After a file restore: prove every restored file is the snapshot's, and count them.

Two methods, both walking the snapshot again so that every file and symlink it has is
checked and counted (one not found, or of another kind, is a mismatch, never silence):

- **as written** (the default): a file the restorer wrote whole was checked while it was
  written (``files.Placed``): each blob opened, decrypted and its keyed id recomputed over
  the plaintext (the same id a backup records, so an exact content check), one piece per
  blob of the snapshot's list written at its offset with every ``pwrite`` acknowledged,
  the pieces' bytes adding up to the file's data and its length the snapshot's. Validation
  then checks, by ``fstatat`` through folder descriptors, that the very inode written is
  at the file's name, a regular file of the right size. With the flush at the end of the
  restore (``durable.flush_filesystem``, unless ``--no-fsync``) that is what success means:
  the bytes the snapshot holds, handed to the filesystem and flushed to disk.
- **read back** (``--read-back``, and drills): each file is opened again and re-chunked
  from disk, its blob ids compared with the tree's; a sparse file's holes must read as
  zeros. This also catches another process writing into a file after it was placed.

What neither proves: that the disk will return what it acknowledged. A read-back right
after writing is served from the page cache, so it proves no more about the medium than
the write-time check does; ``verify --full`` of the repository and a drill on another
host are the tests of media. Files the restore did not write (its plan compared them by
content and found them right, ``proven``) count as checked; files it could not write in
full (``partial``) are reported by the restore and not counted twice. Any file not
proven while writing (a plan that kept it, a hard link to an unchanged file) is read back
whichever method was asked for.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import FILE, SYMLINK, Node
from core.errors import RestoreRefused
from core.restore import fsops
from core.restore.outcome import Placed
from core.restore.select import included
from core.restore.fsops import FILE_FLAGS, DirCache, Parts, open_target
from core.restore.plan import file_blob_ids_fd, holes_read_zero
from core.restore.walk import display, walk

MAX_LISTED = 50


@dataclass(frozen=True, slots=True)
class ValidationResult:
    files: int
    bytes: int
    symlinks: int
    mismatches: tuple[str, ...]
    seconds: float
    partial: int = 0  # files the restore reported partial: not read back (already listed)
    read_back: int = 0  # files re-read and re-chunked from disk (the rest: checked as written)
    method: str = "written"  # "written" or "read-back": what was asked for (module docstring)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "files": self.files,
            "bytes": self.bytes,
            "symlinks": self.symlinks,
            "mismatches": list(self.mismatches),
            "seconds": self.seconds,
            "partial": self.partial,
            "read_back": self.read_back,
            "method": self.method,
        }


def _check_placed(cache: DirCache | None, parts: Parts, where: str, node: Node, placed: tuple[int, int]) -> str | None:
    """A file proven while it was written: the same inode must be at its name, regular,
    of the snapshot's size."""
    if cache is None:
        return f"{where}: missing after the restore"
    try:
        with cache.dir(parts[:-1]) as dfd:
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return f"{where}: missing after the restore"
    except RestoreRefused:
        return f"{where}: a folder above it is not a folder after the restore"
    except OSError as exc:
        return f"{where}: cannot be checked ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return f"{where}: not a regular file after the restore"
    if (st.st_dev, st.st_ino) != placed:
        return f"{where}: replaced by another file after it was restored"
    if st.st_size != node.size:
        return f"{where}: {st.st_size} bytes on disk, the snapshot has {node.size}"
    return None


def _check_file(repo: Repository, cache: DirCache | None, parts: Parts, where: str, node: Node) -> str | None:
    if cache is None:
        return f"{where}: missing after the restore"
    try:
        with cache.dir(parts[:-1]) as dfd:
            fd = os.open(parts[-1], FILE_FLAGS, dir_fd=dfd)
    except (FileNotFoundError, NotADirectoryError):
        return f"{where}: missing after the restore"
    except RestoreRefused:
        return f"{where}: a folder above it is not a folder after the restore"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{where}: not a regular file after the restore"
        return f"{where}: cannot be read back ({exc.strerror})"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"{where}: not a regular file after the restore"
        if st.st_size != node.size:
            return f"{where}: {st.st_size} bytes on disk, the snapshot has {node.size}"
        try:
            if file_blob_ids_fd(repo, fd, node.size, node.holes) != tuple(node.content):
                return f"{where}: content differs from the snapshot"
            if not holes_read_zero(fd, node.holes):
                return f"{where}: content differs from the snapshot (data where it has a hole)"
        except OSError as exc:
            return f"{where}: cannot be read back ({exc.strerror})"
    finally:
        os.close(fd)
    return None


# Files per trip to the worker pool: one trip per file would cost more than a stat.
BATCH_FILES = 256
BATCH_READ_BYTES = 8 << 20


async def validate_restore(
    repo: Repository,
    snap: Snapshot,
    target: Path,
    *,
    include: tuple[str, ...] = (),
    executor: Executor | None = None,
    proven: frozenset[Path] = frozenset(),
    partial: frozenset[Path] = frozenset(),
    placed: Placed | None = None,
    read_back: bool = False,
) -> ValidationResult:
    """``proven``: files the restore's plan has just compared by content and not written
    (unchanged, or re-stamped only); they count as checked without being read again.
    ``partial``: files the restore could not write in full (already reported, with their
    missing ranges): neither read back nor counted as mismatches a second time.
    ``placed``: the restorer's record of files proven while written (``RestoreStats.placed``);
    without it, or with ``read_back``, every other file is read back."""
    started = time.monotonic()
    target = Path(os.path.abspath(target))
    root_fd = open_target(target, create=False, check_trust=False)
    cache = DirCache(root_fd, target) if root_fd is not None else None
    checks = _Checks(repo, cache, executor, None if read_back else placed)
    try:
        return await _validate(
            repo,
            snap,
            target,
            cache,
            include,
            checks,
            proven,
            partial,
            started,
            "read-back" if read_back else "written",
        )
    finally:
        if cache is not None:
            cache.close()
            os.close(cache.root_fd)


class _Checks:
    """File checks gathered into batches for the worker pool, a few batches in flight."""

    def __init__(
        self, repo: Repository, cache: DirCache | None, executor: Executor | None, placed: Placed | None
    ) -> None:
        self.repo, self.cache, self.executor, self.placed = repo, cache, executor, placed
        self.bad: list[str] = []
        self.read_back = 0
        self._batch: list[tuple[Parts, str, Node, tuple[int, int] | None]] = []
        self._batch_bytes = 0
        self._pending: list[asyncio.Future] = []

    async def add(self, ordinal: int, parts: Parts, where: str, node: Node) -> None:
        proof = self.placed.get(ordinal) if self.placed is not None else None
        self._batch.append((parts, where, node, proof))
        if proof is None:
            self.read_back += 1
            self._batch_bytes += node.size
        if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_READ_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            loop = asyncio.get_running_loop()
            self._pending.append(loop.run_in_executor(self.executor, self._run, batch))
        if len(self._pending) >= 4:
            for found in await asyncio.gather(*self._pending):
                self.bad.extend(found)
            self._pending = []

    def _run(self, batch: list[tuple[Parts, str, Node, tuple[int, int] | None]]) -> list[str]:
        found = []
        for parts, where, node, proof in batch:
            why = (
                _check_placed(self.cache, parts, where, node, proof)
                if proof is not None
                else _check_file(self.repo, self.cache, parts, where, node)
            )
            if why:
                found.append(why)
        return found

    async def done(self) -> list[str]:
        await self._flush()
        for found in await asyncio.gather(*self._pending):
            self.bad.extend(found)
        self._pending = []
        return self.bad


async def _validate(
    repo: Repository,
    snap: Snapshot,
    target: Path,
    cache: DirCache | None,
    include: tuple[str, ...],
    checks: _Checks,
    proven: frozenset[Path],
    partial: frozenset[Path],
    started: float,
    method: str,
) -> ValidationResult:
    links_bad: list[str] = []
    files = size = links = skipped = 0
    ordinal = -1
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        ordinal += 1
        if node.type not in (FILE, SYMLINK) or (include and not included(display(parts), include)):
            continue
        where = fsops.display(target, parts)
        if node.type == SYMLINK:
            links += 1
            try:
                if cache is None:
                    raise FileNotFoundError
                with cache.dir(parts[:-1]) as dfd:
                    if os.readlink(parts[-1], dir_fd=dfd) != node.target:
                        links_bad.append(f"{where}: link target differs from the snapshot")
            except (OSError, RestoreRefused):
                links_bad.append(f"{where}: not a symlink after the restore")
            continue
        if partial and target.joinpath(*(os.fsdecode(p) for p in parts)) in partial:
            skipped += 1
            continue
        files += 1
        size += node.size
        if proven and target.joinpath(*(os.fsdecode(p) for p in parts)) in proven:
            continue
        await checks.add(ordinal, parts, where, node)
    bad = links_bad + await checks.done()
    if len(bad) > MAX_LISTED:
        bad = bad[:MAX_LISTED] + [f"... and {len(bad) - MAX_LISTED} more"]
    return ValidationResult(
        files, size, links, tuple(bad), round(time.monotonic() - started, 3), skipped, checks.read_back, method
    )
