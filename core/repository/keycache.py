"""A derived key kept for the WAL path, so `wal-push` pays scrypt once, not per segment.

`archive_command` runs `axisor-backup wal-push` once per 16 MiB WAL segment; each run opened
the repository and so derived the key file's wrapping key with scrypt (about 0.1 s and
32 MiB: a quarter of a push's time). The first push stores that wrapping key here; later
pushes unwrap the master key with it directly.

What it holds and why that is no weaker than what is already there: the server's OS user
keeps the passphrase itself in `storage.passphrase_file`, readable by that user; the cache
holds the wrapping key derived from it, in a file only that user can read (0600, inside
the 0700 state folder, refused when owned by anyone else or readable by others). Whoever
can read the cache can read the passphrase file too.

The cache is used only when it matches exactly: the same key file (id, salt and wrapped
key unchanged: a rotated or removed key file voids it) and the same passphrase (checked by
an HMAC under the cached key, so a wrong passphrase still fails as a wrong passphrase).
Anything else and the cache is ignored, removed, and scrypt runs as before.

``KeyMemory`` is the same cache held in a long-running process's memory instead of a file:
the daemon keeps one for its jobs, so a scheduled backup does not derive the key again
beside pg_dump (~0.1 s of CPU, a tenth of a small database's whole dump, on 2 cores). The
daemon reads the passphrase itself for every job (a rotated passphrase file just works)
and already holds whatever it resolves; the wrapping key adds nothing to that, and the
same checks decide each use (the key file unchanged, the passphrase the same). A one-shot
`backup` that dumps a database keeps one too, for the same run only: it derives the key on a
thread while pg_dump runs (``derive_ahead``), and the run's open then finds it there.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core import crypto
from core.repository import keycache_file
from core.repository.keys import KeyFile

if TYPE_CHECKING:
    from core.storage.backend import Backend


def _check(kek: bytes, passphrase: str, key: KeyFile) -> str:
    return keycache_file.check(kek, passphrase, key.salt, key.data)


class KeyCache:
    """One cache file per repository id, in the caller's state folder."""

    def __init__(self, directory: Path, repo_id: str) -> None:
        self.path = directory / "keycache" / f"{repo_id}.json"

    def lookup(
        self, passphrase: str, keys: list[KeyFile]
    ) -> tuple[crypto.MasterKey | crypto.WriterKey, KeyFile] | None:
        raw = self._read()
        if raw is None:
            return None
        try:
            d = json.loads(raw)
            kek = base64.b64decode(d["kek"], validate=True)
            key = next(k for k in keys if k.id == d["key_id"])
            if not hmac.compare_digest(str(d["check"]), _check(kek, passphrase, key)):
                return None  # another passphrase: derive as usual (and do not evict)
            master = key.unwrap_with(kek)
        except (StopIteration, ValueError, KeyError, TypeError, crypto.DecryptError):
            self.forget()  # stale (key rotated or removed) or damaged
            return None
        return master, key

    def store(self, passphrase: str, key: KeyFile, kek: bytes) -> None:
        """Best effort: a cache that cannot be written costs the next push a derivation."""
        text = _entry(passphrase, key, kek)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except OSError:
            pass

    def forget(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _read(self) -> bytes | None:
        return keycache_file.read_private(self.path)


def _entry(passphrase: str, key: KeyFile, kek: bytes) -> str:
    return json.dumps(
        {"v": 1, "key_id": key.id, "kek": base64.b64encode(kek).decode(), "check": _check(kek, passphrase, key)}
    )


class KeyMemory:
    """Wrapping keys derived in this process, one per repository id (see the module's doc)."""

    def __init__(self) -> None:
        self._entries: dict[str, str] = {}
        self._ahead: asyncio.Future[None] | None = None

    def cache(self, repo_id: str) -> KeyCache:
        return _MemoryCache(self._entries, repo_id)

    def derive_ahead(self, backend: Callable[[], Backend], passphrase: str) -> None:
        """Derive the repository's wrapping key now, on a thread with a loop of its own
        (``backend`` builds the storage to read the key files from there). A one-shot
        backup that dumps a database starts it as soon as its config is loaded, so scrypt
        runs beside pg_dump instead of after the program's imports. A later open with this
        memory waits for it (``settled``) rather than deriving beside it; any failure (a
        wrong passphrase, no repository) is left for that open to meet and report."""
        self._ahead = asyncio.ensure_future(asyncio.to_thread(self._derive, backend, passphrase))
        # Its failure is the later open's to report; a run that never opens must not log it.
        self._ahead.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def settled(self) -> None:
        """Once a derivation started ahead has ended, however it ended."""
        if self._ahead is not None:
            await asyncio.gather(self._ahead, return_exceptions=True)

    def _derive(self, backend: Callable[[], Backend], passphrase: str) -> None:
        async def derive() -> None:
            from core.repository import keys, repo_config

            storage = backend()
            try:
                public = await repo_config.read_public(storage)
                await keys.unlock(storage, passphrase, self.cache(str(public.get("id", ""))))
            finally:
                await storage.close()

        asyncio.run(derive())


class _MemoryCache(KeyCache):
    """KeyCache's checks on an entry kept in a ``KeyMemory`` rather than in a file."""

    def __init__(self, entries: dict[str, str], repo_id: str) -> None:
        self._entries = entries
        self._id = repo_id

    def store(self, passphrase: str, key: KeyFile, kek: bytes) -> None:
        self._entries[self._id] = _entry(passphrase, key, kek)

    def forget(self) -> None:
        self._entries.pop(self._id, None)

    def _read(self) -> bytes | None:
        entry = self._entries.get(self._id)
        return entry.encode() if entry is not None else None
