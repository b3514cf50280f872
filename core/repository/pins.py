"""Pins: snapshots that prune must keep until a person says otherwise (docs/FORMAT.md "Pins").

The tripwire (core/health/tripwire.py) pins the snapshot taken before a backup that looked
like an attack: the last state of the source known to be good must outlive any retention
rule while someone looks. A pin lives in the repository, beside what it protects, so a
prune from any host honours it; ``axisor-backup acknowledge`` deletes it.

Key ``pins/<snapshot id>`` (64 hex), sealed with AD ``axisor/pin/v1`` || the snapshot id
(a pin renamed onto another snapshot does not authenticate). Plaintext: compact JSON with
sorted keys, ``version`` 1.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from core.errors import DamagedObject
from core.repository.sealed_by_id import SNAPSHOT_ID, open_sealed, put_once
from core.storage.backend import ObjectNotFound

PINS = "pins"
AD_PIN = b"axisor/pin/v1"
# A pin is a few hundred bytes of findings; a planted object must not be read whole.
MAX_PIN = 256 * 1024


@dataclass(frozen=True, slots=True)
class Pin:
    snapshot: str  # the id of the snapshot kept
    source: str
    pinned_at: str  # ISO 8601 with offset
    host: str
    reason: str  # one line, shown by prune --dry-run, status and acknowledge
    by: str = ""  # the snapshot whose backup tripped the wire
    findings: tuple[dict, ...] = field(default_factory=tuple)
    version: int = 1

    def encode(self) -> bytes:
        d = asdict(self)
        d["findings"] = list(self.findings)
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Pin:
        d = json.loads(raw)
        if not isinstance(d, dict) or d.get("version") != 1:
            raise ValueError(f"pin version {d.get('version') if isinstance(d, dict) else '?'!r}, this program reads 1")
        return cls(
            snapshot=str(d["snapshot"]),
            source=str(d["source"]),
            pinned_at=str(d["pinned_at"]),
            host=str(d.get("host", "")),
            reason=str(d.get("reason", "")),
            by=str(d.get("by", "")),
            findings=tuple(f for f in d.get("findings") or () if isinstance(f, dict)),
        )


def pin_key(snapshot_id: str) -> str:
    return f"{PINS}/{snapshot_id}"


async def store_pin(repo, pin: Pin) -> bool:
    """Write ``pins/<snapshot id>`` once: False when the snapshot is pinned already (a
    second trip before anyone acknowledged the first keeps the first pin's story)."""
    return await put_once(repo, PINS, AD_PIN, pin.snapshot, pin.encode())


async def load_pins(repo) -> tuple[list[Pin], list[DamagedObject]]:
    """Every pin of the location, and the ones that would not open (reported, and counted
    as pins by prune: a damaged pin still names the snapshot it keeps)."""
    pins: list[Pin] = []
    damaged: list[DamagedObject] = []
    async for info in repo.backend.list(f"{PINS}/"):
        sid = info.key.rsplit("/", 1)[-1]
        if not SNAPSHOT_ID.fullmatch(sid):
            continue  # a temporary file of an interrupted write on some backends
        try:
            pin = Pin.decode(await open_sealed(repo, PINS, AD_PIN, sid, MAX_PIN, "pin"))
        except ObjectNotFound:
            continue  # acknowledged meanwhile
        except DamagedObject as exc:
            damaged.append(exc)
            continue
        except (ValueError, TypeError, KeyError) as exc:
            damaged.append(DamagedObject(info.key, f"malformed pin: {exc}"))
            continue
        if pin.snapshot != sid:
            damaged.append(DamagedObject(info.key, f"pin names {pin.snapshot[:8]}, not {sid[:8]}"))
            continue
        pins.append(pin)
    return pins, damaged


async def delete_pin(repo, snapshot_id: str) -> bool:
    """True when a pin was there and is gone."""
    try:
        await repo.backend.delete(pin_key(snapshot_id))
    except ObjectNotFound:
        return False
    return True


def pinned_ids(pins: list[Pin], damaged: list[DamagedObject]) -> dict[str, str]:
    """Snapshot id -> why prune keeps it (a damaged pin keeps its snapshot too: when in
    doubt, keep)."""
    out = {p.snapshot: f"pinned by the tripwire on {p.pinned_at[:16]} ({p.reason})" for p in pins}
    for d in damaged:
        sid = d.key.rsplit("/", 1)[-1]
        out.setdefault(sid, "pinned (the pin would not open: kept while in doubt)")
    return out


__all__ = ["AD_PIN", "MAX_PIN", "PINS", "Pin", "delete_pin", "load_pins", "pin_key", "pinned_ids", "store_pin"]
