"""Table- and schema-level restore, restore over a live database (--force), and the row
checksums that prove a schema full of types round-trips, against real throwaway clusters."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from conftest import PASSPHRASE, Workspace
from core.errors import UsageError
from core.repository.repository import Repository
from core.sources.postgres import names, toc
from core.sources.postgres.dumpsum import TocEntry
from core.storage.local import LocalBackend

SHOP = """
CREATE SCHEMA sales;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, mood mood DEFAULT 'ok');
COMMENT ON TABLE public.customers IS 'people who buy';
CREATE TABLE sales.orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES public.customers(id),
    amount numeric(12, 2) NOT NULL DEFAULT 0 CHECK (amount >= 0),
    status text NOT NULL DEFAULT 'new'
);
CREATE INDEX orders_customer_idx ON sales.orders (customer_id);
CREATE TABLE public.notes (id serial PRIMARY KEY, customer_id int REFERENCES public.customers(id), body text);
CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE amount > 100;
CREATE FUNCTION sales.total() RETURNS numeric LANGUAGE sql AS 'SELECT sum(amount) FROM sales.orders';
INSERT INTO public.customers (name, mood) SELECT 'c' || g, (ARRAY['sad','ok','happy'])[1 + g % 3]::mood
    FROM generate_series(1, 30) g;
