"""A backup run: every enabled source becomes one snapshot, all sharing one backup-set id."""

from __future__ import annotations

import asyncio
from functools import partial

import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from core import __version__
from core.backup.single_file import current_user
from core.backup.hooks import run_hook
from core.backup.archiver import Archiver, ArchiveStats
from core.backup.tripwire import Trip, check as tripwire_check
from core.backup.watchdog import DEFAULT_STALL_SECONDS, Watchdog
from core.backup.scan import ScanTotals, start_scan, stop_scan
from core.config import SourceSpec
from core.errors import SourceError, UsageError
from core.health.tripwire import Thresholds
from core.repository.format import BlobType
from core.repository.lock import Lock
from core.repository.repository import Repository
from core.repository.rollback import SeenSnapshots, rollback_error, unexplained
from core.storage.throttle import ticking
from core.repository.snapshot import SNAPSHOT_TYPES, Snapshot, Summary
from core.repository.tree import Tree


@dataclass(frozen=True, slots=True)
class SourceResult:
    source: str
    snapshot: Snapshot | None
    error: str | None = None
    code: int = SourceError.exit_code  # the exit code of the error, when there is one
    # The newest snapshot of the source before this run (whatever the type compared with):
    # what core/health/shrink.py compares the new snapshot's file count with.
    previous: Snapshot | None = None
    # The tripwire's findings for this snapshot and the pin it wrote (core/backup/tripwire.py).
    trip: Trip | None = None


@dataclass(frozen=True, slots=True)
class BackupResult:
    backup_set: str
    results: tuple[SourceResult, ...] = field(default_factory=tuple)
    # core.locations.copy.CopyResult per other location, filled by BackupService after the run.
    copies: tuple = ()
    # About the repository rather than a source: objects under data/ that are not packs of
    # this repository (planted or foreign), found by the adoption step and left alone.
    warnings: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return any(r.error or (r.snapshot and r.snapshot.warnings) for r in self.results)

    @property
    def failed_sources(self) -> list[SourceResult]:
        return [r for r in self.results if r.error]


def _reference(snaps: list[Snapshot], source: str, kind: str) -> Snapshot | None:
    """The snapshot a run compares against: incremental/full -> latest; differential -> latest full."""
    mine = [s for s in snaps if s.source == source]
    if kind == "differential":
        mine = [s for s in mine if s.type == "full"]
    return mine[-1] if mine else None


async def run_backup(
    repo: Repository,
    sources: list[SourceSpec],
    *,
    kind: str = "incremental",
    tags: tuple[str, ...] = (),
    workers: int = 2,
    on_progress: Callable[[str, ArchiveStats], None] | None = None,
    database: DatabaseTake | None = None,
    stall_timeout: float = DEFAULT_STALL_SECONDS,
    totals: dict[str, ScanTotals] | None = None,
    tripwire: Thresholds | None = None,
    seen: SeenSnapshots | None = None,
    db_position: Callable[[], Awaitable[dict[str, str]]] | None = None,
) -> BackupResult:
    """Back up ``database`` (when given) and then each file source, one snapshot each.
    ``stall_timeout``: a file source that reads no byte and finishes no file for this many
    seconds fails the run with BackupStalled (core/backup/watchdog.py); 0: never.
    ``totals``: filled per file source with a forecast of what the run visits, for progress:
    the previous snapshot's counts where there is one (free, and right unless the source
    changed a lot), else a scan running ahead on a thread (core/backup/scan.py).
    ``tripwire``: inspect each file snapshot against its source's earlier ones and pin the
    one before when it looks like an attack (core/backup/tripwire.py); None: off.
    ``seen``: this host's memory of the snapshots it saw (core/repository/rollback.py): a
    run refuses to write when one vanished unexplained, and records what it saw after.
    ``db_position``: the database's WAL position and clock (or why not), read just before and
    just after each file source's scan and recorded in its snapshot (``metadata["db_position"]``:
    which database state the files belong with, core/restore/platform.py)."""
    if kind not in SNAPSHOT_TYPES:
        raise UsageError(f"unknown backup type {kind!r}: use one of {', '.join(SNAPSHOT_TYPES)}")
    backup_set = uuid.uuid4().hex[:16]
    results: list[SourceResult] = []
    async with Lock(repo.backend, exclusive=False, operation="backup"):
        await repo.load_index()
        # A write-only key compares with the snapshots this host wrote (its own cache).
        existing, damaged, listed = await repo.writer_snapshots()
        if seen is not None:
            # Before anything is written: snapshots this host saw must not have vanished
            # unexplained (core/repository/rollback.py).
            missing = await unexplained(repo, seen.load(), listed)
            if missing:
                raise rollback_error(repo.backend.location, missing, seen.path)
        await repo.adopt_unindexed_packs()
        warnings = tuple(f"{key}: {why}" for key, why in sorted(repo.foreign_packs.items()))
        if totals is not None:
            _forecast(sources, existing, totals)
        try:
            if database is not None:
                results.append(await _backup_database(repo, database, backup_set, tags, on_progress, totals))
            for spec in sources:
                ref = _reference(existing, spec.name, kind)
                if kind != "full" and ref is None:
                    effective = "full"  # nothing to compare with: every file is read anyway
                else:
                    effective = kind
                previous = _reference(existing, spec.name, "incremental")
                try:
                    done = await _hooked_source(
                        spec,
                        db_position,
                        partial(
                            _backup_source,
                            repo,
                            spec,
                            effective,
                            ref,
                            backup_set,
                            tags,
                            workers,
                            on_progress,
                            stall_timeout=stall_timeout,
                        ),
                    )
                    trip = None
                    if tripwire is not None and done.snapshot is not None:
                        earlier = [s for s in existing if s.source == spec.name]
                        trip = await tripwire_check(repo, done.snapshot, earlier, tripwire)
                    results.append(replace(done, previous=previous, trip=trip))
                except SourceError as exc:
                    # One missing source must not cost the others their backup.
                    results.append(SourceResult(spec.name, None, str(exc)))
        finally:
            if totals is not None:
                stop_scan(totals)
            if seen is not None:
                seen.save(listed | {r.snapshot.id for r in results if r.snapshot is not None})
    return BackupResult(backup_set, tuple(results), warnings=warnings)


