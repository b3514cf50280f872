"""Committing a snapshot that holds one streamed file (a database dump, a base backup tar)."""

from __future__ import annotations

import getpass
import os
import socket
import stat
import time
from datetime import datetime, timezone

from core import __version__
from core.repository.format import BlobType
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot, Summary
from core.repository.tree import FILE, Node, Tree


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


async def single_file_snapshot(
    repo: Repository,
    *,
    name: str,
    ids: tuple[bytes, ...],
    size: int,
    before: list[int],
    source: str,
    paths: tuple[str, ...],
    backup_set: str,
    tags: tuple[str, ...],
    metadata: dict,
    warnings: tuple[str, ...] = (),
    extra: tuple[tuple[str, tuple[bytes, ...], int], ...] = (),
    parts: tuple[tuple[str, tuple[bytes, ...], int], ...] = (),
) -> Snapshot:
    """Store the tree, make everything durable (flush), and build the manifest to save.
    ``before`` is repo.stats.by_type[DATA] copied when the stream started. ``extra``: small
    files stored beside the main one, (name, blob ids, size) each (a dump's globals).
    ``parts``: the further parts of a dump taken in parts, (name, blob ids, size) each, the
    main file being part 0: their nodes carry their part number (1, 2, ...), which makes
    the tree version 3 (docs/FORMAT.md)."""
    now_ns = time.time_ns()
    nodes = [
        Node(
            name=n.encode(),
            type=FILE,
            mode=stat.S_IFREG | 0o600,
            uid=os.getuid(),
            gid=os.getgid(),
            mtime_ns=now_ns,
            atime_ns=now_ns,
            ctime_ns=now_ns,
            size=sz,
            content=c,
            part=part,
        )
        for n, c, sz, part in (
            (name, ids, size, 0),
            *((n, c, sz, 0) for n, c, sz in extra),
            *((n, c, sz, k) for k, (n, c, sz) in enumerate(parts, 1)),
        )
    ]
    try:
        root = await repo.save_tree(Tree(sorted(nodes, key=lambda n: n.name)))
        await repo.flush()
    except BaseException:
        await repo.abort()
        raise
    after = repo.stats.by_type.get(BlobType.DATA, [0, 0, 0])
    added, packed = after[1] - before[1], after[2] - before[2]
    metadata["compression_ratio"] = round(added / packed, 3) if packed else 1.0
    total = size + sum(sz for _, _, sz in (*extra, *parts))
    summary = Summary(
        files_new=len(nodes),
        total_files=len(nodes),
        total_bytes=total,
        bytes_read=total,
        data_blobs_new=after[0] - before[0],
        data_added=added,
        data_added_packed=packed,
        compression_ratio=metadata["compression_ratio"],
    )
    return Snapshot(
        time=datetime.now(timezone.utc).astimezone().isoformat(timespec="microseconds"),
        source=source,
        paths=paths,
        tree=root.hex(),
        type="full",
        backup_set=backup_set,
        hostname=socket.gethostname(),
        username=current_user(),
        tags=tuple(tags),
        warnings=tuple(warnings),
        summary=summary,
        program_version=__version__,
        metadata=metadata,
    )
