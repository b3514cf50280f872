"""Repairing a damaged repository: `axisor-backup repair index|packs|snapshots`.

- ``rebuild`` (index.py): the index rebuilt from what is on storage. Index files that do
  not open are dropped, packs that are gone are unindexed, packs no index names are indexed
  from their own headers, and a pack that is truncated or whose bytes changed has its
  intact blobs copied into new packs (salvage) before it is deleted. ``repair index`` reads
  only the packs that need it; ``repair packs`` also reads the named packs (or all) whole.
- ``repair_snapshots`` (snapshots.py): snapshots whose trees name blobs the index no longer
  has are rewritten without them (files dropped or truncated, lost folders emptied), tagged
  ``repaired`` and with one warning line per loss; the originals are forgotten only after
  the new manifests are written.
- ``clean_temporary`` (temporary.py): leftovers of interrupted uploads older than a safe age.

Every step takes the exclusive repository lock (a shared one with ``dry_run``, which
writes nothing). Order for an operator: docs/OPERATIONS.md, "A pack was lost".
"""

from core.repair.index import RebuildReport, rebuild
from core.repair.snapshots import SnapshotRepairReport, repair_snapshots
from core.repair.temporary import TEMP_SAFE_AGE, TempCleanup, clean_temporary

__all__ = [
    "RebuildReport",
    "SnapshotRepairReport",
    "TEMP_SAFE_AGE",
    "TempCleanup",
    "clean_temporary",
    "rebuild",
    "repair_snapshots",
]