async def _hooked_source(
    spec: SourceSpec,
    db_position: Callable[[], Awaitable[dict[str, str]]] | None,
    backup: Callable[..., Awaitable[SourceResult]],
) -> SourceResult:
    """One file source between its pre_command and post_command (core/backup/hooks.py),
    with the database's position read just after the first and just before the second, so
    the recorded span is the one the files were frozen for. The post_command runs whatever
    happens once the pre_command was run; its failure is a warning on the snapshot.
    ``backup``: ``_backup_source`` with everything but ``metadata`` and ``finish`` bound."""
    post_ran = False

    async def post() -> str | None:
        nonlocal post_ran
        post_ran = True
        run = await run_hook("post", spec.post_command or "", spec.name, spec.hook_timeout)
        return None if run.ok else run.describe()

    if spec.pre_command:
        pre = await run_hook("pre", spec.pre_command, spec.name, spec.hook_timeout)
        if not pre.ok:
            undone = await post() if spec.post_command else None
            raise SourceError(
                f"{pre.describe()}; the source was not backed up" + (f"; also {undone}" if undone else "")
            )

    async def finish(metadata: dict, warnings: list[str]) -> None:
        if db_position is not None:
            metadata["db_position"] = {**metadata.get("db_position", {}), "end": await db_position()}
        if spec.post_command:
            failed = await post()
            if failed:
                warnings.append(failed)

    try:
        start = await db_position() if db_position is not None else None
        return await backup(metadata=None if start is None else {"db_position": {"start": start}}, finish=finish)
    finally:
        if spec.post_command and not post_ran:
            await asyncio.shield(post())  # the scan failed or was cancelled: undo what pre set up


def _forecast(sources: list[SourceSpec], existing: list[Snapshot], totals: dict[str, ScanTotals]) -> None:
    """The previous snapshot's counts where there is one: free, where a scan would double
    an unchanged run's stat work; a scan ahead of the run only for a first backup."""
    to_scan = []
    for spec in sources:
        previous = _reference(existing, spec.name, "incremental")
        if previous is not None:
            totals[spec.name] = ScanTotals(previous.summary.total_files, previous.summary.total_bytes, done=True)
        else:
            to_scan.append(spec)
    start_scan(to_scan, totals)


@dataclass(frozen=True, slots=True)
class DumpPosition:
    """Where a database dump's stream is, told by the source with the bytes that passed
    (a logical dump knows from its table of contents which table's data is passing)."""

    table: str = ""  # the table whose data is passing, schema-qualified (names.key), raw: escape to show
    table_size: int | None = None  # its size on disk (heap and TOAST) in the dump's snapshot
    # The whole stream's length, forecast from the catalog's table sizes; None until known.
    total: int | None = None


class DumpProgress(Protocol):
    """A database take's progress callback: ``n`` more bytes stored, and where the stream is
    (None from a take that cannot tell: a base backup). Called at most once per stored
    take of the stream (megabytes), never per row."""

    def __call__(self, n: int, where: DumpPosition | None = None, /) -> None: ...


@dataclass(frozen=True, slots=True)
class DatabaseTake:
    """How this run takes the database snapshot. Built above this layer, where the sources
    live (core/sources/postgres/take.py): the backup layer never imports a source."""

    source: str
    take: Callable[[Repository, str, tuple[str, ...], DumpProgress], Awaitable[Snapshot]]
    started: Awaitable[Any] | None = None  # the dump, already begun before the repository opened


