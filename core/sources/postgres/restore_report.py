"""What a logical restore reports: each restored table's row count and checksum against
the snapshot's (``TableCheck``, built by ``_table_checks``), and the restore as a whole
(``DbRestoreReport``: bytes, time, warnings, the safety snapshot, what was carried and
what was not)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.sources.postgres import names, pgglobals


@dataclass(frozen=True, slots=True)
class TableCheck:
    table: str  # names.key: "schema.name", parts quoted when not plain lower-case identifiers
    expected: int
    actual: int | None  # None: the table is missing after the restore
    expected_checksum: str | None = None  # None: the snapshot predates row checksums (or counts only)
    actual_checksum: str | None = None
    schema: str = ""
    name: str = ""
    note: str | None = None  # how the checksum was taken when not by pg_dump, or why it could not be

    @property
    def checksum_ok(self) -> bool | None:
        if self.expected_checksum is None:
            return None
        return self.actual_checksum == self.expected_checksum

    @property
    def ok(self) -> bool:
        return self.actual == self.expected and self.checksum_ok is not False


@dataclass
class DbRestoreReport:
    snapshot: str
    database: str
    target: str  # where, without credentials
    created: bool
    bytes: int = 0
    seconds: float = 0.0
    tables: list[TableCheck] = field(default_factory=list)
    schema_fingerprint_match: bool | None = False  # None: not compared (partial restore)
    warnings: list[str] = field(default_factory=list)
    partial: bool = False
    safety_snapshot: str | None = None  # the backup of the target taken before --force
    large_objects: dict | None = None  # {"expected": .., "actual": .., "ok": ..} when recorded
    restore_id: str = ""  # links the safety snapshot; `rollback RESTORE_ID`
    # Restored tables with rows that the snapshot has no row count for (extension configuration
    # tables: the backup leaves extension members out of its counts): [{"table", "reason"}].
    skipped: list[dict] = field(default_factory=list)
    count_only_reason: str | None = None  # why row checksums were not compared, when they were not
    # What the restore did not carry (ownership, privileges, policies, roles, database
    # properties), each with why (carry.py); empty when everything was carried (``carried``).
    not_restored: list[pgglobals.NotRestored] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)
    roles_created: list[str] = field(default_factory=list)  # by --roles

    @property
    def ok(self) -> bool:
        lo_ok = self.large_objects is None or self.large_objects.get("ok", True)
        return all(t.ok for t in self.tables) and lo_ok

    @property
    def mismatches(self) -> list[TableCheck]:
        return [t for t in self.tables if not t.ok]

    def validation(self) -> dict:
        """What was validated, counted: every table of the snapshot that was restored is in
        ``tables`` (a missing one fails), ``skipped`` are the others restored."""
        checked = [t for t in self.tables if t.actual is not None]
        return {
            "tables": len(self.tables) + len(self.skipped),
            "validated": len(self.tables),
            "with_checksum": sum(1 for t in self.tables if t.checksum_ok is not None),
            "count_only": sum(1 for t in self.tables if t.checksum_ok is None),
            "count_only_reason": self.count_only_reason,
            "skipped": list(self.skipped),
            "missing": len(self.tables) - len(checked),
            "failed": len(self.mismatches),
        }


def _table_checks(
    expected: dict[str, int],
    actual: Mapping[str, tuple[int, str | None]],
    checksums: dict[str, str],
    notes: dict[str, str],
) -> list[TableCheck]:
    checks = []
    for t, count in sorted(expected.items()):
        try:
            schema, rel = names.parse_key(t)
        except ValueError:
            schema, rel = "", t
        checks.append(
            TableCheck(
                t,
                count,
                actual[t][0] if t in actual else None,
                checksums.get(t),
                actual[t][1] if t in actual else None,
                schema,
                rel,
                notes.get(t),
            )
        )
    return checks
