"""The tripwire: a backup that looks like an attack on the source, decided from figures alone.

Ransomware that encrypts a platform's files leaves three marks on the next backup, each
seen in a snapshot's summary against the snapshot before it of the same source:

- ``changed``: an unusual share of the previous snapshot's files changed or disappeared
  (encrypted in place, or renamed to ``*.locked``) — more than ``[protection]
  changed_share`` of them, and at least ``min_files`` files (a source of ten config files
  that all change on a deploy is not an attack) — with new content: at least half of what
  the run read was new to the repository (a restore of older files, a ``chmod -R`` or a
  ``touch`` changes every file and adds almost nothing);
- ``incompressible``: the run's new data does not compress (added/stored under
  ``INCOMPRESSIBLE``: what encrypted bytes look like) while the source's new data did
  compress before (the newest earlier snapshot that added as much: at least ``COMPRESSIBLE``)
  — a source of photos or archives, incompressible every day, never trips it;
- ``shrink``: the source lost more than ``[objectives] suspicious_shrink`` of its files,
  and at least ``min_files`` of them (core/health/shrink.py; a wipe looks like this; a
  smaller shrink stays the warning that module raises).

A tripped backup keeps its snapshot (it is what the source holds) but pins the snapshot
before it against prune until a person acknowledges it (core/repository/pins.py,
``axisor-backup acknowledge``), and `status` is critical meanwhile (core/jobs/status.py).
Pure: no I/O, so every rule is tested on its own numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.health.shrink import FileCount, counts_files, shrink_of

# added/stored: zstd leaves random bytes at ~0.999 (a little framing added); text and JSON
# come out at 3-10x. Under INCOMPRESSIBLE is "does not compress"; COMPRESSIBLE is the
# baseline the source must have shown for a change to incompressible to mean anything.
INCOMPRESSIBLE = 1.1
COMPRESSIBLE = 1.5


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``[protection]`` (core/config/model.py ProtectionConfig) and ``[objectives]
    suspicious_shrink``, as the rules read them."""

    changed_share: float = 0.5
    min_files: int = 50
    incompressible_bytes: int = 8 * 1024 * 1024
    shrink_share: float = 0.5

    @classmethod
    def of(cls, config: Any) -> Thresholds:
        p = config.protection
        return cls(
            p.changed_share, p.min_files, p.incompressible_mib * 1024 * 1024, config.objectives.suspicious_shrink
        )


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str  # "changed" | "incompressible" | "shrink"
    message: str
    figures: dict

    def to_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message, "figures": dict(self.figures)}

    @classmethod
    def from_dict(cls, d: dict) -> Finding:
        return cls(str(d.get("rule", "")), str(d.get("message", "")), dict(d.get("figures") or {}))


@dataclass(frozen=True, slots=True)
class RecordedTrip:
    """A tripped snapshot as its backup job's result records it (core/backup/job.py): what
    `status` and the notification read back."""

    source: str
    snapshot: str
    findings: tuple[Finding, ...]
    pinned: str | None

    @property
    def rules(self) -> list[str]:
        return [f.rule for f in self.findings]


def recorded_trips(result: dict | None) -> list[RecordedTrip]:
    """Every snapshot of a backup job's result that carries a ``tripwire`` record."""
    out = []
    for snap in (result or {}).get("snapshots") or []:
        trip = snap.get("tripwire") if isinstance(snap, dict) else None
        if isinstance(trip, dict):
            findings = tuple(Finding.from_dict(f) for f in trip.get("findings") or [] if isinstance(f, dict))
            pinned = trip.get("pinned")
            out.append(
                RecordedTrip(str(snap.get("source")), str(snap.get("id")), findings, str(pinned) if pinned else None)
            )
    return out


def _ratio(summary: Any) -> float | None:
    """Plaintext added per byte stored, or None when nothing was stored."""
    if not summary.data_added_packed:
        return None
    return summary.data_added / summary.data_added_packed


def inspect(snapshot: Any, earlier: Sequence[Any], limits: Thresholds) -> list[Finding]:
    """What looks like an attack in ``snapshot`` (a ``Snapshot`` just written), against
    ``earlier``: the same source's snapshots before it, oldest first. Empty: nothing did.
    A first snapshot, a database dump and a restore's safety snapshot never trip."""
    if not counts_files(snapshot.source, snapshot.tags) or not earlier:
        return []
    m, prev = snapshot.summary, earlier[-1]
    found: list[Finding] = []
    touched = m.files_changed + m.files_removed
    before = prev.summary.total_files
    # New content, not just new stat data: a restore of older files (their blobs are stored
    # already), a chmod -R or a touch changes every file and adds almost nothing.
    rewritten = m.data_added * 2 >= m.bytes_read
    if before and touched >= limits.min_files and touched > limits.changed_share * before and rewritten:
        found.append(
            Finding(
                "changed",
                f"{touched} of the previous snapshot's {before} files changed or disappeared "
                f"({touched / before:.0%}, more than the {limits.changed_share:.0%} of [protection] changed_share)",
                {"changed": m.files_changed, "removed": m.files_removed, "previous_files": before},
            )
        )
    ratio = _ratio(m)
    if ratio is not None and m.data_added >= limits.incompressible_bytes and ratio < INCOMPRESSIBLE:
        baseline = next(
            (
                (s, r)
                for s in reversed(earlier)
                if s.summary.data_added >= limits.incompressible_bytes and (r := _ratio(s.summary)) is not None
            ),
            None,
        )
        if baseline is not None and baseline[1] >= COMPRESSIBLE:
            found.append(
                Finding(
                    "incompressible",
                    f"the {m.data_added} new bytes do not compress ({ratio:.2f}x) where this source's new data "
                    f"compressed {baseline[1]:.1f}x in snapshot {baseline[0].id[:8]}: encrypted files look like this",
                    {"bytes_added": m.data_added, "ratio": round(ratio, 3), "baseline_ratio": round(baseline[1], 3)},
                )
            )
    shrank = shrink_of(FileCount.of(snapshot), FileCount.of(prev), limits.shrink_share)
    if shrank is not None and shrank.previous_files - shrank.files >= limits.min_files:
        found.append(Finding("shrink", shrank.message(), shrank.to_dict()))
    return found


__all__ = ["COMPRESSIBLE", "INCOMPRESSIBLE", "Finding", "RecordedTrip", "Thresholds", "inspect", "recorded_trips"]
