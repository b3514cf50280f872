"""Tables put back in place as of a time (issue 21, part 1, `--force`): a safety snapshot of
just those tables, a throwaway cluster recovered to T, staging copies, one merge transaction
on the live database (the live table keeps its OID: foreign keys, views and triggers on it
still hold), validation, and `rollback`. Real PostgreSQL archiving through wal-push, writes
running during the base backup and after T; the real CLI as the server's OS user. One base
backup serves every test of the module."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import psycopg
import pytest

from wal_support import ServerRepo, enable_archiving, switch_and_wait


def _db_now(c) -> datetime:
    return datetime.fromisoformat(c.psql("SELECT clock_timestamp()::text").replace(" ", "T").replace("+00", "+00:00"))


def _conn(c):
    return psycopg.connect(host=c.host, port=c.port, user="postgres", dbname="postgres", autocommit=True)


SCHEMA = """
CREATE SCHEMA sales;
CREATE TABLE sales.customers (id int PRIMARY KEY, name text);
INSERT INTO sales.customers SELECT g, 'c' || g FROM generate_series(1, 20) g;
CREATE TABLE sales.audit (id bigserial, op text, row_id int);
CREATE FUNCTION sales.audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
  INSERT INTO sales.audit (op, row_id) VALUES (TG_OP, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
  RETURN NULL; END$$;
CREATE TABLE sales.orders (id serial PRIMARY KEY, customer_id int REFERENCES sales.customers,
  amount numeric(12,2) NOT NULL, note text, doc json);
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE OR DELETE ON sales.orders FOR EACH ROW EXECUTE FUNCTION sales.audit_fn();
INSERT INTO sales.orders (customer_id, amount, note, doc)
  SELECT 1 + g % 20, g * 1.5, 'order ' || g, json_build_object('g', g) FROM generate_series(1, 300) g;
CREATE TABLE sales.order_lines (order_id int REFERENCES sales.orders, n int, PRIMARY KEY (order_id, n));
INSERT INTO sales.order_lines SELECT g, 1 FROM generate_series(1, 10) g;
CREATE VIEW sales.big_orders AS SELECT id, amount FROM sales.orders WHERE amount > 100;
CREATE TABLE sales.events (at int, what text);
INSERT INTO sales.events SELECT g % 5, 'e' || g FROM generate_series(1, 50) g;
CREATE TABLE sales.items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, price numeric NOT NULL,
  qty int NOT NULL, total numeric GENERATED ALWAYS AS (price * qty) STORED);
