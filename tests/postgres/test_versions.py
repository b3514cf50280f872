"""The PostgreSQL version matrix (issue 14): a logical round trip against every major version
installed on the host (pg_each_cluster, tests/postgres/conftest.py), and the version rules
with real programs whose ``--version`` is faked by a wrapper in ``pg_bin_dir``: pg_dump must
be at least the server's major version, pg_restore at least that of the pg_dump that wrote
the dump (else exit 15, before anything is written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Workspace

DIGEST = "SELECT count(*) || ':' || md5(string_agg(id::text || v, ',' ORDER BY id)) FROM items"


@pytest.fixture(scope="module")
def versioned(pg_each_cluster, tmp_path_factory):
    c = pg_each_cluster()
    c.createdb("vsrc")
    c.psql(
        "CREATE TABLE items (id int PRIMARY KEY, v text); "
        "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
        "vsrc",
    )
    root = tmp_path_factory.mktemp("versions")
    (root / "src").mkdir()
    ws = Workspace(root, root / "src", root / "repo", root / "config.toml")
    _config(ws, c, c.bin)
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json", timeout=180)
    assert r.code == 0, r.err
    ws.snapshot = r.json()["snapshots"][0]  # type: ignore[attr-defined]
    return c, ws


def _config(ws: Workspace, c, bin_dir: Path) -> None:
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{c.url("vsrc")}"\npg_bin_dir = "{bin_dir}"\n'
        f'[storage]\nlocal_path = "{ws.repo}"\n'
    )


def _faking(folder: Path, real: Path, name: str, version: str) -> Path:
    """A pg_bin_dir whose ``name`` says it is ``version`` and otherwise runs the real program."""
    folder.mkdir(parents=True, exist_ok=True)
    for tool in ("pg_dump", "pg_dumpall", "pg_restore", "psql"):
        if tool != name:
            (folder / tool).symlink_to(real / tool)
    w = folder / name
    w.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && {{ echo "{name} (PostgreSQL) {version}"; exit 0; }}\n'
        f'exec "{real}/{name}" "$@"\n'
    )
    w.chmod(0o755)
    return folder


def test_logical_round_trip(versioned) -> None:
    c, ws = versioned
    md = ws.snapshot["metadata"]
    major = int(c.psql("SHOW server_version_num")) // 10000
    assert md["server_version_num"] // 10000 == major and md["pg_dump_major"] == major
    r = ws.cli("restore", ws.snapshot["id"][:12], "--target-db", c.url("vdst"), "--json", timeout=180)
    assert r.code == 0, (r.out, r.err)
    rep = r.json()
    assert rep["ok"] and rep["schema_fingerprint_match"] is True
    assert [(t["table"], t["actual"], t["checksum_ok"]) for t in rep["tables"]] == [("public.items", 2000, True)]
    assert c.psql(DIGEST, "vdst") == c.psql(DIGEST, "vsrc")


def test_pg_dump_older_than_the_server_is_refused(versioned) -> None:
    c, ws = versioned
    major = int(c.psql("SHOW server_version_num")) // 10000
    before = sorted((ws.repo / "snapshots").iterdir())
    _config(ws, c, _faking(ws.root / "old-dump", c.bin, "pg_dump", f"{major - 1}.9"))
    try:
        r = ws.cli("backup", "--json", timeout=180)
    finally:
        _config(ws, c, c.bin)
    assert r.code == 15, (r.out, r.err)
    assert f"version {major - 1}.9, older than the server" in r.err
    assert f"pg_dump must be at least major version {major}" in r.err and "pg_bin_dir" in r.err
    assert sorted((ws.repo / "snapshots").iterdir()) == before


def test_pg_restore_older_than_the_dumps_pg_dump_is_refused(versioned) -> None:
    c, ws = versioned
    major = int(c.psql("SHOW server_version_num")) // 10000
    _config(ws, c, _faking(ws.root / "old-restore", c.bin, "pg_restore", f"{major - 1}.9"))
    try:
        r = ws.cli("restore", ws.snapshot["id"][:12], "--target-db", c.url("vold"), "--json", timeout=180)
    finally:
        _config(ws, c, c.bin)
    assert r.code == 15, (r.out, r.err)
    assert "older than the pg_dump that wrote this snapshot" in r.err
    assert f"pg_restore must be at least major version {major}" in r.err
    assert c.psql("SELECT count(*) FROM pg_database WHERE datname = 'vold'") == "0"  # nothing created


def test_a_newer_pg_dump_is_accepted_and_then_needs_as_new_a_pg_restore(versioned) -> None:
    c, ws = versioned
    major = int(c.psql("SHOW server_version_num")) // 10000
    _config(ws, c, _faking(ws.root / "new-dump", c.bin, "pg_dump", f"{major + 1}.1"))
    try:
        r = ws.cli("backup", "--json", timeout=180)
    finally:
        _config(ws, c, c.bin)
    assert r.code == 0, (r.out, r.err)
    assert r.json()["snapshots"][0]["metadata"]["pg_dump_major"] == major + 1
    # The real pg_restore (major) is older than the pg_dump the snapshot records.
    r = ws.cli("restore", "latest", "--target-db", c.url("vnew"), "--json", timeout=180)
    assert r.code == 15 and f"pg_restore must be at least major version {major + 1}" in r.err, (r.out, r.err)
