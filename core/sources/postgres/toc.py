"""Choosing what a table- or schema-level restore needs from a dump's table of contents.

``pg_restore -t`` restores a table and its rows only: no sequence, default, index or
constraint. Instead the dump's table of contents is read from its header (dumpsum.parse_layout:
each entry's exact schema, name and dependencies; ``pg_restore -l`` prints names with their
newlines turned into spaces and separated by spaces, so "Sales Dept" and a newline in a name
cannot be told apart there), the entries the chosen tables need are picked by dump id, and
the list ``ID; DESC`` is given to ``pg_restore -L``. The original order is kept, so
pg_restore can read the dump front to back from a pipe. Names are resolved before
(names.resolve_tables/resolve_schemas): this module works on exact (schema, name) pairs.

Picked for each chosen table: its TABLE and TABLE DATA; the sequences it owns (serial,
identity) or whose ``nextval`` its defaults or its definition use, with their SEQUENCE
OWNED BY (only when the owning table is chosen too) and SEQUENCE SET; its DEFAULTs,
CONSTRAINTs, INDEXes, TRIGGERs, RULEs, POLICYs, COMMENTs, ACLs, statistics; FK CONSTRAINTs
only when every table they join is chosen or already in the target (else they are
reported); the partitions of a chosen partitioned table (TABLE ATTACH). A schema chooses
every table in it and its other objects (views, functions, types, sequences). Objects outside the selection a chosen entry depends on (a function a
trigger calls, a type or domain a column has, an extension, a schema) are restored too when
the target lacks them, and left alone when it has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from core.sources.postgres import names
from core.sources.postgres.dumpsum import TocEntry

# Entries that belong to a relation: pulled in when what they hang on is chosen.
DEPENDENT = frozenset(
    {
        "TABLE DATA",
        "DEFAULT",
        "CONSTRAINT",
        "INDEX",
        "FK CONSTRAINT",
        "CHECK CONSTRAINT",
        "TRIGGER",
        "RULE",
        "POLICY",
        "ROW SECURITY",
        "ACL",
        "COMMENT",
        "SECURITY LABEL",
        "SEQUENCE OWNED BY",
        "SEQUENCE SET",
        "TABLE ATTACH",
        "INDEX ATTACH",
        "STATISTICS",
        "STATISTICS DATA",
        "MATERIALIZED VIEW DATA",
    }
)
# Kinds a dependent entry may only depend on when they are chosen too (else it is left out:
# a foreign key to a table that is not restored). Other kinds (schemas, types, functions,
# extensions) are expected to exist in the target.
_RELATIONAL = DEPENDENT | {"TABLE", "SEQUENCE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE"}
# What chosen objects may need that the target may already have: restored only when missing.
SUPPORT = frozenset({"SCHEMA", "EXTENSION", "TYPE", "DOMAIN", "FUNCTION", "PROCEDURE", "COLLATION"})


@dataclass
class Selection:
    ids: list[int]  # the chosen entries, in dump order
    tables: list[tuple[str, str]]  # (schema, name) of every TABLE chosen (partitions included)
    schemas: list[str]  # schemas of the chosen tables (and the --schema ones)
    skipped_fks: list[str] = field(default_factory=list)  # "schema.table constraint": join a table not chosen
    data_tables: list[tuple[str, str]] = field(default_factory=list)  # chosen tables whose rows are in the dump

    def list_text(self, entries: list[TocEntry]) -> str:
        """The ``pg_restore -L`` list: ``ID; DESC`` per line (pg_restore reads the id only)."""
        by_id = {e.dump_id: e for e in entries}
        return "".join(f"{i}; {by_id[i].desc}\n" for i in self.ids)


def presence_key(e: TocEntry) -> tuple[str, str, str]:
    """How ``present`` names a supporting object: ("SCHEMA", "", name), ("EXTENSION", "", name),
    ("TYPE", schema, name) (domains too), ("FUNCTION", schema, "name(argtypes)"), ("COLLATION",
    schema, name); the target's tables are ("TABLE", schema, name)."""
    if e.desc in ("SCHEMA", "EXTENSION"):
        return (e.desc, "", e.tag)
    kind = {"DOMAIN": "TYPE", "PROCEDURE": "FUNCTION"}.get(e.desc, e.desc)
    return (kind, e.namespace, e.tag)