INSERT INTO sales.orders (customer_id, amount) SELECT 1 + g % 30, g * 0.75 FROM generate_series(1, 500) g;
INSERT INTO public.notes (customer_id, body) SELECT 1 + g % 30, 'note ' || g FROM generate_series(1, 40) g;
"""

ORDERS_DIGEST = "SELECT md5(string_agg(o::text, ',' ORDER BY o.id)) FROM sales.orders o"
ALL_ROWS = (
    "SELECT md5(string_agg(t, ',' ORDER BY t)) FROM (SELECT 'o' || o::text AS t FROM sales.orders o "
    "UNION ALL SELECT 'n' || n::text FROM public.notes n UNION ALL SELECT 'c' || c::text FROM public.customers c) x"
)


def _config(ws: Workspace, url: str) -> None:
    ws.config.write_text(f'[database]\nenabled = true\nurl = "{url}"\n[storage]\nlocal_path = "{ws.repo}"\n')


@pytest.fixture(scope="module")
def shop(pg_cluster):
    c = pg_cluster()
    c.createdb("shop")
    c.psql(SHOP, "shop")
    return c


@pytest.fixture
def shopws(ws: Workspace, shop) -> Workspace:
    _config(ws, shop.url("shop"))
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    return ws


def test_table_restore_brings_sequences_defaults_indexes_and_constraints(shopws: Workspace, shop) -> None:
    ws = shopws
    r = ws.cli(
        "restore",
        "latest",
        "--target-db",
        shop.url("pick1"),
        "--table",
        "sales.orders",
        "--table",
        "customers",
        "--json",
    )
    assert r.code == 0, r.err
    rep = r.json()
    assert rep["ok"] and rep["partial"] and rep["created"] and rep["schema_fingerprint_match"] is None
    assert [(t["table"], t["actual"], t["checksum_ok"]) for t in rep["tables"]] == [
        ("public.customers", 30, True),
        ("sales.orders", 500, True),
    ]
    q = lambda s: shop.psql(s, "pick1")  # noqa: E731
    assert q(ORDERS_DIGEST) == shop.psql(ORDERS_DIGEST, "shop")
    # Only what was asked for: no other table, no view, no function.
    assert q("SELECT count(*) FROM pg_class WHERE relname IN ('notes', 'big_orders')") == "0"
    assert q("SELECT count(*) FROM pg_proc WHERE proname = 'total'") == "0"
    # What the tables need came along: the enum, index, FK, check, comment.
    assert q("SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer_idx'") == "1"
    assert q("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == "1"
    assert q("SELECT obj_description('public.customers'::regclass)") == "people who buy"
    with pytest.raises(RuntimeError, match="check constraint"):
        q("INSERT INTO sales.orders (customer_id, amount) VALUES (1, -1)")
    with pytest.raises(RuntimeError, match="foreign key"):
        q("INSERT INTO sales.orders (customer_id) VALUES (999)")
    # The sequences continue after the restored ids; the defaults fill the columns.
    new_id, amount, status = q("INSERT INTO sales.orders (customer_id) VALUES (2) RETURNING id, amount, status").split(
        "|"
    )
    assert int(new_id) > 500 and (amount, status) == ("0.00", "new")  # 501, 502: the failed inserts
    assert int(q("INSERT INTO public.customers (name) VALUES ('x') RETURNING id")) == 31
    assert q("SELECT mood FROM public.customers WHERE name = 'x'") == "ok"

    # A table whose FK points at a table that is not restored: restored without that FK, said so.
    r = ws.cli("restore", "latest", "--target-db", shop.url("pick2"), "--table", "public.notes", "--json")
    assert r.code == 0, r.err
    rep = r.json()
    assert [(t["table"], t["actual"]) for t in rep["tables"]] == [("public.notes", 40)]
    assert any("notes_customer_id_fkey" in w for w in rep["warnings"])
    assert shop.psql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", "pick2") == "0"
    assert shop.psql("SELECT nextval('notes_id_seq')", "pick2") == "41"

    # Into a database that has other things: allowed, and its schema and type are reused.
    r = ws.cli("restore", "latest", "--target-db", shop.url("pick1"), "--table", "public.notes", "--json")
    assert r.code == 0, r.err
    assert shop.psql("SELECT count(*) FROM public.notes", "pick1") == "40"
    assert shop.psql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", "pick1") == "2"
    # ... but never over a table it already has.
    r = ws.cli("restore", "latest", "--target-db", shop.url("pick1"), "--table", "sales.orders")
    assert r.code == 12 and "already has sales.orders" in r.err
    assert shop.psql("SELECT count(*) FROM sales.orders", "pick1") == "501"
    # Unknown names are a usage error before anything is created.
    r = ws.cli("restore", "latest", "--target-db", shop.url("pick9"), "--table", "public.nope")
    assert r.code == 2 and "public.nope" in r.err
    assert shop.psql("SELECT count(*) FROM pg_database WHERE datname = 'pick9'") == "0"
    r = ws.cli("restore", "latest", "--target-db", shop.url("pick9"), "--table", "public.notes", "--force")
    assert r.code == 2


def test_schema_restore(shopws: Workspace, shop) -> None:
    r = shopws.cli("restore", "latest", "--target-db", shop.url("sch1"), "--schema", "sales", "--json")
    assert r.code == 0, r.err
    rep = r.json()
    assert [(t["table"], t["actual"], t["checksum_ok"]) for t in rep["tables"]] == [("sales.orders", 500, True)]
    q = lambda s: shop.psql(s, "sch1")  # noqa: E731
    assert q("SELECT count(*) FROM sales.big_orders") == shop.psql("SELECT count(*) FROM sales.big_orders", "shop")
    assert q("SELECT sales.total()") == shop.psql("SELECT sales.total()", "shop")
    assert q("SELECT count(*) FROM pg_class WHERE relname = 'customers'") == "0"
    assert int(q("SELECT nextval('sales.orders_id_seq')")) == 501


def _snapshots(ws: Workspace) -> list[dict]:
    r = ws.cli("snapshots", "--json")
    assert r.code == 0, r.err
    return r.json()["snapshots"]


def test_force_over_a_live_database_takes_a_safety_snapshot(shopws: Workspace, shop) -> None:
    ws = shopws
    [snap] = _snapshots(ws)
    assert ws.cli("restore", snap["id"], "--target-db", shop.url("live")).code == 0
    # The live database moves on.
    shop.psql(
        "UPDATE sales.orders SET status = 'paid' WHERE id % 2 = 0; DELETE FROM public.notes WHERE id > 30;"
        "INSERT INTO sales.orders (customer_id, amount) VALUES (3, 9.5); CREATE TABLE public.extra (x int);",
        "live",
    )
    modified = shop.psql(ORDERS_DIGEST, "live")
    modified_all = shop.psql(ALL_ROWS, "live")
    assert modified != shop.psql(ORDERS_DIGEST, "shop")

    r = ws.cli("restore", snap["id"], "--target-db", shop.url("live"))
    assert r.code == 12 and "--force" in r.err
    assert shop.psql(ORDERS_DIGEST, "live") == modified

    r = ws.cli("restore", snap["id"], "--target-db", shop.url("live"), "--force", "--json")
    assert r.code == 0, r.err
    rep = r.json()
    assert rep["ok"] and not rep["created"] and rep["safety_snapshot"]
    assert all(t["checksum_ok"] for t in rep["tables"])
    assert shop.psql(ORDERS_DIGEST, "live") == shop.psql(ORDERS_DIGEST, "shop")
    assert shop.psql("SELECT count(*) FROM public.notes", "live") == "40"
    safety = [s for s in _snapshots(ws) if s["id"] == rep["safety_snapshot"]]
    assert len(safety) == 1 and safety[0]["tags"] == ["safety"]
    assert safety[0]["metadata"]["safety_for"]["snapshot"] == snap["id"]
    assert safety[0]["metadata"]["tables"]["sales.orders"] == 501

    # `rollback` finds the safety snapshot by the restore's id and brings the modified state back.
    assert safety[0]["metadata"]["safety_for"]["restore"] == rep["restore_id"]
    assert "password" not in json.dumps(safety[0]["metadata"]["safety_for"])
    r = ws.cli("rollback", rep["restore_id"], "--json")
    assert r.code == 0, r.err
    [back] = r.json()["rolled_back"]
    assert back["kind"] == "database" and back["ok"] and back["mismatches"] == []
    assert shop.psql(ORDERS_DIGEST, "live") == modified
    assert shop.psql("SELECT count(*) FROM public.notes", "live") == "30"
    assert shop.psql(ALL_ROWS, "live") == modified_all  # every table's rows, exactly as before the restore
    assert shop.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'extra'", "live") == "1"

    # A restore that fails part-way (an object outside the snapshot depends on a table it
    # must drop) leaves the database exactly as it was, and names the safety snapshot.
    shop.psql("CREATE TABLE public.blocker (c int REFERENCES public.customers(id))", "live")
    r = ws.cli("restore", snap["id"], "--target-db", shop.url("live"), "--force")
    assert r.code == 14 and "unchanged" in r.err and "safety snapshot" in r.err, r.err
    assert shop.psql(ORDERS_DIGEST, "live") == modified
    assert shop.psql("SELECT count(*) FROM public.notes", "live") == "30"


TYPES = """
CREATE EXTENSION hstore;
CREATE EXTENSION pgcrypto;
CREATE TYPE colour AS ENUM ('red', 'green', 'blue');
CREATE SEQUENCE ticket_no START 500 INCREMENT 7;
CREATE TABLE kinds (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raw bytea, doc jsonb, js json, tags text[], grid int[][], price numeric(30, 10), ratio double precision,
    r4 real, at timestamptz, day date, t time, span interval, c colour, attrs hstore, u uuid,
    ip inet, flag boolean, ch char(3), money_col money, bits bit varying(16), rng int4range,
    ticket bigint DEFAULT nextval('ticket_no'), secret bytea
);
INSERT INTO kinds (raw, doc, js, tags, grid, price, ratio, r4, at, day, t, span, c, attrs, u, ip, flag, ch,
                   money_col, bits, rng, secret)
