"""Exceptions that carry what an operator needs to act, and the one table of exit codes.

``Exit`` is every exit code the program documents (docs/CLI.md, "Exit codes": a test holds
the two together). Each exception class names its code from it, so the CLI never has to
guess from a message what went wrong, and no module writes a bare number.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """The exit codes, one meaning each (docs/CLI.md has the long form of every one)."""

    OK = 0
    ERROR = 1  # unexpected, storage errors, no location can serve
    USAGE = 2  # bad arguments, config, passphrase source, unknown name
    NO_REPOSITORY = 3
    WRONG_PASSPHRASE = 4
    LOCKED = 5
    DAMAGE_FOUND = 6  # `verify` found damage
    WARNINGS = 7  # finished with warnings (a partial backup, attributes a restore could not apply)
    UNSUPPORTED_VERSION = 8
    DAMAGED_OBJECT = 9
    STORAGE_FULL = 10
    SOURCE_UNREADABLE = 11
    RESTORE_REFUSED = 12
    SNAPSHOT_NOT_FOUND = 13
    DATABASE = 14
    TOOLS = 15  # PostgreSQL programs missing or too old
    VALIDATION_FAILED = 16  # restored data differs from the snapshot
    WAL_CONFLICT = 17
    ARCHIVING_NOT_READY = 18
    DRILL_FAILED = 19
    JOB_NOT_FOUND = 20
    DAEMON = 21
    STALLED = 22
    PARTIAL_RESTORE = 23
    READ_ONLY = 24  # the storage refuses writes
    REFUSED = 25  # the location refuses this operation (append-only: no deletes, no overwrites)
    ROLLBACK = 26  # snapshots this host saw vanished without a tombstone: rollback or deletion
    KEY_REFUSED = 27  # this key may not do that (a write-only key asked to read, restore, prune)
    INTERRUPTED = 130  # Ctrl-C, a cancelled job


class AxisorError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code: int = Exit.ERROR


class KeyRefused(AxisorError):
    """The key that opened the repository may not do this: a write-only key (`key add
    --write-only`) backs up and pushes WAL, and reads, restores, prunes and forgets nothing."""

    exit_code: int = Exit.KEY_REFUSED


class UsageError(AxisorError):
    exit_code: int = Exit.USAGE


class RepositoryNotFound(AxisorError):
    exit_code: int = Exit.NO_REPOSITORY


class WrongPassphrase(AxisorError):
    exit_code: int = Exit.WRONG_PASSPHRASE


class LockHeld(AxisorError):
    exit_code: int = Exit.LOCKED


class LockUnreadable(LockHeld):
    """A lock this process may not read (exit 5, as a held lock): it may be a live lock of
    another user (a prune) or a leftover. Writers stop, naming it; reading commands go on
    without a lock, with a note naming it (core/service/session.py)."""

    def __init__(self, location: str, key: str, reason: str) -> None:
        super().__init__(
            f"{location}: the lock {key} {reason}: a lock another user wrote? Every command that "
            "writes into this repository must run as the same user; fix its owner or mode, or "
            "delete it once no other process uses the repository (reading commands: snapshots, "
            "ls, show, restore, verify go on without a lock)"
        )
        self.location = location
        self.key = key
        self.reason = reason


class VerificationFailed(AxisorError):
    exit_code: int = Exit.DAMAGE_FOUND


class PartialBackup(AxisorError):
    exit_code: int = Exit.WARNINGS


class UnsupportedVersion(AxisorError):
    exit_code: int = Exit.UNSUPPORTED_VERSION


class DamagedObject(AxisorError):
    """An object in the repository failed to open: truncated, tampered, or missing."""

    exit_code: int = Exit.DAMAGED_OBJECT

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"damaged repository object {key}: {reason}")
        self.key = key
        self.reason = reason


class StorageFull(AxisorError):
    exit_code: int = Exit.STORAGE_FULL


class SourceError(AxisorError):
    """A configured source path cannot be read at all (missing, permission)."""

    exit_code: int = Exit.SOURCE_UNREADABLE


class RestoreRefused(AxisorError):
    """A restore would write outside its target or through a symlink."""

    exit_code: int = Exit.RESTORE_REFUSED


class SnapshotNotFound(AxisorError):
    exit_code: int = Exit.SNAPSHOT_NOT_FOUND


class NoLocationAvailable(AxisorError):
    """No configured location could serve (each location's reason is in the message)."""

    exit_code: int = Exit.ERROR


class DatabaseError(SourceError):
    """PostgreSQL could not be reached, or pg_dump/pg_restore failed."""

    exit_code: int = Exit.DATABASE


class ToolVersionMismatch(DatabaseError):
    """PostgreSQL programs are missing, or older than the server or the dump they must handle."""

    exit_code: int = Exit.TOOLS


class ArchivingNotReady(DatabaseError):
    """Physical mode: WAL archiving is not set up, or a WAL segment did not arrive in the
    repository within [database] archive_timeout_seconds (`database check`, the check
    before a base backup, a base backup's last segment), or `database check` failed."""

    exit_code: int = Exit.ARCHIVING_NOT_READY


class RestoreValidationFailed(AxisorError):
    """A database restore finished, but the restored row counts differ from the snapshot's."""

    exit_code: int = Exit.VALIDATION_FAILED


class DrillFailed(AxisorError):
    """A disaster-recovery drill ran, but a step or a check failed (the report says which)."""

    exit_code: int = Exit.DRILL_FAILED


class JobNotFound(AxisorError):
    """No job with this id (or id prefix) in the job database."""

    exit_code: int = Exit.JOB_NOT_FOUND


class BackupStalled(AxisorError):
    """A file source read no byte and finished no file for [engine] stall_timeout_seconds."""

    exit_code: int = Exit.STALLED


class PartialRestore(AxisorError):
    """A file restore finished, but some files could not be restored fully (a damaged or
    missing blob): every other file is in place; each partial one is named with its missing
    byte ranges, the damaged object and where an intact copy is (docs/CLI.md, restore)."""

    exit_code: int = Exit.PARTIAL_RESTORE


class DaemonError(AxisorError):
    """The daemon's socket refused us, or answered something that is not the protocol."""

    exit_code: int = Exit.DAEMON


class DaemonConnectionLost(DaemonError):
    """The daemon's connection dropped under a request or a stream (it was killed, or crashed)."""
