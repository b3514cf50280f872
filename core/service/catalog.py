"""Reading the repository's catalog: its snapshots, snapshot references, a snapshot's files."""

from __future__ import annotations

from core.errors import AxisorError, SnapshotNotFound
from core.repository.snapshot import Snapshot
from core.repository.tree import Node
from core.restore.walk import display, walk
from core.service.session import Session
from core.text import shown as escaped


async def snapshots(session: Session) -> tuple[list[Snapshot], list[AxisorError]]:
    repo = await session.repository()
    snaps, damaged = await repo.list_snapshots()
    return snaps, list(damaged)


async def resolve(
    session: Session, refs: list[str], source: str | None = None, *, load_index: bool = True
) -> list[Snapshot]:
    """Snapshot references -> snapshots. Bare ``latest`` means the newest backup set."""
    repo = await session.repository(load_index=load_index)
    return await repo.resolve_refs(refs, source)


async def ls(session: Session, ref: str, path: str | None = None) -> list[tuple[str, Node]]:
    """Entries of the snapshot(s) ``ref`` names (``latest``: every source of the newest set)."""
    repo = await session.repository()
    want = "/" + path.strip("/") if path and path.strip("/") else None
    out = []
    for snap in await resolve(session, [ref]):
        async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
            shown = display(parts)
            if want is None or shown == want or shown.startswith(want + "/"):
                out.append((shown, node))
    if want is not None and not out:
        assert path is not None  # want is made from it
        raise SnapshotNotFound(f"{escaped(path)} is not in snapshot {escaped(ref)}")
    return out


__all__ = ["ls", "resolve", "snapshots"]
