"""Row checksums read from pg_dump's custom-format stream (core/sources/postgres/dumpsum.py):
the parser finds every table's data block in real dumps (empty tables, a table without
columns, odd names, bytes that look like framing, large objects between tables), however
the stream is split; a changed value changes the checksum; damage is reported, not hashed;
a restore validates against the checksums and a changed restored row is caught."""

from __future__ import annotations

import asyncio
import io
import random
import subprocess

import pytest

from conftest import Workspace
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.dumpsum import METHOD, DumpChecksums, checksum_stream, parse_layout
from core.sources.postgres.table_checksums import dump_checksums

SCHEMA = r"""
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."we""ird.name" (id int, t text);
INSERT INTO "Odd Schema"."we""ird.name" SELECT g, repeat(chr(1), g % 7) || E'\n\t\\' FROM generate_series(1, 300) g;
CREATE TABLE empty_first (x int);
CREATE TABLE no_columns ();
INSERT INTO no_columns SELECT FROM generate_series(1, 10);
CREATE TABLE blobs_ref (id int, lo oid);
INSERT INTO blobs_ref VALUES (1, lo_from_bytea(0, decode(repeat('00', 70000), 'hex'))),
                             (2, lo_from_bytea(0, '\x0a000000000001'::bytea));
CREATE TABLE framing (id int, b bytea, n numeric);
-- Rows whose lengths put newlines and zeros into the length prefixes.
INSERT INTO framing SELECT g, decode(repeat('00', g), 'hex'), g FROM generate_series(1, 700) g;
CREATE TABLE empty_last (x int);
"""


@pytest.fixture(scope="module")
def odd(pg_cluster):
    c = pg_cluster()
    c.createdb("odd")
    c.psql(SCHEMA, "odd")
    return c


def _dump(c, db: str = "odd", *extra: str) -> bytes:
    return subprocess.run(
        [str(c.bin / "pg_dump"), "-Fc", "-Z0", *extra, "-d", c.url(db)],
        capture_output=True,
        check=True,
        timeout=120,
        env={"PGOPTIONS": "-c TimeZone=UTC -c bytea_output=hex"},
    ).stdout


def _split_feed(data: bytes, seed: int, **kwargs) -> DumpChecksums:
    rnd = random.Random(seed)
    sums = DumpChecksums(**kwargs)
    at = 0
    while at < len(data):
        n = rnd.choice([1, 2, 5, 6, 7, 11, 12, 13, 64, 4096, 100_000])
        piece = data[at : at + n]
        buf = bytearray(b"??") + piece + b"!!"  # the parser must respect start and end
        sums.feed(buf, 2, 2 + len(piece))
        at += n
    sums.finish()
    return sums


def test_every_table_block_is_found_however_the_stream_is_split(odd) -> None:
    data = _dump(odd)
    whole = checksum_stream(io.BytesIO(data))
    assert whole.error is None, whole.error
    assert set(whole.tables) == {
        '"Odd Schema"."we""ird.name"',
        "public.empty_first",
        "public.no_columns",
        "public.blobs_ref",
        "public.framing",
        "public.empty_last",
    }
    # Two empty tables have the same (empty) content; every other table its own.
    assert whole.tables["public.empty_first"] == whole.tables["public.empty_last"]
    assert len(set(whole.tables.values())) == 5
    # Without large objects the last block is a table's, ended by the end of the stream.
    bare = _dump(odd, "odd", "--no-blobs")
    assert checksum_stream(io.BytesIO(bare)).tables == whole.tables
    for seed in range(12):
        for d in (data, bare):
            split = _split_feed(d, seed)
            assert split.error is None and split.tables == whole.tables, seed
    # The large objects have a block of their own; the walker steps over it.
    layout = parse_layout(data)
    assert any(e.desc in ("BLOBS", "LARGE OBJECTS") and e.has_data for e in layout.entries.values())


