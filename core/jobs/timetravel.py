"""Time travel: which snapshot of a source was current at a moment, how it was checked, and
where it is held.

"Current at T" is the newest snapshot of the source taken at or before T among those the
catalog still holds (retention may have removed a nearer one). Before the source's first
snapshot nothing was current, and the answer says when protection began; after its newest
snapshot, the newest one is current. Pure functions over the catalog's entries
(core/locations/catalog.py) and the verification report (core/jobs/verification.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING

from core.jobs.verification import SnapshotChecks

if TYPE_CHECKING:  # the catalog is built by the caller; only its type is named here
    from core.locations.catalog import CatalogEntry
    from core.repository.snapshot import Snapshot

__all__ = ["PointInTime", "days_with_snapshots", "point_in_time", "sources_of"]


@dataclass(frozen=True, slots=True)
class PointInTime:
    source: str
    at: datetime
    entry: CatalogEntry | None  # current at ``at``; None before the first snapshot
    first: Snapshot | None  # the source's first snapshot, None when it has none
    following: Snapshot | None  # the snapshot that replaced it, None when it is the newest
    checks: SnapshotChecks | None  # the verification report's row for ``entry``

    @property
    def before_first(self) -> bool:
        return self.entry is None and self.first is not None

    @property
    def never(self) -> bool:
        """The source has no snapshot at all."""
        return self.first is None

    @property
    def newest(self) -> bool:
        return self.entry is not None and self.following is None

    @property
    def snapshot(self):
        return None if self.entry is None else self.entry.snapshot

    @property
    def locations(self) -> tuple[str, ...]:
        """Where a copy is held (completely or in part), the catalog's order."""
        if self.entry is None:
            return ()
        return tuple(c.location for c in self.entry.copies if c.held)


def sources_of(entries: Iterable) -> list[str]:
    return sorted({e.snapshot.source for e in entries})


def point_in_time(entries: Sequence, source: str, at: datetime, checks: Iterable[SnapshotChecks] = ()) -> PointInTime:
    """``entries``: the catalog's (any order); ``at`` must carry its time zone (a naive time
    is ambiguous by hours: refused)."""
    if at.tzinfo is None:
        raise ValueError("the moment needs a time zone")
    mine = sorted((e for e in entries if e.snapshot.source == source), key=lambda e: e.snapshot.datetime)
    current = None
    following = None
    for e in mine:
        if e.snapshot.datetime <= at:
            current = e
        else:
            following = e.snapshot
            break
    row = None
    if current is not None:
        row = next((c for c in checks if c.snapshot_id == current.snapshot.id), None)
    return PointInTime(source, at, current, mine[0].snapshot if mine else None, following, row)


def days_with_snapshots(entries: Iterable, source: str, tz: tzinfo) -> dict[date, int]:
    """How many snapshots of ``source`` were taken on each day (in ``tz``): the calendar
    strip's marks."""
    return dict(Counter(e.snapshot.datetime.astimezone(tz).date() for e in entries if e.snapshot.source == source))
