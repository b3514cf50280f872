"""Choosing what a table- or schema-level restore needs from a dump's table of contents.

``pg_restore -t`` restores a table and its rows only: no sequence, default, index or
constraint. Instead the TOC is listed with ``pg_restore -l -v`` (the verbose list carries
each entry's dependencies as ``;  depends on: 12 34``), the entries the chosen tables need
are picked, and the list is given back as ``pg_restore -L``. The original order is kept, so
pg_restore can read the dump front to back from a pipe.

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

import re
from dataclasses import dataclass, field

from core.errors import UsageError

_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_DEPENDS = re.compile(r"^;\s*depends on:\s*(.*)$")

# Descriptions of more than one word (pg_dump's te->desc), longest first when matching.
_MULTI_WORD = sorted((
    "TABLE DATA", "TABLE ATTACH", "INDEX ATTACH", "SEQUENCE SET", "SEQUENCE OWNED BY", "FK CONSTRAINT",
    "CHECK CONSTRAINT", "DEFAULT ACL", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "FOREIGN TABLE",
    "ROW SECURITY", "SECURITY LABEL", "EVENT TRIGGER", "LARGE OBJECT", "BLOB METADATA", "SHELL TYPE",
    "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "USER MAPPING", "OPERATOR CLASS", "OPERATOR FAMILY",
    "PROCEDURAL LANGUAGE", "ACCESS METHOD", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA",
    "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE",
    "DEFAULT ACL",
), key=len, reverse=True)

# Entries that belong to a relation: pulled in when what they hang on is chosen.
DEPENDENT = frozenset({
    "TABLE DATA", "DEFAULT", "CONSTRAINT", "INDEX", "FK CONSTRAINT", "CHECK CONSTRAINT", "TRIGGER", "RULE",
    "POLICY", "ROW SECURITY", "ACL", "COMMENT", "SECURITY LABEL", "SEQUENCE OWNED BY", "SEQUENCE SET",
    "TABLE ATTACH", "INDEX ATTACH", "STATISTICS", "MATERIALIZED VIEW DATA",
})
# Kinds a dependent entry may only depend on when they are chosen too (else it is left out:
# a foreign key to a table that is not restored). Other kinds (schemas, types, functions,
# extensions) are expected to exist in the target.
_RELATIONAL = DEPENDENT | {"TABLE", "SEQUENCE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE"}


@dataclass
class TocEntry:
    id: int
    desc: str
    tail: str  # what follows the description: "SCHEMA TAG OWNER"
    line: str
    deps: list[int] = field(default_factory=list)

    def in_schema(self, schema: str) -> bool:
        return self.tail.startswith(schema + " ")

    @property
    def qualified(self) -> str:
        """``schema name`` of a TABLE entry (the owner, last word, removed)."""
        return self.tail.rsplit(" ", 1)[0] if " " in self.tail else self.tail


def parse(listing: str) -> list[TocEntry]:
    entries: list[TocEntry] = []
    for raw in listing.splitlines():
        m = _LINE.match(raw)
        if m:
            rest = m.group(4)
            desc = next((d for d in _MULTI_WORD if rest == d or rest.startswith(d + " ")), rest.split(" ", 1)[0])
            entries.append(TocEntry(int(m.group(1)), desc, rest[len(desc) + 1:], raw))
            continue
        d = _DEPENDS.match(raw)
        if d and entries:
            entries[-1].deps.extend(int(x) for x in d.group(1).split())
    return entries


def _split(name: str) -> tuple[str, str]:
    schema, dot, rel = name.partition(".")
    return (schema, rel) if dot else ("public", name)


@dataclass
class Selection:
    lines: list[str]
    tables: list[str]  # "schema.name" of every TABLE chosen (partitions included)
    schemas: list[str]  # schemas of the chosen tables (and the --schema ones)
    skipped_fks: list[str] = field(default_factory=list)  # "schema table name": join a table not chosen


# What chosen objects may need that the target may already have: restored only when missing.
SUPPORT = frozenset({"SCHEMA", "EXTENSION", "TYPE", "DOMAIN", "FUNCTION", "PROCEDURE", "COLLATION"})


def presence_key(e: TocEntry) -> str:
    """How ``present`` names a supporting object: SCHEMA name, EXTENSION name, TYPE schema
    name (domains too), FUNCTION schema name(argtypes); the target's tables are TABLE schema name."""
    if e.desc in ("SCHEMA", "EXTENSION"):
        parts = e.tail.split(" ")
        return f"{e.desc} {parts[1] if len(parts) > 1 else ''}"
    kind = {"DOMAIN": "TYPE", "PROCEDURE": "FUNCTION"}.get(e.desc, e.desc)
    return f"{kind} {e.qualified}"


def _in_target(by_id: dict[int, TocEntry], d: int, present) -> bool:
    """A table the target already has (or its key constraint): a foreign key to it can be restored."""
    e = by_id[d]
    if e.desc == "TABLE":
        return f"TABLE {e.qualified}" in present
    if e.desc in ("CONSTRAINT", "INDEX"):
        owners = [x for x in e.deps if x in by_id and by_id[x].desc == "TABLE"]
        return bool(owners) and all(f"TABLE {by_id[x].qualified}" in present for x in owners)
    return False


