"""Running a restore-test: draw a snapshot and a sample of its items, restore them into a
scratch target, validate them, record the result in the repository, remove the scratch.

``plan`` reads (the snapshot list, the earlier restore-tests and drills, the chosen
snapshot's tree) and draws with core/drills/restore_test_plan.py; it changes nothing and is
what ``restore-test --dry-run`` shows. ``run`` executes a plan:

- a files snapshot: the sampled files are restored into a private scratch folder (as the
  drills make them, under ``[drills] work_dir``) and every one is read back and re-chunked
  from disk, its blob ids compared with the snapshot's (core/restore/validate.py): the
  same keyed ids a backup records, so a bit-exact check;
- a logical database snapshot: the sampled tables are restored into a scratch target
  (``[drills] scratch``: a throwaway cluster, or a scratch database on the configured
  server) and their exact row counts and row checksums compared with the ones the snapshot
  recorded (a table whose snapshot has no checksum is checked by count alone, and the record's
  ``method`` says so). Physical base backups are not sampled: point-in-time drills cover them.

The outcome never overstates: ``passed`` only when every sampled item was restored and
validated (``checked`` counts them); a mismatch or a missing item is ``failed``; a run
that was cancelled or could not run records that, never a pass. The scratch target is
removed in a ``finally`` shielded from cancellation; what could not be removed fails the test.
"""

from __future__ import annotations

import asyncio
import glob
import random
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core import __version__
from core.drills.report import new_drill_id, stored_reports
from core.drills.restore_test_plan import (
    FILES,
    TABLES,
    Choice,
    Item,
    Reservoir,
    RestoreTestPlan,
    Sampling,
    choose_snapshot,
)
from core.drills.restore_test_record import (
    CANCELLED,
    FAILED,
    NOT_RUN,
    PASSED,
    RestoreTestRecord,
    store_record,
    stored_records,
)
from core.sources.postgres.scratch import Scratch, server_user
from core.errors import AxisorError, Exit, UsageError
from core.repository.lock import Lock
from core.repository.snapshot import Snapshot
from core.repository.tree import FILE
from core.restore.attributes import RestoreOptions
from core.restore.walk import display, walk
from core.runner import JobCancelled

if TYPE_CHECKING:
    from core.service import BackupService

