"""What a write-only host wrote, kept on the host: the metadata cache of write-only keys.

A write-only key cannot open the repository's snapshot manifests or trees (they are sealed
to the repository's public key), yet an incremental backup compares each folder with the
previous snapshot's tree, and the tripwire compares each snapshot with the one before. The
host wrote those trees itself, so it keeps a copy of what it wrote: the plaintext of its
own manifests and trees, in one SQLite file per repository in the state folder
(``writer-cache/<repository id>.sqlite``), each row sealed with AES-256-GCM under a key
made for this host (``writer-cache/host.key``, mode 0600), the row's kind and id bound in
its associated data. docs/FORMAT.md, "Local caches", has the layout.

Nothing here is trusted more than a cache deserves: a row that does not open is treated
as absent; a lost or damaged file costs one full scan (every file read and hashed again;
deduplication against the index still uploads nothing already stored), never a backup.
Bounded: the newest KEEP_SNAPSHOTS manifests per source, and trees no backup used for
TREE_DAYS days are dropped when a snapshot is saved.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

from core import crypto

log = logging.getLogger(__name__)

KEEP_SNAPSHOTS = 3
TREE_DAYS = 45
AD_OWN = b"axisor/own-cache/v1\0"
HOST_KEY = "host.key"


def _host_key(folder: Path) -> bytes:
    """This host's cache key, made on first use (0600; O_EXCL so two writers agree)."""
    path = folder / HOST_KEY
    try:
        key = path.read_bytes()
        if len(key) == crypto.KEY_SIZE:
            return key
        log.warning("%s has the wrong length: a new key is made (the cache starts empty)", path)
        path.unlink()
    except FileNotFoundError:
        pass
    key = os.urandom(crypto.KEY_SIZE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _host_key(folder)  # another writer made it first
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class OwnCache:
    """One repository's cache on this host. Used from the event loop: each call is one
    small SQLite statement, and commits happen once per saved snapshot."""

    def __init__(self, folder: Path, repository_id: str) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._key = _host_key(folder)
        self._repo = repository_id.encode()
        self.path = folder / f"{repository_id}.sqlite"
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            log.warning(
                "%s is damaged (%s): started again; the next backup of each source reads every file", self.path, exc
            )
            self.path.unlink(missing_ok=True)
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # One user at a time (the event loop), but a session may close it from another thread.
        db = sqlite3.connect(self.path, isolation_level="DEFERRED", check_same_thread=False)
        db.execute("CREATE TABLE IF NOT EXISTS trees (id BLOB PRIMARY KEY, data BLOB NOT NULL, used INTEGER NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS snapshots (id TEXT PRIMARY KEY, source TEXT NOT NULL, "
            "time TEXT NOT NULL, data BLOB NOT NULL)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS wal (name TEXT PRIMARY KEY, size INTEGER NOT NULL, sha256 TEXT NOT NULL)"
        )
        db.commit()
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)
        return db

    def _ad(self, kind: bytes, ident: bytes) -> bytes:
        return AD_OWN + self._repo + b"\0" + kind + b"\0" + ident

    def _seal(self, kind: bytes, ident: bytes, plain: bytes) -> bytes:
        return crypto.seal_with(self._key, plain, self._ad(kind, ident))

    def _open(self, kind: bytes, ident: bytes, sealed: bytes) -> bytes | None:
        try:
            return crypto.open_with(self._key, sealed, self._ad(kind, ident))
        except crypto.DecryptError:
            return None  # another host key, or damage: as if absent

    def put_tree(self, tree_id: bytes, raw: bytes) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO trees (id, data, used) VALUES (?, ?, ?)",
            (tree_id, self._seal(b"tree", tree_id, raw), int(time.time())),
        )

    def tree(self, tree_id: bytes) -> bytes | None:
        row = self._db.execute("SELECT data FROM trees WHERE id = ?", (tree_id,)).fetchone()
        if row is None:
            return None
        raw = self._open(b"tree", tree_id, row[0])
        if raw is not None:
            self._db.execute("UPDATE trees SET used = ? WHERE id = ?", (int(time.time()), tree_id))
        return raw

    def put_snapshot(self, snapshot_id: str, source: str, when: str, plain: bytes) -> None:
        """Record a manifest this host wrote, then commit and drop what is no longer needed."""
        self._db.execute(
            "INSERT OR REPLACE INTO snapshots (id, source, time, data) VALUES (?, ?, ?, ?)",
            (snapshot_id, source, when, self._seal(b"snapshot", snapshot_id.encode(), plain)),
        )
        self._db.execute(
            "DELETE FROM snapshots WHERE source = ? AND id NOT IN "
            "(SELECT id FROM snapshots WHERE source = ? ORDER BY time DESC LIMIT ?)",
            (source, source, KEEP_SNAPSHOTS),
        )
        self._db.execute("DELETE FROM trees WHERE used < ?", (int(time.time()) - TREE_DAYS * 86400,))
        self._db.commit()

    def snapshots(self) -> list[tuple[str, bytes]]:
        """(id, manifest plaintext) of every manifest kept that still opens."""
        out = []
        for sid, sealed in self._db.execute("SELECT id, data FROM snapshots ORDER BY time"):
            plain = self._open(b"snapshot", sid.encode(), sealed)
            if plain is not None:
                out.append((sid, plain))
        return out

    def put_wal(self, name: str, size: int, sha256: str) -> None:
        """A WAL file this host archived: a repeated push is answered from it. WAL names are
        not secret (they are object names), nor is a digest of a segment this host holds."""
        self._db.execute("INSERT OR REPLACE INTO wal (name, size, sha256) VALUES (?, ?, ?)", (name, size, sha256))
        self._db.commit()

    def wal(self, name: str) -> tuple[int, str] | None:
        row = self._db.execute("SELECT size, sha256 FROM wal WHERE name = ?", (name,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.commit()
            self._db.close()
