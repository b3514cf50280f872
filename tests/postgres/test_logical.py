"""Logical PostgreSQL backup and restore against real throwaway clusters, through the CLI."""

from __future__ import annotations

import asyncio
import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import PASSPHRASE, Workspace
from core.repository.repository import Repository
from core.storage.local import LocalBackend

PASSWORD = "Pw-7f3kQ9-never-in-argv"

SCHEMA = """
CREATE ROLE app_user LOGIN SUPERUSER PASSWORD '{password}';
CREATE SCHEMA sales;
CREATE SEQUENCE invoice_no START 1000;
CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, joined timestamptz DEFAULT now());
CREATE TABLE sales.orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES public.customers(id),
    amount numeric(12, 2) NOT NULL,
    invoice bigint DEFAULT nextval('invoice_no'),
    note jsonb
);
CREATE INDEX orders_customer_idx ON sales.orders (customer_id);
CREATE TABLE public."Mixed Case" (k text PRIMARY KEY);
CREATE TABLE public.empty_table (x int);
INSERT INTO public.customers (name) SELECT 'customer ' || g FROM generate_series(1, 50) g;
INSERT INTO sales.orders (customer_id, amount, note)
    SELECT 1 + g % 50, g * 1.25, jsonb_build_object('g', g) FROM generate_series(1, 4321) g;
INSERT INTO public."Mixed Case" VALUES ('a'), ('b'), ('c');
CREATE TABLE public.events (id int PRIMARY KEY, payload text);
INSERT INTO public.events SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 40000) g;
"""

EXPECTED = {
    "public.customers": 50,
    "sales.orders": 4321,
    'public."Mixed Case"': 3,
    "public.empty_table": 0,
    "public.events": 40000,
}

# A digest of every row, to compare content and not only counts.
CONTENT = (
    "SELECT md5(string_agg(o::text, ',' ORDER BY o.id)) || '/' || "
    "(SELECT md5(string_agg(c::text, ',' ORDER BY c.id)) FROM public.customers c) FROM sales.orders o"
)