def test_rows_are_counted_in_the_stream_up_to_the_limit(odd) -> None:
    """Row counts read from the dump: exact for rows with newlines, tabs and backslashes,
    rows whose lengths put newlines and zeros into the length prefixes, no columns, empty
    tables first and last, however the stream is split. A table whose block is longer than
    the limit is not counted there but named at once (its count(*) runs in SQL), and an
    unreadable stream says so with None."""
    real = {
        '"Odd Schema"."we""ird.name"': 300,
        "public.empty_first": 0,
        "public.no_columns": 10,
        "public.blobs_ref": 2,
        "public.framing": 700,
        "public.empty_last": 0,
    }
    for d in (_dump(odd), _dump(odd, "odd", "--no-blobs")):
        whole = checksum_stream(io.BytesIO(d))  # the default limit: ~500 KB of hex is over it
        assert whole.counts == {k: v for k, v in real.items() if k != "public.framing"}
        for seed in range(6):
            assert _split_feed(d, seed, count_limit=1 << 30).counts == real, seed
            told: list[str | None] = []
            split = _split_feed(d, seed, count_limit=0, on_uncounted=told.append)
            assert sorted(told) == sorted(real) and split.counts == {}, seed
            assert split.tables == whole.tables
    told = []
    sums = DumpChecksums(on_uncounted=told.append)
    sums.feed(b"PGDMX" + _dump(odd)[5:])
    assert sums.error is not None and told == [None] and sums.counts == {}


def test_a_changed_value_changes_only_its_table(odd) -> None:
    odd.psql("CREATE DATABASE odd_changed TEMPLATE odd")
    before = checksum_stream(io.BytesIO(_dump(odd, "odd_changed"))).tables
    odd.psql("UPDATE framing SET n = n + 1 WHERE id = 350", "odd_changed")
    odd.psql("VACUUM FULL framing", "odd_changed")  # back into id order: only the value differs
    after = checksum_stream(io.BytesIO(_dump(odd, "odd_changed"))).tables
    assert {t for t in before if before[t] != after[t]} == {"public.framing"}


def test_damage_is_an_error_not_a_checksum(odd) -> None:
    data = _dump(odd)
    for bad, why in (
        (data[: len(data) // 2], "ended"),
        (b"PGDMX" + data[5:], "not a pg_dump"),
        (data[:200], "table of contents"),
        (data + b"\x01", ""),
    ):
        sums = checksum_stream(io.BytesIO(bad))
        assert sums.error is not None and why in sums.error, (why, sums.error)
    # A compressed dump is not read (its blocks are zlib streams), so never hashed wrongly.
    gz = subprocess.run(
        [str(odd.bin / "pg_dump"), "-Fc", "-Z1", "-d", odd.url("odd")], capture_output=True, check=True, timeout=120
    ).stdout
    assert "compressed" in (checksum_stream(io.BytesIO(gz)).error or "")


def test_restore_validates_with_dump_checksums_and_catches_a_changed_row(ws: Workspace, odd) -> None:
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{odd.url("odd")}"\npg_bin_dir = "{odd.bin}"\n'
        f'[storage]\nlocal_path = "{ws.repo}"\n'
    )
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    md = r.json()["snapshots"][0]["metadata"]
    assert md["checksum_method"] == METHOD
    assert md["checksums"] == {
        t: h for t, h in checksum_stream(io.BytesIO(_dump(odd))).tables.items() if t in md["tables"]
    }

    r = ws.cli("restore", "latest", "--target-db", odd.url("odd_copy"), "--json")
    assert r.code == 0, r.err
    assert {t["table"]: t["checksum_ok"] for t in r.json()["tables"]} == {t: True for t in md["tables"]}

    # Validation reads the restored tables back through pg_dump: one changed value is caught.
    odd.psql("UPDATE framing SET n = -1 WHERE id = 5", "odd_copy")
    got = asyncio.run(dump_checksums(PgTarget.from_url(odd.url("odd_copy")), odd.bin, {"public.framing"}))
    assert got.error is None and got.tables["public.framing"] != md["checksums"]["public.framing"]

    # A table restore into another database: only that table is dumped back and compared.
    r = ws.cli(
        "restore", "latest", "--target-db", odd.url("odd_one"), "--table", '"Odd Schema"."we""ird.name"', "--json"
    )
    assert r.code == 0, r.err
    assert [(t["table"], t["checksum_ok"]) for t in r.json()["tables"]] == [('"Odd Schema"."we""ird.name"', True)]
