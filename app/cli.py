"""axisor-backup: the headless command line. Parses arguments, calls core.service, prints.

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
130 interrupted.
"""

from __future__ import annotations

if __name__ == "__main__":
    # `python -m app.cli wal-push`: answered from its marker before the imports below, which
    # cost more than the answer (app/wal_quick.py; the installed command starts there).
    from app.wal_quick import exit_if_answered

    exit_if_answered()

import argparse
import contextlib
import asyncio
import getpass
import json
import os
import shlex
import stat as stat_mod
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from app import cli_drills, cli_jobs, cli_locations, cli_prune, cli_repair, cli_schedules
from app.process import tune_process
from core.backup import watchdog
from core.config import (
    Config,
    ConfigError,
    ConfigProblem,
    PassphraseError,
    default_config_path,
    deprecations,
    insecure_endpoint,
    load_config,
    resolve_passphrase,
)
from core import __version__
from core.fsmeta.describe import as_json, attributes, marks
from core.repository.keys import MIN_PASSPHRASE
from core import scrub
from core.errors import (
    ArchivingNotReady,
    AxisorError,
    Exit,
    PartialRestore,
    RestoreRefused,
    RestoreValidationFailed,
    UsageError,
    VerificationFailed,
)
from core.jobs.api import JobState
from core.repository.snapshot import Snapshot
from core.service import BackupService, RestoreOutcome
from core.text import human_bytes, shown, shown_lines

if TYPE_CHECKING:  # psycopg's module: imported where a database restore runs, named here only
    from core.sources.postgres.restore_report import DbRestoreReport

# Short names for the codes this module returns most (core/errors.py Exit is the table).
EXIT_OK = Exit.OK
EXIT_ERROR = Exit.ERROR
EXIT_USAGE = Exit.USAGE
EXIT_WARNINGS = Exit.WARNINGS  # a partial backup; a restore that finished with warnings
EXIT_INTERRUPTED = Exit.INTERRUPTED


