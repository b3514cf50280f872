"""What a restore the operator chose will do, before it starts: the console's restore
wizard asks this module and only shows the answer (no policy decided in a screen).

``Plan`` is what was chosen (what, which snapshots or time, which files or tables, where);
``preflight`` measures the host (free space, permission to write, what exists and would be
overwritten) and returns a ``Preflight``: the lines to show, the blockers, whether a safety
backup comes first, the word to type when live data is overwritten, and the jobs to submit
in order. ``feasibility`` is the first step's check: whether any restore can start now."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.text import human_bytes


@dataclass(frozen=True, slots=True)
class Plan:
    """What the operator chose so far; each step returns a new Plan."""

    what: str = ""  # "platform" | "source" | "files" | "tables"
    source: str = ""
    snapshots: tuple[str, ...] = ()  # ids
    to_time: str = ""  # a PITR target instead of a snapshot
    selection: tuple[str, ...] = ()  # file paths or schema.table names
    where: str = ""  # "original" | "alternate"
    target: str = ""  # folder for files, database name for the database

    @property
    def is_database(self) -> bool:
        return self.source == "database"


@dataclass(frozen=True, slots=True)
class Preflight:
    lines: tuple[str, ...]
    overwrites: tuple[str, ...]  # live paths or databases that will be replaced
    problems: tuple[str, ...]  # blockers: no space, no permission
    safety: str  # what safety backup is taken first ("" when nothing live is touched)
    confirm_word: str  # what the operator must type ("" when no confirmation is needed)
    expected: tuple[tuple[str, int], ...] = ()  # restored path -> size, for validation
    jobs: tuple[tuple[str, dict], ...] = field(default=())  # (kind, params) to submit, in order


# The database an alternate whole-platform restore lands in (the live one is never replaced).
PLATFORM_ALTERNATE_DB = "axisor_restored"


def target_root(plan: Plan) -> Path:
    return Path("/") if plan.where == "original" else Path(plan.target).expanduser().resolve()


def landing(root: Path, shown: str) -> Path:
    """Where a snapshot path lands under a restore target (the CLI's rule: target + original path)."""
    return root / shown.lstrip("/")


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclass(slots=True)
class _Draft:
    lines: list[str] = field(default_factory=list)
    overwrites: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    jobs: list[tuple[str, dict]] = field(default_factory=list)
    expected: list[tuple[str, int]] = field(default_factory=list)
    safety_sources: list[str] = field(default_factory=list)


async def preflight(svc: Any, plan: Plan, snapshots: list, dbname: str | None) -> Preflight:
    """Measure and decide. ``svc``: the BackupService (``ls``); ``snapshots``: the catalog;
    ``dbname``: the configured database's name."""
    d = _Draft()
    if plan.to_time and plan.what == "tables":
        _table_at_time(d, plan, dbname)
        return _finish(d, plan, dbname)
    if plan.to_time:
        await _pitr(d, plan, snapshots)
    for snap in [s for s in snapshots if s.id in plan.snapshots]:
        if snap.source == "database":
            _database(d, plan, snap, dbname)
        else:
            await _files(d, svc, plan, snap)
    return _finish(d, plan, dbname)


async def _pitr(d: _Draft, plan: Plan, snapshots: list) -> None:
    data_dir = Path(plan.target).expanduser().resolve()
    d.lines.append(f"point-in-time recovery of the database to {plan.to_time}")
    d.lines.append(f"into a new cluster in {data_dir}, started on a free port; the live database is untouched")
    if await asyncio.to_thread(lambda: data_dir.exists() and any(data_dir.iterdir())):
        d.problems.append(f"{data_dir} is not empty: PITR needs a new or empty data directory")
    base = nearest_existing(data_dir)
    usage = await asyncio.to_thread(shutil.disk_usage, base)
    physical = [s for s in snapshots if s.source == "database" and s.metadata.get("mode") == "physical"]
    need = max((s.summary.total_bytes for s in physical), default=0)
    d.lines.append(
        f"  space: {human_bytes(usage.free)} free on {base}, the newest base backup is "
        f"{human_bytes(need)} {'✔ enough' if usage.free > need else '✘ NOT ENOUGH'}"
    )
    if usage.free <= need:
        d.problems.append(f"not enough space on {base}")
    d.jobs.append(
        ("restore", {"source": "database", "to_time": plan.to_time, "target_dir": str(data_dir), "start": True})
    )


def _table_at_time(d: _Draft, plan: Plan, dbname: str | None) -> None:
    """Tables as of a time, beside the live ones: nothing live is overwritten. ``where ==
    "original"``: put back in place (after the engine's safety snapshot of just those tables)."""
    from datetime import datetime

    if plan.where == "original":
        target = plan.target or dbname or ""  # "": the configured database (the engine's default)
        db = target or "(the configured one)"
        d.lines.append(f"tables put back IN PLACE in database {db} as they were at {plan.to_time}:")
        d.lines.extend(
            f"  {t}: merged by primary key (rows deleted, updated, inserted), or replaced whole without one"
            for t in plan.selection
        )
        d.lines.append(
            "  (rows written after that time are deleted; their triggers fire; all the tables change in one "
            "transaction, or none; a throwaway cluster is recovered to the time, then removed)"
        )
        d.overwrites.extend(f"table {t} in database {db}" for t in plan.selection)
        d.jobs.append(
            (
                "restore",
                {
                    "source": "database",
                    "to_time": plan.to_time,
                    "tables": list(plan.selection),
                    "target_db": target,
                    "force": True,
                },
            )
        )
        return
    hhmm = datetime.fromisoformat(plan.to_time).strftime("%H%M")
    d.lines.append(
        f"tables as of {plan.to_time}, copied into database {plan.target or '(the configured one)'} beside the live ones:"
    )
    d.lines.extend(f"  {t}: copied under its name followed by _at_{hhmm}" for t in plan.selection)
    d.lines.append("  (a throwaway cluster is recovered to that time, then removed; the live tables are untouched)")
    d.jobs.append(
        (
            "restore",
            {"source": "database", "to_time": plan.to_time, "tables": list(plan.selection), "target_db": plan.target},
        )
    )


def _database(d: _Draft, plan: Plan, snap: Any, dbname: str | None) -> None:
    target = (dbname or "") if plan.where == "original" else plan.target
    if plan.what == "platform" and plan.where == "alternate":
        target = PLATFORM_ALTERNATE_DB
    tables = plan.selection if plan.what == "tables" else ()
    force = plan.where == "original"
    if force:
        d.overwrites.append(f"database {target}" + (f" (tables {', '.join(tables)})" if tables else ""))
    d.lines.append(
        f"database snapshot {snap.short_id} ({human_bytes(snap.summary.total_bytes)} dump) "
        f"-> database {target}" + (f", tables: {', '.join(tables)}" if tables else "")
    )
    d.jobs.append(("restore", {"snapshot": snap.id, "target_db": target, "force": force, "tables": list(tables)}))


async def _files(d: _Draft, svc: Any, plan: Plan, snap: Any) -> None:
    include = plan.selection if plan.what == "files" else ()
    root = (
        target_root(plan)
        if not (plan.what == "platform" and plan.where == "alternate")
        else Path(plan.target).expanduser().resolve()
    )
    items = await svc.ls(snap.id)
    if include:
        items = [(p, n) for p, n in items if any(p == inc or p.startswith(inc.rstrip("/") + "/") for inc in include)]
    files = [(p, n) for p, n in items if n.type == "file"]
    need = sum(n.size for _, n in files)
    hits = await asyncio.to_thread(
        lambda: [p for p, n in items if n.type != "dir" and os.path.lexists(landing(root, p))]
    )
    base = nearest_existing(root)
    usage = await asyncio.to_thread(shutil.disk_usage, base)
    writable = await asyncio.to_thread(os.access, base, os.W_OK)
    d.lines.append(f"{snap.source} {snap.short_id}: {len(files)} files, {human_bytes(need)} -> {root}")
    d.lines.append(
        f"  space: {human_bytes(usage.free)} free on {base} "
        f"{'✔ enough' if usage.free > need else '✘ NOT ENOUGH'}; "
        f"permission to write: {'✔ yes' if writable else '✘ NO'}"
    )
    if usage.free <= need:
        d.problems.append(f"not enough space on {base}: {human_bytes(need)} needed, {human_bytes(usage.free)} free")
    if not writable:
        d.problems.append(f"cannot write to {base}")
    if hits:
        d.overwrites.extend(str(landing(root, p)) for p in hits)
        if plan.where == "original":
            d.safety_sources.append(snap.source)
    d.expected.extend((str(landing(root, p)), n.size) for p, n in files)
    d.jobs.append(("restore", {"snapshot": snap.id, "target": str(root), "include": list(include)}))


def _finish(d: _Draft, plan: Plan, dbname: str | None) -> Preflight:
    """The safety rule and the confirmation rule: live files overwritten in place get a
    safety backup first; a database replaced gets the engine's own safety snapshot; anything
    live overwritten needs a typed word."""
    safety = ""
    if d.safety_sources:
        safety = (
            "a safety backup of "
            + ", ".join(d.safety_sources)
            + " is taken first (tag: safety), so this restore can be rolled back"
        )
        d.jobs.insert(0, ("backup", {"sources": d.safety_sources, "type": "incremental", "tags": ["safety"]}))
    elif any(k == "restore" and p.get("force") and p.get("to_time") for k, p in d.jobs):
        safety = (
            "the engine commits a safety snapshot of those tables before putting them back "
            "(`axisor-backup rollback JOB_ID` puts them back as they are now)"
        )
    elif any(k == "restore" and p.get("force") for k, p in d.jobs):
        safety = "the engine commits a safety snapshot of the database before replacing it"
    if d.overwrites:
        d.lines.append(f"WILL OVERWRITE {len(d.overwrites)} live item(s):")
        d.lines.extend(f"  {o}" for o in d.overwrites[:8])
        if len(d.overwrites) > 8:
            d.lines.append(f"  … and {len(d.overwrites) - 8} more")
    else:
        d.lines.append("nothing that exists will be overwritten")
    if safety:
        d.lines.append("safety: " + safety)
    return Preflight(
        tuple(d.lines),
        tuple(d.overwrites),
        tuple(d.problems),
        safety,
        _confirm_word(d, plan, dbname),
        tuple(d.expected),
        tuple(d.jobs),
    )


def _confirm_word(d: _Draft, plan: Plan, dbname: str | None) -> str:
    if not d.overwrites:
        return ""
    if plan.what == "platform":
        return "platform"
    if plan.is_database and plan.where == "original":
        return dbname or "database"
    return plan.target if plan.where == "alternate" else plan.source


@dataclass(frozen=True, slots=True)
class Feasibility:
    """Whether a restore can start now, asked on the wizard's first step rather than after
    six: ``blockers`` stop any restore; ``notes`` limit some (a database restore)."""

    blockers: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.blockers


async def feasibility(svc: Any, *, read_only: bool, engine_connected: bool) -> Feasibility:
    """Read-only mode, the engine, the repository and its locks, the database and its tools."""
    from core.repository.lock import exclusive_holder

    blockers: list[str] = []
    notes: list[str] = []
    if read_only:
        blockers.append("read-only console (--read-only): you can look through the steps, nothing will start")
    if not engine_connected:
        blockers.append("the engine is not connected: restores run as its jobs")
    try:
        holder = await exclusive_holder(svc.backend)
    except Exception as exc:  # noqa: BLE001 - whatever the storage says, said as it is
        blockers.append(f"the repository cannot be read: {exc}")
    else:
        if holder is not None:
            blockers.append(f"the repository is held by an {holder.describe()}: a restore waits until it ends")
    if svc.config.database.enabled:
        # Asked of the service: restore sits below the sources (the import-linter layers).
        notes.extend(await svc.database_restore_problems())
    return Feasibility(tuple(blockers), tuple(notes))


__all__ = [
    "Feasibility",
    "feasibility",
    "PLATFORM_ALTERNATE_DB",
    "Plan",
    "Preflight",
    "landing",
    "nearest_existing",
    "preflight",
    "target_root",
]
