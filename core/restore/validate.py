"""After a file restore: read back what is on disk and prove it is the snapshot's content.

Each restored regular file is re-chunked with the repository's chunker and its blob ids
compared with the tree's (the same keyed ids a backup records, so this is an exact
content check, not a size check); symlinks' targets are compared too. This catches what
the restorer cannot see itself: a full or failing disk that acknowledged a write it lost,
another process writing into the target meanwhile, a file skipped as unchanged that was not.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import FILE, SYMLINK, Node
from core.restore.files import included
from core.restore.plan import file_blob_ids
from core.restore.walk import display, walk

MAX_LISTED = 50


@dataclass(frozen=True, slots=True)
class ValidationResult:
    files: int
    bytes: int
    symlinks: int
    mismatches: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict:
        return {"ok": self.ok, "files": self.files, "bytes": self.bytes, "symlinks": self.symlinks,
                "mismatches": list(self.mismatches), "seconds": self.seconds}


def _check_file(repo: Repository, path: Path, node: Node) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"{path}: missing after the restore"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file after the restore"
    if st.st_size != node.size:
        return f"{path}: {st.st_size} bytes on disk, the snapshot has {node.size}"
    try:
        if file_blob_ids(repo, path) != tuple(node.content):
            return f"{path}: content differs from the snapshot"
    except OSError as exc:
        return f"{path}: cannot be read back ({exc.strerror})"
    return None


async def validate_restore(repo: Repository, snap: Snapshot, target: Path, *, include: tuple[str, ...] = (),
                           executor: Executor | None = None,
                           proven: frozenset[Path] = frozenset()) -> ValidationResult:
    """``proven``: files the restore's plan has just compared by content and not written
    (unchanged, or re-stamped only); they count as checked without being read again."""
    started = time.monotonic()
    target = Path(os.path.abspath(target))
    loop = asyncio.get_running_loop()
    bad: list[str] = []
    files = size = links = 0
    pending: list[asyncio.Future] = []
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        if node.type not in (FILE, SYMLINK) or not included(display(parts), include):
            continue
        dest = target.joinpath(*(os.fsdecode(p) for p in parts))
        if node.type == SYMLINK:
            links += 1
            try:
                if os.fsencode(os.readlink(dest)) != node.target:
                    bad.append(f"{dest}: link target differs from the snapshot")
            except OSError:
                bad.append(f"{dest}: not a symlink after the restore")
            continue
        files += 1
        size += node.size
        if dest in proven:
            continue
        pending.append(loop.run_in_executor(executor, _check_file, repo, dest, node))
        if len(pending) >= 64:
            bad.extend(m for m in await asyncio.gather(*pending) if m)
            pending = []
    bad.extend(m for m in await asyncio.gather(*pending) if m)
    if len(bad) > MAX_LISTED:
        bad = bad[:MAX_LISTED] + [f"... and {len(bad) - MAX_LISTED} more"]
    return ValidationResult(files, size, links, tuple(bad), round(time.monotonic() - started, 3))
