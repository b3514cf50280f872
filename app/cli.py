"""axisor-backup: the headless command line's entry point (`main`) and the one table mapping
the exceptions a command raises to exit codes.

Parsing: app/cli_parser.py; from argv to a command's run: app/cli_run.py; printing:
app/cli_output.py; the commands: the other app/cli_*.py (docs/ARCHITECTURE.md).

Exit codes (docs/CLI.md): 0 ok, 1 unexpected error, 2 usage or config error, 3 repository
not found, 4 wrong passphrase, 5 lock held, 6 verification failed, 7 partial backup
or restore finished with warnings,
8 unsupported repository version, 9 damaged repository object, 10 storage full,
11 source unreadable, 12 restore refused, 13 snapshot not found, 14 database error (connection,
pg_dump, pg_restore), 15 PostgreSQL tools missing or too old, 16 restored row counts differ
from the snapshot, 17 WAL file already archived with different content (wal-push), 18 database
not ready: archiving settings (database archiving), a failed `database check`, WAL not archived
within archive_timeout_seconds (physical backup), 22 backup stalled (no byte read for [engine]
stall_timeout_seconds), 23 restore finished with some files partial (damaged or missing blobs),
24 storage refuses writes, 25 the location refuses (append-only), 26 snapshots vanished
without a tombstone (rollback), 27 this key may not do that (a write-only key), 130
interrupted.
"""

from __future__ import annotations

if __name__ == "__main__":
    # `python -m app.cli wal-push`: answered from its marker before the imports below, which
    # cost more than the answer, and a backup a running daemon takes (app/wal_quick.py,
    # app/backup_quick.py; the installed command starts there).
    from app.wal_quick import exit_if_answered

    exit_if_answered()

import contextlib
import os
import sys

from app import cli_run
from app.cli_output import Output
from app.process import tune_process
from core.backup import watchdog
from core.config import PassphraseError
from core.errors import AxisorError, Exit

# Short names for the codes the table below returns (core/errors.py Exit is the table of codes).
EXIT_OK = Exit.OK
EXIT_USAGE = Exit.USAGE
EXIT_INTERRUPTED = Exit.INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if watchdog.abandoned():
        # A read the backup watchdog gave up on (core/backup/watchdog.py) may stay blocked
        # forever on a worker thread, and the interpreter joins those threads at exit: the
        # lock is released and the outcome printed, so leave without waiting for it.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    tune_process()
    command = cli_run.prepare(argv)
    if isinstance(command, int):
        return command  # ended before a command ran: config check, a config problem
    try:
        return command()
    except PassphraseError as exc:
        Output.note(f"error: {exc}")
        return EXIT_USAGE
    except AxisorError as exc:
        Output.note(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        Output.note("interrupted; the repository is unchanged up to the last finished snapshot")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): not an error worth a traceback.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