INSERT INTO sales.items (price, qty) SELECT g, g % 4 FROM generate_series(1, 40) g;
CREATE SCHEMA "Sales Dept";
CREATE TABLE "Sales Dept"."line.items" ("Id" int PRIMARY KEY, "Note Text" text);
INSERT INTO "Sales Dept"."line.items" SELECT g, 'n' || g FROM generate_series(1, 30) g;
CREATE TABLE sales.tickets (code text PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY, note text);
INSERT INTO sales.tickets (code, note) SELECT c, 'ok' FROM unnest(array['a', 'b', 'c', 'd', 'e']) c;
CREATE TABLE sales.nodes (id int PRIMARY KEY, parent int REFERENCES sales.nodes);
INSERT INTO sales.nodes VALUES (1, NULL), (2, 1), (3, 2);
CREATE TABLE sales.parents (id int PRIMARY KEY);
CREATE TABLE sales.children (parent int REFERENCES sales.parents ON DELETE CASCADE);
CREATE TABLE sales.changed (id int PRIMARY KEY);
INSERT INTO sales.changed SELECT generate_series(1, 5);
CREATE TABLE sales.blocked (id int PRIMARY KEY);
INSERT INTO sales.blocked SELECT generate_series(1, 5);
CREATE TABLE sales.blocked_ref (id int CONSTRAINT blocked_ref_fk REFERENCES sales.blocked);
"""
TABLES = {
    "sales.orders": "SELECT count(*), md5(string_agg(id || ':' || amount || ':' || coalesce(note, '') || doc::text, ',' ORDER BY id)) FROM sales.orders",
    "sales.events": "SELECT count(*), md5(string_agg(at || ':' || what, ',' ORDER BY at, what)) FROM sales.events",
    "sales.items": "SELECT count(*), md5(string_agg(id || ':' || price || ':' || qty || ':' || total, ',' ORDER BY id)) FROM sales.items",
    '"Sales Dept"."line.items"': 'SELECT count(*), md5(string_agg("Id" || \':\' || "Note Text", \',\' ORDER BY "Id")) FROM "Sales Dept"."line.items"',
    "sales.tickets": "SELECT count(*), string_agg(code || n || note, ',' ORDER BY code) FROM sales.tickets",
    "sales.order_lines": "SELECT string_agg(order_id || ':' || n, ',' ORDER BY order_id, n) FROM sales.order_lines",
    "sales.nodes": "SELECT string_agg(id || ':' || coalesce(parent, 0), ',' ORDER BY id) FROM sales.nodes",
    "sales.blocked": "SELECT count(*), string_agg(id::text, ',' ORDER BY id) FROM sales.blocked",
}


def _state(c) -> dict[str, str]:
    return {t: c.psql(q) for t, q in TABLES.items()}


@pytest.fixture(scope="module")
def world(pg_cluster):
    c = pg_cluster()
    sr = ServerRepo.create()
    sr.write_config(f'url = "{c.url()}"\nmode = "physical"\npg_bin_dir = "{c.bin}"')
    sr.config.write_text(sr.config.read_text() + f'[drills]\nwork_dir = "{sr.dir}"\n')
    sr.chown()
    assert sr.cli("init").code == 0
    enable_archiving(c, sr.archive_command())
    with _conn(c) as conn:
        conn.execute(SCHEMA)
    stop = threading.Event()

    def writer() -> None:  # orders keep coming while the base backup runs
        with _conn(c) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO sales.orders (customer_id, amount, note) VALUES (3, 9.99, 'during backup')")
                time.sleep(0.005)

    t = threading.Thread(target=writer)
    t.start()
    try:
        r = sr.cli("backup", "--json", timeout=180)
        assert r.code == 0, r.out + r.err
    finally:
        stop.set()
        t.join()
    with _conn(c) as conn:
        conn.execute("UPDATE sales.orders SET note = 'after backup' WHERE id % 7 = 0")
        conn.execute("INSERT INTO sales.items (price, qty) VALUES (100, 2)")
    at_t = _state(c)
    time.sleep(0.2)
    at = _db_now(c)
    time.sleep(0.2)
    with _conn(c) as conn:  # the incident, and life going on after T
        conn.execute("UPDATE sales.orders SET amount = 0, doc = '{\"x\": 1}' WHERE id > 10")
        conn.execute("DELETE FROM sales.orders WHERE id % 3 = 0 AND id > 10")
        conn.execute(
            "INSERT INTO sales.orders (customer_id, amount, note) SELECT 1, 5, 'after T' FROM generate_series(1, 25)"
        )
        conn.execute("DELETE FROM sales.events WHERE at = 2")
        conn.execute("INSERT INTO sales.events VALUES (9, 'after T'), (9, 'after T')")
        conn.execute("UPDATE sales.items SET price = price + 1 WHERE id % 2 = 0")
        conn.execute("DELETE FROM sales.items WHERE id = 3")
        conn.execute("INSERT INTO sales.items (price, qty) VALUES (7, 7)")
        conn.execute('UPDATE "Sales Dept"."line.items" SET "Note Text" = \'damaged\' WHERE "Id" < 10')
        conn.execute('DELETE FROM "Sales Dept"."line.items" WHERE "Id" > 25')
        conn.execute("DELETE FROM sales.tickets WHERE code = 'b'")  # back with another identity value
        conn.execute("INSERT INTO sales.tickets (code, note) VALUES ('b', 'ok')")
        conn.execute("UPDATE sales.tickets SET note = 'changed' WHERE code = 'c'")
        conn.execute("DELETE FROM sales.order_lines WHERE order_id = 5")  # an order and its line gone
        conn.execute("DELETE FROM sales.orders WHERE id = 5")
        conn.execute("UPDATE sales.nodes SET parent = 1 WHERE id = 3")  # 3 moved up, 2 gone
        conn.execute("DELETE FROM sales.nodes WHERE id = 2")
        conn.execute("ALTER TABLE sales.changed ADD COLUMN since int")
        conn.execute("DELETE FROM sales.changed WHERE id = 1")
        conn.execute("INSERT INTO sales.blocked VALUES (6)")
        conn.execute("INSERT INTO sales.blocked_ref VALUES (6)")
    switch_and_wait(c)
    yield c, sr, at, at_t
    sr.remove()


def _restore(sr, at, *tables: str, extra: tuple[str, ...] = ()):
    argv = ["restore", "--source", "database", "--to-time", at.isoformat(), "--target-db", "postgres", "--force"]
    for t in tables:
        argv += ["--table", t]
    return sr.cli(*argv, *extra, timeout=300)


def _safety_snapshots(sr) -> list[dict]:
    r = sr.cli("snapshots", "--json")
    assert r.code == 0, r.err
    data = r.json()
    snaps = data["snapshots"] if isinstance(data, dict) else data
    return [s for s in snaps if "safety" in (s.get("tags") or [])]


def test_misuse_is_refused_before_any_work(world) -> None:
    c, sr, at, _ = world
    safeties = len(_safety_snapshots(sr))
    r = _restore(sr, at, "sales.orders", extra=("--as", "sales.orders_x"))
    assert r.code == 2 and "--as" in r.err, r.err
    r = _restore(sr, at, "sales.orders", extra=("--with-references",))
    assert r.code == 2 and "--with-references" in r.err, r.err
    r = _restore(sr, at, "sales.orders", extra=("--no-lock",))  # the safety snapshot needs a lock
    assert r.code == 2 and "needs a lock" in r.err, r.err
    r = _restore(sr, at, "sales.parents")  # a cascading key would change sales.children too
    assert r.code == 12 and "sales.children" in r.err and "cascade" in r.err, r.err
    r = _restore(sr, at, "sales.nope")
    assert r.code == 12 and "sales.nope does not exist" in r.err and "leave out --force" in r.err, r.err
    assert not list(sr.dir.glob("axt.*")) and len(_safety_snapshots(sr)) == safeties


def test_dry_run_says_the_plan_and_changes_nothing(world) -> None:
    c, sr, at, _ = world
    before, safeties = _state(c), len(_safety_snapshots(sr))
    r = _restore(sr, at, "sales.orders", "sales.events", extra=("--dry-run", "--json"))
    assert r.code == 0, r.out + r.err
    rep = r.json()
    plan = "\n".join(rep["plan"])
    assert rep["dry_run"] and rep["safety_snapshot"] is None and rep["tables"] == []
    assert "safety snapshot" in plan and "base backup" in plan
    assert "sales.orders: merge by primary key (id)" in plan and "sales.events: no primary key" in plan
    assert _state(c) == before and len(_safety_snapshots(sr)) == safeties


def test_a_foreign_key_that_blocks_the_delete_changes_nothing_and_is_named(world) -> None:
    c, sr, at, _ = world
    before = _state(c)
    r = _restore(sr, at, "sales.orders", "sales.blocked")
    assert r.code == 12, r.out + r.err
    assert "blocked_ref_fk" in r.err and "sales.blocked_ref" in r.err and "nothing was changed" in r.err, r.err
    assert "safety snapshot" in r.err and "Traceback" not in r.err
    assert _state(c) == before  # orders too: one transaction for all the tables
    assert c.psql("SELECT count(*) FROM pg_class WHERE relname LIKE '%axisor%'") == "0"  # staging dropped
    assert not list(sr.dir.glob("axt.*"))  # the throwaway cluster is gone


def test_a_table_whose_columns_changed_since_is_refused_and_nothing_changes(world) -> None:
    c, sr, at, _ = world
    before = c.psql("SELECT count(*) FROM sales.changed")
    r = _restore(sr, at, "sales.changed")
    assert r.code == 12 and "other columns now than at the time" in r.err and "since" in r.err, r.err
    assert c.psql("SELECT count(*) FROM sales.changed") == before == "4"
    assert c.psql("SELECT count(*) FROM pg_class WHERE relname LIKE '%axisor%'") == "0"


def test_tables_go_back_in_place_and_rollback_puts_them_back(world) -> None:
    c, sr, at, at_t = world
    chosen = [
        "sales.orders",
        "sales.events",
        "sales.items",
        '"Sales Dept"."line.items"',
        "sales.tickets",
        "sales.nodes",
        "sales.order_lines",  # it references sales.orders: put back after it, deleted before it
    ]
    oid = c.psql("SELECT 'sales.orders'::regclass::oid")
    before = _state(c)
    seq_before = int(c.psql("SELECT last_value FROM sales.orders_id_seq"))
    audit_before = int(c.psql("SELECT count(*) FROM sales.audit"))
    r = _restore(sr, at, *chosen, extra=("--json",))
    assert r.code == 0, r.out + r.err
    rep = r.json()
    assert rep["mode"] == "in place" and rep["ok"] and rep["restore_id"] and rep["safety_snapshot"]
    assert f"rollback {rep['restore_id']}" in r.err  # said as soon as the safety snapshot is taken
    assert {t["table"] for t in rep["tables"]} == set(chosen)
    by = {t["table"]: t for t in rep["tables"]}
    assert all(t["validated"] and t["checksum_method"] == "rowset-blake3-v1" for t in rep["tables"])
    o = by["sales.orders"]
    assert o["merge"] == "primary key" and o["deleted"] == 25 and o["inserted"] > 0 and o["updated"] > 0
    assert by["sales.events"]["merge"].startswith("replace all")
    # A key-less identity column GENERATED ALWAYS is updated too (made BY DEFAULT for the merge only).
    assert by["sales.tickets"]["updated"] == 2
    assert (
        c.psql("SELECT attidentity FROM pg_attribute WHERE attrelid = 'sales.tickets'::regclass AND attname = 'n'")
        == "a"
    )
    after = _state(c)
    for t in chosen:
        assert after[t] == at_t[t] != before[t], t  # exactly T's rows
    assert after["sales.blocked"] == before["sales.blocked"]  # not chosen: untouched
    # The same table (OID), so the foreign key and the view still hold; the trigger fired.
    assert c.psql("SELECT 'sales.orders'::regclass::oid") == oid
    fk = c.psql("SELECT confrelid::regclass::text FROM pg_constraint WHERE conname = 'order_lines_order_id_fkey'")
    assert fk == "sales.orders"
    assert c.psql("SELECT count(*) FROM sales.big_orders") == c.psql(
        "SELECT count(*) FROM sales.orders WHERE amount > 100"
    )
    audit = int(c.psql("SELECT count(*) FROM sales.audit")) - audit_before
    assert audit == o["deleted"] + o["updated"] + o["inserted"]
    # Never set back (a recovered sequence may even be ahead: the server logs them 32 values ahead).
    assert int(c.psql("SELECT last_value FROM sales.orders_id_seq")) >= seq_before
    assert o["sequences"] and "sales.orders_id_seq" in o["sequences"][0]
    assert c.psql("INSERT INTO sales.items (price, qty) VALUES (1, 1) RETURNING total") == "1"  # identity still works
    c.psql("DELETE FROM sales.items WHERE price = 1 AND qty = 1 AND id > 41")
    assert c.psql("SELECT count(*) FROM pg_class WHERE relname LIKE '%axisor%'") == "0"
    assert not list(sr.dir.glob("axt.*"))
    (safety,) = [s for s in _safety_snapshots(sr) if s["id"].startswith(rep["safety_snapshot"][:8])]

    rb = sr.cli("rollback", rep["restore_id"], "--json", timeout=300)
    assert rb.code == 0, rb.out + rb.err
    (row,) = rb.json()["rolled_back"]
    assert row["kind"] == "tables" and all(t["validated"] for t in row["tables"])
    back = _state(c)
    for t in chosen:
        assert back[t] == before[t], t  # exactly the rows before the restore
    assert c.psql("SELECT 'sales.orders'::regclass::oid") == oid
    assert c.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'axisor_drill_%'") == "0"
    assert safety


async def test_the_engine_s_job_puts_a_table_back_in_place(world, tmp_path, monkeypatch) -> None:
    """What the console submits (core/restore/preflight.py): a restore job with to_time, tables,
    target_db and force; its job id is the restore id."""
    from core.config import load_config
    from core.jobs.api import JobState
    from core.jobs.engine import Engine
    from wal_support import PASSPHRASE

    c, sr, at, at_t = world
    table = '"Sales Dept"."line.items"'
    monkeypatch.setenv("AXISOR_BACKUP_PROGRAM", str(sr.wrapper))  # what the server runs wal-fetch by
    engine = Engine(load_config(sr.config), lambda confirm: PASSPHRASE, directory=tmp_path / "state", workers=2)
    await engine.start()
    try:
        # target_db "": the configured database, as the console submits it when the config names none.
        params = {"source": "database", "to_time": at.isoformat(), "tables": [table], "target_db": "", "force": True}
        job = await engine.wait((await engine.submit("restore", params)).id)
        assert job.state == JobState.COMPLETED, job.error
    finally:
        await engine.close()
    res = job.result
    assert res["restore_id"] == job.id and res["safety_snapshot"] and res["ok"]
    (t,) = res["tables"]
    assert t["table"] == table and t["validated"] and t["updated"] == 9 and t["inserted"] == 5 and t["deleted"] == 0
    assert c.psql(TABLES[table]) == at_t[table]


def test_in_place_from_logical_snapshots(pg_cluster, ws) -> None:
    """No base backups: the newest logical snapshot at or before the time, said in the report."""
    c = pg_cluster()
    c.createdb("shop")
    c.psql(
        "CREATE TABLE orders (id int PRIMARY KEY, amount int); INSERT INTO orders SELECT g, g FROM generate_series(1, 50) g",
        "shop",
    )
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{c.url("shop")}"\npg_bin_dir = "{c.bin}"\n[storage]\nlocal_path = "{ws.repo}"\n'
    )
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json", timeout=180)
    assert r.code == 0, r.out + r.err
    fingerprint = "SELECT count(*), sum(id * amount) FROM orders"
    expected = c.psql(fingerprint, "shop")
    time.sleep(1.1)
    at = _db_now(c)
    c.psql(
        "UPDATE orders SET amount = 0 WHERE id < 10; DELETE FROM orders WHERE id > 45; INSERT INTO orders VALUES (99, 1)",
        "shop",
    )
    r = ws.cli("restore", "--to-time", at.isoformat(), "--table", "orders", "--target-db", "shop", "--force", "--json",
               timeout=300)  # fmt: skip
    assert r.code == 0, r.out + r.err
    rep = r.json()
    assert rep["from_logical_snapshot"] and rep["before_seconds"] >= 1 and rep["ok"]
    plan = ws.cli("restore", "--to-time", at.isoformat(), "--table", "orders", "--target-db", "shop", "--force",
                  "--dry-run", "--json").json()["plan"]  # fmt: skip
    assert any(f"logical snapshot {rep['base_snapshot'][:8]}" in line for line in plan), plan
    (t,) = rep["tables"]
    assert (t["deleted"], t["updated"], t["inserted"]) == (1, 9, 5) and t["validated"]
    assert c.psql(fingerprint, "shop") == expected
    assert c.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'axisor_drill_%'") == "0"
    # Once more, as text: nothing left to change; then its rollback, as text.
    again = ws.cli("restore", "--to-time", at.isoformat(), "--table", "orders", "--target-db", "shop", "--force",
                   timeout=300)  # fmt: skip
    assert again.code == 0, again.out + again.err
    assert "orders put back in place as of" in again.out and "0 rows deleted, 0 updated, 0 inserted" in again.out
    assert "validated (rows and row checksum)" in again.out and "undo: axisor-backup rollback" in again.out
    rid = again.out.split("undo: axisor-backup rollback ")[1].split(")")[0]
    rb = ws.cli("rollback", rid, timeout=300)
    assert rb.code == 0 and "(tables): in place in" in rb.out and "orders 0 deleted" in rb.out, rb.out + rb.err
    assert c.psql(fingerprint, "shop") == expected
