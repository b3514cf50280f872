"""wal-push ahead of the server's archiver.

PostgreSQL runs archive_command once per WAL file, one at a time, and each run of ours pays
the process start and the passphrase's scrypt (~0.35 s of a ~0.4 s push). A server writing
WAL faster than that falls behind, and pg_wal grows until its disk is full. So a push also
stores the other files the server has already marked ready (``archive_status/<name>.ready``
beside ``%p``), up to ``AHEAD_FILES`` or ``AHEAD_SECONDS``, with the repository already open,
and leaves a marker for each in the state directory. When the server then asks for one of
them, the marker answers without opening the repository: the file's size and SHA-256 must
equal what was stored, else the push runs in full.

A marker is written only after its file's WAL manifest is durable (``wal.push`` returned),
so it never claims what the repository does not hold. Markers are kept per repository id
(a re-initialised repository at the same path has another), used once, and ignored after
``MARKER_TTL``. Losing one only costs a normal push; so does a state directory that cannot
be written (wal-push then works as before).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import AxisorError
from core.repository.repository import Repository
from core.sources.postgres.wal import is_wal_name, push

AHEAD_FILES = 16
AHEAD_SECONDS = 3.0
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


def ready_files(path: Path) -> list[Path]:
    """The WAL files the server has marked ready to archive beside ``path`` (its
    ``archive_status/*.ready``), in name order, without ``path`` itself."""
    status = path.parent / "archive_status"
    try:
        names = sorted(e.name[:-len(".ready")] for e in os.scandir(status) if e.name.endswith(".ready"))
    except OSError:
        return []
    return [path.parent / n for n in names if n != path.name and is_wal_name(n)]


async def push_ahead(repo: Repository, path: Path, markers: Markers) -> tuple[str, ...]:
    """Store the files ready beside ``path`` (the caller holds the shared lock) and leave a
    marker for each; stop at the first that fails: the server's own push of it reports why."""
    done: list[str] = []
    deadline = time.monotonic() + AHEAD_SECONDS
    for ready in (await asyncio.to_thread(ready_files, path))[:AHEAD_FILES]:
        if time.monotonic() > deadline:
            break
        try:
            r = await push(repo, ready)
        except (AxisorError, OSError):
            break
        await asyncio.to_thread(markers.record, r.name, r.size, r.sha256)
        done.append(r.name)
    await asyncio.to_thread(markers.expire)
    return tuple(done)
