"""wal-push / wal-fetch: as an archive_command the server really runs, and on files directly."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conftest import Workspace
from wal_support import ServerRepo, enable_archiving, switch_and_wait

SEG = 16 * 1024 * 1024


def _segment(folder: Path, name: str, seed: int, random_bytes: int = 1 << 20) -> Path:
    """A WAL-sized file: some incompressible bytes, then zeros (as a lightly used segment)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    data = hashlib.shake_256(seed.to_bytes(8, "little")).digest(random_bytes)
    p.write_bytes(data + bytes(SEG - len(data)))
    return p


# -- wal-push / wal-fetch on files (no server) ---------------------------------------------


def test_push_is_idempotent_and_refuses_different_content(ws: Workspace) -> None:
    assert ws.cli("init").code == 0
    seg = _segment(ws.root / "a", "000000010000000000000003", 1)
    r = ws.cli("wal-push", str(seg))
    assert r.code == 0 and r.out == "" and r.err == "", r.err  # quiet: the server logs it
    r = ws.cli("wal-push", str(seg), "--json")
    assert r.code == 0 and r.json()["already_archived"] is True

    other = _segment(ws.root / "b", "000000010000000000000003", 2)
    r = ws.cli("wal-push", str(other))
    assert r.code == 17
    assert "000000010000000000000003" in r.err and "different content" in r.err

    # The archived copy is still the first one.
    out = ws.root / "fetched"
    assert ws.cli("wal-fetch", "000000010000000000000003", str(out)).code == 0
    assert out.read_bytes() == seg.read_bytes()


def test_fetch_round_trip_missing_and_history_files(ws: Workspace) -> None:
    assert ws.cli("init").code == 0
    names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "00000002.history",
        "000000010000000000000002.00000028.backup",
    ]
    files = []
    for i, n in enumerate(names):
        if n.endswith((".history", ".backup")):
            p = ws.root / "src2" / n
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(f"START WAL LOCATION: 0/2000028 {i}\n".encode())
        else:
            p = _segment(ws.root / "src2", n, 10 + i)
        files.append(p)
        assert ws.cli("wal-push", str(p)).code == 0
    for n, p in zip(names, files):
        dest = ws.root / "pg_wal" / "RECOVERYXLOG"
        dest.parent.mkdir(exist_ok=True)
        r = ws.cli("wal-fetch", n, str(dest))
        assert r.code == 0, r.err
        assert dest.read_bytes() == p.read_bytes()
    assert not [x for x in (ws.root / "pg_wal").iterdir() if x.name != "RECOVERYXLOG"]  # no temp left

    # Past the end of the archive: exit 1, nothing written, nothing said (recovery ends cleanly).
    r = ws.cli("wal-fetch", "000000010000000000000009", str(ws.root / "pg_wal" / "x"))
    assert (r.code, r.out, r.err) == (1, "", "")
    assert not (ws.root / "pg_wal" / "x").exists()
    assert ws.cli("wal-fetch", "00000003.history", str(ws.root / "pg_wal" / "y")).code == 1

    # Not a WAL name: refused, nothing stored.
    junk = ws.root / "notwal"
    junk.write_bytes(b"x")
    r = ws.cli("wal-push", str(junk))
    assert r.code == 2 and "not a WAL file name" in r.err


def test_damaged_archive_is_never_handed_to_recovery(ws: Workspace) -> None:
    assert ws.cli("init").code == 0
    seg = _segment(ws.root / "a", "000000010000000000000004", 3)
    assert ws.cli("wal-push", str(seg)).code == 0
    # A manifest renamed onto another segment's name does not authenticate.
    (ws.repo / "wal" / "000000010000000000000004").rename(ws.repo / "wal" / "000000010000000000000005")
    dest = ws.root / "out"
    r = ws.cli("wal-fetch", "000000010000000000000005", str(dest))
    assert r.code == 9 and "wal/000000010000000000000005" in r.err
    assert not dest.exists()
    (ws.repo / "wal" / "000000010000000000000005").rename(ws.repo / "wal" / "000000010000000000000004")
    # Flip a byte in every pack: the content no longer opens, and no file appears.
    for pack in (ws.repo / "data").rglob("*"):
        if pack.is_file():
            b = bytearray(pack.read_bytes())
            b[40] ^= 1
            pack.chmod(0o600)
            pack.write_bytes(bytes(b))
    r = ws.cli("wal-fetch", "000000010000000000000004", str(dest))
    assert r.code == 9 and not dest.exists()
    assert not list(ws.root.glob(".out*"))


def test_status_reports_gaps(ws: Workspace) -> None:
    assert ws.cli("init").code == 0
    for n in (
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000005",
        "0000000100000001000000FF",
        "000000010000000200000000",
    ):
        assert ws.cli("wal-push", str(_segment(ws.root / "g", n, 1, random_bytes=64))).code == 0
    r = ws.cli("database", "status", "--json")
    assert r.code == 0, r.err
    st = r.json()
    assert st["segments"] == 5 and st["last_segment"] == "000000010000000200000000"
    assert st["gaps"] == [
        {"from": "000000010000000000000003", "to": "000000010000000000000004"},
        {"from": "000000010000000000000006", "to": "0000000100000001000000FE"},
    ]
    assert 0 <= st["age_seconds"] < 120 and st["recovery_window"] is None