async def _backup_database(
    repo: Repository,
    db: DatabaseTake,
    backup_set: str,
    tags: tuple[str, ...],
    on_progress: Callable[[str, ArchiveStats], None] | None,
    totals: dict[str, ScanTotals] | None = None,
) -> SourceResult:
    """A database snapshot is always a full dump; its failure costs the file sources nothing.
    ``totals``: given the database's forecast beside the file sources', so that the run's
    total and ETA cover the dump too: from the first position the take tells (``done`` once
    it tells a total); a take that tells none (a base backup) is left out, as before."""
    stats = ArchiveStats(total_files=1)
    forecast = ScanTotals(files=1)

    def on_bytes(n: int, where: DumpPosition | None = None) -> None:
        stats.bytes_read += n
        if where is not None:
            if totals is not None and db.source not in totals:
                totals[db.source] = forecast
            if where.table:
                stats.current = where.table.encode("utf-8", "surrogateescape")
                stats.current_size = where.table_size
            if where.total is not None:
                forecast.bytes, forecast.done = max(where.total, stats.bytes_read), True
        if on_progress:
            on_progress(db.source, stats)

    try:
        snap = await db.take(repo, backup_set, tags, on_bytes)
    except (SourceError, UsageError) as exc:
        return SourceResult(db.source, None, str(exc), exc.exit_code)
    finally:
        # What was read is what there was: the run's total goes on exact for the dump.
        forecast.bytes, forecast.done = stats.bytes_read, True
    return SourceResult(db.source, snap)


async def backup_paths(
    repo: Repository,
    name: str,
    paths: list[Path],
    *,
    tags: tuple[str, ...] = (),
    metadata: dict | None = None,
    workers: int = 2,
) -> Snapshot:
    """One full snapshot of ``paths`` under source ``name`` (a safety backup before a restore).
    The caller holds a lock and has loaded the index."""
    spec = SourceSpec(name=name, category=name.split("/", 1)[0], paths=tuple(paths), exclude=(), retention_days=0)
    result = await _backup_source(
        repo, spec, "full", None, uuid.uuid4().hex[:16], tags, workers, None, metadata=metadata
    )
    assert result.snapshot is not None
    return result.snapshot


async def _backup_source(
    repo: Repository,
    spec: SourceSpec,
    kind: str,
    ref: Snapshot | None,
    backup_set: str,
    tags: tuple[str, ...],
    workers: int,
    on_progress: Callable[[str, ArchiveStats], None] | None,
    metadata: dict | None = None,
    stall_timeout: float = DEFAULT_STALL_SECONDS,
    finish: Callable[[dict, list[str]], Awaitable[None]] | None = None,
) -> SourceResult:
    """``finish``: called with the snapshot's metadata and warnings once the scan has ended
    (the database's position at the end, the post_command: ``_hooked_source``)."""
    before = list(repo.stats.by_type.get(BlobType.DATA, [0, 0, 0]))
    ref_tree: Tree | None = await repo.reference_tree(bytes.fromhex(ref.tree)) if ref else None
    archiver = Archiver(
        repo,
        workers=workers,
        reread_all=(kind == "full"),
        exclude=spec.exclude,
        follow_root_symlink=spec.follow_root_symlink,
        on_progress=(lambda st: on_progress(spec.name, st)) if on_progress else None,
    )
    watchdog = archiver.watch = Watchdog(stall_timeout)
    try:
        # Only the archive is watched: the final flush reads nothing (uploads only). Uploads
        # paced by a bandwidth limit count as progress (core/storage/throttle.py).
        with ticking(repo.backend, watchdog.progress):
            root = await watchdog.guard(archiver.archive(list(spec.paths), ref_tree))
        await repo.flush()
    except BaseException:
        # Stop what the archive spawned (reads, seals) before the lock is released: a
        # cancelled or stalled run must not go on adding to the repository behind it.
        await archiver._cancel_all()
        await repo.abort()
        raise
    after = repo.stats.by_type.get(BlobType.DATA, [0, 0, 0])
    added, packed = after[1] - before[1], after[2] - before[2]
    st = archiver.stats
    summary = Summary(
        files_new=st.files_new,
        files_changed=st.files_changed,
        files_unmodified=st.files_unmodified,
        files_removed=st.files_removed,
        dirs=st.dirs,
        total_files=st.total_files,
        total_bytes=st.total_bytes,
        bytes_read=st.bytes_read,
        data_blobs_new=after[0] - before[0],
        data_added=added,
        data_added_packed=packed,
        compression_ratio=round(added / packed, 3) if packed else 1.0,
    )
    user = current_user()
    metadata = dict(metadata or {})
    if finish is not None:
        await finish(metadata, st.warnings)
    if archiver.root_links:
        # A source path that is a symbolic link: where it pointed, and whether the target
        # was archived (under the configured name) or only the link.
        metadata["root_links"] = [
            {"path": r.path, "target": r.target, "followed": r.followed} for r in archiver.root_links
        ]
    snap = Snapshot(
        time=datetime.now(timezone.utc).astimezone().isoformat(timespec="microseconds"),
        source=spec.name,
        paths=tuple(str(p) for p in spec.paths),
        tree=root.hex(),
        type=kind,
        parent=ref.id if ref else None,
        backup_set=backup_set,
        hostname=socket.gethostname(),
        username=user,
        tags=tuple(tags),
        warnings=tuple(st.warnings),
        summary=summary,
        program_version=__version__,
        metadata=metadata,
    )
    snap_id = await repo.save_snapshot(snap)
    return SourceResult(spec.name, replace(snap, id=snap_id))