# At most this many items per run: each sampled file is one include pattern of the restore.
MAX_SAMPLE = 10_000
FILES_METHOD = "read back from disk and re-chunked: blob ids equal the snapshot's (bit-exact)"
TABLES_METHOD = "exact row counts and row checksums against the snapshot's"
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RestoreTestRequest:
    snapshot: str | None = None  # an id or prefix; None: draw one
    sampling: Sampling = Sampling()
    seed: int | None = None  # None: a fresh one, recorded so the run can be replayed
    location: str | None = None  # --from: read this location (default the primary)

    def as_params(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "sample_files": self.sampling.files,
            "share": self.sampling.share,
            "seed": self.seed,
            "from": self.location,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RestoreTestRequest:
        share = params.get("share")
        files = params.get("sample_files")
        seed = params.get("seed")
        return cls(
            str(params["snapshot"]) if params.get("snapshot") else None,
            Sampling(
                files=int(files) if files is not None else Sampling().files,
                share=float(share) if share is not None else None,
            ),
            int(seed) if seed is not None else None,
            str(params["from"]) if params.get("from") else None,
        )


def is_candidate(snap: Snapshot) -> bool:
    """Files snapshots that hold a file, and logical database snapshots with row counts to
    validate against; never a safety snapshot (it is a restore's undo, not a backup). An
    empty snapshot is left out: nothing in it can be restored, and, never tested, it would
    be drawn first again and again."""
    if "safety" in snap.tags:
        return False
    if snap.source != "database":
        return snap.summary.total_files > 0
    meta = snap.metadata or {}
    return meta.get("mode") == "logical" and isinstance(meta.get("tables"), dict) and bool(meta["tables"])


async def times_tested(svc: BackupService) -> tuple[dict[str, int], list[str]]:
    """Snapshot id -> how many restore-tests and drills restored it (with a verdict), and
    notes naming history that could not be read (then the draw is less well weighted,
    never wrong)."""
    counts: dict[str, int] = {}
    notes: list[str] = []
    try:
        records, damaged = await stored_records(svc)
        for r in records:
            if r.outcome in (PASSED, FAILED):
                counts[r.snapshot] = counts.get(r.snapshot, 0) + 1
        notes += [f"restore-test record unreadable: {d}" for d in damaged]
    except (AxisorError, OSError) as exc:
        notes.append(f"restore-test records unreadable ({exc})")
    try:
        drills, _ = await stored_reports(svc)
        for d in drills:
            for restored in d.restored:
                sid = str(restored.get("snapshot") or "")
                counts[sid] = counts.get(sid, 0) + 1
    except (AxisorError, OSError) as exc:
        notes.append(f"drill reports unreadable ({exc})")
    return counts, notes


def _file_pattern(name: str) -> str:
    """An include pattern matching exactly this path (``[``, ``*``, ``?`` escaped)."""
    return glob.escape(name)


async def _file_items(svc: BackupService, snap: Snapshot, sampling: Sampling, rng: random.Random):
    repo = await svc.repository()
    total = 0
    if sampling.share is not None:  # the count first: a share of what
        async for _parts, node in walk(repo, bytes.fromhex(snap.tree)):
            total += node.type == FILE
        count = min(sampling.count(total), MAX_SAMPLE)
    else:
        count = min(sampling.files, MAX_SAMPLE)
    reservoir = Reservoir(count, rng)
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        if node.type == FILE:
            reservoir.offer(Item(display(parts), node.size))
    return reservoir.sample(), reservoir.seen


def _table_items(snap: Snapshot, sampling: Sampling, rng: random.Random) -> tuple[tuple[Item, ...], int]:
    tables: dict = (snap.metadata or {}).get("tables") or {}
    count = min(sampling.count(len(tables)), MAX_SAMPLE)
    reservoir = Reservoir(count, rng)
    for name in sorted(tables):
        reservoir.offer(Item(str(name), int(tables[name])))
    return reservoir.sample(), reservoir.seen


async def plan(svc: BackupService, request: RestoreTestRequest) -> tuple[RestoreTestPlan, list[str]]:
    """Draw the snapshot and the sample; reads, changes nothing. Returns the plan and notes."""
    from core.storage.factory import PRIMARY_NAME

    seed = request.seed if request.seed is not None else secrets.randbits(63)
    rng = random.Random(seed)
    names = svc.location_names()
    if request.location and request.location not in names:
        raise UsageError(f"no location {request.location!r}; configured: {', '.join(names)}")
    # The history first, from the primary, where every record is kept (``_Run._store``).
    counts, notes = await times_tested(svc)
    if request.location and request.location != PRIMARY_NAME:
        await svc.use_location(request.location)
    if request.snapshot:
        (snap,) = await svc.resolve([request.snapshot])
        if not is_candidate(snap):
            raise UsageError(
                f"snapshot {snap.short_id} ({snap.source}) cannot be restore-tested: "
                + (
                    "it is a safety snapshot"
                    if "safety" in snap.tags
                    else "a physical base backup is rehearsed by `drill --to-time`, not sampled"
                )
            )
        n = counts.get(snap.id, 0)
        choice = Choice(snap, n, f"asked for (restore-tested {n} time{'s' if n != 1 else ''} before)")
    else:
        snaps, damaged = await svc.snapshots()
        notes += [f"snapshot unreadable, not a candidate: {d}" for d in damaged]
        choice = choose_snapshot([s for s in snaps if is_candidate(s)], counts, rng)
    snap = choice.snapshot
    # The items are drawn from a generator of their own, seeded by the seed and the snapshot:
    # `--snapshot ID --seed S` replays a recorded run's sample, however its snapshot was drawn.
    items_rng = random.Random(f"{seed}:{snap.id}")
    if snap.source == "database":
        items, total = _table_items(snap, request.sampling, items_rng)
        kind = TABLES
    else:
        items, total = await _file_items(svc, snap, request.sampling, items_rng)
        kind = FILES
    if total and len(items) < request.sampling.count(total):
        notes.append(f"the sample is capped at {MAX_SAMPLE} items per run")
    return RestoreTestPlan(snap, kind, items, total, seed, choice.why), notes


def _mismatch_count(mismatches: tuple[str, ...]) -> int:
    """How many mismatches, where validation lists the first ones and then "... and N more"."""
    if mismatches and mismatches[-1].startswith("... and "):
        try:
            return len(mismatches) - 1 + int(mismatches[-1].split()[2])
        except (IndexError, ValueError):
            return 1 << 62  # unreadable: count nothing as checked
    return len(mismatches)


class _Run:
    def __init__(
        self,
        svc: BackupService,
        the_plan: RestoreTestPlan,
        progress: Progress,
        check_cancelled: Callable[[], None],
        job_id: str | None,
    ) -> None:
        self.svc = svc
        self.plan = the_plan
        self.progress = progress
        self.check_cancelled = check_cancelled
        self.job_id = job_id
        self.id = new_drill_id()
        self.started = datetime.now(UTC)
        drills = svc.config.drills
        self.scratch = Scratch(self.id, drills.work_dir, None)
        self.failures: list[str] = []
        self.checked = 0

    async def run(self) -> RestoreTestRecord:
        outcome, error, code = NOT_RUN, None, 0
        cancelled: BaseException | None = None
        try:
            if not self.plan.items:
                raise UsageError(f"snapshot {self.plan.snapshot.short_id} holds no {self.plan.kind} to restore")
            self.check_cancelled()
            if self.plan.kind == FILES:
                await self._files()
            else:
                await self._tables()
            missing = len(self.plan.items) - self.checked
            if missing > 0 and not self.failures:
                self.failures.append(f"{missing} of {len(self.plan.items)} sampled {self.plan.kind} were not checked")
            outcome = FAILED if self.failures else PASSED
        except asyncio.CancelledError as exc:
            outcome, error, cancelled = CANCELLED, "cancelled", exc
        except JobCancelled:
            outcome, error = CANCELLED, "cancelled"
        except AxisorError as exc:
            outcome, error, code = NOT_RUN, str(exc), exc.exit_code
        except Exception as exc:  # noqa: BLE001 - recorded as "could not run", never a pass
            outcome, error, code = NOT_RUN, f"{type(exc).__name__}: {exc}", int(Exit.ERROR)
        finally:
            await asyncio.shield(self.scratch.cleanup())
        if self.scratch.problems:
            self.failures += [f"scratch not removed: {p}" for p in self.scratch.problems]
            if outcome == PASSED:
                outcome = FAILED
        record = replace(self._record(outcome, error), exit_code=code)
        record = await asyncio.shield(self._store(record))
        if cancelled is not None:
            raise cancelled
        return record

    async def _files(self) -> None:
        snap = self.plan.snapshot
        target = self.scratch.new_dir("axrt-files.")
        include = tuple(_file_pattern(i.name) for i in self.plan.items)
        self.progress(f"restoring {len(include)} files of snapshot {snap.short_id} into {target}")
        (outcome,) = await self.svc.restore_many(
            [snap], target, include=include, safety=False, validate=True, options=RestoreOptions(read_back=True)
        )
        v, stats = outcome.validation, outcome.stats
        if v is None:
            self.failures.append("the restore was not validated")
            return
        self.failures += list(v.mismatches)
        if stats is not None:
            self.failures += list(stats.errors)
            self.failures += [f"{p.dest}: restored in part" for p in stats.partial]
        # Files proven against the snapshot: the validated ones (partial files are not among
        # them) less each mismatch, counted in full where the list was cut short.
        # Never more than were sampled: only the sample is claimed, whatever else matched.
        self.checked = min(len(self.plan.items), max(0, v.files - _mismatch_count(v.mismatches)))
        self.progress(f"validated {v.files} files, {v.bytes} bytes ({v.method})")

    async def _tables(self) -> None:
        from core.sources.postgres.connection import PgTarget

        snap = self.plan.snapshot
        config = self.svc.config
        if config.drills.scratch == "database":
            target = self.scratch.scratch_database(PgTarget.from_config(config.database))
        else:
            self.scratch.os_user = server_user(config.drills.os_user)
            self.progress("starting a throwaway cluster")
            cluster = await self.scratch.cluster(config.database.pg_bin_dir)
            target = cluster.target(str((snap.metadata or {}).get("dbname") or "axisor"))
        self.check_cancelled()
        tables = tuple(i.name for i in self.plan.items)
        self.progress(f"restoring {len(tables)} tables of snapshot {snap.short_id} into {target.describe()}")
        report = await self.svc.restore_database(snap, target.conninfo(), tables=tables)
        rows = {t.table: t for t in report.tables}
        for name in tables:
            row = rows.get(name)
            if row is None:
                self.failures.append(f"{name}: not validated after the restore")
            elif row.actual is None:
                self.failures.append(f"{name}: missing after the restore")
            elif row.actual != row.expected:
                self.failures.append(f"{name}: {row.actual} rows restored, the snapshot has {row.expected}")
            elif row.checksum_ok is False:
                self.failures.append(f"{name}: row checksum differs from the snapshot's")
            else:
                self.checked += 1
        if report.large_objects is not None and not report.large_objects.get("ok", True):
            self.failures.append("large objects differ from the snapshot's")

    def _method(self) -> str:
        return FILES_METHOD if self.plan.kind == FILES else TABLES_METHOD

    def _record(self, outcome: str, error: str | None) -> RestoreTestRecord:
        p = self.plan
        return RestoreTestRecord(
            id=self.id,
            snapshot=p.snapshot.id,
            source=p.snapshot.source,
            location=self.svc.location,
            kind=p.kind,
            started=self.started.isoformat(),
            finished=datetime.now(UTC).isoformat(),
            outcome=outcome,
            checked=self.checked if outcome in (PASSED, FAILED) else 0,
            sampled=len(p.items),
            total=p.total,
            seed=p.seed,
            items=tuple(i.name for i in p.items),
            failures=tuple(self.failures),
            error=error,
            job=self.job_id,
            host=socket.gethostname(),
            program_version=__version__,
            method=self._method(),
        )

    async def _store(self, record: RestoreTestRecord) -> RestoreTestRecord:
        """Into the primary's repository, where the history is read from (as drill reports);
        when it cannot be written, into the location read from. A record that cannot be
        stored anywhere is still returned (and kept with the job), with why."""
        from core.storage.factory import PRIMARY_NAME

        problems: list[str] = []
        for name in dict.fromkeys([PRIMARY_NAME, self.svc.location]):
            try:
                repo = (
                    await self.svc.repository(load_index=False)
                    if name == self.svc.location
                    else await self.svc.location_ops().sites.repository(name)
                )
                async with Lock(repo.backend, exclusive=False, operation="restore-test"):
                    key = await store_record(repo, record)
                return replace(record, stored=f"{name}:{key}")
            except (AxisorError, OSError) as exc:
                problems.append(f"{name}: {exc}")
        return replace(record, store_error="; ".join(problems))


async def run_restore_test(
    svc: BackupService,
    the_plan: RestoreTestPlan,
    *,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
    job_id: str | None = None,
) -> RestoreTestRecord:
    """Execute a plan (``plan``) and return its record (also stored in the repository).
    A failed validation makes ``record.outcome`` "failed"; it does not raise."""
    run = _Run(svc, the_plan, progress or (lambda _line: None), check_cancelled or (lambda: None), job_id)
    return await run.run()


__all__ = ["MAX_SAMPLE", "RestoreTestRequest", "plan", "run_restore_test", "times_tested", "is_candidate"]
