"""Storage monitoring: is each location reachable, how fast, how full, how fast it grows.

Growth needs history, so usage samples are kept in ``locations.json`` in the state
directory (next to the job store): a sample whenever ``locations`` runs and after every
backup or copy that wrote to a location, at most one per ``SAMPLE_EVERY``, the last
``KEEP``. The same file remembers each location's last successful write and last
copy failure, and its newest read probes (``locations --probe`` and the scheduled
``probe``: core/locations/probe.py), which the RTO forecast reads. It is a cache of observations, never the truth about what a location
holds: losing it only loses the growth history.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from core.errors import AxisorError
from core.locations.sites import Sites
from core.repository import repo_config
from core.repository.format import CONFIG, DATA, INDEX, KEYS, LOCKS, SNAPSHOTS
from core.storage.backend import Backend, StorageUsage, backend_usage
from core.storage.factory import as_local
from core.storage.backend import innermost

__all__ = ["LocationStatus", "MonitorState", "probe_all", "state_file"]

STATE_NAME = "locations.json"
SAMPLE_EVERY = timedelta(minutes=10)
KEEP = timedelta(days=9)  # a week, plus margin so a baseline at least a week old survives
WEEK = timedelta(days=7)
PROBE_TIMEOUT = 60.0  # seconds for one location's whole probe; the rest are not held up
PROBES_KEPT = 10  # read probes kept per location
_FOLDERS = (f"{DATA}/", f"{INDEX}/", f"{SNAPSHOTS}/", f"{KEYS}/", f"{LOCKS}/", "wal/")


@dataclass(frozen=True, slots=True)
class LocationStatus:
    name: str
    provider: str
    where: str
    primary: bool
    reachable: bool
    error: str | None
    latency_ms: float | None  # one round trip (the repository config's existence check, connection warm)
    initialized: bool  # a repository is there
    repository_id: str | None
    bytes_used: int | None
    objects: int | None
    free_bytes: int | None  # None where the backend cannot tell
    growth_bytes: int | None  # bytes_used now minus the sample at the start of the window
    growth_since: str | None  # that sample's time (ISO 8601): a week ago, or the oldest kept
    last_write: str | None  # last successful write by this program (backup or copy)
    last_error: str | None  # last failed copy to it, cleared by the next successful one
    last_error_at: str | None
    # What the location refuses by its own policy: "append-only" (an `axisor-backup serve
    # --append-only` behind the ssh provider, as it said), "object-lock MODE Nd" (S3 Object
    # Lock, as configured); None where nothing is refused.
    immutability: str | None = None


def state_file(state_dir: Path) -> Path:
    """The monitor's samples in the host's state folder (passed in: core/statedir.py)."""
    return state_dir / STATE_NAME


def _now() -> datetime:
    return datetime.now(timezone.utc)


class MonitorState:
    """Read-modify-write of the samples file under an advisory lock, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _locked(self) -> Iterator[dict]:
        # A cache: a state folder that cannot be written (full, read-only) costs history,
        # never the operation that records into it (a backup whose snapshots are committed).
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = open(self.path.with_suffix(".lock"), "a")
        except OSError:
            lock = None
        if lock is None:
            yield self._read()
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                try:
                    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                    os.replace(tmp, self.path)
                except OSError:
                    with contextlib.suppress(OSError):
                        tmp.unlink()

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {"v": 1, "locations": {}}
        if not isinstance(data, dict) or not isinstance(data.get("locations"), dict):
            return {"v": 1, "locations": {}}  # a damaged cache only costs history
        return data

    def read(self) -> dict:
        return self._read()

    @staticmethod
    def _loc(data: dict, name: str) -> dict:
        loc = data["locations"].setdefault(name, {})
        loc.setdefault("samples", [])
        return loc

    def sample_due(self, name: str, at: datetime | None = None) -> bool:
        """Whether ``add_sample`` would keep a sample now: measuring usage lists the whole
        location, which a backup need not pay for every run."""
        samples = self._read()["locations"].get(name, {}).get("samples") or []
        try:
            last = datetime.fromisoformat(samples[-1][0])
        except (IndexError, TypeError, ValueError):
            return True
        return (at or _now()) - last >= SAMPLE_EVERY

    def add_sample(self, name: str, usage: StorageUsage, at: datetime | None = None) -> None:
        if usage.bytes_used is None:
            return
        at = at or _now()
        with self._locked() as data:
            loc = self._loc(data, name)
            samples = [s for s in loc["samples"] if datetime.fromisoformat(s[0]) > at - KEEP]
            # One sample per slot, its first: the series stays a fixed history to measure growth against.
            if not samples or at - datetime.fromisoformat(samples[-1][0]) >= SAMPLE_EVERY:
                samples.append([at.isoformat(timespec="seconds"), usage.bytes_used, usage.objects])
            loc["samples"] = samples

    def record_write(self, name: str, at: datetime | None = None) -> None:
        with self._locked() as data:
            loc = self._loc(data, name)
            loc["last_write"] = (at or _now()).isoformat(timespec="seconds")
            loc.pop("last_error", None)
            loc.pop("last_error_at", None)

    def record_probe(self, name: str, probe: dict) -> None:
        """Keep a read probe's figures (core/locations/probe.py), the newest ``PROBES_KEPT``:
        the RTO forecast reads the newest of each location."""
        with self._locked() as data:
            loc = self._loc(data, name)
            loc["probes"] = [p for p in loc.get("probes") or [] if isinstance(p, dict)][-(PROBES_KEPT - 1) :] + [probe]

    def probes(self) -> list[dict]:
        """Every kept probe of every location, newest first (as stored: the reader checks them)."""
        found = [
            p
            for loc in self._read()["locations"].values()
            if isinstance(loc, dict)
            for p in loc.get("probes") or []
            if isinstance(p, dict)
        ]
        return sorted(found, key=lambda p: str(p.get("at") or ""), reverse=True)

    def record_error(self, name: str, error: str) -> None:
        with self._locked() as data:
            loc = self._loc(data, name)
            loc["last_error"] = error
            loc["last_error_at"] = _now().isoformat(timespec="seconds")

    @staticmethod
    def growth(loc: dict, bytes_used: int, now: datetime | None = None) -> tuple[int | None, str | None]:
        """Growth over the last week: against the newest sample at least a week old, else
        the oldest sample kept (so a location watched for two days shows two days)."""
        now = now or _now()
        samples = [(datetime.fromisoformat(s[0]), s[1]) for s in loc.get("samples", [])]
        samples = [s for s in samples if now - s[0] >= timedelta(0)]
        if not samples:
            return None, None
        old = [s for s in samples if now - s[0] >= WEEK]
        base = old[-1] if old else samples[0]
        if base[0] >= now - timedelta(seconds=1):
            return None, None  # only the sample just taken: no history yet
        return bytes_used - base[1], base[0].isoformat(timespec="seconds")


