"""A logical dump in parts (``[database] dump_jobs``, ``backup --dump-jobs``): the pure
assignment of tables to parts (Hypothesis), the tree version that makes a program without
parts refuse such a snapshot, and backups and restores against a real cluster with tables
whose names pg_dump's patterns would misread unquoted."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Workspace
from core.repository import tree as tree_mod
from core.repository.tree import FILE, Node, Tree, TreeFormatError
from core.sources.postgres import names
from core.sources.postgres.dump_parts import assign_parts, part_options, read_parts

# -- the assignment, pure -----------------------------------------------------------------

_names = st.text(alphabet=st.sampled_from('ab.* ?"\nZ_'), min_size=1, max_size=6)
_tables = st.lists(st.tuples(_names, _names, st.integers(0, 10**9)), max_size=40, unique_by=lambda t: (t[0], t[1]))


@settings(max_examples=300, deadline=None)
@given(_tables, st.integers(1, 16))
def test_every_table_lands_in_exactly_one_part_and_the_parts_are_balanced(tables, jobs) -> None:
    parts = assign_parts(tables, jobs)
    placed = [t for p in parts for t in p]
    assert sorted(placed) == sorted((s, n) for s, n, _ in tables)  # each exactly once
    assert 1 <= len(parts) <= jobs and all(parts[1:])  # no empty part but part 0
    assert assign_parts(list(reversed(tables)), jobs) == parts  # deterministic, whatever the order
    size = {(s, n): z for s, n, z in tables}
    loads = [sum(size[t] for t in p) for p in parts]
    if len(parts) > 1:
        assert max(loads) - min(loads) <= max(size.values())
    if len(parts) < jobs:  # fewer parts only when there are fewer tables than jobs
        assert len(parts) == max(1, len(tables))


def test_part_options_quote_every_name_exactly() -> None:
    parts = ((("public", "a"),), (("s p", 'we."ird'), ("public", "t?x*")), (("x.y", "Line\nBreak"),))
    assert part_options(parts, 0) == [
        '--exclude-table-data="s p"."we.""ird"',
        '--exclude-table-data="public"."t?x*"',
        '--exclude-table-data="x.y"."Line\nBreak"',
    ]
    assert part_options(parts, 2) == ["--data-only", '--table="x.y"."Line\nBreak"']
    with pytest.raises(ValueError):
        part_options(((("public", "a"),), ()), 1)


def test_malformed_parts_metadata_is_refused_not_half_read() -> None:
    good = {
        "dump_parts": [
            {"part": 0, "file": "d.dump", "tables": []},
            {"part": 1, "file": "d.dump.part1", "tables": ['"S"."t.u"']},
        ]
    }
    assert read_parts(good)[1].tables == (("S", "t.u"),)
    assert read_parts({}) == ()
    for bad in ([], [{"part": 0, "file": "d", "tables": []}], [{"part": 1, "file": "d", "tables": []}] * 2):
        with pytest.raises(Exception, match="dump_parts is malformed"):
            read_parts({"dump_parts": bad})


def test_dump_jobs_option_is_checked_and_keeps_the_run_in_this_process(capsys) -> None:
    from app.cli_jobs import limited_here
    from app.cli_parser import build_parser

    parse = build_parser().parse_args
    assert parse(["backup", "--dump-jobs", "4"]).dump_jobs == 4
    assert parse(["backup"]).dump_jobs is None and not limited_here(parse(["backup"]))
    assert limited_here(parse(["backup", "--dump-jobs", "2"]))  # a daemon would use its own config
    for bad in ("0", "17", "two"):
        with pytest.raises(SystemExit) as exc:
            parse(["backup", "--dump-jobs", bad])
        assert exc.value.code == 2 and "from 1 to 16" in capsys.readouterr().err


def _node(name: bytes, part: int = 0) -> Node:
    return Node(name=name, type=FILE, mode=stat.S_IFREG | 0o600, uid=0, gid=0, mtime_ns=0, size=0, part=part)


def test_a_tree_with_parts_is_version_3_and_a_reader_without_parts_refuses_it(monkeypatch) -> None:
    single = Tree([_node(b"app.dump"), _node(b"globals.sql")]).encode()
    parted = Tree([_node(b"app.dump"), _node(b"app.dump.part1", 1), _node(b"globals.sql")]).encode()
    import msgpack

    assert msgpack.unpackb(single)["v"] == 1  # a dump in one piece: as before, byte for byte
    assert msgpack.unpackb(parted)["v"] == 3
    assert Tree.decode(parted).nodes[1].part == 1
    # A program that knows versions 1 and 2 only (before parts) stops, saying why.
    monkeypatch.setattr(tree_mod, "TREE_VERSIONS", (1, 2))
    with pytest.raises(TreeFormatError, match="tree version 3 is not one this program reads.*upgrade to restore it"):
        Tree.decode(parted)
    monkeypatch.undo()
    forged = msgpack.packb({"v": 2, "nodes": msgpack.unpackb(parted, raw=False)["nodes"]}, use_bin_type=True)
    with pytest.raises(TreeFormatError, match="needs version 3"):
        Tree.decode(forged)


# -- against a real cluster -------------------------------------------------------------------

ODD = 'We.ird "Name"\n*?'
SCHEMA_SQL = f"""
CREATE SCHEMA "odd schema";
CREATE TABLE public.big (id int PRIMARY KEY, v text);
INSERT INTO public.big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 30000) g;
CREATE TABLE public.medium (id int PRIMARY KEY, v text, big_id int REFERENCES public.big(id));
INSERT INTO public.medium SELECT g, md5(g::text), g FROM generate_series(1, 12000) g;
CREATE TABLE public.tax (id int PRIMARY KEY, v text);
INSERT INTO public.tax SELECT g, 'tax' || g FROM generate_series(1, 5000) g;
CREATE TABLE public."t?x" (id int PRIMARY KEY, v text);
INSERT INTO public."t?x" SELECT g, 'q' || g FROM generate_series(1, 4000) g;
CREATE TABLE public.{names.quote(ODD)} (id int PRIMARY KEY, v text);
INSERT INTO public.{names.quote(ODD)} SELECT g, 'odd' || g FROM generate_series(1, 6000) g;
CREATE TABLE "odd schema".measures (id int, at date, v text) PARTITION BY RANGE (at);
CREATE TABLE "odd schema"."m 2025" PARTITION OF "odd schema".measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE "odd schema"."m 2026" PARTITION OF "odd schema".measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO "odd schema".measures SELECT g, date '2025-01-01' + g % 700, md5(g::text) FROM generate_series(1, 9000) g;
CREATE TABLE public.animals (id int, v text);
CREATE TABLE public.dogs (breed text) INHERITS (public.animals);
INSERT INTO public.animals SELECT g, 'a' || g FROM generate_series(1, 3000) g;
INSERT INTO public.dogs SELECT g, 'd' || g, 'b' FROM generate_series(1, 3500) g;
CREATE TABLE public.empty_one (id int, v text);
CREATE SEQUENCE public.counter;
SELECT setval('public.counter', 777);
SELECT lo_from_bytea(0, 'a large object''s bytes');
ANALYZE;
"""
ROWS = {
    "public.big": 30000,
    "public.medium": 12000,
    "public.tax": 5000,
    'public."t?x"': 4000,
    names.key("public", ODD): 6000,
    '"odd schema"."m 2025"': 9000 * 365 // 700 + 1,  # filled in from the server below
    '"odd schema"."m 2026"': 0,
    "public.animals": 3000,
    "public.dogs": 3500,
    "public.empty_one": 0,
}


@pytest.fixture(scope="module")
def parted_source(pg_cluster):
    c = pg_cluster()
    c.createdb("app")
    c.psql(SCHEMA_SQL, "app")
    for key in ('"odd schema"."m 2025"', '"odd schema"."m 2026"'):
        ROWS[key] = int(c.psql(f"SELECT count(*) FROM ONLY {key}", "app"))
    return c


def _config(ws: Workspace, url: str, jobs: int | None, extra: str = "") -> None:
    lines = ["[database]", "enabled = true", f'url = "{url}"']
    if jobs is not None:
        lines.append(f"dump_jobs = {jobs}")
    lines += [extra, "[storage]", f'local_path = "{ws.repo}"']
    ws.config.write_text("\n".join(lines) + "\n")


@pytest.fixture
def pws(ws: Workspace, parted_source) -> Workspace:
    _config(ws, parted_source.url("app"), 3)
    assert ws.cli("init").code == 0
    return ws


def _latest(ws: Workspace) -> dict:
    r = ws.cli("snapshots", "--json")
    assert r.code == 0, r.err
    return r.json()["snapshots"][-1]


def _check_parts(snap: dict, jobs: int) -> list[dict]:
    md = snap["metadata"]
    parts = md["dump_parts"]
    assert len(parts) == jobs and [p["part"] for p in parts] == list(range(jobs))
    placed = [k for p in parts for k in p["tables"]]
    assert sorted(placed) == sorted(ROWS)  # every table's data in exactly one part
    assert md["tables"] == ROWS and set(md["checksums"]) == set(ROWS)
    assert parts[0]["file"] == md["dump_file"] and parts[1]["file"] == md["dump_file"] + ".part1"
    assert snap["summary"]["total_files"] == jobs + 1  # the parts and globals.sql
    return parts


def _tree_version(ws: Workspace, tree: str) -> int:
    import asyncio

    import msgpack

    from conftest import PASSPHRASE
    from core.repository.format import BlobType
    from core.repository.repository import Repository
    from core.storage.local import LocalBackend

    async def read() -> int:
        repo = await Repository.open(LocalBackend(ws.repo), PASSPHRASE)
        await repo.load_index()
        return msgpack.unpackb(await repo.load_blob(BlobType.TREE, bytes.fromhex(tree)), raw=False)["v"]

    return asyncio.run(read())


CONTENT = (
    "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM ("
    "SELECT b::text x FROM public.big b UNION ALL SELECT m::text FROM public.medium m "
    f'UNION ALL SELECT o::text FROM public.{names.quote(ODD)} o UNION ALL SELECT q::text FROM "odd schema".measures q '
    'UNION ALL SELECT a::text FROM public.animals a UNION ALL SELECT t::text FROM public."t?x" t) s'
)


def test_backup_in_parts_restores_whole_and_validated(pws: Workspace, parted_source) -> None:
    c = parted_source
    r = pws.cli("backup", "--dump-jobs", "2", "--json")  # the option overrides dump_jobs = 3
    assert r.code == 0, r.err
    _check_parts(_latest(pws), 2)
    r = pws.cli("backup", "--json")
    assert r.code == 0, r.err
    snap = _latest(pws)
    _check_parts(snap, 3)
    ls = pws.cli("ls", snap["id"][:12])
    assert "app.dump.part2" in ls.out, ls.out

    r = pws.cli("restore", snap["id"][:12], "--target-db", c.url("copy3"), "--json")
    assert r.code == 0, (r.out, r.err)
    rep = r.json()
    assert rep["ok"] and rep["mismatches"] == [] and rep["schema_fingerprint_match"]
    assert {t["table"]: t["actual"] for t in rep["tables"]} == ROWS
    assert all(t["checksum_ok"] for t in rep["tables"])
    assert rep["validation"]["validated"] == len(ROWS) and rep["large_objects"]["ok"]
    assert c.psql(CONTENT, "copy3") == c.psql(CONTENT, "app")
    assert c.psql("SELECT last_value FROM public.counter", "copy3") == "777"
    assert c.psql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", "copy3") == "1"

    # N = 1: the snapshot as before this work (no dump_parts, no part node, tree version 1).
    r = pws.cli("backup", "--dump-jobs", "1", "--json")
    assert r.code == 0, r.err
    single = _latest(pws)
    assert "dump_parts" not in single["metadata"] and single["summary"]["total_files"] == 2
    assert single["metadata"]["tables"] == ROWS and set(single["metadata"]["checksums"]) == set(ROWS)
    assert _tree_version(pws, single["tree"]) == 1 and _tree_version(pws, snap["tree"]) == 3

    # --force over a database cannot keep the all-or-nothing promise with parts: refused, unchanged.
    r = pws.cli("restore", snap["id"][:12], "--target-db", c.url("copy3"), "--force")
    assert r.code == 12 and "in 3 parts" in r.err, r.err


def test_table_and_schema_restore_from_parts(pws: Workspace, parted_source) -> None:
    c = parted_source
    assert pws.cli("backup").code == 0
    parts = _check_parts(_latest(pws), 3)
    # (an inheritance child alone needs its parent: not restorable by --table, parts or not)
    table = next(t for t in parts[1]["tables"] if t != "public.dogs")
    r = pws.cli("restore", "latest", "--target-db", c.url("one_table"), "--table", table, "--json")
    assert r.code == 0, (r.out, r.err)
    rep = r.json()
    assert rep["ok"] and [t["table"] for t in rep["tables"]] == [table]
    assert rep["tables"][0]["actual"] == ROWS[table] and rep["tables"][0]["checksum_ok"]

    r = pws.cli("restore", "latest", "--target-db", c.url("one_schema"), "--schema", '"odd schema"', "--json")
    assert r.code == 0, (r.out, r.err)
    rep = r.json()
    assert rep["ok"] and {t["table"]: t["actual"] for t in rep["tables"]} == {
        k: v for k, v in ROWS.items() if k.startswith('"odd schema".')
    }


def _tampering_bin(folder: Path, real: Path, sql: Path) -> Path:
    """pg_bin_dir whose pg_restore changes a row once the post-data step has run."""
    folder.mkdir()
    for name in ("pg_dump", "pg_dumpall", "psql"):
        (folder / name).symlink_to(real / name)
    (folder / "pg_restore").write_text(
        "#!/bin/sh\n"
        f'"{real}/pg_restore" "$@"; rc=$?\n'
        'case "$*" in *--section=post-data*)\n'
        '  prev=""; for a in "$@"; do [ "$prev" = "-d" ] && db="$a"; prev="$a"; done\n'
        f'  "{real}/psql" -X -q -v ON_ERROR_STOP=1 -d "$db" -f "{sql}" || exit 99 ;;\n'
        "esac\n"
        "exit $rc\n"
    )
    (folder / "pg_restore").chmod(0o755)
    return folder


def test_a_changed_row_in_a_part_is_caught(pws: Workspace, parted_source, pg_bin) -> None:
    c = parted_source
    assert pws.cli("backup").code == 0
    table = next(t for t in _check_parts(_latest(pws), 3)[1]["tables"] if ROWS[t])
    sql = pws.root / "tamper.sql"
    sql.write_text(f"UPDATE {table} SET v = v || '!' WHERE id = (SELECT min(id) FROM {table});\n")
    bins = _tampering_bin(pws.root / "bin", pg_bin, sql)
    _config(pws, c.url("app"), 3, f'pg_bin_dir = "{bins}"')
    r = pws.cli("restore", "latest", "--target-db", c.url("tampered"), "--json")
    assert r.code == 16, (r.out, r.err)
    rep = r.json()
    assert [m["table"] for m in rep["mismatches"]] == [table]
    assert rep["mismatches"][0]["checksum_ok"] is False and rep["mismatches"][0]["actual"] == ROWS[table]
    assert json.dumps(rep["validation"])  # every table still counted
    assert rep["validation"]["validated"] == len(ROWS)


def test_a_table_in_two_parts_or_missing_from_its_part_fails_the_backup() -> None:
    from types import SimpleNamespace

    from core.errors import DatabaseError
    from core.sources.postgres.logical_backup import _union

    def part(*keys: str) -> SimpleNamespace:
        return SimpleNamespace(tables={k: k[-1] for k in keys}, counts={k: 1 for k in keys})

    plan = ((("public", "a"),), (("public", "b"),))
    counts, sums = _union([part("public.a"), part("public.b")], plan)  # type: ignore[list-item]
    assert sums == {"public.a": "a", "public.b": "b"} and counts == {"public.a": 1, "public.b": 1}
    with pytest.raises(DatabaseError, match="has data in parts 0 and 1"):
        _union([part("public.a", "public.b"), part("public.b")], plan)  # type: ignore[list-item]
    with pytest.raises(DatabaseError, match="part 1 of the dump does not hold the data it was given"):
        _union([part("public.a"), part()], plan)  # type: ignore[list-item]


def _pg_dump_children() -> list[int]:
    """This process's pg_dump children not reaped yet (zombies included)."""
    from proc_support import children

    return children("pg_dump")


