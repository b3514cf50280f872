"""Rollback and deletion detection: a snapshot this host saw must not vanish unexplained.

Whoever holds a location's storage credentials (not the repository key) can delete the
newest snapshots, or put back an old copy of the repository, and nothing in the objects
that remain says so. Two things together do (docs/FORMAT.md "Tombstones"):

- every deletion of a snapshot manifest this program makes (prune, forget, repair
  snapshots) first writes a **tombstone** ``forgotten/<snapshot id>``, sealed with the
  repository key (AD ``axisor/forgotten/v1`` || id): only a key holder can explain a
  disappearance;
- each host remembers the snapshot ids it saw in the primary location, in its state folder
  (``seen/<repository id>-<hash of the location>.json``; the folder is passed in, never
  looked up here).

Before a backup writes, the snapshots remembered and missing now must each have a
tombstone that opens; any other is a rollback or a deletion behind the program's back:
the backup refuses to write (RollbackDetected, exit 26), `status` turns critical, and the
owner decides (`axisor-backup acknowledge --rollback` accepts the repository as it is).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.errors import AxisorError, DamagedObject, Exit
from core.repository.sealed_by_id import SNAPSHOT_ID, open_sealed, put_once
from core.storage.backend import ObjectNotFound

log = logging.getLogger(__name__)

TOMBSTONES = "forgotten"
AD_TOMBSTONE = b"axisor/forgotten/v1"
MAX_TOMBSTONE = 64 * 1024


class RollbackDetected(AxisorError):
    """Snapshots this host saw are gone from the repository without a tombstone."""

    exit_code = Exit.ROLLBACK


@dataclass(frozen=True, slots=True)
class Tombstone:
    snapshot: str
    why: str  # "prune" | "forget" | "repair"
    at: str  # ISO 8601 with offset
    host: str
    replaced_by: str = ""  # repair: the rewritten snapshot
    version: int = 1

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


async def bury(repo, snapshot_id: str, why: str, replaced_by: str = "") -> None:
    """Write ``forgotten/<id>`` before the manifest is deleted (write once: a second
    deletion of the same id keeps the first tombstone)."""
    stone = Tombstone(
        snapshot_id, why, datetime.now(timezone.utc).isoformat(timespec="seconds"), socket.gethostname(), replaced_by
    )
    await put_once(repo, TOMBSTONES, AD_TOMBSTONE, snapshot_id, stone.encode())


async def explained(repo, snapshot_id: str) -> bool:
    """Whether a tombstone for ``snapshot_id`` exists and opens with the key (a file of that
    name planted by someone without the key explains nothing). A storage that cannot be read
    is not an answer: its error passes on, rather than a rollback reported that is not one.

    A write-only key cannot open a tombstone: for it, one that is there explains (weaker,
    and said in docs/SECURITY.md: whoever can write there could plant one; a full-key
    host's check, and `status` there, still authenticate it)."""
    if getattr(repo, "write_only", False):
        try:
            await repo.backend.stat(f"{TOMBSTONES}/{snapshot_id}")
            return True
        except ObjectNotFound:
            return False
    try:
        plain = await open_sealed(repo, TOMBSTONES, AD_TOMBSTONE, snapshot_id, MAX_TOMBSTONE, "tombstone")
        return json.loads(plain).get("snapshot") == snapshot_id
    except (ObjectNotFound, DamagedObject, ValueError, AttributeError):
        return False


@dataclass(frozen=True, slots=True)
class SeenSnapshots:
    """The snapshot ids this host saw in one repository's primary location (a JSON file in
    the state folder, replaced atomically)."""

    path: Path

    @classmethod
    def of(cls, state_dir: Path, repository_id: str, location: str) -> SeenSnapshots:
        """One file per repository *and* place: two copies of one repository (same id) at
        two paths are two memories; an old copy put back at the same path is caught."""
        where = hashlib.blake2b(location.encode(), digest_size=8).hexdigest()
        return cls(state_dir / "seen" / f"{repository_id}-{where}.json")

    def load(self) -> set[str] | None:
        """None when this host never recorded this repository (nothing to compare with)."""
        try:
            data = json.loads(self.path.read_text())
            ids = data.get("snapshots", [])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError) as exc:
            # Start again rather than refuse every backup; said, since this run checks nothing.
            log.warning("%s cannot be read (%s): this backup cannot check for vanished snapshots", self.path, exc)
            return None
        return {s for s in ids if isinstance(s, str) and SNAPSHOT_ID.fullmatch(s)}

    def save(self, ids: set[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"snapshots": sorted(ids)}))
        os.replace(tmp, self.path)


async def unexplained(repo, seen: set[str] | None, listed: set[str]) -> list[str]:
    """Ids this host saw that are gone now without a tombstone that opens, sorted."""
    if not seen:
        return []
    return sorted([sid for sid in seen - listed if not await explained(repo, sid)])


def rollback_error(location: str, missing: list[str], seen_file: Path) -> RollbackDetected:
    shown = ", ".join(m[:8] for m in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    return RollbackDetected(
        f"{location}: {len(missing)} snapshot(s) this host saw are gone without a prune, forget or repair "
        f"having removed them ({shown}): the repository was rolled back or snapshots were deleted behind "
        "this program's back; nothing is written. Check the storage (who deleted what, and when); "
        "restore from another location if needed; when the repository is as it should be, "
        f"`axisor-backup acknowledge --rollback` accepts it (it rewrites {seen_file})"
    )


__all__ = [
    "AD_TOMBSTONE",
    "RollbackDetected",
    "SeenSnapshots",
    "TOMBSTONES",
    "Tombstone",
    "bury",
    "explained",
    "rollback_error",
    "unexplained",
]
