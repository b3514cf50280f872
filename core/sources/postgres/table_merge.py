"""Put a table's rows back in place: merge a staging copy (the table as it was, loaded beside
the live one under another name) into the live table, so the live table keeps its OID and with
it every foreign key that references it, every view on it, its grants, its policies and its
triggers. A rename or a swap would leave all of those pointing at the old table.

``merge`` runs every table of one restore in ONE transaction on the live database: either all
of them change or none does. Per table, with a primary key: the live rows whose key is not in
the staging copy are deleted, those whose key is in both and whose row differs are updated,
those only in the staging copy are inserted; without a primary key every live row is deleted
and every staged row inserted. Deletes go first, the referencing tables before the tables they
reference, then updates and inserts, the referenced tables first (so a row put back finds the
rows it points at); a table that references itself (a tree) inserts, updates, then deletes. Generated columns are left to the server; identity columns are
written with ``OVERRIDING SYSTEM VALUE``. The live table's triggers fire (an audit trigger
records what the restore changed, as it would any other change). A foreign key that blocks a
delete (or an insert) rolls everything back and is named (``RestoreRefused``).

``rowset_checksum`` validates the result: the merge leaves the rows in another physical order
than a fresh load, so the order-independent sum of each row's BLAKE3 (of its COPY text, in
pg_dump's session settings) is compared, with the row count, on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import blake3
import psycopg
from psycopg import sql

from core.errors import DatabaseError, RestoreRefused
from core.sources.postgres import names
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.table_checksums import _PG_DUMP_SESSION

ROWSET_METHOD = "rowset-blake3-v1"  # sum mod 2**128 of each row's BLAKE3 (16 bytes) of its COPY text

# attgenerated '' (not generated), attidentity 'a'/'d'/'' per column, in column order.
SQL_COLUMNS = """
SELECT a.attname, a.attgenerated <> '', a.attidentity, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
SQL_PRIMARY_KEY = """
SELECT a.attname FROM pg_constraint c
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
WHERE c.conrelid = %s::regclass AND c.contype = 'p' ORDER BY k.n
"""
SQL_REFERENCED = """
SELECT n.nspname, r.relname FROM pg_constraint c
JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE c.conrelid = %s::regclass AND c.contype = 'f'
"""
SQL_SELF_REFERENCE = (
    "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND confrelid = %s::regclass AND contype = 'f' LIMIT 1"
)
# Foreign keys of other tables that reference this one and act on a delete or an update
# (cascade, set null, set default): the merge would change rows of those tables too.
SQL_ACTING_REFERENCES = """
SELECT c.conname, n.nspname, r.relname FROM pg_constraint c
JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE c.confrelid = %s::regclass AND c.contype = 'f'
  AND (c.confdeltype NOT IN ('a', 'r') OR c.confupdtype NOT IN ('a', 'r'))
ORDER BY n.nspname, r.relname, c.conname
"""
SQL_OWNED_SEQUENCES = """
SELECT a.attname, s.oid::regclass::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refobjid = %s::regclass AND d.deptype IN ('a', 'i') ORDER BY a.attnum
"""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    generated: bool
    identity: str  # "a" (always), "d" (by default), "" (none)
    type: str


@dataclass(frozen=True, slots=True)
class Shape:
    """What the merge needs to know of a table: its columns and its primary key."""

    columns: tuple[Column, ...]
    key: tuple[str, ...]  # primary key columns; () when it has none
    self_referencing: bool = False  # a foreign key of the table references the table itself

    @property
    def written(self) -> tuple[str, ...]:
        """The columns a merge writes: all but the generated ones (the server computes those)."""
        return tuple(c.name for c in self.columns if not c.generated)

    def describe(self) -> str:
        if self.key:
            return f"merge by primary key ({', '.join(names.quote(k) for k in self.key)}): delete, update, insert"
        return "no primary key: every row deleted, then every row of the time inserted"


@dataclass(frozen=True, slots=True)
class SequenceValue:
    column: str
    sequence: str  # regclass text
    last_value: int
    is_called: bool
    increment: int


@dataclass(frozen=True, slots=True)
class Merged:
    """What the merge did to one table."""

    table: tuple[str, str]
    deleted: int
    updated: int
    inserted: int
    by_key: bool  # False: no primary key, replaced whole
    sequences: tuple[str, ...] = ()  # "sequence s.t_id_seq set to 812 (the time's value)"


def _rel(table: tuple[str, str]) -> str:
    return f"{names.quote(table[0])}.{names.quote(table[1])}"


