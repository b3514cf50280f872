"""What a file restore would do to its target, worked out before anything is written.

Each path of the snapshot (under the target) is compared with what is there now:

- ``create``: nothing there yet;
- ``unchanged``: same type and content (a regular file's content is compared by
  re-chunking it with the repository's chunker and comparing blob ids: a file whose size
  and mtime look right but whose bytes were changed in place is still caught), same mode,
  owner and mtime;
- ``metadata``: same content, but mode, owner or mtime differ (only those are set);
- ``overwrite``: different content or type (a symlink where a file belongs, say);
- ``conflict``: a folder where a file or symlink belongs, or a file where a folder belongs
  (refused: the restore never removes a folder it was not asked to with ``--delete``);
- ``remove`` (only with ``delete``): a path under one of the snapshot's source folders that
  the snapshot does not have.

The plan is what ``restore --dry-run`` prints, what the safety backup is sized by, and what
the restorer follows (it skips ``unchanged`` files and only fixes ``metadata`` ones).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from core.backup.chunker import WINDOW, Chunker
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE, SYMLINK, Node
from core.restore.files import included
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

    def counts(self) -> dict[str, int]:
        c = Counter(ch.action for ch in self.changes)
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
        return frozenset(c.path for c in self.changes if c.kind == FILE and c.action in ("unchanged", "metadata")
                         and c.reason != "hard link")

    def action_for(self) -> dict[Path, str]:
        return {c.path: c.action for c in self.changes if c.action != "remove"}


def file_blob_ids(repo: Repository, path: Path) -> tuple[bytes, ...]:
    """The data blob ids a backup of ``path`` would record (same chunker, same keyed ids)."""
    ids: list[bytes] = []
    with open(path, "rb", buffering=0) as f:
        chunker = Chunker(repo.config.chunker, f)
        try:
            while chunks := chunker.take(WINDOW):
                ids.extend(repo.cipher.blob_id(c) for c in chunks)
        finally:
            chunker.close()
    return tuple(ids)


def _meta_differs(st: os.stat_result, node: Node) -> str:
    why = []
    if stat.S_IMODE(st.st_mode) != stat.S_IMODE(node.mode):
        why.append(f"mode {stat.S_IMODE(st.st_mode):o} -> {stat.S_IMODE(node.mode):o}")
    if _IS_ROOT and (st.st_uid, st.st_gid) != (node.uid, node.gid):
        why.append(f"owner {st.st_uid}:{st.st_gid} -> {node.uid}:{node.gid}")
    if node.type != DIR and st.st_mtime_ns != node.mtime_ns:
        why.append("mtime")
    return ", ".join(why)


def _compare_file(repo: Repository, dest: Path, node: Node) -> Change:
    try:
        st = os.lstat(dest)
    except (FileNotFoundError, NotADirectoryError):  # a parent in the way is reported as a conflict
        return Change(dest, "create", FILE, size=node.size)
    if stat.S_ISDIR(st.st_mode):
        return Change(dest, "conflict", FILE, "a folder is there", node.size)
    if not stat.S_ISREG(st.st_mode):
        return Change(dest, "overwrite", FILE, "not a regular file there", node.size)
    if st.st_size != node.size:
        return Change(dest, "overwrite", FILE, f"size {st.st_size} -> {node.size}", node.size)
    try:
        same = file_blob_ids(repo, dest) == tuple(node.content)
    except OSError as exc:
        return Change(dest, "overwrite", FILE, f"unreadable ({exc.strerror})", node.size)
    if not same:
        return Change(dest, "overwrite", FILE, "content differs", node.size)
    meta = _meta_differs(st, node)
    return Change(dest, "metadata", FILE, meta, 0) if meta else Change(dest, "unchanged", FILE)


def _compare_other(dest: Path, node: Node) -> Change:
    try:
        st = os.lstat(dest)
    except (FileNotFoundError, NotADirectoryError):  # a parent in the way is reported as a conflict
        return Change(dest, "create", node.type)
    if node.type == DIR:
        if stat.S_ISLNK(st.st_mode):
            return Change(dest, "conflict", DIR, "a symlink is there: a restore never writes through one")
        if not stat.S_ISDIR(st.st_mode):
            return Change(dest, "conflict", DIR, "not a folder there")
        meta = _meta_differs(st, node)
        return Change(dest, "metadata", DIR, meta) if meta else Change(dest, "unchanged", DIR)
    # symlink
    if stat.S_ISDIR(st.st_mode):
        return Change(dest, "conflict", SYMLINK, "a folder is there")
    if stat.S_ISLNK(st.st_mode) and os.fsencode(os.readlink(dest)) == node.target:
        return Change(dest, "unchanged", SYMLINK)
    return Change(dest, "overwrite", SYMLINK, "different link" if stat.S_ISLNK(st.st_mode) else "not a link there")


def _extras(root: Path, keep: set[Path]) -> Iterator[Change]:
    """Everything under ``root`` (not following links) that the snapshot does not have;
    a removed folder is reported with its content, deepest first."""
    if root.is_symlink() or not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root, topdown=False, followlinks=False):
        d = Path(dirpath)
        for name in filenames + [n for n in dirnames if (d / n).is_symlink()]:
            p = d / name
            if p not in keep:
                kind = SYMLINK if p.is_symlink() else FILE
                yield Change(p, "remove", kind, "not in the snapshot", 0 if kind == SYMLINK else p.lstat().st_size)
        for name in dirnames:
            p = d / name
            if not p.is_symlink() and p not in keep:
                yield Change(p, "remove", DIR, "not in the snapshot")


async def plan_restore(repo: Repository, snap: Snapshot, target: Path, *, include: tuple[str, ...] = (),
                       delete: bool = False, executor: Executor | None = None) -> RestorePlan:
    """Compare the snapshot with ``target`` (see module doc). The index must be loaded."""
    target = Path(os.path.abspath(target))
    loop = asyncio.get_running_loop()
    changes: list[Change] = []
    pending: list[asyncio.Future] = []
    keep: set[Path] = set()
    first_by_inode: dict[tuple[int, int], Path] = {}
    followers: list[tuple[int, Path]] = []  # (index in changes, first path) of "unchanged" hard links
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        if not included(display(parts), include) and node.type != DIR:
            continue
        dest = target.joinpath(*(os.fsdecode(p) for p in parts))
        keep.add(dest)
        if node.type == FILE:
            key = (node.dev, node.inode)
            if node.nlink > 1 and key in first_by_inode:
                first = first_by_inode[key]
                try:
                    linked = os.path.samefile(dest, first) and not dest.is_symlink()
                except OSError:
                    linked = False
                if linked:
                    followers.append((len(changes), first))
                changes.append(Change(dest, "unchanged" if linked else ("overwrite" if os.path.lexists(dest)
                                                                         else "create"), FILE, "hard link"))
                continue
            if node.nlink > 1:
                first_by_inode[key] = dest
            pending.append(loop.run_in_executor(executor, _compare_file, repo, dest, node))
            if len(pending) >= 64:
                changes.extend(await asyncio.gather(*pending))
                pending = []
        elif node.type == DIR:
            if included(display(parts), include):
                changes.append(_compare_other(dest, node))
        else:
            changes.append(_compare_other(dest, node))
    changes.extend(await asyncio.gather(*pending))
    # A link that shares the first path's inode is only unchanged if the first path is: an
    # overwrite puts a new file (a new inode) there, and the link must follow it.
    firsts = {c.path: c.action for c in changes if c.reason != "hard link"}
    for i, first in followers:
        if firsts.get(first) not in ("unchanged", "metadata"):
            changes[i] = Change(changes[i].path, "overwrite", FILE, "hard link")
    roots = tuple(target.joinpath(*Path(os.path.abspath(p)).parts[1:]) for p in snap.paths)
    if delete:
        for root in roots:
            if included("/" + str(root.relative_to(target)), include):
                changes.extend(await loop.run_in_executor(executor, lambda r=root: list(_extras(r, keep))))
    return RestorePlan(snap.id, target, tuple(changes), roots, delete)