SELECT decode(md5(g::text), 'hex') || '\\x00ff'::bytea,
       jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'x', null, 1.5e300)),
       ('{"k": ' || g || ', "k": "dup"}')::json,
       ARRAY['a' || g, NULL, 'quote"s', 'com,ma'],
       ARRAY[[g, g + 1], [g + 2, NULL]],
       g * 12345.6789012345 - 1e15, g / 7.0::float8, (g / 3.0)::real,
       timestamptz '2024-03-31 01:30:00+02' + g * interval '37 minutes 11.123456 seconds',
       date '2000-02-29' + g, time '23:59:59.999999' - g * interval '1 second', g * interval '1 day 3 hours',
       (ARRAY['red', 'green', 'blue'])[1 + g % 3]::colour,
       hstore(ARRAY['k' || g, 'v'], ARRAY['x', NULL]), gen_random_uuid(),
       ('10.0.' || g % 256 || '.1/24')::inet, g % 2 = 0, 'ab', g * 1.05, (g % 65536)::bit(16)::varbit,
       int4range(g, g + 10), pgp_sym_encrypt('secret ' || g, 'k')
FROM generate_series(1, 300) g;
INSERT INTO kinds (doc) VALUES ('{}'), (NULL);
CREATE TABLE measurements (id serial, at date NOT NULL, v numeric) PARTITION BY RANGE (at);
CREATE TABLE measurements_2023 PARTITION OF measurements FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO measurements (at, v) SELECT date '2023-06-01' + g, g / 3.0 FROM generate_series(1, 400) g;
CREATE VIEW kinds_summary AS SELECT c, count(*) AS n, sum(price) AS total FROM kinds GROUP BY c;
CREATE FUNCTION add_tax(numeric) RETURNS numeric LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN $1 * 1.2; END $$;
CREATE TABLE docs (id int PRIMARY KEY, content oid);
INSERT INTO docs VALUES (1, lo_from_bytea(0, decode(repeat('00ff10', 50000), 'hex'))),
                        (2, lo_from_bytea(0, convert_to('hello large object', 'UTF8')));
