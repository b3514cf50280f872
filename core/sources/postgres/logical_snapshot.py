"""A logical database snapshot as the repository holds it: its source (``SOURCE``), how
its metadata keys tables (``TABLE_KEYS``), its dump file and the dump's table of contents
read from the start of its blobs (``read_layout``, ``snapshot_layout``), its row counts
and checksums by names.key (``snapshot_tables``), its globals file (``_globals_text``),
and whether it has what a restore is validated against (``_restorable_meta``)."""

from __future__ import annotations

import contextlib

from core.errors import UsageError
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import FILE, Node, Tree
from core.restore.stream import iter_content
from core.sources.postgres import dumpsum, names

SOURCE = "database"
# How the keys of ``tables`` and ``checksums`` in a snapshot's metadata are written: names.key
# (``schema.name``, a part quoted unless it is a plain lower-case identifier). Snapshots without
# it wrote ``f"{schema}.{name}"`` unquoted: read through the dump's table of contents.
TABLE_KEYS = names.TABLE_KEYS
PREFETCH = 4


def _dump_node(tree: Tree, metadata: dict) -> Node:
    want = metadata.get("dump_file")
    files = [n for n in tree.nodes if n.type == FILE]
    for n in files:
        if want is not None and n.name == str(want).encode():
            return n
    if len(files) == 1:
        return files[0]
    raise UsageError("this database snapshot holds no single dump file")


async def read_layout(repo: Repository, node: Node) -> dumpsum.DumpLayout:
    """The dump's header and table of contents, read from the start of its blobs (the TOC comes
    first in a custom-format dump; only as many blobs as it spans are read)."""
    head = bytearray()
    reader = dumpsum.LayoutReader()
    async with contextlib.aclosing(iter_content(repo, node.content, PREFETCH)) as chunks:
        async for data in chunks:
            head += data
            try:
                layout = reader.parse(head)
            except dumpsum.DumpFormatError as exc:
                raise UsageError(f"the dump in this snapshot cannot be read: {exc}") from None
            if layout is not None:
                return layout
    raise UsageError("the dump in this snapshot ends inside its table of contents")


async def snapshot_layout(repo: Repository, snap: Snapshot) -> dumpsum.DumpLayout:
    """The table of contents of a logical snapshot's dump (read_layout)."""
    return await read_layout(repo, _dump_node(await repo.load_tree(bytes.fromhex(snap.tree)), snap.metadata or {}))


def snapshot_tables(meta: dict, layout: dumpsum.DumpLayout | None = None) -> tuple[dict[str, int], dict[str, str]]:
    """The snapshot's row counts and checksums keyed by names.key. Snapshots before
    ``table_keys`` wrote ``schema.name`` unquoted (two tables could share a key): those keys
    are read back through the dump's table of contents (``layout``), else split at the first dot."""
    tables, checksums = meta.get("tables"), meta.get("checksums")
    counts: dict[str, int] = tables if isinstance(tables, dict) else {}
    sums: dict[str, str] = checksums if isinstance(checksums, dict) else {}
    if meta.get("table_keys") == TABLE_KEYS:
        return dict(counts), dict(sums)
    old: dict[str, str] = {}
    for e in layout.entries.values() if layout is not None else ():
        if e.desc == "TABLE":
            old.setdefault(f"{e.namespace}.{e.tag}", e.key)

    def conv(k: str) -> str:
        return old[k] if k in old else names.legacy_key(k)

    return {conv(k): v for k, v in counts.items()}, {conv(k): v for k, v in sums.items()}


def _restorable_meta(snap: Snapshot) -> dict:
    """The metadata of a logical database snapshot that has the row counts a restore is
    validated against; a usage error for any other snapshot."""
    meta = snap.metadata or {}
    if snap.source != SOURCE or meta.get("mode") != "logical":
        raise UsageError(f"snapshot {snap.short_id} ({snap.source}) is not a logical database backup")
    raw = meta.get("tables")
    if not isinstance(raw, dict) or not all(isinstance(v, int) for v in raw.values()):
        raise UsageError(f"snapshot {snap.short_id} has no table row counts to validate against")
    return meta


async def _globals_text(repo: Repository, tree: Tree, meta: dict) -> tuple[str | None, str]:
    """The snapshot's globals file (pgglobals), or None and why it has none."""
    info = meta.get("globals")
    if not isinstance(info, dict):
        return None, "this snapshot holds no globals (taken by a version that did not record them)"
    if not info.get("file"):
        return None, f"the backup could not record the globals: {info.get('error') or 'no reason recorded'}"
    for n in tree.nodes:
        if n.type == FILE and n.name == str(info["file"]).encode():
            data = bytearray()
            async with contextlib.aclosing(iter_content(repo, n.content, PREFETCH)) as chunks:
                async for piece in chunks:
                    data += piece
            return data.decode("utf-8", "replace"), ""
    return None, f"the snapshot's tree has no {info['file']} although its metadata names it"
