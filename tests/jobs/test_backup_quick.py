"""`backup` handed to a running daemon without the full program (app/backup_quick.py): taken
only when the daemon vouches for the very config file and bytes (core/config/load.py
``config_digest``), with the full program's output, warnings and exit codes; anything else
runs the full program as before. And the daemon's jobs open the repository with the key
derived once (core/repository/keycache.py ``KeyMemory``), a wrong passphrase still failing."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, ROOT
from core.errors import WrongPassphrase
from core.repository import keys as keyfiles
from core.repository.keycache import KeyMemory
from core.repository.repository import Repository
from core.storage.local import LocalBackend
from app.backup_quick import parse
from jobs.test_daemon import ask

# Which program ran: the quick client never imports the CLI or the config's validation.
PROBE = (
    "import sys; from app.wal_quick import quick; code = quick(sys.argv[1:]); "
    "full = any(m in sys.modules for m in ('app.cli_run', 'core.config', 'core.service')); "
    "print('FULL' if code is None or full else 'QUICK', code, file=sys.stderr); sys.exit(code or 0)"
)


def probe(jw, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env.update(jw.env)
    return subprocess.run(
        [sys.executable, "-c", PROBE, "--config", str(jw.ws.config), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_parse_takes_only_the_shapes_it_can_answer_exactly():
    cfg, params, as_json = parse(["--config", "c.toml", "--json", "backup", "--source=database", "--tag", "t"])
    assert (cfg, as_json) == (Path("c.toml"), True)
    assert params == {"type": "incremental", "sources": ["database"], "tags": ["t"], "lock_wait": 600.0}
    assert parse(["--config=c.toml", "backup", "--type", "full", "--lock-wait", "0", "--json"])[1]["lock_wait"] == 0
    for argv in (
        ["backup"],  # no --config: the full program's search for it
        ["--config", "c.toml", "backup", "--limit-upload", "10"],  # limits run in this process
        ["--limit-upload", "10", "--config", "c.toml", "backup"],
        ["--config", "c.toml", "backup", "--type", "bogus"],  # argparse's error, not ours
        ["--config", "c.toml", "backup", "--lock-wait", "soon"],
        ["--config", "c.toml", "backup", "--sour", "x"],  # an abbreviation argparse would take
        ["--config", "c.toml", "backup", "--source"],
        ["--config", "c.toml", "backup", "--source", "--json"],
        ["--config", "c.toml", "snapshots"],
        ["--config", "c.toml", "backup", "backup"],
        ["--config", "c.toml", "backup", "--help"],
    ):
        assert parse(argv) is None, argv


def test_a_backup_through_the_daemon_is_submitted_by_the_quick_client(jw):
    d = jw.daemon()
    r = probe(jw, "backup", "--json")
    assert r.returncode == 0, r.stderr
    assert "QUICK 0" in r.stderr
    job = json.loads(r.stdout)["job"]
    assert f"job {job} runs in the daemon; Ctrl-C stops watching, not the job" in r.stderr
    d.wait_for("job finished", job=job, state="completed")
    # The same command through the full program prints the same document.
    full = jw.cli("backup", "--json", env={"AXISOR_BACKUP_STATE_DIR": str(jw.state)})
    assert full.code == 0, full.err
    assert set(full.json()) == set(json.loads(r.stdout))
    # A job that fails keeps its exit code and its message (a source the config lacks).
    bad = probe(jw, "backup", "--source", "nope")
    assert bad.returncode == 2 and "QUICK 2" in bad.stderr and "unknown source 'nope'" in bad.stderr


def test_the_daemon_vouches_only_for_the_bytes_it_validated(jw):
    d = jw.daemon()
    info = ask(jw.socket, b'{"op": "ping"}\n')[0]["result"]["config"]
    assert info["path"] == str(jw.ws.config.absolute())
    assert info["sha256"] == hashlib.sha256(jw.ws.config.read_bytes()).hexdigest()
    # Edited after the daemon read it: the full program validates it (and the daemon runs
    # the config it has, as it always did).
    jw.ws.config.write_text(jw.ws.config.read_text() + "# edited\n")
    r = probe(jw, "backup", "--json")
    assert r.returncode == 0 and "FULL None" in r.stderr
    # An invalid edit is reported by the full program's validation, not submitted.
    jw.ws.config.write_text(jw.ws.config.read_text() + "[schedule]\nmax_concurrent = 99\n")
    bad = jw.cli("backup", "--json")
    assert bad.code == 2 and "schedule.max_concurrent" in bad.err
    # Reloaded, the daemon vouches for the new bytes.
    jw.ws.config.write_text(jw.ws.config.read_text().replace("max_concurrent = 99", "max_concurrent = 3"))
    d.signal(signal.SIGHUP)
    d.wait_for("config reloaded")
    info = ask(jw.socket, b'{"op": "ping"}\n')[0]["result"]["config"]
    assert info["sha256"] == hashlib.sha256(jw.ws.config.read_bytes()).hexdigest()
    assert "QUICK 0" in probe(jw, "backup", "--json").stderr


def test_the_daemon_hands_over_the_config_warnings_the_full_program_prints(jw):
    """The quick client prints ``warning: PATH: ...`` per deprecation and the notes as they come,
    as app/cli_run.py does (core/config/load.py ``config_notes``)."""
    from core.config import config_notes, load_config
    from core.daemon.server import Daemon

    path = jw.config("[schedule]\nparallel_backups = true\n")  # deprecated: a warning on every command
    config = load_config(path)
    ident = Daemon(config, path, directory=jw.state).config_identity
    assert ident is not None and ident["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    shown = [f"warning: {path}: {w}" for w in ident["deprecations"]] + ident["notes"]
    assert shown == config_notes(config, str(path)) and len(shown) == 1
    assert [ln for ln in jw.cli("snapshots").err.splitlines() if ln.startswith("warning:")] == shown


def test_no_daemon_or_a_terminal_runs_the_full_program(jw):
    r = probe(jw, "backup", "--json")
    assert r.returncode == 0 and "FULL None" in r.stderr  # no daemon: the embedded engine


@pytest.mark.parametrize("wrong_first", [False, True])
def test_key_memory_skips_the_derivation_and_a_wrong_passphrase_still_fails(ws, wrong_first, monkeypatch):
    asyncio.run(_init(ws))
    derived = _counting_derivations(monkeypatch)
    memory = KeyMemory()
    backend = LocalBackend(ws.repo)

    async def open_with(passphrase: str) -> Repository:
        return await Repository.open(backend, passphrase, key_memory=memory)

    async def run() -> None:
        if wrong_first:
            with pytest.raises(WrongPassphrase):
                await open_with("not the passphrase")
        first = await open_with(PASSPHRASE)
        second = await open_with(PASSPHRASE)
        assert first.config.id == second.config.id
        with pytest.raises(WrongPassphrase) as exc:  # the entry is checked against the passphrase
            await open_with("not the passphrase")
        assert exc.value.exit_code == 4  # docs/CLI.md: wrong passphrase
        await open_with(PASSPHRASE)

    asyncio.run(run())
    # One derivation for the right passphrase, one per wrong attempt: none for the reopenings.
    assert derived.count(PASSPHRASE) == 1
    assert len(derived) == 2 + wrong_first


@pytest.mark.parametrize("ahead_with", [PASSPHRASE, "not the passphrase"])
def test_a_key_derived_ahead_is_the_only_derivation_and_a_wrong_one_fails_at_the_open(
    ws, ahead_with, monkeypatch, caplog
):
    """A one-shot backup derives the key on a thread while pg_dump runs (app/cli_run.py);
    its job's open waits for that instead of deriving beside it, and a wrong passphrase
    fails there, as always, with nothing logged about the derivation ahead."""
    asyncio.run(_init(ws))
    derived = _counting_derivations(monkeypatch)

    async def run() -> None:
        memory = KeyMemory()
        memory.derive_ahead(lambda: LocalBackend(ws.repo), ahead_with)
        if ahead_with == PASSPHRASE:
            repo = await Repository.open(LocalBackend(ws.repo), PASSPHRASE, key_memory=memory)
            assert repo.config.id
        else:
            with pytest.raises(WrongPassphrase) as exc:
                await Repository.open(LocalBackend(ws.repo), ahead_with, key_memory=memory)
            assert exc.value.exit_code == 4  # docs/CLI.md: wrong passphrase

    asyncio.run(run())
    assert derived == [ahead_with] * (1 if ahead_with == PASSPHRASE else 2)
    assert "never retrieved" not in caplog.text

    async def unused() -> None:  # a run that fails before it opens: the failure is not logged
        memory = KeyMemory()
        memory.derive_ahead(lambda: LocalBackend(ws.repo), "not the passphrase")
        while not memory._ahead.done():  # ended, and nobody awaits it
            await asyncio.sleep(0.01)

    asyncio.run(unused())
    gc.collect()
    assert "never retrieved" not in caplog.text


def _counting_derivations(monkeypatch) -> list[str]:
    """The passphrases scrypt derives a wrapping key from, from now on, in order."""
    derived: list[str] = []
    unwrap = keyfiles.KeyFile.unwrap_deriving

    def counting(self, passphrase):
        derived.append(passphrase)
        return unwrap(self, passphrase)

    monkeypatch.setattr(keyfiles.KeyFile, "unwrap_deriving", counting)
    return derived


async def _init(ws) -> None:
    from core.config import load_config
    from core.service import BackupService

    svc = BackupService(load_config(ws.config), lambda confirm: PASSPHRASE, workers=2)
    try:
        await svc.init()
    finally:
        await svc.close()
