"""Stateful property test: random file changes, backups, prunes and crashes (of backups
and of prunes, at any write or delete) against one repository. After every step the
repository verifies clean and every snapshot the model expects is still there; at the end
every kept snapshot restores byte for byte and a full verify reads every pack.

Time moves forward only for retention (prune's ``now``), so older snapshots fall out of
``retention_days`` while ``keep_last`` and ``min_keep`` hold the newest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from maintenance.prune_support import Crash, count_mutations, make_world, now_plus, restored, tree_bytes

FILES = [f"f{i}" for i in range(10)]
CHANGES = st.lists(st.tuples(st.sampled_from(FILES), st.integers(0, 90_000)), min_size=1, max_size=4)


class PruneMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="prune-prop-"))
        self.w = make_world(self.base / "w")
        self.w.write_config(retention="keep_last = 1\nmin_keep = 1", application="retention_days = 1")
        self.w.init(pack_size=64 * 1024)
        self.model: dict[str, dict[str, bytes]] = {}  # snapshot id -> files it must restore
        self.days = 0.0
        self.restores = 0
        self.probes = 0
        self.order: dict[str, int] = {}  # snapshot id -> when it was taken

    # -- what operators and crashes do --------------------------------------------------------

    def _change(self, changes) -> None:
        for name, size in changes:
            path = self.w.src / name
            if size < 5_000 and path.exists():
                path.unlink()
            else:
                path.write_bytes(os.urandom(size))

    @rule(changes=CHANGES)
    def backup(self, changes) -> None:
        self._change(changes)
        result = self.w.run(lambda svc: svc.backup())
        snap = result.results[0].snapshot
        self.model[snap.id] = tree_bytes(self.w.src)
        self.order[snap.id] = len(self.order)

    @rule(changes=CHANGES, crash_after=st.integers(0, 12))
    def crashed_backup(self, changes, crash_after: int) -> None:
        self._change(changes)
        before = self.w.snapshot_ids()
        try:
            self.w.run(lambda svc: svc.backup(), crash_after=crash_after)
        except Crash:
            pass
        self.w.unlock_all()
        for sid in self.w.snapshot_ids() - before:  # committed just before the crash
            self.model[sid] = tree_bytes(self.w.src)
            self.order[sid] = len(self.order)

    @rule(days=st.floats(0.5, 3))
    def prune(self, days: float) -> None:
        self.days += days
        report = self.w.run(lambda svc: svc.prune(now=now_plus(self.days)))
        for s in report.forgotten:
            self.model.pop(s.id)
        assert set(self.model) == self.w.snapshot_ids()

    @rule(changes=CHANGES, days=st.floats(0.5, 3), at=st.floats(0, 1, exclude_max=True))
    def backup_then_crashed_prune(self, changes, days: float, at: float) -> None:
        """A backup, so there is something to forget, then a prune that dies at a point
        spread evenly over its own writes and deletes (counted by running the same prune
        on a copy first), so every phase gets its crashes."""
        self.backup(changes)
        self._crashed_prune(days, at)

    @rule(days=st.floats(0.5, 3), at=st.floats(0, 1, exclude_max=True))
    def crashed_prune(self, days: float, at: float) -> None:
        self._crashed_prune(days, at)

    def _crashed_prune(self, days: float, at: float) -> None:
        self.days += days
        plan = self.w.run(lambda svc: svc.prune(dry_run=True, now=now_plus(self.days)))
        may_go = {s.id for s in plan.forgotten}
        self.probes += 1
        total = count_mutations(
            self.w, lambda svc: svc.prune(now=now_plus(self.days)), self.base / f"probe-{self.probes}"
        )
        crash_after = int(at * total)
        crashed = False
        try:
            self.w.run(lambda svc: svc.prune(now=now_plus(self.days)), crash_after=crash_after)
        except Crash:
            crashed = True
        assert crashed, f"the prune made fewer than {crash_after + 1} of its {total} writes and deletes"
        self.w.unlock_all()
        present = self.w.snapshot_ids()
        assert set(self.model) - may_go <= present, "a crashed prune deleted a snapshot it was to keep"
        for sid in set(self.model) - present:
            del self.model[sid]

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 1000))
    def restore_one(self, pick: int) -> None:
        # An index, not a draw from the ids: ids differ between runs of the same steps.
        ids = sorted(self.model, key=lambda sid: min(self.order[sid], 10**9))
        sid = ids[pick % len(ids)]
        self.restores += 1
        got = self.w.run(lambda svc: restored(svc, sid, self.base / f"restore-{self.restores}"))
        assert got == self.model[sid]

    # -- what must always hold ------------------------------------------------------------------

    @invariant()
    def verifies_clean(self) -> None:
        report = self.w.run(lambda svc: svc.verify())
        assert report.ok, report.damage
        assert set(self.model) == self.w.snapshot_ids()

    def teardown(self) -> None:
        try:
            report = self.w.run(lambda svc: svc.verify(full=True))
            assert report.ok, report.damage
            for sid, files in self.model.items():
                self.restores += 1
                assert self.w.run(lambda svc: restored(svc, sid, self.base / f"final-{self.restores}")) == files
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


TestPruneStateMachine = PruneMachine.TestCase
TestPruneStateMachine.settings = settings(
    # No shrinking: replaying steps against real storage is slow, and the failing step
    # sequence is printed as it is.
    max_examples=6,
    stateful_step_count=10,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
