"""PostgreSQL's archive_command and restore_command: `wal-push` (quiet unless --json; what it
pushed ahead remembered for app/wal_quick.py) and `wal-fetch` (exit 1, quietly, when not archived)."""

from __future__ import annotations

import asyncio
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
        from app.wal_quick import remember

        await asyncio.to_thread(remember, Path(args.config_path), svc.state_dir, svc.config.storage.local_path)
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

    try:
        size = await svc.wal_fetch(args.wal_name, args.wal_dest)
    except WalNotFound:
        return EXIT_ERROR  # quietly: recovery asks for files past the end of the archive
    if out.json:
        out.emit({"name": args.wal_name, "size": size, "path": str(args.wal_dest)}, str)
    return EXIT_OK
