"""PostgreSQL's archive_command and restore_command: `wal-push` (quiet unless --json; what it
pushed ahead remembered for app/wal_quick.py) and `wal-fetch` (exit 1, quietly, when not archived; what it spooled ahead remembered for
app/wal_fetch_quick.py; `--ahead`: the prefetch follower)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli_output import Output
from core.errors import Exit

if TYPE_CHECKING:
    from core.service import BackupService

EXIT_OK = Exit.OK
EXIT_ERROR = Exit.ERROR


async def cmd_wal_push(svc: BackupService, args, out: Output) -> int:
    started = time.monotonic()
    r = await svc.wal_push(args.wal_path)
    if r.pushed_ahead:  # the next runs can be answered before the imports (app/wal_quick.py)
        await asyncio.to_thread(_remember, svc, args)
    if out.json:  # quiet otherwise: the server logs whatever an archive_command prints
        out.emit(
            {
                "name": r.name,
                "size": r.size,
                "already_archived": r.already,
                "from_marker": r.from_marker,
                "pushed_ahead": list(r.pushed_ahead),
                "through_daemon": False,
                "seconds": round(time.monotonic() - started, 3),
            },
            str,
        )
    return EXIT_OK


async def cmd_wal_fetch(svc: BackupService, args, out: Output) -> int:
    from core.sources.postgres.wal import WalNotFound

    if args.wal_ahead:
        fetched = await svc.wal_follow(args.wal_name, args.wal_dest, _handed_lock())
        if out.json:
            out.emit({"name": args.wal_name, "fetched_ahead": fetched}, str)
        return EXIT_OK
    try:
        size = await svc.wal_fetch(args.wal_name, args.wal_dest)
    except WalNotFound:
        return EXIT_ERROR  # quietly: recovery asks for files past the end of the archive
    # The next runs can be answered from the spool before the imports (app/wal_fetch_quick.py).
    await asyncio.to_thread(_remember, svc, args)
    if out.json:
        out.emit({"name": args.wal_name, "size": size, "path": str(args.wal_dest)}, str)
    return EXIT_OK


def _remember(svc: BackupService, args) -> None:
    from app.wal_quick import remember

    storage = svc.config.storage
    remember(Path(args.config_path), svc.state_dir, storage.local_path, storage.passphrase_file)


def _handed_lock() -> int | None:
    """The spool's lock the quick wal-fetch handed to this follower (its fd, by number)."""
    from app.wal_fetch_quick import LOCK_FD_ENV

    value = os.environ.get(LOCK_FD_ENV, "")
    return int(value) if value.isdigit() else None
