"""Backup types decide what is read, never what a restore needs; snapshots record changes."""

from __future__ import annotations

import random


def _setup(ws, files: int = 20) -> None:
    for i in range(files):
        (ws.src / f"f{i:02}.txt").write_text(f"file {i}\n" * 100)
    ws.cli("init")


def test_incremental_reads_only_changed_files_and_records_changes(ws):
    _setup(ws)
    first = ws.cli("backup", "--json").json()["snapshots"][0]
    assert first["type"] == "full"  # nothing to compare with yet
    assert first["summary"]["files_new"] == 20
    (ws.src / "f00.txt").write_text("changed\n")
    (ws.src / "new.txt").write_text("new\n")
    (ws.src / "f19.txt").unlink()
    second = ws.cli("backup", "--json").json()["snapshots"][0]
    s = second["summary"]
    assert second["type"] == "incremental"
    assert second["parent"] == first["id"]
    assert (s["files_new"], s["files_changed"], s["files_unmodified"], s["files_removed"]) == (1, 1, 18, 1)
    assert s["bytes_read"] == len("changed\n") + len("new\n")


def test_full_rereads_everything_but_stores_nothing_twice(ws):
    _setup(ws)
    ws.cli("backup")
    full = ws.cli("backup", "--type", "full", "--json").json()["snapshots"][0]
    assert full["type"] == "full"
    assert full["summary"]["bytes_read"] == sum(p.stat().st_size for p in ws.src.iterdir())
    assert full["summary"]["data_added"] == 0


def test_differential_compares_with_the_latest_full(ws):
    _setup(ws)
    base = ws.cli("backup", "--json").json()["snapshots"][0]
    (ws.src / "f01.txt").write_text("one\n")
    ws.cli("backup")  # incremental picks up f01
    (ws.src / "f02.txt").write_text("two\n")
    diff = ws.cli("backup", "--type", "differential", "--json").json()["snapshots"][0]
    assert diff["type"] == "differential"
    assert diff["parent"] == base["id"]
    # Against the full, both f01 and f02 changed, even though an incremental saw f01.
    assert diff["summary"]["files_changed"] == 2


def test_every_snapshot_restores_on_its_own(ws):
    _setup(ws, files=5)
    ids = []
    for round_ in range(3):
        (ws.src / "f00.txt").write_text(f"round {round_}\n")
        ids.append(ws.cli("backup", "--json").json()["snapshots"][0]["id"])
    for round_, sid in enumerate(ids):
        target = ws.root / f"r{round_}"
        assert ws.cli("restore", sid[:10], "--target", str(target)).code == 0
        assert (target / str(ws.src).lstrip("/") / "f00.txt").read_text() == f"round {round_}\n"


def test_editing_the_middle_of_a_large_file_adds_little(ws):
    rnd = random.Random(3)
    big = ws.src / "dump.sql"
    data = bytearray(rnd.randbytes(24_000_000))
    big.write_bytes(data)
    ws.cli("init")
    ws.cli("backup")
    data[12_000_000:12_000_000] = b"INSERTED ROW\n" * 10
    big.write_bytes(data)
    s = ws.cli("backup", "--json").json()["snapshots"][0]["summary"]
    assert s["files_changed"] == 1
    # Content-defined chunks: an insertion touches about one or two ~1 MiB chunks.
    assert 0 < s["data_added"] < 5_000_000


def test_each_category_is_its_own_snapshot_in_one_backup_set(ws):
    users, logs, env = ws.root / "users", ws.root / "logs", ws.root / "etc"
    for d in (users, logs, env):
        d.mkdir()
        (d / "x").write_text(d.name)
    ws.write_config(user_data=[users], log_files=[logs], **{"configuration.environment_vars": [env]})
    ws.cli("init")
    snaps = ws.cli("backup", "--json").json()["snapshots"]
    assert [s["source"] for s in snaps] == [
        "application/user_data",
        "application/log_files",
        "configuration/environment_vars",
    ]
    assert len({s["backup_set"] for s in snaps}) == 1
    only = ws.cli("backup", "--source", "log_files", "--json").json()["snapshots"]
    assert [s["source"] for s in only] == ["application/log_files"]
    bad = ws.cli("backup", "--source", "nope")
    assert bad.code == 2 and "unknown source 'nope'" in bad.err
    # latest = the newest backup set; latest:SOURCE = newest snapshot of one source.
    target = ws.root / "out"
    r = ws.cli("restore", "latest:application/user_data", "--target", str(target), "--json")
    assert [x["source"] for x in r.json()["restored"]] == ["application/user_data"]
    assert (target / str(users).lstrip("/") / "x").read_text() == "users"


