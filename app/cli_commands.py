"""The command table: each command's name to the handler that runs it in a BackupService.

Imported by app/cli_run.py only once the arguments parsed: the handlers bring core.service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app import (
    cli_drills,
    cli_jobs,
    cli_locations,
    cli_protection,
    cli_prune,
    cli_repair,
    cli_restore_test,
    cli_schedules,
)
from app.cli_catalog import cmd_ls, cmd_show, cmd_snapshots
from app.cli_database import cmd_database
from app.cli_keys import cmd_init, cmd_key
from app.cli_output import Output
from app.cli_restore import cmd_restore, cmd_rollback
from app.cli_unlock import cmd_unlock
from app.cli_verify import cmd_verify
from app.cli_wal import cmd_wal_fetch, cmd_wal_push

if TYPE_CHECKING:
    from core.service import BackupService


async def cmd_backup(svc: BackupService, args, out: Output) -> int:
    # A backup is a job: through the daemon when one runs, else an engine in this process.
    return await cli_jobs.cmd_backup(svc, args, out)


COMMANDS = {
    "init": cmd_init,
    "backup": cmd_backup,
    "snapshots": cmd_snapshots,
    "show": cmd_show,
    "ls": cmd_ls,
    "restore": cmd_restore,
    "verify": cmd_verify,
    "key": cmd_key,
    "unlock": cmd_unlock,
    "rollback": cmd_rollback,
}
COMMANDS.update({"wal-push": cmd_wal_push, "wal-fetch": cmd_wal_fetch, "database": cmd_database})
COMMANDS["schedules"] = cli_schedules.cmd_schedules
COMMANDS.update(cli_prune.COMMANDS)
COMMANDS.update(cli_repair.COMMANDS)
COMMANDS.update(cli_protection.COMMANDS)
COMMANDS.update(cli_locations.COMMANDS)
COMMANDS.update(cli_jobs.COMMANDS)
COMMANDS.update(cli_drills.COMMANDS)
COMMANDS.update(cli_restore_test.COMMANDS)
