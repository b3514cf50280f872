"""The verification report: per snapshot and per location, what was checked, when, and how.

Three kinds of evidence, from three records:

- ``quick`` and ``full`` verifications: the job history (engine jobs and the runs
  ``axisor-backup verify`` records through core/jobs/record.py). A verification's result
  lists the snapshots it opened (``snapshot_ids``) and names the location it read
  (``location``, default the primary). Records written before those fields existed name
  neither: a whole-repository one is taken to cover the snapshots older than its start,
  and such evidence says so (``by_time``).
- ``drill``: the drill reports stored in the repository (core/drills/report.py); a drill
  restored the snapshots its report lists, from the location it names.
- ``restore-test``: the restore-test records stored in the repository
  (core/drills/restore_test_record.py): a sample of one snapshot's files or tables restored
  and validated; the evidence says what share was checked and by which job. A cancelled one,
  or one that could not run, is an attempt, never a pass.
- the copy's state from the catalog (core/locations/catalog.py): held completely, in
  part, not at all, or the location could not be read.

Only a verification that ran to its end gives a verdict, as in core/jobs/status.py's
``verify_verdict`` (the one health evaluation): a cancelled, interrupted or failed-to-run
one is listed as an attempt and never counts as "verified". A verification that found
damage names the snapshots the damage hits; for the others it read, it is a pass.
Pure functions over records: no repository, no job database, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.drills.report import DrillReport, stored_reports
from core.drills.restore_test_record import RestoreTestRecord, stored_records
from core.errors import VerificationFailed
from core.jobs.api import Job, JobState

__all__ = [
    "DAMAGE",
    "DRILL",
    "FULL",
    "PASSED",
    "QUICK",
    "RESTORE_TEST",
    "CopyChecks",
    "Evidence",
    "SnapshotChecks",
    "outcome_of",
    "verification_report",
]

QUICK, FULL, DRILL, RESTORE_TEST = "quick", "full", "drill", "restore-test"
PASSED, DAMAGE = "passed", "damage"
DRILL_FAILED = "failed"  # a drill, or a restore-test, that restored something that differs
# Attempts that say nothing about the data (status.verify_verdict's words).
NO_VERDICT = ("cancelled", "interrupted", "could not run", "running")

# The copy's state, then the evidence, folded into one word per (snapshot, location).
STATE_WORDS = {
    "damage": "✘ DAMAGE",
    "incomplete": "✘ incomplete",
    "not held": "— not held",
    "unreadable": "? unreadable",
    "drill failed": "⚠ drill failed",
    "restore-test failed": "⚠ restore-test failed",
    "restore-tested": "✔ restore-tested",
    "full": "✔ full verify",
    "quick": "✔ quick verify",
    "unverified": "· not verified",
}


@dataclass(frozen=True, slots=True)
class Evidence:
    how: str  # quick | full | drill | restore-test
    outcome: (
        str  # passed | damage | failed (a drill, a restore-test) | cancelled | interrupted | could not run | running
    )
    at: datetime | None  # when it finished (started, while it runs)
    ref: str  # the job id, or the drill id, or the restore-test id (and its job: "id (job J)")
    detail: str = ""  # why it did not run, the damage found, the drill's scenario, the share restore-tested
    by_time: bool = False  # an old record that does not list its snapshots: attributed by time

    @property
    def verdict(self) -> bool:
        """True when it ran to its end and so says something about the data."""
        return self.outcome not in NO_VERDICT


@dataclass(frozen=True, slots=True)
class CopyChecks:
    """One snapshot at one location."""

    location: str
    copy: str  # the catalog's CopyState.state: complete | incomplete | missing | unknown
    evidence: tuple[Evidence, ...]  # newest first; every attempt, verdict or not

    def newest(self, how: str) -> Evidence | None:
        """The newest evidence of that kind that reached a verdict."""
        return next((e for e in self.evidence if e.how == how and e.verdict), None)

    @property
    def state(self) -> str:
        """One word (a key of STATE_WORDS). Damage wins: a full verification's damage stands
        until a later full one passes (a quick one does not read the packs); a quick one's
        until any later verification passes."""
        if self.copy == "missing":
            return "not held"
        full, quick = self.newest(FULL), self.newest(QUICK)
        if full is not None and full.outcome == DAMAGE:
            return "damage"
        if quick is not None and quick.outcome == DAMAGE and (full is None or _later(quick, full)):
            return "damage"
        if self.copy == "incomplete":
            return "incomplete"
        if self.copy == "unknown":
            return "unreadable"
        restored = [e for e in (self.newest(DRILL), self.newest(RESTORE_TEST)) if e is not None]
        if restored:
            newest = restored[0] if len(restored) == 1 or not _later(restored[1], restored[0]) else restored[1]
            if newest.outcome == PASSED:
                return "restore-tested"
            return "drill failed" if newest.how == DRILL else "restore-test failed"
        if full is not None:
            return "full"
        if quick is not None:
            return "quick"
        return "unverified"

    @property
    def state_word(self) -> str:
        return STATE_WORDS[self.state]


@dataclass(frozen=True, slots=True)
class SnapshotChecks:
    snapshot_id: str
    source: str
    time: datetime
    copies: tuple[CopyChecks, ...]  # one per configured location, the catalog's order

    def at(self, location: str) -> CopyChecks | None:
        return next((c for c in self.copies if c.location == location), None)


def _later(a: Evidence, b: Evidence) -> bool:
    return a.at is not None and (b.at is None or a.at > b.at)


def outcome_of(job: Job, snapshot_id: str) -> str:
    """What one verification job says about one snapshot it covered: the classification of
    core/jobs/status.py's ``verify_verdict``, narrowed to the snapshot the damage hits."""
    r = job.result or {}
    if job.state == JobState.COMPLETED:
        if r.get("ok", True):
            return PASSED
        return DAMAGE if _damages(r, snapshot_id) else PASSED
    if job.state == JobState.FAILED and r.get("exit_code") == VerificationFailed.exit_code:
        return DAMAGE if _damages(r, snapshot_id) else PASSED
    if job.state == JobState.CANCELLED:
        return "cancelled"
    if job.state == JobState.INTERRUPTED:
        return "interrupted"
    if job.state == JobState.FAILED:
        return "could not run"
    return "running"


