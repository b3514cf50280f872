"""Planning a restore-test: which snapshot, and which of its items. Pure: no repository,
no clock, no randomness but the ``random.Random`` handed in (seed it to replay a run).

The snapshot is drawn at random with weights: one never restore-tested (by a restore-test
or a drill) weighs ``NEVER_TESTED_WEIGHT``; one tested ``n`` times weighs ``1 / n``, so
over a few runs every snapshot is reached, the untested first, and none is starved.

The items are drawn by reservoir sampling (Algorithm R) over the snapshot's files (or a
logical database snapshot's tables) in the order the walk yields them, so the sample is
uniform, memory holds only the sample whatever the snapshot's size, and one seed over
the same snapshot gives the same sample.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.errors import UsageError
from core.repository.snapshot import Snapshot

# A never-tested snapshot is this many times likelier to be drawn than one tested once.
NEVER_TESTED_WEIGHT = 8.0
DEFAULT_SAMPLE_FILES = 20
FILES, TABLES = "files", "tables"


@dataclass(frozen=True, slots=True)
class Item:
    """One thing a restore-test restores: a regular file (by its path in the snapshot) or a
    table (``schema.name``); ``size`` in bytes, or rows for a table."""

    name: str
    size: int


@dataclass(frozen=True, slots=True)
class Sampling:
    """How many items: ``files`` of them, or ``share`` percent (at least one)."""

    files: int = DEFAULT_SAMPLE_FILES
    share: float | None = None  # percent, 0 < share <= 100

    def __post_init__(self) -> None:
        if self.share is not None and not 0 < self.share <= 100:
            raise UsageError(f"the share to restore-test must be above 0 and at most 100 percent, not {self.share}")
        if self.share is None and self.files < 1:
            raise UsageError(f"a restore-test samples at least one item, not {self.files}")

    def count(self, total: int) -> int:
        if total <= 0:
            return 0
        if self.share is not None:
            return min(total, max(1, math.ceil(total * self.share / 100)))
        return min(total, self.files)

    def describe(self) -> str:
        return f"{self.share:g}% of the items" if self.share is not None else f"{self.files} items"


@dataclass(frozen=True, slots=True)
class Choice:
    snapshot: Snapshot
    tests: int  # earlier restore-tests and drills that restored it
    why: str


@dataclass(frozen=True, slots=True)
class RestoreTestPlan:
    snapshot: Snapshot
    kind: str  # files | tables
    items: tuple[Item, ...]  # sorted by name
    total: int  # items of that kind the snapshot holds
    seed: int
    why: str  # why this snapshot

    @property
    def share(self) -> float:
        """Percent of the snapshot's items the sample covers."""
        return 100.0 * len(self.items) / self.total if self.total else 0.0

    @property
    def sample_bytes(self) -> int:
        return sum(i.size for i in self.items) if self.kind == FILES else 0

    def as_dict(self) -> dict:
        return {
            "snapshot": self.snapshot.id,
            "source": self.snapshot.source,
            "kind": self.kind,
            "items": [{"name": i.name, "size": i.size} for i in self.items],
            "sampled": len(self.items),
            "total": self.total,
            "share": round(self.share, 3),
            "seed": self.seed,
            "why": self.why,
        }


def weight(tests: int) -> float:
    return NEVER_TESTED_WEIGHT if tests <= 0 else 1.0 / tests


def choose_snapshot(candidates: Sequence[Snapshot], tested: Mapping[str, int], rng: random.Random) -> Choice:
    """Draw one snapshot, weighted towards the never restore-tested (module docstring).
    ``tested``: snapshot id -> how many restore-tests and drills restored it."""
    if not candidates:
        raise UsageError("no snapshot can be restore-tested: take a backup first")
    ordered = sorted(candidates, key=lambda s: s.id)  # the draw must not depend on listing order
    weights = [weight(tested.get(s.id, 0)) for s in ordered]
    snap = rng.choices(ordered, weights=weights, k=1)[0]
    n = tested.get(snap.id, 0)
    never = sum(1 for s in ordered if tested.get(s.id, 0) == 0)
    why = (
        f"never restore-tested ({never} of {len(ordered)} candidates are not)"
        if n == 0
        else f"restore-tested {n} time{'s' if n != 1 else ''} before; every candidate has been"
        if never == 0
        else f"restore-tested {n} time{'s' if n != 1 else ''} before (drawn despite {never} untested)"
    )
    return Choice(snap, n, why)


class Reservoir:
    """A uniform sample of ``size`` items from a stream of unknown length (Algorithm R)."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.rng = rng
        self.seen = 0
        self.kept: list[Item] = []

    def offer(self, item: Item) -> None:
        self.seen += 1
        if len(self.kept) < self.size:
            self.kept.append(item)
            return
        j = self.rng.randrange(self.seen)
        if j < self.size:
            self.kept[j] = item

    def sample(self) -> tuple[Item, ...]:
        return tuple(sorted(self.kept, key=lambda i: i.name))


def sample_items(items: Iterable[Item], count: int, rng: random.Random) -> tuple[Item, ...]:
    reservoir = Reservoir(count, rng)
    for item in items:
        reservoir.offer(item)
    return reservoir.sample()


def plan_restore_test(
    choice: Choice, kind: str, items: Sequence[Item], sampling: Sampling, rng: random.Random, seed: int
) -> RestoreTestPlan:
    """The whole plan from the snapshot's items (the executor streams large snapshots into a
    ``Reservoir`` itself, with the count from a first pass; this is the same draw)."""
    count = sampling.count(len(items))
    return RestoreTestPlan(choice.snapshot, kind, sample_items(items, count, rng), len(items), seed, choice.why)


__all__ = [
    "DEFAULT_SAMPLE_FILES",
    "FILES",
    "NEVER_TESTED_WEIGHT",
    "TABLES",
    "Choice",
    "Item",
    "Reservoir",
    "RestoreTestPlan",
    "Sampling",
    "choose_snapshot",
    "plan_restore_test",
    "sample_items",
    "weight",
]
