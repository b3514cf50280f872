"""Suspicious shrink: a file snapshot that lost more than a share of the previous one's files.

A wrongly mounted disk, a wiped folder or encryption by ransomware all look the same from a
backup's point of view: the source suddenly holds far fewer files. Such a snapshot is kept
(it is what the source holds), but flagged, by ``snapshots``, ``status``, the console's
catalog and dashboard, all through :func:`shrink_of`, so they agree.

Nothing is stored for it (a version-1 reader refuses unknown manifest fields, docs/FORMAT.md):
the flag is derived from ``summary.total_files`` of a snapshot and of the snapshot before it
of the same source, compared with ``[objectives] suspicious_shrink`` (default 0.5) at the
time of asking. Only file sources count: a database snapshot is one file whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class FileCount:
    """What the flag needs of one snapshot."""

    id: str
    source: str
    time: datetime
    files: int

    @classmethod
    def of(cls, snap: Any) -> FileCount:
        """From a ``Snapshot``."""
        return cls(snap.id, snap.source, snap.datetime, snap.summary.total_files)

    @classmethod
    def from_dict(cls, d: dict) -> FileCount:
        """From a snapshot as JSON (``snapshot_dict``: a backup job's result, ``snapshots --json``)."""
        return cls(
            d["id"],
            d["source"],
            datetime.fromisoformat(d["time"]),
            int((d.get("summary") or {}).get("total_files") or 0),
        )


@dataclass(frozen=True, slots=True)
class Shrink:
    source: str
    snapshot: str  # the snapshot that shrank
    previous: str  # the snapshot before it, of the same source ("" when only its count is known)
    previous_files: int
    files: int
    threshold: float

    @property
    def lost_share(self) -> float:
        return (self.previous_files - self.files) / self.previous_files

    def to_dict(self) -> dict:
        return {
            "previous": self.previous or None,
            "previous_files": self.previous_files,
            "files": self.files,
            "lost_share": round(self.lost_share, 4),
            "threshold": self.threshold,
        }

    def message(self) -> str:
        before = f" ({self.previous[:8]})" if self.previous else ""
        return (
            f"suspicious shrink: snapshot {self.snapshot[:8]} has {self.files} files, the previous one"
            f"{before} had {self.previous_files} ({self.lost_share:.0%} gone, more than the "
            f"{self.threshold:.0%} allowed by [objectives] suspicious_shrink): a wrongly mounted disk "
            "or a wipe looks like this; the snapshot is kept"
        )


def counts_files(source: str, tags: Iterable[str] = ()) -> bool:
    """File sources only: not the database (one dump file), not a restore's safety snapshot."""
    return source != "database" and not source.startswith("safety/") and "safety" not in tuple(tags)


def shrink_of(current: FileCount, previous: FileCount | None, threshold: float) -> Shrink | None:
    """The rule, in one place: flagged when more than ``threshold`` of the previous snapshot's
    files are gone (0.5: 10 -> 4 is flagged, 10 -> 5 is not). ``threshold`` >= 1 never flags."""
    if previous is None or previous.files <= 0:
        return None
    if previous.files - current.files > threshold * previous.files:
        return Shrink(current.source, current.id, previous.id, previous.files, current.files, threshold)
    return None


def suspicious_shrinks(snapshots: Iterable[Any], threshold: float) -> dict[str, Shrink]:
    """Every flagged snapshot, by id: each file snapshot compared with the one before it (in
    time) of the same source. ``snapshots``: ``Snapshot`` objects in any order (the catalog
    merged across locations, so a snapshot not yet copied somewhere changes nothing)."""
    by_source: dict[str, list[FileCount]] = {}
    for s in snapshots:
        if counts_files(s.source, s.tags):
            by_source.setdefault(s.source, []).append(FileCount.of(s))
    found: dict[str, Shrink] = {}
    for counts in by_source.values():
        counts.sort(key=lambda c: (c.time, c.id))
        for prev, cur in zip(counts, counts[1:]):
            if (flag := shrink_of(cur, prev, threshold)) is not None:
                found[cur.id] = flag
    return found


__all__ = ["DEFAULT_THRESHOLD", "FileCount", "Shrink", "counts_files", "shrink_of", "suspicious_shrinks"]
