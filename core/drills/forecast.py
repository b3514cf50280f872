"""RTO forecast: how long a drill scenario would take from a location right now.

Pure: measurements taken from past drill reports and the sizes of the snapshots the
scenario would restore in, one ``RtoForecast`` out. Gathering the inputs is the caller's
job (core/jobs/rto.py from the job history for `status`, the metrics file and the
dashboard; core/drills/run.py from the repository's reports for the forecast a drill
records before it runs).

The model: a drill's time is a fixed part (open the location, start the throwaway
cluster, smoke checks: the RTO minus its restore steps) plus, per phase it restores
(``database``: a whole logical snapshot, ``table``: one table out of one, ``files``: every
file source read back), the bytes to restore divided by the throughput that phase reached
at that location. Each past drill gives one throughput per phase and one fixed part; the
expected forecast uses their medians, the range their fastest and slowest. Few samples
cannot show the real spread, so the range is never narrower than ±30 % / sqrt(samples).
A phase no drill measured at the location takes its throughput from recent restores
there (``RestoreSample``: a files restore into an empty target, whole job time, so a
conservative figure); with neither there is no forecast: "no measurement yet", never a
number made up. Point-in-time drills (``--to-time``) replay WAL, which sizes do
not predict: they are neither measured nor forecast here.

Probes (``ProbeSample``, core/locations/probe.py: a location's measured read throughput and
round trip) bring the forecast up to date between drills and to locations no drill has run
from:

- at a location with drills, a probe newer than its newest drill caps each phase's
  throughput at the probed read speed: a link that slowed since the drill slows the forecast;
- at a location without drills, each phase takes the processing speed measured by the
  drills of the location whose drills ran fastest (the least bound by its storage), capped
  at this location's probed read speed, and their fixed part plus how much longer opening
  the repository takes here (both probes' measured opening, else ``OPEN_ROUND_TRIPS`` times
  the difference in round trip); the range is twice as wide (``TRANSFER_MARGIN``) and the
  basis says it is borrowed. Without a probe there it stays "no measurement yet".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# What each scenario restores (core/drills/run.py).
SCENARIO_PHASES: dict[str, tuple[str, ...]] = {
    "database-loss": ("database",),
    "platform-loss": ("database", "files"),
    "location-loss": ("database", "files"),
    "compromised-host": ("database", "files"),
    "corrupted-table": ("table",),
}
RECENT = 10  # newest drills whose figures count: older ones ran on other hardware and data
MIN_MARGIN = 0.30  # the relative half-width of the range from one sample (shrinks with sqrt(n))
TRANSFER_MARGIN = 2.0  # a forecast borrowed from another location's drills: a range this much wider
# Sequential requests a recovery makes before data flows (config, keys, index and snapshot
# listings, locks): a rough count, only used to move a borrowed fixed part between latencies.
OPEN_ROUND_TRIPS = 40


@dataclass(frozen=True, slots=True)
class PhaseTime:
    phase: str  # database | table | files
    bytes: int  # what was restored (the snapshots' logical size)
    seconds: float


@dataclass(frozen=True, slots=True)
class RestoreSample:
    """One restore job outside drills: ``bytes`` written into an empty target in ``seconds``."""

    job: str
    location: str
    phase: str  # files
    bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ProbeSample:
    """A location's measured read speed (core/locations/probe.py), from the job history."""

    location: str
    at: str  # ISO 8601
    bytes_per_second: float
    latency_seconds: float
    open_seconds: float | None = None  # opening the repository there (listings, config)


@dataclass(frozen=True, slots=True)
class DrillMeasurement:
    """What one passed drill measured."""

    drill: str
    scenario: str
    location: str
    started: str
    rto_seconds: float
    phases: tuple[PhaseTime, ...]

    @property
    def fixed_seconds(self) -> float:
        """The RTO outside its restore steps: opening, cluster start, checks."""
        return max(self.rto_seconds - sum(p.seconds for p in self.phases), 0.0)


