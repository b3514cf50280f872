"""Physical base backups: ``pg_basebackup -D - -Ft -X none -c fast`` streamed into the repository.

The tar on pg_basebackup's stdout is chunked as it arrives (StreamWriter), so a base
backup deduplicates against earlier ones and never touches a temp file. ``-X none``: the
WAL needed to make the copy consistent comes from the archive (``wal-push``), so archiving
must be on; the backup is refused up front otherwise.

Metadata (snapshot ``metadata``): the start LSN, start WAL file and timeline from the
``backup_label`` inside the tar, the stop LSN from the ``WAL-Ranges`` of the
``backup_manifest`` inside the tar (both read as the stream passes, by a small tar header
scanner: pg_basebackup prints no start/end points when writing to stdout), the server's
clock just before the backup and just after it ended (a PITR target must not be earlier
than ``stop_time``), the system identifier (``pg_control_system()``), the server version
and the segment size.

A standby is refused unless ``backup_standby = true``: then the standby's files are read from
its data directory and the backup's start and stop run on the primary (standby.py); the
metadata's clock, WAL names and archiving checks are the primary's.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace

import psycopg

from core.backup.single_file import single_file_snapshot
from core.config import DatabaseConfig
from core.errors import DatabaseError, ToolVersionMismatch
from core.repository.format import BlobType
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.sources.postgres.connection import PgTarget, one_row
from core.sources.postgres.child import last_lines, store_output
from core.sources.postgres import standby
from core.sources.postgres.logical_snapshot import SOURCE
from core.sources.postgres.tools import find_tool, server_major

BASE_FILE = "base.tar"
_MANIFEST_TAIL = 256 * 1024  # WAL-Ranges sit at the end of backup_manifest


class TarTap:
    """A read-through wrapper of a tar stream that keeps ``backup_label`` and the tail of
    ``backup_manifest`` as they pass (ustar headers, as pg_basebackup writes them)."""

    def __init__(self, raw) -> None:
        self._raw = raw
        self._header = bytearray()
        self._remaining = 0  # content bytes left in the current member
        self._padding = 0
        self._want: str | None = None
        self._buf = bytearray()
        self.files: dict[str, bytes] = {}
        self._done = False

    def readinto(self, view) -> int:
        n = self._raw.readinto(view)
        if n:
            self._feed(memoryview(view)[:n])
        return n

    def _feed(self, data: memoryview) -> None:
        i = 0
        while i < len(data) and not self._done:
            if self._remaining:
                take = min(self._remaining, len(data) - i)
                if self._want:
                    self._buf += data[i : i + take]
                    if self._want == "backup_manifest" and len(self._buf) > 2 * _MANIFEST_TAIL:
                        del self._buf[:-_MANIFEST_TAIL]
                i += take
                self._remaining -= take
                if not self._remaining and self._want:
                    self.files[self._want] = bytes(self._buf)
                    self._want, self._buf = None, bytearray()
            elif self._padding:
                take = min(self._padding, len(data) - i)
                i += take
                self._padding -= take
            else:
                take = min(512 - len(self._header), len(data) - i)
                self._header += data[i : i + take]
                i += take
                if len(self._header) == 512:
                    self._member(bytes(self._header))
                    self._header.clear()

    def _member(self, h: bytes) -> None:
        if h == bytes(512):
            self._done = True  # end of archive
            return
        name = h[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = h[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") if h[257:262] == b"ustar" else ""
        if prefix:
            name = f"{prefix}/{name}"
        field = h[124:136]
        if field[0] & 0x80:  # base-256 for large members
            size = int.from_bytes(field[1:], "big")
        else:
            size = int(field.split(b"\0", 1)[0].strip() or b"0", 8)
        self._remaining = size
        self._padding = (-size) % 512
        self._want = name if name in ("backup_label", "backup_manifest") else None
        if self._want and size == 0:
            self.files[name] = b""
            self._want = None


def parse_label(text: str) -> dict:
    """backup_label -> start LSN, start WAL file, timeline, label start time."""
    out: dict = {}
    m = re.search(r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)", text, re.M)
    if m:
        out["start_lsn"], out["start_wal_file"] = m.group(1), m.group(2)
    m = re.search(r"^START TIMELINE: (\d+)", text, re.M)
    if m:
        out["timeline"] = int(m.group(1))
    return out


def parse_manifest_tail(tail: bytes) -> dict:
    """The last WAL-Ranges entry of backup_manifest -> stop LSN and timeline."""
    text = tail.decode("utf-8", "replace")
    ranges = re.findall(r'"Timeline":\s*(\d+),\s*"Start-LSN":\s*"([0-9A-F/]+)",\s*"End-LSN":\s*"([0-9A-F/]+)"', text)
    if not ranges:
        return {}
    tli, _start, end = ranges[-1]
    return {"stop_lsn": end, "stop_timeline": int(tli)}


async def _server_facts(conn: psycopg.AsyncConnection) -> dict:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
            "(SELECT system_identifier FROM pg_control_system())::text, "
            "current_setting('wal_level'), current_setting('archive_mode'), "
            "current_setting('archive_command'), current_setting('wal_segment_size'), "
            "pg_is_in_recovery(), clock_timestamp(), current_setting('full_page_writes')"
        )
        row = one_row(await cur.fetchone())
    version, version_num, sysid, wal_level, archive_mode, archive_command, seg, in_recovery, now, fpw = row
    return {
        "database_version": version,
        "server_version_num": version_num,
        "system_identifier": sysid,
        "wal_level": wal_level,
        "archive_mode": archive_mode,
        "archive_command": archive_command,
        "wal_segment_size": seg,
        "in_recovery": in_recovery,
        "now": now,
        "full_page_writes": fpw,
    }


async def backup_physical(
    repo: Repository,
    db: DatabaseConfig,
    *,
    backup_set: str = "",
    tags: tuple[str, ...] = (),
    on_bytes: Callable[[int], None] | None = None,
) -> Snapshot:
    """Take one base backup into the repository and commit its snapshot (type full)."""
    target = PgTarget.from_config(db)
    tool = await asyncio.to_thread(find_tool, "pg_basebackup", db.pg_bin_dir) if not db.backup_standby else None
    before = list(repo.stats.by_type.get(BlobType.DATA, [0, 0, 0]))
    started = time.monotonic()
    conn = await target.connect()
    primary, pconn = None, None
    from_standby: dict = {}
    try:
        facts = await _server_facts(conn)
        major = server_major(facts["server_version_num"])
        if db.backup_standby:
            # The configured server is the standby; archiving, clock, version and WAL names are the primary's.
            primary = standby.primary_target(target, db)
            pconn = await primary.connect()
            standby_facts, facts = facts, await _server_facts(pconn)
            standby.check_pair(target, standby_facts, primary, facts)
        elif facts["in_recovery"]:
            raise DatabaseError(
                f"{target.describe()} is a standby: set backup_standby = true in [database] (with primary_host/"
                "primary_port: where its primary runs) to back it up from here, or take physical backups "
                "from the primary"
            )
        if tool is not None and tool.major < major:
            raise ToolVersionMismatch(
                f"{tool.path} is version {tool.version}, older than the server ({facts['database_version']}); "
                f"pg_basebackup must be at least major version {major}: install it and set database.pg_bin_dir"
            )
        where = primary.describe() if primary is not None else target.describe()
        if facts["archive_mode"] == "off" or facts["wal_level"] == "minimal" or not facts["archive_command"]:
            raise DatabaseError(
                f"WAL archiving is off on {where} (wal_level={facts['wal_level']}, "
                f"archive_mode={facts['archive_mode']}); a physical backup without archived WAL cannot be "
                "restored. Run `axisor-backup database archiving` for the settings to apply."
            )
        start_time = facts["now"]
        if primary is not None and pconn is not None:
            copy = await standby.copy_from_standby(
                repo, db, target, conn, primary, pconn, facts["server_version_num"], on_bytes
            )
            ids, size = copy.ids, copy.size
            points = {**parse_label(copy.label), "stop_lsn": copy.stop_lsn}
            files, stderr = {"backup_label": copy.label.encode()}, ""
            from_standby = {
                "backup_from": "standby",
                "standby": target.describe(),
                "primary": primary.describe(),
                "standby_files": copy.files,
                "standby_replay_wait_seconds": copy.replay_wait_seconds,
            }
        else:
            assert tool is not None
            argv = [
                str(tool.path),
                "-D",
                "-",
                "-Ft",
                "-X",
                "none",
                "-c",
                "fast",
                "--no-password",
                "-d",
                target.conninfo(),
            ]
            ids, size, stderr, files = await _stream(repo, target, argv, on_bytes)
            points = {
                **parse_label(files.get("backup_label", b"").decode("utf-8", "replace")),
                **parse_manifest_tail(files.get("backup_manifest", b"")),
            }
        if "start_lsn" not in points or "stop_lsn" not in points:
            raise DatabaseError(
                "the base backup's tar holds no readable backup_label and backup_manifest "
                f"(found: {', '.join(sorted(files)) or 'neither'}); {last_lines(stderr)}"
            )
        async with (pconn or conn).cursor() as cur:  # pg_walfile_name() cannot run on a standby
            await cur.execute(
                "SELECT clock_timestamp(), pg_walfile_name(%s::pg_lsn), pg_walfile_name(%s::pg_lsn), "
                "(SELECT timeline_id FROM pg_control_checkpoint())",
                (points["start_lsn"], points["stop_lsn"]),
            )
            stop_time, start_wal, stop_wal, tli_now = one_row(await cur.fetchone())
    except psycopg.Error as exc:
        raise target.failed("reading", exc) from None
    finally:
        await conn.close()
        if pconn is not None:
            await pconn.close()

    metadata = {
        "mode": "physical",
        "format": "tar",
        "base_file": BASE_FILE,
        "base_size": size,
        "database_version": facts["database_version"],
        "server_version_num": facts["server_version_num"],
        "system_identifier": facts["system_identifier"],
        "wal_segment_size": _size_bytes(facts["wal_segment_size"]),
        "start_time": start_time.isoformat(),
        "stop_time": stop_time.isoformat(),
        "start_lsn": points["start_lsn"],
        "stop_lsn": points["stop_lsn"],
        "timeline": points.get("timeline") or tli_now,
        "stop_timeline": points.get("stop_timeline") or tli_now,
        "start_wal_file": start_wal,
        "stop_wal_file": stop_wal,
        "pg_basebackup_version": tool.version if tool is not None else None,
        **from_standby,
        "application_version": db.application_version or os.environ.get("AXISOR_APPLICATION_VERSION"),
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    snap = await single_file_snapshot(
        repo,
        name=BASE_FILE,
        ids=ids,
        size=size,
        before=before,
        source=SOURCE,
        paths=(target.describe(),),
        backup_set=backup_set,
        tags=tags,
        metadata=metadata,
    )
    snap_id = await repo.save_snapshot(snap)
    return replace(snap, id=snap_id)


def _size_bytes(setting: str) -> int:
    """'16MB' (SHOW-style) -> bytes."""
    m = re.fullmatch(r"(\d+)\s*(B|kB|MB|GB)?", setting.strip())
    if not m:
        return 16 * 1024 * 1024
    return int(m.group(1)) * {"B": 1, None: 1, "kB": 1024, "MB": 1 << 20, "GB": 1 << 30}[m.group(2)]


async def _stream(
    repo: Repository, target: PgTarget, argv: list[str], on_bytes: Callable[[int], None] | None
) -> tuple[tuple[bytes, ...], int, str, dict[str, bytes]]:
    taps: list[TarTap] = []

    def tap(stdout) -> TarTap:
        taps.append(TarTap(stdout))
        return taps[0]

    out = await store_output(repo, target, argv, program="pg_basebackup", on_bytes=on_bytes, wrap=tap)
    return out.ids, out.size, out.stderr, taps[0].files