class Output:
    """Human text or stable JSON on stdout; messages and progress on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def emit(self, data: object, text: Callable[[], str]) -> None:
        if self.json:
            # json.dumps escapes every control character (ensure_ascii): nothing raw gets out.
            print(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            # Names inside went through shown(); this is the last guard for the rest of the
            # text (foreign messages, anything missed): no escape sequence reaches a terminal.
            print(shown_lines(text()))

    @staticmethod
    def note(message: str) -> None:
        print(shown_lines(message), file=sys.stderr)


def _kib_per_second(text: str) -> int:
    """A --limit-upload/--limit-download value, checked as the config keys are."""
    from core.config.checks import Invalid, KibPerSecond

    try:
        return KibPerSecond().check(int(text.strip()), None)
    except (ValueError, Invalid):
        raise argparse.ArgumentTypeError(
            f"must be a rate in KiB/s, an integer >= 0 (0: unlimited), e.g. 2048 for 2 MiB/s (got {text!r})"
        ) from None


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
        help="with --target-db: replace a non-empty database's contents, after a safety backup of it",
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
        help="with --target: list what would be created, overwritten and removed; change nothing",
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
    wf = sub.add_parser(
        "wal-fetch",
        parents=[common],
        help="restore_command: write one archived WAL file (exit 1 when it is not archived)",
    )
    wf.add_argument("wal_name", metavar="NAME", help="the WAL file name (%%f)")
    wf.add_argument("wal_dest", type=Path, metavar="PATH", help="where to write it (%%p)")
    db = sub.add_parser("database", parents=[common], help="PostgreSQL WAL archiving")
    dbsub = db.add_subparsers(dest="database_command", required=True)
    dbsub.add_parser(
        "archiving",
        parents=[common],
        help="check the server's archiving settings and print what to set (exit 18 if wrong)",
    )
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
    cli_locations.add_parsers(sub, common)
    cli_jobs.add_parsers(sub, common)
    cli_drills.add_parsers(sub, common)

    con = sub.add_parser("console", help="the interactive console (also: bare axisor-backup on a terminal)")
    con.add_argument("--read-only", action="store_true", help="disable every action that changes anything")
    con.add_argument(
        "--no-daemon", action="store_true", help="always use an embedded engine, even when a daemon answers"
    )
    return p


# -- formatting helpers ----------------------------------------------------------------


def snapshot_json(s: Snapshot) -> dict:
    d = asdict(s)
    d["short_id"] = s.short_id
    return d


def catalog_text(snaps: list[Snapshot]) -> str:
    if not snaps:
        return "no snapshots yet"
    rows = [("ID", "TIME", "SOURCE", "TYPE", "SIZE", "FILES", "NEW", "RATIO", "TAGS")]
    for s in snaps:
        rows.append(
            (
                s.short_id,
                s.datetime.strftime("%Y-%m-%d %H:%M:%S"),
                s.source,
                s.type,
                human_bytes(s.summary.total_bytes),
                str(s.summary.total_files),
                human_bytes(s.summary.data_added_packed),
                f"{s.summary.compression_ratio:.2f}",
                ",".join(s.tags),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def mode_string(mode: int) -> str:
    return stat_mod.filemode(mode)


# -- commands --------------------------------------------------------------------------


async def cmd_init(svc: BackupService, args, out: Output) -> int:
    repo = await svc.init(allow_weak=args.weak_passphrase)
    out.emit(
        {"repository": svc.backend.location, "id": repo.config.id, "version": repo.config.version},
        lambda: f"created repository {repo.config.id[:8]} at {svc.backend.location}",
    )
    return EXIT_OK


async def cmd_backup(svc: BackupService, args, out: Output) -> int:
    # A backup is a job: through the daemon when one runs, else an engine in this process.
    return await cli_jobs.cmd_backup(svc, args, out)


async def cmd_snapshots(svc: BackupService, args, out: Output) -> int:
    return await cli_locations.cmd_snapshots(svc, args, out)  # merged across every location


async def cmd_show(svc: BackupService, args, out: Output) -> int:
    snaps = await svc.resolve([args.snapshot])
    if out.json:
        out.emit(snapshot_json(snaps[0]) if len(snaps) == 1 else [snapshot_json(s) for s in snaps], str)
        return EXIT_OK
    for i, s in enumerate(snaps):
        if i:
            print()
        _show_one(s, out)
    return EXIT_OK


def _show_one(s: Snapshot, out: Output) -> None:
    def text() -> str:
        m = s.summary
        lines = [
            f"snapshot   {s.id}",
            f"time       {shown(s.time)}",
            f"source     {shown(s.source)}",
            f"type       {shown(s.type)}",
            f"parent     {shown(s.parent or '-')}",
            f"backup set {shown(s.backup_set)}",
            f"host       {shown(s.hostname)} ({shown(s.username)})",
            f"paths      {', '.join(map(shown, s.paths))}",
            f"tags       {', '.join(map(shown, s.tags)) or '-'}",
            f"files      {m.total_files} in {m.dirs} folders, {human_bytes(m.total_bytes)}",
            f"changes    new {m.files_new}, changed {m.files_changed}, unmodified {m.files_unmodified}, "
            f"removed {m.files_removed}",
            f"added      {human_bytes(m.data_added)} -> {human_bytes(m.data_added_packed)} stored "
            f"(ratio {m.compression_ratio:.2f})",
        ]
        md = s.metadata or {}
        if md.get("database_version"):
            lines.append(
                f"database   {shown(str(md.get('dbname')))} (PostgreSQL {shown(str(md['database_version']))}, "
                f"{human_bytes(md.get('database_size') or 0)}), {md.get('total_tables')} tables, "
                f"{md.get('total_records')} rows, application {md.get('application_version') or '-'}"
            )
        for link in md.get("root_links") or []:
            if isinstance(link, dict):
                lines.append(
                    f"root link  {shown(str(link.get('path')))} -> {shown(str(link.get('target')))} "
                    f"({'target archived' if link.get('followed') else 'only the link stored'})"
                )
        lines.extend(f"warning    {shown(w)}" for w in s.warnings)
        return "\n".join(lines)

    out.emit(snapshot_json(s), text)


async def cmd_ls(svc: BackupService, args, out: Output) -> int:
    items = await svc.ls(args.snapshot, args.path)
    data = [
        {
            "path": p,
            "type": n.type,
            "mode": n.mode,
            "size": n.size,
            "mtime_ns": n.mtime_ns,
            "uid": n.uid,
            "gid": n.gid,
            **as_json(n),
        }
        for p, n in items
    ]

    def text() -> str:
        # Names come from the backed-up host: escaped, never interpreted by the terminal.
        if not args.long:
            return "\n".join(shown(p) for p, _ in items)
        from datetime import datetime

        lines = []
        for p, n in items:
            size = f"{os.major(n.rdev)},{os.minor(n.rdev)}" if n.type in ("chardev", "blockdev") else str(n.size)
            mark = "+" if "+" in marks(n) else " "
            lines.append(
                f"{mode_string(n.mode)}{mark} {n.user or n.uid:>8} {n.group or n.gid:>8} {size:>12} "
                f"{datetime.fromtimestamp(n.mtime_ns / 1e9):%Y-%m-%d %H:%M} {shown(p)}"
                + (f" -> {shown(n.target)}" if n.type == "symlink" else "")
            )
            lines.extend(f"    {a.kind}: {a.text}" for a in attributes(n) if a.kind != "device")
        return "\n".join(lines)

    out.emit(data, text)
    return EXIT_OK


async def cmd_restore(svc: BackupService, args, out: Output) -> int:
    if args.to_time is not None or args.target_dir is not None:
        return await _restore_pitr(svc, args, out)
    if args.start or args.port is not None or args.os_user:
        raise UsageError("--start, --port and --os-user only apply to --to-time")
    if not args.snapshot:
        raise UsageError(
            "restore needs a snapshot (an id, a prefix, latest or latest:SOURCE), "
            "or --to-time for point-in-time recovery"
        )
    if args.target_db is not None:
        if args.target is not None:
            raise UsageError("give either --target (a folder) or --target-db (a database), not both")
        if scrub.find(args.target_db):
            # In argv every local user can read it (ps, /proc), and a job would store it.
            raise UsageError(
                f"--target-db holds {scrub.find(args.target_db)}: give the password through "
                "PGPASSWORD or a passfile (PGPASSFILE, ~/.pgpass) instead"
            )
        return await _restore_database(svc, args, out)
    if args.target is None:
        raise UsageError("restore needs --target FOLDER (files) or --target-db URL (a database snapshot)")
    if args.force:
        raise UsageError("--force only applies to --target-db")
    if args.table or args.schema or args.roles:
        raise UsageError("--table, --schema and --roles only apply to --target-db")
    if args.preserve_privileges and os.geteuid() != 0:
        raise UsageError(
            "--preserve-privileges needs root: only root can restore setuid/setgid bits and file "
            "capabilities (without it they are stripped)"
        )
    from core.restore.files import RestoreOptions

    options = RestoreOptions(
        xattrs=not args.no_xattrs,
        acls=not args.no_acls,
        file_flags=args.file_flags,
        numeric_owner=args.numeric_owner,
        preserve_privileges=args.preserve_privileges,
        allow_untrusted_target=args.allow_untrusted_target,
        fsync=not args.no_fsync,
        read_back=args.read_back,
    )
    location = await cli_locations.choose_restore_location(svc, args)
    snaps = await svc.resolve(args.snapshot, args.source)
    from core.restore.safety import new_restore_id

    restore_id = new_restore_id()  # one id for every snapshot of this run: one rollback undoes it all
    outcomes = await svc.restore_many(
        snaps,
        args.target,
        include=tuple(args.include),
        delete=args.delete,
        dry_run=args.dry_run,
        validate=not args.no_validate,
        restore_id=restore_id,
        options=options,
    )
    partial = sum(len(o.partial) for o in outcomes)
    # Built for --json only: every changed path as a dict is a twentieth of a restore of
    # 50,000 small files, for text output that never shows it.
    data = (
        {
            "target": str(args.target.resolve()),
            "location": location or "local",
            "dry_run": args.dry_run,
            "restore_id": None if args.dry_run else restore_id,
            "restored": [o.as_dict(changes=True) for o in outcomes],
            "partial_count": partial,
        }
        if out.json
        else None
    )
    out.emit(data, lambda: "\n".join(_outcome_text(o, args) for o in outcomes))
    bad = [o for o in outcomes if not o.ok]
    if bad:
        Output.note(
            f"error: {sum(len(o.validation.mismatches) for o in bad if o.validation)} restored files differ from the "
            f"snapshot (exit {RestoreValidationFailed.exit_code})"
            + (f"; {partial} files are partial" if partial else "")
        )
        return RestoreValidationFailed.exit_code
    if partial:
        Output.note(
            f"error: {partial} files could not be restored in full (damaged or missing data); every "
            f"other file was restored (exit {PartialRestore.exit_code})"
        )
        return PartialRestore.exit_code
    warned = sum(o.stats.warning_count for o in outcomes if o.stats is not None)
    if warned:
        Output.note(f"warning: the restore finished with {warned} warnings (exit {EXIT_WARNINGS})")
        return EXIT_WARNINGS
    return EXIT_OK


def _outcome_text(o, args) -> str:
    c = o.plan.counts()
    s = o.snapshot
    if o.stats is None:
        lines = [
            f"{s.short_id} {s.source} into {args.target} would: create {c['create']}, overwrite "
            f"{c['overwrite']}, fix metadata of {c['metadata']}, remove {c['remove']}; {c['unchanged']} "
            f"already right" + (f"; {c['conflict']} in the way" if c["conflict"] else "")
        ]
        for ch in o.plan.changes:
            if ch.action != "unchanged":
                lines.append(
                    f"  {ch.action:<9} {ch.kind:<7} {shown(str(ch.path))}" + (f"  ({ch.reason})" if ch.reason else "")
                )
        return "\n".join(lines)
    st = o.stats
    lines = [
        f"restored {s.short_id} {s.source}: {st.files} files written, "
        + (f"{st.partial_count} PARTIAL, " if st.partial_count else "")
        + f"{st.unchanged} already right, "
        f"{st.metadata} re-stamped, {st.removed} removed, {st.dirs} folders, {st.symlinks} symlinks, "
        f"{st.hardlinks} hard links, {human_bytes(st.bytes)} into {args.target}"
    ]
    if st.special:
        lines.append(f"{st.special} devices and FIFOs")
    if st.stripped_count:
        lines.append(
            f"{st.stripped_count} files had setuid/setgid/capabilities stripped (restore them with "
            "--preserve-privileges, as root):"
        )
        lines.extend(f"  {p}" for p in st.stripped_listed())  # shown already (fsops.display)
    if st.warning_count:
        lines.append(f"{st.warning_count} warnings:")
        lines.extend(f"  WARNING {w}" for w in st.warnings_listed())
    if st.partial_count:
        lines.extend(_partial_text(o, args))
    if st.partial_cleared:
        lines.append(
            f"removed {st.partial_cleared} .axisor-partial files left by an earlier partial restore "
            "(those files are whole now)"
        )
    if o.safety_snapshot:
        lines.append(
            f"safety snapshot {o.safety_snapshot.short_id} holds what was there before "
            f"(undo: axisor-backup rollback {o.restore_id})"
        )
    if o.validation:
        v = o.validation
        how = (
            f"{v.files - v.read_back} checked as written, {v.read_back} read back"
            if v.method == "written"
            else "read back"
        )
        lines.append(
            f"validated: {v.files} files ({human_bytes(v.bytes)}) and {v.symlinks} symlinks ({how}) "
            + ("match the snapshot" if v.ok else f"— {len(v.mismatches)} DIFFER:")
            + (f" ({v.partial} partial files not read back: listed above)" if v.partial else "")
        )
        lines.extend(f"  {m}" for m in v.mismatches)
    return "\n".join(lines)


def _ranges_text(ranges: list[tuple[int, int]], limit: int = 8) -> str:
    shown_ranges = [f"{off}-{off + length - 1}" for off, length in ranges[:limit]]
    more = len(ranges) - limit
    return ", ".join(shown_ranges) + (f", ... and {more} more" if more > 0 else "")


def _partial_text(o, args) -> list[str]:
    """The partial files of one outcome: name, missing ranges, damaged objects, where the
    restored part is, and where an intact copy is (with the command that fills them in)."""
    from core.restore.files import MAX_LISTED

    s = o.snapshot
    lines = [
        f"{len(o.partial)} files could NOT be restored in full (their missing bytes are holes in the "
        "copy kept as NAME.axisor-partial; an existing file at NAME was left as it was):"
    ]
    fills: dict[tuple[str, str], list] = {}
    for pf in o.partial[:MAX_LISTED]:
        lines.append(
            f"  PARTIAL {pf.path}: {human_bytes(pf.missing_bytes)} of {human_bytes(pf.size)} missing, "
            f"bytes {_ranges_text(pf.missing)}"
        )
        for obj, reason in pf.damaged[:4]:
            lines.append(f"    damaged: {shown(obj)}: {shown(reason)}")
        if len(pf.damaged) > 4:
            lines.append(f"    ... and {len(pf.damaged) - 4} more damaged objects")
        if pf.kept_as:
            lines.append(
                f"    restored part kept as {pf.kept_as}"
                + ("; the existing file there was left as it was" if pf.existing else "")
            )
        if pf.note:
            lines.append(f"    {pf.note}")
        for loc, sid in pf.intact:
            lines.append(
                f"    intact copy: location {loc}, snapshot {sid[:8]}"
                + ("" if sid == s.id else " (another snapshot, same content at this path)")
            )
        if not pf.intact:
            lines.append("    no intact copy found in another location")
    for pf in o.partial:
        for loc, sid in pf.intact[:1]:
            fills.setdefault((loc, sid), []).append(pf)
    more = len(o.partial) - MAX_LISTED
    if more > 0:
        lines.append(f"  ... and {more} more (all in --json)")
    target = shlex.quote(str(args.target))
    for (loc, sid), files in fills.items():
        if sid == s.id:
            lines.append(
                f"fill them in ({len(files)} files): axisor-backup restore {sid[:8]} --from {shlex.quote(loc)} "
                f"--target {target}"
            )
        else:
            # A name that is not printable as it is cannot go into a command line here.
            plain = [display(pf.inner) for pf in files if shown(display(pf.inner)) == display(pf.inner)]
            if len(plain) < len(files):
                lines.append(
                    f"note: {len(files) - len(plain)} of them have names that need escaping: take their "
                    "paths from --json"
                )
            incl = " ".join(f"--include {shlex.quote(glob_escape(p))}" for p in plain[:20])
            lines.append(
                f"fill them in ({len(files)} files): axisor-backup restore {sid[:8]} --from {shlex.quote(loc)} "
                f"--target {target} {incl}" + (" ..." if len(plain) > 20 else "")
            )
    for n in o.notes:
        lines.append(f"note: {n}")
    return lines


def display(parts: tuple[bytes, ...]) -> str:
    from core.restore.walk import display as inner

    return inner(parts)


def glob_escape(path: str) -> str:
    """A path as an --include glob that matches exactly it (fnmatch's * ? [ bracketed)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


async def cmd_rollback(svc: BackupService, args, out: Output) -> int:
    results = await svc.rollback(args.restore_id)
    rows = []
    for r in results:
        if isinstance(r, RestoreOutcome):
            rows.append({"kind": "files", **r.as_dict(changes=True)})
        else:
            db = cast("DbRestoreReport", r)  # rollback's other kind: restore_database's report
            rows.append(
                {
                    "kind": "database",
                    "snapshot": db.snapshot,
                    "target": db.target,
                    "ok": db.ok,
                    "mismatches": [t.table for t in db.mismatches],
                }
            )
    ok = all(row.get("ok", True) and (row.get("validation") or {}).get("ok", True) for row in rows)
    out.emit(
        {"restore_id": args.restore_id, "ok": ok, "rolled_back": rows},
        lambda: "\n".join(
            f"rolled back {row['snapshot'][:8]} ({row['kind']}): "
            + (
                f"{row.get('files', 0)} files written, {row.get('removed', 0)} removed"
                if row["kind"] == "files"
                else f"database {row['target']}"
            )
            for row in rows
        ),
    )
    return EXIT_OK if ok else RestoreValidationFailed.exit_code


async def _restore_pitr(svc: BackupService, args, out: Output) -> int:
    from core.sources.postgres.pitr import parse_target_time

    if args.to_time is None or args.target_dir is None:
        raise UsageError("point-in-time recovery needs both --to-time TIMESTAMP and --target-dir DIR")
    if args.source not in (None, "database"):
        raise UsageError("--to-time restores the database: use --source database (or leave it out)")
    if args.target is not None or args.target_db is not None or args.table or args.schema or args.force or args.roles:
        raise UsageError(
            "--to-time restores a whole cluster into --target-dir: --target, --target-db, "
            "--table, --schema, --force and --roles do not apply"
        )
    if len(args.snapshot) > 1:
        raise UsageError("--to-time takes at most one base backup snapshot (default: the newest that fits)")
    target_time = parse_target_time(args.to_time)
    wal_from = getattr(args, "from_location", None)
    if wal_from:
        await svc.use_location(wal_from)  # base backup and WAL both from that location
    snap = (await svc.resolve(args.snapshot, "database"))[0] if args.snapshot else None
    tty = sys.stderr.isatty() and not out.json

    def phase(name: str) -> None:
        if tty:
            Output.note(
                {
                    "window": "checking the recovery window",
                    "extract": "extracting the base backup",
                    "configure": "writing recovery settings",
                    "recover": "starting the server and replaying WAL",
                }.get(name, name)
            )

    report = await svc.restore_database_pitr(
        target_time,
        args.target_dir,
        config_path=args.config_path,
        snapshot=snap,
        start=args.start,
        port=args.port,
        os_user=args.os_user,
        timeout=args.timeout,
        on_phase=phase,
        wal_from=wal_from,
    )
    data = asdict(report)

    def text() -> str:
        lines = [
            f"restored base backup {report.base_snapshot[:8]} (ended {report.base_stop_time}) into "
            f"{report.target_dir}: {human_bytes(report.bytes)}",
            f"recovery target: {report.target_time}",
        ]
        if report.started:
            lines.append(
                f"the server on port {report.port} has promoted: {report.stopped_at or 'stop point not logged'}"
            )
            if report.last_transaction:
                lines.append(f"last transaction kept: {report.last_transaction}")
            lines.append(
                f"took {report.seconds.get('total', 0):.1f} s "
                f"(extract {report.seconds.get('extract', 0):.1f} s, recovery {report.seconds.get('recover', 0):.1f} s)"
            )
        else:
            lines.append("start it with: " + " ".join(report.start_command))
            lines.append("it replays archived WAL through `axisor-backup wal-fetch`, stops at the target and promotes")
        lines.extend(f"warning: {w}" for w in report.warnings)
        return "\n".join(lines)

    out.emit(data, text)
    return EXIT_OK


async def _plan_database(svc: BackupService, args, out: Output) -> int:
    if len(args.snapshot) != 1:
        raise UsageError("--target-db restores exactly one database snapshot")
    snap = (await svc.resolve(args.snapshot, args.source or "database"))[0]
    plan = await svc.plan_database_restore(
        snap, args.target_db, force=args.force, tables=tuple(args.table), schemas=tuple(args.schema), roles=args.roles
    )

    def text() -> str:
        lines = [
            f"{snap.short_id} into {plan['target']} would: "
            + (
                "create the database"
                if plan["create_database"]
                else f"use the existing database ({plan['objects']} objects)"
            )
            + ("; first take a safety snapshot of it" if plan["safety_snapshot"] else "")
        ]
        lines += [f"  {t['action']:<8} table {shown(t['table'])} ({t['rows']} rows)" for t in plan["tables"]]
        lines += [f"  keep     table {shown(t)} (not in the snapshot)" for t in plan["left_in_place"]]
        c = plan["carry"]
        if c["roles_to_create"]:
            lines.append(f"  create   roles {shown(', '.join(c['roles_to_create']))} (--roles)")
        lines += [f"  carry    {shown(x)}" for x in c["carried"]]
        lines += [f"  not restored: {shown(n['what'])}: {shown(n['why'])}" for n in c["not_restored"]]
        if plan["refused"]:
            lines.append(f"refused: {plan['refused']}")
        return "\n".join(lines)

    out.emit({"dry_run": True, **plan}, text)
    return RestoreRefused.exit_code if plan["refused"] else EXIT_OK


async def _restore_database(svc: BackupService, args, out: Output) -> int:
    if args.delete or args.no_validate or args.read_back:
        raise UsageError(
            "--delete, --no-validate and --read-back apply to file restores (--target); a database restore "
            "always validates row counts, and --force takes a safety backup first"
        )
    if args.dry_run:
        return await _plan_database(svc, args, out)
    if len(args.snapshot) != 1:
        raise UsageError("--target-db restores exactly one database snapshot")
    await cli_locations.choose_restore_location(svc, args)
    snaps = await svc.resolve(args.snapshot, args.source or "database")
    if len(snaps) != 1 or snaps[0].source != "database":
        raise UsageError(f"snapshot {args.snapshot[0]} is not a database snapshot")
    report = await svc.restore_database(
        snaps[0],
        args.target_db,
        force=args.force,
        tables=tuple(args.table),
        schemas=tuple(args.schema),
        roles=args.roles,
    )
    tables = [
        {
            "table": t.table,
            "schema": t.schema,
            "name": t.name,
            "expected": t.expected,
            "actual": t.actual,
            "ok": t.ok,
            "checksum_ok": t.checksum_ok,
            "note": t.note,
        }
        for t in report.tables
    ]
    validation = report.validation()
    data = {
        "snapshot": report.snapshot,
        "database": report.database,
        "target": report.target,
        "created": report.created,
        "bytes": report.bytes,
        "seconds": report.seconds,
        "ok": report.ok,
        "schema_fingerprint_match": report.schema_fingerprint_match,
        "tables": tables,
        "mismatches": [t for t in tables if not t["ok"]],
        "warnings": report.warnings,
        "partial": report.partial,
        "safety_snapshot": report.safety_snapshot,
        "restore_id": report.restore_id,
        "large_objects": report.large_objects,
        "validation": validation,
        "roles_created": report.roles_created,
        "carried": report.carried,
        "not_restored": [n.as_dict() for n in report.not_restored],
    }

    def text() -> str:
        v = validation
        how = (
            f"{v['with_checksum']} by row count and checksum"
            if not v["count_only"]
            else f"{v['with_checksum']} by row count and checksum, {v['count_only']} by row count only"
            + (f" ({v['count_only_reason']})" if v["count_only_reason"] else "")
        )
        lines = [
            f"restored {report.snapshot[:8]} into {report.target}"
            f"{' (created)' if report.created else ''}: {human_bytes(report.bytes)} in {report.seconds:.1f} s",
            f"validated {v['validated']} of {v['tables']} tables ({how}); "
            f"{len(v['skipped'])} skipped"
            + (" because the snapshot records no row count for them" if v["skipped"] else ""),
            f"row counts: {sum(1 for t in report.tables if t.actual == t.expected)} of {len(tables)} "
            f"tables match the snapshot",
            "schema fingerprint: "
            + (
                ("not compared (partial restore)" if report.partial else "not compared")
                if report.schema_fingerprint_match is None
                else "matches"
                if report.schema_fingerprint_match
                else "differs"
            ),
        ]
        if report.safety_snapshot:
            lines.insert(
                0,
                f"safety snapshot {report.safety_snapshot[:8]} holds {report.database} as it was "
                f"(undo: axisor-backup rollback {report.restore_id})",
            )
        if v["with_checksum"]:
            lines.append(
                f"row checksums: {sum(1 for t in tables if t['checksum_ok'])} of {v['with_checksum']} tables match"
            )
        if report.large_objects is not None:
            lo = report.large_objects
            lines.append(
                f"large objects: {lo['actual']['count']}, {'match' if lo['ok'] else 'DIFFER from'} the snapshot"
            )
        for t in report.mismatches:
            got = "missing" if t.actual is None else t.actual
            why = "" if t.actual != t.expected else " (same count, different rows: checksum differs)"
            lines.append(
                f"  MISMATCH {shown(t.table)}: expected {t.expected} rows, found {got}{why}"
                + (f"; {t.note}" if t.note else "")
            )
        lines.extend(f"  skipped {shown(s['table'])}: {s['reason']}" for s in v["skipped"])
        lines.extend(f"  pg_restore: {w}" for w in report.warnings)
        lines.extend(not_restored_lines(report.carried, report.not_restored))
        return "\n".join(lines)

    out.emit(data, text)
    if not report.ok:
        lo_bad = report.large_objects is not None and not report.large_objects["ok"]
        named = ", ".join(shown(t.table) for t in report.mismatches[:10]) + (
            " ..." if len(report.mismatches) > 10 else ""
        )
        Output.note(
            f"error: restored row counts or checksums differ from the snapshot in "
            f"{len(data['mismatches'])} tables{' (and the large objects)' if lo_bad else ''}"
            f"{': ' + named if named else ''} (exit {RestoreValidationFailed.exit_code})"
        )
        return RestoreValidationFailed.exit_code
    if report.not_restored:
        Output.note(
            f"warning: {len(report.not_restored)} items were not restored (listed above: what and why) "
            f"(exit {EXIT_WARNINGS})"
        )
        return EXIT_WARNINGS
    return EXIT_OK


def not_restored_lines(carried: list[str], missed: list) -> list[str]:
    """The end of a database restore's text: what was carried, then what was not and why."""
    lines = [f"carried: {shown(c)}" for c in carried]
    if not missed:
        lines.append("not restored: nothing (ownership, privileges, policies and database properties carried)")
        return lines
    lines.append(f"not restored ({len(missed)}):")
    lines.extend(f"  {shown(n.what)}: {shown(n.why)}" for n in missed)
    return lines


async def cmd_verify(svc: BackupService, args, out: Output) -> int:
    from core.jobs.record import Outcome

    params = {"full": bool(args.full), "snapshots": list(args.snapshot or [])}
    if getattr(args, "from_location", None):
        # `verify --from NAME` read that location, not the primary: the record says which
        # (the verification report attributes the checks per location).
        params["location"] = args.from_location
    started = datetime.now(UTC)
    try:
        report = await svc.verify(full=args.full, snapshot_refs=args.snapshot)
    except (Exception, KeyboardInterrupt) as exc:
        await _record_verify(svc, params, started, Outcome.of_exception(exc))
        raise
    data = {
        "ok": report.ok,
        "full": report.full,
        "snapshots_checked": report.snapshots_checked,
        "trees_checked": report.trees_checked,
        "blobs_referenced": report.blobs_referenced,
        "packs_checked": report.packs_checked,
        "bytes_read": report.bytes_read,
        "wal_files_checked": report.wal_files_checked,
        "snapshot_ids": report.snapshot_ids,
        "unreferenced_packs": report.unreferenced_packs,
        "foreign_packs": report.foreign_packs,
        "damage": [asdict(d) for d in report.damage],
    }

    def text() -> str:
        kind = "full" if report.full else "quick"
        lines = [
            f"{kind} verification: {report.snapshots_checked} snapshots, {report.trees_checked} trees, "
            f"{report.blobs_referenced} blob references"
            + (f", {report.wal_files_checked} WAL files" if report.wal_files_checked else "")
            + (f", {report.packs_checked} packs read ({human_bytes(report.bytes_read)})" if report.full else "")
        ]
        if report.unreferenced_packs:
            lines.append(
                f"note: {len(report.unreferenced_packs)} packs are not referenced by any index "
                "(left by an interrupted backup; the next backup adopts them)"
            )
        for key, why in sorted(report.foreign_packs.items()):
            lines.append(f"warning: {shown(key)}: {shown(why)}")
        if report.ok:
            lines.append("no damage found")
        for d in report.damage:
            # Reasons can quote stored text; files are names from the backed-up host.
            lines.append(f"DAMAGED {shown(d.object)}: {shown(d.reason)}")
            if d.snapshots:
                lines.append(f"  snapshots affected: {', '.join(shown(x[:8]) for x in d.snapshots)}")
            if d.wal_files:
                lines.append(f"  WAL files affected: {', '.join(map(shown, d.wal_files))}")
            for f in d.files:
                lines.append(f"  file: {shown(f)}")
        return "\n".join(lines)

    out.emit(data, text)
    code = EXIT_OK if report.ok else VerificationFailed.exit_code
    await _record_verify(
        svc,
        params,
        started,
        Outcome(
            JobState.COMPLETED if report.ok else JobState.FAILED,
            {**data, "exit_code": code},
            None if report.ok else f"verification found {len(report.damage)} damaged objects",
        ),
    )
    return code


async def _record_verify(svc: BackupService, params: dict, started, outcome) -> None:
    """The run goes into the job history that `status` and the dashboard read; a state
    folder that refuses the record is said, and does not change the verification's verdict."""
    from core.jobs.record import record_run

    try:
        await record_run(svc.config, "verify", params, started, outcome)
    except AxisorError as exc:
        print(
            shown_lines(
                f"warning: the verification is not recorded in the job history ({exc}); "
                "`status` and the console do not know of it"
            ),
            file=sys.stderr,
        )


def _new_passphrase(args) -> str:
    path = getattr(args, "new_passphrase_file", None)
    if path:
        # Read exactly as storage.passphrase_file is read, so the same file opens the
        # repository afterwards: same permission rule, exactly one trailing newline dropped.
        from core.config import StorageConfig

        value = resolve_passphrase(StorageConfig(local_path=Path("/"), passphrase_file=path), env={}, interactive=False)
    elif os.environ.get("AXISOR_BACKUP_NEW_PASSPHRASE"):
        value = os.environ["AXISOR_BACKUP_NEW_PASSPHRASE"]
    elif sys.stdin.isatty():
        value = getpass.getpass("New passphrase: ")
        if getpass.getpass("New passphrase again: ") != value:
            raise PassphraseError("the two new passphrases differ")
    else:
        raise PassphraseError("no new passphrase: set AXISOR_BACKUP_NEW_PASSPHRASE or --new-passphrase-file")
    if not value:
        raise PassphraseError("the new passphrase is empty")
    return value


async def cmd_key(svc: BackupService, args, out: Output) -> int:
    if args.key_command == "list":
        keys = await svc.keys()
        out.emit(
            [asdict(k) for k in keys],
            lambda: "\n".join(f"{'*' if k.current else ' '} {k.id[:12]}  {k.created}  {k.user}@{k.host}" for k in keys),
        )
    elif args.key_command == "add":
        k = await svc.add_key(_new_passphrase(args), allow_weak=args.weak_passphrase)
        out.emit(asdict(k), lambda: f"added key {k.id[:12]}")
    elif args.key_command == "remove":
        await svc.remove_key(args.key_id)
        out.emit({"removed": args.key_id}, lambda: f"removed key {args.key_id}")
    elif args.key_command == "passwd":
        k = await svc.change_passphrase(_new_passphrase(args), allow_weak=args.weak_passphrase)
        out.emit(
            asdict(k),
            lambda: (
                f"passphrase changed; new key {k.id[:12]}. It wraps the same master key: "
                "the old key file is removed, but the data are not re-encrypted (anyone who copied the "
                "old key file and knows the old passphrase can still read them)"
            ),
        )
    return EXIT_OK


async def cmd_unlock(svc: BackupService, args, out: Output) -> int:
    from datetime import datetime, timezone

    from core.repository.lock import age_text

    removed = await svc.unlock(remove_all=args.all)
    now = datetime.now(timezone.utc)
    live = [r for r in removed if not r.stale]

    def one(r) -> dict:
        i = r.info
        return {
            "key": i.key,
            "description": i.describe(),
            "host": i.host,
            "pid": i.pid,
            "operation": i.operation,
            "exclusive": i.exclusive,
            "created": i.created.isoformat(),
            "age_seconds": round(i.age_seconds(now), 3),
            "stale": r.stale,
            "reason": r.reason or "live; removed because of --all",
        }

    def line(r) -> str:
        i = r.info
        kind = "exclusive" if i.exclusive else "shared"
        why = f"stale: {r.reason}" if r.stale else "LIVE, removed because of --all"
        return (
            f"removed {kind} lock {i.key} by {i.operation} (host {i.host}, pid {i.pid}, age "
            f"{age_text(i.age_seconds(now))}): {why}"
        )

    def text() -> str:
        if not removed:
            return "no stale locks" + ("" if args.all else " (live locks are kept; --all removes them too)")
        lines = [line(r) for r in removed]
        if live:
            lines.append(
                f"--all removed {len(live)} live lock{'s' if len(live) != 1 else ''}: if "
                f"{'those processes are' if len(live) != 1 else 'that process is'} still running, "
                "the repository is no longer protected from them"
            )
        return "\n".join(lines)

    out.emit([one(r) for r in removed], text)
    if live and out.json:
        Output.note(f"warning: --all removed {len(live)} live lock{'s' if len(live) != 1 else ''}")
    return EXIT_OK


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


def checks_text(report) -> str:
    """A CheckReport (core/sources/postgres/dbcheck.py): a line per check, then the counts."""
    mark = {True: "ok     ", False: "FAILED ", None: "not run"}
    lines = [f"database check of {shown(report.server)} ({report.mode} mode)"]
    lines += [f"  {mark[c.ok]} {c.name}: {shown(c.detail)}" for c in report.checks]
    n = len(report.checks)
    if report.passed == n:
        lines.append(f"ok: all {n} checks passed")
    else:
        lines.append(
            f"{n} checks: {report.passed} passed, {report.failed} failed, {report.not_run} not run"
            + (" (exit 18)" if report.failed else "")
        )
    return "\n".join(lines)


async def cmd_database(svc: BackupService, args, out: Output) -> int:
    if args.database_command == "check":
        report = await svc.database_check(args.config_path)
        out.emit(report.as_dict(), lambda: checks_text(report))
        return EXIT_OK if report.ok else ArchivingNotReady.exit_code
    if args.database_command == "archiving":
        r = await svc.database_archiving(args.config_path)
        data = {
            "ok": r.ok,
            "server": r.server,
            "settings": r.settings,
            "problems": r.problems,
            "advice": r.advice,
            "alter_system": r.alter_system,
            "postgresql_conf": r.conf_lines,
            "restart_needed": r.restart_needed,
            "archive_command": r.archive_command,
        }

        def text() -> str:
            lines = [f"archiving on {r.server}: {'ok' if r.ok else 'NOT ready'}"]
            lines += [f"  problem: {p}" for p in r.problems] + [f"  advice: {a}" for a in r.advice]
            if r.alter_system:
                lines += ["", "Run as a superuser:"] + [f"  {x}" for x in r.alter_system]
                lines += ["", "or put in postgresql.conf:"] + [f"  {x}" for x in r.conf_lines]
                if r.restart_needed:
                    lines.append("and restart the server (wal_level and archive_mode need a restart).")
            return "\n".join(lines)

        out.emit(data, text)
        return EXIT_OK if r.ok else Exit.ARCHIVING_NOT_READY
    st = await svc.database_status()

    def status_text() -> str:
        lines = [f"WAL archive: {st['segments']} segments, {st['history_files']} history files"]
        if st["last_segment"]:
            lines.append(
                f"last segment  {st['last_segment']} pushed {st['last_pushed']} ({st['age_seconds']:.0f} s ago)"
            )
        else:
            lines.append("last segment  none archived yet")
        lines.append("gaps          " + (", ".join(f"{g['from']}..{g['to']}" for g in st["gaps"]) or "none"))
        w = st["recovery_window"]
        lines.append(f"base backups  {st['base_backups']}")
        lines.append(
            f"recovery      {w['from']} .. {w['to']}"
            if w
            else "recovery      no window yet (needs a physical base backup and archived WAL)"
        )
        srv = st["server"]
        if srv and srv.get("reachable"):
            lines.append(
                f"server        archived {srv['archived_count']}, last {srv['last_archived_wal']} at "
                f"{srv['last_archived_time']}; failed {srv['failed_count']}"
                + (
                    f", last failure {srv['last_failed_wal']} at {srv['last_failed_time']}"
                    if srv["failed_count"]
                    else ""
                )
            )
        elif srv:
            lines.append(f"server        unreachable: {srv['error']}")
        return "\n".join(lines)

    out.emit(st, status_text)
    return EXIT_OK


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
COMMANDS.update(cli_locations.COMMANDS)
COMMANDS.update(cli_jobs.COMMANDS)
COMMANDS.update(cli_drills.COMMANDS)


def config_check(config_path: Path, out: Output, connect: bool = False) -> int:
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        message = str(exc)
        out.emit(
            {
                "ok": False,
                "path": str(config_path),
                "problems": [{"key": p.key, "message": p.message} for p in exc.problems],
            },
            lambda: message,
        )
        return EXIT_USAGE
    missing = _missing_extras(cfg)
    if missing:
        message = "\n".join(f"{config_path}: {p}" for p in missing)
        out.emit(
            {
                "ok": False,
                "path": str(config_path),
                "problems": [{"key": p.key, "message": p.message} for p in missing],
            },
            lambda: message,
        )
        return EXIT_USAGE
    # The file sources, and the database when [database] is enabled (a backup takes it too).
    sources = [*(["database"] if cfg.database.enabled else []), *(s.name for s in cfg.sources())]
    line = (
        f"{config_path}: ok ({len(sources)} source{'' if len(sources) == 1 else 's'}: {', '.join(sources) or 'none'})"
    )
    # Deprecated keys do not fail the check; they are listed above the verdict (and in
    # JSON as "warnings", present only when there are some).
    warnings = deprecations(cfg)
    if warnings:
        line = "\n".join([*(f"{config_path}: warning: {w}" for w in warnings), line])
    extra = {"warnings": [{"key": w.key, "message": w.message} for w in warnings]} if warnings else {}
    if not connect:
        out.emit({"ok": True, "path": str(config_path), "sources": sources, **extra}, lambda: line)
        return EXIT_OK
    return _config_check_connect(cfg, config_path, sources, line, out, extra)


def _config_check_connect(
    cfg: Config, config_path: Path, sources: list[str], line: str, out: Output, extra: Mapping[str, object]
) -> int:
    """`config check --connect`: the checks of `database check` that do not wait (no WAL switch)."""
    from core.sources.postgres.dbcheck import run_checks
    from core.storage.local import LocalBackend

    if not cfg.database.enabled:
        out.emit(
            {"ok": True, "path": str(config_path), "sources": sources, **extra, "database": None},
            lambda: f"{line}\ndatabase: not enabled ([database] enabled = false), nothing to connect to",
        )
        return EXIT_OK
    try:
        report = asyncio.run(
            run_checks(
                cfg.database,
                config_path,
                LocalBackend(cfg.storage.local_path),
                passphrase_file=cfg.storage.passphrase_file,
                wait=False,
            )
        )
    except AxisorError as exc:
        Output.note(f"error: {exc}")
        return exc.exit_code
    out.emit(
        {"ok": report.ok, "path": str(config_path), "sources": sources, **extra, "database": report.as_dict()},
        lambda: f"{line}\n{checks_text(report)}",
    )
    return EXIT_OK if report.ok else ArchivingNotReady.exit_code


def _missing_extras(cfg: Config) -> list[ConfigProblem]:
    """Locations whose storage SDK (an optional install) is missing on this host."""
    from core.storage.extras import install_hint, missing_extra

    problems = []
    for i, loc in enumerate(cfg.storage.remote_storage):
        extra = missing_extra(loc.provider)
        if extra is not None:
            problems.append(
                ConfigProblem(
                    f"storage.remote_storage[{i}].provider",
                    f"'{loc.provider}' needs the optional {extra!r} support, which is not "
                    f"installed: {install_hint(extra)}",
                )
            )
    return problems


async def run(args, config: Config, out: Output) -> int:
    def passphrase(confirm: bool) -> str:
        return resolve_passphrase(config.storage, confirm=confirm)

    svc = BackupService(config, passphrase, no_lock=getattr(args, "no_lock", False), on_note=Output.note)
    cli_jobs.survive_hangup()
    try:
        await cli_locations.use_from(svc, args)  # verify/ls/show --from NAME
        return await COMMANDS[args.command](svc, args, out)
    finally:
        for exc in svc.index_damage:
            Output.note(f"warning: {exc} (skipped; `axisor-backup repair index` rebuilds the index)")
        await svc.close()


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
    argv = sys.argv[1:] if argv is None else list(argv)
    if _bare_on_terminal(argv):
        argv.append("console")
    args = build_parser().parse_args(argv)
    out = Output(args.json)
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
    for warning in deprecations(config):
        Output.note(f"warning: {config_path}: {warning}")
    for loc in config.storage.remote_storage:
        if loc.allow_insecure and insecure_endpoint(loc.provider, loc.endpoint or ""):
            # Allowed, but never quietly: every command says it (stderr, not --json's stdout).
            Output.note(
                f"warning: location {loc.name} sends data and credentials unencrypted to "
                f"{loc.endpoint} (allow_insecure = true)"
            )
    try:
        if args.command == "console":
            return console_main(args, config, config_path)
        return asyncio.run(run(args, config, out))
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
