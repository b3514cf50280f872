"""A table as of a time, next to the live one (issue 21, part 1): a throwaway cluster
recovered to T from the base backup and WAL, the table copied into the live database
under a new name with its indexes and sequences, validated, the cluster removed. Real
PostgreSQL archiving through wal-push, writes running during the base backup, damage
after T; the real CLI as the server's OS user."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import psycopg
import pytest

from conftest import Workspace  # noqa: F401 - the ws fixture
from wal_support import ServerRepo, enable_archiving, switch_and_wait


def _db_now(c) -> datetime:
    return datetime.fromisoformat(c.psql("SELECT clock_timestamp()::text").replace(" ", "T").replace("+00", "+00:00"))


def _conn(c):
    return psycopg.connect(host=c.host, port=c.port, user="postgres", dbname="postgres", autocommit=True)


SCHEMA = """
CREATE SCHEMA sales;
CREATE TABLE sales.customers (id int PRIMARY KEY, name text);
INSERT INTO sales.customers SELECT g, 'c' || g FROM generate_series(1, 20) g;
CREATE TABLE sales.audit (at timestamptz DEFAULT now(), what text);
CREATE FUNCTION sales.audit_fn() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO sales.audit (what) VALUES (TG_OP); RETURN NEW; END$$;
CREATE TABLE sales.orders (id serial PRIMARY KEY, customer_id int REFERENCES sales.customers,
  amount numeric(12,2) NOT NULL, note text);