@pytest.fixture(scope="module")
def source(pg_cluster):
    """Cluster A with database ``app``; app_user must log in with a password over TCP."""
    c = pg_cluster()
    c.createdb("app")
    c.psql(SCHEMA.format(password=PASSWORD), "app")
    hba = c.dir / "data" / "pg_hba.conf"
    hba.write_text("host all app_user 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    c.psql("SELECT pg_reload_conf()")
    return c


def _wrappers(folder: Path, real: Path, log: Path, *, fake_dump: str | None = None) -> Path:
    """A pg_bin_dir whose programs log their argv and whether PGPASSWORD was set, then run the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("pg_dump", "pg_dumpall", "pg_restore", "psql"):
        body = fake_dump if (fake_dump and name == "pg_dump") else ""
        script = folder / name
        script.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$0 $*" >> "{log}"\n'
            f'[ -n "$PGPASSWORD" ] && echo "PGPASSWORD-in-env" >> "{log}"\n'
            f"{body}\n"
            f'exec "{real}/{name}" "$@"\n'
        )
        script.chmod(0o755)
    return folder


def _config(ws: Workspace, db_lines: str, files: bool = False) -> None:
    lines = []
    if files:
        lines += ["[application]", f'user_data = ["{ws.src}"]']
    lines += ["[database]", "enabled = true", db_lines, "[storage]", f'local_path = "{ws.repo}"']
    ws.config.write_text("\n".join(lines) + "\n")


def _password_file(ws: Workspace) -> Path:
    pw = ws.root / "db-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    return pw


@pytest.fixture
def dbws(ws: Workspace, source) -> Workspace:
    _config(ws, f'url = "{source.url("app", "app_user")}"\npassword_file = "{_password_file(ws)}"')
    assert ws.cli("init").code == 0
    return ws


def _snapshots(ws: Workspace) -> list[dict]:
    r = ws.cli("snapshots", "--json")
    assert r.code == 0, r.err
    return r.json()["snapshots"]


def test_backup_records_exact_metadata(dbws: Workspace, source) -> None:
    r = dbws.cli("backup", "--json", env={"AXISOR_APPLICATION_VERSION": "4.2.0"})
    assert r.code == 0, r.err
    [snap] = r.json()["snapshots"]
    assert snap["source"] == "database" and snap["type"] == "full"
    md = snap["metadata"]
    assert md["tables"] == EXPECTED
    assert md["total_tables"] == 5 and md["total_records"] == sum(EXPECTED.values())
    assert md["database_version"].startswith(source.psql("SHOW server_version"))
    assert md["server_version_num"] == int(source.psql("SHOW server_version_num"))
    assert md["database_size"] > 0 and md["dbname"] == "app"
    assert "plpgsql" in md["extensions"]
    assert md["application_version"] == "4.2.0"
    assert len(md["schema_fingerprint"]) == 64
    assert md["pg_dump_major"] >= md["server_version_num"] // 10000
    # The root tree holds two 0600 files: the whole dump, and the cluster's globals beside it.
    ls = dbws.cli("ls", snap["id"], "--json").json()
    assert md["globals"] == {"file": "globals.sql", "size": md["globals"]["size"], "role_passwords": False}
    assert [(e["path"], stat.S_IMODE(e["mode"]), e["size"]) for e in ls] == [
        ("/app.dump", 0o600, md["dump_size"]),
        ("/globals.sql", 0o600, md["globals"]["size"]),
    ]
    # The dump is a custom-format archive with pg_dump's compression off.
    out = dbws.root / "files"
    assert dbws.cli("restore", snap["id"], "--target", str(out)).code == 0
    head = (out / "app.dump").read_bytes()[:5]
    assert head == b"PGDMP"
    # A second backup of the same data stores (almost) nothing new: chunks dedupe.
    r2 = dbws.cli("backup", "--json")
    assert r2.code == 0, r2.err
    [snap2] = r2.json()["snapshots"]
    assert snap2["metadata"]["tables"] == EXPECTED
    assert snap2["summary"]["data_added"] < snap["summary"]["data_added"] / 2


def test_restore_into_new_database_and_second_cluster(dbws: Workspace, source, pg_cluster) -> None:
    assert dbws.cli("backup").code == 0
    want = source.psql(CONTENT, "app")

    r = dbws.cli("restore", "latest", "--target-db", source.url("copy1"), "--json")
    assert r.code == 0, r.err
    rep = r.json()
    assert rep["ok"] and rep["created"] and rep["schema_fingerprint_match"] and rep["mismatches"] == []
    assert {t["table"]: t["actual"] for t in rep["tables"]} == EXPECTED
    assert source.psql(CONTENT, "copy1") == want
    # What a table needs came along: sequence position, index, foreign key, defaults.
    assert source.psql("SELECT last_value FROM invoice_no", "copy1") == source.psql(
        "SELECT last_value FROM invoice_no", "app"
    )
    assert source.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer_idx'", "copy1") == "1"
    assert source.psql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", "copy1") == "1"
    source.psql("INSERT INTO sales.orders (customer_id, amount) VALUES (1, 1)", "copy1")

    other = pg_cluster()
    r = dbws.cli("restore", "latest", "--source", "database", "--target-db", other.url("elsewhere"))
    # Every row is there; the role app_user is not (exit 7, named: --roles would create it).
    assert r.code == 7, r.err
    assert "5 of 5 tables match" in r.out
    assert (
        "  role app_user of the backed-up cluster (with its memberships): not in the target cluster; "
        "restore with --roles to create them" in r.out
    )
    assert other.psql(CONTENT, "elsewhere") == want

    # An existing empty database is used as it is.
    other.createdb("empty")
    r = dbws.cli("restore", "latest", "--target-db", other.url("empty"), "--json")
    assert r.code == 7 and r.json()["created"] is False and r.json()["ok"]
    assert [n["what"] for n in r.json()["not_restored"]] == [
        "role app_user of the backed-up cluster (with its memberships)"
    ]


def test_restore_refuses_a_non_empty_database(dbws: Workspace, source) -> None:
    assert dbws.cli("backup").code == 0
    r = dbws.cli("restore", "latest", "--target-db", source.url("app"))
    assert r.code == 12 and "not empty" in r.err
    assert "--force" in r.err  # the message says how to replace it (tests/postgres/test_restore_more.py)
    assert source.psql("SELECT count(*) FROM sales.orders", "app") == "4321"
    r = dbws.cli("restore", "latest", "--target-db", source.url("x"), "--target", str(dbws.root / "f"))
    assert r.code == 2


def test_tampered_row_count_fails_the_restore(dbws: Workspace, source) -> None:
    assert dbws.cli("backup").code == 0

    async def tamper() -> str:
        repo = await Repository.open(LocalBackend(dbws.repo), PASSPHRASE)
        await repo.load_index()
        snap = await repo.find_snapshot("latest", "database")
        md = json.loads(json.dumps(snap.metadata))
        md["tables"]["sales.orders"] += 1
        return await repo.save_snapshot(replace(snap, metadata=md, id=""))

    bad = asyncio.run(tamper())
    r = dbws.cli("restore", bad[:12], "--target-db", source.url("tampered"), "--json")
    assert r.code == 16, (r.out, r.err)
    rep = r.json()
    assert rep["ok"] is False
    assert rep["mismatches"] == [
        {
            "table": "sales.orders",
            "schema": "sales",
            "name": "orders",
            "expected": 4322,
            "actual": 4321,
            "ok": False,
            "checksum_ok": True,
            "note": None,
        }
    ]
    assert "differ" in r.err


def test_failed_dump_leaves_no_snapshot(ws: Workspace, source, pg_bin) -> None:
    pw = _password_file(ws)
    # A database that does not exist: a clear error naming it, exit 14, no snapshot.
    _config(ws, f'url = "{source.url("no_such_db", "app_user")}"\npassword_file = "{pw}"', files=True)
    (ws.src / "f.txt").write_text("data")
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 14, r.err
    assert "no_such_db" in r.err and PASSWORD not in r.err + r.out
    assert [s["source"] for s in _snapshots(ws)] == ["application/user_data"]  # files still backed up

    # pg_dump writes part of a dump, then fails: its stderr is reported, nothing is committed.
    log = ws.root / "argv.log"
    fake = (
        '[ "$1" = "--version" ] || { head -c 300000 /dev/urandom; '
        'echo "pg_dump: error: simulated failure" >&2; exit 1; }'
    )
    bindir = _wrappers(ws.root / "bin", pg_bin, log, fake_dump=fake)
    _config(ws, f'url = "{source.url("app", "app_user")}"\npassword_file = "{pw}"\npg_bin_dir = "{bindir}"')
    r = ws.cli("backup", "--source", "database")
    assert r.code == 14 and "simulated failure" in r.err and "pg_dump" in r.err
    assert [s["source"] for s in _snapshots(ws)] == ["application/user_data"]
    assert ws.cli("verify").code == 0


def test_old_pg_dump_is_refused_before_anything_runs(ws: Workspace, source, pg_bin) -> None:
    log = ws.root / "argv.log"
    bindir = _wrappers(
        ws.root / "bin",
        pg_bin,
        log,
        fake_dump='[ "$1" = "--version" ] && { echo "pg_dump (PostgreSQL) 9.6.24"; exit 0; }',
    )
    _config(ws, f'url = "{source.url("app")}"\npg_bin_dir = "{bindir}"')
    assert ws.cli("init").code == 0
    r = ws.cli("backup")
    assert r.code == 15 and "older than the server" in r.err, r.err
    assert "--snapshot" not in log.read_text()  # only --version ran
    assert _snapshots(ws) == []


def test_password_never_in_argv_or_output(ws: Workspace, source, pg_bin) -> None:
    log = ws.root / "argv.log"
    bindir = _wrappers(ws.root / "bin", pg_bin, log)
    pw = _password_file(ws)
    _config(
        ws,
        f'host = "127.0.0.1"\nport = {source.port}\ndbname = "app"\nuser = "app_user"\n'
        f'password_file = "{pw}"\npg_bin_dir = "{bindir}"',
    )
    state = ws.root / "state"  # the job records: a backup runs as a job, kept in jobs.sqlite3
    ws.config.write_text(ws.config.read_text() + f'[engine]\nstate_dir = "{state}"\n')
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")  # scram over TCP: only works if the password reached pg_dump
    assert r.code == 0, r.err
    outputs = [r.out, r.err]
    # A database name on the configured server: its password source applies.
    r = ws.cli("restore", "latest", "--target-db", "pw_copy1", "--json")
    assert r.code == 0, r.err
    outputs += [r.out, r.err]
    # A URL with the password in it is refused: in argv every local user can read it.
    url = f"postgresql://app_user:{PASSWORD}@127.0.0.1:{source.port}/pw_copy2"
    r = ws.cli("restore", "latest", "--target-db", url, "--json")
    assert r.code == 2 and "PGPASSWORD" in r.err, r.err
    outputs += [r.out, r.err]
    # A wrong password fails without echoing it.
    pw.write_text("wrong-" + PASSWORD)
    r = ws.cli("backup")
    assert r.code == 14 and "password authentication failed" in r.err
    outputs += [r.out, r.err]
    text = log.read_text()
    assert "pg_dump" in text and "pg_restore" in text and "PGPASSWORD-in-env" in text
    assert "pg_dumpall --globals-only --no-password --no-role-passwords -d" in text  # same settings as pg_dump
    assert PASSWORD not in text
    for o in outputs:
        assert PASSWORD not in o
    show = ws.cli("show", "latest", "--json").out
    assert PASSWORD not in show
    # Nor in the job records (parameters, logs, results, errors) or anything else kept there.
    jobs = json.loads(ws.cli("jobs", "--json").out)["jobs"]
    assert any(j["kind"] == "backup" and j["state"] == "failed" for j in jobs)  # the wrong-password run
    kept = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name.startswith("jobs.sqlite3") for p in kept)
    for p in kept:
        assert PASSWORD.encode() not in p.read_bytes(), p


def test_database_joins_a_backup_set_and_can_be_selected(ws: Workspace, source) -> None:
    _config(ws, f'url = "{source.url("app")}"', files=True)
    (ws.src / "a.txt").write_text("hello")
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    assert [s["source"] for s in r.json()["snapshots"]] == ["database", "application/user_data"]
    r = ws.cli("backup", "--source", "database", "--json")
    assert [s["source"] for s in r.json()["snapshots"]] == ["database"]
    r = ws.cli("backup", "--source", "user_data", "--json")
    assert [s["source"] for s in r.json()["snapshots"]] == ["application/user_data"]
    # Disabled: --source database is a usage error.
    ws.config.write_text(ws.config.read_text().replace("enabled = true", "enabled = false"))
    assert ws.cli("backup", "--source", "database").code == 2


def test_counts_and_dump_come_from_one_snapshot_under_concurrent_writes(ws: Workspace, source) -> None:
    """Rows committed while the backup runs are in neither the dump nor the counts, or in both."""
    import subprocess
    import threading

    import time

    source.createdb("ticks")
    source.psql("CREATE TABLE public.ticks (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())", "ticks")
    _config(ws, f'url = "{source.url("ticks")}"')
    assert ws.cli("init").code == 0
    stop = threading.Event()

    def writer() -> None:
        # One psql session committing a row at a time until told to stop.
        p = subprocess.Popen(
            [
                str(source.bin / "psql"),
                "-X",
                "-q",
                "-h",
                source.host,
                "-p",
                str(source.port),
                "-U",
                "postgres",
                "-d",
                "ticks",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            while not stop.is_set():
                p.stdin.write("INSERT INTO public.ticks DEFAULT VALUES;\n" * 20)
                p.stdin.flush()
        finally:
            p.stdin.close()
            p.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while source.psql("SELECT count(*) FROM public.ticks", "ticks") == "0" and time.monotonic() < deadline:
            time.sleep(0.05)
        r = ws.cli("backup", "--json")
    finally:
        stop.set()
        t.join(60)
    assert r.code == 0, r.err
    counted = r.json()["snapshots"][0]["metadata"]["tables"]["public.ticks"]
    source.psql("INSERT INTO public.ticks DEFAULT VALUES", "ticks")
    assert 0 < counted < int(source.psql("SELECT count(*) FROM public.ticks", "ticks"))
    r = ws.cli("restore", "latest", "--target-db", source.url("ticks_copy"), "--json")
    assert r.code == 0, r.err
    assert r.json()["ok"]
    assert source.psql("SELECT count(*) FROM public.ticks", "ticks_copy") == str(counted)


def test_pg_restore_failure_and_old_pg_restore(dbws: Workspace, source, pg_bin) -> None:
    assert dbws.cli("backup").code == 0
    log = dbws.root / "argv.log"
    text = dbws.config.read_text().replace("[storage]", 'pg_bin_dir = "{}"\n[storage]')

    # pg_restore fails part-way: its stderr is reported, the database it was given is dropped.
    failing = _wrappers(dbws.root / "bin1", pg_bin, log, fake_dump=None)
    (failing / "pg_restore").write_text(
        '#!/bin/sh\n[ "$1" = "--version" ] && exec "{0}/pg_restore" --version\n'
        'head -c 1000 >/dev/null; echo "pg_restore: error: simulated restore failure" >&2; exit 1\n'.format(pg_bin)
    )
    dbws.config.write_text(text.format(failing))
    r = dbws.cli("restore", "latest", "--target-db", source.url("never_kept"))
    assert r.code == 14 and "simulated restore failure" in r.err, r.err
    assert source.psql("SELECT count(*) FROM pg_database WHERE datname = 'never_kept'") == "0"

    # A pg_restore older than the pg_dump that wrote the snapshot is refused up front.
    old = dbws.root / "bin2"
    old.mkdir()
    (old / "pg_restore").write_text('#!/bin/sh\necho "pg_restore (PostgreSQL) 9.6.24"\n')
    (old / "pg_restore").chmod(0o755)
    dbws.config.write_text(text.format(old))
    r = dbws.cli("restore", "latest", "--target-db", source.url("never_made"))
    assert r.code == 15 and "older than the pg_dump" in r.err, r.err
    assert source.psql("SELECT count(*) FROM pg_database WHERE datname = 'never_made'") == "0"
