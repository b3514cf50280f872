"""Key files: each wraps the one master key under a passphrase-derived key (scrypt)."""

from __future__ import annotations

import base64
import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

from core import crypto
from core.errors import DamagedObject, WrongPassphrase
from core.repository.format import AD_KEY, KEYS
from core.storage.backend import Backend


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

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": 1, "created": self.created, "host": self.host, "user": self.user,
                "kdf": "scrypt", "n": self.n, "r": self.r, "p": self.p,
                "salt": base64.b64encode(self.salt).decode(),
                "data": base64.b64encode(self.data).decode(),
            },
            indent=1,
        ).encode()

    @classmethod
    def decode(cls, key_id: str, raw: bytes) -> KeyFile:
        d = json.loads(raw)
        if d.get("v") != 1 or d.get("kdf") != "scrypt":
            raise ValueError("unknown key file version or kdf")
        return cls(
            id=key_id, created=d["created"], host=d["host"], user=d["user"],
            n=int(d["n"]), r=int(d["r"]), p=int(d["p"]),
            salt=base64.b64decode(d["salt"]), data=base64.b64decode(d["data"]),
        )

    def unwrap(self, passphrase: str) -> crypto.MasterKey | None:
        wrapping = crypto.derive_key(passphrase, self.salt, self.n, self.r, self.p)
        try:
            return crypto.MasterKey.from_bytes(crypto.open_with(wrapping, self.data, AD_KEY))
        except crypto.DecryptError:
            return None


def wrap(master: crypto.MasterKey, passphrase: str) -> KeyFile:
    salt = os.urandom(32)
    n, r, p = crypto.SCRYPT_N, crypto.SCRYPT_R, crypto.SCRYPT_P
    wrapping = crypto.derive_key(passphrase, salt, n, r, p)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return KeyFile(
        id=os.urandom(16).hex(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=socket.gethostname(), user=user, n=n, r=r, p=p, salt=salt,
        data=crypto.seal_with(wrapping, master.to_bytes(), AD_KEY),
    )


async def scan_keys(backend: Backend) -> tuple[list[KeyFile], list[str]]:
    """Readable key files, and the keys of those that do not parse."""
    out, damaged = [], []
    async for info in backend.list(f"{KEYS}/"):
        key_id = info.key.rsplit("/", 1)[-1]
        try:
            out.append(KeyFile.decode(key_id, await backend.get(info.key)))
        except (ValueError, KeyError, TypeError):
            damaged.append(info.key)  # cannot open the repository; others may
    return out, damaged


async def list_keys(backend: Backend) -> list[KeyFile]:
    return (await scan_keys(backend))[0]


async def store_key(backend: Backend, key: KeyFile) -> None:
    await backend.put(f"{KEYS}/{key.id}", key.encode())


async def unlock(backend: Backend, passphrase: str) -> tuple[crypto.MasterKey, KeyFile]:
    keys, damaged = await scan_keys(backend)
    if not keys:
        raise DamagedObject(", ".join(damaged) or f"{KEYS}/",
                            f"repository at {backend.location} has no readable key file")
    # scrypt is the expensive part; run it off the event loop.
    import asyncio

    for key in keys:
        try:
            master = await asyncio.to_thread(key.unwrap, passphrase)
        except (ValueError, MemoryError):
            continue  # scrypt refused the file's parameters: a damaged key file
        if master is not None:
            return master, key
    raise WrongPassphrase(f"wrong passphrase for the repository at {backend.location}")
