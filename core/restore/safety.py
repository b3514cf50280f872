"""Safety backups before a restore overwrites live data, and rollback from them.

A file restore that would overwrite, re-stamp or remove anything already in its target
first commits a snapshot of the affected source folders as they are now: source
``safety/<source>``, tag ``safety``, and ``metadata.safety_for`` linking it to the restore:

    {"restore": restore id, "snapshot": the snapshot being restored, "source": its source,
     "target": the restore target, "roots": [every source folder under the target],
     "absent": [those that did not exist before the restore]}

A database restore with ``--force`` does the same with a logical backup of the target
database (source ``database``, tag ``safety``, ``safety_for`` with ``restore``,
``conninfo`` — without password — and ``database``).

``rollback RESTORE_ID`` finds the safety snapshots of that restore in the repository (so it
works from any host that can open it) and puts them back exactly: files are restored over
their roots with ``--delete`` semantics, roots that did not exist before are removed (through folder descriptors, never following a
symlink: see core/restore/fsops.py), and
databases are restored with ``--force``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from core.backup.run import backup_paths
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.errors import RestoreRefused
from core.restore.fsops import open_target, remove_tree_at
from core.restore.plan import RestorePlan

SAFETY_TAG = "safety"


def new_restore_id() -> str:
    return uuid.uuid4().hex[:16]


def safety_source(source: str) -> str:
    return source if source.startswith("safety/") else f"safety/{source}"


async def file_safety_snapshot(
    repo: Repository, plan: RestorePlan, snap: Snapshot, restore_id: str, *, workers: int = 2
) -> Snapshot:
    """Commit what is now at the plan's roots (see module doc). The caller holds a lock."""
    existing = [r for r in plan.roots if os.path.lexists(r)]
    metadata = {
        "safety_for": {
            "restore": restore_id,
            "snapshot": snap.id,
            "source": snap.source,
            "target": str(plan.target),
            "roots": [str(r) for r in plan.roots],
            "absent": [str(r) for r in plan.roots if r not in existing],
        }
    }
    return await backup_paths(
        repo, safety_source(snap.source), existing, tags=(SAFETY_TAG,), metadata=metadata, workers=workers
    )


def safety_for(snap: Snapshot) -> dict | None:
    info = (snap.metadata or {}).get("safety_for")
    return info if SAFETY_TAG in snap.tags and isinstance(info, dict) else None


def find_safety(snaps: list[Snapshot], restore_id: str) -> list[Snapshot]:
    """The safety snapshots of restore ``restore_id`` (a unique prefix of it is enough)."""
    out = []
    for s in snaps:
        info = safety_for(s)
        if info and str(info.get("restore", "")).startswith(restore_id):
            out.append(s)
    return out


def absent_roots(snap: Snapshot) -> list[Path]:
    info = safety_for(snap) or {}
    target = Path(str(info.get("target", "/")))
    out = []
    for r in info.get("absent", []):
        p = Path(str(r))
        if p.is_absolute() and (p == target or target in p.parents):
            out.append(p)
    return out


def remove_root(root: Path) -> None:
    """Remove ``root`` (a source folder that did not exist before the restore) and all
    under it, through descriptors: its parent is opened from / without following a
    symlink, and nothing below it is followed either (any depth)."""
    parent = open_target(root.parent, create=False, check_trust=False) if root.parent != root else None
    if parent is None:
        return
    try:
        remove_tree_at(parent, os.fsencode(root.name))
    except OSError as exc:
        raise RestoreRefused(f"cannot remove {root} (rollback): {exc.strerror}") from None
    finally:
        os.close(parent)
