"""A logical dump taken in parts (``[database] dump_jobs``): which tables' data each part
holds (``assign_parts``), the pg_dump options of each part (``part_options``), and the
snapshot metadata that records them (``DumpPart``, ``parts_metadata``, ``read_parts``).

Part 0 is a whole ``pg_dump -Fc`` (schema, sequences, large objects, the data of its own
tables) with ``--exclude-table-data`` for every table of the other parts; part k > 0 is
``pg_dump --data-only --table=...`` of exactly its tables. All run at once on one exported
snapshot, each streamed into the repository like a single dump (logical_backup.py). Pure:
no I/O here, so the assignment is tested on its own (tests/postgres/test_dump_parts.py).

Why not ``pg_dump -Fd -j N``: a directory-format dump must be written to local disk whole
before it can be stored, so storing could not overlap dumping and would need the dump's
size in temp space; N streamed custom-format dumps on one snapshot keep the whole path
streaming, bounded in memory, with the stream checksummer (dumpsum.py) unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import UsageError
from core.sources.postgres import names

MAX_JOBS = 16  # config.DatabaseConfig.dump_jobs's bound


@dataclass(frozen=True, slots=True)
class DumpPart:
    """One part of a dump: its number, the file that holds it in the snapshot's tree, and
    the tables (schema, name) whose data it was assigned."""

    number: int
    file: str
    tables: tuple[tuple[str, str], ...]


def assign_parts(tables: Sequence[tuple[str, str, int]], jobs: int) -> tuple[tuple[tuple[str, str], ...], ...]:
    """``tables`` ((schema, name, size in bytes) each) spread over at most ``jobs`` parts:
    largest first, each to the part holding the fewest bytes so far (among equals the one
    with the fewest tables, then the lowest-numbered: empty tables spread too), so the parts differ by at most the largest table's size. Deterministic:
    equal sizes are taken in names.key order. Parts left empty are dropped (a part with no
    ``--table`` would dump everything), part 0 always kept; each part's tables in key order."""
    if jobs < 1:
        raise UsageError(f"dump_jobs must be at least 1, not {jobs}")
    order = sorted(tables, key=lambda t: (-max(t[2], 0), names.key(t[0], t[1])))
    loads = [0] * min(jobs, max(1, len(order)))
    parts: list[list[tuple[str, str]]] = [[] for _ in loads]
    for schema, name, size in order:
        k = min(range(len(loads)), key=lambda i: (loads[i], len(parts[i]), i))
        loads[k] += max(size, 0)
        parts[k].append((schema, name))
    kept = [parts[0], *(p for p in parts[1:] if p)]
    return tuple(tuple(sorted(p, key=lambda t: names.key(*t))) for p in kept)


def part_options(parts: Sequence[Sequence[tuple[str, str]]], number: int) -> list[str]:
    """pg_dump's options (beyond format, snapshot and connection) for part ``number``:
    part 0 leaves out the data of every other part's tables; part k dumps only its own
    tables' data. Each name an exact pattern (names.table_option)."""
    if number == 0:
        return [names.table_option(s, n, "--exclude-table-data") for p in parts[1:] for s, n in p]
    if not parts[number]:
        raise ValueError("a dump part with no tables would dump the whole database")
    return ["--data-only", *(names.table_option(s, n) for s, n in parts[number])]


def part_file(dump_file: str, number: int) -> str:
    """The tree name of part ``number``'s file: the dump's own name for part 0."""
    return dump_file if number == 0 else f"{dump_file}.part{number}"


def parts_metadata(parts: Sequence[DumpPart], sizes: Sequence[int]) -> list[dict]:
    """The snapshot's ``dump_parts``: per part, its file, size and table keys (docs/FORMAT.md)."""
    return [
        {"part": p.number, "file": p.file, "size": size, "tables": [names.key(*t) for t in p.tables]}
        for p, size in zip(parts, sizes, strict=True)
    ]


def read_parts(meta: dict) -> tuple[DumpPart, ...]:
    """The parts a snapshot's metadata records (``dump_parts``); () for a dump in one piece.
    Malformed metadata is a usage error naming the key, never a partial restore."""
    raw = meta.get("dump_parts")
    if raw is None:
        return ()
    bad = UsageError("this snapshot's metadata dump_parts is malformed; the snapshot cannot be restored")
    if not isinstance(raw, list) or len(raw) < 2 or len(raw) > MAX_JOBS:
        raise bad
    out = []
    for i, p in enumerate(raw):
        if not (isinstance(p, dict) and p.get("part") == i and isinstance(p.get("file"), str)):
            raise bad
        keys = p.get("tables")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise bad
        try:
            tables = tuple(names.parse_key(k) for k in keys)
        except ValueError:
            raise bad from None
        out.append(DumpPart(i, p["file"], tables))
    return tuple(out)
