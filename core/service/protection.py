"""The tripwire's pins, as a person sees them: list what is pinned and why, and acknowledge
(core/repository/pins.py; the wire itself: core/health/tripwire.py)."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import AxisorError, DamagedObject, SnapshotNotFound, UsageError
from core.repository.lock import Lock
from core.repository.pins import Pin, delete_pin, load_pins
from core.service.session import Session


@dataclass(frozen=True, slots=True)
class Acknowledged:
    removed: tuple[Pin, ...]  # the pins deleted: their snapshots go back to retention's rules
    damaged: tuple[str, ...]  # keys of pins that would not open, deleted when named by id or --all
    # Other locations that kept a copy of a removed pin (copies carry pins): unreachable,
    # or append-only. Said, because a prune there still keeps the snapshot.
    elsewhere: tuple[str, ...] = ()


async def pins(session: Session) -> tuple[list[Pin], list[DamagedObject]]:
    """The primary location's pins (where the tripwire writes them)."""
    repo = await session.location_repo(None)
    async with session.read_lock("pins"):
        return await load_pins(repo)


async def acknowledge(session: Session, refs: list[str], *, everything: bool = False) -> Acknowledged:
    """Delete the pins naming ``refs`` (snapshot ids or unique prefixes, of the pinned
    snapshot or of the one that tripped), or every pin with ``everything``. A ref that
    matches no pin, or more than one, is refused before anything is deleted."""
    if not refs and not everything:
        raise UsageError("name the pinned snapshots to acknowledge (axisor-backup acknowledge lists them), or --all")
    repo = await session.location_repo(None)
    # Shared, as a backup's: a pin is written under a backup's shared lock, and deleting one
    # changes no data; prune (exclusive) never runs at the same time as this.
    async with Lock(repo.backend, exclusive=False, operation="acknowledge"):
        found, damaged = await load_pins(repo)
        chosen: dict[str, Pin] = {}
        broken: list[str] = []
        if everything:
            chosen = {p.snapshot: p for p in found}
            broken = [d.key.rsplit("/", 1)[-1] for d in damaged]
        for ref in refs:
            ref = ref.lower()
            hits = [p for p in found if p.snapshot.startswith(ref) or (p.by and p.by.startswith(ref))]
            bad = [d.key.rsplit("/", 1)[-1] for d in damaged if d.key.rsplit("/", 1)[-1].startswith(ref)]
            if len(hits) + len(bad) != 1:
                what = "no pin" if not hits and not bad else f"{len(hits) + len(bad)} pins"
                raise SnapshotNotFound(f"{ref!r} matches {what} in {repo.backend.location}; `acknowledge` lists them")
            if hits:
                chosen[hits[0].snapshot] = hits[0]
            else:
                broken.append(bad[0])
        removed = [p for sid, p in chosen.items() if await delete_pin(repo, sid)]
        for sid in broken:
            await delete_pin(repo, sid)
    elsewhere = await _unpin_elsewhere(session, [p.snapshot for p in removed] + broken)
    return Acknowledged(tuple(removed), tuple(broken), tuple(elsewhere))


async def _unpin_elsewhere(session: Session, ids: list[str]) -> list[str]:
    """The copies of these pins at every other location; what could not be removed, said."""
    from core.storage.backend import LocationRefused

    notes: list[str] = []
    if not ids:
        return notes
    from core.service.locations import location_names

    for name in location_names(session)[1:]:
        try:
            repo = await session.location_repo(name)
            for sid in ids:
                await delete_pin(repo, sid)
        except LocationRefused:
            notes.append(f"{name} is append-only: its copies of these pins stay; acknowledge there from a trusted host")
        except AxisorError as exc:
            notes.append(f"{name}: its copies of these pins stay ({exc}); acknowledge again when it is reachable")
    return notes


async def accept_rollback(session: Session) -> tuple[int, str]:
    """`acknowledge --rollback`: this host now remembers the primary's snapshots as they are
    (core/repository/rollback.py), so backups run again. (snapshots remembered, the file)."""
    from core.repository.rollback import SeenSnapshots

    repo = await session.location_repo(None)
    async with session.read_lock("acknowledge"):
        snaps, damaged = await repo.list_snapshots()
    ids = {s.id for s in snaps} | {d.key.rsplit("/", 1)[-1] for d in damaged}
    seen = SeenSnapshots.of(session.state_dir, repo.config.id, repo.backend.location)
    seen.save(ids)
    return len(ids), str(seen.path)


__all__ = ["Acknowledged", "accept_rollback", "acknowledge", "pins"]