SELECT setval('ticket_no', 9000);
"""


@pytest.fixture(scope="module")
def typed(pg_cluster):
    c = pg_cluster()
    c.createdb("typed")
    c.psql(TYPES, "typed")
    return c


def test_types_round_trip_with_identical_checksums(ws: Workspace, typed) -> None:
    _config(ws, typed.url("typed"))
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    md = r.json()["snapshots"][0]["metadata"]
    # Checksums read from the dump stream, through the large objects' block and every table's.
    assert md["checksum_method"] == "dump-blake3-v1"
    assert not [w for w in r.json()["snapshots"][0]["warnings"] if "checksum" in w]
    assert (
        set(md["checksums"])
        == set(md["tables"])
        == {"public.kinds", "public.measurements_2023", "public.measurements_2024", "public.docs"}
    )
    assert md["large_objects"]["count"] == 2 and {"hstore", "pgcrypto"} <= set(md["extensions"])

    r = ws.cli("restore", "latest", "--target-db", typed.url("typed_copy"), "--json")
    assert r.code == 0, r.err
    rep = r.json()
    assert rep["ok"] and rep["schema_fingerprint_match"]
    assert [t["checksum_ok"] for t in rep["tables"]] == [True] * 4
    assert rep["large_objects"]["ok"] and rep["large_objects"]["actual"]["count"] == 2
    q = lambda s, db="typed_copy": typed.psql(s, db)  # noqa: E731
    for check in (
        "SELECT sum(v) FROM measurements",
        "SELECT * FROM kinds_summary ORDER BY c",
        "SELECT add_tax(10)",
        "SELECT nextval('ticket_no')",
        "SELECT md5(lo_get(content)) FROM docs ORDER BY id",
        "SELECT pgp_sym_decrypt(secret, 'k') FROM kinds WHERE id = 5",
    ):
        assert q(check) == q(check, "typed"), check
    assert q("SELECT nextval('ticket_no')") == "9014"

    # A change the counts cannot see (same rows, one value differs) fails the validation.
    typed.psql("UPDATE kinds SET doc = '{\"changed\": true}' WHERE id = 7", "typed_copy")

    async def tamper() -> str:
        repo = await Repository.open(LocalBackend(ws.repo), PASSPHRASE)
        await repo.load_index()
        snap = await repo.find_snapshot("latest", "database")
        meta = json.loads(json.dumps(snap.metadata))
        meta["checksums"]["public.kinds"] = "0" * 32
        return await repo.save_snapshot(replace(snap, metadata=meta, id=""))

    bad = asyncio.run(tamper())
    r = ws.cli("restore", bad[:12], "--target-db", typed.url("typed_bad"), "--json")
    assert r.code == 16, (r.out, r.err)
    rep = r.json()
    assert [(m["table"], m["expected"] == m["actual"], m["checksum_ok"]) for m in rep["mismatches"]] == [
        ("public.kinds", True, False)
    ]
    assert "checksum" in r.err


def test_table_restore_of_a_partitioned_table_and_its_types(ws: Workspace, typed) -> None:
    _config(ws, typed.url("typed"))
    assert ws.cli("init").code == 0
    assert ws.cli("backup").code == 0
    r = ws.cli(
        "restore",
        "latest",
        "--target-db",
        typed.url("typed_part"),
        "--table",
        "public.measurements",
        "--table",
        "public.kinds",
        "--json",
    )
    assert r.code == 0, r.err
    rep = r.json()
    assert [(t["table"], t["checksum_ok"]) for t in rep["tables"]] == [
        ("public.kinds", True),
        ("public.measurements_2023", True),
        ("public.measurements_2024", True),
    ]
    # The enum, the extension types and the shared sequence were created in the new database.
    after = int(typed.psql("SELECT last_value FROM ticket_no", "typed")) + 7
    assert typed.psql("SELECT nextval('ticket_no')", "typed_part") == str(after)
    assert typed.psql("SELECT count(*) FROM pg_extension WHERE extname = 'hstore'", "typed_part") == "1"
    assert typed.psql("SELECT count(*) FROM pg_largeobject_metadata", "typed_part") == "0"
    assert typed.psql("INSERT INTO measurements (at) VALUES ('2024-05-01') RETURNING id", "typed_part") == "401"


def _entry(i: int, desc: str, ns: str, tag: str, *deps: int) -> TocEntry:
    return TocEntry(i, desc == "TABLE DATA", desc, ns, tag, "postgres", deps)


# A dump's table of contents as dumpsum.parse_layout reads it (exact names, dependencies).
ENTRIES = [
    _entry(6, "SCHEMA", "", "sales"),
    _entry(220, "TABLE", "public", "Mixed Case"),
    _entry(3398, "ACL", "public", 'TABLE "Mixed Case"', 220),
    _entry(217, "TABLE", "public", "customers"),
    _entry(216, "SEQUENCE", "public", "customers_id_seq", 217),
    _entry(3402, "SEQUENCE OWNED BY", "public", "customers_id_seq", 216),
    _entry(219, "TABLE", "sales", "orders", 6),
    _entry(3226, "DEFAULT", "public", "customers id", 217, 216, 217),
    _entry(3388, "TABLE DATA", "public", "Mixed Case", 220),
    _entry(3385, "TABLE DATA", "public", "customers", 217),
    _entry(3387, "TABLE DATA", "sales", "orders", 219),
    _entry(3404, "SEQUENCE SET", "public", "customers_id_seq", 216),
    _entry(3231, "CONSTRAINT", "public", "customers customers_pkey", 217),
    _entry(3239, "FK CONSTRAINT", "sales", "orders orders_customer_id_fkey", 3231, 219, 217),
]


def test_toc_selection() -> None:
    entries = ENTRIES
    sel = toc.select(entries, [("public", "Mixed Case")])
    assert sel.ids == [220, 3398, 3388] and sel.tables == [("public", "Mixed Case")]
    assert sel.list_text(entries) == "220; TABLE\n3398; ACL\n3388; TABLE DATA\n"
    sel = toc.select(entries, [("public", "customers")])
    assert sel.ids == [217, 216, 3402, 3226, 3385, 3404, 3231] and sel.skipped_fks == []
    sel = toc.select(entries, [("sales", "orders")])
    assert sel.ids == [6, 219, 3387] and sel.skipped_fks == ["sales.orders orders_customer_id_fkey"]
    sel = toc.select(entries, [("sales", "orders")], present={("SCHEMA", "", "sales")})
    assert sel.ids == [219, 3387]
    sel = toc.select(entries, [("sales", "orders"), ("public", "customers")])
    assert 3239 in sel.ids
    sel = toc.select(entries, schemas=["sales"])
    assert sel.ids == [6, 219, 3387] and sel.data_tables == [("sales", "orders")]
    # Names are resolved before selection, by names.py's rules, against the TOC's own names.
    with pytest.raises(UsageError, match="public.missing"):
        names.resolve_tables(["public.missing"], toc.table_names(entries))
    assert names.resolve_tables(['"Mixed Case"'], toc.table_names(entries)) == [("public", "Mixed Case")]


def test_dry_run_of_a_database_restore_lists_what_it_would_do_and_changes_nothing(shopws: Workspace, shop) -> None:
    ws = shopws
    [snap] = _snapshots(ws)
    # Into a database that does not exist: everything created, nothing else happens.
    r = ws.cli("restore", snap["id"], "--target-db", shop.url("dry_new"), "--dry-run", "--json")
    assert r.code == 0, r.err
    plan = r.json()
    assert plan["dry_run"] and plan["create_database"] and not plan["safety_snapshot"]
    assert {t["table"]: (t["action"], t["rows"]) for t in plan["tables"]} == {
        "public.customers": ("create", 30),
        "public.notes": ("create", 40),
        "sales.orders": ("create", 500),
    }
    assert shop.psql("SELECT count(*) FROM pg_database WHERE datname = 'dry_new'") == "0"
    # Over a live database: refused without --force; with it, replaced after a safety backup.
    assert ws.cli("restore", snap["id"], "--target-db", shop.url("dry_live")).code == 0
    shop.psql("CREATE TABLE public.extra (x int)", "dry_live")
    before = shop.psql(ORDERS_DIGEST, "dry_live")
    r = ws.cli("restore", snap["id"], "--target-db", shop.url("dry_live"), "--dry-run", "--json")
    assert r.code == 12 and "--force" in r.json()["refused"]
    r = ws.cli("restore", snap["id"], "--target-db", shop.url("dry_live"), "--dry-run", "--force", "--json")
    assert r.code == 0, r.err
    plan = r.json()
    assert plan["safety_snapshot"] and not plan["create_database"] and plan["left_in_place"] == ["public.extra"]
    assert {t["action"] for t in plan["tables"]} == {"replace"}
    # One table into a database that has it already: in the way.
    r = ws.cli(
        "restore", snap["id"], "--target-db", shop.url("dry_live"), "--table", "sales.orders", "--dry-run", "--json"
    )
    assert r.code == 12 and r.json()["tables"] == [{"table": "sales.orders", "rows": 500, "action": "conflict"}]
    assert shop.psql(ORDERS_DIGEST, "dry_live") == before and len(_snapshots(ws)) == 1  # nothing changed
