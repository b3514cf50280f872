"""The engine's front door: what the CLI (and later the console and daemon) call.

It builds storage and the repository from the config, owns the worker pool, and turns
each operation into one call. Front ends format results; they never open a backend,
a pack or a key file themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from core.backup.archiver import ArchiveStats
from core.text import shown as escaped
from core.backup import watchdog
from core.backup.run import BackupResult, run_backup
from core.config import Config, DatabaseConfig, SourceSpec
from core.errors import AxisorError, LockUnreadable, RestoreRefused, SnapshotNotFound, StorageFull, UsageError
from core.repository import keys as keyfiles
from core.repository.lock import Lock, RemovedLock, exclusive_holder, remove_locks
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.repository.tree import Node
from core.restore.files import FileRestorer, RestoreOptions, RestoreStats
from core.restore.progress import RestoreMeter, RestoreProgress
from core.restore.plan import RestorePlan
from core.restore.validate import ValidationResult
from core.restore.walk import display, walk
from core.storage.backend import Backend, StorageReadOnly
from core.storage.local import LocalBackend
from core.statedir import resolve_state_dir
from core.text import shown
from core.verify import VerifyReport, verify

if TYPE_CHECKING:  # built lazily (location_ops): the import is for the annotation only
    from core.locations.ops import LocationOps

PassphraseSource = Callable[[bool], str]  # confirm -> passphrase


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    restore_id: str
    snapshot: Snapshot
    plan: RestorePlan
    stats: RestoreStats | None = None  # None: a dry run
    safety_snapshot: Snapshot | None = None
    validation: ValidationResult | None = None
    location: str = "local"  # where the restore read from
    notes: tuple[str, ...] = ()  # locations that could not be searched for intact copies
    durable: bool = False  # flushed to disk before success was reported (not with --no-fsync)

    @property
    def ok(self) -> bool:
        return self.validation is None or self.validation.ok

    @property
    def partial(self) -> list:
        """Files not restored in full (core.restore.files.PartialFile)."""
        return self.stats.partial if self.stats is not None else []

    def as_dict(self, *, changes: bool = False) -> dict:
        """The outcome for --json and job records; ``changes``: every path the plan would
        touch (all but the unchanged ones)."""
        d: dict = {"snapshot": self.snapshot.id, "source": self.snapshot.source, "plan": self.plan.counts(),
                   "safety_snapshot": self.safety_snapshot.id if self.safety_snapshot else None,
                   "validation": self.validation.as_dict() if self.validation else None}
        if changes:
            d["changes"] = [{"path": str(c.path), "action": c.action, "kind": c.kind, "reason": c.reason}
                            for c in self.plan.changes if c.action != "unchanged"]
        if self.stats is not None:
            st = self.stats
            d.update(files=st.files, dirs=st.dirs, symlinks=st.symlinks, hardlinks=st.hardlinks, special=st.special,
                     bytes=st.bytes, unchanged=st.unchanged, metadata=st.metadata, removed=st.removed,
                     warnings=st.warnings_listed(), warning_count=st.warning_count,
                     privileges_stripped=st.stripped_listed(), privileges_stripped_count=st.stripped_count,
                     partial=[p.as_dict() for p in st.partial], partial_count=st.partial_count,
                     partial_cleared=st.partial_cleared, notes=list(self.notes), durable=self.durable)
        return d


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    created: str
    host: str
    user: str
    current: bool



def _check_strength(passphrase: str, allow_weak: bool) -> None:
    why = keyfiles.weak_passphrase(passphrase)
    if why and not allow_weak:
        raise UsageError(why)

class BackupService:
    def __init__(self, config: Config, passphrase: PassphraseSource, *, workers: int | None = None,
                 no_lock: bool = False, on_note: Callable[[str], None] | None = None,
                 state_dir: Path | None = None) -> None:
        self.config = config
        # The host's state folder (markers, cached key, monitor samples): passed in by the
        # engine or the front end; the one rule when not (core/statedir.py).
        self.state_dir = state_dir if state_dir is not None else resolve_state_dir(config)
        # Reading without a repository lock: on request (--no-lock), or from the first time
        # the storage refused to take one (read-only, full); writers never read this.
        self.no_lock = no_lock
        self.lockless_reason: str | None = None
        self.lockless_full = False  # ... because the storage is full (exit 10), not read-only (24)
        self.lockless_lock: LockUnreadable | None = None  # ... because a lock cannot be read (exit 5)
        self._on_note = on_note
        self._noted = False
        self._passphrase = passphrase
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="axisor-cpu")
        self.backend: Backend = LocalBackend(config.storage.local_path)
        self._repo: Repository | None = None
        self._primary = self.backend  # `backend` may be switched to another location (restore --from)
        self._location_ops: LocationOps | None = None  # built on first use
        self.index_damage: list[AxisorError] = []  # damaged index files skipped by repository()
        self.location = "local"  # the location `backend` reads (core.locations.sites.PRIMARY_NAME)

    async def close(self) -> None:
        if self._location_ops is not None:
            await self._location_ops.sites.close()  # every location but the primary
        await self._primary.close()
        # A read the backup watchdog gave up on may never return: do not wait for it.
        stuck = watchdog.abandoned()
        self.executor.shutdown(wait=not stuck, cancel_futures=stuck)

    # -- repository ---------------------------------------------------------------------

    async def init(self, *, allow_weak: bool = False) -> Repository:
        passphrase = self._passphrase(True)
        _check_strength(passphrase, allow_weak)
        repo = await Repository.create(
            self.backend, passphrase, pack_size=self.config.storage.pack_size_mib * 1024 * 1024
        )
        return self._adopt(repo)

    async def repository(self, *, load_index: bool = True, key_cache_dir: Path | None = None) -> Repository:
        """The opened repository; with ``load_index`` its index loaded. A damaged index file
        is skipped and kept in ``index_damage`` (front ends warn; `repair index` fixes it):
        reading what the other index files name must not depend on it."""
        if self._repo is None:
            self._adopt(await Repository.open(self.backend, self._passphrase(False), key_cache_dir=key_cache_dir))
        assert self._repo is not None
        if load_index:
            # Under a shared lock: prune (exclusive) deletes index files it has replaced, and a
            # listing taken while it runs would name files that are gone a moment later.
            async with self.read_lock("read"):
                self.index_damage.extend(await self._repo.load_index(strict=False))
        assert self._repo is not None
        return self._repo

    @property
    def lockless(self) -> bool:
        """Reads go on without a repository lock (--no-lock, or the storage refused one)."""
        return self.no_lock or self.lockless_reason is not None

    @asynccontextmanager
    async def read_lock(self, operation: str) -> AsyncIterator[None]:
        """A shared lock around a read; none with --no-lock, and none (with one note) when the
        storage refuses to store one: a read-only mount or medium, an immutable locks/
        folder, a full disk. Reading then creates nothing in the repository."""
        lock = await self._try_lock(self.backend, operation)
        try:
            yield
        finally:
            if lock is not None:
                await lock.release()

    async def _try_lock(self, backend: Backend, operation: str) -> Lock | None:
        """A shared lock on ``backend``, or None (noted once) when reading goes on without."""
        if not self.lockless:
            lock = Lock(backend, exclusive=False, operation=operation)
            try:
                return await lock.acquire()
            except (StorageReadOnly, StorageFull) as exc:
                why = exc.reason if isinstance(exc, StorageReadOnly) else "no space left"
                self.lockless_reason = f"{why}: {backend.location}"
                self.lockless_full = isinstance(exc, StorageFull)
            except LockUnreadable as exc:
                # Perhaps another user's live lock, perhaps a leftover: a reader cannot tell
                # whether it conflicts, and reads on without a lock rather than stop.
                self.lockless_reason = f"the lock {exc.key} at {exc.location} {exc.reason}"
                self.lockless_lock = exc
        self._note_lockless()
        return None

    def _note_lockless(self) -> None:
        if self._noted:
            return
        self._noted = True
        if self.no_lock:
            text = ("note: no lock taken (--no-lock): a prune or repair running meanwhile could remove "
                    "what this reads")
        elif self.lockless_lock is not None:
            text = (f"note: no lock taken: {self.lockless_reason} (another user's lock?); reading without "
                    "one, nothing is created in the repository; a prune or repair running meanwhile could "
                    "remove what this reads")
        else:
            text = (f"note: no lock taken because the storage refuses writes ({self.lockless_reason}); "
                    "reading without one, nothing is created in the repository")
        if self._on_note is not None:
            self._on_note(text)

    def _adopt(self, repo: Repository) -> Repository:
        repo.executor = self.executor
        repo.index_cache_dir = self.state_dir / "index-cache"  # a large repository's index table
        repo.compression_level = self.config.storage.compression_level if self.config.storage.compression else 0
        self._repo = repo
        return repo

    # -- backup -------------------------------------------------------------------------

    async def backup(self, *, kind: str = "incremental", sources: list[str] | None = None,
                     tags: tuple[str, ...] = (),
                     on_progress: Callable[[str, ArchiveStats], None] | None = None,
                     copy: bool = True, totals: dict | None = None) -> BackupResult:
        """``totals``: when given (an empty dict), filled with each file source's forecast
        for progress (core/backup/run.py: ``run_backup``)."""
        specs = list(self.config.sources())
        database = self.config.database if self.config.database.enabled else None
        if not specs and database is None:
            raise UsageError("no sources are configured: list paths under [application] or [configuration], "
                             "or set [database] enabled = true")
        if sources:
            known = {s.name: s for s in specs}
            short = {s.name.split("/", 1)[1]: s for s in specs}
            chosen: list[SourceSpec] = []
            want_database = False
            for name in sources:
                if name == "database":
                    if database is None:
                        raise UsageError("the database source is not enabled: set [database] enabled = true")
                    want_database = True
                    continue
                spec = known.get(name) or short.get(name)
                if spec is None:
                    if name in ("application", "configuration"):
                        chosen.extend(s for s in specs if s.category == name)
                        continue
                    raise UsageError(
                        f"unknown source {name!r}; configured: {', '.join(sorted(known))}"
                    )
                chosen.append(spec)
            specs = chosen
            database = database if want_database else None
        dump = preload = None
        if database is not None and database.mode == "logical" and not await self._exclusively_locked():
            # pg_dump starts now, in its exported snapshot, read ahead: its connection and
            # catalog reads overlap the passphrase's scrypt, the lock and the index load
            # instead of following them. Not while a prune holds the repository: the run
            # would be refused (and, from a job, retried for minutes).
            dump = asyncio.ensure_future(_start_dump(database))
        elif database is not None and self._repo is None:
            # psycopg's imports (~0.15 s) run on a thread while the passphrase's scrypt runs.
            preload = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "psycopg"))
        other_user = self.other_user_warning("backup")
        try:
            repo = await self.repository(load_index=False)
            if preload is not None:
                await preload
            result = await run_backup(repo, specs, kind=kind, tags=tags, workers=self.workers,
                                      on_progress=on_progress, database=_database_take(database, dump),
                                      stall_timeout=self.config.engine.stall_timeout_seconds, totals=totals)
        except AxisorError:
            if other_user and self._on_note is not None:
                self._on_note(f"warning: {other_user}")  # it may be why this failed
            raise
        finally:
            if dump is not None:
                await _stop_dump(dump)
        if other_user:  # in the result: the job record, its log and --json carry it
            result = dataclasses.replace(result, warnings=(other_user, *result.warnings))
        return await self._copy_after_backup(result) if copy else result

    def other_user_warning(self, doing: str) -> str | None:
        """A warning when this process runs as another OS user than the one owning the local
        repository (core/storage/owner.py); None when they are the same."""
        if not isinstance(self._primary, LocalBackend):
            return None
        from core.storage.owner import other_user_warning

        return other_user_warning(self._primary.root, doing)

    async def _exclusively_locked(self) -> bool:
        try:
            return await exclusive_holder(self.backend) is not None
        except (AxisorError, OSError):
            return False  # no repository, or unreadable: opening it says so properly

    # -- locations: copies, one catalog, monitoring (core/locations) -------------------

    def location_ops(self):
        """The locations of this config (core.locations.ops.LocationOps), built on first use."""
        from core.locations.monitor import MonitorState, state_file
        from core.locations.ops import LocationOps
        from core.locations.sites import PRIMARY_NAME, Sites

        if self._location_ops is None:
            def prepare(repo: Repository) -> None:
                repo.executor = self.executor
                repo.compression_level = (self.config.storage.compression_level
                                          if self.config.storage.compression else 0)

            self._location_ops = LocationOps(Sites(self.config, self._primary, self._passphrase, prepare),
                                             MonitorState(state_file(self.state_dir)))
        if self._repo is not None and self.backend is self._primary:
            self._location_ops.sites.adopt(PRIMARY_NAME, self._repo)  # one scrypt per process
        return self._location_ops

    async def use_location(self, name: str) -> None:
        """Serve every later call (resolve, restore, ls, verify...) from location ``name``."""
        sites = self.location_ops().sites
        self._repo = await sites.repository(name)
        self.backend = sites.backend(name)
        self.location = name

    async def choose_location(self, refs: list[str], source: str | None = None, *, prefer: str | None = None):
        """Pick where a restore reads from (primary first; ``prefer`` alone when given), switch
        to it, and return the choice (core.locations.ops.RestoreChoice) with skipped locations."""
        choice = await self.location_ops().choose(refs, source, prefer=prefer)
        await self.use_location(choice.location)
        return choice

    async def copy(self, to: str, refs: list[str] | None = None, *, source: str | None = None,
                   on_progress: Callable | None = None):
        """Copy snapshots (default: all that ``to`` lacks) to location ``to`` (CopyResult)."""
        from core.locations.sites import PRIMARY_NAME

        return await self.location_ops().copy(to, refs, source=source or PRIMARY_NAME, on_progress=on_progress)

    async def catch_up(self, targets: list[str] | None = None, *, on_progress: Callable | None = None):
        """Copy to every other location (or ``targets``) what it lacks; failures are results."""
        return await self.location_ops().catch_up(targets, on_progress=on_progress)

    async def catalog(self):
        """Every snapshot once across all locations, with each copy's state (Catalog). Under a
        shared lock on the primary when one can be had (its index files stay put meanwhile);
        while a prune holds it, or where there is no repository, read as is."""
        from core.errors import LockHeld

        ops = self.location_ops()
        try:
            here = await self._primary.exists()
        except (AxisorError, OSError):
            here = False
        lock = None
        if here:
            try:
                lock = await self._try_lock(self._primary, "read")
            except LockHeld:
                pass  # the catalog tolerates index files that go away
        try:
            return await ops.catalog()
        finally:
            if lock is not None:
                await lock.release()

    async def locations(self):
        """Per location: reachability, latency, usage, growth, last write (LocationStatus list)."""
        return await self.location_ops().status()

    async def _copy_after_backup(self, result: BackupResult) -> BackupResult:
        from dataclasses import replace

        from core.locations.sites import PRIMARY_NAME

        new = tuple(r.snapshot.id for r in result.results if r.snapshot)
        if not new or self.backend is not self._primary:
            return result
        ops = self.location_ops()
        await ops.after_write(PRIMARY_NAME)
        if not ops.sites.secondaries:
            return result
        return replace(result, copies=tuple(await ops.catch_up(new=new)))

    # -- catalog ------------------------------------------------------------------------

    async def snapshots(self) -> tuple[list[Snapshot], list[AxisorError]]:
        repo = await self.repository()
        snaps, damaged = await repo.list_snapshots()
        return snaps, list(damaged)

    async def resolve(self, refs: list[str], source: str | None = None, *,
                      load_index: bool = True) -> list[Snapshot]:
        """Snapshot references -> snapshots. Bare ``latest`` means the newest backup set."""
        repo = await self.repository(load_index=load_index)
        return await repo.resolve_refs(refs, source)

    async def ls(self, ref: str, path: str | None = None) -> list[tuple[str, Node]]:
        """Entries of the snapshot(s) ``ref`` names (``latest``: every source of the newest set)."""
        repo = await self.repository()
        want = "/" + path.strip("/") if path and path.strip("/") else None
        out = []
        for snap in await self.resolve([ref]):
            async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
                shown = display(parts)
                if want is None or shown == want or shown.startswith(want + "/"):
                    out.append((shown, node))
        if want is not None and not out:
            assert path is not None  # want is made from it
            raise SnapshotNotFound(f"{escaped(path)} is not in snapshot {escaped(ref)}")
        return out

    # -- restore and verify -------------------------------------------------------------

    async def restore(self, snap: Snapshot, target: Path, include: tuple[str, ...] = ()) -> RestoreStats:
        outcome = await self.restore_files(snap, target, include=include)
        assert outcome.stats is not None
        return outcome.stats

    async def restore_files(self, snap: Snapshot, target: Path, **options) -> RestoreOutcome:
        return (await self.restore_many([snap], target, **options))[0]

    async def restore_many(self, snaps: list[Snapshot], target: Path, *, include: tuple[str, ...] = (),
                           delete: bool = False, dry_run: bool = False, validate: bool = True,
                           safety: bool = True, restore_id: str | None = None,
                           options: RestoreOptions | None = None,
                           on_progress: Callable[[RestoreProgress], None] | None = None) -> list[RestoreOutcome]:
        """Plan, safety-backup what would change, restore only what differs, validate.

        ``dry_run`` stops after the plans. When any snapshot's restore would overwrite,
        re-stamp or remove something already there, a safety snapshot of every snapshot's
        roots is committed first (roots that do not exist yet are recorded as absent), so
        ``rollback`` can put the whole run back. Validation re-reads every restored file
        against the snapshot; a mismatch is reported in the outcome (the caller decides
        the exit). ``options``: which attributes to restore and how (RestoreOptions); as
        root, a target other users can change is refused unless they allow it."""
        from core.restore.plan import plan_restore
        from core.restore.safety import file_safety_snapshot, new_restore_id
        from core.restore.validate import validate_restore

        rid = restore_id or new_restore_id()
        repo = await self.repository(load_index=False)
        async with self.read_lock("restore"):
            await repo.load_index()
            plans = [await plan_restore(repo, s, target, include=include, delete=delete, executor=self.executor,
                                        options=options)
                     for s in snaps]
            if dry_run:
                return [RestoreOutcome(rid, s, p) for s, p in zip(snaps, plans)]
            conflicts = [c for p in plans for c in p.of("conflict")]
            if conflicts:
                listed = "; ".join(f"{shown(str(c.path))} ({c.reason})" for c in conflicts[:5])
                raise RestoreRefused(f"{len(conflicts)} paths in {plans[0].target} are in the way: {listed}"
                                     f"{' ...' if len(conflicts) > 5 else ''}; move them away (or restore "
                                     "with --delete into the folder above) and retry")
            safeties: list[Snapshot | None] = [None] * len(snaps)
            if safety and any(p.touches_existing for p in plans) and self.lockless:
                self._refuse_safety_without_lock(f"would change files that exist in {shown(str(target))}",
                                                 "restore into a new or empty folder")
            if safety and any(p.touches_existing for p in plans):
                safeties = [await file_safety_snapshot(repo, p, s, rid, workers=self.workers)
                            for s, p in zip(snaps, plans)]
            outcomes = []
            meter = RestoreMeter(plans, on_progress)
            for s, p, safe in zip(snaps, plans, safeties):
                stats = await FileRestorer(repo, target, include=include, executor=self.executor,
                                           actions=p.action_for(), removals=[c.path for c in p.of("remove")],
                                           options=options, leftovers=p.leftovers,
                                           on_written=meter.written(s.source)).restore(s)
                meter.finished(stats.files, stats.bytes, s.source)
                partial = frozenset(pf.dest for pf in stats.partial)
                check = await validate_restore(repo, s, target, include=include, executor=self.executor,
                                               proven=p.content_proven(), partial=partial, placed=stats.placed,
                                               read_back=bool(options and options.read_back)) if validate else None
                outcomes.append(RestoreOutcome(rid, s, p, stats, safe, check, self.location))
            if options is None or options.fsync:
                from dataclasses import replace as _replace

                from core.restore.durable import flush_filesystem

                # After the last file and before success is reported (as backups are).
                await asyncio.get_running_loop().run_in_executor(self.executor, flush_filesystem, target)
                outcomes = [_replace(o, durable=True) for o in outcomes]
        if any(o.partial for o in outcomes):
            outcomes = [await self._find_intact(o) if o.partial else o for o in outcomes]
        return outcomes

    async def _find_intact(self, outcome: RestoreOutcome) -> RestoreOutcome:
        """Name, for each partial file, the other locations holding an intact copy
        (core/restore/intact.py). Locations that cannot be searched become notes."""
        from dataclasses import replace

        from core.restore.intact import search_location

        if not self.config.storage.remote_storage:
            return outcome
        notes: list[str] = []
        sites = self.location_ops().sites
        for name in sites.names:
            if name == self.location:
                continue
            try:
                repo = await sites.repository(name)
            except (AxisorError, OSError) as exc:
                notes.append(f"location {name} was not searched for intact copies: {exc}")
                continue
            await search_location(name, repo, outcome.snapshot, outcome.partial, notes.append)
        return replace(outcome, notes=tuple(notes))

    def _refuse_safety_without_lock(self, change: str, instead: str) -> None:
        """A restore over existing data first commits a safety snapshot into the repository
        (what `rollback` puts back): that is a write, and a write needs a lock."""
        what = f"this restore {change}, and the safety snapshot that lets `rollback` undo that"
        if self.no_lock:
            raise UsageError(f"{what} is written into the repository, which needs a lock: drop --no-lock, "
                             f"or {instead}")
        if self.lockless_lock is not None:  # a writer stops at a lock it cannot read (exit 5)
            raise LockUnreadable(self.lockless_lock.location, self.lockless_lock.key, self.lockless_lock.reason)
        if self.lockless_full:  # a full disk is exit 10 wherever it is met, not "read-only" (24)
            raise StorageFull(f"{what} cannot be written: {self.lockless_reason}; free space there, or {instead}")
        raise StorageReadOnly(f"{what} cannot be written: {self.lockless_reason}; {instead}")

    async def rollback(self, restore_id: str) -> list[RestoreOutcome | object]:
        """Put back what restore ``restore_id`` changed, from its safety snapshots."""
        from core.restore.safety import absent_roots, find_safety, remove_root, safety_for

        snaps, _ = await self.snapshots()
        found = find_safety(snaps, restore_id)
        if not found:
            raise SnapshotNotFound(f"no safety snapshot belongs to a restore {restore_id!r}: the restore overwrote "
                                   "nothing (so there is nothing to roll back), or the id is wrong (it is printed "
                                   "by restore, and kept in the job record)")
        ids = {str((safety_for(s) or {}).get("restore")) for s in found}
        if len(ids) > 1:
            raise UsageError(f"{restore_id!r} matches several restores: {', '.join(sorted(ids))}")
        results: list[RestoreOutcome | object] = []
        for s in found:
            info = safety_for(s) or {}
            if s.source == "database":
                target = str(info.get("conninfo") or info.get("database") or "")
                if not target:
                    raise UsageError(f"safety snapshot {s.short_id} does not say which database it came from")
                results.append(await self.restore_database(s, target, force=True))
                continue
            # Put back exactly what was there, privileges too (as root: only root can set them).
            outcome = await self.restore_files(s, Path("/"), delete=True, options=RestoreOptions(
                preserve_privileges=os.geteuid() == 0))
            for root in absent_roots(s):
                remove_root(root)
            results.append(outcome)
        return results

    async def plan_database_restore(self, snap: Snapshot, target_db: str, *, force: bool = False,
                                    tables: tuple[str, ...] = (), schemas: tuple[str, ...] = (),
                                    roles: bool = False) -> dict:
        """``restore --target-db --dry-run``: what the restore would do, changing nothing."""
        from core.sources.postgres.connection import PgTarget
        from core.sources.postgres.logical import plan_logical_restore, preview_carry, snapshot_layout

        target = PgTarget.from_url(target_db, PgTarget.from_config(self.config.database))
        layout = None
        repo = await self.repository()
        if (snap.metadata or {}).get("mode") == "logical" and (tables or schemas):
            # Names are resolved against the dump's own table of contents, as the restore does.
            layout = await snapshot_layout(repo, snap)
        plan = await plan_logical_restore(snap, target, force=force, tables=tables, schemas=schemas, layout=layout)
        # Ownership, privileges and policies: what would be carried, and what not (carry.py).
        plan["carry"] = await preview_carry(repo, snap, target, tables=tables, schemas=schemas, roles=roles)
        return plan

    async def restore_database(self, snap: Snapshot, target_db: str, *, force: bool = False,
                               tables: tuple[str, ...] = (), schemas: tuple[str, ...] = (),
                               restore_id: str | None = None, roles: bool = False):
        """Restore a logical database snapshot (or only ``tables``/``schemas`` of it) into
        ``target_db`` (a URL, conninfo, or a database name on the configured server) and
        validate its row counts and checksums; returns the report. ``force`` replaces a
        non-empty database after committing a safety snapshot of it."""
        from core.sources.postgres.connection import PgTarget
        from core.sources.postgres.logical import restore_logical

        if (snap.metadata or {}).get("mode") == "physical":
            raise UsageError(f"snapshot {snap.short_id} is a physical base backup: restore it with "
                             "--to-time TIMESTAMP --target-dir DIR (point-in-time recovery), not --target-db")
        fallback = PgTarget.from_config(self.config.database)
        target = PgTarget.from_url(target_db, fallback)
        repo = await self.repository(load_index=False)
        async with self.read_lock("restore"):
            if force and self.lockless:  # replacing a database commits its safety snapshot first
                self._refuse_safety_without_lock("would replace a database's contents (--force)",
                                                 "restore into a new database")
            await repo.load_index()
            from core.restore.safety import new_restore_id

            return await restore_logical(repo, snap, target, pg_bin_dir=self.config.database.pg_bin_dir,
                                         force=force, tables=tables, schemas=schemas,
                                         db=self.config.database, restore_id=restore_id or new_restore_id(),
                                         roles=roles)

    async def restore_database_pitr(self, target_time, target_dir: Path, *, config_path: Path,
                                    snapshot: Snapshot | None = None, start: bool = False,
                                    port: int | None = None, os_user: str | None = None,
                                    timeout: float = 900, on_phase: Callable[[str], None] | None = None,
                                    wal_from: str | None = None):
        """Point-in-time recovery into a new data directory (core.sources.postgres.pitr)."""
        from core.sources.postgres.pitr import restore_pitr

        repo = await self.repository(load_index=False)
        async with self.read_lock("restore"):
            await repo.load_index()
            return await restore_pitr(repo, self.config, target_time, target_dir, config_path=config_path,
                                      snapshot=snapshot, start=start, port=port, os_user=os_user,
                                      timeout=timeout, on_phase=on_phase, wal_from=wal_from)

    async def recovery_window(self):
        from core.sources.postgres.pitr import recovery_window

        return await recovery_window(await self.repository(load_index=False))

    async def verify(self, *, full: bool = False, snapshot_refs: list[str] | None = None,
                     on_progress: Callable | None = None) -> VerifyReport:
        # Verify must open a repository whose index is damaged, to report it.
        repo = await self.repository(load_index=False)
        ids: list[str] | None = None
        if snapshot_refs:
            # Resolve names without opening manifests: a damaged one is for verify to report.
            ids = []
            for ref in snapshot_refs:
                if ref.startswith("latest"):
                    ids.extend(s.id for s in await self.resolve([ref], load_index=False))
                else:
                    ids.append(await repo.resolve_id(ref))
        async with self.read_lock("verify"):
            return await verify(repo, full=full, snapshot_ids=ids, on_progress=on_progress)

    # -- retention and prune ----------------------------------------------------------

    def location_names(self) -> list[str]:
        """Every configured location: the primary first, then storage.remote_storage."""
        from core.storage.factory import PRIMARY_NAME

        return [PRIMARY_NAME, *(loc.name for loc in self.config.storage.remote_storage)]

    async def prune(self, *, dry_run: bool = False, now=None, on_progress=None, location: str | None = None):
        """Apply [retention] to one location (default: the primary) and remove its unused
        data (core.maintenance.prune.PruneReport). ``on_progress(phase, done, total)``;
        ``now`` (an aware datetime) is for tests and planning."""
        from zoneinfo import ZoneInfo

        from core.maintenance.prune import prune
        from core.maintenance.retention import policies_from_config

        repo = await self._location_repo(location)
        return await prune(repo, policies_from_config(self.config), now=now,
                           tz=ZoneInfo(self.config.schedule.timezone), dry_run=dry_run,
                           on_progress=on_progress)

    async def _location_repo(self, location: str | None) -> Repository:
        from core.storage.factory import PRIMARY_NAME

        if location in (None, PRIMARY_NAME) and self.backend is self._primary:
            return await self.repository(load_index=False)
        return await self.location_ops().sites.repository(location or PRIMARY_NAME)

    async def repair_index(self, *, location: str | None = None, dry_run: bool = False,
                           packs: list[str] | None = None, read_all: bool = False, on_progress=None):
        """`repair index` (``packs`` None, ``read_all`` False) or `repair packs` at one
        location: core.repair.index.rebuild (RebuildReport)."""
        from core.repair import rebuild
        from core.repository.format import DATA, pack_id_from_key

        repo = await self._location_repo(location)
        check: set[bytes] | Literal["all"] | None = "all" if read_all else None
        if packs:
            names = [info.key.rsplit("/", 1)[-1] async for info in repo.backend.list(f"{DATA}/")
                     if pack_id_from_key(info.key) is not None]
            chosen: set[bytes] = set()
            for ref in packs:
                ref = ref.rsplit("/", 1)[-1].lower()
                matches = [n for n in names if n.startswith(ref)]
                if len(matches) != 1:
                    raise UsageError(f"pack {ref!r} matches {len(matches)} packs in {repo.backend.location}; "
                                     "give more of its name (`axisor-backup verify --full` names damaged packs)")
                chosen.add(bytes.fromhex(matches[0]))
            check = chosen
        return await rebuild(repo, dry_run=dry_run, check=check, on_progress=on_progress)

    async def repair_snapshots(self, refs: list[str] | None = None, *, location: str | None = None,
                               dry_run: bool = False, truncate: bool = False, on_progress=None):
        """`repair snapshots` at one location (core.repair.snapshots.SnapshotRepairReport)."""
        from core.repair import repair_snapshots

        repo = await self._location_repo(location)
        ids = [await repo.resolve_id(r) for r in refs] if refs else None
        return await repair_snapshots(repo, snapshot_ids=ids, dry_run=dry_run, truncate=truncate,
                                      on_progress=on_progress)

    async def forget(self, refs: list[str]) -> list[str]:
        """Delete the named snapshot manifests (ids or unique prefixes); prune frees their data."""
        from core.maintenance.prune import forget

        repo = await self.repository(load_index=False)
        return await forget(repo, [await repo.resolve_id(ref) for ref in refs])

    # -- PostgreSQL WAL archiving ------------------------------------------------------

    async def wal_push(self, path: Path):
        """archive_command: store one WAL file; durable when this returns (PushResult). Also
        stores the files the server has ready next, so their own pushes are answered without
        opening the repository (core/sources/postgres/wal_ahead.py)."""
        from dataclasses import replace

        from core.repository import repo_config
        from core.sources.postgres.wal import PushResult, push
        from core.sources.postgres.wal_ahead import Markers, push_ahead

        other_user = self.other_user_warning("wal-push")
        if other_user and self._on_note is not None:
            self._on_note(f"warning: {other_user}")  # into the server's log, beside the archiver's lines
        public = await repo_config.read_public(self.backend)
        markers = await asyncio.to_thread(Markers.open, self.state_dir, str(public.get("id", "")))
        if markers is not None:
            hit = await asyncio.to_thread(markers.take, path)
            if hit is not None:
                return PushResult(hit.name, hit.size, True, hit.sha256, from_marker=True)
        # One scrypt per host, not per segment: the server's user keeps the derived key.
        repo = await self.repository(load_index=False, key_cache_dir=self.state_dir)
        async with Lock(self.backend, exclusive=False, operation="wal-push"):
            result = await push(repo, path)
            if markers is not None:
                result = replace(result, pushed_ahead=await push_ahead(repo, path, markers))
        return result

    async def wal_fetch(self, name: str, dest: Path) -> int:
        """restore_command: write WAL file ``name`` to ``dest``; WalNotFound when it is not archived."""
        from core.sources.postgres.wal import WalNotFound, fetch, is_wal_name, load_manifest

        repo = await self.repository(load_index=False, key_cache_dir=self.state_dir)
        if not is_wal_name(name) or await load_manifest(repo, name) is None:
            raise WalNotFound(f"WAL file {name} is not in the repository")  # before the index: a cheap miss
        async with self.read_lock("wal-fetch"):
            await repo.load_index()
            return await fetch(repo, name, dest)

    async def database_archiving(self, config_path: Path):
        from core.sources.postgres.archiving import check_archiving
        from core.sources.postgres.standby import archiving_target

        # With backup_standby the primary archives: its settings are the ones to check.
        return await check_archiving(archiving_target(self.config.database), config_path)

    async def database_check(self, config_path: Path, *, wait: bool = True):
        """`database check`: a CheckReport (core/sources/postgres/dbcheck.py); needs no passphrase."""
        from core.sources.postgres.dbcheck import run_checks

        return await run_checks(self.config.database, config_path, LocalBackend(self.config.storage.local_path),
                                passphrase_file=self.config.storage.passphrase_file, wait=wait)

    async def database_restore_problems(self) -> list[str]:
        """What stops a database restore before it starts (the restore wizard's first step)."""
        from core.sources.postgres.dbcheck import restore_problems

        return await restore_problems(self.config.database)

    async def database_status(self) -> dict:
        from core.sources.postgres.archiving import archive_status
        from core.sources.postgres.standby import archiving_target

        repo = await self.repository(load_index=False)
        db = self.config.database
        target = archiving_target(db) if (db.enabled or db.url or db.host) else None
        return await archive_status(repo, target)

    # -- keys and locks -----------------------------------------------------------------

    async def keys(self) -> list[KeyInfo]:
        repo = await self.repository(load_index=False)
        current = repo.key.id if repo.key else ""
        return [KeyInfo(k.id, k.created, k.host, k.user, k.id == current)
                for k in await keyfiles.list_keys(self.backend)]

    async def add_key(self, new_passphrase: str, *, allow_weak: bool = False) -> KeyInfo:
        _check_strength(new_passphrase, allow_weak)
        repo = await self.repository(load_index=False)
        master = _master_of(repo)
        key = await asyncio.to_thread(keyfiles.wrap, master, new_passphrase)
        await keyfiles.store_key(self.backend, key)
        return KeyInfo(key.id, key.created, key.host, key.user, False)

    async def remove_key(self, key_id: str) -> None:
        repo = await self.repository(load_index=False)
        matches = [k for k in await keyfiles.list_keys(self.backend) if k.id.startswith(key_id)]
        if len(matches) != 1:
            raise UsageError(f"key id {key_id!r} matches {len(matches)} keys; give a unique prefix")
        if repo.key and matches[0].id == repo.key.id:
            raise UsageError("refusing to remove the key in use; open with another passphrase first")
        async with Lock(self.backend, exclusive=True, operation="key remove"):
            await self.backend.delete(f"keys/{matches[0].id}")

    async def change_passphrase(self, new_passphrase: str, *, allow_weak: bool = False) -> KeyInfo:
        """Add a key for the new passphrase, then remove the one in use. The master key stays
        the same (rotating it re-encrypts everything; a different operation)."""
        _check_strength(new_passphrase, allow_weak)
        repo = await self.repository(load_index=False)
        old = repo.key
        info = await self.add_key(new_passphrase, allow_weak=allow_weak)
        if old:
            async with Lock(self.backend, exclusive=True, operation="key passwd"):
                await self.backend.delete(f"keys/{old.id}")
        return info

    async def unlock(self, *, remove_all: bool = False) -> list[RemovedLock]:
        """Remove the stale locks (every lock with ``remove_all``), each with why it was stale."""
        await self.repository(load_index=False)  # only someone holding a passphrase may clear locks
        return await remove_locks(self.backend, all_locks=remove_all)


def _master_of(repo: Repository):
    if repo.key is None:
        raise AxisorError("repository was opened without a key file")
    return repo.master


def _database_take(database: DatabaseConfig | None, dump: asyncio.Future | None):
    """The database's part of the run, or None; its module is imported only for a database
    run (psycopg, ~0.1 s, has been loaded by then)."""
    if database is None:
        return None
    from core.sources.postgres.take import database_take

    return database_take(database, dump)


async def _start_dump(database: DatabaseConfig):
    """core.sources.postgres.logical.start_dump; the module (it imports psycopg, ~0.1 s) is
    imported on a thread, beside the scrypt."""
    logical = await asyncio.to_thread(importlib.import_module, "core.sources.postgres.logical")
    return await logical.start_dump(database)


async def _stop_dump(dump: asyncio.Future) -> None:
    """Stop a dump started early that the backup did not take (a wrong passphrase, a held
    lock); the backup closes one it took itself."""
    dump.cancel()
    outcome = (await asyncio.gather(dump, return_exceptions=True))[0]
    if not isinstance(outcome, BaseException):
        await outcome.close()


__all__ = ["BackupService", "KeyInfo", "PassphraseSource", "RestoreOutcome", "Snapshot"]
