"""Restoring a logical snapshot whose dump is in parts (dump_parts.py, ``dump_parts`` in
its metadata): the part files found in the snapshot's tree with their tables of contents
(``load_parts``), what each part gives a restore of some tables (``data_lists``), and the
restore itself (``restore_parts``): part 0's ``--section=pre-data`` (the schema), then the
data of every part at once, each fed from its own stream to its own ``pg_restore
--section=data``, then part 0's ``--section=post-data`` (indexes, constraints, triggers).

Unlike a dump in one piece this is not one transaction: each step is its own. Into a
database the restore created, a failure drops it as before (restore_target._undo); into
an existing one, what the finished steps made stays, and the error says so. ``--force``
over a non-empty database (which relies on the single transaction to leave it as it was)
is refused for such a snapshot (logical_restore.py)."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import DatabaseError, UsageError
from core.repository.repository import Repository
from core.repository.tree import FILE, Node, Tree
from core.sources.postgres import dumpsum
from core.sources.postgres.child import all_or_none
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.dump_parts import DumpPart
from core.sources.postgres.logical_snapshot import read_layout
from core.sources.postgres.restore_feed import _feed_pg_restore
from core.sources.postgres.restore_report import DbRestoreReport


@dataclass(frozen=True, slots=True)
class LoadedPart:
    """A part of the dump: what the metadata says of it, its file, its table of contents."""

    part: DumpPart
    node: Node
    layout: dumpsum.DumpLayout


async def load_parts(repo: Repository, tree: Tree, parts: tuple[DumpPart, ...], head: Node) -> list[LoadedPart]:
    """Parts 1.. of the dump (part 0 is ``head``, already found) with their tables of
    contents. A part the tree lacks, or a file that is not the part it should be, is a
    usage error before anything is restored."""
    loaded = []
    for p in parts[1:]:
        found = [n for n in tree.nodes if n.type == FILE and n.name == p.file.encode()]
        if len(found) != 1 or found[0].part != p.number:
            raise UsageError(
                f"the snapshot's tree has no file {p.file!r} for part {p.number} of its dump; it cannot be restored"
            )
        loaded.append(LoadedPart(p, found[0], await read_layout(repo, found[0])))
    head_part = DumpPart(0, parts[0].file, parts[0].tables)
    return [LoadedPart(head_part, head, await read_layout(repo, head)), *loaded]


def data_keys(parts: list[LoadedPart]) -> list[str]:
    """The tables whose rows the parts hold, part by part (TABLE DATA entries)."""
    return [e.key for p in parts for e in p.layout.entries.values() if e.desc == "TABLE DATA"]


def merged_layout(parts: list[LoadedPart]) -> dumpsum.DumpLayout:
    """Part 0's layout with every part's TABLE DATA entries added (under ids of their own:
    dump ids repeat across parts), what validation compares column lists against."""
    head = parts[0].layout
    entries = dict(head.entries)
    for p in parts[1:]:
        for e in p.layout.entries.values():
            if e.desc == "TABLE DATA":
                entries[-(p.part.number << 32 | e.dump_id)] = e
    return dumpsum.DumpLayout(head.version, head.int_size, head.toc_end, entries)


def data_lists(parts: list[LoadedPart], chosen: set[str] | None) -> list[str | None]:
    """For parts 1..: the ``-L`` list of the TABLE DATA entries of the ``chosen`` tables
    (keys), "" when the part holds none of them (not run); None for every part when all
    is restored."""
    if chosen is None:
        return [None for _ in parts[1:]]
    return [
        "".join(
            f"{e.dump_id}; {e.desc}\n" for e in p.layout.entries.values() if e.desc == "TABLE DATA" and e.key in chosen
        )
        for p in parts[1:]
    ]


async def restore_parts(
    repo: Repository,
    parts: list[LoadedPart],
    target: PgTarget,
    pg_restore,
    extra: list[str],
    head_list: str | None,
    others: list[str | None],
    owners: bool,
    report: DbRestoreReport,
) -> None:
    """pre-data of part 0, the data of every part at once, post-data of part 0 (module
    docstring). ``head_list``: part 0's ``-L`` list (None: all of it); ``others``: each
    further part's (data_lists). Bytes fed and warnings go into ``report``."""
    head = parts[0].node
    done: list[str] = []

    async def feed(node: Node, options: list[str], list_text: str | None, early: bool) -> tuple[int, list[str]]:
        return await _feed_pg_restore(
            repo, node, target, pg_restore, options, list_text, owners=owners, early_exit=early
        )

    try:
        results = [await feed(head, [*extra, "--section=pre-data"], head_list, True)]
        done.append("the schema (pre-data)")
        data = [feed(head, ["--section=data"], head_list, False)]
        data += [feed(p.node, ["--section=data"], lst, False) for p, lst in zip(parts[1:], others) if lst != ""]
        done.append("the data of any part that finished")
        results += await all_or_none(data)
        done[-1] = f"the data of all {len(data)} parts"
        results.append(await feed(head, ["--section=post-data"], head_list, True))
    except DatabaseError as exc:
        if done and not report.created:
            raise DatabaseError(
                f"{exc} (the dump is in parts, restored step by step: {', '.join(done)} stayed in {target.describe()})"
            ) from None
        raise
    report.bytes = sum(n for n, _ in results)
    report.warnings = [w for _, warnings in results for w in warnings]