async def shape(conn: psycopg.AsyncConnection, table: tuple[str, str]) -> Shape:
    rel = _rel(table)
    cols = [
        Column(str(n), bool(g), str(i), str(t))
        for n, g, i, t in await (await conn.execute(SQL_COLUMNS, (rel,))).fetchall()
    ]
    key = [str(k) for (k,) in await (await conn.execute(SQL_PRIMARY_KEY, (rel,))).fetchall()]
    selfref = await (await conn.execute(SQL_SELF_REFERENCE, (rel, rel))).fetchone()
    return Shape(tuple(cols), tuple(key), selfref is not None)


async def shapes(target: PgTarget, tables: list[tuple[str, str]]) -> list[Shape]:
    conn = await target.connect()
    try:
        return [await shape(conn, t) for t in tables]
    except psycopg.Error as exc:
        raise target.failed("reading the tables' columns", exc) from None
    finally:
        await conn.close()


async def refuse_acting_references(target: PgTarget, tables: list[tuple[str, str]]) -> None:
    """Refuse (before anything is recovered) a table that other tables reference with ON DELETE
    or ON UPDATE CASCADE / SET NULL / SET DEFAULT: merging it would change their rows too,
    silently, and the safety snapshot holds only the chosen tables."""
    conn = await target.connect()
    try:
        for table in tables:
            rows = await (await conn.execute(SQL_ACTING_REFERENCES, (_rel(table),))).fetchall()
            if rows:
                which = ", ".join(f"{names.quote(c)} on {names.key(s, r)}" for c, s, r in rows)
                raise RestoreRefused(
                    f"{names.key(*table)} is referenced by foreign keys that cascade or set values ({which}): "
                    "putting it back in place would change those tables' rows too; restore it beside "
                    "the live one instead (leave out --force) and merge by hand"
                )
    except psycopg.Error as exc:
        raise target.failed("reading the foreign keys", exc) from None
    finally:
        await conn.close()


async def sequence_values(target: PgTarget, table: tuple[str, str]) -> list[SequenceValue]:
    """The sequences ``table``'s columns own (serial, identity), with their state."""
    conn = await target.connect()
    try:
        return await _sequence_rows(conn, table)
    except psycopg.Error as exc:
        raise target.failed("reading the tables' sequences", exc) from None
    finally:
        await conn.close()


def _same_columns(live: Shape, staged: Shape, table: tuple[str, str]) -> None:
    want = [(c.name, c.type, c.generated) for c in live.columns]
    got = [(c.name, c.type, c.generated) for c in staged.columns]
    if want != got:
        raise RestoreRefused(
            f"{names.key(*table)} has other columns now than at the time (live: "
            f"{', '.join(f'{names.quote(n)} {t}' for n, t, _ in want)}; then: "
            f"{', '.join(f'{names.quote(n)} {t}' for n, t, _ in got)}): it cannot be put back in place; "
            "restore it beside the live one instead (leave out --force)"
        )


def _on(key: tuple[str, ...], a: str, b: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(a, k), sql.Identifier(b, k)) for k in key
    )  # primary key columns are NOT NULL: = is exact


@dataclass(frozen=True, slots=True)
class _Statements:
    """One table's part of the merge; None: nothing of that kind to do."""

    delete: sql.Composed
    update: sql.Composed | None
    insert: sql.Composed
    always: tuple[str, ...]  # key-less identity columns GENERATED ALWAYS (made BY DEFAULT around the update)


def _statements(table: tuple[str, str], staging: tuple[str, str], live: Shape) -> _Statements:
    t, s = sql.Identifier(*table), sql.Identifier(*staging)
    cols = live.written
    col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    overriding = sql.SQL(" OVERRIDING SYSTEM VALUE") if any(c.identity for c in live.columns) else sql.SQL("")
    if not live.key:
        return _Statements(
            sql.SQL("DELETE FROM ONLY {}").format(t),
            None,
            sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM ONLY {}").format(t, col_list, overriding, col_list, s),
            (),
        )
    key = live.key
    delete = sql.SQL("DELETE FROM ONLY {} AS l WHERE NOT EXISTS (SELECT 1 FROM ONLY {} AS s WHERE {})").format(
        t, s, _on(key, "s", "l")
    )
    insert = sql.SQL(
        "INSERT INTO {} ({}){} SELECT {} FROM ONLY {} AS s WHERE NOT EXISTS (SELECT 1 FROM ONLY {} AS l WHERE {})"
    ).format(
        t, col_list, overriding, sql.SQL(", ").join(sql.Identifier("s", c) for c in cols), s, t, _on(key, "l", "s")
    )
    rest = [c for c in cols if c not in key]
    if not rest:
        return _Statements(delete, None, insert, ())
    # Compared as text: every type has a text form (json, point and xml have no "="), and the
    # text is what the validation's checksum compares, so "differs" means the same.
    update = sql.SQL(
        "UPDATE ONLY {} AS l SET ({}) = ROW({}) FROM ONLY {} AS s WHERE {} AND ({}) IS DISTINCT FROM ({})"
    ).format(
        t,
        sql.SQL(", ").join(sql.Identifier(c) for c in rest),
        sql.SQL(", ").join(sql.Identifier("s", c) for c in rest),
        s,
        _on(key, "l", "s"),
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("l", c)) for c in rest),
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("s", c)) for c in rest),
    )
    # A key-less identity column GENERATED ALWAYS takes no value in an UPDATE (there is no
    # OVERRIDING for UPDATE): made BY DEFAULT around it, inside the transaction.
    always = tuple(c.name for c in live.columns if c.identity == "a" and c.name in rest)
    return _Statements(delete, update, insert, always)