async def usage_of(backend: Backend) -> StorageUsage:
    """The backend's own figures when it has them, else a listing of the repository folders."""
    usage = await backend_usage(backend)
    if usage is not None and usage.bytes_used is not None:
        return usage
    used = count = 0
    for prefix in (*_FOLDERS, CONFIG):
        async for info in backend.list(prefix):
            used += info.size
            count += 1
    return StorageUsage(bytes_used=used, objects=count, free_bytes=usage.free_bytes if usage else None)


async def _probe(sites: Sites, name: str, state: MonitorState) -> LocationStatus:
    info = sites.info(name)
    saved = (await asyncio.to_thread(state.read))["locations"].get(name, {})
    base = dict(
        name=name,
        provider=info.provider,
        where=info.where,
        primary=info.primary,
        last_write=saved.get("last_write"),
        last_error=saved.get("last_error"),
        last_error_at=saved.get("last_error_at"),
    )

    def down(error: str, latency: float | None = None) -> LocationStatus:
        return LocationStatus(
            **base,
            reachable=False,
            error=error,
            latency_ms=latency,
            initialized=False,
            repository_id=None,
            bytes_used=None,
            objects=None,
            free_bytes=None,
            growth_bytes=None,
            growth_since=None,
        )

    try:
        backend = sites.backend(name)
        local = as_local(backend)
        if local is not None and not local.root.is_dir():
            # A local location is a mount or a folder: its absence is an outage, not an empty bucket.
            return down(f"folder {local.root} does not exist (disk not mounted, or the location was lost)")
        # The first request pays for imports, connecting and TLS; the second is the round trip.
        await backend.exists()
        started = time.perf_counter()
        initialized = await backend.exists()
        latency = round((time.perf_counter() - started) * 1000, 3)
        repo_id = None
        if initialized:
            repo_id = str((await repo_config.read_public(backend)).get("id"))
        usage = await usage_of(backend)
    except (AxisorError, OSError, TimeoutError) as exc:
        return down(str(exc) or type(exc).__name__)
    inner = innermost(backend)
    immutability = "append-only" if getattr(inner, "append_only", None) else None
    lock_state = getattr(inner, "lock_state", None)
    if immutability is None and lock_state is not None:
        immutability = await lock_state()  # "object-lock governance 30d" (core/storage/s3.py)
    await asyncio.to_thread(state.add_sample, name, usage)
    growth, since = (None, None)
    if usage.bytes_used is not None:
        saved = (await asyncio.to_thread(state.read))["locations"].get(name, {})
        growth, since = MonitorState.growth(saved, usage.bytes_used)
    return LocationStatus(
        **base,
        reachable=True,
        error=None if initialized else "no repository here yet (the next copy creates it)",
        latency_ms=latency,
        initialized=initialized,
        repository_id=repo_id,
        bytes_used=usage.bytes_used,
        objects=usage.objects,
        free_bytes=usage.free_bytes,
        growth_bytes=growth,
        growth_since=since,
        immutability=immutability,
    )


async def probe_all(sites: Sites, state: MonitorState, timeout: float = PROBE_TIMEOUT) -> list[LocationStatus]:
    """Probe every location at once; one that hangs is reported down after ``timeout``."""

    async def bounded(name: str) -> LocationStatus:
        try:
            return await asyncio.wait_for(_probe(sites, name, state), timeout)
        except TimeoutError:
            info = sites.info(name)
            saved = state.read()["locations"].get(name, {})
            return LocationStatus(
                name=name,
                provider=info.provider,
                where=info.where,
                primary=info.primary,
                reachable=False,
                error=f"no answer within {timeout:.0f} s",
                latency_ms=None,
                initialized=False,
                repository_id=None,
                bytes_used=None,
                objects=None,
                free_bytes=None,
                growth_bytes=None,
                growth_since=None,
                last_write=saved.get("last_write"),
                last_error=saved.get("last_error"),
                last_error_at=saved.get("last_error_at"),
            )

    return list(await asyncio.gather(*(bounded(n) for n in sites.names)))
