"""Point-in-time recovery: a base backup plus archived WAL, replayed up to a chosen moment.

``restore --source database --to-time T --target-dir DIR [--start]``:

1. The recovery window is worked out from the repository alone: each physical base backup is
   usable from its ``stop_time`` (a target before it would silently stop at the first commit
   after consistency: PostgreSQL does not refuse it) until the newest WAL segment archived
   without a gap after its ``start_wal_file`` (following timeline switches through their
   ``.history`` files). The push time of that segment bounds what can be replayed: every
   commit in it happened before it was pushed. A target outside every base backup's window is
   refused before anything is written, with the window in the message.
2. The newest base backup that ended before the target is extracted from the repository into
   DIR as a stream (no temp tar), member by member: only directories and regular files, names
   that stay inside DIR.
3. Recovery settings are appended to ``postgresql.auto.conf`` (later lines win): ``wal-fetch``
   as the restore_command, the target, promote at the end, the latest timeline, archiving off
   so the copy never archives into the source's archive; ``recovery.signal`` is created.
4. With ``--start`` the server is started (on ``--port``, its socket in DIR, listening on
   localhost only), we wait until ``pg_controldata`` reports it in production, and the server
   log confirms where recovery stopped. "recovery ended before configured recovery target was
   reached" (the target lies after the last archived commit) is reported with the window.

The server's restore_command runs ``axisor-backup wal-fetch`` as the server's OS user with no
terminal: the passphrase must come from ``storage.passphrase_file`` or ``passphrase_command``
and is never put into the server's environment.
"""

from __future__ import annotations

import asyncio
import errno
import os
import pwd
import re
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.config import Config
from core.errors import DatabaseError, RestoreRefused, StorageFull, UsageError
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import FILE
from core.restore.stream import iter_content
from core.sources.postgres.archiving import wanted_restore_command
from core.sources.postgres.child import last_lines, run_as, server_env
from core.sources.postgres.tools import find_tool, server_major
from core.text import parse_target_time  # noqa: F401 - its home was here; callers still import it
from core.sources.postgres.wal import list_names, load_manifest, segment_name, segment_number
from core.sources.postgres.wal_prefetch import remove_spool

SOURCE = "database"
RECOVERY_LOG = "axisor-recovery.log"
_MARK = "# --- added by axisor-backup for point-in-time recovery"
_EMPTY_DIRS = (
    "pg_wal",
    "pg_wal/archive_status",
    "pg_replslot",
    "pg_stat_tmp",
    "pg_snapshots",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_subtrans",
    "pg_commit_ts",
    "pg_twophase",
    "pg_logical",
    "pg_logical/snapshots",
    "pg_logical/mappings",
    "pg_tblspc",
)


# -- the recovery window ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BaseBackup:
    """One physical base backup and how far the archive lets it be replayed."""

    snapshot: Snapshot
    stop_time: datetime
    start_wal_file: str
    stop_wal_file: str
    timeline: int
    last_segment: str | None  # newest segment reachable without a gap
    usable_until: datetime | None  # push time of last_segment; None: unusable
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.usable_until is not None and self.usable_until > self.stop_time


@dataclass(frozen=True, slots=True)
class RecoveryWindow:
    bases: tuple[BaseBackup, ...]  # oldest first

    @property
    def start(self) -> datetime | None:
        usable = [b.stop_time for b in self.bases if b.usable]
        return min(usable) if usable else None

    @property
    def end(self) -> datetime | None:
        usable = [b.usable_until for b in self.bases if b.usable and b.usable_until]
        return max(usable) if usable else None

    def describe(self) -> str:
        if self.start is None or self.end is None:
            if not self.bases:
                return 'the repository holds no physical base backup (mode = "physical")'
            problems = "; ".join(f"{b.snapshot.short_id}: {b.problem}" for b in self.bases if b.problem)
            return f"no base backup is usable: {problems or 'no WAL archived after them'}"
        return f"the recovery window is {_fmt(self.start)} to {_fmt(self.end)}"

    def choose(self, target: datetime) -> BaseBackup:
        """The newest usable base backup that ended at or before ``target`` and whose WAL
        reaches past it; RestoreRefused naming the window otherwise."""
        fits = [b for b in self.bases if b.usable and b.stop_time <= target]
        if not fits:
            raise RestoreRefused(
                f"{_fmt(target)} is before the earliest point this repository can restore: {self.describe()}"
            )
        best = max(fits, key=lambda b: b.stop_time)
        assert best.usable_until is not None
        if target >= best.usable_until:
            raise RestoreRefused(
                f"{_fmt(target)} is after the newest archived WAL (segment {best.last_segment}, archived "
                f"{_fmt(best.usable_until)}): {self.describe()}. Later changes are not archived yet; "
                "check `axisor-backup database status`"
            )
        return best

    def as_dict(self) -> dict:
        return {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "base_backups": [
                {
                    "snapshot": b.snapshot.id,
                    "stop_time": b.stop_time.isoformat(),
                    "start_wal_file": b.start_wal_file,
                    "last_segment": b.last_segment,
                    "usable_until": b.usable_until.isoformat() if b.usable_until else None,
                    "problem": b.problem,
                }
                for b in self.bases
            ],
        }


