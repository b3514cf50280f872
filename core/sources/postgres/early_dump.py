"""A logical dump started by the command line before the rest of the program is loaded.

A one-shot `axisor-backup backup` spent ~0.6 s between exec and pg_dump's spawn: the CLI's
and the service's imports, the job engine, then psycopg and the connection. pg_dump itself
runs ~0.6 s on 1,000 small tables, so that start-up was most of the gap to it. The command
line (app/cli_run.py) now starts the dump right after the config is loaded, when the run
certainly takes one here (no daemon to hand it to, the database chosen, logical, no prune
holding the repository), and *offers* it; the service's backup run (core/service/backup.py)
*claims* it instead of starting its own, so the imports, the engine, the key derivation
and the index load happen while pg_dump runs. The job engine's params are JSON, so the
hand-over is this process-wide slot, keyed by the database's config.

A dump nobody claims (the job refused, ran in a daemon, a run for other sources) is stopped
by ``discard``: no pg_dump left running, no session holding the exported snapshot.
This module imports nothing heavy: it is loaded before the dump starts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import DatabaseConfig

_offered: list[tuple[Any, asyncio.Future[Any]]] = []


def offer(database: DatabaseConfig, dump: asyncio.Future[Any]) -> None:
    """``dump``: start_dump(database) (core/sources/postgres/logical_backup.py), started."""
    _offered.append((database, dump))


def claim(database: DatabaseConfig) -> asyncio.Future[Any] | None:
    """The dump offered for this very database config, once; None when there is none."""
    for i, (db, dump) in enumerate(_offered):
        if db == database:
            del _offered[i]
            return dump
    return None


async def stop(dump: asyncio.Future[Any]) -> None:
    """Stop a dump started ahead that no backup took (a wrong passphrase, a held lock, a run
    refused); a backup that took it closes it itself, and closing twice is safe."""
    dump.cancel()
    outcome = (await asyncio.gather(dump, return_exceptions=True))[0]
    if not isinstance(outcome, BaseException):
        await outcome.close()


async def discard() -> None:
    """Stop every dump offered and not claimed."""
    while _offered:
        _, dump = _offered.pop()
        await stop(dump)
