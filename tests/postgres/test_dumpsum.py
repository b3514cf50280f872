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
from core.sources.postgres.dumpsum import METHOD, DumpChecksums, RowCounter, checksum_stream, parse_layout
from core.sources.postgres.logical import dump_checksums

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
    return subprocess.run([str(c.bin / "pg_dump"), "-Fc", "-Z0", *extra, "-d", c.url(db)], capture_output=True,
                          check=True, timeout=120, env={"PGOPTIONS": "-c TimeZone=UTC -c bytea_output=hex"}).stdout


def _split_feed(data: bytes, seed: int) -> DumpChecksums:
    rnd = random.Random(seed)
    sums = DumpChecksums()
    at = 0
    while at < len(data):
        n = rnd.choice([1, 2, 5, 6, 7, 11, 12, 13, 64, 4096, 100_000])
        piece = data[at:at + n]
        buf = bytearray(b"??") + piece + b"!!"  # the parser must respect start and end
        sums.feed(buf, 2, 2 + len(piece))
        at += n
    sums.finish()
    return sums


def test_every_table_block_is_found_however_the_stream_is_split(odd) -> None:
    data = _dump(odd)
    whole = checksum_stream(io.BytesIO(data))
    assert whole.error is None, whole.error
    assert set(whole.tables) == {'"Odd Schema"."we""ird.name"', "public.empty_first", "public.no_columns",
                                 "public.blobs_ref", "public.framing", "public.empty_last"}
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


def _count_star(c, db: str) -> dict[str, int]:
    """count(*) FROM ONLY of every user table, by names.key."""
    from core.sources.postgres import names

    out = {}
    for line in c.psql("SELECT format('%s|%s', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN "
                       "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'", db).splitlines():
        schema, rel = line.split("|")
        ident = '"' + schema.replace('"', '""') + '"."' + rel.replace('"', '""') + '"'
        out[names.key(schema, rel)] = int(c.psql(f"SELECT count(*) FROM ONLY {ident}", db))
    return out


def test_rows_counted_in_the_stream_equal_count_star_however_split(odd) -> None:
    """The row counts a backup records come from the dump stream: the same as count(*) FROM
    ONLY for rows whose lengths put newlines and zeros in their length prefixes, an empty
    table, a table without columns, large objects between tables; and with checksums off."""
    data = _dump(odd)
    want = _count_star(odd, "odd")
    assert want["public.framing"] == 700 and want["public.no_columns"] == 10 and want["public.empty_first"] == 0
    whole = checksum_stream(io.BytesIO(data))
    assert whole.rows == want and not whole.row_errors
    for seed in range(6):
        assert _split_feed(data, seed).rows == want, seed
    counts_only = DumpChecksums(checksums=False)
    counts_only.feed(bytearray(data), 0, len(data))
    counts_only.finish()
    assert counts_only.rows == want and counts_only.tables == {} and counts_only.error is None


def _block(lengths: list[int], int_size: int = 4, end_marker: bool = True) -> bytes:
    """A table's data block as pg_dump writes it: one piece per row, then its \\. piece, then a zero length."""
    out = bytearray()
    for i, n in enumerate(lengths):
        row = (str(i).encode() * n)[:n - 1] + b"\n"
        out += b"\x00" + n.to_bytes(int_size, "little") + row
    if end_marker:
        out += b"\x00" + (5).to_bytes(int_size, "little") + b"\\.\n\n\n"
    return bytes(out + b"\x00" * (1 + int_size))


@pytest.mark.parametrize("int_size", [4, 8])
def test_row_counter_is_exact_where_lengths_hold_newline_bytes(int_size: int) -> None:
    rnd = random.Random(int_size)
    # 1 ("\n" alone), 10 and 266 (0x0A in the length's low byte), 2560-2815 (in its second).
    pool = [1, 2, 5, 6, 9, 10, 11, 266, 522, 2560, 2570, 2600, 700, 3]
    for trial in range(300):
        lengths = [rnd.choice(pool) for _ in range(rnd.choice([0, 1, 2, 7, 40]))]
        block = _block(lengths, int_size, end_marker=rnd.random() < 0.5)
        rc = RowCounter(int_size)
        cuts = sorted(rnd.sample(range(len(block) + 1), min(len(block), rnd.choice([0, 1, 3, 30]))))
        at = 0
        for cut in [*cuts, len(block)]:
            rc.feed(block, at, cut)
            at = cut
        assert rc.error is None and rc.ended and rc.rows == len(lengths), (lengths, cuts)
    # Not counted: a block cut short (no zero length at its end), a walked row without its newline.
    for bad in (_block([40, 50])[:-12], _block([40])[:30] + b"\x00" * 5, _block([10, 40])[:8] + b"\x00" * 5):
        rc = RowCounter(4)
        rc.feed(bad, 0, len(bad))
        assert rc.error is not None or not rc.ended


