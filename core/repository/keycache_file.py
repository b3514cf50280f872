"""The key cache's file rules, standard library only (core/repository/keycache.py): the quick
wal-fetch (app/wal_fetch_quick.py) reads the cache before the program's imports, by the
same rules as KeyCache, so the two cannot drift apart."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

TAG = b"axisor/keycache/v1"
MAX_CACHE = 4096


def check(kek: bytes, passphrase: str, salt: bytes, data: bytes) -> str:
    """What ties a cached wrapping key to one passphrase and one key file (its salt and
    wrapped key): a changed passphrase or key file no longer matches."""
    return hmac.new(kek, TAG + passphrase.encode("utf-8") + salt + data, hashlib.sha256).hexdigest()


def read_private(path: Path, limit: int = MAX_CACHE) -> bytes | None:
    """The file's bytes, only when it is a regular file of ours that nobody else can read
    or write, of at most ``limit`` bytes (no symlink followed); None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            st.st_uid != os.geteuid()
            or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
            or not stat.S_ISREG(st.st_mode)
            or st.st_size > limit
        ):
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
