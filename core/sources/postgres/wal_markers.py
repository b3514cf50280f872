"""The markers a push ahead leaves (core/sources/postgres/wal_ahead.py): one file per WAL
file stored ahead of the server's own push of it.

Standard library only: the quick answer to a `wal-push` (app/wal_quick.py) reads a marker
before the program's other imports, which cost more than the answer itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

MARKER_TTL = 24 * 3600.0
DIR_NAME = "wal-ahead"


def file_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file, read in pieces."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while piece := f.read(1024 * 1024):
            h.update(piece)
            size += len(piece)
    return size, h.hexdigest()


@dataclass(frozen=True, slots=True)
class Hit:
    name: str
    size: int
    sha256: str


class Markers:
    """``<state dir>/wal-ahead/<repository id>/<WAL name>``: JSON {size, sha256, at}."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def open(cls, state_dir: Path, repository_id: str) -> Markers | None:
        """None when the folder cannot be made (a read-only state directory): no push-ahead."""
        if not repository_id.isalnum():
            return None
        folder = state_dir / DIR_NAME / repository_id
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            return None
        return cls(folder) if os.access(folder, os.W_OK) else None

    def take(self, path: Path) -> Hit | None:
        """Answer for ``path`` from its marker, if one matches the file; the marker is used up."""
        marker = self.folder / path.name
        try:
            d = json.loads(marker.read_text())
            size, digest, at = int(d["size"]), str(d["sha256"]), float(d["at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none (the usual case), or unreadable: the full push decides
        self._drop(marker)
        if time.time() - at > MARKER_TTL:
            return None
        try:
            if os.stat(path).st_size != size:
                return None
            actual = file_digest(path)
        except OSError:
            return None
        return Hit(path.name, size, digest) if actual == (size, digest) else None

    def record(self, name: str, size: int, sha256: str) -> None:
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps({"size": size, "sha256": sha256, "at": time.time()}))
            os.replace(tmp, self.folder / name)
        except OSError:
            self._drop(tmp)

    def expire(self) -> None:
        now = time.time()
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return
        for e in entries:
            try:
                if now - e.stat().st_mtime > MARKER_TTL:
                    self._drop(Path(e.path))
            except OSError:
                pass

    @staticmethod
    def _drop(p: Path) -> None:
        try:
            p.unlink()
        except OSError:
            pass