async def _update(conn: psycopg.AsyncConnection, table: tuple[str, str], st: _Statements) -> int:
    if st.update is None:
        return 0
    t = sql.Identifier(*table)
    for c in st.always:
        await conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET GENERATED BY DEFAULT").format(t, sql.Identifier(c))
        )
    updated = (await conn.execute(st.update)).rowcount
    for c in st.always:
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET GENERATED ALWAYS").format(t, sql.Identifier(c)))
    return updated


async def _parents_first(conn: psycopg.AsyncConnection, tables: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``tables`` ordered so that a table comes after the tables it references among them (a
    cycle: the rest in the order given; the database then says which key is in the way)."""
    refs: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for t in tables:
        rows = await (await conn.execute(SQL_REFERENCED, (_rel(t),))).fetchall()
        refs[t] = {(str(s), str(n)) for s, n in rows} & set(tables) - {t}
    out: list[tuple[str, str]] = []
    while len(out) < len(tables):
        ready = [t for t in tables if t not in out and refs[t] <= set(out)]
        out += ready or [t for t in tables if t not in out]
    return out


async def _set_sequences(
    conn: psycopg.AsyncConnection, live: list[SequenceValue], then: list[SequenceValue]
) -> list[str]:
    """Each owned sequence to the further along of its live and its recovered value: the
    recovered one may be behind (ids handed out after the time) and going back would hand out
    an id that exists, or existed and is referenced somewhere; never backwards, then."""
    said = []
    by_column = {v.column: v for v in then}
    for now in live:
        old = by_column.get(now.column)
        if old is None:
            continue
        ahead = old.last_value > now.last_value if now.increment > 0 else old.last_value < now.last_value
        if ahead:
            await conn.execute("SELECT setval(%s::regclass, %s, %s)", (now.sequence, old.last_value, old.is_called))
            said.append(f"sequence {now.sequence} set to {old.last_value} (the time's value was further along)")
        else:
            said.append(f"sequence {now.sequence} kept at {now.last_value} (never set back: no id handed out twice)")
    return said


async def merge(
    live: PgTarget,
    pairs: list[tuple[tuple[str, str], tuple[str, str]]],
    then_sequences: dict[tuple[str, str], list[SequenceValue]],
    safety_note: str,
) -> list[Merged]:
    """Merge each (table, staging) pair of ``live`` in one transaction; ``then_sequences``: the
    recovered tables' sequence states, by live table. ``safety_note`` ends a refusal's message
    (where the safety snapshot is)."""
    conn = await live.connect(autocommit=False)
    out: list[Merged] = []
    current = pairs[0][0] if pairs else ("", "")
    try:
        async with conn.transaction():
            # SHARE ROW EXCLUSIVE, not ACCESS EXCLUSIVE: readers go on and see the old rows until
            # the commit, writers wait (so no row changes between the merge's statements and
            # nobody else can take this lock). The staging copies are ours alone. Locked in the
            # order given, all before the first change, so a deadlock shows up before any work.
            for table, _staging in pairs:
                await conn.execute(
                    sql.SQL("LOCK TABLE ONLY {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(*table))
                )
            shapes: dict[tuple[str, str], Shape] = {}
            statements: dict[tuple[str, str], _Statements] = {}
            for table, staging in pairs:
                current = table
                now, then = await shape(conn, table), await shape(conn, staging)
                _same_columns(now, then, table)
                shapes[table], statements[table] = now, _statements(table, staging, now)
            order = await _parents_first(conn, [t for t, _s in pairs])
            counts = {t: [0, 0, 0] for t in order}  # deleted, updated, inserted
            # Deletes first, the referencing tables before the tables they reference: the rows
            # deleted free the unique values (other than the key) that rows inserted back held
            # at the time. A table that references itself (a tree) deletes last, below.
            for table in reversed(order):
                current = table
                if not shapes[table].self_referencing:
                    counts[table][0] = (await conn.execute(statements[table].delete)).rowcount
            # Then updates and inserts, the referenced tables first (a row put back may point at a
            # row only the insert brings back); a tree inserts before it updates, for the same reason.
            for table in order:
                current, st = table, statements[table]
                if shapes[table].self_referencing:
                    counts[table][2] = (await conn.execute(st.insert)).rowcount
                    counts[table][1] = await _update(conn, table, st)
                else:
                    counts[table][1] = await _update(conn, table, st)
                    counts[table][2] = (await conn.execute(st.insert)).rowcount
            # A tree's deletes last: until the updates, a row to delete may still be pointed at.
            for table in reversed(order):
                current = table
                if shapes[table].self_referencing:
                    counts[table][0] = (await conn.execute(statements[table].delete)).rowcount
            for table, _staging in pairs:
                current = table
                said = await _set_sequences(conn, await _sequence_rows(conn, table), then_sequences.get(table, []))
                deleted, updated, inserted = counts[table]
                out.append(Merged(table, deleted, updated, inserted, bool(shapes[table].key), tuple(said)))
            current = ("", "")
            # the commit: a deferred foreign key is checked here
    except psycopg.errors.IntegrityError as exc:
        d = exc.diag
        where = f" (foreign key {names.quote(d.constraint_name or '?')} of table {names.key(d.schema_name or '', d.table_name or '')})"
        what = names.key(*current) if current != ("", "") else "the merge's commit"
        raise RestoreRefused(
            f"putting {what} back in place was refused by the database: {d.message_primary or exc}"
            + (where if isinstance(exc, psycopg.errors.ForeignKeyViolation) else "")
            + f"; nothing was changed in {live.describe()} (all the tables roll back together). {safety_note} "
            "Change or delete the rows in the way first, or restore the tables beside the live ones "
            "(leave out --force) and merge by hand"
        ) from None
    except psycopg.Error as exc:
        raise DatabaseError(
            f"putting the tables back in place in {live.describe()} failed: {live.scrub(str(exc).strip())}; "
            f"nothing was changed (all the tables roll back together). {safety_note}"
        ) from None
    finally:
        await conn.close()
    return out


async def _sequence_rows(conn: psycopg.AsyncConnection, table: tuple[str, str]) -> list[SequenceValue]:
    out = []
    for col, seq in await (await conn.execute(SQL_OWNED_SEQUENCES, (_rel(table),))).fetchall():
        q = sql.SQL(
            "SELECT s.last_value, s.is_called, p.seqincrement FROM {} s, pg_sequence p WHERE p.seqrelid = %s::regclass"
        )
        row = await (await conn.execute(q.format(sql.SQL(seq)), (seq,))).fetchone()
        if row is not None:
            out.append(SequenceValue(str(col), str(seq), int(row[0]), bool(row[1]), int(row[2])))
    return out


async def rowset_checksum(target: PgTarget, table: tuple[str, str], columns: tuple[str, ...]) -> tuple[int, str]:
    """(rows, checksum) of ``table``'s ``columns``, independent of the rows' order (see the
    module doc); the same column list on both sides makes the two comparable."""
    conn = await target.connect()
    try:
        for stmt in _PG_DUMP_SESSION:
            await conn.execute(stmt)
        q = sql.SQL("COPY (SELECT {} FROM ONLY {}) TO STDOUT").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(*table)
        )
        total, rows = 0, 0
        async with conn.cursor() as cur:
            async with cur.copy(q) as copy:
                async for row in copy:
                    total += int.from_bytes(blake3.blake3(bytes(row)).digest(16), "little")
                    rows += 1
        return rows, f"{total % (1 << 128):032x}"
    except psycopg.Error as exc:
        raise target.failed(f"reading {names.key(*table)} for its checksum", exc) from None
    finally:
        await conn.close()


async def drop_staging(live: PgTarget, staging: list[tuple[str, str]]) -> list[str]:
    """Drop the staging copies (their sequences go with them); problems returned, not raised:
    the rows are in place already and a leftover copy is named, not hidden."""
    problems = []
    conn = await live.connect()
    try:
        for t in staging:
            try:
                await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*t)))
            except psycopg.Error as exc:
                problems.append(f"the staging copy {names.key(*t)} could not be dropped: {exc}; drop it by hand")
    finally:
        await conn.close()
    return problems


__all__ = [
    "ROWSET_METHOD",
    "Merged",
    "SequenceValue",
    "Shape",
    "drop_staging",
    "merge",
    "refuse_acting_references",
    "rowset_checksum",
    "sequence_values",
    "shapes",
]