CREATE INDEX orders_amount ON sales.orders (amount);
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE ON sales.orders FOR EACH ROW EXECUTE FUNCTION sales.audit_fn();
INSERT INTO sales.orders (customer_id, amount, note) SELECT 1 + g % 20, g * 1.5, 'order ' || g FROM generate_series(1, 500) g;
"""
FINGERPRINT = (
    "SELECT count(*), md5(string_agg(id || ':' || amount || ':' || coalesce(note, ''), ',' ORDER BY id)) FROM {}"
)


@pytest.fixture(scope="module")
def orders(pg_cluster):
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
    expected = c.psql(FINGERPRINT.format("sales.orders"))
    time.sleep(0.2)
    at = _db_now(c)
    time.sleep(0.2)
    with _conn(c) as conn:  # the incident: a bad update and a delete after T
        conn.execute("UPDATE sales.orders SET amount = 0")
        conn.execute("DELETE FROM sales.orders WHERE id % 3 = 0")
    switch_and_wait(c)
    yield c, sr, at, expected
    sr.remove()


def test_a_table_as_of_a_time_lands_beside_the_live_one(orders) -> None:
    c, sr, at, expected = orders
    live_before = c.psql(FINGERPRINT.format("sales.orders"))
    r = sr.cli(
        "restore", "--source", "database", "--to-time", at.isoformat(), "--table", "sales.orders",
        "--target-db", "postgres", "--as", "sales.orders_1432", "--json", timeout=300,
    )  # fmt: skip
    assert r.code == 0, r.out + r.err
    rep = r.json()
    (t,) = rep["tables"]
    assert t["table"] == "sales.orders" and t["copy"] == "sales.orders_1432" and t["validated"]
    assert c.psql(FINGERPRINT.format("sales.orders_1432")) == expected != live_before
    assert c.psql(FINGERPRINT.format("sales.orders")) == live_before  # the live table is untouched
    # Its indexes and its sequence came along under names of their own; FK and trigger did not.
    idx = c.psql("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'orders_1432'")
    assert idx == "orders_1432_idx1,orders_1432_pkey", idx
    assert c.psql("SELECT to_regclass('sales.orders_1432_id_seq') IS NOT NULL") == "t"
    assert any("foreign key" in n and "sales.customers" in n for n in t["not_copied"])
    assert any("trigger" in n and "orders_audit" in n for n in t["not_copied"])
    assert {"recover", "copy", "validate", "cleanup", "total"} <= set(rep["seconds"])
    assert rep["cleanup"] and rep["cleanup_problems"] == [] and rep["ok"]
    assert not list(sr.dir.glob("axt.*"))  # the throwaway cluster is gone

    # A name that exists already is refused before anything is copied (the cluster is removed too).
    again = sr.cli(
        "restore", "--to-time", at.isoformat(), "--table", "sales.orders", "--target-db", "postgres",
        "--as", "sales.orders_1432", timeout=300,
    )  # fmt: skip
    assert again.code == 12 and "already exists" in again.err, again.err
    assert not list(sr.dir.glob("axt.*"))


def test_misuse_is_refused_before_any_work(orders) -> None:
    c, sr, at, _ = orders
    r = sr.cli("restore", "--to-time", at.isoformat(), "--table", "sales.orders", "--target-db", "postgres",
               "--as", "a", "--as", "b")  # fmt: skip
    assert r.code == 2 and "one --as per --table" in r.err
    r = sr.cli("restore", "--to-time", at.isoformat(), "--table", "sales.orders", "--target-db", "postgres", "--force",
               "--as", "sales.x")  # fmt: skip
    assert r.code == 2 and "--force" in r.err  # in place (tests/postgres/test_table_at_time_force.py): no --as
    r = sr.cli("restore", "--as", "x", "--to-time", at.isoformat(), "--target-dir", "/tmp/nope")
    assert r.code == 2


def test_with_logical_snapshots_only_the_nearest_before_the_time_is_used_and_said(pg_cluster, ws) -> None:
    c = pg_cluster()
    c.createdb("shop")
    c.psql(SCHEMA, "shop")
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{c.url("shop")}"\npg_bin_dir = "{c.bin}"\n[storage]\nlocal_path = "{ws.repo}"\n'
    )
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json", timeout=180)
    assert r.code == 0, r.out + r.err
    expected = c.psql(FINGERPRINT.format("sales.orders"), "shop")
    time.sleep(1.1)
    at = _db_now(c)
    c.psql("UPDATE sales.orders SET amount = 0", "shop")
    r = ws.cli(
        "restore", "--to-time", at.isoformat(), "--table", "sales.orders", "--target-db", "shop",
        "--as", "orders_then", "--json", timeout=300,
    )  # fmt: skip
    assert r.code == 0, r.out + r.err
    rep = r.json()
    assert rep["from_logical_snapshot"] and rep["before_seconds"] >= 1
    assert rep["tables"][0]["copy"] == "sales.orders_then" and rep["tables"][0]["validated"]
    assert c.psql(FINGERPRINT.format("sales.orders_then"), "shop") == expected
    assert c.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'axisor_drill_%'") == "0"  # scratch dropped


def test_with_references_the_referenced_tables_come_too_and_the_keys_point_at_the_copies(orders) -> None:
    c, sr, at, _ = orders
    r = sr.cli(
        "restore", "--to-time", at.isoformat(), "--table", "sales.orders", "--target-db", "postgres",
        "--as", "sales.orders_ref", "--with-references", "--json", timeout=300,
    )  # fmt: skip
    assert r.code == 0, r.out + r.err
    rep = r.json()
    copies = {t["table"]: t["copy"] for t in rep["tables"]}
    hhmm = datetime.fromisoformat(rep["at"]).strftime("%H%M")
    assert copies == {"sales.orders": "sales.orders_ref", "sales.customers": f"sales.customers_at_{hhmm}"}
    assert all(t["validated"] for t in rep["tables"])
    fk = c.psql(
        "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 'sales.orders_ref'::regclass AND contype = 'f'"
    )
    assert fk == f"sales.customers_at_{hhmm}"
    orders_ref = next(t for t in rep["tables"] if t["copy"] == "sales.orders_ref")
    assert not any("foreign key" in n for n in orders_ref["not_copied"])


async def test_the_console_s_job_copies_a_table_as_of_a_time(orders, tmp_path, monkeypatch) -> None:
    """What the restore wizard submits (core/restore/preflight.py): a restore job with to_time,
    tables and target_db, run by the engine."""
    from core.config import load_config
    from core.jobs.api import JobState
    from core.jobs.engine import Engine
    from wal_support import PASSPHRASE

    c, sr, at, expected = orders
    monkeypatch.setenv("AXISOR_BACKUP_PROGRAM", str(sr.wrapper))  # what the server runs wal-fetch by
    engine = Engine(load_config(sr.config), lambda confirm: PASSPHRASE, directory=tmp_path / "state", workers=2)
    await engine.start()
    try:
        params = {"source": "database", "to_time": at.isoformat(), "tables": ["sales.orders"], "target_db": "postgres",
                  "as": ["sales.orders_job"]}  # fmt: skip
        job = await engine.wait((await engine.submit("restore", params)).id)
        assert job.state == JobState.COMPLETED, job.error
        assert job.result["tables"][0]["validated"] and job.result["tables"][0]["copy"] == "sales.orders_job"
    finally:
        await engine.close()
    assert c.psql(FINGERPRINT.format("sales.orders_job")) == expected
