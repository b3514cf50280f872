"""Snapshot manifests: the commit point of a backup, one per source per run."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

SNAPSHOT_TYPES = ("full", "incremental", "differential")
_HEX_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Summary:
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    files_removed: int = 0
    dirs: int = 0
    total_files: int = 0
    total_bytes: int = 0  # logical bytes of every file in the snapshot
    bytes_read: int = 0  # what this run had to read
    data_blobs_new: int = 0
    data_added: int = 0  # new plaintext bytes stored by this run
    data_added_packed: int = 0  # what those became on storage (compressed + sealed)
    compression_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    time: str  # ISO 8601 with offset
    source: str  # e.g. "application/user_data"
    paths: tuple[str, ...]
    tree: str  # hex id of the root tree blob
    type: str = "full"
    parent: str | None = None
    backup_set: str = ""
    hostname: str = ""
    username: str = ""
    tags: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    summary: Summary = field(default_factory=Summary)
    program_version: str = ""
    # Source-specific facts, JSON values only: for a database the server version, tables
    # and exact row counts; empty for files.
    metadata: dict = field(default_factory=dict)
    id: str = ""  # filled when stored or loaded; not part of the manifest bytes

    def encode(self) -> bytes:
        d = asdict(self)
        d.pop("id")
        d["v"] = 1
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes, snapshot_id: str) -> Snapshot:
        d = json.loads(raw)
        if not isinstance(d, dict):
            raise ValueError("snapshot manifest is not a JSON object")
        if d.pop("v", None) != 1:
            raise ValueError("snapshot manifest is not version 1")
        summary = d.pop("summary", {})
        if not isinstance(summary, dict):
            raise ValueError("summary is not a map")
        summary = Summary(**summary)
        for key in ("paths", "tags", "warnings"):
            d[key] = tuple(d.get(key, ()))
        if not isinstance(d.setdefault("metadata", {}), dict):
            raise ValueError("metadata is not a map")
        snap = cls(**d, summary=summary, id=snapshot_id)
        if not isinstance(snap.time, str) or datetime.fromisoformat(snap.time).tzinfo is None:
            raise ValueError(f"time {snap.time!r} is not an ISO 8601 time with an offset")
        if not isinstance(snap.tree, str) or not _HEX_ID.fullmatch(snap.tree):
            raise ValueError(f"tree {snap.tree!r} is not a 64-digit hex id")
        return snap

    @property
    def datetime(self) -> datetime:
        return datetime.fromisoformat(self.time)

    @property
    def short_id(self) -> str:
        return self.id[:8]


SAFETY_SOURCE_PREFIX = "safety/"


def is_safety(snap: Snapshot) -> bool:
    """A snapshot a restore took of what it was about to overwrite (file restores name their
    source ``safety/<source>``; database restores record ``safety_for`` in the metadata)."""
    return snap.source.startswith(SAFETY_SOURCE_PREFIX) or "safety_for" in (snap.metadata or {})