@dataclass(frozen=True, slots=True)
class RtoForecast:
    scenario: str
    location: str
    expected_seconds: float | None  # None: no forecast (``missing`` says why)
    low_seconds: float | None
    high_seconds: float | None
    objective_seconds: float | None
    sizes: tuple[tuple[str, int], ...]  # (phase, bytes) the scenario would restore
    drills: tuple[str, ...]  # the drill ids whose figures were used, and "job <id>" of restores
    basis: str  # what it was based on, in words
    missing: str = ""  # why there is no forecast

    @property
    def measured(self) -> bool:
        return self.expected_seconds is not None

    @property
    def over_objective(self) -> bool:
        return (
            self.expected_seconds is not None
            and self.objective_seconds is not None
            and self.expected_seconds > self.objective_seconds
        )

    def error(self, measured_seconds: float) -> float | None:
        """(measured - expected) / expected: +0.2 means the drill took 20 % longer."""
        if not self.expected_seconds:
            return None
        return (measured_seconds - self.expected_seconds) / self.expected_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "location": self.location,
            "expected_seconds": self.expected_seconds,
            "low_seconds": self.low_seconds,
            "high_seconds": self.high_seconds,
            "objective_seconds": self.objective_seconds,
            "sizes": {phase: n for phase, n in self.sizes},
            "drills": list(self.drills),
            "basis": self.basis,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RtoForecast:
        def num(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        sizes = data.get("sizes") or {}
        return cls(
            scenario=str(data.get("scenario") or ""),
            location=str(data.get("location") or ""),
            expected_seconds=num("expected_seconds"),
            low_seconds=num("low_seconds"),
            high_seconds=num("high_seconds"),
            objective_seconds=num("objective_seconds"),
            sizes=tuple((str(k), int(v)) for k, v in dict(sizes).items()),
            drills=tuple(str(d) for d in data.get("drills") or ()),
            basis=str(data.get("basis") or ""),
            missing=str(data.get("missing") or ""),
        )


def phase_of_step(name: str) -> str | None:
    """The restore phase a drill step measures (core/drills/run.py's step names)."""
    if name == "restore database":
        return "database"
    if name.startswith("restore table "):
        return "table"
    if name == "restore files":
        return "files"
    return None


def _phase_of_restored(entry: Mapping[str, Any]) -> str:
    if entry.get("source") == "database":
        return "table" if entry.get("table") else "database"
    return "files"


def measurement_of(report: Mapping[str, Any]) -> DrillMeasurement | None:
    """A drill report (``DrillReport.to_dict()``) as a measurement; None when it measured
    nothing a forecast can use: it failed, was a point-in-time drill, or predates the
    restored sizes (``restored[].bytes``)."""
    if not report.get("passed") or report.get("to_time"):
        return None
    restored = [r for r in report.get("restored") or () if isinstance(r, Mapping)]
    if not restored or any(not isinstance(r.get("bytes"), int) for r in restored):
        return None
    sizes: dict[str, int] = {}
    for r in restored:
        sizes[_phase_of_restored(r)] = sizes.get(_phase_of_restored(r), 0) + int(r["bytes"])
    phases: list[PhaseTime] = []
    for step in report.get("steps") or ():
        phase = phase_of_step(str(step.get("name", "")))
        if phase is None:
            continue
        if step.get("status") != "ok" or phase not in sizes:
            return None
        phases.append(PhaseTime(phase, sizes[phase], float(step.get("seconds") or 0.0)))
    if not phases:
        return None
    return DrillMeasurement(
        str(report.get("id")),
        str(report.get("scenario")),
        str(report.get("location")),
        str(report.get("started")),
        float(report.get("rto_seconds") or 0.0),
        tuple(phases),
    )


def measurements(reports: Iterable[Mapping[str, Any]]) -> tuple[DrillMeasurement, ...]:
    """The usable measurements of the reports, newest first (ids sort by time)."""
    found = [m for m in (measurement_of(r) for r in reports) if m is not None]
    return tuple(sorted(found, key=lambda m: m.drill, reverse=True))


def scenario_sizes(
    scenario: str, database_bytes: int | None, file_bytes: Mapping[str, int | None], *, database: bool
) -> tuple[dict[str, int], list[str]]:
    """The bytes per phase the scenario would restore, and what it would have nothing of.
    ``database_bytes``: the newest logical database snapshot's size (None: there is none);
    ``file_bytes``: the newest snapshot's size per configured file source."""
    sizes: dict[str, int] = {}
    lacking: list[str] = []
    for phase in SCENARIO_PHASES.get(scenario, ()):
        if phase in ("database", "table"):
            if not database:
                continue
            if database_bytes is None:
                lacking.append("a logical database snapshot")
            else:
                sizes[phase] = database_bytes
        elif file_bytes:
            missing = [name for name, n in file_bytes.items() if n is None]
            lacking += [f"a snapshot of {name}" for name in missing]
            sizes[phase] = sum(n for n in file_bytes.values() if n is not None)
    return sizes, lacking


def _spread(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def forecast_rto(
    scenario: str,
    location: str,
    sizes: Mapping[str, int],
    history: Sequence[DrillMeasurement],
    objective_seconds: float | None = None,
    lacking: Sequence[str] = (),
    restores: Sequence[RestoreSample] = (),
    probes: Sequence[ProbeSample] = (),
) -> RtoForecast:
    """The forecast for ``scenario`` from ``location`` (see the module doc). ``history``:
    ``measurements(...)``, newest first; the location's own drills count, and another's
    only through this location's probe. ``restores``: newest first, used for a phase no
    drill at the location measured. ``probes``: newest first."""
    size_items = tuple(sorted(sizes.items()))

    def none(why: str, used: Sequence[str] = ()) -> RtoForecast:
        return RtoForecast(
            scenario, location, None, None, None, objective_seconds, size_items, tuple(used), "", f"no forecast: {why}"
        )

    if lacking:
        return none(f"nothing to restore yet ({', '.join(lacking)})")
    if not sizes:
        return none("this scenario restores nothing in the configuration")
    here = [m for m in history if m.location == location]
    probe = next((p for p in probes if p.location == location and p.bytes_per_second > 0), None)
    borrowed_from = ""
    extra_fixed = 0.0
    if not here:
        donor = _donor(history, location)
        if donor is None or probe is None:
            why = "no drill from it has been measured" + ("" if probe else ", and no probe of it")
            return none(f"no measurement yet ({why}: `axisor-backup locations --probe`, or a drill from {location})")
        borrowed_from = donor
        here = [m for m in history if m.location == donor]
        extra_fixed = _opening_difference(probe, next((p for p in probes if p.location == donor), None))
    elif probe is not None and not _newer(probe.at, max(m.started for m in here)):
        probe = None  # the drills measured the location since: they already hold its speed
    used: dict[str, None] = {}
    low = expected = high = 0.0
    counts: list[int] = []
    words: list[str] = []
    for phase, size in size_items:
        rates = [
            (p.bytes / p.seconds, m.drill)
            for m in here
            for p in m.phases
            if p.phase == phase and p.seconds > 0 and p.bytes > 0
        ][:RECENT]
        what = "drill"
        if not rates:
            rates = [
                (r.bytes / r.seconds, f"job {r.job}")
                for r in restores
                if r.location == location and r.phase == phase and r.seconds > 0 and r.bytes > 0
            ][:RECENT]
            what = "restore"
        if not rates:
            return none(f"no measurement yet of a {phase} restore from {location}")
        lo, mid, hi = _spread([r for r, _ in rates])
        capped = ""
        if probe is not None and probe.bytes_per_second < hi:
            lo, mid, hi = (min(x, probe.bytes_per_second) for x in (lo, mid, hi))
            capped = f", capped at the probed {_rate(probe.bytes_per_second)}"
        low, expected, high = low + size / hi, expected + size / mid, high + size / lo
        counts.append(len(rates))
        used.update((d, None) for _, d in rates)
        words.append(f"{phase} {_rate(mid)} ({len(rates)} {what}{'s' if len(rates) != 1 else ''}{capped})")
    same = [m for m in here if m.scenario == scenario][:RECENT]
    fixed_from = same or here[:RECENT]
    lo, mid, hi = (x + extra_fixed for x in _spread([m.fixed_seconds for m in fixed_from]))
    low, expected, high = low + lo, expected + mid, high + hi
    counts.append(len(fixed_from))
    used.update((m.drill, None) for m in fixed_from)
    words.append(
        f"fixed part {mid:.1f} s from {len(fixed_from)} "
        + (f"{scenario} drill{'s' if len(fixed_from) != 1 else ''}" if same else "drills of other scenarios")
    )
    margin = MIN_MARGIN / math.sqrt(min(counts)) * (TRANSFER_MARGIN if borrowed_from else 1.0)
    low, high = min(low, expected * (1 - margin)), max(high, expected * (1 + margin))
    newest = max(m.drill for m in fixed_from)  # ids sort by time
    if borrowed_from:
        assert probe is not None
        used[f"probe {location} {probe.at}"] = None
        basis = (
            f"no drill from {location} yet: {', '.join(words)} at {borrowed_from} (newest drill {newest}), "
            f"read speed from {location}'s probe of {probe.at} ({_rate(probe.bytes_per_second)}, "
            f"{probe.latency_seconds * 1000:.1f} ms round trip)"
        )
    else:
        basis = f"{', '.join(words)} at {location}; newest drill {newest}"
        if probe is not None:
            used[f"probe {location} {probe.at}"] = None
            basis += f"; probed {probe.at}"
    return RtoForecast(
        scenario,
        location,
        round(expected, 3),
        round(low, 3),
        round(high, 3),
        objective_seconds,
        size_items,
        tuple(sorted(used)),
        basis,
    )


def probe_samples(stored: Iterable[Mapping[str, Any]]) -> tuple[ProbeSample, ...]:
    """The kept probes (core/locations/monitor.py ``MonitorState.probes``, newest first) as
    samples; one that read nothing, failed, or is of another shape is left out."""
    from core.locations.probe import ReadProbe

    out: list[ProbeSample] = []
    for raw in stored:
        p = ReadProbe.from_dict(dict(raw)) if isinstance(raw, Mapping) else None
        if p is None or not p.ok or p.bytes_per_second is None:
            continue
        out.append(ProbeSample(p.location, p.at, p.bytes_per_second, (p.latency_ms or 0.0) / 1000, p.open_seconds))
    return tuple(out)


def _opening_difference(here: ProbeSample, donor: ProbeSample | None) -> float:
    """How much longer opening the repository takes here than where the borrowed fixed part
    was measured: both probes' measured opening when they have it, else ``OPEN_ROUND_TRIPS``
    times the difference in round trip; never negative (a faster location is not assumed
    to make the rest faster)."""
    if here.open_seconds is not None and donor is not None and donor.open_seconds is not None:
        return max(here.open_seconds - donor.open_seconds, 0.0)
    return max(here.latency_seconds - (donor.latency_seconds if donor else 0.0), 0.0) * OPEN_ROUND_TRIPS


def _donor(history: Sequence[DrillMeasurement], location: str) -> str | None:
    """The other location whose drills restored fastest (median over its phases): the one
    whose figures are least bound by its storage, so closest to this host's processing."""
    speeds: dict[str, list[float]] = {}
    for m in history:
        if m.location != location:
            speeds.setdefault(m.location, []).extend(p.bytes / p.seconds for p in m.phases if p.seconds > 0)
    ranked = [(statistics.median(v), name) for name, v in speeds.items() if v]
    return max(ranked)[1] if ranked else None


def _newer(a: str, b: str) -> bool:
    """ISO 8601 ``a`` after ``b``; a time that does not parse is never newer."""
    try:
        return datetime.fromisoformat(a) > datetime.fromisoformat(b)
    except (TypeError, ValueError):
        return False


def _rate(bytes_per_second: float) -> str:
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_second >= scale:
            return f"{bytes_per_second / scale:.1f} {unit}"
    return f"{bytes_per_second:.0f} B/s"


def forecast_error(report: Mapping[str, Any]) -> float | None:
    """A report's (its JSON form) measured RTO against the forecast it recorded before it ran
    in ``extra.forecast`` ((measured - expected) / expected); None without a forecast."""
    extra = report.get("extra")
    data = extra.get("forecast") if isinstance(extra, Mapping) else None
    if not isinstance(data, Mapping):
        return None
    return RtoForecast.from_dict(data).error(float(report.get("rto_seconds") or 0.0))


__all__ = [
    "DrillMeasurement",
    "PhaseTime",
    "ProbeSample",
    "RestoreSample",
    "RtoForecast",
    "SCENARIO_PHASES",
    "forecast_error",
    "forecast_rto",
    "measurement_of",
    "measurements",
    "phase_of_step",
    "probe_samples",
    "scenario_sizes",
]
