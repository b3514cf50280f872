"""The whole platform at one instant: which files snapshot belongs with the database at T.

Pure: snapshots and an instant in, a plan out (``restore --platform --to-time T``, its
``--dry-run`` and the ``platform-loss`` drill's report). The database is recovered to T
exactly (point-in-time recovery); each files source comes from its newest snapshot whose
scan had begun by T. Its *skew* is how far from T the files it holds may be: the farthest
end of its scan from T, by the database's own clock where the snapshot recorded it
(``metadata["db_position"]``, core/sources/postgres/position.py), else by the snapshot's
time, and then the plan says so: a scan's start is not known without it, so the skew
shown is a lower bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from core.repository.snapshot import Snapshot, is_safety

BY_DATABASE = "database clock"
BY_SNAPSHOT = "snapshot time (no database position recorded: the scan's start is unknown)"


@dataclass(frozen=True, slots=True)
class ScanSpan:
    """When a files snapshot's scan ran, and by which clock."""

    start: datetime
    end: datetime
    basis: str  # BY_DATABASE | BY_SNAPSHOT
    start_lsn: str = ""
    end_lsn: str = ""
    note: str = ""  # why the database's position is missing, when it is

    @classmethod
    def of(cls, snap: Snapshot) -> ScanSpan:
        """From the manifest's metadata; anything missing, malformed or without an offset is
        no position (placed by the snapshot's time, and the note says why)."""
        pos = (snap.metadata or {}).get("db_position")
        if pos is None:
            return cls(snap.datetime, snap.datetime, BY_SNAPSHOT)
        start = pos.get("start") if isinstance(pos, dict) else None
        end = pos.get("end") if isinstance(pos, dict) else None
        start, end = (p if isinstance(p, dict) else {} for p in (start, end))
        times = [_aware(p.get("time")) for p in (start, end)]
        if times[0] is not None and times[1] is not None and times[0] <= times[1]:
            return cls(times[0], times[1], BY_DATABASE, str(start.get("lsn", "")), str(end.get("lsn", "")))
        note = start.get("error") or end.get("error") or "the recorded position does not parse"
        return cls(snap.datetime, snap.datetime, BY_SNAPSHOT, note=str(note)[:200])


def _aware(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class SourceChoice:
    source: str
    at: datetime  # the instant the choice is for
    snapshot: Snapshot | None  # None: nothing of this source had begun by T
    span: ScanSpan | None
    skew_seconds: float | None  # the farthest end of the scan from T; None without a snapshot

    @property
    def covers(self) -> bool:
        """T falls inside the scan: the files were read around T itself."""
        return self.span is not None and self.span.start <= self.at <= self.span.end

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "snapshot": self.snapshot.id if self.snapshot else None,
            "scan": None
            if self.span is None
            else {
                "start": self.span.start.isoformat(),
                "end": self.span.end.isoformat(),
                "basis": self.span.basis,
                "start_lsn": self.span.start_lsn or None,
                "end_lsn": self.span.end_lsn or None,
                "note": self.span.note or None,
            },
            "covers": self.covers,
            "skew_seconds": None if self.skew_seconds is None else round(self.skew_seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class PlatformPlan:
    at: datetime
    files: tuple[SourceChoice, ...]

    @property
    def missing(self) -> list[str]:
        """Sources with no snapshot begun by T: the platform cannot be brought back whole."""
        return [c.source for c in self.files if c.snapshot is None]

    @property
    def max_skew(self) -> float | None:
        skews = [c.skew_seconds for c in self.files if c.skew_seconds is not None]
        return max(skews) if skews else None

    def to_dict(self) -> dict:
        return {
            "at": self.at.isoformat(),
            "files": [c.to_dict() for c in self.files],
            "missing": self.missing,
            "max_skew_seconds": None if self.max_skew is None else round(self.max_skew, 3),
        }


def plan_platform(snapshots: Iterable[Snapshot], at: datetime, sources: Iterable[str]) -> PlatformPlan:
    """For each files source (in the order given): its newest snapshot whose scan began at or
    before ``at``, and the skew. Safety snapshots (what a restore overwrote) are never chosen."""
    by_source: dict[str, list[tuple[ScanSpan, Snapshot]]] = {}
    for s in snapshots:
        if is_safety(s) or s.source == "database":
            continue
        by_source.setdefault(s.source, []).append((ScanSpan.of(s), s))
    choices = []
    for name in sources:
        began = [(span, s) for span, s in by_source.get(name, []) if span.start <= at]
        if not began:
            choices.append(SourceChoice(name, at, None, None, None))
            continue
        span, snap = max(began, key=lambda p: (p[0].start, p[1].datetime))
        skew = max(abs((at - span.start).total_seconds()), abs((span.end - at).total_seconds()))
        choices.append(SourceChoice(name, at, snap, span, skew))
    return PlatformPlan(at, tuple(choices))


__all__ = ["BY_DATABASE", "BY_SNAPSHOT", "PlatformPlan", "ScanSpan", "SourceChoice", "plan_platform"]
