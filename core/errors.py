"""Exceptions that carry what an operator needs to act.

Each class maps to one documented exit code (see app/cli.py and docs/CLI.md), so the
CLI never has to guess from a message what went wrong.
"""

from __future__ import annotations


class AxisorError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1


class UsageError(AxisorError):
    exit_code = 2


class RepositoryNotFound(AxisorError):
    exit_code = 3


class WrongPassphrase(AxisorError):
    exit_code = 4


class LockHeld(AxisorError):
    exit_code = 5


class LockUnreadable(LockHeld):
    """A lock this process may not read (exit 5, as a held lock): it may be a live lock of
    another user (a prune) or a leftover. Writers stop, naming it; reading commands go on
    without a lock, with a note naming it (core/service.py)."""

    def __init__(self, location: str, key: str, reason: str) -> None:
        super().__init__(f"{location}: the lock {key} {reason}: a lock another user wrote? Every command that "
                         "writes into this repository must run as the same user; fix its owner or mode, or "
                         "delete it once no other process uses the repository (reading commands: snapshots, "
                         "ls, show, restore, verify go on without a lock)")
        self.location = location
        self.key = key
        self.reason = reason


class VerificationFailed(AxisorError):
    exit_code = 6


class PartialBackup(AxisorError):
    exit_code = 7


class UnsupportedVersion(AxisorError):
    exit_code = 8


class DamagedObject(AxisorError):
    """An object in the repository failed to open: truncated, tampered, or missing."""

    exit_code = 9

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"damaged repository object {key}: {reason}")
        self.key = key
        self.reason = reason


class StorageFull(AxisorError):
    exit_code = 10


class SourceError(AxisorError):
    """A configured source path cannot be read at all (missing, permission)."""

    exit_code = 11


class RestoreRefused(AxisorError):
    """A restore would write outside its target or through a symlink."""

    exit_code = 12


class SnapshotNotFound(AxisorError):
    exit_code = 13


class NoLocationAvailable(AxisorError):
    """No configured location could serve (each location's reason is in the message)."""

    exit_code = 1


class DatabaseError(SourceError):
    """PostgreSQL could not be reached, or pg_dump/pg_restore failed."""

    exit_code = 14


class ToolVersionMismatch(DatabaseError):
    """PostgreSQL programs are missing, or older than the server or the dump they must handle."""

    exit_code = 15


class ArchivingNotReady(DatabaseError):
    """Physical mode: WAL archiving is not set up, or a WAL segment did not arrive in the
    repository within [database] archive_timeout_seconds (`database check`, the check
    before a base backup, a base backup's last segment), or `database check` failed."""

    exit_code = 18


class RestoreValidationFailed(AxisorError):
    """A database restore finished, but the restored row counts differ from the snapshot's."""

    exit_code = 16


class DrillFailed(AxisorError):
    """A disaster-recovery drill ran, but a step or a check failed (the report says which)."""

    exit_code = 19


class JobNotFound(AxisorError):
    """No job with this id (or id prefix) in the job database."""

    exit_code = 20


class BackupStalled(AxisorError):
    """A file source read no byte and finished no file for [engine] stall_timeout_seconds."""

    exit_code = 22


class PartialRestore(AxisorError):
    """A file restore finished, but some files could not be restored fully (a damaged or
    missing blob): every other file is in place; each partial one is named with its missing
    byte ranges, the damaged object and where an intact copy is (docs/CLI.md, restore)."""

    exit_code = 23


class DaemonError(AxisorError):
    """The daemon's socket refused us, or answered something that is not the protocol."""

    exit_code = 21


class DaemonConnectionLost(DaemonError):
    """The daemon's connection dropped under a request or a stream (it was killed, or crashed)."""
