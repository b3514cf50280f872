"""Which backup type a scheduled run takes, decided from the repository's catalog.

The strategy document's rule: a full backup when the last full one is older than
``full_every_days`` (7 by default), otherwise an incremental one; a schedule may ask for
differential instead of incremental, or pin one type. In this repository format the type
only decides what is *read* (no chains: every snapshot restores alone), so "full" is about
re-reading every file now and then, catching what metadata comparison cannot see.

One run takes one type for all of its sources (they form one backup set), so the run is
full as soon as one of its sources is due a full; each source's reason is kept so the run
record says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.repository.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class TypeDecision:
    type: str  # full | incremental | differential
    reason: str
    per_source: dict[str, str] = field(default_factory=dict)


def choose_type(
    policy: str, sources: Iterable[str], catalog: Iterable[Snapshot], *, now: datetime, full_every_days: int
) -> TypeDecision:
    """The type for a run of ``sources`` under ``policy`` (auto|full|incremental|differential)."""
    sources = tuple(sources)
    if policy == "full":
        return TypeDecision("full", "the schedule always takes full backups")
    if policy == "incremental":
        return TypeDecision("incremental", "the schedule always takes incremental backups")
    if policy not in ("auto", "differential"):
        raise ValueError(f"unknown backup type policy {policy!r}")
    otherwise = "incremental" if policy == "auto" else "differential"
    newest_full: dict[str, datetime] = {}
    for snap in catalog:
        if snap.type == "full" and snap.source in sources:
            when = snap.datetime
            if snap.source not in newest_full or when > newest_full[snap.source]:
                newest_full[snap.source] = when
    limit = timedelta(days=full_every_days)
    per_source: dict[str, str] = {}
    due: list[str] = []
    for source in sources:
        newest = newest_full.get(source)
        if newest is None:
            per_source[source] = "no full backup yet"
            due.append(source)
            continue
        age = now - newest
        days = age.total_seconds() / 86400
        if age >= limit:
            per_source[source] = f"last full {days:.1f} days ago (full_every_days = {full_every_days})"
            due.append(source)
        else:
            per_source[source] = f"last full {days:.1f} days ago"
    if due:
        return TypeDecision("full", "full due: " + "; ".join(f"{src} ({per_source[src]})" for src in due), per_source)
    return TypeDecision(otherwise, f"every source has a full backup younger than {full_every_days} days", per_source)
