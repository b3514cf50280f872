"""A logical backup starts pg_dump before the repository is open (service.backup), so its
start-up overlaps the key derivation and the lock. A backup that then cannot go on (wrong
passphrase, a prune holding the lock) must leave no pg_dump running and no session holding
the exported snapshot; one that can, stores the dump it started."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import PASSPHRASE, Workspace
from proc_support import children, logging_bin, running
from core.config import load_config
from core.errors import LockHeld, WrongPassphrase
from core.repository.lock import Lock
import core.service.backup as service_module  # where the run and its lock check live
from core.service import BackupService
from core.storage.local import LocalBackend


def _children(name: str) -> list[int]:
    return children(name)


@pytest.fixture(scope="module")
def cluster(pg_cluster):
    c = pg_cluster()
    c.createdb("early")
    c.psql("CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 200000) g", "early")
    return c


@pytest.fixture
def db_ws(ws: Workspace, cluster) -> tuple[Workspace, object]:
    c = cluster
    # pg_dump through a wrapper that logs each run, then runs the real one; pg_dumpall for
    # the globals beside each dump (not logged).
    bindir = logging_bin(ws.root / "bin", c.bin, ws.root / "runs.log", ("pg_dump", "pg_restore"), ("pg_dumpall",))
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{c.url("early")}"\npg_bin_dir = "{bindir}"\n'
        f'[storage]\nlocal_path = "{ws.repo}"\n'
    )
    assert ws.cli("init").code == 0
    return ws, c


def _runs(ws: Workspace) -> str:
    log = ws.root / "runs.log"
    return log.read_text() if log.exists() else ""


async def _none(backend) -> None:
    return None


def _refusing(ws: Workspace):
    async def refused(repo, specs, *, database=None, **kwargs):
        await database.started
        for _ in range(100):  # until the wrapper has handed over to the real pg_dump
            if "--snapshot" in _runs(ws):
                break
            await asyncio.sleep(0.05)
        raise LockHeld("repository is locked: exclusive lock by prune (taken after the check)")

    return refused


def _sessions(c) -> int:
    return int(
        c.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'early' "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    )


def _settled(c) -> int:
    for _ in range(50):  # a closed session's backend takes a moment to go
        if not _sessions(c):
            return 0
        asyncio.run(asyncio.sleep(0.1))
    return _sessions(c)


def test_a_held_lock_stops_the_dump_it_started(db_ws) -> None:
    ws, c = db_ws

    async def run() -> None:
        prune = await Lock(LocalBackend(ws.repo), exclusive=True, operation="prune").acquire()
        svc = BackupService(load_config(ws.config), lambda confirm: PASSPHRASE)
        try:
            with pytest.raises(LockHeld):
                await svc.backup(sources=["database"])
            assert _children("pg_dump") == []
            # Seen before anything started: no dump ran (a job would retry for minutes).
            assert "--snapshot" not in _runs(ws)
            # A prune that takes the lock after that check, once pg_dump is running: the
            # dump started early is stopped.
            real = service_module.exclusive_holder, service_module.run_backup
            service_module.exclusive_holder, service_module.run_backup = _none, _refusing(ws)
            try:
                with pytest.raises(LockHeld):
                    await svc.backup(sources=["database"])
            finally:
                service_module.exclusive_holder, service_module.run_backup = real
            assert "--snapshot" in _runs(ws)
            assert _children("pg_dump") == []
        finally:
            await prune.release()
            await svc.close()

    asyncio.run(run())
    assert _settled(c) == 0
    assert ws.cli("snapshots", "--json").json()["snapshots"] == []


def test_a_wrong_passphrase_stops_the_dump_it_started(db_ws) -> None:
    ws, c = db_ws

    async def run() -> None:
        svc = BackupService(load_config(ws.config), lambda confirm: "not the passphrase")
        try:
            with pytest.raises(WrongPassphrase):
                await svc.backup(sources=["database"])
            assert _children("pg_dump") == []
        finally:
            await svc.close()

    asyncio.run(run())
    assert _settled(c) == 0


def test_the_started_dump_is_the_one_stored(db_ws) -> None:
    ws, c = db_ws

    async def run() -> dict:
        svc = BackupService(load_config(ws.config), lambda confirm: PASSPHRASE)
        try:
            result = await svc.backup(sources=["database"])
            assert _children("pg_dump") == []
            [r] = result.results
            assert r.error is None
            return r.snapshot.metadata
        finally:
            await svc.close()

    meta = asyncio.run(run())
    assert meta["tables"]["public.t"] == 200000
    assert meta["checksum_method"] == "dump-blake3-v1" and "public.t" in meta["checksums"]
    assert _settled(c) == 0
    r = ws.cli("restore", "latest", "--source", "database", "--target-db", c.url("early_copy"))
    assert r.code == 0, r.err
    assert c.psql("SELECT count(*) FROM t", "early_copy") == "200000"
    c.psql("DROP DATABASE early_copy")


# -- the command line: the dump started before the rest of the program loads ----------------


def _our_pg_dumps(ws: Workspace) -> list[int]:
    """pg_dump processes still running against this test's database (any parent)."""
    return running(("pg_dump",), "--snapshot=", "/early")


