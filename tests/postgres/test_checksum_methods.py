"""Row checksum methods: new snapshots use dump-blake3-v1 (taken from the dump stream, no
server scan); snapshots recorded with the older server-side methods (hash64x2-rowsum-v2,
md5-rowsum-v1) are still validated with their own; a restore onto a server whose hash probe
differs (the other byte order) falls back to row counts for those."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import psycopg
import pytest

from conftest import PASSPHRASE, Workspace
from core.repository.repository import Repository
from core.sources.postgres.row_stats import table_stats
from core.storage.local import LocalBackend

DATA = """
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE a (id int PRIMARY KEY, v text, j jsonb, f float8, b bytea, t timestamptz, m mood);
INSERT INTO a SELECT g, md5(g::text), jsonb_build_object('g', g), g / 7.0, decode(md5(g::text), 'hex'),
    '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', (ARRAY['sad','ok'])[1 + g % 2]::mood
    FROM generate_series(1, 3000) g;
CREATE TABLE b (x numeric, y text[]);
INSERT INTO b SELECT g * 1.5, ARRAY[g::text, 'x y'] FROM generate_series(1, 500) g;
"""


@pytest.fixture(scope="module")
def src(pg_cluster):
    c = pg_cluster()
    c.createdb("src")
    c.psql(DATA, "src")
    return c


async def _stats(c, method: str) -> dict:
    async with await psycopg.AsyncConnection.connect(
        host=c.host, port=c.port, user="postgres", dbname="src", autocommit=True
    ) as conn:
        return {k: d for k, (_, d) in (await table_stats(conn, method=method)).items()}


async def _forge(ws: Workspace, snap_id: str, change) -> str:
    """A copy of snapshot ``snap_id`` with its metadata changed (as an older or foreign
    version of the program would have written it)."""
    repo = await Repository.open(LocalBackend(ws.repo), PASSPHRASE)
    await repo.load_index()
    snap = await repo.load_snapshot(snap_id)
    meta = json.loads(json.dumps(snap.metadata))
    change(meta)
    return await repo.save_snapshot(replace(snap, metadata=meta, id=""))


def _restore(ws: Workspace, c, ref: str, db: str):
    return ws.cli("restore", ref[:12], "--target-db", c.url(db), "--json")


def test_checksum_methods(ws: Workspace, src) -> None:
    ws.config.write_text(f'[database]\nenabled = true\nurl = "{src.url("src")}"\n[storage]\nlocal_path = "{ws.repo}"\n')
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    md = r.json()["snapshots"][0]["metadata"]
    original = r.json()["snapshots"][0]["id"]
    assert md["checksum_method"] == "dump-blake3-v1" and set(md["checksums"]) == {"public.a", "public.b"}

    r = _restore(ws, src, "latest", "copy_dump")
    assert r.code == 0, r.err
    assert [t["checksum_ok"] for t in r.json()["tables"]] == [True, True]

    # Snapshots of the older server-side methods: each validated with its own digest.
    v2 = asyncio.run(_stats(src, "hash64x2-rowsum-v2"))
    v1 = asyncio.run(_stats(src, "md5-rowsum-v1"))
    assert len({json.dumps(v, sort_keys=True) for v in (v1, v2, md["checksums"])}) == 3

    probe_value = asyncio.run(_probe(src))

    def as_method(name: str, sums: dict, probe: bool):
        def change(meta: dict) -> None:
            meta.update(checksum_method=name, checksums=sums)
            if probe:
                meta["checksum_probe"] = probe_value

        return change

    for db, name, sums, probe in (("copy_v2", "hash64x2-rowsum-v2", v2, True), ("copy_v1", "md5-rowsum-v1", v1, False)):
        r = _restore(ws, src, asyncio.run(_forge(ws, original, as_method(name, sums, probe))), db)
        assert r.code == 0, (db, r.err)
        assert [t["checksum_ok"] for t in r.json()["tables"]] == [True, True], db
    # The method is honoured, not guessed: v2 digests labelled v1 fail validation (exit 16).
    r = _restore(ws, src, asyncio.run(_forge(ws, original, as_method("md5-rowsum-v1", v2, False))), "copy_mislabelled")
    assert r.code == 16, (r.out, r.err)
    assert {m["table"] for m in r.json()["mismatches"]} == {"public.a", "public.b"}

    # A server of the other byte order (its probe differs) and an unknown method: counts only.
    def other_order(meta: dict) -> None:
        as_method("hash64x2-rowsum-v2", v2, False)(meta)
        meta["checksum_probe"] = "1"

    for db, change in (
        ("copy_probe", other_order),
        ("copy_unknown", lambda m: m.update(checksum_method="sha3-rowsum-v9")),
    ):
        r = _restore(ws, src, asyncio.run(_forge(ws, original, change)), db)
        assert r.code == 0, r.err
        assert [(t["actual"], t["checksum_ok"]) for t in r.json()["tables"]] == [(3000, None), (500, None)]


async def _probe(c) -> str:
    async with await psycopg.AsyncConnection.connect(
        host=c.host, port=c.port, user="postgres", dbname="src", autocommit=True
    ) as conn:
        cur = await conn.execute("SELECT hashtextextended('axisor checksum probe', 0)::text")
        return (await cur.fetchone())[0]


def test_row_checksums_off_records_counts_only_and_restore_checks_counts(ws: Workspace, src) -> None:
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{src.url("src")}"\nrow_checksums = false\n'
        f'[storage]\nlocal_path = "{ws.repo}"\n'
    )
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    md = r.json()["snapshots"][0]["metadata"]
    assert md["checksum_method"] == "count-only" and md["checksums"] == {}
    assert md["tables"] == {"public.a": 3000, "public.b": 500}
    r = _restore(ws, src, r.json()["snapshots"][0]["id"], "counts_only_copy")
    assert r.code == 0, r.err
    rep = r.json()
    assert rep["ok"] and {t["table"]: (t["actual"], t["checksum_ok"]) for t in rep["tables"]} == {
        "public.a": (3000, None),
        "public.b": (500, None),
    }