def test_catalog_show_and_ls(ws):
    _setup(ws, files=3)
    ws.cli("backup", "--tag", "nightly")
    cat = ws.cli("snapshots")
    assert cat.code == 0
    header, row = cat.out.splitlines()[:2]
    for col in ("ID", "TIME", "SOURCE", "TYPE", "SIZE", "FILES", "NEW", "RATIO", "TAGS"):
        assert col in header
    assert "application/user_data" in row and "nightly" in row
    snap = ws.cli("snapshots", "--json").json()["snapshots"][0]
    assert set(snap) >= {"id", "time", "source", "type", "parent", "tags", "summary", "backup_set", "paths"}
    shown = ws.cli("show", snap["id"][:6])
    assert shown.code == 0 and snap["id"] in shown.out
    assert ws.cli("show", "ffffffffff").code == 13
    names = ws.cli("ls", "latest", str(ws.src)).out.splitlines()
    assert names[0] == str(ws.src) and len(names) == 4
    long = ws.cli("ls", "-l", "latest", str(ws.src / "f00.txt")).out
    assert long.startswith("-rw-") and long.rstrip().endswith("f00.txt")


def test_keys_add_list_passwd_remove(ws):
    _setup(ws, files=1)
    ws.cli("backup")
    add = ws.cli("key", "add", "--json", env={"AXISOR_BACKUP_NEW_PASSPHRASE": "second passphrase"})
    assert add.code == 0
    keys = ws.cli("key", "list", "--json").json()
    assert len(keys) == 2 and sum(k["current"] for k in keys) == 1
    # Both passphrases open the same repository.
    assert ws.cli("snapshots", passphrase="second passphrase").code == 0
    # The key in use cannot be removed.
    current = next(k for k in keys if k["current"])["id"]
    assert ws.cli("key", "remove", current[:8]).code == 2
    # passwd replaces the key in use: the old passphrase stops working.
    pw = ws.cli("key", "passwd", env={"AXISOR_BACKUP_NEW_PASSPHRASE": "third passphrase"})
    assert pw.code == 0, pw.err
    assert ws.cli("snapshots").code == 4
    assert ws.cli("snapshots", passphrase="third passphrase").code == 0
    other = next(k for k in ws.cli("key", "list", "--json", passphrase="third passphrase").json() if not k["current"])
    assert ws.cli("key", "remove", other["id"][:8], passphrase="third passphrase").code == 0
    assert ws.cli("snapshots", passphrase="second passphrase").code == 4
    assert ws.cli("snapshots", passphrase="third passphrase").code == 0


def test_config_check_reports_problems_with_key_paths(ws):
    ws.config.write_text('[storage]\nlocal_path = "/x"\ncompresion_level = 3\n[application]\nuser_data = true\n')
    r = ws.cli("config", "check")
    assert r.code == 2
    assert "storage.compresion_level" in r.out and "compression_level" in r.out
    assert "application.user_data" in r.out
    ok = ws.write_config()
    assert ws.cli("config", "check").code == 0
    assert ok.exists()


def test_a_missing_source_fails_alone(ws):
    users, logs = ws.root / "users", ws.root / "gone"
    users.mkdir()
    (users / "x").write_text("kept")
    ws.write_config(user_data=[users], log_files=[logs])
    ws.cli("init")
    r = ws.cli("backup", "--json")
    assert r.code == 11
    out = r.json()
    assert [s["source"] for s in out["snapshots"]] == ["application/user_data"]
    assert out["failed"][0]["source"] == "application/log_files"
    assert str(logs) in out["failed"][0]["error"] and str(logs) in r.err