def select(entries: list[TocEntry], tables: tuple[str, ...] = (), schemas: tuple[str, ...] = (),
           present: frozenset[str] | set[str] = frozenset()) -> Selection:
    """The TOC lines a restore of ``tables`` ("schema.name") and ``schemas`` needs.

    Supporting objects (schemas, types, domains, functions, extensions) the chosen ones
    depend on are chosen only when ``present`` (see presence_key) says the target lacks them."""
    by_id = {e.id: e for e in entries}
    relations = [e for e in entries if e.desc == "TABLE"]
    chosen: set[int] = set()
    names: dict[int, str] = {}
    missing = []
    for t in tables:
        schema, rel = _split(t)
        hits = [e for e in relations if e.qualified == f"{schema} {rel}"]
        if not hits:
            missing.append(t)
        for e in hits:
            chosen.add(e.id)
            names[e.id] = f"{schema}.{rel}"
    schema_entries = {presence_key(e)[len("SCHEMA "):]: e for e in entries if e.desc == "SCHEMA"}
    for s in schemas:
        members = [e for e in entries if e.in_schema(s) and e.desc not in DEPENDENT and e.desc != "SCHEMA"]
        if not members and s not in schema_entries:
            missing.append(f"schema {s}")
        chosen.update(e.id for e in members)
        if s in schema_entries:
            chosen.add(schema_entries[s].id)
    if missing:
        known = sorted(f"{e.qualified.replace(' ', '.', 1)}" for e in relations)
        raise UsageError(f"not in this snapshot: {', '.join(missing)}; its tables: {', '.join(known[:30])}"
                         + (" ..." if len(known) > 30 else ""))
    # Partitions of a chosen partitioned table come along (TABLE ATTACH: child, parent).
    attach = [e for e in entries if e.desc == "TABLE ATTACH" and len(e.deps) >= 2]
    changed = True
    while changed:
        changed = False
        for a in attach:
            child, parent = a.deps[0], a.deps[1]
            if parent in chosen and child not in chosen:
                chosen.add(child)
                changed = True
    # Sequences a chosen table owns (serial, identity) or uses (nextval in a default).
    for e in entries:
        if e.desc == "SEQUENCE" and any(d in chosen and by_id[d].desc == "TABLE" for d in e.deps):
            chosen.add(e.id)
    for e in entries:
        if e.desc in ("TABLE", "DEFAULT") and (e.id in chosen or (
                e.desc == "DEFAULT" and any(d in chosen for d in e.deps))):
            chosen.update(d for d in e.deps if d in by_id and by_id[d].desc == "SEQUENCE")
    # Everything hanging on the chosen relations, and what they need that the target lacks,
    # until nothing changes.
    changed = True
    while changed:
        changed = False
        for e in entries:
            if e.id in chosen:
                for d in e.deps:
                    dep = by_id.get(d)
                    if dep is not None and d not in chosen and dep.desc in SUPPORT \
                            and presence_key(dep) not in present:
                        chosen.add(d)
                        changed = True
                continue
            if e.desc not in DEPENDENT:
                continue
            if e.desc == "SEQUENCE OWNED BY":
                seq = by_id.get(e.deps[0]) if e.deps else None
                owners = [d for d in seq.deps if d in by_id and by_id[d].desc == "TABLE"] if seq else []
                if seq is not None and seq.id in chosen and owners and all(d in chosen for d in owners):
                    chosen.add(e.id)
                    changed = True
                continue
            if not any(d in chosen for d in e.deps):
                continue
            if e.desc == "FK CONSTRAINT":
                ok = all(d in chosen or _in_target(by_id, d, present)
                         for d in e.deps if d in by_id and by_id[d].desc in _RELATIONAL)
            else:
                ok = all(d in chosen for d in e.deps if d in by_id and by_id[d].desc in _RELATIONAL)
            if ok:
                chosen.add(e.id)
                changed = True
    # A chosen schema the target already has is not created again (its comment and
    # privileges are left as the target has them).
    for key, e in schema_entries.items():
        if e.id in chosen and f"SCHEMA {key}" in present:
            chosen.discard(e.id)
            chosen.difference_update(c.id for c in entries if c.desc in ("COMMENT", "ACL") and e.id in c.deps)
    table_schemas = []
    for e in entries:
        if e.id in chosen and e.desc == "TABLE":
            if e.id not in names:
                names[e.id] = e.qualified.replace(" ", ".", 1)
            table_schemas.append(_split(names[e.id])[0])
    lines = [e.line for e in entries if e.id in chosen]
    chosen_tables = [names[e.id] for e in entries if e.id in chosen and e.desc == "TABLE"]
    # Foreign keys of a chosen table that were left out (the table they point at is missing).
    skipped = [e.qualified for e in entries
               if e.desc == "FK CONSTRAINT" and e.id not in chosen and any(
                   d in chosen and by_id[d].desc == "TABLE" and e.tail.startswith(by_id[d].qualified + " ")
                   for d in e.deps)]
    return Selection(lines, chosen_tables, list(dict.fromkeys([*table_schemas, *schemas])), skipped)
