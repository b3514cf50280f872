"""The location operations BackupService offers: copy, catch-up, catalog, status, and
choosing where a restore reads from."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from core.errors import AxisorError, NoLocationAvailable, SnapshotNotFound, UsageError
from core.locations.catalog import Catalog, build_catalog
from core.locations.copy import CopyProgress, CopyResult, copy_snapshots, ensure_replica, missing_snapshots
from core.locations.monitor import LocationStatus, MonitorState, probe_all, usage_of
from core.locations.probe import DEFAULT_BUDGET, ReadProbe, failed_probe, probe_read
from core.locations.sites import PRIMARY_NAME, LocationMismatch, Sites, is_unavailable

__all__ = ["LocationOps", "RestoreChoice"]

PROBE_READ_TIMEOUT = 300.0  # seconds for one location's read probe


@dataclass(frozen=True, slots=True)
class RestoreChoice:
    """Where a restore reads from, and the locations skipped on the way (with why)."""

    location: str
    skipped: tuple[tuple[str, str], ...] = ()


class LocationOps:
    def __init__(self, sites: Sites, state: MonitorState) -> None:
        self.sites = sites
        self.state = state

    # -- copy ---------------------------------------------------------------------------

    async def copy(
        self,
        to: str,
        refs: list[str] | None = None,
        *,
        source: str = PRIMARY_NAME,
        on_progress: Callable[[CopyProgress], None] | None = None,
    ) -> CopyResult:
        """Copy the snapshots ``refs`` names (default: every one ``to`` lacks) from ``source``."""
        self.sites.check(to)
        self.sites.check(source)
        if to == source:
            raise UsageError(f"cannot copy location {to!r} onto itself: name another with --to or --from")
        src = await self.sites.repository(source)
        target = self.sites.backend(to)
        try:
            created, warnings = await ensure_replica(src.backend, target, to)
            if created:
                self.sites.forget(to)
            dst = await self.sites.repository(to)
            if dst.config.id != src.config.id:
                raise LocationMismatch(
                    f"location {to!r} ({target.location}) holds repository {dst.config.id[:8]}, not "
                    f"{src.config.id[:8]} as {source!r} does; copies need replicas of one repository"
                )
            if refs:
                snaps = await src.resolve_refs(refs)
            else:
                snaps = [await src.load_snapshot(sid) for sid in await missing_snapshots(src, target)]
            # Named snapshots copy just those; a catch-up also brings the WAL archive along.
            result = await copy_snapshots(
                src, dst, snaps, source_name=source, target_name=to, wal=[] if refs else None, on_progress=on_progress
            )
        except (AxisorError, OSError) as exc:
            await asyncio.to_thread(self.state.record_error, to, str(exc))
            raise
        if created or warnings:
            result = replace(result, created=created, warnings=tuple(warnings))
        await asyncio.to_thread(self.state.record_write, to)
        await self._sample(to)
        return result

    async def catch_up(
        self,
        targets: list[str] | None = None,
        *,
        new: tuple[str, ...] = (),
        source: str = PRIMARY_NAME,
        on_progress: Callable[[str, CopyProgress], None] | None = None,
    ) -> list[CopyResult]:
        """Copy to each target everything it lacks. A target that fails does not stop the
        others and raises nothing: its result names the error and what is still pending
        (at least ``new``, the snapshots a backup just made); the next run catches up."""
        results = []
        for name in targets if targets is not None else [n for n in self.sites.names if n != source]:
            progress = (lambda p, name=name: on_progress(name, p)) if on_progress else None
            try:
                results.append(await self.copy(name, source=source, on_progress=progress))
            except (AxisorError, OSError) as exc:
                pending = await self._pending(source, name, new)
                results.append(CopyResult(source, name, error=str(exc) or type(exc).__name__, pending=pending))
        return results

    async def _pending(self, source: str, target: str, new: tuple[str, ...]) -> tuple[str, ...]:
        """What the target still lacks, as far as it can be told while it is failing."""
        try:
            src = await self.sites.repository(source)
            return tuple(await missing_snapshots(src, self.sites.backend(target)))
        except (AxisorError, OSError):
            return tuple(new)

    async def _sample(self, name: str) -> None:
        if not await asyncio.to_thread(self.state.sample_due, name):
            return
        try:
            usage = await usage_of(self.sites.backend(name))
        except (AxisorError, OSError):
            return  # a sample is an observation; missing one costs only growth history
        await asyncio.to_thread(self.state.add_sample, name, usage)

    async def after_write(self, name: str) -> None:
        """A backup committed snapshots at ``name``: remember when, and how big it is now."""
        await asyncio.to_thread(self.state.record_write, name)
        await self._sample(name)

    # -- catalog and monitoring -------------------------------------------------------

    async def catalog(self) -> Catalog:
        return await build_catalog(self.sites)

    async def status(self) -> list[LocationStatus]:
        return await probe_all(self.sites, self.state)

    async def probe_reads(
        self, names: list[str] | None = None, budget: int = DEFAULT_BUDGET, timeout: float = PROBE_READ_TIMEOUT
    ) -> list[ReadProbe]:
        """Each location's read speed (core/locations/probe.py), one after another so they
        do not share this host's bandwidth; one that fails or hangs is named, not timed."""
        out = []
        for name in [self.sites.check(n) for n in names] if names else self.sites.names:
            try:
                probe = await asyncio.wait_for(probe_read(self.sites.backend(name), name, budget), timeout)
                out.append(probe)
                if probe.bytes_per_second is not None:
                    await asyncio.to_thread(self.state.record_probe, name, probe.to_dict())
            except TimeoutError:
                out.append(failed_probe(name, TimeoutError(f"no answer within {timeout:.0f} s")))
            except (AxisorError, OSError) as exc:
                out.append(failed_probe(name, exc))
        return out

    # -- restore ------------------------------------------------------------------------

    async def choose(self, refs: list[str], source: str | None = None, *, prefer: str | None = None) -> RestoreChoice:
        """The first location, primary first, that can be opened and holds every snapshot
        ``refs`` names. With ``prefer`` only that one is tried."""
        names = [self.sites.check(prefer)] if prefer else self.sites.names
        skipped: list[tuple[str, str]] = []
        first: BaseException | None = None
        errors: list[BaseException] = []
        for name in names:
            try:
                repo = await self.sites.repository(name)
                for ref in refs:
                    await repo.resolve_refs([ref], source)
                return RestoreChoice(name, tuple(skipped))
            except (AxisorError, OSError) as exc:
                if not (is_unavailable(exc) or isinstance(exc, SnapshotNotFound)):
                    raise
                first = first or exc
                errors.append(exc)
                skipped.append((name, str(exc)))
        assert first is not None
        if len(names) == 1 or all(isinstance(e, SnapshotNotFound) for e in errors):
            raise first
        raise NoLocationAvailable(
            "no location can serve this restore: " + "; ".join(f"{n}: {why}" for n, why in skipped)
        )
