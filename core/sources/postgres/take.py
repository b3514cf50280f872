"""The database's part of a backup run: which function takes the snapshot for the
configured mode, as the ``DatabaseTake`` that core/backup/run.py calls.

The choice lives here, with the sources, so that the backup layer below never imports one.
"""

from __future__ import annotations

from collections.abc import Awaitable

from core.backup.run import DatabaseTake, DumpProgress
from core.config import DatabaseConfig
from core.errors import UsageError
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.sources.postgres.dump_start import StartedDump
from core.sources.postgres.logical_backup import backup_logical
from core.sources.postgres.logical_snapshot import SOURCE


def database_take(db: DatabaseConfig, started_dump: Awaitable[StartedDump] | None = None) -> DatabaseTake:
    """``started_dump``: the logical dump of ``db``, already begun (BackupService.backup)."""

    async def take(repo: Repository, backup_set: str, tags: tuple[str, ...], on_bytes: DumpProgress) -> Snapshot:
        if started_dump is not None:
            return await backup_logical(
                repo, db, backup_set=backup_set, tags=tags, on_bytes=on_bytes, started=started_dump
            )
        if db.mode == "physical":
            # backup_physical, with its waits for WAL archiving bounded (archive_wait.py).
            from core.sources.postgres.archive_wait import backup_physical_bounded

            return await backup_physical_bounded(repo, db, backup_set=backup_set, tags=tags, on_bytes=on_bytes)
        if db.mode == "logical":
            return await backup_logical(
                repo, db, backup_set=backup_set, tags=tags, on_bytes=on_bytes, jobs=db.dump_jobs
            )
        raise UsageError(f'database.mode = {db.mode!r} is not supported; use "logical" or "physical"')

    return DatabaseTake(SOURCE, take, started_dump)


__all__ = ["database_take"]
