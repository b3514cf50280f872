"""The server archives with a write-only key of its own (issue 17, item 1): `database
archiving --setup` makes it, the archive_command it prints uses it, the real server's
archiver pushes every segment with it, and the server's OS user can read nothing back.
Real PostgreSQL, real archive_command, run as the server's OS user."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from wal_support import ServerRepo, enable_archiving, switch_and_wait


@pytest.fixture(scope="module")
def server(pg_cluster):
    c = pg_cluster()
    sr = ServerRepo.create(f'url = "{c.url()}"\nmode = "physical"')
    assert sr.cli("init").code == 0
    yield c, sr
    sr.remove()


def _as_server_with(sr: ServerRepo, passphrase: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env["AXISOR_BACKUP_PASSPHRASE"] = passphrase
    argv = [str(sr.wrapper), "--config", str(sr.config), *args]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, cwd="/tmp", env=env, capture_output=True, text=True, timeout=120)


def test_the_server_archives_with_its_own_write_only_key(server) -> None:
    c, sr = server
    key_file = sr.dir / "wal-writer.key"
    owner = "postgres" if os.geteuid() == 0 else None
    r = sr.cli(
        "database",
        "archiving",
        "--setup",
        "--key-file",
        str(key_file),
        *(["--owner", owner] if owner else []),
        "--json",
    )
    assert r.code == 18, r.out + r.err  # not archiving yet: the settings to make are printed
    j = r.json()
    assert j["write_only_key"]["key_file"] == str(key_file)
    assert j["archive_command"].endswith(f"wal-push %p --key-file {key_file.resolve()}")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    # Never overwritten: a second --setup refuses (exit 2) and leaves the key as it is.
    again = sr.cli("database", "archiving", "--setup", "--key-file", str(key_file))
    assert again.code == 2 and "exists" in again.err

    enable_archiving(c, j["archive_command"])
    segs = [switch_and_wait(c) for _ in range(2)]
    failed = c.psql("SELECT failed_count FROM pg_stat_archiver")
    assert failed == "0", (sr.dir / "..").resolve()
    assert all((sr.repo / "wal" / s).exists() for s in segs)

    # The server's key reads nothing: exit 27 for each attempt, before any change.
    writer = key_file.read_text().strip()
    for args in (("snapshots",), ("wal-fetch", segs[0], "/tmp/never-fetched"), ("prune",), ("key", "list")):
        p = _as_server_with(sr, writer, *args)
        assert p.returncode == 27, (args, p.returncode, p.stderr)
        assert "write-only key" in p.stderr
    assert not Path("/tmp/never-fetched").exists()

    # The full key reads what the server pushed, bit for bit.
    out = Path(f"/tmp/{segs[-1]}.fetched")
    try:
        r = sr.cli("wal-fetch", segs[-1], str(out), as_server=False)
        assert r.code == 0, r.err
        live = c.dir / "data" / "pg_wal" / segs[-1]
        if live.exists():
            assert out.read_bytes() == live.read_bytes()
    finally:
        out.unlink(missing_ok=True)
    st = sr.cli("database", "status", "--json", as_server=False)
    assert st.code == 0, st.err
    assert st.json()["gaps"] == []
    # The archiving check now wants the key file in the archive_command, and finds it there.
    ok = sr.cli("database", "archiving", "--json", as_server=False)
    assert ok.code == 0, ok.out + ok.err