def _in_target(by_id: dict[int, TocEntry], d: int, present) -> bool:
    """A table the target already has (or its key constraint): a foreign key to it can be restored."""
    e = by_id[d]
    if e.desc == "TABLE":
        return ("TABLE", e.namespace, e.tag) in present
    if e.desc in ("CONSTRAINT", "INDEX"):
        owners = [x for x in e.deps if x in by_id and by_id[x].desc == "TABLE"]
        return bool(owners) and all(("TABLE", by_id[x].namespace, by_id[x].tag) in present for x in owners)
    return False


def table_names(entries: list[TocEntry]) -> list[tuple[str, str]]:
    return [(e.namespace, e.tag) for e in entries if e.desc == "TABLE"]


def schema_names(entries: list[TocEntry]) -> list[str]:
    found = [e.tag for e in entries if e.desc == "SCHEMA"]
    found += [e.namespace for e in entries if e.namespace and e.desc not in ("SCHEMA", "EXTENSION")]
    return list(dict.fromkeys(found))


def select(
    entries: list[TocEntry],
    tables: Sequence[tuple[str, str]] = (),
    schemas: Sequence[str] = (),
    present: frozenset | set = frozenset(),
) -> Selection:
    """The TOC entries a restore of ``tables`` (exact (schema, name) pairs) and ``schemas``
    (exact names) needs.

    Supporting objects (schemas, types, domains, functions, extensions) the chosen ones
    depend on are chosen only when ``present`` (see presence_key) says the target lacks them."""
    by_id = {e.dump_id: e for e in entries}
    schema_entries = {e.tag: e for e in entries if e.desc == "SCHEMA"}
    chosen = _chosen_by_name(entries, tables, schemas, schema_entries)
    _add_partitions(entries, by_id, chosen)
    _add_sequences(entries, by_id, chosen)
    _add_dependents(entries, by_id, chosen, present)
    _drop_present_schemas(entries, schema_entries, chosen, present)
    chosen_tables = [(e.namespace, e.tag) for e in entries if e.dump_id in chosen and e.desc == "TABLE"]
    data = [(e.namespace, e.tag) for e in entries if e.dump_id in chosen and e.desc == "TABLE DATA"]
    return Selection(
        [e.dump_id for e in entries if e.dump_id in chosen],
        chosen_tables,
        list(dict.fromkeys([*(t[0] for t in chosen_tables), *schemas])),
        _skipped_fks(entries, by_id, chosen),
        data,
    )


def _chosen_by_name(
    entries: list[TocEntry],
    tables: Sequence[tuple[str, str]],
    schemas: Sequence[str],
    schema_entries: dict[str, TocEntry],
) -> set[int]:
    """The named tables, and every object of the named schemas (the schema entry included)."""
    want = set(tables)
    chosen: set[int] = {e.dump_id for e in entries if e.desc == "TABLE" and (e.namespace, e.tag) in want}
    for s in schemas:
        chosen.update(
            e.dump_id
            for e in entries
            if e.namespace == s and e.desc not in DEPENDENT and e.desc not in ("SCHEMA", "EXTENSION")
        )
        if s in schema_entries:
            chosen.add(schema_entries[s].dump_id)
    return chosen


def _partition_of(a: TocEntry, by_id: dict[int, TocEntry]) -> tuple[int, int] | None:
    """(child, parent) of a TABLE ATTACH entry; None when it does not join two tables."""
    tabs = [d for d in a.deps if d in by_id and by_id[d].desc == "TABLE"]
    if len(tabs) < 2:
        return None
    child, parent = tabs[0], tabs[1]
    # pg_dump lists the partition first, then its parent; be sure by the tag (the child's name).
    if by_id[parent].tag == a.tag and by_id[child].tag != a.tag:
        child, parent = parent, child
    return child, parent


def _add_partitions(entries: list[TocEntry], by_id: dict[int, TocEntry], chosen: set[int]) -> None:
    """Partitions of a chosen partitioned table come along (TABLE ATTACH: child, parent),
    down every level."""
    pairs = [
        p
        for a in entries
        if a.desc == "TABLE ATTACH" and len(a.deps) >= 2
        if (p := _partition_of(a, by_id)) is not None
    ]
    changed = True
    while changed:
        changed = False
        for child, parent in pairs:
            if parent in chosen and child not in chosen:
                chosen.add(child)
                changed = True