def test_a_cancelled_backup_stops_every_part_and_saves_nothing(parted_source, tmp_path, monkeypatch) -> None:
    import asyncio

    from conftest import PASSPHRASE
    from core.config import DatabaseConfig
    from core.repository.repository import Repository
    from core.sources.postgres import logical_backup
    from core.storage.local import LocalBackend

    real = logical_backup.store_output

    async def part_1_never_ends(*args, **kwargs):
        if kwargs.get("program", "").startswith("pg_dump (part 1 "):
            await asyncio.Event().wait()  # its pg_dump runs on, blocked on a full pipe
        return await real(*args, **kwargs)

    monkeypatch.setattr(logical_backup, "store_output", part_1_never_ends)

    async def run() -> None:
        await Repository.create(LocalBackend(tmp_path / "repo"), PASSPHRASE, pack_size=4 * 1024 * 1024)
        repo = await Repository.open(LocalBackend(tmp_path / "repo"), PASSPHRASE)
        await repo.load_index()
        db = DatabaseConfig(enabled=True, url=parted_source.url("app"), dump_jobs=3)
        task = asyncio.ensure_future(logical_backup.backup_logical(repo, db, jobs=db.dump_jobs))
        for _ in range(200):
            if len(_pg_dump_children()) == 3:
                break
            await asyncio.sleep(0.05)
        assert len(_pg_dump_children()) == 3  # the three parts, started at once
        await asyncio.sleep(1.0)  # parts 0 and 2 stored, part 1 held
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _pg_dump_children() == []  # every pg_dump killed and reaped
        snaps, _ = await repo.list_snapshots()
        assert snaps == []

    asyncio.run(run())


