"""Key files: each wraps the one master key under a passphrase-derived key (scrypt).

A key file is either *full* (it wraps the master key) or *write-only* (``kind =
"write-only"``: it wraps a ``crypto.WriterKey`` and the sealed config's plaintext, see
docs/FORMAT.md "Write-only keys"); both are opened the same way, by passphrase.

A key file is read from storage, so anyone who can write there can plant one. Its scrypt
parameters are bounded before any derivation (a planted p=60 cost every command 5.5 s),
and a file that does not parse, has the wrong lengths or parameters, or fails the plain
checksum kept in it is *damaged* and named as such: only a well-formed key that does not
authenticate means a wrong passphrase.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from datetime import datetime, timezone

from core import crypto
from core.errors import DamagedObject, WrongPassphrase
from core.repository.format import AD_KEY, AD_WRITER_KEY, KEYS
from core.storage.backend import Backend, ObjectUnreadable

if TYPE_CHECKING:
    from core.repository.keycache import KeyCache

# Within today's 256 MiB scrypt memory cap (128 * N * r = 256 MiB at N = 2^18, r = 8) and
# a few seconds of CPU at most; writers use N = 2^15, r = 8, p = 1 (docs/FORMAT.md).
MAX_N = 2**18
MAX_R = 8
MAX_P = 2
SALT_SIZE = 32
WRAPPED_SIZE = 12 + 64 + 16
MAX_WRITER_WRAPPED = 2048  # a write-only key's wrapped payload: three keys and the config, ~400 bytes
FULL, WRITE_ONLY = "full", "write-only"
MAX_KEY_FILE = 4096  # bytes of JSON; a real one is about 400
MAX_KEYS = 256  # key files tried per open; each costs one scrypt


# Shorter passphrases are refused at init and key add/passwd unless the operator insists:
# scrypt at N = 2^15 costs an attacker ~0.1 s a guess per core, which a short passphrase
# does not survive.
MIN_PASSPHRASE = 12


def weak_passphrase(passphrase: str) -> str | None:
    """Why ``passphrase`` is too weak to protect a repository, or None."""
    if len(passphrase) < MIN_PASSPHRASE:
        return (
            f"the passphrase has {len(passphrase)} characters; use at least {MIN_PASSPHRASE} "
            "(a few random words), or give --weak-passphrase to insist"
        )
    return None


class KeyFileDamaged(ValueError):
    """The file is not a key file we would trust with a derivation."""


def _checksum(n: int, r: int, p: int, salt: bytes, data: bytes) -> str:
    # Not a MAC (anyone who can write the file can recompute it): it tells a key file
    # damaged in storage from a wrong passphrase, which the operator must not confuse.
    return hashlib.sha256(b"axisor/key-sum/v1" + f"{n}:{r}:{p}:".encode() + salt + data).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyFile:
    id: str
    created: str
    host: str
    user: str
    n: int
    r: int
    p: int
    salt: bytes
    data: bytes
    kind: str = FULL

    def encode(self) -> bytes:
        extra = {"kind": self.kind} if self.kind != FULL else {}
        return json.dumps(
            {
                "v": 1,
                **extra,
                "created": self.created,
                "host": self.host,
                "user": self.user,
                "kdf": "scrypt",
                "n": self.n,
                "r": self.r,
                "p": self.p,
                "salt": base64.b64encode(self.salt).decode(),
                "data": base64.b64encode(self.data).decode(),
                "sum": _checksum(self.n, self.r, self.p, self.salt, self.data),
            },
            indent=1,
        ).encode()

    @classmethod
    def decode(cls, key_id: str, raw: bytes) -> KeyFile:
        """Parse and bound a key file; KeyFileDamaged says what is wrong with it."""
        if len(raw) > MAX_KEY_FILE:
            raise KeyFileDamaged(f"{len(raw)} bytes, more than a key file ever holds")
        try:
            d = json.loads(raw)
            if not isinstance(d, dict):
                raise KeyFileDamaged("not a JSON object")
            if d.get("v") != 1 or d.get("kdf") != "scrypt":
                raise KeyFileDamaged("unknown key file version or kdf")
            n, r, p = (d[k] for k in ("n", "r", "p"))
            if not all(type(v) is int for v in (n, r, p)):
                raise KeyFileDamaged("scrypt parameters are not integers")
            key = cls(
                id=key_id,
                created=str(d["created"]),
                host=str(d["host"]),
                user=str(d["user"]),
                n=n,
                r=r,
                p=p,
                salt=base64.b64decode(d["salt"], validate=True),
                data=base64.b64decode(d["data"], validate=True),
                kind=d.get("kind", FULL),
            )
            expected = d.get("sum")  # absent in key files written before it existed
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, KeyFileDamaged):
                raise
            raise KeyFileDamaged(f"does not parse ({exc.__class__.__name__}: {exc})") from None
        if not (2 <= n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
            raise KeyFileDamaged(
                f"scrypt parameters N={n}, r={r}, p={p} are outside the accepted "
                f"N <= 2^18 (a power of two), r <= {MAX_R}, p <= {MAX_P}"
            )
        if key.kind not in (FULL, WRITE_ONLY):
            raise KeyFileDamaged(f"unknown key kind {str(key.kind)[:20]!r}")
        wrapped_ok = (
            len(key.data) == WRAPPED_SIZE
            if key.kind == FULL
            else crypto.SEAL_OVERHEAD < len(key.data) <= MAX_WRITER_WRAPPED
        )
        if len(key.salt) != SALT_SIZE or not wrapped_ok:
            raise KeyFileDamaged("salt or wrapped key has the wrong length")
        if expected is not None and expected != _checksum(n, r, p, key.salt, key.data):
            raise KeyFileDamaged("fails its checksum")
        return key

    def unwrap(self, passphrase: str) -> AnyKey | None:
        return self.unwrap_deriving(passphrase)[0]

    def unwrap_deriving(self, passphrase: str) -> tuple[AnyKey | None, bytes]:
        """The key (None: wrong passphrase) and the wrapping key scrypt derived."""
        wrapping = crypto.derive_key(passphrase, self.salt, self.n, self.r, self.p)
        try:
            return self.unwrap_with(wrapping), wrapping
        except crypto.DecryptError:
            return None, wrapping

    def unwrap_with(self, wrapping: bytes) -> AnyKey:
        """The key under an already derived wrapping key; DecryptError when it does not open
        (a write-only payload that opens but does not parse is damage, said as such)."""
        if self.kind == FULL:
            return crypto.MasterKey.from_bytes(crypto.open_with(wrapping, self.data, AD_KEY))
        plain = crypto.open_with(wrapping, self.data, AD_WRITER_KEY)
        try:
            d = json.loads(plain)
            writer = crypto.WriterKey(
                ident=base64.b64decode(d["ident"], validate=True),
                shared=base64.b64decode(d["shared"], validate=True),
                public=base64.b64decode(d["public"], validate=True),
                config=json.dumps(d["config"]).encode(),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise crypto.DecryptError(f"write-only key payload does not parse ({exc})") from None
        if not all(len(k) == crypto.KEY_SIZE for k in (writer.ident, writer.shared, writer.public)):
            raise crypto.DecryptError("write-only key payload has keys of the wrong length")
        return writer


AnyKey = crypto.MasterKey | crypto.WriterKey


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def wrap(master: crypto.MasterKey, passphrase: str) -> KeyFile:
    return _wrap(master.to_bytes(), AD_KEY, FULL, passphrase)


def wrap_writer(master: crypto.MasterKey, config_secret: bytes, passphrase: str) -> KeyFile:
    """A write-only key file for ``master``'s repository: its writer keys and the sealed
    config's plaintext (``config_secret``: chunker and pack size, which a writer needs)."""
    w = master.writer()
    payload = json.dumps(
        {
            "ident": base64.b64encode(w.ident).decode(),
            "shared": base64.b64encode(w.shared).decode(),
            "public": base64.b64encode(w.public).decode(),
            "config": json.loads(config_secret),
        },
        separators=(",", ":"),
    ).encode()
    return _wrap(payload, AD_WRITER_KEY, WRITE_ONLY, passphrase)


