"""A location's read speed, measured: latency and bandwidth for the RTO forecast.

A recovery from a location is bounded by how fast that location gives back what it holds,
and that changes (a slower link, a throttled bucket, a disk failing) without any drill
noticing until the next one. A probe measures it in seconds and in a bounded number of
bytes: the round trip of a small request (the median of ``LATENCY_ROUNDS`` stats of the
repository's config object, after one that pays for connecting), what opening the
repository costs there (the config read and the keys, index and snapshots folders listed:
``open_seconds``), and the read throughput of
stored packs fetched ``PARALLEL`` at a time in ranged reads of at most ``PIECE`` bytes
(a restore's ranged reads), until ``budget`` bytes are read. The packs come from a few randomly chosen ``data/<xx>/``
folders, so a probe never lists the whole repository. No key is needed: the bytes are
read, never opened. A pack deleted by a prune while it is read is skipped.

The forecast (core/drills/forecast.py) caps a phase's throughput at the newest probe's, and
lets a location no drill has run from borrow other locations' measured processing speed,
capped by its own probe.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import AxisorError
from core.repository.format import CONFIG, DATA, INDEX, KEYS, SNAPSHOTS
from core.storage.backend import Backend, ObjectNotFound

DEFAULT_BUDGET = 64 * 1024 * 1024  # bytes read per location: seconds on a LAN, not minutes
MAX_BUDGET = 4 * 1024 * 1024 * 1024
LATENCY_ROUNDS = 5
PARALLEL = 4  # reads in flight, as a restore's downloads
FOLDER_TRIES = 16  # data/<xx>/ folders listed at most, looking for packs
PIECE = 8 * 1024 * 1024  # bytes per ranged read: memory stays PARALLEL * PIECE whatever is stored
CONFIG_READ = 64 * 1024  # the config object is small; a planted large one is not read whole


@dataclass(frozen=True, slots=True)
class ReadProbe:
    """One location's measured read speed. ``bytes_per_second`` is None when nothing
    stored could be read (``note`` says why); ``error`` when the location did not answer."""

    location: str
    at: str  # ISO 8601, UTC
    latency_ms: float | None
    # What opening the repository there costs before any data flows (the config read, the
    # keys, index and snapshots folders listed): the part of a recovery's fixed time that
    # depends on the location.
    open_seconds: float | None = None
    bytes_read: int = 0
    objects_read: int = 0
    seconds: float = 0.0
    bytes_per_second: float | None = None
    note: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        """One line: ``12.0 ms round trip, 64.0 MB in 0.41 s = 163.9 MB/s (5 packs)``."""
        if self.error:
            return f"did not answer: {self.error}"
        head = f"{self.latency_ms or 0:.1f} ms round trip"
        if self.bytes_per_second is None:
            return f"{head}; {self.note}"
        return (
            f"{head}, {self.bytes_read / 1e6:.1f} MB in {self.seconds:.2f} s = "
            f"{self.bytes_per_second / 1e6:.1f} MB/s ({self.objects_read} packs)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "at": self.at,
            "latency_ms": self.latency_ms,
            "open_seconds": self.open_seconds,
            "bytes_read": self.bytes_read,
            "objects_read": self.objects_read,
            "seconds": self.seconds,
            "bytes_per_second": self.bytes_per_second,
            "note": self.note,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadProbe | None:
        """A probe from a job record; None for one of another shape (never trusted blindly:
        the forecast divides by it)."""
        try:
            rate = data.get("bytes_per_second")
            latency = data.get("latency_ms")
            opening = data.get("open_seconds")
            probe = cls(
                location=str(data["location"]),
                at=str(data["at"]),
                latency_ms=None if latency is None else float(latency),
                open_seconds=None if opening is None else float(opening),
                bytes_read=int(data.get("bytes_read") or 0),
                objects_read=int(data.get("objects_read") or 0),
                seconds=float(data.get("seconds") or 0.0),
                bytes_per_second=None if rate is None else float(rate),
                note=str(data.get("note") or ""),
                error=None if data.get("error") is None else str(data["error"]),
            )
            datetime.fromisoformat(probe.at)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        if probe.bytes_per_second is not None and not probe.bytes_per_second > 0:
            return None
        if probe.open_seconds is not None and not 0 <= probe.open_seconds < 86400:
            return None
        return probe


async def probe_read(backend: Backend, location: str, budget: int = DEFAULT_BUDGET) -> ReadProbe:
    """Measure ``backend``'s latency and read throughput (module doc). Storage errors are
    the caller's to report; a location with nothing stored yet has no throughput."""
    budget = max(1, min(budget, MAX_BUDGET))
    at = datetime.now(UTC).isoformat(timespec="seconds")
    config = await backend.stat(CONFIG)  # connecting, TLS, imports: not the round trip
    rounds = []
    for _ in range(LATENCY_ROUNDS):
        started = time.perf_counter()
        await backend.stat(CONFIG)
        rounds.append(time.perf_counter() - started)
    latency = round(statistics.median(rounds) * 1000, 3)
    started = time.perf_counter()
    await backend.get(CONFIG, 0, min(config.size, CONFIG_READ))
    for folder in (KEYS, INDEX, SNAPSHOTS):
        async for _info in backend.list(f"{folder}/"):
            pass
    opening = round(time.perf_counter() - started, 4)
    keys = await _sample_packs(backend, budget)
    if not keys:
        return ReadProbe(location, at, latency, opening, note="no packs stored yet: nothing to time reading")
    # Ranged reads of at most PIECE bytes: what storage lists is not trusted to be a pack of
    # a sane size (a planted many-GB file costs PIECE of memory per reader, and the budget).
    queue = [(key, offset, min(PIECE, size - offset)) for key, size in keys for offset in range(0, size, PIECE)]
    queue.reverse()  # popped from the end: each object's pieces in order
    read = 0
    touched: set[str] = set()

    async def reader() -> None:
        nonlocal read
        while queue and read < budget:
            key, offset, length = queue.pop()
            try:
                data = await backend.get(key, offset, length)
            except ObjectNotFound:
                continue  # pruned meanwhile
            read += len(data)
            touched.add(key)

    started = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(PARALLEL)))
    seconds = time.perf_counter() - started
    if not read or seconds <= 0:
        return ReadProbe(location, at, latency, opening, note="the sampled packs were gone before they were read")
    return ReadProbe(location, at, latency, opening, read, len(touched), round(seconds, 4), round(read / seconds, 1))


