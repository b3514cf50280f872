"""The locations of a config (core/locations): copies, one catalog across them, their
status, and which one a restore reads from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from core.backup.run import BackupResult
from core.errors import AxisorError
from core.service.session import Session


def location_names(session: Session) -> list[str]:
    """Every configured location: the primary first, then storage.remote_storage."""
    from core.storage.factory import PRIMARY_NAME

    return [PRIMARY_NAME, *(loc.name for loc in session.config.storage.remote_storage)]


async def use_location(session: Session, name: str) -> None:
    """Serve every later call (resolve, restore, ls, verify...) from location ``name``."""
    sites = session.location_ops().sites
    session.use(await sites.repository(name), sites.backend(name), name)


async def choose_location(session: Session, refs: list[str], source: str | None = None, *, prefer: str | None = None):
    """Pick where a restore reads from (primary first; ``prefer`` alone when given), switch
    to it, and return the choice (core.locations.ops.RestoreChoice) with skipped locations."""
    choice = await session.location_ops().choose(refs, source, prefer=prefer)
    await use_location(session, choice.location)
    return choice


async def copy(
    session: Session,
    to: str,
    refs: list[str] | None = None,
    *,
    source: str | None = None,
    on_progress: Callable | None = None,
):
    """Copy snapshots (default: all that ``to`` lacks) to location ``to`` (CopyResult)."""
    from core.locations.sites import PRIMARY_NAME

    return await session.location_ops().copy(to, refs, source=source or PRIMARY_NAME, on_progress=on_progress)


async def catch_up(session: Session, targets: list[str] | None = None, *, on_progress: Callable | None = None):
    """Copy to every other location (or ``targets``) what it lacks; failures are results."""
    return await session.location_ops().catch_up(targets, on_progress=on_progress)


async def catalog(session: Session):
    """Every snapshot once across all locations, with each copy's state (Catalog). Under a
    shared lock on the primary when one can be had (its index files stay put meanwhile);
    while a prune holds it, or where there is no repository, read as is."""
    from core.errors import LockHeld

    ops = session.location_ops()
    try:
        here = await session.primary.exists()
    except (AxisorError, OSError):
        here = False
    lock = None
    if here:
        try:
            lock = await session.try_lock(session.primary, "read")
        except LockHeld:
            pass  # the catalog tolerates index files that go away
    try:
        return await ops.catalog()
    finally:
        if lock is not None:
            await lock.release()


async def locations(session: Session):
    """Per location: reachability, latency, usage, growth, last write (LocationStatus list)."""
    return await session.location_ops().status()


async def probe_reads(session: Session, names: list[str] | None = None, budget: int | None = None):
    """Per location (all, or ``names``): its measured latency and read throughput
    (core/locations/probe.py ReadProbe list); needs no passphrase."""
    from core.locations.probe import DEFAULT_BUDGET

    return await session.location_ops().probe_reads(names, budget or DEFAULT_BUDGET)


async def copy_after_backup(session: Session, result: BackupResult) -> BackupResult:
    """After a backup at the primary: note the write, and copy its new snapshots to every
    other location (core.locations.ops.LocationOps.catch_up)."""
    from core.locations.sites import PRIMARY_NAME

    new = tuple(r.snapshot.id for r in result.results if r.snapshot)
    if not new or session.backend is not session.primary:
        return result
    ops = session.location_ops()
    await ops.after_write(PRIMARY_NAME)
    if not ops.sites.secondaries:
        return result
    if session.opened and (await session.repository(load_index=False, writer=True)).write_only:
        # A copy reads what it copies; a full-key host makes it (`axisor-backup copy`).
        return replace(
            result,
            warnings=result.warnings
            + (
                "copies to other locations were not made: a write-only key reads nothing; run "
                "`axisor-backup copy` from a host with a full key",
            ),
        )
    return replace(result, copies=tuple(await ops.catch_up(new=new)))


__all__ = [
    "catalog",
    "catch_up",
    "choose_location",
    "copy",
    "copy_after_backup",
    "probe_reads",
    "location_names",
    "locations",
    "use_location",
]
