"""Qualified SQL names (core/sources/postgres/names.py): quoting round-trips for any identifier,
folding, wildcards only where asked, ambiguity refused with candidates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UsageError
from core.sources.postgres import names

# Any identifier PostgreSQL accepts: no NUL, not empty; dots, quotes, spaces, newlines, capitals,
# wildcards and non-ASCII included.
ident = st.text(
    st.one_of(st.sampled_from('."* ?\n\tAaZz_$0-[]é'), st.characters(exclude_characters="\x00")),
    min_size=1,
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(ident, ident)
def test_key_round_trips_any_pair(schema: str, name: str) -> None:
    k = names.key(schema, name)
    assert names.parse_key(k) == (schema, name)
    # The key names exactly that table when given to --table, and quote() one schema for --schema.
    others = [(schema, name), (schema + ".", name), (name, schema), (f"{schema}.{name}", "x")]
    assert names.resolve_tables([k], others) == [(schema, name)]
    assert names.resolve_schemas([names.quote(schema)], [schema, schema.lower(), schema + " x"]) == [schema]


@given(ident)
def test_a_quoted_part_is_literal(s: str) -> None:
    parts = names.split(names.quote(s))
    assert [p.text for p in parts] == [s] and parts[0].pattern is None


@given(st.lists(ident, min_size=0, max_size=5))
def test_copy_column_lists(cols: list[str]) -> None:
    stmt = (
        f"COPY {names.key('s c', 'T.u')} ({', '.join(names.quote(c) for c in cols)}) FROM stdin;\n"
        if cols
        else f"COPY {names.key('s c', 'T.u')}  FROM stdin;\n"
    )
    assert names.copy_columns(stmt) == ("s c", "T.u", cols)


def test_folding_quoting_and_wildcards() -> None:
    assert [p.text for p in names.split('Sales."Dept X".Foo"Bar"')] == ["sales", "Dept X", "fooBar"]
    assert names.key("public", "orders") == "public.orders"
    assert names.key("Sales Dept", "orders") == '"Sales Dept".orders'
    assert names.key("dot", "t.u") == 'dot."t.u"' and names.key("dot.t", "u") == '"dot.t".u'
    assert names.key("a", 'we"ird') == 'a."we""ird"'
    tables = [
        ("Sales", "orders"),
        ("Sales Dept", "orders"),
        ("sales", "Orders"),
        ("sales", "items"),
        ("public", "line break"),
        ("public", "line\nbreak"),
        ("dot", "t.u"),
        ("dot.t", "u"),
        ("public", "x"),
    ]
    r = names.resolve_tables
    assert r(['"Sales Dept".orders'], tables) == [("Sales Dept", "orders")]
    assert r(['public."line break"'], tables) == [("public", "line break")]
    assert r(['dot."t.u"'], tables) == [("dot", "t.u")]
    assert r(['"dot.t".u'], tables) == [("dot.t", "u")]
    assert r(["sales.*"], tables) == [("sales", "Orders"), ("sales", "items")]
    assert r(["x"], tables) == [("public", "x")]
    assert r(['"sales".items', "SALES.ITEMS"], tables) == [("sales", "items")]
    with pytest.raises(UsageError, match=r'"dot.t".u.*dot."t.u"|dot."t.u".*"dot.t".u'):
        r(["dot.t.u"], tables)
    with pytest.raises(UsageError, match="more than one schema"):
        r(["orders"], tables)
    with pytest.raises(UsageError, match=r'fold to lower case.*"Sales".orders'):
        r(["Sales.Orders2", "Sales.orders"], tables) if False else r(["Sales.Orders"], [("Sales", "orders")])
    with pytest.raises(UsageError, match="a space outside double quotes"):
        r(["public.line break"], tables)
    with pytest.raises(UsageError, match="no table matches"):
        r(["nothing.*"], tables)
    schemas = ["Sales", "Sales Dept", "sales", "dot", "dot.t"]
    assert names.resolve_schemas(["Sales"], schemas) == ["sales"]
    assert names.resolve_schemas(['"Sales"'], schemas) == ["Sales"]
    assert names.resolve_schemas(['"dot.t"'], schemas) == ["dot.t"]
    assert names.resolve_schemas(["s*"], schemas) == ["sales"]
    with pytest.raises(UsageError, match='"dot.t"'):
        names.resolve_schemas(["dot.t"], schemas)
    for bad in ("", ".x", "x.", 'a."b', '""', "a..b"):
        with pytest.raises(UsageError):
            names.split(bad)


def test_metadata_tables_of_old_and_new_snapshots() -> None:
    # The restore wizard lists these and hands them to the restore, which parses them exactly.
    old = {"tables": {"public.orders": 1, "Sales Dept.orders": 2, 'a.we"ird': 3}}
    assert names.metadata_tables(old) == {"public.orders": 1, '"Sales Dept".orders': 2, 'a."we""ird"': 3}
    new = {"table_keys": names.TABLE_KEYS, "tables": {'dot."t.u"': 1, '"dot.t".u': 2}}
    assert names.metadata_tables(new) == new["tables"]
    for k in names.metadata_tables(old):
        assert names.resolve_tables([k], [("public", "orders"), ("Sales Dept", "orders"), ("a", 'we"ird')])
