"""Retention: which snapshots stay, and the rule that keeps each one. Pure: no I/O.

Snapshots are grouped by (host, source): two hosts backing up a source of the same name
protect different machines, so each group keeps its own calendar and its own guard.
Within a group a snapshot stays when *any* rule keeps it (the rules add up, as in restic):

- ``retention_days`` (the strategy document's per-category setting): younger than N days;
- ``keep_within``: younger than a duration;
- ``keep_last``: the newest N;
- ``keep_hourly/daily/weekly/monthly/yearly``: the newest snapshot of each of the newest N
  hours/days/ISO weeks/months/years that have one (a calendar bucket without a snapshot
  does not use up a count);
- the minimum-redundancy guard ``min_keep``: the newest N good snapshots (no warnings),
  topped up with the newest others when fewer than N are good;
- a pin (core/repository/pins.py: the tripwire's, until `acknowledge`): kept, whatever else;
- the point-in-time guard (database, ``pitr_window``): the physical base backup that
  recovery to the start of the window starts from (the newest one that finished before
  it), or the oldest base backup while none is that old.

A group with no rule at all (an unknown category and no calendar policy) keeps everything:
deleting on an empty policy is how backups get lost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from core.repository.snapshot import Snapshot

CALENDAR = ("hourly", "daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True, slots=True)
class Policy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: timedelta | None = None
    retention_days: int | None = None
    min_keep: int = 3
    pitr_window: timedelta | None = None
    category: str = ""  # named in reasons, e.g. "retention_days 30 (application)"

    @property
    def empty(self) -> bool:
        """No rule decides anything: such a group keeps every snapshot."""
        return not (
            self.keep_last
            or self.keep_hourly
            or self.keep_daily
            or self.keep_weekly
            or self.keep_monthly
            or self.keep_yearly
            or self.keep_within
            or self.retention_days
        )

    def describe(self) -> str:
        parts = []
        if self.retention_days:
            parts.append(f"retention_days {self.retention_days}")
        if self.keep_within:
            parts.append(f"keep_within {format_duration(self.keep_within)}")
        for name in ("last", *CALENDAR):
            n = getattr(self, f"keep_{name}")
            if n:
                parts.append(f"keep_{name} {n}")
        parts.append(f"min_keep {self.min_keep}")
        if self.pitr_window:
            parts.append(f"pitr_window {format_duration(self.pitr_window)}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: tuple[str, ...]  # kept: every rule that keeps it; forgotten: why nothing does

    @property
    def group(self) -> tuple[str, str]:
        return self.snapshot.hostname, self.snapshot.source


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    decisions: tuple[Decision, ...]  # oldest first
    policies: dict[str, Policy] = field(default_factory=dict)  # by source, as applied

    @property
    def keep(self) -> list[Snapshot]:
        return [d.snapshot for d in self.decisions if d.keep]

    @property
    def forget(self) -> list[Snapshot]:
        return [d.snapshot for d in self.decisions if not d.keep]


def format_duration(d: timedelta) -> str:
    seconds = int(d.total_seconds())
    out = []
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not out:
        out.append(f"{seconds}s")
    return "".join(out)


def category_of(source: str) -> str:
    """``application/user_data`` -> ``application``; ``database`` -> ``database``."""
    return source.split("/", 1)[0]


def _bucket(kind: str, t: datetime) -> tuple[tuple[int, ...], str]:
    if kind == "hourly":
        return (t.year, t.month, t.day, t.hour), t.strftime("%Y-%m-%d %H:00")
    if kind == "daily":
        return (t.year, t.month, t.day), t.strftime("%Y-%m-%d")
    if kind == "weekly":
        iso = t.isocalendar()
        return (iso.year, iso.week), f"{iso.year}-W{iso.week:02d}"
    if kind == "monthly":
        return (t.year, t.month), t.strftime("%Y-%m")
    return (t.year,), f"{t.year}"


def _physical_stop(s: Snapshot) -> datetime:
    stop = s.metadata.get("stop_time") if isinstance(s.metadata, dict) else None
    try:
        t = datetime.fromisoformat(stop) if isinstance(stop, str) else s.datetime
    except ValueError:
        t = s.datetime
    return t if t.tzinfo else t.replace(tzinfo=s.datetime.tzinfo)


def is_base_backup(s: Snapshot) -> bool:
    return isinstance(s.metadata, dict) and s.metadata.get("mode") == "physical"


def _decide_group(snaps: list[Snapshot], policy: Policy, now: datetime, tz: tzinfo | None) -> dict[str, list[str]]:
    """Snapshot id -> reasons it is kept (empty list: forgotten). ``snaps`` newest first."""
    reasons: dict[str, list[str]] = {s.id: [] for s in snaps}
    if policy.empty:
        for s in snaps:
            reasons[s.id].append("no retention rule for this source: everything is kept")
        return reasons
    for s in snaps:
        age = now - s.datetime
        if policy.retention_days and age <= timedelta(days=policy.retention_days):
            where = f" ({policy.category})" if policy.category else ""
            reasons[s.id].append(f"retention_days {policy.retention_days}{where}")
        if policy.keep_within and age <= policy.keep_within:
            reasons[s.id].append(f"keep_within {format_duration(policy.keep_within)}")
    for s in snaps[: policy.keep_last]:
        reasons[s.id].append(f"keep_last {policy.keep_last}")
    _add_calendar(reasons, snaps, policy, tz)
    # The guards come last so the reasons show them only when they change the outcome
    # or coincide with it; they never forget anything.
    _add_guards(reasons, snaps, policy, now)
    return reasons


def _add_calendar(reasons: dict[str, list[str]], snaps: list[Snapshot], policy: Policy, tz: tzinfo | None) -> None:
    """keep_hourly .. keep_yearly: the newest snapshot of each of the newest N buckets."""
    for kind in CALENDAR:
        left = getattr(policy, f"keep_{kind}")
        last: tuple[int, ...] | None = None
        for s in snaps:
            if left <= 0:
                break
            t = s.datetime.astimezone(tz) if tz is not None else s.datetime
            key, label = _bucket(kind, t)
            if key != last:
                reasons[s.id].append(f"keep_{kind} {label}")
                last = key
                left -= 1


def _add_guards(reasons: dict[str, list[str]], snaps: list[Snapshot], policy: Policy, now: datetime) -> None:
    """min_keep, and the point-in-time guard (pitr_window)."""
    good = [s for s in snaps if not s.warnings]
    guarded = good[: policy.min_keep]
    if len(guarded) < policy.min_keep:
        guarded += [s for s in snaps if s.warnings][: policy.min_keep - len(guarded)]
    for s in guarded:
        reasons[s.id].append(f"min_keep {policy.min_keep}" + ("" if not s.warnings else " (has warnings)"))
    if policy.pitr_window:
        bases = sorted((s for s in snaps if is_base_backup(s)), key=_physical_stop)
        if bases:
            start = now - policy.pitr_window
            before = [s for s in bases if _physical_stop(s) <= start]
            window = format_duration(policy.pitr_window)
            if before:
                reasons[before[-1].id].append(
                    f"pitr_window {window}: base backup recovery to the window start begins from"
                )
            else:
                reasons[bases[0].id].append(
                    f"pitr_window {window}: oldest base backup (none is older than the window yet)"
                )


def _forget_reason(s: Snapshot, policy: Policy, now: datetime) -> str:
    age = now - s.datetime
    days = age.total_seconds() / 86400
    return f"no rule keeps it (age {days:.1f} days; policy: {policy.describe()})"


def apply(
    snapshots: Iterable[Snapshot],
    policy_for: Callable[[str], Policy],
    now: datetime,
    tz: tzinfo | None = None,
    pinned: Mapping[str, str] | None = None,
) -> RetentionPlan:
    """Decide every snapshot. ``policy_for(source)`` gives the policy of a source; ``tz``
    is the zone calendar buckets are cut in (None: each snapshot's own recorded offset).
    ``pinned``: snapshot id -> why it is pinned (core/repository/pins.py): kept whatever
    the rules say, the pin named first among its reasons."""
    pinned = pinned or {}
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    groups: dict[tuple[str, str], list[Snapshot]] = defaultdict(list)
    for s in snapshots:
        groups[(s.hostname, s.source)].append(s)
    decisions: list[Decision] = []
    policies: dict[str, Policy] = {}
    for (_host, source), snaps in groups.items():
        policy = policies.setdefault(source, policy_for(source))
        snaps.sort(key=lambda s: (s.datetime, s.id), reverse=True)
        kept = _decide_group(snaps, policy, now, tz)
        for s in snaps:
            why = kept[s.id]
            if s.id in pinned:
                why = [pinned[s.id], *why]
            decisions.append(Decision(s, bool(why), tuple(why) if why else (_forget_reason(s, policy, now),)))
    decisions.sort(key=lambda d: (d.snapshot.datetime, d.snapshot.source, d.snapshot.id))
    return RetentionPlan(tuple(decisions), policies)


def policies_from_config(config) -> Callable[[str], Policy]:
    """The policy of each source from ``[retention]`` (with its per-category tables) and the
    categories' ``retention_days``; the database also gets ``pitr_window_days``."""
    r = config.retention
    sections = {"application": config.application, "configuration": config.configuration, "database": config.database}

    def policy_for(source: str) -> Policy:
        category = category_of(source)
        values = {
            name: getattr(r, name)
            for name in (
                "keep_last",
                "keep_hourly",
                "keep_daily",
                "keep_weekly",
                "keep_monthly",
                "keep_yearly",
                "keep_within",
                "min_keep",
            )
        }
        override = getattr(r, category, None) if category in sections else None
        if override is not None:
            for name in values:
                v = getattr(override, name)
                if v is not None:
                    values[name] = v
        if values["keep_within"] is not None and not values["keep_within"]:
            values["keep_within"] = None  # "0d" in a category switches an inherited keep_within off
        section = sections.get(category)
        pitr = None
        if category == "database" and config.database.pitr_window_days:
            pitr = timedelta(days=config.database.pitr_window_days)
        return Policy(
            **values,
            retention_days=section.retention_days if section else None,
            pitr_window=pitr,
            category=category if section else "",
        )

    return policy_for