def _damages(result: dict, snapshot_id: str) -> bool:
    """The damage list names the snapshots each damaged object hits; a damaged manifest is
    the object ``snapshots/<id>`` itself."""
    for d in result.get("damage") or []:
        if not isinstance(d, dict):
            return True  # a record we cannot read: not a pass
        if snapshot_id in (d.get("snapshots") or ()) or str(d.get("object", "")).endswith("/" + snapshot_id):
            return True
    return False


def _covers(job: Job, snapshot_id: str, time: datetime) -> tuple[bool, bool]:
    """(covered, by_time)."""
    r = job.result or {}
    ids = r.get("snapshot_ids")
    if isinstance(ids, list):
        return snapshot_id in ids, False
    refs = [str(x) for x in job.params.get("snapshots") or []]
    if refs:
        # Ids or id prefixes; a "latest…" reference was resolved at run time and not kept.
        return any(not ref.startswith("latest") and snapshot_id.startswith(ref) for ref in refs), False
    start = job.started_at or job.created_at
    return time < start, True


def _job_location(job: Job, primary: str) -> str:
    return str((job.result or {}).get("location") or job.params.get("location") or primary)


def _job_evidence(job: Job, snapshot_id: str, by_time: bool) -> Evidence:
    outcome = outcome_of(job, snapshot_id)
    r = job.result or {}
    if outcome == DAMAGE:
        hits = [
            d
            for d in r.get("damage") or []
            if isinstance(d, dict)
            and (snapshot_id in (d.get("snapshots") or ()) or str(d.get("object", "")).endswith("/" + snapshot_id))
        ]
        detail = "; ".join(f"{d.get('object')}: {d.get('reason')}" for d in hits[:3])
    elif outcome in NO_VERDICT:
        detail = job.error or ""
    else:
        detail = ""
    how = FULL if job.params.get("full") or r.get("full") else QUICK
    return Evidence(how, outcome, job.finished_at or job.started_at or job.created_at, job.id, detail, by_time)


