"""`database check`, the archive check before each base backup, the bounded wait for a base
backup's last WAL segment, `config check --connect`, and the OS-user warning — against real
clusters whose archive_command the server runs (as ``postgres``)."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from pathlib import Path

import pytest

from conftest import Workspace
from wal_support import PASSPHRASE, ServerRepo, enable_archiving

TIMEOUT = 5  # [database] archive_timeout_seconds where archiving is broken
WORKING = 30  # where it works: generous, the machine may be busy (a planted failure uses QUICK)
QUICK = 3
ROOT = os.geteuid() == 0
POSTGRES_UID = pwd.getpwnam("postgres").pw_uid


def _config(c, timeout: int) -> str:
    return f'url = "{c.url()}"\nmode = "physical"\narchive_timeout_seconds = {timeout}\n'


@pytest.fixture(scope="module")
def working(pg_cluster):
    c = pg_cluster()
    sr = ServerRepo.create(_config(c, WORKING))
    assert sr.cli("init").code == 0
    enable_archiving(c, sr.archive_command())
    yield c, sr
    sr.remove()


@pytest.fixture(scope="module")
def broken(pg_cluster):
    """archive_command names a copy of the program that is not executable (mode 0644)."""
    c = pg_cluster()
    sr = ServerRepo.create(_config(c, TIMEOUT))
    assert sr.cli("init").code == 0
    noexec = sr.dir / "axisor-backup-noexec"
    noexec.write_text(sr.wrapper.read_text())
    noexec.chmod(0o644)
    sr.chown()
    enable_archiving(c, f"{noexec} --config {sr.config} wal-push %p")
    yield c, sr, noexec
    sr.remove()


def test_working_archiving_passes_every_check(working) -> None:
    c, sr = working
    started = time.monotonic()
    r = sr.cli("database", "check")
    took = time.monotonic() - started
    assert r.code == 0, r.out + r.err
    assert took < 10, took
    lines = r.out.splitlines()
    names = [
        "connection",
        "server version",
        "pg_basebackup",
        "replication",
        "archiving settings",
        "archive program",
        "repository access",
        "WAL archived",
    ]
    for name in names:
        assert any(ln.strip().startswith(f"ok      {name}:") for ln in lines), (name, r.out)
    assert lines[-1] == f"ok: all {len(names)} checks passed"
    # The segment it switched really is in the repository.
    seg = [ln for ln in lines if "WAL archived:" in ln][0].split("WAL segment ")[1].split()[0]
    assert (sr.repo / "wal" / seg).is_file()

    # config check --connect: the same checks but the WAL switch (nothing waits).
    r = sr.cli("config", "check", "--connect", "--json")
    assert r.code == 0, r.out + r.err
    j = r.json()
    assert j["ok"] is True and j["sources"] == ["database"]
    db = j["database"]
    assert db["ok"] is True and db["passed"] == len(names) - 1 and db["failed"] == db["not_run"] == 0
    assert [x["name"] for x in db["checks"]] == names[:-1]


def test_archiving_into_another_place_is_named(working) -> None:
    """An archive_command that succeeds but stores elsewhere: said so, not "wait longer"."""
    c, sr = working
    c.psql("ALTER SYSTEM SET archive_command = '/bin/true %p'")
    c.psql("SELECT pg_reload_conf()")
    sr.write_config(_config(c, 2))
    try:
        r = sr.cli("backup", timeout=120)
        assert r.code == 18, r.out + r.err
        assert "is going elsewhere" in r.err and "but not into this repository" in r.err, r.err
    finally:
        sr.write_config(_config(c, WORKING))
        c.psql(f"ALTER SYSTEM SET archive_command = '{sr.archive_command()}'")
        c.psql("SELECT pg_reload_conf()")


@pytest.mark.skipif(not ROOT, reason="needs root: the test runs commands as root against postgres's repository")
def test_another_os_user_is_named_and_checked(working) -> None:
    c, sr = working
    # A backup run as root in postgres's repository: said, and every file it made is postgres's.
    r = sr.cli("backup", "--json", as_server=False, timeout=180)
    assert r.code == 0, r.out + r.err
    assert "backup runs as OS user root, but the repository" in r.err and "belongs to postgres" in r.err, r.err
    assert any("runs as OS user root" in w for w in r.json()["warnings"])
    foreign = [p for p in [sr.repo, *sr.repo.rglob("*")] if p.lstat().st_uid != POSTGRES_UID]
    assert foreign == []

    # A root-owned 0600 file (left by an older root-run backup): the check, run as root, fails
    # for postgres, the server's OS user, naming the file.
    planted = sr.repo / "locks" / ("ab" * 16)
    planted.write_bytes(b"{}")
    planted.chmod(0o600)
    sr.write_config(_config(c, QUICK))  # chowns: the planted file too, so give it back to root
    os.chown(planted, 0, 0)
    try:
        r = sr.cli("database", "check", as_server=False)
        assert r.code == 18, r.out + r.err
        line = [ln for ln in r.out.splitlines() if "repository access:" in ln][0]
        assert line.strip().startswith("FAILED") and str(planted) in line and "owner root" in line
        assert "not readable by postgres" in line and "chown -R postgres" in line
        # And it is why archiving stalls: wal-push (as postgres) fails on it; the archiver recorded that.
        wal = [ln for ln in r.out.splitlines() if "WAL archived:" in ln][0]
        assert wal.strip().startswith("FAILED") and "pg_stat_archiver: last_failed_wal 0000" in wal, wal
        assert "last_failed_time 20" in wal
    finally:
        planted.unlink()
        sr.write_config(_config(c, WORKING))


def test_failing_archive_command_fails_the_check_and_the_backup_in_time(broken) -> None:
    c, sr, noexec = broken
    started = time.monotonic()
    r = sr.cli("database", "check")
    assert r.code == 18, r.out + r.err
    assert time.monotonic() - started < TIMEOUT + 10
    out = r.out
    assert f"FAILED  archive program: {noexec} is not executable by postgres" in out, out
    wal = [ln for ln in out.splitlines() if "WAL archived:" in ln][0]
    assert wal.strip().startswith("FAILED") and f"did not arrive in the repository within {TIMEOUT} s" in wal
    assert "pg_stat_archiver" in wal and "server log" in wal
    assert out.splitlines()[-1] == "8 checks: 6 passed, 2 failed, 0 not run (exit 18)", out

    # A physical backup fails (exit 18) within archive_timeout_seconds instead of waiting forever.
    started = time.monotonic()
    r = sr.cli("backup", timeout=120)
    took = time.monotonic() - started
    assert r.code == 18, r.out + r.err
    assert took < TIMEOUT + 15, took
    assert f"did not arrive in the repository within {TIMEOUT} s" in r.err and "pg_stat_archiver" in r.err
    assert "database check" in r.err
    assert not list((sr.repo / "snapshots").iterdir())


def test_a_base_backups_own_last_segment_is_waited_for_boundedly(broken) -> None:
    """The server waits for the backup's last segment inside pg_basebackup's stop: past the
    timeout the walsender is stopped, pg_basebackup killed, and ArchivingNotReady raised."""
    c, sr, _ = broken
    from core.config import DatabaseConfig
    from core.errors import ArchivingNotReady
    from core.repository.repository import Repository
    from core.sources.postgres.archive_wait import bounded
    from core.sources.postgres.connection import PgTarget
    from core.sources.postgres.physical import backup_physical
    from core.storage.local import LocalBackend

    db = DatabaseConfig(enabled=True, url=c.url(), mode="physical", archive_timeout_seconds=2)

    async def run() -> tuple[str, float, list]:
        repo = await Repository.open(LocalBackend(sr.repo), PASSPHRASE)
        await repo.load_index()
        target = PgTarget.from_config(db)
        conn = await target.connect()
        try:
            since = (await (await conn.execute("SELECT clock_timestamp()")).fetchone())[0]
            started = time.monotonic()
            with pytest.raises(ArchivingNotReady) as err:
                await bounded(backup_physical(repo, db), conn, target, 2, since)
            took = time.monotonic() - started
            await asyncio.sleep(1)
            left = await (await conn.execute("SELECT pid FROM pg_stat_progress_basebackup")).fetchall()
        finally:
            await conn.close()
        return str(err.value), took, left

    message, took, left = asyncio.run(run())
    assert "is not working: the base backup's last WAL segment did not arrive in the repository within 2 s" in message
    assert "pg_stat_archiver" in message and "was stopped" in message
    assert took < 15, took
    assert left == []  # the server's backup is not left waiting


def test_unreachable_server_exits_14(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    ws = Workspace(tmp_path, tmp_path, tmp_path / "repo", tmp_path / "config.toml")
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "postgresql://postgres@127.0.0.1:{port}/postgres"\n'
        f'mode = "physical"\n[storage]\nlocal_path = "{ws.repo}"\n'
    )
    for args in (("database", "check"), ("config", "check", "--connect")):
        r = ws.cli(*args)
        assert r.code == 14, (args, r.out, r.err)
        assert f"cannot connect to postgres on 127.0.0.1:{port}" in r.err
    # The timeout is validated like every key.
    ws.config.write_text(
        ws.config.read_text().replace('mode = "physical"', 'mode = "physical"\narchive_timeout_seconds = 0')
    )
    r = ws.cli("config", "check")
    assert r.code == 2 and "database.archive_timeout_seconds" in r.out + r.err, (r.out, r.err)


def test_logical_read_permissions(working, tmp_path: Path) -> None:
    c, _ = working
    c.psql("CREATE ROLE dbcheck_reader LOGIN")
    c.psql('CREATE SCHEMA "Sales Dept"; CREATE TABLE "Sales Dept".orders (id int); CREATE TABLE public.t2 (x int)')
    ws = Workspace(tmp_path, tmp_path, tmp_path / "repo", tmp_path / "config.toml")
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{c.url(user="dbcheck_reader")}"\n[storage]\nlocal_path = "{ws.repo}"\n'
    )
    r = ws.cli("config", "check", "--connect")
    assert r.code == 18, r.out + r.err
    line = [ln for ln in r.out.splitlines() if "read permissions:" in ln][0]
    assert line.strip().startswith("FAILED") and "2 tables pg_dump cannot read" in line
    assert '"Sales Dept".orders (no USAGE on its schema)' in line and "public.t2 (no SELECT)" in line
    c.psql("GRANT pg_read_all_data TO dbcheck_reader")
    r = ws.cli("database", "check")
    assert r.code == 0, r.out + r.err
    assert "member of pg_read_all_data" in r.out and r.out.splitlines()[-1] == "ok: all 4 checks passed"


@pytest.mark.skipif(not ROOT, reason="needs root: chown of the repository to another user")
def test_wal_push_as_another_user_warns_and_hands_files_over(ws: Workspace) -> None:
    assert ws.cli("init").code == 0
    nobody = pwd.getpwnam("nobody")
    for p in [ws.repo, *ws.repo.rglob("*")]:
        os.lchown(p, nobody.pw_uid, nobody.pw_gid)
    seg = ws.root / "000000010000000000000007"
    seg.write_bytes(b"w" * 4096)
    r = ws.cli("wal-push", str(seg))
    assert r.code == 0, r.err
    assert "wal-push runs as OS user root, but the repository" in r.err and "belongs to nobody" in r.err
    assert [p for p in ws.repo.rglob("*") if p.lstat().st_uid != nobody.pw_uid] == []
    assert (ws.repo / "wal" / seg.name).lstat().st_uid == nobody.pw_uid