def _fmt(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def physical_snapshots(snaps: list[Snapshot]) -> list[Snapshot]:
    return [s for s in snaps if s.source == SOURCE and (s.metadata or {}).get("mode") == "physical"]


def _reach(names: set[str], start: str, seg_size: int) -> str | None:
    """The last segment reachable from ``start`` without a gap, moving to the next timeline
    where its .history file and the switch segment are archived."""
    if start not in names:
        return None
    tli, no = segment_number(start, seg_size)
    while True:
        while segment_name(tli, no + 1, seg_size) in names:
            no += 1
        # A timeline switch: the new timeline's first segment repeats the switch point's number.
        nxt = tli + 1
        if f"{nxt:08X}.history" in names and segment_name(nxt, no, seg_size) in names:
            tli = nxt
            continue
        if f"{nxt:08X}.history" in names and segment_name(nxt, no + 1, seg_size) in names:
            tli, no = nxt, no + 1
            continue
        return segment_name(tli, no, seg_size)


async def recovery_window(repo: Repository, snaps: list[Snapshot] | None = None) -> RecoveryWindow:
    if snaps is None:
        snaps, _ = await repo.list_snapshots()
    names = set(await list_names(repo))
    bases: list[BaseBackup] = []
    pushed: dict[str, datetime | None] = {}
    for s in sorted(physical_snapshots(snaps), key=lambda s: s.metadata.get("stop_time", "")):
        md = s.metadata
        try:
            stop_time = datetime.fromisoformat(md["stop_time"])
            start_wal, stop_wal = str(md["start_wal_file"]), str(md["stop_wal_file"])
            seg_size = int(md.get("wal_segment_size") or 16 * 1024 * 1024)
        except (KeyError, ValueError, TypeError):
            continue  # not a base backup this version wrote
        last = _reach(names, start_wal, seg_size)
        problem = None
        until = None
        if last is None:
            problem = f"its first WAL file {start_wal} is not archived"
        elif segment_number(last, seg_size)[1] < segment_number(stop_wal, seg_size)[1]:
            problem = (
                f"WAL file {segment_name(segment_number(last, seg_size)[0], segment_number(last, seg_size)[1] + 1, seg_size)} "
                f"needed to make it consistent is not archived"
            )
        else:
            if last not in pushed:
                m = await load_manifest(repo, last)
                pushed[last] = m.pushed_at if m else None
            until = pushed[last]
        bases.append(BaseBackup(s, stop_time, start_wal, stop_wal, int(md.get("timeline") or 1), last, until, problem))
    return RecoveryWindow(tuple(bases))


# -- the restore --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PitrReport:
    target_time: str
    base_snapshot: str
    base_stop_time: str
    target_dir: str
    bytes: int
    started: bool
    port: int | None
    promoted: bool
    stopped_at: str | None  # the server's own words on where recovery stopped
    last_transaction: str | None
    start_command: list[str]
    window: dict
    seconds: dict = field(default_factory=dict)  # per phase
    warnings: tuple[str, ...] = ()


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _check_member(m: tarfile.TarInfo) -> str:
    name = m.name
    parts = Path(name).parts
    if name.startswith("/") or ".." in parts or not parts:
        raise RestoreRefused(f"the base backup holds {name!r}, a path that would escape the target directory")
    if m.issym() or m.islnk():
        raise RestoreRefused(
            f"the base backup holds the link {name!r} (a tablespace or a linked pg_wal): "
            "base backups with tablespaces are not supported by this version"
        )
    if not (m.isreg() or m.isdir()):
        raise RestoreRefused(f"the base backup holds {name!r}, which is neither a file nor a directory")
    return name


async def _extract(repo: Repository, ids: tuple[bytes, ...], dest: Path) -> int:
    """Stream the stored tar into ``dest``; bytes of tar read."""
    r, w = os.pipe()
    failure: list[BaseException] = []

    def extract() -> None:
        try:
            with os.fdopen(r, "rb", buffering=1 << 20) as f, tarfile.open(fileobj=f, mode="r|") as tar:
                for m in tar:
                    _check_member(m)
                    m.mode = (m.mode & 0o700) | (0o700 if m.isdir() else 0)
                    tar.extract(m, dest, set_attrs=True, numeric_owner=True)
                while f.read(1 << 20):  # the zero blocks after the archive's end
                    pass
        except BaseException as exc:  # reported after the writer stops
            failure.append(exc)

    reader = asyncio.ensure_future(asyncio.to_thread(extract))
    written = 0
    try:
        async for chunk in iter_content(repo, ids):
            try:
                await asyncio.to_thread(_write_all, w, chunk)
            except BrokenPipeError:
                break  # the extractor stopped: its error says why
            written += len(chunk)
    finally:
        os.close(w)
        await reader
    if failure:
        exc = failure[0]
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(
                f"the restore target {dest} is full: {exc.strerror} while extracting the base "
                "backup; free space there (or choose another --target-dir), empty it and restore "
                "again"
            ) from None
        if isinstance(exc, (RestoreRefused, OSError)):
            raise RestoreRefused(f"extracting the base backup into {dest} failed: {exc}") from None
        raise DatabaseError(f"the stored base backup is not a readable tar: {exc}") from None
    return written


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _prepare_target(target: Path) -> None:
    if target.exists():
        if not target.is_dir():
            raise RestoreRefused(f"{target} exists and is not a directory")
        if any(target.iterdir()):
            raise RestoreRefused(
                f"{target} is not empty: point-in-time recovery needs a new or empty directory "
                "(it never overwrites a data directory)"
            )
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o700)


