"""Physical backups taken from a standby (``[database] backup_standby = true``), as pgBackRest does.

The configured server is the standby; ``primary_host``/``primary_port`` say where its primary
runs (user, database and password source as configured). The standby's files are read
straight from its data directory, so the backup runs on the standby's host as its OS user;
the primary does only the backup's start and stop:

1. ``pg_backup_start(label, fast)`` on the primary (a non-exclusive backup: its session stays
   open until the stop; closing it aborts the backup) -> the start LSN.
2. Wait (``standby_timeout_seconds``) until the standby has replayed past the start LSN and a
   restartpoint there has flushed everything before it to the standby's files (``CHECKPOINT``
   on the standby, then ``pg_control_checkpoint().redo_lsn >= start``): recovery from the
   backup begins at the start LSN and never replays what came before it.
3. The data directory is streamed as a tar (DataDirTar) into the repository, leaving out what
   pg_basebackup leaves out (WAL, postmaster files, signal files, temporary files, the
   contents of pg_replslot, pg_stat_tmp ...); ``global/pg_control`` goes last.
4. ``pg_backup_stop(true)`` on the primary (waits until the WAL the backup needs is archived;
   WAL archiving stays the primary's) -> the stop LSN and the ``backup_label`` (``BACKUP
   FROM: primary``: recovery ends the backup at the primary's backup-end record), appended
   to the tar as its last member.

Every page copied was written by replay at or before the moment of the copy, which lies
before the stop: the copy is consistent once recovery reaches the stop LSN.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from core.backup.stream import StreamWriter
from core.config import DatabaseConfig
from core.errors import DatabaseError
from core.repository.repository import Repository
from core.sources.postgres.connection import PgTarget, one_row

READ_BYTES = 1 << 20
# Top-level directories whose contents a base backup leaves out (the directory itself stays).
EMPTIED = (
    "pg_wal",
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
)
# Files a base backup leaves out wherever they are (backup_label: the primary's goes in instead).
LEFT_OUT = frozenset(
    (
        "postmaster.pid",
        "postmaster.opts",
        "backup_label",
        "backup_label.old",
        "tablespace_map",
        "tablespace_map.old",
        "standby.signal",
        "recovery.signal",
        "recovery.conf",
        "current_logfiles",
        "backup_manifest",
        "pg_internal.init",
    )
)
PG_CONTROL = "global/pg_control"


def primary_target(standby: PgTarget, db: DatabaseConfig) -> PgTarget:
    """The primary: the configured target with ``primary_host``/``primary_port`` in place of
    host and port (a conninfo URL's host and port included); the password source is shared."""
    params = dict(standby.params)
    if db.primary_host is not None:
        params["host"] = db.primary_host
    if db.primary_port is not None:
        params["port"] = str(db.primary_port)
    params.pop("hostaddr", None)
    return replace(standby, params=params)


def archiving_target(db: DatabaseConfig) -> PgTarget:
    """The server whose WAL archiving matters: the primary with backup_standby, else the configured one."""
    target = PgTarget.from_config(db)
    return primary_target(target, db) if db.backup_standby else target


def check_pair(standby: PgTarget, standby_facts: dict, primary: PgTarget, primary_facts: dict) -> None:
    """The configured server is a standby and ``primary_*`` reaches its primary."""
    if not standby_facts["in_recovery"]:
        raise DatabaseError(
            f"backup_standby = true, but {standby.describe()} is not a standby (it is not in recovery): point "
            "[database] at the standby, or set backup_standby = false to back up this server"
        )
    if primary_facts["in_recovery"]:
        raise DatabaseError(
            f"the primary given by primary_host/primary_port, {primary.describe()}, is itself a "
            "standby: the backup's start and stop must run on the primary"
        )
    if primary_facts["system_identifier"] != standby_facts["system_identifier"]:
        raise DatabaseError(
            f"{primary.describe()} is not the primary of {standby.describe()}: their system identifiers differ "
            f"({primary_facts['system_identifier']} and {standby_facts['system_identifier']})"
        )
    if primary_facts.get("full_page_writes") == "off":
        raise DatabaseError(
            f"full_page_writes is off on {primary.describe()}: a backup read from a standby "
            "needs it on (a page torn by the copy is restored from the WAL's full-page image)"
        )


def check_data_directory(data_dir: Path, system_identifier: str, standby: PgTarget) -> None:
    """The standby's data directory is readable here and is that server's (pg_control's
    system identifier), and it has no tablespaces (one tar holds one directory)."""
    where = (
        f"backup_standby reads the standby's files from its data directory {data_dir}: run the backup "
        "on the standby's host as the server's OS user"
    )
    try:
        head = (data_dir / PG_CONTROL).read_bytes()[:8]
        tablespaces = os.listdir(data_dir / "pg_tblspc")
    except OSError as exc:
        raise DatabaseError(f"{where} ({exc.strerror}: {exc.filename})") from None
    if len(head) < 8 or str(int.from_bytes(head, sys.byteorder)) != system_identifier:
        raise DatabaseError(
            f"{where}; {data_dir} on this host is another cluster than {standby.describe()} "
            "(its pg_control has another system identifier)"
        )
    if tablespaces:
        raise DatabaseError(
            f"{standby.describe()} has tablespaces ({len(tablespaces)} in pg_tblspc): a backup "
            "from a standby covers the data directory only; take it from the primary"
        )


class DataDirTar:
    """A read-only stream (``readinto``) of a data directory as a tar, without its end blocks:
    directories and regular files only, names relative to the directory, sorted; a file that
    vanishes during the copy is left out, one that shrinks is padded with zeros (recovery
    rewrites it from the WAL), one that grows is cut at the size it had when opened."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self._pieces = self._members()
        self._pending = memoryview(b"")

    def readinto(self, view) -> int:
        while not self._pending:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._pending = memoryview(piece)
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _members(self) -> Iterator[bytes]:
        last: list[str] = []
        for rel in self._walk():
            if rel == PG_CONTROL:
                last.append(rel)  # as pg_basebackup does
                continue
            yield from self._member(rel)
        for rel in last:
            yield from self._member(rel)

    def _walk(self) -> Iterator[str]:
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            try:
                entries = sorted(
                    os.scandir(self.root / rel_dir) if rel_dir else os.scandir(self.root), key=lambda e: e.name
                )
            except FileNotFoundError:
                continue  # a database dropped during the copy
            except OSError as exc:
                raise DatabaseError(f"cannot read {exc.filename} on the standby: {exc.strerror}") from None
            subdirs = []
            for e in entries:
                rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                if e.name in LEFT_OUT or e.name.startswith("pgsql_tmp"):
                    continue
                try:
                    is_dir = e.is_dir()  # pg_wal may be a symlink to a directory: kept as one
                    is_file = not is_dir and e.is_file(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    yield rel + "/"
                    if not rel_dir and e.name in EMPTIED:
                        if e.name == "pg_wal":
                            yield "pg_wal/archive_status/"
                        continue
                    subdirs.append(rel)
                elif is_file:
                    yield rel
            stack.extend(reversed(subdirs))

    def _member(self, rel: str) -> Iterator[bytes]:
        path = self.root / rel
        if rel.endswith("/"):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return
            yield _header(rel.rstrip("/"), st, tarfile.DIRTYPE, 0)
            return
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DatabaseError(f"cannot read {path} on the standby: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            size = st.st_size
            yield _header(rel, st, tarfile.REGTYPE, size)
            left = size
            while left:
                data = os.read(fd, min(READ_BYTES, left))
                if not data:
                    yield bytes(left)
                    break
                left -= len(data)
                yield data
            if size % 512:
                yield bytes(512 - size % 512)
            self.files += 1
        finally:
            os.close(fd)


def _header(name: str, st: os.stat_result, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def trailer(label: str, tablespace_map: str) -> bytes:
    """The tar's last members (backup_label, a non-empty tablespace_map) and its end blocks."""
    out = bytearray()
    now = time.time()
    for name, text in (("backup_label", label), ("tablespace_map", tablespace_map)):
        data = text.encode()
        if name == "tablespace_map" and not data:
            continue
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o600, int(now)
        out += info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape") + data + bytes((-len(data)) % 512)
    return bytes(out + bytes(1024))


@dataclass(frozen=True, slots=True)
class StandbyCopy:
    ids: tuple[bytes, ...]
    size: int
    label: str  # the primary's backup_label
    stop_lsn: str
    files: int
    data_directory: str
    replay_wait_seconds: float


async def _one(conn: psycopg.AsyncConnection, query: str, params=None) -> tuple:
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        return one_row(await cur.fetchone())


async def wait_for_replay(sconn: psycopg.AsyncConnection, start_lsn: str, timeout: float, standby: PgTarget) -> float:
    """Until the standby has replayed past ``start_lsn`` and made a restartpoint at or after it;
    the seconds it took. A DatabaseError after ``timeout`` seconds, with how far it got."""
    started = time.monotonic()
    while True:
        replayed, at = await _one(
            sconn,
            "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false), "
            "coalesce(pg_last_wal_replay_lsn()::text, 'nothing')",
            (start_lsn,),
        )
        if replayed:
            await sconn.execute("CHECKPOINT")  # a restartpoint: what replay wrote reaches the files
            (flushed,) = await _one(sconn, "SELECT redo_lsn >= %s::pg_lsn FROM pg_control_checkpoint()", (start_lsn,))
            if flushed:
                return round(time.monotonic() - started, 3)
        if time.monotonic() - started >= timeout:
            raise DatabaseError(
                f"the standby {standby.describe()} has not replayed past the backup's start {start_lsn} within "
                f"{timeout:g} s (standby_timeout_seconds; replayed up to {at}): is its replay paused "
                "(pg_is_wal_replay_paused()) or is it cut off from the primary (pg_stat_wal_receiver)? "
                "The backup was abandoned on the primary"
            )
        await asyncio.sleep(0.2)


async def copy_from_standby(
    repo: Repository,
    db: DatabaseConfig,
    standby: PgTarget,
    sconn: psycopg.AsyncConnection,
    primary: PgTarget,
    pconn: psycopg.AsyncConnection,
    server_version_num: int,
    on_bytes: Callable[[int], None] | None = None,
) -> StandbyCopy:
    """Steps 1-4 of the module's docstring; the repository's open packs are aborted on failure
    (the primary abandons the backup when its session closes)."""
    data_dir = Path((await _one(sconn, "SELECT current_setting('data_directory')"))[0])
    (sysid,) = await _one(sconn, "SELECT system_identifier::text FROM pg_control_system()")
    await asyncio.to_thread(check_data_directory, data_dir, sysid, standby)
    label_name = f"axisor-backup from standby {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    try:
        if server_version_num >= 150000:
            (start_lsn,) = await _one(pconn, "SELECT pg_backup_start(%s, true)::text", (label_name,))
        else:
            (start_lsn,) = await _one(pconn, "SELECT pg_start_backup(%s, true, false)::text", (label_name,))
    except psycopg.Error as exc:
        raise primary.failed("starting the backup on", exc) from None
    waited = await wait_for_replay(sconn, start_lsn, db.standby_timeout_seconds, standby)
    tar = DataDirTar(data_dir)
    writer = StreamWriter(repo)
    try:
        ids, size = await writer.store(tar, on_bytes)
        await writer.drain()
        try:
            if server_version_num >= 150000:
                stop = await _one(pconn, "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(true)")
            else:
                stop = await _one(pconn, "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, true)")
        except psycopg.Error as exc:
            raise primary.failed("stopping the backup on", exc) from None
        stop_lsn, label, spcmap = stop
        more, more_size = await writer.store(io.BytesIO(trailer(label, spcmap or "")), on_bytes)
        await writer.drain()
    except BaseException:
        with contextlib.suppress(BaseException):
            await writer.drain()
        await repo.abort()
        raise
    return StandbyCopy(ids + more, size + more_size, label, stop_lsn, tar.files, str(data_dir), waited)
