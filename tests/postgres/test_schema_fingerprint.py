"""The schema fingerprint compared at restore (issue 14): a correct pg_dump/pg_restore round
trip of the truth test's shapes (inheritance children whose column order pg_restore cannot
keep, dropped columns, partitions, odd identifiers) matches; a real schema change (a column
added, dropped or retyped, a table missing) does not."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from core.sources.postgres.fingerprint import FINGERPRINT_METHOD, schema_fingerprint
from postgres.test_pg_truth import SHAPES


@pytest.fixture(scope="module")
def restored(pg_each_cluster):
    c = pg_each_cluster()
    c.createdb("fp_src")
    c.psql(SHAPES, "fp_src")
    c.createdb("fp_dst")
    dump = subprocess.run(
        [str(c.bin / "pg_dump"), "-Fc", "-d", c.url("fp_src")], capture_output=True, check=True, timeout=120
    ).stdout
    subprocess.run(
        [str(c.bin / "pg_restore"), "--no-owner", "--exit-on-error", "-d", c.url("fp_dst")],
        input=dump,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return c


async def _fingerprint(url: str, method: str | None = FINGERPRINT_METHOD) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await schema_fingerprint(conn, method)


async def test_a_correct_restore_matches_though_children_come_back_reordered(restored) -> None:
    c = restored
    # The inheritance children really did come back in another column order.
    order = (
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = 'inh_child2'::regclass AND attnum > 0 AND NOT attisdropped"
    )
    assert c.psql(order, "fp_src") != c.psql(order, "fp_dst")
    assert await _fingerprint(c.url("fp_src")) == await _fingerprint(c.url("fp_dst"))
    # The first method (attnum order) said "differs" here: why snapshots now record canonical-v2.
    assert await _fingerprint(c.url("fp_src"), None) != await _fingerprint(c.url("fp_dst"), None)


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE inh_child1 ADD COLUMN added int",
        "ALTER TABLE inh_child2 DROP COLUMN own",
        "ALTER TABLE types_child ALTER COLUMN extra TYPE bigint",
        "ALTER TABLE gen ALTER COLUMN c TYPE varchar(10)",
        'ALTER TABLE dot."t.u" RENAME COLUMN v TO w',
        'ALTER TABLE "part s"."Measure" DETACH PARTITION "part s".m2024',
        'DROP TABLE "dot.t".u',
        'DROP TABLE public."line\nbreak"',
        'ALTER TABLE "Sales Dept".orders ALTER COLUMN amount SET NOT NULL',
        'CREATE INDEX extra_idx ON sales."Orders" (note)',
    ],
)
async def test_a_real_schema_change_differs(restored, change: str) -> None:
    c = restored
    want = await _fingerprint(c.url("fp_src"))
    async with await psycopg.AsyncConnection.connect(c.url("fp_dst")) as conn:
        await conn.execute(change)
        got = await schema_fingerprint(conn)
        await conn.rollback()
    assert got != want, change


def test_section_text_is_json_dumps_per_row():
    """canonical-v2's bytes: rows joined by section_text are json.dumps(row, ensure_ascii=False)
    + "\n" each, whatever the strings hold (quotes, backslashes, control characters, non-ASCII,
    surrogates from undecodable names, the row separator itself)."""
    import json

    from core.sources.postgres.fingerprint import section_text

    rows = [
        ["public", "t", "r", "", "1", "id", "integer", "True", "nextval('t_id_seq'::regclass)", ""],
        ['we"ird', "a\\b", "\n\t\r\x00\x1f\x7f", "é€𝄞", "\udcff", "], [", '", "', "", " ", "\u2028\u2029"],
        [],
        [""],
    ]
    assert section_text(rows) == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    assert section_text([]) == ""
