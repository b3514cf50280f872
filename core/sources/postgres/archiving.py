"""`database archiving` (are the server's settings right?) and `database status` (the archive's state)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from core.errors import DatabaseError, UsageError
from core.repository.repository import Repository
from core.sources.postgres.connection import PgTarget, one_row
from core.sources.postgres.wal import find_gaps, is_segment, list_names, load_manifest

RECOMMENDED_ARCHIVE_TIMEOUT = 60  # seconds: bounds how much a quiet server can lose


def program_path(*, required: bool = False) -> str:
    """The absolute path the server runs this program by (archive_command, restore_command):
    AXISOR_BACKUP_PROGRAM when set, else this program's own path, else the one on PATH.
    Not found: the bare name for a suggestion, or with ``required`` (a recovery cannot
    start without it) a usage error."""
    env = os.environ.get("AXISOR_BACKUP_PROGRAM")
    if env:
        return env
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name.startswith("axisor-backup") and os.access(argv0, os.X_OK):
        return str(argv0.resolve())
    found = shutil.which("axisor-backup")
    if found:
        return str(Path(found).resolve())
    if required:
        raise UsageError(
            "cannot tell the server how to run axisor-backup for restore_command: put axisor-backup "
            "on PATH or set AXISOR_BACKUP_PROGRAM to its absolute path"
        )
    return "axisor-backup"


def _server_command(program: str, config_path: Path, verb: str) -> str:
    """A command line the server runs (its shell reads it): this program with this config."""
    return f"{shlex.quote(program)} --config {shlex.quote(str(Path(config_path).resolve()))} {verb}"


def wanted_archive_command(config_path: Path, key_file: Path | None = None) -> str:
    """``key_file``: the server's own write-only key (`database archiving --setup`)."""
    verb = "wal-push %p" + (f" --key-file {shlex.quote(str(Path(key_file).resolve()))}" if key_file else "")
    return _server_command(program_path(), config_path, verb)


def wanted_restore_command(config_path: Path, wal_from: str | None = None) -> str:
    """restore_command for a recovery; ``wal_from``: fetch from that location (the primary is lost)."""
    where = f" --from {shlex.quote(wal_from)}" if wal_from else ""
    return _server_command(program_path(required=True), config_path, f"wal-fetch{where} %f %p")


@dataclass
class ArchivingReport:
    server: str
    settings: dict[str, str]
    ok: bool
    problems: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    alter_system: list[str] = field(default_factory=list)  # SQL to run
    conf_lines: list[str] = field(default_factory=list)  # the same as postgresql.conf lines
    restart_needed: bool = False
    archive_command: str = ""


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def check_archiving(target: PgTarget, config_path: Path, key_file: Path | None = None) -> ArchivingReport:
    """``key_file``: the server has its own write-only key there (`--setup`): the command
    to set names it, and an archive_command that does not is a problem to fix."""
    conn = await target.connect()
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT name, setting, unit FROM pg_settings WHERE name IN "
                "('wal_level', 'archive_mode', 'archive_command', 'archive_timeout', "
                "'archive_library')"
            )
            rows = await cur.fetchall()
    except psycopg.Error as exc:
        raise target.failed("reading settings of", exc) from None
    finally:
        await conn.close()
    s = {name: value for name, value, _unit in rows}
    want_cmd = wanted_archive_command(config_path, key_file)
    cfg = str(Path(config_path).resolve())
    r = ArchivingReport(server=target.describe(), settings=s, ok=True, archive_command=want_cmd)
    sets: list[tuple[str, str, bool]] = []  # (name, value, needs restart)
    if s.get("wal_level") not in ("replica", "logical"):
        r.problems.append(f"wal_level is {s.get('wal_level')!r}: WAL archiving needs 'replica' (or 'logical')")
        sets.append(("wal_level", "replica", True))
    if s.get("archive_mode") not in ("on", "always"):
        r.problems.append(f"archive_mode is {s.get('archive_mode')!r}: it must be 'on'")
        sets.append(("archive_mode", "on", True))
    cmd = s.get("archive_command") or ""
    if s.get("archive_library"):
        r.problems.append(f"archive_library is {s['archive_library']!r}: it overrides archive_command; set it to ''")
        sets.append(("archive_library", "", False))
    if not ("wal-push" in cmd and "%p" in cmd and cfg in cmd) or (key_file is not None and "--key-file" not in cmd):
        r.problems.append(f"archive_command is {cmd!r}: it must run `axisor-backup --config {cfg} wal-push %p`")
        sets.append(("archive_command", want_cmd, False))
    try:
        timeout = int(s.get("archive_timeout") or 0)
    except ValueError:
        timeout = 0
    if timeout == 0 or timeout > 3600:
        r.advice.append(
            f"archive_timeout is {timeout} s: a quiet server may keep its last changes unarchived "
            f"for that long (0 = forever); {RECOMMENDED_ARCHIVE_TIMEOUT} s is a good value"
        )
        advice_set = ("archive_timeout", str(RECOMMENDED_ARCHIVE_TIMEOUT), False)
    else:
        advice_set = None
    r.ok = not r.problems
    r.restart_needed = any(restart for _, _, restart in sets)
    for name, value, _ in sets + ([advice_set] if advice_set else []):
        r.alter_system.append(f"ALTER SYSTEM SET {name} = {_sql_literal(value)};")
        r.conf_lines.append(f"{name} = {_sql_literal(value)}")
    if r.alter_system:
        r.alter_system.append(
            "-- then restart the server (wal_level/archive_mode)" if r.restart_needed else "SELECT pg_reload_conf();"
        )
    return r