def _add_sequences(entries: list[TocEntry], by_id: dict[int, TocEntry], chosen: set[int]) -> None:
    """Sequences a chosen table owns (serial, identity) or uses (nextval in a default)."""
    for e in entries:
        if e.desc == "SEQUENCE" and any(d in chosen and by_id[d].desc == "TABLE" for d in e.deps if d in by_id):
            chosen.add(e.dump_id)
    for e in entries:
        if e.desc in ("TABLE", "DEFAULT") and (
            e.dump_id in chosen or (e.desc == "DEFAULT" and any(d in chosen for d in e.deps))
        ):
            chosen.update(d for d in e.deps if d in by_id and by_id[d].desc == "SEQUENCE")


def _missing_support(e: TocEntry, by_id: dict[int, TocEntry], chosen: set[int], present) -> list[int]:
    """What chosen ``e`` depends on among SUPPORT objects that is neither chosen nor in the target."""
    return [
        d
        for d in e.deps
        if d not in chosen
        and (dep := by_id.get(d)) is not None
        and dep.desc in SUPPORT
        and presence_key(dep) not in present
    ]


def _owned_by_chosen(e: TocEntry, by_id: dict[int, TocEntry], chosen: set[int]) -> bool:
    """A SEQUENCE OWNED BY is restored with its sequence only when its owning table is chosen too."""
    seq = by_id.get(e.deps[0]) if e.deps else None
    if seq is None or seq.dump_id not in chosen:
        return False
    owners = [d for d in seq.deps if d in by_id and by_id[d].desc == "TABLE"]
    return bool(owners) and all(d in chosen for d in owners)


def _hangs_on_chosen(e: TocEntry, by_id: dict[int, TocEntry], chosen: set[int], present) -> bool:
    """A dependent entry (not chosen yet) comes along: it hangs on something chosen, and every
    relation it joins is chosen (a foreign key: or in the target already)."""
    if e.desc not in DEPENDENT:
        return False
    if e.desc == "SEQUENCE OWNED BY":
        return _owned_by_chosen(e, by_id, chosen)
    if not any(d in chosen for d in e.deps):
        return False
    joined = [d for d in e.deps if d in by_id and by_id[d].desc in _RELATIONAL]
    if e.desc == "FK CONSTRAINT":
        return all(d in chosen or _in_target(by_id, d, present) for d in joined)
    return all(d in chosen for d in joined)


def _add_dependents(entries: list[TocEntry], by_id: dict[int, TocEntry], chosen: set[int], present) -> None:
    """Everything hanging on the chosen relations, and what they need that the target
    lacks, until nothing changes."""
    changed = True
    while changed:
        changed = False
        for e in entries:
            if e.dump_id in chosen:
                support = _missing_support(e, by_id, chosen, present)
                if support:
                    chosen.update(support)
                    changed = True
            elif _hangs_on_chosen(e, by_id, chosen, present):
                chosen.add(e.dump_id)
                changed = True


def _drop_present_schemas(
    entries: list[TocEntry], schema_entries: dict[str, TocEntry], chosen: set[int], present
) -> None:
    """A chosen schema the target already has is not created again (its comment and
    privileges are left as the target has them)."""
    for name, e in schema_entries.items():
        if e.dump_id in chosen and ("SCHEMA", "", name) in present:
            chosen.discard(e.dump_id)
            chosen.difference_update(c.dump_id for c in entries if c.desc in ("COMMENT", "ACL") and e.dump_id in c.deps)


def _skipped_fks(entries: list[TocEntry], by_id: dict[int, TocEntry], chosen: set[int]) -> list[str]:
    """Foreign keys of a chosen table that were left out (the table they point at is
    missing), as "schema.table constraint"."""
    skipped = []
    for e in entries:
        if e.desc != "FK CONSTRAINT" or e.dump_id in chosen:
            continue
        # The table the constraint is on: chosen, in its schema, its name the tag's first word(s).
        d = next(
            (
                d
                for d in e.deps
                if d in chosen
                and d in by_id
                and by_id[d].desc == "TABLE"
                and by_id[d].namespace == e.namespace
                and e.tag.startswith(by_id[d].tag + " ")
            ),
            None,
        )
        if d is not None:
            skipped.append(f"{names.shown(e.namespace, by_id[d].tag)} {e.tag[len(by_id[d].tag) + 1 :]}")
    return skipped
