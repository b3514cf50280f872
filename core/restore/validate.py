"""After a file restore: read back what is on disk and prove it is the snapshot's content.

Each restored regular file is re-chunked with the repository's chunker and its blob ids
compared with the tree's (the same keyed ids a backup records, so this is an exact
content check, not a size check); symlinks' targets are compared too. This catches what
the restorer cannot see itself: a full or failing disk that acknowledged a write it lost,
another process writing into the target meanwhile, a file skipped as unchanged that was not.
Files are opened through folder descriptors (no symlink followed, any depth); a sparse
file's data runs are compared by id and its holes must read as zeros.
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
from core.restore.files import included
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

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict:
        return {"ok": self.ok, "files": self.files, "bytes": self.bytes, "symlinks": self.symlinks,
                "mismatches": list(self.mismatches), "seconds": self.seconds, "partial": self.partial}


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


async def validate_restore(repo: Repository, snap: Snapshot, target: Path, *, include: tuple[str, ...] = (),
                           executor: Executor | None = None,
                           proven: frozenset[Path] = frozenset(),
                           partial: frozenset[Path] = frozenset()) -> ValidationResult:
    """``proven``: files the restore's plan has just compared by content and not written
    (unchanged, or re-stamped only); they count as checked without being read again.
    ``partial``: files the restore could not write in full (already reported, with their
    missing ranges): neither read back nor counted as mismatches a second time."""
    started = time.monotonic()
    target = Path(os.path.abspath(target))
    root_fd = open_target(target, create=False, check_trust=False)
    cache = DirCache(root_fd, target) if root_fd is not None else None
    try:
        return await _validate(repo, snap, target, cache, include, executor, proven, partial, started)
    finally:
        if cache is not None:
            cache.close()
            os.close(cache.root_fd)


async def _validate(repo: Repository, snap: Snapshot, target: Path, cache: DirCache | None,
                    include: tuple[str, ...], executor: Executor | None, proven: frozenset[Path],
                    partial: frozenset[Path], started: float) -> ValidationResult:
    loop = asyncio.get_running_loop()
    bad: list[str] = []
    files = size = links = skipped = 0
    pending: list[asyncio.Future] = []
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        if node.type not in (FILE, SYMLINK) or not included(display(parts), include):
            continue
        where = fsops.display(target, parts)
        if node.type == SYMLINK:
            links += 1
            try:
                if cache is None:
                    raise FileNotFoundError
                with cache.dir(parts[:-1]) as dfd:
                    if os.readlink(parts[-1], dir_fd=dfd) != node.target:
                        bad.append(f"{where}: link target differs from the snapshot")
            except (OSError, RestoreRefused):
                bad.append(f"{where}: not a symlink after the restore")
            continue
        if partial and target.joinpath(*(os.fsdecode(p) for p in parts)) in partial:
            skipped += 1
            continue
        files += 1
        size += node.size
        if proven and target.joinpath(*(os.fsdecode(p) for p in parts)) in proven:
            continue
        pending.append(loop.run_in_executor(executor, _check_file, repo, cache, parts, where, node))
        if len(pending) >= 64:
            bad.extend(m for m in await asyncio.gather(*pending) if m)
            pending = []
    bad.extend(m for m in await asyncio.gather(*pending) if m)
    if len(bad) > MAX_LISTED:
        bad = bad[:MAX_LISTED] + [f"... and {len(bad) - MAX_LISTED} more"]
    return ValidationResult(files, size, links, tuple(bad), round(time.monotonic() - started, 3), skipped)