async def _sample_packs(backend: Backend, budget: int) -> list[tuple[str, int]]:
    """Pack keys worth about twice ``budget`` bytes from randomly chosen ``data/<xx>/``
    folders (so a reader that finds one gone still has enough), in random order."""
    folders = [f"{i:02x}" for i in range(256)]
    random.shuffle(folders)
    keys: list[tuple[str, int]] = []
    found = 0
    for folder in folders[:FOLDER_TRIES]:
        async for info in backend.list(f"{DATA}/{folder}/"):
            keys.append((info.key, info.size))
            found += info.size
        if found >= 2 * budget:
            break
    if not keys:  # a small repository: its few packs may sit in folders not tried
        async for info in backend.list(f"{DATA}/"):
            keys.append((info.key, info.size))
            found += info.size
            if found >= 2 * budget:
                break
    random.shuffle(keys)
    return keys


def probes_outcome(probes: list[ReadProbe]) -> tuple[dict[str, Any], str | None]:
    """A probe run's job result (``{"probes": [...]}``) and its error: the locations that
    did not answer, each with why (None: every one answered). The ``probe`` job kind and
    `locations --probe` record the same."""
    error = "; ".join(f"{p.location}: {p.error}" for p in probes if not p.ok) or None
    return {"probes": [p.to_dict() for p in probes]}, error


def failed_probe(location: str, exc: BaseException) -> ReadProbe:
    """A probe of a location that did not answer: named, never a speed."""
    reason = str(exc) or type(exc).__name__
    if not isinstance(exc, AxisorError | OSError | TimeoutError):
        reason = f"{type(exc).__name__}: {reason}"
    return ReadProbe(location, datetime.now(UTC).isoformat(timespec="seconds"), None, error=reason)


__all__ = ["DEFAULT_BUDGET", "MAX_BUDGET", "ReadProbe", "failed_probe", "probe_read", "probes_outcome"]
