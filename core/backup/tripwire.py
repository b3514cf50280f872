"""After a file snapshot is written: the tripwire's inspection (core/health/tripwire.py),
and the pin that keeps the snapshot before it when it trips (core/repository/pins.py)."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

from core.errors import AxisorError
from core.health.tripwire import Finding, Thresholds, inspect
from core.repository.pins import Pin, store_pin
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Trip:
    findings: tuple[Finding, ...]
    pinned: str  # the snapshot kept for a person to look at ("" when there was none to pin)
    warning: str = ""  # the pin could not be written: said, never hidden

    def to_dict(self) -> dict:
        return {"findings": [f.to_dict() for f in self.findings], "pinned": self.pinned or None}


async def check(repo: Repository, snap: Snapshot, earlier: list[Snapshot], limits: Thresholds) -> Trip | None:
    """None when nothing looks wrong. ``earlier``: the source's snapshots before ``snap``,
    oldest first. A pin that cannot be written does not fail the backup (its snapshot is
    stored): the trip still turns `status` critical, and the warning says prune is unguarded."""
    findings = tuple(inspect(snap, earlier, limits))
    if not findings:
        return None
    previous = earlier[-1]
    reason = "; ".join(f.rule for f in findings) + f" in snapshot {snap.id[:8]}"
    pin = Pin(
        snapshot=previous.id,
        source=snap.source,
        pinned_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=socket.gethostname(),
        reason=reason,
        by=snap.id,
        findings=tuple(f.to_dict() for f in findings),
    )
    try:
        await store_pin(repo, pin)
    except (AxisorError, OSError) as exc:
        log.warning("tripwire: cannot pin %s: %s", previous.id[:8], exc)
        return Trip(findings, "", f"tripwire: the snapshot before ({previous.short_id}) could not be pinned: {exc}")
    return Trip(findings, previous.id)


__all__ = ["Trip", "check"]
