"""Keyring objects: the encryption keys `key rotate` retired, sealed under the current one.

`keyring/<32 hex random>` holds sealed JSON ``{"v": 1, "retired": [{"enc", "retired_at"}]}``
under the current `enc`, AD ``axisor/keyring/v1`` || name. A reader opens every keyring object
it can and tries each retired key after the current one (docs/FORMAT.md "Keyring")."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from core import crypto
from core.repository.format import AD_KEYRING, KEYRING
from core.storage.backend import Backend, ObjectUnreadable

MAX_KEYRING = 256 * 1024  # bytes; a keyring of 1000 retired keys is about 90 KiB
MAX_RETIRED = 1000


@dataclass(frozen=True, slots=True)
class Retired:
    enc: bytes
    retired_at: str


@dataclass(frozen=True, slots=True)
class Keyring:
    retired: tuple[Retired, ...]
    objects: tuple[str, ...]  # the keyring objects that opened
    damaged: tuple[str, ...]  # each keyring object that did not open, and why (never deleted by rotation)

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(r.enc for r in self.retired)


def _ad(name: str) -> bytes:
    return AD_KEYRING + name.encode("ascii")


async def read(backend: Backend, master: crypto.MasterKey, known: tuple[bytes, ...] = ()) -> Keyring:
    """Every retired key in the keyring objects that open under ``master``'s current `enc`
    (or under a key in ``known``: a replica the last rotation did not reach keeps its keyring
    under the key it had). One that does not open is named in ``damaged`` (fatal only where a
    key it held is needed: the object that key sealed then fails to open, and says so)."""
    cipher = crypto.Cipher(master, known)
    retired: dict[bytes, Retired] = {}
    objects, damaged = [], []
    async for info in backend.list(f"{KEYRING}/"):
        name = info.key.rsplit("/", 1)[-1]
        if info.size > MAX_KEYRING:
            damaged.append(f"{info.key} ({info.size} bytes, more than a keyring ever holds)")
            continue
        try:
            plain = cipher.open(await backend.get(info.key), _ad(name))
            doc = json.loads(plain)
            if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("retired"), list):
                raise ValueError("not a version-1 keyring")
            for entry in doc["retired"][:MAX_RETIRED]:
                enc = base64.b64decode(entry["enc"], validate=True)
                if len(enc) != crypto.KEY_SIZE:
                    raise ValueError("a retired key has the wrong length")
                retired.setdefault(enc, Retired(enc, str(entry.get("retired_at", ""))))
            objects.append(info.key)
        except ObjectUnreadable as exc:
            damaged.append(f"{info.key} ({exc.reason})")
        except crypto.DecryptError:
            damaged.append(f"{info.key} (does not open with the current key)")
        except (ValueError, KeyError, TypeError) as exc:
            damaged.append(f"{info.key} (malformed: {exc})")
    return Keyring(tuple(retired.values()), tuple(objects), tuple(damaged))


def encode(master: crypto.MasterKey, retired: list[Retired]) -> tuple[str, bytes]:
    """A new keyring object (its key and sealed bytes) holding ``retired``, under ``master``."""
    name = os.urandom(16).hex()
    doc = {"v": 1, "retired": [{"enc": base64.b64encode(r.enc).decode(), "retired_at": r.retired_at} for r in retired]}
    sealed = crypto.Cipher(master).seal(json.dumps(doc).encode(), _ad(name))
    return f"{KEYRING}/{name}", sealed


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