def _wrap(payload: bytes, ad: bytes, kind: str, passphrase: str) -> KeyFile:
    salt = os.urandom(32)
    n, r, p = crypto.SCRYPT_N, crypto.SCRYPT_R, crypto.SCRYPT_P
    wrapping = crypto.derive_key(passphrase, salt, n, r, p)
    user = _who()
    return KeyFile(
        id=os.urandom(16).hex(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=socket.gethostname(),
        user=user,
        n=n,
        r=r,
        p=p,
        salt=salt,
        data=crypto.seal_with(wrapping, payload, ad),
        kind=kind,
    )


async def scan_keys(backend: Backend) -> tuple[list[KeyFile], list[str]]:
    """Readable key files, and a line naming each damaged one and why."""
    out, damaged = [], []
    async for info in backend.list(f"{KEYS}/"):
        key_id = info.key.rsplit("/", 1)[-1]
        if info.size > MAX_KEY_FILE:
            damaged.append(f"{info.key} ({info.size} bytes, more than a key file ever holds)")
            continue
        try:
            out.append(KeyFile.decode(key_id, await backend.get(info.key)))
        except ObjectUnreadable as exc:
            damaged.append(f"{info.key} ({exc.reason})")
        except KeyFileDamaged as exc:
            damaged.append(f"{info.key} ({exc})")  # cannot open the repository; others may
    return out, damaged


async def list_keys(backend: Backend) -> list[KeyFile]:
    return (await scan_keys(backend))[0]


async def store_key(backend: Backend, key: KeyFile) -> None:
    await backend.put(f"{KEYS}/{key.id}", key.encode())


async def unlock(
    backend: Backend, passphrase: str, cache: KeyCache | None = None, skip: frozenset[str] = frozenset()
) -> tuple[AnyKey, KeyFile]:
    """The key the passphrase opens (the master key, or a write-only key). With ``cache`` (the WAL path), a wrapping key
    derived by an earlier run is used when it still matches (core/repository/keycache.py)."""
    keys, damaged = await scan_keys(backend)
    # ``skip``: key files whose master key did not open the config (an interrupted `key rotate`).
    keys = [k for k in keys if k.id not in skip]
    if not keys:
        from core.repository.repo_config import LOST_CONFIG

        raise DamagedObject(
            f"{KEYS}/",
            f"repository at {backend.location} has no usable key file"
            + (f"; damaged: {'; '.join(damaged)}" if damaged else "")
            + f"; {LOST_CONFIG}",
        )
    # scrypt is the expensive part; run it off the event loop.
    import asyncio

    if cache is not None and keys:
        hit = cache.lookup(passphrase, keys)
        if hit is not None:
            return hit
    for key in keys[:MAX_KEYS]:
        try:
            master, wrapping = await asyncio.to_thread(key.unwrap_deriving, passphrase)
        except (ValueError, MemoryError):
            damaged.append(f"{KEYS}/{key.id} (scrypt refused its parameters)")
            continue
        if master is not None:
            if cache is not None:
                await asyncio.to_thread(cache.store, passphrase, key, wrapping)
            return master, key
    if damaged:
        # The passphrase may be right for a key that is damaged: say both, never just "wrong".
        raise WrongPassphrase(
            f"no usable key file at {backend.location} opens with this passphrase; "
            f"damaged key files: {'; '.join(damaged)}"
        )
    raise WrongPassphrase(f"wrong passphrase for the repository at {backend.location}")