async def archive_status(repo: Repository, target: PgTarget | None) -> dict:
    """The WAL archive in the repository (and the server's archiver, when reachable)."""
    names = sorted(await list_names(repo))
    segments = [n for n in names if is_segment(n)]
    out: dict = {
        "wal_files": len(names),
        "segments": len(segments),
        "history_files": sum(n.endswith(".history") for n in names),
        "last_segment": None,
        "last_pushed": None,
        "age_seconds": None,
        "first_segment": segments[0] if segments else None,
        "gaps": [],
        "base_backups": 0,
        "recovery_window": None,
        "server": None,
    }
    seg_size = 16 * 1024 * 1024
    now = datetime.now(timezone.utc)
    if segments:
        newest = await load_manifest(repo, segments[-1])
        if newest is not None:
            seg_size = newest.size or seg_size
            out.update(
                last_segment=newest.name,
                last_pushed=newest.pushed,
                age_seconds=round((now - newest.pushed_at).total_seconds(), 1),
            )
        out["gaps"] = [{"from": a, "to": b} for a, b in find_gaps(segments, seg_size)]
    from core.sources.postgres.pitr import recovery_window

    window = await recovery_window(repo)
    out["base_backups"] = len(window.bases)
    if window.start is not None and window.end is not None:
        oldest = min((b for b in window.bases if b.usable), key=lambda b: b.stop_time)
        out["recovery_window"] = {
            "from": window.start.isoformat(),
            "to": window.end.isoformat(),
            "oldest_base_backup": oldest.snapshot.id,
            "needs_from_segment": oldest.start_wal_file,
        }
    out["base_backup_problems"] = [{"snapshot": b.snapshot.id, "problem": b.problem} for b in window.bases if b.problem]
    if window.bases and segments and window.bases[0].start_wal_file not in segments:
        out["gaps"].insert(
            0,
            {
                "from": window.bases[0].start_wal_file,
                "to": window.bases[0].start_wal_file,
                "note": "the oldest base backup's first WAL file is not archived",
            },
        )
    if target is not None:
        try:
            conn = await target.connect()
        except DatabaseError as exc:
            out["server"] = {"reachable": False, "error": str(exc)}
        else:
            try:
                async with conn.cursor() as cur:
                    await cur.execute(
                        "SELECT archived_count, last_archived_wal, last_archived_time, failed_count, "
                        "last_failed_wal, last_failed_time FROM pg_stat_archiver"
                    )
                    row = one_row(await cur.fetchone())
                keys = (
                    "archived_count",
                    "last_archived_wal",
                    "last_archived_time",
                    "failed_count",
                    "last_failed_wal",
                    "last_failed_time",
                )
                out["server"] = {
                    "reachable": True,
                    **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in zip(keys, row)},
                }
            except psycopg.Error as exc:
                out["server"] = {"reachable": False, "error": target.scrub(str(exc).strip())}
            finally:
                await conn.close()
    return out
