"""The record of one restore-test, stored in the primary's repository (its ``location``
names the copy it tested; core/drills/restore_test.py ``_Run._store``).

The object ``restore-tests/<id>``: the record's JSON (UTF-8, sorted keys) sealed with the
repository's AEAD and the associated data ``axisor/restore-test/v1`` || id, written once
and never rewritten, like drill reports (core/drills/report.py). Ids sort by time
(``YYYYMMDDTHHMMSSZ-`` + 8 hex digits), so a listing is the history in order.

Kept in the repository, not only in the job database, because the run that picks the next
snapshot must know which ones were tested, whichever host or process ran the earlier ones,
and because the evidence belongs with the data it speaks for (and survives the loss of the
state folder, as drill reports do).

Outcomes: ``passed`` (every sampled item restored and validated; ``checked`` says how many),
``failed`` (something restored differs, or is missing), ``cancelled`` and ``could not
run`` (say nothing about the data: never a pass).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from core.repository.sealed_by_id import open_sealed
from core.errors import DamagedObject, SnapshotNotFound, UsageError
from core.repository.repository import Repository
from core.storage.backend import ObjectExists, ObjectNotFound

AD_RESTORE_TEST = b"axisor/restore-test/v1"
PREFIX = "restore-tests"
RECORD_VERSION = 1
PASSED, FAILED, CANCELLED, NOT_RUN = "passed", "failed", "cancelled", "could not run"
OUTCOMES = (PASSED, FAILED, CANCELLED, NOT_RUN)
# A record is a few KiB; a planted object must not be read whole.
MAX_RECORD = 4 * 1024 * 1024
NOT_STORED = ("stored", "store_error", "exit_code")


def valid_id(record_id: str) -> bool:
    return (
        len(record_id) == 25
        and record_id[8] == "T"
        and record_id[15:17] == "Z-"
        and all(c in "0123456789abcdefTZ-" for c in record_id)
    )


@dataclass(frozen=True, slots=True)
class RestoreTestRecord:
    id: str
    snapshot: str
    source: str
    location: str  # where it read from
    kind: str  # files | tables
    started: str
    finished: str
    outcome: str  # one of OUTCOMES
    checked: int  # items restored and validated bit-exact (files) or by count and checksum (tables)
    sampled: int  # items the plan drew
    total: int  # items of that kind in the snapshot
    seed: int  # replays the draw: restore-test --snapshot ID --seed S
    items: tuple[str, ...] = ()  # the sampled items' names
    failures: tuple[str, ...] = ()
    error: str | None = None
    job: str | None = None
    host: str = ""
    program_version: str = ""
    method: str = ""  # how the items were validated, in words
    version: int = RECORD_VERSION
    # Not part of the stored object: where it was stored, or why it could not be.
    stored: str = ""
    store_error: str = ""
    exit_code: int = 0  # of the error that stopped a run that could not run

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED

    @property
    def share(self) -> float:
        """Percent of the snapshot's items that were checked."""
        return 100.0 * self.checked / self.total if self.total else 0.0

    def summary(self) -> str:
        """``12 of 340 files (3.5%)``, and why not when it did not pass."""
        text = f"{self.checked} of {self.total} {self.kind} ({self.share:.3g}%)"
        if self.outcome == PASSED:
            return text
        why = "; ".join(self.failures[:2]) or self.error or self.outcome
        return f"{text}: {why}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["share"] = round(self.share, 3)
        return data

    def encode(self) -> bytes:
        data = {k: v for k, v in self.to_dict().items() if k not in NOT_STORED}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()

    @classmethod
    def from_dict(cls, data: dict) -> RestoreTestRecord:
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"restore-test record version {data.get('version')!r} is not {RECORD_VERSION}")
        d = {k: v for k, v in data.items() if k != "share" and k not in NOT_STORED}
        d["items"] = tuple(d.get("items", ()))
        d["failures"] = tuple(d.get("failures", ()))
        record = cls(**d)
        if record.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {record.outcome!r}")
        for name in ("checked", "sampled", "total", "seed"):
            value = getattr(record, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} is {value!r}, not a count")
        return record


def _ad(record_id: str) -> bytes:
    return AD_RESTORE_TEST + record_id.encode("ascii")


def record_key(record_id: str) -> str:
    return f"{PREFIX}/{record_id}"


async def store_record(repo: Repository, record: RestoreTestRecord) -> str:
    """Write ``restore-tests/<id>`` once; the caller holds a shared lock."""
    key = record_key(record.id)
    try:
        await repo.backend.put(key, repo.cipher.seal(record.encode(), _ad(record.id)))
    except ObjectExists:
        raise UsageError(f"a restore-test record {record.id} is already stored; records are never rewritten") from None
    return key


async def load_record(repo: Repository, record_id: str) -> RestoreTestRecord:
    if not valid_id(record_id):
        raise SnapshotNotFound(f"{record_id!r} is not a restore-test id (e.g. 20261126T093500Z-1a2b3c4d)")
    key = record_key(record_id)
    try:
        plain = await open_sealed(repo, PREFIX, AD_RESTORE_TEST, record_id, MAX_RECORD, "restore-test record")
    except ObjectNotFound:
        raise SnapshotNotFound(f"no restore-test {record_id} in {repo.backend.location}") from None
    try:
        record = RestoreTestRecord.from_dict(json.loads(plain))
    except (ValueError, TypeError, KeyError) as exc:
        raise DamagedObject(key, f"malformed restore-test record: {exc}") from None
    if record.id != record_id:
        raise DamagedObject(key, f"record names {record.id!r}, not {record_id!r}")
    return record


async def list_records(repo: Repository) -> tuple[list[RestoreTestRecord], list[DamagedObject]]:
    """Every stored record, oldest first, and the ones that would not open."""
    ids = sorted([info.key.rsplit("/", 1)[-1] async for info in repo.backend.list(f"{PREFIX}/")])
    records: list[RestoreTestRecord] = []
    damaged: list[DamagedObject] = []
    for record_id in ids:
        if not valid_id(record_id):
            continue  # a temp file of an interrupted write on some backends
        try:
            records.append(await load_record(repo, record_id))
        except DamagedObject as exc:
            damaged.append(exc)
    return records, damaged


async def stored_records(service: Any) -> tuple[list[RestoreTestRecord], list[DamagedObject]]:
    """The records in the service's repository: restore-tests run by the CLI, the console or
    the scheduler all land there."""
    return await list_records(await service.repository(load_index=False))


__all__ = [
    "AD_RESTORE_TEST",
    "CANCELLED",
    "FAILED",
    "NOT_RUN",
    "OUTCOMES",
    "PASSED",
    "RestoreTestRecord",
    "list_records",
    "load_record",
    "record_key",
    "store_record",
    "stored_records",
]
