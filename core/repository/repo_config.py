"""The repository config object: version (readable without a key) and sealed parameters."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from core import crypto
from core.errors import DamagedObject, RepositoryNotFound, UnsupportedVersion
from core.repository.format import AD_CONFIG, CONFIG, READ_VERSIONS, REPO_VERSION
from core.storage.backend import Backend, ObjectNotFound, ObjectUnreadable, replace_object


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """Measured on bench/gen.py data against 256 KiB / 1 MiB / 8 MiB: appended logs are cut
    instead of stored again whole (1 % churn adds 15.5 MB instead of 17.8 MB; restic 18.0),
    the repository stays under restic's, and first backups got faster."""

    min_size: int = 128 * 1024
    avg_size: int = 512 * 1024
    max_size: int = 4 * 1024 * 1024
    seed: int = 0  # per repository, secret: boundaries reveal nothing across repositories


@dataclass(frozen=True, slots=True)
class RepoConfig:
    version: int
    id: str
    created: str
    chunker: ChunkerParams
    pack_size: int

    @classmethod
    def new(cls, pack_size: int) -> RepoConfig:
        seed = int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1) or 1
        return cls(
            version=REPO_VERSION,
            id=os.urandom(16).hex(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            chunker=ChunkerParams(seed=seed),
            pack_size=pack_size,
        )

    def encode(self, cipher: crypto.Cipher) -> bytes:
        secret = json.dumps(
            {
                "chunker": {
                    "min": self.chunker.min_size,
                    "avg": self.chunker.avg_size,
                    "max": self.chunker.max_size,
                    "seed": self.chunker.seed,
                },
                "pack_size": self.pack_size,
            }
        ).encode()
        sealed = cipher.seal(secret, AD_CONFIG + self.id.encode())
        return json.dumps(
            {
                "version": self.version,
                "id": self.id,
                "created": self.created,
                "sealed": base64.b64encode(sealed).decode(),
            },
            indent=1,
        ).encode()


MAX_CONFIG = 64 * 1024  # bytes; a real one is about 400


async def bounded_get(backend: Backend, key: str, limit: int, what: str) -> bytes:
    """``key``'s bytes, refused as damaged (not read) when a stat says it is larger than
    ``limit``: anyone who can write to storage can plant an object of any size.
    ObjectNotFound passes through."""
    size = await listed_size(backend, key)
    if size is not None and size > limit:
        raise DamagedObject(key, f"{size} bytes, more than any {what} this program writes (at most {limit}); not read")
    return await backend.get(key)


async def listed_size(backend: Backend, key: str) -> int | None:
    """The size of ``key`` by a stat, to bound a read before it happens; None when the stat
    fails for any reason but absence (the read that follows reports it as reads do)."""
    try:
        return (await backend.stat(key)).size
    except ObjectNotFound:
        raise
    except Exception:  # noqa: BLE001 - an unreachable location: let get() say so in its words
        return None


# What an operator does when the config or every key file of a location is gone: both are
# the same bytes at every location of the repository (docs/OPERATIONS.md).
LOST_CONFIG = (
    "do not run `init` here (a new repository could not read this one's data); copy `config` and "
    "`keys/` byte for byte from another location of this repository, or restore from one with "
    '`--from` (docs/OPERATIONS.md, "The config or the key files were lost")'
)


async def holds_objects(backend: Backend) -> bool:
    """Whether the location holds key files or snapshots: a repository, whatever its config says."""
    for folder in ("keys/", "snapshots/"):
        try:
            async for _info in backend.list(folder):
                return True
        except Exception:  # noqa: BLE001 - a listing that fails says nothing either way
            continue
    return False


async def read_public(backend: Backend) -> dict:
    """Read and version-check the config before any key is tried."""
    try:
        # Bounded before it is read: anyone who can write to storage can plant a config.
        size = await listed_size(backend, CONFIG)
        if size is not None and size > MAX_CONFIG:
            raise RepositoryNotFound(
                f"{backend.location}/config is {size} bytes, more than an Axisor Backup "
                f"config ever is (at most {MAX_CONFIG}); not read"
            )
        raw = await backend.get(CONFIG)
    except ObjectNotFound:
        if await holds_objects(backend):
            raise RepositoryNotFound(
                f"{backend.location}/config is missing, but the location holds a repository's "
                f"key files and snapshots: {LOST_CONFIG}"
            ) from None
        raise RepositoryNotFound(f"no repository at {backend.location}: run `axisor-backup init` first") from None
    except ObjectUnreadable as exc:
        raise RepositoryNotFound(f"{backend.location}/config {exc.reason}: {LOST_CONFIG}") from None
    try:
        d = json.loads(raw)
        version = d["version"]
    except (ValueError, KeyError, TypeError):
        if await holds_objects(backend):
            raise RepositoryNotFound(
                f"{backend.location}/config is damaged ({len(raw)} bytes, not an Axisor Backup "
                f"config), but the location holds a repository's key files and snapshots: "
                f"{LOST_CONFIG}"
            ) from None
        raise RepositoryNotFound(f"{backend.location}/config is not an Axisor Backup config") from None
    if version not in READ_VERSIONS:
        raise UnsupportedVersion(
            f"repository at {backend.location} has format version {version}; "
            f"this program reads versions {', '.join(map(str, READ_VERSIONS))} only: upgrade axisor-backup"
        )
    return d


# Bounds on what the sealed config may ask of a backup (docs/FORMAT.md): the chunker's
# sizes set its buffers (pyfastcdc needs min >= 64, avg >= 256, max >= 1024) and the pack
# size sets how much a writer holds before an upload.
MAX_CHUNK = 64 * 1024 * 1024
MAX_PACK_SIZE = 1024 * 1024 * 1024


def secret_of(public: dict, cipher: crypto.Cipher) -> bytes:
    """The sealed part's plaintext (a write-only key carries a copy: docs/FORMAT.md)."""
    return cipher.open(base64.b64decode(public["sealed"]), AD_CONFIG + public["id"].encode())


def decode(public: dict, cipher: crypto.Cipher) -> RepoConfig:
    """Open the sealed part; ValueError or KeyError for anything malformed or out of bounds."""
    return decode_secret(public, secret_of(public, cipher))


def decode_secret(public: dict, plain: bytes) -> RepoConfig:
    """The config from its public part and the sealed part's plaintext (bounded as decode)."""
    secret = json.loads(plain)
    if not isinstance(secret, dict) or not isinstance(secret.get("chunker"), dict):
        raise ValueError("sealed config is not a map with a chunker map")
    ch = secret["chunker"]
    sizes = [ch["min"], ch["avg"], ch["max"], ch["seed"], secret["pack_size"]]
    if not all(type(v) is int for v in sizes):
        raise ValueError("chunker sizes, seed or pack size are not integers")
    lo, avg, hi, seed, pack_size = sizes
    if not (
        64 <= lo <= avg <= hi <= MAX_CHUNK
        and avg >= 256
        and hi >= 1024
        and 0 <= seed < 2**64
        and 0 < pack_size <= MAX_PACK_SIZE
    ):
        raise ValueError(f"chunker sizes {lo}/{avg}/{hi} or pack size {pack_size} out of bounds")
    return RepoConfig(
        version=public["version"],
        id=public["id"],
        created=public["created"],
        chunker=ChunkerParams(min_size=lo, avg_size=avg, max_size=hi, seed=seed),
        pack_size=pack_size,
    )


async def upgrade(backend: Backend, raw_public: dict, to: int) -> None:
    """Rewrite ``config`` with format version ``to``, nothing else changed (the sealed part is
    kept byte for byte). The caller holds the exclusive lock. Objects never change in place,
    so this deletes and puts again; should the put fail, the old bytes are put back."""
    old = json.dumps(raw_public, indent=1).encode()
    await replace_object(backend, CONFIG, old, json.dumps({**raw_public, "version": to}, indent=1).encode())