# -- the server's own archive_command --------------------------------------------------------


@pytest.fixture(scope="module")
def archived(pg_cluster):
    c = pg_cluster()
    sr = ServerRepo.create(f'url = "{c.url()}"\nmode = "physical"')
    r = sr.cli("init")
    assert r.code == 0, r.err
    enable_archiving(c, sr.archive_command())
    yield c, sr
    sr.remove()


def test_server_archives_through_wal_push(archived) -> None:
    c, sr = archived
    segs = [switch_and_wait(c) for _ in range(3)]
    stat = c.psql("SELECT archived_count, failed_count FROM pg_stat_archiver").split("|")
    assert int(stat[0]) >= 3 and stat[1] == "0", (sr.dir / "..").resolve()
    names = sorted(os.listdir(sr.repo / "wal"))
    assert all(s in names for s in segs)

    # wal-fetch (as the test user, reading the server's repository) returns the server's bytes.
    for s in segs:
        live = c.dir / "data" / "pg_wal" / s
        out = Path(f"/tmp/{s}.fetched")
        try:
            r = sr.cli("wal-fetch", s, str(out), as_server=False)
            assert r.code == 0, r.err
            if live.exists():  # not yet recycled by a checkpoint
                assert out.read_bytes() == live.read_bytes()
            assert out.stat().st_size == 16 * 1024 * 1024
        finally:
            out.unlink(missing_ok=True)

    r = sr.cli("database", "status", "--json", as_server=False)
    assert r.code == 0, r.err
    st = r.json()
    assert st["last_segment"] == max(n for n in names if len(n) == 24)
    assert st["gaps"] == []
    assert st["server"]["reachable"] and st["server"]["failed_count"] == 0
    assert st["server"]["last_archived_wal"] == st["last_segment"]


def test_archiving_check(archived, pg_cluster, tmp_path) -> None:
    c, sr = archived
    r = sr.cli("database", "archiving", "--json", as_server=False)
    assert r.code == 0, r.out + r.err
    assert r.json()["ok"] is True and r.json()["problems"] == []

    plain = pg_cluster()  # archive_mode off, archive_command empty
    cfg = tmp_path / "plain.toml"
    cfg.write_text(f'[database]\nenabled = true\nurl = "{plain.url()}"\n[storage]\nlocal_path = "{tmp_path}/r"\n')
    ws = Workspace(tmp_path, tmp_path, tmp_path / "r", cfg)
    r = ws.cli("database", "archiving")
    assert r.code == 18, r.out + r.err
    assert "ALTER SYSTEM SET archive_mode = 'on';" in r.out
    assert f"--config {cfg.resolve()} wal-push %p';" in r.out
    assert "archive_mode = 'on'" in r.out and "restart" in r.out
    j = ws.cli("database", "archiving", "--json").json()
    assert j["ok"] is False and j["restart_needed"] is True
    assert j["archive_command"].endswith(f"--config {cfg.resolve()} wal-push %p")
    assert "wal_level" not in " ".join(j["problems"])  # replica is the PG 15 default

    # A physical backup of a server that does not archive is refused before it starts.
    cfg.write_text(cfg.read_text().replace("enabled = true", 'enabled = true\nmode = "physical"'))
    assert ws.cli("init").code == 0
    r = ws.cli("backup")
    assert r.code == 14 and "database archiving" in r.err


def test_the_server_commands_come_from_one_builder(tmp_path, monkeypatch) -> None:
    """archive_command (suggested by `database archiving`) and restore_command (written by a
    point-in-time recovery) name the program the same way; only recovery insists on finding it."""
    import pytest

    from core.errors import UsageError
    from core.sources.postgres.archiving import wanted_archive_command, wanted_restore_command

    cfg = tmp_path / "my config.toml"
    monkeypatch.setenv("AXISOR_BACKUP_PROGRAM", "/opt/axisor backup/bin/axisor-backup")
    quoted = f"'/opt/axisor backup/bin/axisor-backup' --config '{cfg.resolve()}'"
    assert wanted_archive_command(cfg) == f"{quoted} wal-push %p"
    assert wanted_restore_command(cfg) == f"{quoted} wal-fetch %f %p"
    assert wanted_restore_command(cfg, "off site") == f"{quoted} wal-fetch --from 'off site' %f %p"
    monkeypatch.delenv("AXISOR_BACKUP_PROGRAM")
    monkeypatch.setattr("sys.argv", ["python"])
    monkeypatch.setenv("PATH", str(tmp_path))
    assert wanted_archive_command(cfg).startswith("axisor-backup --config")
    with pytest.raises(UsageError, match="AXISOR_BACKUP_PROGRAM"):
        wanted_restore_command(cfg)