def _dumping(ws: Workspace) -> bool:
    """pg_dump has been started in its snapshot (the wrapper logs it as it starts)."""
    for _ in range(100):
        if "--snapshot" in _runs(ws):
            return True
        time.sleep(0.05)
    return False


def test_the_command_line_offers_the_dump_it_started_and_the_run_takes_it(db_ws) -> None:
    from app.cli_parser import build_parser
    from app.cli_run import _start_dump_early
    from core.sources.postgres import early_dump

    ws, c = db_ws
    config = load_config(ws.config)
    args = build_parser().parse_args(["--config", str(ws.config), "backup", "--source", "database"])

    async def run() -> dict:
        await _start_dump_early(args, config)
        svc = None
        try:
            assert _dumping(ws)  # running before the service is even built
            svc = BackupService(config, lambda confirm: PASSPHRASE)
            result = await svc.backup(sources=["database"])
        finally:
            if svc is not None:
                await svc.close()
            await early_dump.discard()
        [r] = result.results
        assert r.error is None
        return r.snapshot.metadata

    meta = asyncio.run(run())
    assert _runs(ws).count("--snapshot") == 1  # the run took the dump offered, started no other
    assert meta["tables"]["public.t"] == 200000 and "public.t" in meta["checksums"]
    assert _children("pg_dump") == [] and _settled(c) == 0


def test_a_dump_offered_and_not_taken_is_stopped(db_ws) -> None:
    from app.cli_parser import build_parser
    from app.cli_run import _start_dump_early
    from core.sources.postgres import early_dump

    ws, c = db_ws
    args = build_parser().parse_args(["--config", str(ws.config), "backup"])

    async def run() -> None:
        await _start_dump_early(args, load_config(ws.config))
        try:
            assert _dumping(ws)
        finally:
            await early_dump.discard()  # what app/cli_run.py does after any run
        assert _children("pg_dump") == []

    asyncio.run(run())
    assert _settled(c) == 0
    # Not for a run without the database, nor while a prune holds the repository.
    (ws.root / "runs.log").unlink()
    files_only = build_parser().parse_args(["--config", str(ws.config), "backup", "--source", "nope"])

    async def refused() -> None:
        await _start_dump_early(files_only, load_config(ws.config))
        prune = await Lock(LocalBackend(ws.repo), exclusive=True, operation="prune").acquire()
        try:
            await _start_dump_early(args, load_config(ws.config))
        finally:
            await prune.release()
            await early_dump.discard()

    asyncio.run(refused())
    assert not _dumping(ws)


def test_a_wrong_passphrase_on_the_command_line_leaves_nothing_running_or_written(db_ws) -> None:
    ws, c = db_ws
    r = ws.cli("backup", "--source", "database", passphrase="not the passphrase")
    assert r.code == 4, r.err  # docs/CLI.md: wrong passphrase
    assert "wrong passphrase" in r.err
    assert "--snapshot" in _runs(ws)  # the dump had started beside the key derivation
    assert _our_pg_dumps(ws) == [] and _settled(c) == 0
    assert ws.cli("snapshots", "--json").json()["snapshots"] == []
    assert ws.cli("verify").code == 0


def test_a_pg_dump_failing_while_the_repository_opens_leaves_no_snapshot(db_ws) -> None:
    ws, c = db_ws
    wrapper = ws.root / "bin" / "pg_dump"
    real = c.bin / "pg_dump"
    # Fails at once when it dumps (its --version still answers): before the key is derived.
    wrapper.write_text(
        '#!/bin/sh\ncase "$*" in *--snapshot*) echo "pg_dump: error: simulated failure" >&2; exit 1;; esac\n'
        f'exec "{real}" "$@"\n'
    )
    r = ws.cli("backup", "--source", "database")
    assert r.code == 14, r.err  # docs/CLI.md: database error
    assert "simulated failure" in r.err
    assert _our_pg_dumps(ws) == [] and _settled(c) == 0
    assert ws.cli("snapshots", "--json").json()["snapshots"] == []
    assert ws.cli("verify").code == 0
