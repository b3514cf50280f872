"""Constants of repository format version 1 (docs/FORMAT.md describes every byte)."""

from __future__ import annotations

import struct
from enum import IntEnum

# Version 2 (2026-12-04): index files sealed under the writers' key, and objects sealed by
# write-only keys (session keys). Readers read both; `init` writes 2; a version-1 repository
# becomes 2 when its first write-only key is added (docs/FORMAT.md "Versioning policy").
# Version 3 (2026-12-04): keyring objects (retired encryption keys, `key rotate`), which a
# reader must consult to open what was sealed before a rotation. `init` still writes 2; a
# repository becomes 3 at its first rotation.
REPO_VERSION = 2
ROTATED_VERSION = 3
READ_VERSIONS = (1, 2, 3)

PACK_MAGIC = b"AXP1"
# Trailer after the sealed header: header length (u32 little-endian) then the magic.
PACK_TRAILER = struct.Struct("<I4s")

COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1
# Flag bit: sealed under a write-only writer's session key, whose public key follows the flag.
SESSION_SEALED = 0x80

AD_BLOB = b"axisor/blob/v1"
AD_PACK_HEADER = b"axisor/pack-header/v1"
AD_INDEX = b"axisor/index/v1"
AD_SNAPSHOT = b"axisor/snapshot/v1"
AD_CONFIG = b"axisor/config/v1"
AD_KEY = b"axisor/key/v1"
AD_WRITER_KEY = b"axisor/key/write-only/v1"
AD_KEYRING = b"axisor/keyring/v1"

# Objects live under these folders of a location.
DATA = "data"
INDEX = "index"
SNAPSHOTS = "snapshots"
KEYS = "keys"
LOCKS = "locks"
KEYRING = "keyring"
CONFIG = "config"

ID_SIZE = 32


class BlobType(IntEnum):
    DATA = 0
    TREE = 1


def blob_ad(blob_type: int, blob_id: bytes, flag: int) -> bytes:
    return AD_BLOB + bytes((blob_type,)) + blob_id + bytes((flag,))


def pack_key(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"{DATA}/{h[:2]}/{h}"


def pack_id_from_key(key: str) -> bytes | None:
    name = key.rsplit("/", 1)[-1]
    try:
        raw = bytes.fromhex(name)
    except ValueError:
        return None
    return raw if len(raw) == ID_SIZE else None
