"""The argparse declaration of the command line: global options, every command and its options
(`build_parser`); app/cli_jobs.py, cli_locations.py, cli_prune.py, cli_repair.py, cli_schedules.py
and cli_drills.py declare their own commands' parsers, added here."""

from __future__ import annotations

import argparse
from pathlib import Path

from app import (
    cli_drills,
    cli_jobs,
    cli_locations,
    cli_protection,
    cli_prune,
    cli_repair,
    cli_restore_test,
    cli_schedules,
    cli_serve,
)
from core import __version__
from core.repository.keys import MIN_PASSPHRASE


def _kib_per_second(text: str) -> int:
    """A --limit-upload/--limit-download value, checked as the config keys are."""
    from core.config.checks import Invalid, KibPerSecond

    try:
        return KibPerSecond().check(int(text.strip()), None)
    except (ValueError, Invalid):
        raise argparse.ArgumentTypeError(
            f"must be a rate in KiB/s, an integer >= 0 (0: unlimited), e.g. 2048 for 2 MiB/s (got {text!r})"
        ) from None


def _dump_jobs(text: str) -> int:
    """A backup --dump-jobs value, in [database] dump_jobs's range."""
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 16 (got {text!r})")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="axisor-backup", description="Back up and restore the Axisor platform.")
    p.add_argument(
        "--config",
        type=Path,
        help="config file (default: $AXISOR_BACKUP_CONFIG, ./config.toml, or the user config folder)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/CLI.md)")
    p.add_argument("--version", action="version", version=f"axisor-backup {__version__}")
    for direction, to_from in (("upload", "to"), ("download", "from")):
        p.add_argument(
            f"--limit-{direction}",
            type=_kib_per_second,
            metavar="KiB/s",
            help=f"{direction}s {to_from} every location at most this many KiB/s, overriding "
            f"limit_{direction} of config.toml for this run (0: unlimited)",
        )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --json and the limits are accepted after the command too; SUPPRESS keeps top-level ones.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for direction in ("upload", "download"):
        common.add_argument(
            f"--limit-{direction}", type=_kib_per_second, default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )

    i = sub.add_parser("init", parents=[common], help="create the repository at storage.local_path")
    i.add_argument(
        "--weak-passphrase", action="store_true", help=f"accept a passphrase shorter than {MIN_PASSPHRASE} characters"
    )

    b = sub.add_parser("backup", parents=[common], help="back up every configured source (or the ones named)")
    b.add_argument("--type", dest="kind", choices=["full", "incremental", "differential"], default="incremental")
    b.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help="e.g. application/log_files, log_files, or application (repeatable)",
    )
    b.add_argument("--tag", action="append", default=[], metavar="TAG")
    b.add_argument(
        "--lock-wait",
        type=float,
        default=600,
        metavar="SECONDS",
        help="how long to wait for a repository lock another process holds (default 600; 0 fails at once)",
    )
    b.add_argument(
        "--dump-jobs",
        type=_dump_jobs,
        default=None,
        metavar="N",
        help="logical database backup: N pg_dumps at once on one snapshot (1-16; overrides [database] dump_jobs)",
    )

    s = sub.add_parser("snapshots", parents=[common], help="the catalog of snapshots")
    s.add_argument("--source", help="only this source")
    s.add_argument(
        "--no-lock",
        action="store_true",
        help="take no repository lock: create nothing in the repository (read-only media)",
    )

    sh = sub.add_parser("show", parents=[common], help="one snapshot's manifest")
    sh.add_argument("snapshot")
    sh.add_argument(
        "--no-lock",
        action="store_true",
        help="take no repository lock: create nothing in the repository (read-only media)",
    )

    ls = sub.add_parser("ls", parents=[common], help="list a snapshot's files")
    ls.add_argument("snapshot")
    ls.add_argument("path", nargs="?")
    ls.add_argument("-l", "--long", action="store_true")
    ls.add_argument(
        "--no-lock",
        action="store_true",
        help="take no repository lock: create nothing in the repository (read-only media)",
    )

    r = sub.add_parser("restore", parents=[common], help="restore snapshots into a folder, or a database")
    r.add_argument("snapshot", nargs="*", help="ids, id prefixes, latest (the newest backup set) or latest:SOURCE")
    r.add_argument("--target", type=Path, help="folder to restore files into")
    r.add_argument(
        "--target-db",
        metavar="URL",
        help="restore a database snapshot into this database (postgresql://HOST:PORT/DBNAME, "
        "or a database name on the configured server); created when missing",
    )
    r.add_argument(
        "--force",
        action="store_true",
        help="with --target-db: replace a non-empty database's contents, after a safety backup of it; "
        "with --to-time --table --target-db: put the tables back in place as they were, after a safety "
        "snapshot of them (rollback RESTORE_ID undoes it)",
    )
    r.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="SCHEMA.NAME",
        help="with --target-db: restore only this table and what it needs (repeatable)",
    )
    r.add_argument(
        "--schema",
        action="append",
        default=[],
        metavar="NAME",
        help="with --target-db: restore only this schema's tables and objects (repeatable)",
    )
    r.add_argument(
        "--roles",
        action="store_true",
        help="with --target-db: first create the snapshot's roles the target cluster lacks (from the "
        "globals stored with the backup; existing roles are never changed), so ownership is carried",
    )
    r.add_argument(
        "--to-time",
        metavar="TIMESTAMP",
        help="point-in-time recovery of the database (ISO 8601; local time without an offset) "
        "into --target-dir, from a physical base backup and the archived WAL",
    )
    r.add_argument(
        "--as",
        dest="as_names",
        action="append",
        default=[],
        metavar="SCHEMA.NAME",
        help="with --to-time --table --target-db: the name of the copy beside the live table (one per --table; "
        "default NAME_at_HHMM)",
    )
    r.add_argument(
        "--with-references",
        action="store_true",
        help="with --to-time --table --target-db: also copy the tables they reference (foreign keys, transitively), "
        "each as NAME_at_HHMM, keeping the keys between the copies",
    )
    r.add_argument(
        "--platform",
        action="store_true",
        help="with --to-time: the whole platform at that instant: the database recovered to it (into "
        "--target-dir) and every files source from the snapshot that belongs with it (into --target), "
        "with the skew of each; --dry-run shows the plan",
    )
    r.add_argument(
        "--target-dir",
        type=Path,
        metavar="DIR",
        help="with --to-time: a new or empty directory for the restored data directory",
    )
    r.add_argument(
        "--start",
        action="store_true",
        help="with --to-time: start the restored server on --port and wait until it has promoted",
    )
    r.add_argument("--port", type=int, help="with --start: the restored server's port")
    r.add_argument(
        "--os-user",
        metavar="USER",
        help="with --to-time as root: the OS user to own and run the restored cluster (default postgres)",
    )
    r.add_argument(
        "--timeout",
        type=float,
        default=900,
        metavar="SECONDS",
        help="with --start: how long recovery may take (default 900)",
    )
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="with --target: list what would be created, overwritten and removed; with --to-time --table "
        "--force: say the plan; change nothing",
    )
    r.add_argument(
        "--delete",
        action="store_true",
        help="with --target: remove files under the snapshot's folders that the snapshot does not have",
    )
    r.add_argument(
        "--no-validate",
        action="store_true",
        help="with --target: skip validating the restored files against the snapshot",
    )
    r.add_argument(
        "--read-back",
        action="store_true",
        help="with --target: validate by re-reading and re-chunking every restored file from disk "
        "(slower; also catches another process changing a file after it was restored)",
    )
    r.add_argument("--include", action="append", default=[], metavar="GLOB")
    r.add_argument(
        "--no-lock",
        action="store_true",
        help="take no repository lock: create nothing in the repository (read-only media)",
    )
    r.add_argument("--source", help="with latest: the newest snapshot of this source")
    r.add_argument(
        "--no-xattrs",
        action="store_true",
        help="with --target: restore no extended attributes (ACLs and capabilities included)",
    )
    r.add_argument(
        "--no-acls", action="store_true", help="with --target: restore no POSIX ACLs (system.posix_acl_* attributes)"
    )
    r.add_argument(
        "--file-flags",
        action="store_true",
        help="with --target: set inode flags (chattr +i, +a, ...) as the snapshot has them, last",
    )
    r.add_argument(
        "--numeric-owner",
        action="store_true",
        help="with --target as root: owners by the stored uid/gid, ignoring user and group names",
    )
    r.add_argument(
        "--preserve-privileges",
        action="store_true",
        help="with --target as root: keep setuid/setgid bits and file capabilities (stripped by default)",
    )
    r.add_argument(
        "--allow-untrusted-target",
        action="store_true",
        help="with --target as root: restore even though a user other than root can write to "
        "the target or a folder above it",
    )
    r.add_argument(
        "--no-fsync",
        action="store_true",
        help="with --target: do not flush the restored files to disk before reporting success",
    )

    v = sub.add_parser("verify", parents=[common], help="check the repository can restore its snapshots")
    v.add_argument("--full", action="store_true", help="also read and check every pack")
    v.add_argument("snapshot", nargs="*")
    v.add_argument(
        "--no-lock",
        action="store_true",
        help="take no repository lock: create nothing in the repository (read-only media)",
    )

    k = sub.add_parser("key", parents=[common], help="manage passphrases")
    ksub = k.add_subparsers(dest="key_command", required=True)
    ksub.add_parser("list", parents=[common])
    ka = ksub.add_parser("add", parents=[common], help="add a passphrase ($AXISOR_BACKUP_NEW_PASSPHRASE or prompt)")
    ka.add_argument("--new-passphrase-file", type=Path)
    ka.add_argument(
        "--write-only",
        action="store_true",
        help="a key that backs up and pushes WAL but cannot read, restore, prune or forget (docs/SECURITY.md)",
    )
    ka.add_argument(
        "--weak-passphrase", action="store_true", help=f"accept a passphrase shorter than {MIN_PASSPHRASE} characters"
    )
    kr = ksub.add_parser("remove", parents=[common])
    kr.add_argument("key_id")
    kp = ksub.add_parser(
        "passwd",
        parents=[common],
        help="replace the passphrase in use (re-wraps the same master key: data stays "
        "readable by anyone who saved the old master key; nothing is re-encrypted)",
    )
    kp.add_argument("--new-passphrase-file", type=Path)
    kp.add_argument(
        "--weak-passphrase", action="store_true", help=f"accept a passphrase shorter than {MIN_PASSPHRASE} characters"
    )

    ksub.add_parser(
        "rotate",
        parents=[common],
        help="a new master encryption key for everything written from now on; the old one is retired "
        "(still opens old data until `prune --rewrite`); every other key file is removed",
    )

    ke = ksub.add_parser(
        "escrow",
        parents=[common],
        help="split the master key into N shares, any K of which rebuild it (written to --out, one file each)",
    )
    ke.add_argument("--shares", type=int, required=True, metavar="N")
    ke.add_argument("--threshold", type=int, required=True, metavar="K")
    ke.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty folder for the share files")
    kv = ksub.add_parser(
        "recover",
        parents=[common],
        help="rebuild the master key from escrow shares and add a key for a new passphrase (no passphrase needed)",
    )
    kv.add_argument("share", nargs="+", type=Path, help="share files (one share each)")
    kv.add_argument("--new-passphrase-file", type=Path)
    kv.add_argument("--check", action="store_true", help="only prove the shares open this repository (the drill)")
    kv.add_argument(
        "--weak-passphrase", action="store_true", help=f"accept a passphrase shorter than {MIN_PASSPHRASE} characters"
    )

    c = sub.add_parser("config", parents=[common], help="configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    cc = csub.add_parser("check", parents=[common], help="validate the config and report every problem")
    cc.add_argument(
        "--connect",
        action="store_true",
        help="also connect to [database] and check its version and the permissions its mode needs "
        "(exit 18 when a check fails, 14 when it cannot be reached)",
    )

    wp = sub.add_parser(
        "wal-push", parents=[common], help="archive_command: store one WAL file (archive_command = '... wal-push %%p')"
    )
    wp.add_argument("wal_path", type=Path, metavar="PATH", help="the WAL file (%%p)")
    wp.add_argument(
        "--key-file",
        dest="wal_key_file",
        type=Path,
        metavar="FILE",
        help="read the passphrase from FILE instead of the config (the server's write-only key: "
        "database archiving --setup)",
    )
    wf = sub.add_parser(
        "wal-fetch",
        parents=[common],
        help="restore_command: write one archived WAL file (exit 1 when it is not archived)",
    )
    wf.add_argument(
        "--ahead",
        dest="wal_ahead",
        action="store_true",
        help="fetch nothing into PATH: keep the prefetch spool beside it full while recovery asks "
        "(the quick wal-fetch starts this in the background)",
    )
    wf.add_argument("wal_name", metavar="NAME", help="the WAL file name (%%f)")
    wf.add_argument("wal_dest", type=Path, metavar="PATH", help="where to write it (%%p)")
    db = sub.add_parser("database", parents=[common], help="PostgreSQL WAL archiving")
    dbsub = db.add_subparsers(dest="database_command", required=True)
    dba = dbsub.add_parser(
        "archiving",
        parents=[common],
        help="check the server's archiving settings and print what to set (exit 18 if wrong)",
    )
    dba.add_argument(
        "--setup",
        action="store_true",
        help="also give the server a write-only key of its own (written to --key-file) for archive_command",
    )
    dba.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="where --setup writes the server's key passphrase (default: wal-writer.key beside the config)",
    )
    dba.add_argument("--owner", metavar="USER", help="--setup: give the key file to this OS user (as root)")
    dbsub.add_parser(
        "check",
        parents=[common],
        help="connect, check version, permissions and (physical) that a forced WAL segment arrives "
        "in the repository (exit 18 if not, 14 if unreachable)",
    )
    dbsub.add_parser(
        "status", parents=[common], help="the WAL archive: last segment and its age, gaps, the recovery window"
    )

    rb = sub.add_parser(
        "rollback", parents=[common], help="undo a restore: put back what it overwrote, from its safety snapshots"
    )
    rb.add_argument("restore_id", metavar="RESTORE_ID", help="printed by restore (restore_id in --json)")
    u = sub.add_parser("unlock", parents=[common], help="remove stale locks")
    u.add_argument("--all", action="store_true", help="remove every lock, also live ones")
    cli_schedules.add_parser(sub, common)
    cli_prune.add_parser(sub, common)
    cli_repair.add_parser(sub, common)
    cli_protection.add_parser(sub, common)
    cli_serve.add_parser(sub, common)
    cli_locations.add_parsers(sub, common)
    cli_jobs.add_parsers(sub, common)
    cli_drills.add_parsers(sub, common)
    cli_restore_test.add_parsers(sub, common)

    con = sub.add_parser("console", help="the interactive console (also: bare axisor-backup on a terminal)")
    con.add_argument("--read-only", action="store_true", help="disable every action that changes anything")
    con.add_argument(
        "--no-daemon", action="store_true", help="always use an embedded engine, even when a daemon answers"
    )
    return p
