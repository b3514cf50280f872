"""Checking and keeping a repository: verify, retention and prune, repair, forget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from core.errors import AxisorError, RepositoryNotFound, UsageError
from core.service.catalog import resolve
from core.service.session import Session
from core.verify import VerifyReport, verify as verify_repository


async def verify(
    session: Session, *, full: bool = False, snapshot_refs: list[str] | None = None, on_progress: Callable | None = None
) -> VerifyReport:
    # Verify must open a repository whose index is damaged, to report it.
    repo = await session.repository(load_index=False)
    ids: list[str] | None = None
    if snapshot_refs:
        # Resolve names without opening manifests: a damaged one is for verify to report.
        ids = []
        for ref in snapshot_refs:
            if ref.startswith("latest"):
                ids.extend(s.id for s in await resolve(session, [ref], load_index=False))
            else:
                ids.append(await repo.resolve_id(ref))
    async with session.read_lock("verify"):
        return await verify_repository(repo, full=full, snapshot_ids=ids, on_progress=on_progress)


async def prune(session: Session, *, dry_run: bool = False, now=None, on_progress=None, location: str | None = None):
    """Apply [retention] to one location (default: the primary) and remove its unused
    data (core.maintenance.prune.PruneReport). ``on_progress(phase, done, total)``;
    ``now`` (an aware datetime) is for tests and planning."""
    from zoneinfo import ZoneInfo

    from core.maintenance.prune import prune as prune_repository
    from core.maintenance.retention import policies_from_config

    repo = await session.location_repo(location)
    return await prune_repository(
        repo,
        policies_from_config(session.config),
        now=now,
        tz=ZoneInfo(session.config.schedule.timezone),
        dry_run=dry_run,
        on_progress=on_progress,
        pinned=await _primary_pins(session, location),
    )


async def reseal(session: Session, *, location: str | None = None, on_progress=None):
    """`prune --rewrite` at one location: what is under a retired key sealed again under the
    current one (core.maintenance.reseal.ResealReport)."""
    from core.maintenance.reseal import reseal as reseal_repository
    from core.repository.lock import Lock

    repo = await session.location_repo(location)
    repo.require_full("rewrite data under the current key")
    lock = Lock(repo.backend, exclusive=True, operation="prune --rewrite")
    async with lock:
        return await reseal_repository(repo, lock, on_progress)


async def _primary_pins(session: Session, location: str | None) -> dict[str, str]:
    """Pruning a copy: the primary's pins too (the tripwire writes them there; a snapshot
    has the same id everywhere). A primary that is there but cannot be read refuses the
    prune: a copy's prune must not forget what the primary's pins keep just because the
    primary is away. No repository at the primary's path: nothing to honour (noted)."""
    from core.repository.pins import load_pins, pinned_ids
    from core.storage.factory import PRIMARY_NAME

    if location in (None, PRIMARY_NAME):
        return {}
    try:
        return pinned_ids(*await load_pins(await session.location_repo(None)))
    except RepositoryNotFound:
        # No repository there at all (a trusted host that only keeps the copies, or a lost
        # primary): no pins to honour. Said, not silent.
        session.note(f"note: no primary repository at {session.config.storage.local_path}: no pins to honour")
        return {}
    except AxisorError as exc:
        raise UsageError(
            f"cannot read the primary location's pins ({exc}); prune {location} when the primary is reachable"
        ) from exc


async def repair_index(
    session: Session,
    *,
    location: str | None = None,
    dry_run: bool = False,
    packs: list[str] | None = None,
    read_all: bool = False,
    on_progress=None,
):
    """`repair index` (``packs`` None, ``read_all`` False) or `repair packs` at one
    location: core.repair.index.rebuild (RebuildReport)."""
    from core.repair import rebuild
    from core.repository.format import DATA, pack_id_from_key

    repo = await session.location_repo(location)
    check: set[bytes] | Literal["all"] | None = "all" if read_all else None
    if packs:
        names = [
            info.key.rsplit("/", 1)[-1]
            async for info in repo.backend.list(f"{DATA}/")
            if pack_id_from_key(info.key) is not None
        ]
        chosen: set[bytes] = set()
        for ref in packs:
            ref = ref.rsplit("/", 1)[-1].lower()
            matches = [n for n in names if n.startswith(ref)]
            if len(matches) != 1:
                raise UsageError(
                    f"pack {ref!r} matches {len(matches)} packs in {repo.backend.location}; "
                    "give more of its name (`axisor-backup verify --full` names damaged packs)"
                )
            chosen.add(bytes.fromhex(matches[0]))
        check = chosen
    return await rebuild(repo, dry_run=dry_run, check=check, on_progress=on_progress)


async def repair_snapshots(
    session: Session,
    refs: list[str] | None = None,
    *,
    location: str | None = None,
    dry_run: bool = False,
    truncate: bool = False,
    on_progress=None,
):
    """`repair snapshots` at one location (core.repair.snapshots.SnapshotRepairReport)."""
    from core.repair import repair_snapshots as repair

    repo = await session.location_repo(location)
    ids = [await repo.resolve_id(r) for r in refs] if refs else None
    return await repair(repo, snapshot_ids=ids, dry_run=dry_run, truncate=truncate, on_progress=on_progress)


async def forget(session: Session, refs: list[str]) -> list[str]:
    """Delete the named snapshot manifests (ids or unique prefixes); prune frees their data."""
    from core.maintenance.prune import forget as forget_snapshots

    repo = await session.repository(load_index=False)
    return await forget_snapshots(repo, [await repo.resolve_id(ref) for ref in refs])


__all__ = ["forget", "prune", "repair_index", "repair_snapshots", "verify"]
