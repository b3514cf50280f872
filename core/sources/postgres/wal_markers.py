"""The markers a push ahead leaves (core/sources/postgres/wal_ahead.py): one file per WAL
file stored ahead of the server's own push of it.

Standard library only: the quick answer to a `wal-push` (app/wal_quick.py) reads a marker
before the program's other imports, which cost more than the answer itself.

A marker names what was stored by size and SHA-256 and, when it could be sure, by the
file's *identity* at the push (device, inode, size, mtime and ctime in nanoseconds). An
answer then compares that identity instead of hashing the 16 MiB again (the push hashed it
once while storing it; the second SHA-256 was a third of an answer's CPU). Sure means: the
identity did not change while the push read the file, and the file's last change (ctime)
lies more than ``RACY_SECONDS`` before the read began. Every change to a file sets its ctime
from the kernel's clock, coarse by at most a tick (a few ms), so any change after the read
began gives a ctime the marker does not hold, as does a new file under the name (another
inode): the full push then compares the bytes with the archived manifest and refuses
different content (exit 17) exactly as before. Without an identity (a file still being
written, a clock set back), the answer hashes the file as before.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.sources.postgres.wal_spool import file_digest

__all__ = ["Hit", "Markers", "file_digest", "identity", "stable_identity"]

MARKER_TTL = 24 * 3600.0
DIR_NAME = "wal-ahead"
RACY_SECONDS = 0.1  # a file changed this close to the push's read is hashed at the answer


def identity(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def stable_identity(before: os.stat_result, after: os.stat_result, read_started_ns: int) -> str:
    """The identity of a file read between ``before`` and ``after`` (fstat of the open file)
    when it may stand for the bytes read (see the module's doc), else ""."""
    if identity(before) != identity(after) or before.st_ctime_ns > read_started_ns - int(RACY_SECONDS * 1e9):
        return ""
    return identity(after)


@dataclass(frozen=True, slots=True)
class Hit:
    name: str
    size: int
    sha256: str
    hashed: bool = True  # False: answered by the file's identity, the bytes not read again


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
            ident = str(d.get("identity") or "")
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none (the usual case), or unreadable: the full push decides
        self._drop(marker)
        if time.time() - at > MARKER_TTL:
            return None
        try:
            st = os.stat(path)
            if st.st_size != size:
                return None
            if ident and ident == identity(st) and st.st_ctime_ns <= time.time_ns():
                return Hit(path.name, size, digest, hashed=False)  # the bytes the push read and stored
            actual = file_digest(path)
        except OSError:
            return None
        return Hit(path.name, size, digest) if actual == (size, digest) else None

    def record(self, name: str, size: int, sha256: str, ident: str = "") -> None:
        """``ident``: stable_identity() of the file as the push read it, "" when unsure."""
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        doc: dict[str, object] = {"size": size, "sha256": sha256, "at": time.time()}
        if ident:
            doc["identity"] = ident
        try:
            tmp.write_text(json.dumps(doc))
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