async def _controldata_state(pg_controldata: Path, data: Path, os_user: str | None) -> str:
    p = await asyncio.to_thread(
        subprocess.run,
        run_as([str(pg_controldata), "-D", str(data)], os_user),
        capture_output=True,
        text=True,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    m = re.search(r"^Database cluster state:\s+(.+)$", p.stdout, re.M)
    return m.group(1).strip() if m else ""


_STOPPED = re.compile(r"(recovery stopping (?:before|after) [^\n]*)")
# The server logs each segment its restore_command brought in: how far replay has got.
_RESTORED = re.compile(r'restored log file "([0-9A-F]{24})" from archive')


def replay_position(log_text: str, segment_bytes: int = 16 * 1024 * 1024) -> str | None:
    """ "WAL segment <name> (LSN X/Y)" for the newest segment the server restored, or None.
    The LSN is where that segment starts (the segment number times its size)."""
    found = _RESTORED.findall(log_text)
    if not found:
        return None
    name = found[-1]
    lsn = int(name[8:16], 16) * 0x1_0000_0000 + int(name[16:24], 16) * segment_bytes
    return f"WAL segment {name} (LSN {lsn >> 32:X}/{lsn & 0xFFFFFFFF:X})"


_LAST = re.compile(r"last completed transaction was at log time ([^\n]+)")
_NOT_REACHED = "recovery ended before configured recovery target was reached"


def _server_user(os_user: str | None) -> str | None:
    """The OS user the restored cluster belongs to: as root, ``os_user`` (default postgres),
    which must exist; otherwise None (this user), and ``os_user`` may only name this user."""
    if os.geteuid() == 0:
        os_user = os_user or "postgres"
        try:
            pwd.getpwnam(os_user)
        except KeyError:
            raise UsageError(
                f"running as root: the restored cluster must belong to an OS user, and {os_user!r} "
                "does not exist (give --os-user)"
            ) from None
        return os_user
    if os_user and os_user != pwd.getpwuid(os.geteuid()).pw_name:
        raise UsageError("--os-user needs root; run as that user instead")
    return None


def _choose_base(window: RecoveryWindow, snapshot: Snapshot | None, target_time: datetime) -> BaseBackup:
    """The base backup to recover from: ``snapshot`` when given (refused when it cannot
    reach ``target_time``), else the window's choice."""
    if snapshot is None:
        return window.choose(target_time)
    wanted = [b for b in window.bases if b.snapshot.id == snapshot.id]
    if not wanted:
        raise UsageError(f"snapshot {snapshot.short_id} is not a physical base backup")
    base = wanted[0]
    if base.usable_until is None or not base.usable or not (base.stop_time <= target_time < base.usable_until):
        covers = base.problem or (
            f"it covers {_fmt(base.stop_time)} to {_fmt(base.usable_until)}"
            if base.usable_until
            else "no WAL is archived after it"
        )
        raise RestoreRefused(
            f"{_fmt(target_time)} cannot be reached from base backup {snapshot.short_id}: {covers}; {window.describe()}"
        )
    return base


def _configure_recovery(
    target_dir: Path, target_time: datetime, base_id: str, restore_command: str, port: int | None, os_user: str | None
) -> None:
    """The recovery settings appended to postgresql.auto.conf, recovery.signal, and the
    files handed to ``os_user``."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        f"{_MARK} at {stamp}: recovery to {_fmt(target_time)} from base backup {base_id}",
        f"restore_command = {_conf_quote(restore_command)}",
        f"recovery_target_time = {_conf_quote(target_time.isoformat())}",
        "recovery_target_action = 'promote'",
        "recovery_target_timeline = 'latest'",
        "archive_mode = 'off'  # never archive into the source's archive; re-enable deliberately",
    ]
    if port is not None:
        lines += [
            f"port = {port}",
            f"unix_socket_directories = {_conf_quote(str(target_dir.resolve()))}",
            "listen_addresses = 'localhost'  # widen deliberately once the copy is checked",
        ]
    auto = target_dir / "postgresql.auto.conf"
    with open(auto, "a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(lines) + "\n")
    (target_dir / "recovery.signal").touch()
    if os_user:
        pw = pwd.getpwnam(os_user)
        for dirpath, dirnames, filenames in os.walk(target_dir):
            for n in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
                os.lchown(n, pw.pw_uid, pw.pw_gid)


async def restore_pitr(
    repo: Repository,
    config: Config,
    target_time: datetime,
    target_dir: Path,
    *,
    config_path: Path,
    snapshot: Snapshot | None = None,
    start: bool = False,
    port: int | None = None,
    os_user: str | None = None,
    timeout: float = 900,
    wal_from: str | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> PitrReport:
    """Restore the database as it was at ``target_time`` into ``target_dir`` (see module doc)."""
    phase = on_phase or (lambda _p: None)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    storage = config.storage
    if storage.passphrase_file is None and not storage.passphrase_command:
        raise UsageError(
            "point-in-time recovery runs `axisor-backup wal-fetch` as the server's restore_command, "
            "which cannot ask for a passphrase: set storage.passphrase_file (readable by the server's "
            "OS user) or storage.passphrase_command"
        )
    os_user = _server_user(os_user)
    if start and port is None:
        raise UsageError("--start needs --port (a free port for the restored server)")

    phase("window")
    window = await recovery_window(repo)
    base = _choose_base(window, snapshot, target_time)
    md = base.snapshot.metadata
    major = server_major(int(md.get("server_version_num") or 0))
    pg_ctl = await asyncio.to_thread(find_tool, "pg_ctl", config.database.pg_bin_dir)
    if pg_ctl.major != major:
        raise DatabaseError(
            f"the base backup is PostgreSQL {md.get('database_version')}; {pg_ctl.path} is "
            f"{pg_ctl.version}: recovery needs the same major version ({major}); set "
            "database.pg_bin_dir"
        )
    # From a secondary location (the primary is lost): the server fetches WAL from there too.
    restore_command = wanted_restore_command(config_path, wal_from)
    seconds["plan"] = round(time.monotonic() - t0, 3)

    phase("extract")
    t1 = time.monotonic()
    _prepare_target(target_dir)
    tree = await repo.load_tree(bytes.fromhex(base.snapshot.tree))
    nodes = [n for n in tree.nodes if n.type == FILE]
    if len(nodes) != 1:
        raise DatabaseError(f"base backup {base.snapshot.short_id} holds {len(nodes)} files, not one tar")
    size = await _extract(repo, tuple(nodes[0].content), target_dir)
    for d in _EMPTY_DIRS:
        (target_dir / d).mkdir(mode=0o700, exist_ok=True)
    seconds["extract"] = round(time.monotonic() - t1, 3)

    phase("configure")
    _configure_recovery(target_dir, target_time, base.snapshot.id, restore_command, port, os_user)
    log = target_dir / RECOVERY_LOG
    start_argv = [
        str(pg_ctl.path),
        "-D",
        str(target_dir.resolve()),
        "-l",
        str(log.resolve()),
        "-w",
        "-t",
        str(int(timeout)),
        "start",
    ]
    report_base: dict[str, Any] = dict(
        target_time=target_time.isoformat(),
        base_snapshot=base.snapshot.id,
        base_stop_time=base.stop_time.isoformat(),
        target_dir=str(target_dir.resolve()),
        bytes=size,
        port=port,
        start_command=run_as(start_argv, os_user),
        window=window.as_dict(),
    )
    if not start:
        seconds["total"] = round(time.monotonic() - t0, 3)
        return PitrReport(
            **report_base, started=False, promoted=False, stopped_at=None, last_transaction=None, seconds=seconds
        )

    phase("recover")
    t2 = time.monotonic()
    proc = await asyncio.to_thread(
        subprocess.run,
        run_as(start_argv, os_user),
        capture_output=True,
        text=True,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout + 30,
    )
    text = log.read_text(errors="replace") if log.exists() else ""
    if proc.returncode != 0:
        if _NOT_REACHED in text:
            raise DatabaseError(
                f"recovery ended before reaching {_fmt(target_time)}: the archive holds no commit after it "
                f"(the newest archived WAL is from {_fmt(base.usable_until) if base.usable_until else '?'}; "
                f"choose an earlier time). {window.describe()}. Server log: {log}"
            )
        raise DatabaseError(
            f"the restored server did not start (pg_ctl exit {proc.returncode}): "
            f"{_tail(text or proc.stderr)}. Log: {log}"
        )
    pg_controldata = await asyncio.to_thread(find_tool, "pg_controldata", config.database.pg_bin_dir)
    deadline = time.monotonic() + timeout
    state = ""
    told = None
    while time.monotonic() < deadline:
        state = await _controldata_state(pg_controldata.path, target_dir, os_user)
        if state == "in production":
            break
        text = log.read_text(errors="replace") if log.exists() else ""
        at = replay_position(text, int((base.snapshot.metadata or {}).get("wal_segment_size") or 16 * 1024 * 1024))
        if at is not None and at != told:
            phase(f"replaying {at}")
            told = at
        if _NOT_REACHED in text or "database system is shut down" in text:
            raise DatabaseError(f"recovery stopped without reaching {_fmt(target_time)}: {_tail(text)}. Log: {log}")
        await asyncio.sleep(0.2)
    else:
        raise DatabaseError(
            f"the restored server did not finish recovery within {timeout:.0f} s "
            f"(cluster state: {state or 'unknown'}); it is still running. Log: {log}"
        )
    seconds["recover"] = round(time.monotonic() - t2, 3)
    # Recovery is over: what wal-fetch spooled ahead is of no further use.
    await asyncio.to_thread(remove_spool, target_dir / "pg_wal")
    text = log.read_text(errors="replace") if log.exists() else ""
    stopped = _STOPPED.findall(text)
    last = _LAST.findall(text)
    warnings: tuple[str, ...] = ()
    if not stopped:
        warnings = ("the server log does not say where recovery stopped; check the restored data",)
    seconds["total"] = round(time.monotonic() - t0, 3)
    return PitrReport(
        **report_base,
        started=True,
        promoted=True,
        stopped_at=stopped[-1] if stopped else None,
        last_transaction=last[-1].strip() if last else None,
        seconds=seconds,
        warnings=warnings,
    )


def _tail(text: str, n: int = 6) -> str:
    return " | ".join(last_lines(text, n).splitlines())
