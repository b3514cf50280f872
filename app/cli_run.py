"""From argv to a command's exit code: parse, check (`config check`) or load the config, say its
warnings, then run the command in a BackupService or open the console. The command table and
core.service are imported only once the arguments parsed, so `--help` and usage errors never
load them. The exceptions a command raises are mapped to exit codes in app/cli.py."""

from __future__ import annotations

from dataclasses import replace

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from app import cli_jobs, cli_locations
from app.cli_config import config_check
from app.cli_output import Output
from app.cli_parser import build_parser
from core.config import (
    ENV_PASSPHRASE,
    Config,
    ConfigError,
    config_notes,
    default_config_path,
    load_config,
    resolve_passphrase,
)
from core.errors import Exit

EXIT_USAGE = Exit.USAGE


async def run(args, config: Config, out: Output) -> int:
    key_memory = await _start_dump_early(args, config) if args.command == "backup" else None
    try:
        return await _run(args, config, out, key_memory)
    finally:
        from core.sources.postgres import early_dump

        await early_dump.discard()  # one no backup took: stopped, nothing left running


async def _run(args, config: Config, out: Output, key_memory=None) -> int:
    # Only now, the arguments parsed: the handlers and the service they run in, loaded on a
    # thread so that the loop goes on with what already runs (a dump's metadata queries).
    COMMANDS, BackupService = await asyncio.to_thread(_load_commands)

    key_file = getattr(args, "wal_key_file", None)

    def passphrase(confirm: bool) -> str:
        if key_file is not None:
            # wal-push --key-file: the server's own (write-only) key, read like passphrase_file.
            return resolve_passphrase(replace(config.storage, passphrase_file=key_file), env={}, interactive=False)
        return resolve_passphrase(config.storage, confirm=confirm)

    svc = BackupService(
        config, passphrase, no_lock=getattr(args, "no_lock", False), on_note=Output.note, key_memory=key_memory
    )
    cli_jobs.survive_hangup()
    try:
        await cli_locations.use_from(svc, args)  # verify/ls/show --from NAME
        return await COMMANDS[args.command](svc, args, out)
    finally:
        for exc in svc.index_damage:
            Output.note(f"warning: {exc} (skipped; `axisor-backup repair index` rebuilds the index)")
        await svc.close()


def _load_commands():
    from app.cli_commands import COMMANDS
    from core.service import BackupService

    return COMMANDS, BackupService


async def _start_dump_early(args, config: Config):
    """Start this backup's logical dump before the handlers, the service and the job engine
    are imported, and offer it to the run (core/sources/postgres/early_dump.py): pg_dump
    then runs while they load and the key is derived. Only when the run surely takes the
    dump in this process; whatever fails here is left for the run to meet and report.
    A dump the entry point started before the program loaded (prestart.py) is taken over
    when it is exactly this one, and stopped otherwise. Returns the KeyMemory in which the
    repository's key is being derived meanwhile (``_derive_key_ahead``), or None."""
    from core.sources.postgres import prestart

    ahead = prestart.claim()
    try:
        if await _dumps_here(args, config):
            from core.sources.postgres import early_dump
            from core.sources.postgres.dump_start import start_dump

            db = config.database
            dump = asyncio.ensure_future(start_dump(db, jobs=db.dump_jobs, prestarted=ahead))
            ahead = None  # start_dump's: taken over or stopped
            await asyncio.wait([dump])  # pg_dump spawned (or failed: the run raises it where it takes it)
            early_dump.offer(db, dump)
            memory = _derive_key_ahead(config)
            if not dump.exception():
                dump.result().start_metadata()  # beside pg_dump while the rest loads (_run)
            return memory
        return None
    finally:
        if ahead is not None:
            await asyncio.to_thread(ahead.stop)


def _derive_key_ahead(config: Config):
    """The repository's key derived on a thread while pg_dump runs (scrypt, ~0.1 s of CPU
    that otherwise follows the program's imports), into a KeyMemory the run's job opens the
    repository with. Only when the passphrase comes without asking (the environment or
    storage.passphrase_file): a prompt, or a passphrase command, keeps its place in the run."""
    if not (os.environ.get(ENV_PASSPHRASE) or config.storage.passphrase_file):
        return None
    try:
        secret = resolve_passphrase(config.storage, interactive=False)
    except Exception:  # an unreadable file: the run reports it where it reads it
        return None
    from core.repository.keycache import KeyMemory
    from core.storage.factory import open_primary

    memory = KeyMemory()
    memory.derive_ahead(lambda: open_primary(config.storage), secret)
    return memory


async def _dumps_here(args, config: Config) -> bool:
    """Whether this backup surely dumps the database in this process, now."""
    from core.config.sources import DATABASE, UnknownSource, select_sources
    from core.statedir import resolve_state_dir

    db = config.database
    if not (db.enabled and db.mode == "logical"):
        return False
    if args.source:
        try:
            if DATABASE not in select_sources(config, list(args.source), order="named", unknown="raise"):
                return False
        except UnknownSource:
            return False  # the run refuses it, with its own words
    if not cli_jobs.limited_here(args) and (resolve_state_dir(config) / "daemon.sock").exists():
        return False  # a daemon may take the job: it dumps there
    from core.repository.lock import exclusive_holder
    from core.storage.factory import open_primary

    backend = open_primary(config.storage)
    try:
        if await exclusive_holder(backend) is not None:
            return False  # a prune holds the repository: the run waits, and dumps once it may
    except Exception:  # no repository, unreadable: the run says so properly
        return False
    finally:
        await backend.close()
    return True


def _bare_on_terminal(argv: list[str]) -> bool:
    """No command given (only --config/--json) and a person at a terminal: open the console."""
    rest = [
        a
        for i, a in enumerate(argv)
        if a != "--json" and not a.startswith("--config=") and a != "--config" and not (i and argv[i - 1] == "--config")
    ]
    return not rest and sys.stdin.isatty() and sys.stdout.isatty()


def console_main(args, config: Config, config_path: Path) -> int:
    from app.console import run_console

    # Ask for the passphrase on the plain terminal, before the console takes the screen.
    secret = resolve_passphrase(config.storage)
    return asyncio.run(
        run_console(
            config,
            lambda _confirm: secret,
            config_path=config_path,
            read_only=args.read_only,
            prefer_daemon=not args.no_daemon,
        )
    )


def prepare(argv: list[str] | None) -> int | Callable[[], int]:
    """Parse argv, then check (`config check`) or load the config: the exit code when that ends
    the run, else the command to run (app/cli.py maps what it raises to exit codes)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if _bare_on_terminal(argv):
        argv.append("console")
    args = build_parser().parse_args(argv)
    out = Output(args.json)
    if args.command == "serve":  # no config, no passphrase: it only moves bytes (app/cli_serve.py)
        from app import cli_serve

        return lambda: cli_serve.serve_main(args)
    config_path = args.config or default_config_path()
    if args.command == "config":
        return config_check(config_path, out, connect=args.connect)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        Output.note(str(exc))
        return EXIT_USAGE
    args.config_path = config_path
    config = config.with_limits(args.limit_upload, args.limit_download)
    if getattr(args, "dump_jobs", None) is not None:  # backup --dump-jobs: this run's [database] dump_jobs
        config = replace(config, database=replace(config.database, dump_jobs=args.dump_jobs))
    for note in config_notes(config, str(config_path)):
        Output.note(note)

    def command() -> int:
        if args.command == "console":
            return console_main(args, config, config_path)
        return asyncio.run(run(args, config, out))

    return command