def _newest_first(e: Evidence) -> float:
    return -(e.at.timestamp() if e.at is not None else float("-inf"))


def _drill_time(report) -> datetime | None:
    for value in (report.finished, report.started):
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            continue
    return None


def _restore_test_evidence(record: RestoreTestRecord) -> Evidence:
    at = None
    for value in (record.finished, record.started):
        try:
            at = datetime.fromisoformat(str(value))
            break
        except ValueError:
            continue
    outcome = {"passed": PASSED, "failed": DRILL_FAILED}.get(record.outcome, record.outcome)
    ref = record.id + (f" (job {record.job})" if record.job else "")
    return Evidence(RESTORE_TEST, outcome, at, ref, record.summary())


def verification_report(
    entries: Sequence,
    jobs: Iterable[Job],
    drills: Iterable = (),
    *,
    primary: str = "local",
    restore_tests: Iterable[RestoreTestRecord] = (),
) -> tuple[SnapshotChecks, ...]:
    """One SnapshotChecks per catalog entry (``core.locations.catalog.CatalogEntry``, the
    catalog's order), each with every location's copy state and evidence, newest first.
    ``jobs``: any jobs (only verifications are read); ``drills``: ``DrillReport``s;
    ``restore_tests``: ``RestoreTestRecord``s."""
    verifies = [j for j in jobs if j.kind == "verify"]
    drill_evidence: dict[tuple[str, str], list[Evidence]] = {}
    for report in drills:
        detail = report.scenario + (
            "" if report.passed else ": " + "; ".join(report.failures[:2] or [report.error or "failed"])
        )
        for restored in report.restored:
            sid = str(restored.get("snapshot") or "")
            ev = Evidence(DRILL, PASSED if report.passed else DRILL_FAILED, _drill_time(report), report.id, detail)
            drill_evidence.setdefault((sid, report.location), []).append(ev)
    for record in restore_tests:
        drill_evidence.setdefault((record.snapshot, record.location), []).append(_restore_test_evidence(record))
    out = []
    for entry in entries:
        snap = entry.snapshot
        copies = []
        for copy in entry.copies:
            evidence = []
            for job in verifies:
                if _job_location(job, primary) != copy.location:
                    continue
                covered, by_time = _covers(job, snap.id, snap.datetime)
                if covered:
                    evidence.append(_job_evidence(job, snap.id, by_time))
            evidence += drill_evidence.get((snap.id, copy.location), [])
            evidence.sort(key=_newest_first)
            copies.append(CopyChecks(copy.location, copy.state, tuple(evidence)))
        out.append(SnapshotChecks(snap.id, snap.source, snap.datetime, tuple(copies)))
    return tuple(out)


async def drills_for_report(svc: Any) -> tuple[list[DrillReport], str]:
    """The stored drill reports a verification report counts, and a note naming why there
    are none when they cannot be read (the verifications still tell their part)."""
    try:
        drills, _damaged = await stored_reports(svc)
    except Exception as exc:  # noqa: BLE001 - named in the note, never a failure of the report
        return [], f"drill reports unreadable ({exc}): drills are not shown"
    return drills, ""


async def restore_tests_for_report(svc: Any) -> tuple[list[RestoreTestRecord], str]:
    """The stored restore-test records a verification report counts, and a note naming why
    there are none when they cannot be read."""
    try:
        records, _damaged = await stored_records(svc)
    except Exception as exc:  # noqa: BLE001 - named in the note, never a failure of the report
        return [], f"restore-test records unreadable ({exc}): restore-tests are not shown"
    return records, ""