def test_a_failing_part_drops_the_database_the_restore_created(pws: Workspace, parted_source, pg_bin) -> None:
    c = parted_source
    assert pws.cli("backup").code == 0
    bins = pws.root / "failing"
    bins.mkdir()
    for name in ("pg_dump", "pg_dumpall", "psql"):
        (bins / name).symlink_to(pg_bin / name)
    (bins / "pg_restore").write_text(
        "#!/bin/sh\n"
        'case "$*" in *--section=data*) head -c 1000 >/dev/null; '
        'echo "pg_restore: error: simulated part failure" >&2; exit 1 ;; esac\n'
        f'exec "{pg_bin}/pg_restore" "$@"\n'
    )
    (bins / "pg_restore").chmod(0o755)
    _config(pws, c.url("app"), 3, f'pg_bin_dir = "{bins}"')
    r = pws.cli("restore", "latest", "--target-db", c.url("never_kept_parts"))
    assert r.code == 14 and "simulated part failure" in r.err, r.err
    assert c.psql("SELECT count(*) FROM pg_database WHERE datname = 'never_kept_parts'") == "0"


def test_dump_jobs_is_a_logical_key(tmp_path) -> None:
    from core.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text(
        f'[database]\nenabled = true\nmode = "physical"\ndump_jobs = 2\n[storage]\nlocal_path = "{tmp_path}"\n'
    )
    with pytest.raises(ConfigError, match=r"database\.dump_jobs.*only applies to mode = \"logical\""):
        load_config(path)
    path.write_text(f'[database]\nenabled = true\ndump_jobs = 17\n[storage]\nlocal_path = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match="dump_jobs"):
        load_config(path)
    path.write_text(f'[database]\nenabled = true\ndump_jobs = 16\n[storage]\nlocal_path = "{tmp_path}"\n')
    assert load_config(path).database.dump_jobs == 16
