"""The verification report (core/jobs/verification.py) and time travel
(core/jobs/timetravel.py): pure functions over catalog entries, job records and drill
reports, so built here from those records directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.drills.report import DrillReport
from core.errors import VerificationFailed
from core.jobs.timetravel import days_with_snapshots, point_in_time, sources_of
from core.jobs.verification import outcome_of, verification_report
from core.jobs.api import Job, JobState
from core.jobs.status import verify_verdict
from core.locations.catalog import CatalogEntry, CopyState
from core.repository.snapshot import Snapshot

T = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
FILES = "application/user_data"


def snap(i: int, source: str = FILES, day: int | None = None) -> Snapshot:
    when = T + timedelta(days=i if day is None else day)
    return Snapshot(
        time=when.isoformat(), source=source, paths=("/srv",), tree="0" * 64, id=f"{i:02d}{source[:2]}" + "a" * 60
    )


def entry(s: Snapshot, **states: str) -> CatalogEntry:
    states = states or {"local": "complete", "offsite": "complete"}
    return CatalogEntry(s, tuple(CopyState(name, st) for name, st in states.items()))


def job(
    n: int,
    state: JobState,
    *,
    hours: float,
    full: bool = False,
    ids: list[str] | None = None,
    result: dict | None = None,
    params: dict | None = None,
    error: str | None = None,
) -> Job:
    at = T + timedelta(hours=hours)
    r = result if result is not None else ({"ok": True, "exit_code": 0} if state == JobState.COMPLETED else None)
    if r is not None and ids is not None:
        r = {**r, "snapshot_ids": ids}
    return Job(
        f"job{n}",
        "verify",
        {"full": full, "snapshots": [], **(params or {})},
        state,
        "cli",
        at,
        at,
        at + timedelta(minutes=1) if state.finished else None,
        None,
        r,
        error,
    )


def drill(restored: list[str], passed: bool, *, hours: float, location: str = "local") -> DrillReport:
    at = (T + timedelta(hours=hours)).isoformat()
    return DrillReport(
        id=f"20261120T000000Z-{len(restored):08x}",
        scenario="platform-loss",
        location=location,
        started=at,
        finished=at,
        passed=passed,
        rto_seconds=1.0,
        rto_objective_seconds=60.0,
        steps=(),
        checks=(),
        rpo=(),
        restored=tuple({"source": FILES, "snapshot": s} for s in restored),
        cleanup=(),
        error=None if passed else "the row counts differ",
    )


A, B, C = snap(0), snap(1), snap(2)
ENTRIES = [entry(A), entry(B, local="complete", offsite="missing"), entry(C)]


def states(report, sid: str) -> dict[str, str]:
    row = next(r for r in report if r.snapshot_id == sid)
    return {c.location: c.state for c in row.copies}


def test_nothing_checked_is_not_verified_and_a_missing_copy_is_not_held():
    report = verification_report(ENTRIES, [], [])
    assert [r.snapshot_id for r in report] == [A.id, B.id, C.id]
    assert states(report, B.id) == {"local": "unverified", "offsite": "not held"}


def test_quick_full_and_drill_are_told_apart_per_snapshot_and_location():
    jobs = [
        job(1, JobState.COMPLETED, hours=30, ids=[A.id]),  # quick: A only
        job(2, JobState.COMPLETED, hours=31, full=True, ids=[A.id, B.id]),  # full: A and B
        job(3, JobState.COMPLETED, hours=32, ids=[A.id], params={"location": "offsite"}),
    ]
    report = verification_report(ENTRIES, jobs, [drill([A.id], True, hours=33)])
    assert states(report, A.id) == {"local": "restore-tested", "offsite": "quick"}
    assert states(report, B.id) == {"local": "full", "offsite": "not held"}
    assert states(report, C.id) == {"local": "unverified", "offsite": "unverified"}
    a_local = report[0].at("local")
    assert [(e.how, e.outcome, e.ref) for e in a_local.evidence] == [
        ("drill", "passed", drill([A.id], True, hours=33).id),
        ("full", "passed", "job2"),
        ("quick", "passed", "job1"),
    ]
    assert not any(e.by_time for e in a_local.evidence)


@pytest.mark.parametrize(
    "state, error",
    [(JobState.CANCELLED, None), (JobState.INTERRUPTED, "daemon died"), (JobState.FAILED, "the repository is locked")],
)
def test_a_verification_that_did_not_run_to_its_end_never_verifies(state, error):
    """Cancelled, interrupted, could not run: listed as an attempt, never a verdict; an earlier
    verdict still stands (status.verify_verdict's rule)."""
    attempt = job(9, state, hours=40, full=True, error=error, result={"exit_code": 130} if error is None else None)
    report = verification_report(ENTRIES, [attempt], [])
    assert states(report, A.id)["local"] == "unverified"
    ev = report[0].at("local").evidence
    assert len(ev) == 1 and not ev[0].verdict and ev[0].outcome in ("cancelled", "interrupted", "could not run")
    assert ev[0].by_time  # an old-style record without snapshot ids: attributed by time, and says so
    # With a quick pass before it, the pass stands and the attempt changes nothing.
    report = verification_report(ENTRIES, [job(1, JobState.COMPLETED, hours=30, ids=[A.id]), attempt], [])
    assert states(report, A.id)["local"] == "quick"
    # The one health evaluation agrees: the attempt gives no verdict.
    assert verify_verdict([attempt]).state == "never"


def test_damage_is_told_per_snapshot_and_stands_until_a_later_full_verification_passes():
    damaged = job(
        4,
        JobState.FAILED,
        hours=30,
        full=True,
        ids=[A.id, B.id, C.id],
        error="found damage",
        result={
            "ok": False,
            "exit_code": VerificationFailed.exit_code,
            "damage": [{"object": "data/ab/ab12", "reason": "pack is missing", "snapshots": [B.id]}],
        },
    )
    report = verification_report(ENTRIES, [damaged], [])
    assert states(report, B.id)["local"] == "damage"
    assert states(report, A.id)["local"] == "full"  # read whole and not hit by the damage
    assert "pack is missing" in report[1].at("local").evidence[0].detail
    assert outcome_of(damaged, B.id) == "damage" and verify_verdict([damaged]).state == "damage"
    # A later quick pass does not read packs: the damage stands; a later full pass clears it.
    quick = job(5, JobState.COMPLETED, hours=31, ids=[B.id])
    assert states(verification_report(ENTRIES, [damaged, quick], []), B.id)["local"] == "damage"
    full = job(6, JobState.COMPLETED, hours=32, full=True, ids=[B.id])
    assert states(verification_report(ENTRIES, [damaged, quick, full], []), B.id)["local"] == "full"
    # A damaged manifest is the object snapshots/<id> itself.
    manifest = job(
        7,
        JobState.FAILED,
        hours=33,
        ids=[A.id],
        result={"ok": False, "exit_code": 6, "damage": [{"object": f"snapshots/{C.id}", "reason": "does not open"}]},
    )
    assert outcome_of(manifest, C.id) == "damage" and outcome_of(manifest, A.id) == "passed"


def test_a_failed_drill_is_not_restore_tested_and_incomplete_copies_are_said():
    entries = [entry(A, local="incomplete", offsite="unknown")]
    report = verification_report(entries, [job(1, JobState.COMPLETED, hours=30, ids=[A.id])], [])
    assert states(report, A.id) == {"local": "incomplete", "offsite": "unreadable"}
    report = verification_report([entry(A)], [], [drill([A.id], True, hours=30), drill([A.id, B.id], False, hours=31)])
    assert states(report, A.id)["local"] == "drill failed"
    assert "row counts" in report[0].at("local").evidence[0].detail


def test_old_records_are_attributed_by_time_or_by_the_ids_they_were_given():
    before_c = job(1, JobState.COMPLETED, hours=24 * 2 - 1)  # started before C was taken
    report = verification_report(ENTRIES, [before_c], [])
    assert states(report, B.id)["local"] == "quick" and states(report, C.id)["local"] == "unverified"
    named = job(2, JobState.COMPLETED, hours=0, params={"snapshots": [C.id[:8]]})
    report = verification_report(ENTRIES, [named], [])
    assert states(report, C.id)["local"] == "quick" and states(report, A.id)["local"] == "unverified"
    assert not report[2].at("local").evidence[0].by_time


# -- time travel -----------------------------------------------------------------------


def test_time_travel_before_the_first_between_and_after_the_last_snapshot():
    db = snap(5, source="database", day=1)
    entries = [*ENTRIES, entry(db)]
    checks = verification_report(entries, [job(1, JobState.COMPLETED, hours=60, full=True, ids=[B.id])], [])

    early = point_in_time(entries, FILES, T - timedelta(seconds=1), checks)
    assert early.before_first and early.entry is None and early.first.id == A.id and not early.never
    assert early.checks is None and early.locations == ()

    exact = point_in_time(entries, FILES, T, checks)  # taken at that very moment: current
    assert exact.snapshot.id == A.id and exact.following.id == B.id

    mid = point_in_time(entries, FILES, T + timedelta(days=1, hours=5), checks)
    assert mid.snapshot.id == B.id and mid.following.id == C.id and not mid.newest
    assert mid.locations == ("local",)  # offsite never got it
    assert mid.checks.at("local").state == "full" and mid.checks.at("offsite").state == "not held"

    late = point_in_time(entries, FILES, T + timedelta(days=400), checks)
    assert late.snapshot.id == C.id and late.newest and late.following is None

    assert point_in_time(entries, "database", T + timedelta(days=3)).snapshot.id == db.id
    nothing = point_in_time(entries, "configuration/api_keys", T)
    assert nothing.never and not nothing.before_first and nothing.snapshot is None
    assert sources_of(entries) == ["application/user_data", "database"]
    with pytest.raises(ValueError):
        point_in_time(entries, FILES, datetime(2026, 11, 21))


def test_calendar_marks_count_snapshots_per_day_in_the_time_zone_given():
    late_evening = Snapshot(
        time=(T + timedelta(hours=21, minutes=30)).isoformat(),
        source=FILES,
        paths=(),
        tree="0" * 64,
        id="ff" + "b" * 62,
    )  # 23:30 UTC on the 20th
    entries = [*ENTRIES, entry(late_evening)]
    utc = days_with_snapshots(entries, FILES, UTC)
    assert utc == {T.date(): 2, (T + timedelta(days=1)).date(): 1, (T + timedelta(days=2)).date(): 1}
    east = days_with_snapshots(entries, FILES, timezone(timedelta(hours=3)))  # 02:30 on the 21st there
    assert east[T.date()] == 1 and east[(T + timedelta(days=1)).date()] == 2


def restore_test(sid: str, outcome: str, *, hours: float, checked: int = 5, location: str = "local"):
    from core.drills.restore_test_record import RestoreTestRecord

    at = (T + timedelta(hours=hours)).isoformat()
    return RestoreTestRecord(
        id=f"20261120T{int(hours) % 24:02d}0000Z-{int(hours * 10):08x}",
        snapshot=sid,
        source=FILES,
        location=location,
        kind="files",
        started=at,
        finished=at,
        outcome=outcome,
        checked=checked if outcome in ("passed", "failed") else 0,
        sampled=5,
        total=40,
        seed=1,
        failures=("/srv/x: content differs from the snapshot",) if outcome == "failed" else (),
        error="cancelled" if outcome == "cancelled" else None,
        job=f"job{int(hours)}",
    )


def test_restore_tests_say_when_what_share_and_which_job_and_only_a_run_to_its_end_counts():
    passed = restore_test(A.id, "passed", hours=40)
    report = verification_report(ENTRIES, [], [], restore_tests=[passed])
    assert states(report, A.id) == {"local": "restore-tested", "offsite": "unverified"}
    (ev,) = report[0].at("local").evidence
    assert (ev.how, ev.outcome, ev.detail) == ("restore-test", "passed", "5 of 40 files (12.5%)")
    assert ev.ref == f"{passed.id} (job job40)" and ev.at == T + timedelta(hours=40)

    # A cancelled one later is an attempt: it says nothing, the pass stands.
    cancelled = restore_test(A.id, "cancelled", hours=41)
    report = verification_report(ENTRIES, [], [], restore_tests=[passed, cancelled])
    assert states(report, A.id)["local"] == "restore-tested"
    assert [e.verdict for e in report[0].at("local").evidence] == [False, True]

    # A failed one after a passing drill: the newest restore says the snapshot differs.
    failed = restore_test(A.id, "failed", hours=42, checked=4)
    report = verification_report(
        ENTRIES, [], [drill([A.id], True, hours=33)], restore_tests=[passed, cancelled, failed]
    )
    assert states(report, A.id)["local"] == "restore-test failed"
    assert report[0].at("local").state_word == "⚠ restore-test failed"
    newest = report[0].at("local").evidence[0]
    assert newest.outcome == "failed" and "content differs" in newest.detail
    # ... and a drill that passes after it restores the verdict.
    report = verification_report(ENTRIES, [], [drill([A.id], True, hours=43)], restore_tests=[failed])
    assert states(report, A.id)["local"] == "restore-tested"

    # Only a record could not run: never a pass.
    report = verification_report(ENTRIES, [], [], restore_tests=[restore_test(B.id, "could not run", hours=44)])
    assert states(report, B.id)["local"] == "unverified"
