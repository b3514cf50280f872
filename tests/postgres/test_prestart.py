"""A logical backup's pg_dump started by the entry point before the program loads
(core/sources/postgres/prestart.py): taken over by the run only when it is exactly the dump
the run would start, stopped otherwise, and never left running; the config's connection
settings read without validation never put a password on a command line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from conftest import PASSPHRASE, ROOT, Workspace
from proc_support import logging_bin, running
from core.config import load_config
from core.sources.postgres import prestart
from core.sources.postgres.dump_start import start_dump

# -- reading the config without validating it ----------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12)


@given(st.dictionaries(st.sampled_from(["host", "port", "dbname", "user", "sslmode", "options"]), _text))
def test_a_conninfo_parses_back_to_its_parameters(params: dict[str, str]) -> None:
    assert conninfo_to_dict(prestart.conninfo(params)) == params


_part = st.text(st.sampled_from("abcXYZ09_.-%@:/?&= '\\é"), max_size=8)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    user=_part,
    host=_part,
    port=st.one_of(st.none(), st.integers(0, 70000).map(str), _part),
    dbname=_part,
    query=st.lists(st.tuples(st.sampled_from(["sslmode", "host", "password", "%70assword", "options", "port"]), _part)),
)
def test_a_url_is_read_as_libpq_reads_it_or_left_to_the_run(user, host, port, dbname, query) -> None:
    url = f"postgresql://{user + '@' if user else ''}{host}{':' + port if port is not None else ''}/{dbname}"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query)
    params = prestart.url_params(url)
    if params is None:
        return
    assert "password" not in params
    try:
        libpq = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except Exception:  # libpq refuses it: the run says so (and would not adopt a dump)
        return
    assert params == libpq


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:secret@h/db",
        "postgresql://u@h/db?password=secret",
        "postgresql://u@h/db?%70assword=secret",
        "postgresql://u@h1,h2/db",
        "postgresql://u@[::1]:5432/db",
        "mysql://u@h/db",
        "postgresql://u@h/db?options=-c%20x=1",
    ],
)
def test_urls_it_does_not_read_are_left_to_the_run(url: str) -> None:
    assert prestart.url_params(url) is None


def _plan(tmp_path: Path, database: str) -> prestart.Prestart | None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\n{database}\n[storage]\nlocal_path = "{tmp_path / "repo"}"\n')
    return prestart.plan(config, config.read_bytes())


def test_only_a_plain_logical_dump_is_started_ahead(tmp_path: Path, cluster) -> None:
    bin_dir = cluster.bin
    base = f'enabled = true\nurl = "postgresql://postgres@127.0.0.1:5432/db"\npg_bin_dir = "{bin_dir}"'
    pre = _plan(tmp_path, base)
    assert pre is not None and pre.params == {"user": "postgres", "host": "127.0.0.1", "port": "5432", "dbname": "db"}
    assert pre.pg_dump == bin_dir / "pg_dump" and pre.psql == bin_dir / "psql"
    loose = tmp_path / "loose"
    loose.write_text("secret\n")
    loose.chmod(0o644)
    tight = tmp_path / "tight"
    tight.write_text("s3cret pass\n")
    tight.chmod(0o600)
    for refused in (
        base.replace("enabled = true", "enabled = false"),
        base + '\nmode = "physical"',
        base + "\ndump_jobs = 2",
        base + f'\npassword_file = "{loose}"',  # the run refuses a file others can read
        base + '\npassword_file = "missing/file"',  # the run cannot read it
        base.replace(str(bin_dir), "bin"),
        base.replace(str(bin_dir), str(tmp_path)),  # no pg_dump there
        base.replace("postgres@", "postgres:pw@"),
        base + '\nport = "5432"',  # a string: the run refuses it
    ):
        assert _plan(tmp_path, refused) is None, refused
    # The password goes in the environment, never on a command line.
    pre = _plan(tmp_path, base + f'\npassword_file = "{tight}"\nport = 6543\ndbname = "other db"')
    assert pre is not None
    assert pre.env["PGPASSWORD"] == "s3cret pass"
    assert "s3cret" not in pre.conninfo
    assert conninfo_to_dict(pre.conninfo) == {
        "user": "postgres",
        "host": "127.0.0.1",
        "port": "6543",
        "dbname": "other db",
    }
    # Another pg_bin_dir with pg_dump but no psql beside it: nothing to hold the snapshot.
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "pg_dump").symlink_to(bin_dir / "pg_dump")
    assert _plan(tmp_path, base.replace(str(bin_dir), str(lone))) is None


# -- a real cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(pg_cluster):
    c = pg_cluster()
    c.createdb("ahead")
    c.psql("CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 100000) g", "ahead")
    c.psql(
        'CREATE SCHEMA "Odd s"; CREATE TABLE "Odd s"."t.u" (a int, b text); INSERT INTO "Odd s"."t.u" VALUES (1, \'x\')',
        "ahead",
    )
    return c


@pytest.fixture
def db_ws(ws: Workspace, cluster) -> tuple[Workspace, object]:
    """pg_dump and psql through wrappers that log each run, then run the real programs."""
    c = cluster
    bindir = logging_bin(
        ws.root / "bin", c.bin, ws.root / "runs.log", ("pg_dump", "psql"), ("pg_dumpall", "pg_restore")
    )
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{c.url("ahead")}"\npg_bin_dir = "{bindir}"\n'
        f'[storage]\nlocal_path = "{ws.repo}"\n'
    )
    assert ws.cli("init").code == 0
    return ws, c


def _state(ws: Workspace) -> dict[str, str]:
    return {"AXISOR_BACKUP_STATE_DIR": str(ws.root / "state")}  # no daemon's socket from elsewhere


def _runs(ws: Workspace, program: str) -> list[str]:
    """``program``'s logged runs; pg_dump's that dump (not its ``--version``)."""
    log = ws.root / "runs.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [ln for ln in lines if ln.startswith(program + " ") and (program != "pg_dump" or "--snapshot" in ln)]


def _ours(dbname: str) -> list[int]:
    """pg_dump and psql processes (any parent) connecting to ``dbname`` of this test."""
    return running(("pg_dump", "psql"), f"dbname={dbname}") + running(("pg_dump", "psql"), f"/{dbname}")


def _settled(c, dbname: str) -> int:
    query = (
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    for _ in range(100):  # a closed session's backend takes a moment to go
        if not int(c.psql(query)) and not _ours(dbname):
            return 0
        time.sleep(0.1)
    return int(c.psql(query)) + len(_ours(dbname))


def test_the_command_line_backup_takes_over_the_dump_started_ahead(db_ws) -> None:
    ws, c = db_ws
    r = ws.cli("--json", "backup", "--source", "database", env=_state(ws))
    assert r.code == 0, r.err
    [holder] = _runs(ws, "psql")  # the snapshot holder
    assert "-X" in holder and "dbname=ahead" in holder
    [dump] = _runs(ws, "pg_dump")  # taken over: the run started no other
    assert "--snapshot=" in dump and "--compress=0" in dump
    meta = r.json()["snapshots"][0]["metadata"]
    assert meta["tables"]["public.t"] == 100000
    assert set(meta["checksums"]) >= {"public.t", '"Odd s"."t.u"'}
    assert _settled(c, "ahead") == 0
    restored = ws.cli("restore", "latest", "--source", "database", "--target-db", c.url("ahead_copy"), env=_state(ws))
    assert restored.code == 0, restored.err
    assert c.psql('SELECT count(*) FROM t UNION ALL SELECT count(*) FROM "Odd s"."t.u"', "ahead_copy") == "100000\n1"
    c.psql("DROP DATABASE ahead_copy")
    # Turned off: no holder, one dump started by the run.
    (ws.root / "runs.log").unlink()
    r = ws.cli("--json", "backup", "--source", "database", env={**_state(ws), prestart.ENV_SWITCH: "0"})
    assert r.code == 0, r.err
    assert _runs(ws, "psql") == [] and len(_runs(ws, "pg_dump")) == 1


def test_a_dump_started_ahead_for_other_settings_is_stopped_and_the_run_dumps_itself(db_ws, monkeypatch) -> None:
    ws, c = db_ws
    c.createdb("ahead_other")
    config = load_config(ws.config)
    # What the entry point read names another database than the validated config.
    monkeypatch.setattr(prestart, "_current", None)
    prestart.begin(ws.config, ws.config.read_bytes().replace(b"/ahead", b"/ahead_other"))
    pre = prestart.claim()
    assert pre is not None and pre.wait() and pre.params["dbname"] == "ahead_other"

    async def run() -> None:
        dump = await start_dump(config.database, prestarted=pre)
        try:
            for _ in range(200):  # the wrapper logs the run's own pg_dump as it starts
                if len(_runs(ws, "pg_dump")) == 2:
                    break
                await asyncio.sleep(0.02)
            assert dump.holder is None and dump.child.proc.pid != (pre.running.proc.pid if pre.running else None)
            assert "dbname=ahead" in " ".join(dump.child.proc.args) and "ahead_other" not in " ".join(
                dump.child.proc.args
            )
        finally:
            await dump.close()

    asyncio.run(run())
    assert len(_runs(ws, "pg_dump")) == 2  # the one started ahead, stopped; the run's own
    assert pre.running is None and pre.holder is None
    assert _settled(c, "ahead_other") == 0 and _settled(c, "ahead") == 0


def test_a_run_that_never_dumps_stops_the_dump_started_ahead(db_ws) -> None:
    ws, c = db_ws
    # A config the validation refuses: the entry point started the dump from what it read.
    ws.config.write_text(ws.config.read_text() + "no_such_key = 1\n")
    r = ws.cli("--json", "backup", "--source", "database", env=_state(ws))
    assert r.code == 2, r.err  # docs/CLI.md: usage or config error
    assert "no_such_key" in r.err and "Traceback" not in r.err
    assert len(_runs(ws, "psql")) == 1  # it was started ...
    assert _settled(c, "ahead") == 0  # ... and is gone, its session with it
    # A prune holding the repository: the run waits for it and does not take the dump.
    ws.config.write_text(ws.config.read_text().replace("no_such_key = 1\n", ""))
    (ws.root / "runs.log").unlink()
    prune = subprocess.Popen(
        [sys.executable, "-c", _HOLD_PRUNE.format(repo=str(ws.repo))], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert prune.stdout is not None and prune.stdout.readline().strip() == "held"
        r = ws.cli("--json", "backup", "--source", "database", "--lock-wait", "0", env=_state(ws))
        assert r.code != 0
        assert len(_runs(ws, "psql")) == 1 and _settled(c, "ahead") == 0
    finally:
        prune.terminate()
        prune.wait()


_HOLD_PRUNE = """
import asyncio, sys
from core.repository.lock import Lock
from core.storage.local import LocalBackend
async def main():
    await Lock(LocalBackend({repo!r}), exclusive=True, operation="prune").acquire()
    print("held", flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


def test_a_killed_command_leaves_no_dump_or_holder_running(db_ws) -> None:
    ws, c = db_ws
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env.update(_state(ws), AXISOR_BACKUP_PASSPHRASE=PASSPHRASE)
    p = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(ws.config), "--json", "backup", "--source", "database"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        if _runs(ws, "pg_dump"):
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert _runs(ws, "pg_dump")  # it was killed with the dump under way
    assert _settled(c, "ahead") == 0  # pg_dump's pipe and the holder's stdin closed: both ended
    assert ws.cli("snapshots", "--json", env=_state(ws)).json()["snapshots"] == []


def test_stopping_a_start_that_waits_for_a_silent_server_is_immediate(tmp_path: Path, cluster) -> None:
    """A server that accepts the connection and never answers: the holder waits for it, and
    the run's stop (it starts its own dump, which meets the same server) does not."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        pre = _plan(
            tmp_path, f'enabled = true\nurl = "postgresql://postgres@127.0.0.1:{port}/db"\npg_bin_dir = "{cluster.bin}"'
        )
        assert pre is not None
        pre._thread.start()
        for _ in range(200):  # the holder has connected and waits for the server's first word
            if pre.holder is not None:
                break
            time.sleep(0.01)
        time.sleep(0.2)
        started = time.monotonic()
        pre.stop()
        assert time.monotonic() - started < 2  # not ANSWER_SECONDS
        assert not pre.wait() and pre.holder is None and pre.running is None
        assert running(("psql", "pg_dump"), f"port={port}") == []