def test_row_counter_gives_up_where_walking_would_cost_more_than_a_count() -> None:
    """A table of 10-byte rows has a newline byte in every length: walked one by one it
    would cost ~1 us a row, so the counter stops and the backup counts it with SQL."""
    block = _block([10] * (RowCounter.WALK_LIMIT + 100))
    rc = RowCounter(4)
    rc.feed(block, 0, len(block))
    assert rc.error is not None and "too many" in rc.error


def test_a_changed_value_changes_only_its_table(odd) -> None:
    odd.psql("CREATE DATABASE odd_changed TEMPLATE odd")
    before = checksum_stream(io.BytesIO(_dump(odd, "odd_changed"))).tables
    odd.psql("UPDATE framing SET n = n + 1 WHERE id = 350", "odd_changed")
    odd.psql("VACUUM FULL framing", "odd_changed")  # back into id order: only the value differs
    after = checksum_stream(io.BytesIO(_dump(odd, "odd_changed"))).tables
    assert {t for t in before if before[t] != after[t]} == {"public.framing"}


def test_damage_is_an_error_not_a_checksum(odd) -> None:
    data = _dump(odd)
    for bad, why in ((data[:len(data) // 2], "ended"), (b"PGDMX" + data[5:], "not a pg_dump"),
                     (data[:200], "table of contents"), (data + b"\x01", "")):
        sums = checksum_stream(io.BytesIO(bad))
        assert sums.error is not None and why in sums.error, (why, sums.error)
    # A compressed dump is not read (its blocks are zlib streams), so never hashed wrongly.
    gz = subprocess.run([str(odd.bin / "pg_dump"), "-Fc", "-Z1", "-d", odd.url("odd")], capture_output=True,
                        check=True, timeout=120).stdout
    assert "compressed" in (checksum_stream(io.BytesIO(gz)).error or "")


def test_restore_validates_with_dump_checksums_and_catches_a_changed_row(ws: Workspace, odd) -> None:
    ws.config.write_text(f'[database]\nenabled = true\nurl = "{odd.url("odd")}"\npg_bin_dir = "{odd.bin}"\n'
                         f'[storage]\nlocal_path = "{ws.repo}"\n')
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    md = r.json()["snapshots"][0]["metadata"]
    assert md["checksum_method"] == METHOD
    assert md["checksums"] == {t: h for t, h in checksum_stream(io.BytesIO(_dump(odd))).tables.items()
                               if t in md["tables"]}

    r = ws.cli("restore", "latest", "--target-db", odd.url("odd_copy"), "--json")
    assert r.code == 0, r.err
    assert {t["table"]: t["checksum_ok"] for t in r.json()["tables"]} == {t: True for t in md["tables"]}

    # Validation reads the restored tables back through pg_dump: one changed value is caught.
    odd.psql("UPDATE framing SET n = -1 WHERE id = 5", "odd_copy")
    got = asyncio.run(dump_checksums(PgTarget.from_url(odd.url("odd_copy")), odd.bin, {"public.framing"}))
    assert got.error is None and got.tables["public.framing"] != md["checksums"]["public.framing"]

    # A table restore into another database: only that table is dumped back and compared.
    r = ws.cli("restore", "latest", "--target-db", odd.url("odd_one"), "--table", '"Odd Schema"."we""ird.name"', "--json")
    assert r.code == 0, r.err
    assert [(t["table"], t["checksum_ok"]) for t in r.json()["tables"]] == [('"Odd Schema"."we""ird.name"', True)]
