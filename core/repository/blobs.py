"""Sealing and opening single blobs. Pure CPU work, run on worker threads.

Sealed blob = flag(1) | [session(32)] | nonce(12) | AES-256-GCM(payload) | tag(16). The
flag says whether the payload is zstd or raw, and (bit 0x80) whether a write-only writer's
session key sealed it, whose public key then follows; it stays outside the ciphertext (so
sealing needs no copy) but is authenticated: the associated data binds the blob type, the
id and the flag, so a blob moved under another id or type, or with its flag flipped, fails
to open.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import zstandard

from core import crypto
from core.errors import DamagedObject
from core.repository.format import COMPRESSION_NONE, COMPRESSION_ZSTD, SESSION_SEALED, blob_ad

BLOB_OVERHEAD = 1 + crypto.NONCE_SIZE + crypto.TAG_SIZE

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # ZstdCompressor is not thread-safe; one per thread and level.
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


@dataclass(frozen=True, slots=True)
class SealedBlob:
    """A sealed blob in two parts, written back to back: ``head`` = flag | nonce and
    ``body`` = ciphertext | tag. Kept apart so nothing copies a megabyte chunk to prepend
    13 bytes; the pack is written with one gathered write."""

    type: int
    id: bytes
    head: bytes
    body: bytes
    raw_length: int

    @property
    def length(self) -> int:
        return len(self.head) + len(self.body)


def seal_blob(
    cipher: crypto.AnyCipher, level: int, blob_type: int, blob_id: bytes, data: bytes | memoryview
) -> SealedBlob:
    raw_length = len(data)
    payload: bytes | memoryview = data
    flag = COMPRESSION_NONE
    if level > 0:
        packed = _compressor(level).compress(data)
        if len(packed) < raw_length:
            payload, flag = packed, COMPRESSION_ZSTD
    if cipher.session:
        flag |= SESSION_SEALED
    nonce = os.urandom(crypto.NONCE_SIZE)
    body = cipher.encrypt(nonce, payload, blob_ad(blob_type, blob_id, flag))
    return SealedBlob(blob_type, blob_id, bytes((flag,)) + cipher.session + nonce, body, raw_length)


def open_blob(
    cipher: crypto.AnyCipher, blob_type: int, blob_id: bytes, sealed: bytes | memoryview, raw_length: int, where: str
) -> bytes:
    """Decrypt, decompress and check the id; raise DamagedObject naming ``where``."""
    short = blob_id.hex()[:16]
    if len(sealed) < BLOB_OVERHEAD:
        raise DamagedObject(where, f"blob {short} is shorter than its header")
    mv = memoryview(sealed)
    flag = mv[0]
    at, session = 1, mv[1:1]
    if flag & SESSION_SEALED:
        if len(sealed) < BLOB_OVERHEAD + crypto.SESSION_SIZE:
            raise DamagedObject(where, f"blob {short} is shorter than its header")
        at, session = 1 + crypto.SESSION_SIZE, mv[1 : 1 + crypto.SESSION_SIZE]
    try:
        payload = cipher.decrypt(
            mv[at : at + crypto.NONCE_SIZE], mv[at + crypto.NONCE_SIZE :], blob_ad(blob_type, blob_id, flag), session
        )
    except crypto.DecryptError as exc:
        raise DamagedObject(where, f"blob {short} does not authenticate ({exc})") from None
    flag &= ~SESSION_SEALED
    if flag == COMPRESSION_ZSTD:
        try:
            data = _decompressor().decompress(payload, max_output_size=raw_length)
        except zstandard.ZstdError as exc:
            raise DamagedObject(where, f"blob {short} does not decompress: {exc}") from None
    elif flag == COMPRESSION_NONE:
        data = payload
    else:
        raise DamagedObject(where, f"blob {short} has unknown compression flag {flag}")
    if len(data) != raw_length or cipher.typed_id(blob_type, data) != blob_id:
        raise DamagedObject(where, f"blob {short} content does not match its id")
    return data


def reseal_blob(
    cipher: crypto.Cipher, current: crypto.Cipher, blob_type: int, blob_id: bytes, sealed: bytes | memoryview
) -> tuple[bytes, bytes] | None:
    """``sealed`` (already checked by ``open_blob``) sealed again under the current key, as
    (head, body) for the packer; None when it is under the current key already. The payload
    is kept as it is (compressed or not): only the encryption changes. ``current``: the same
    key without the retired ones (``Cipher.current_only``), which decides what needs it."""
    mv = memoryview(sealed)
    flag = mv[0]
    at, session = 1, mv[1:1]
    if flag & SESSION_SEALED:
        at, session = 1 + crypto.SESSION_SIZE, mv[1 : 1 + crypto.SESSION_SIZE]
    nonce, body, ad = mv[at : at + crypto.NONCE_SIZE], mv[at + crypto.NONCE_SIZE :], blob_ad(blob_type, blob_id, flag)
    try:
        current.decrypt(nonce, body, ad, session)
        return None
    except crypto.DecryptError:
        pass
    payload = cipher.decrypt(nonce, body, ad, session)
    flag &= ~SESSION_SEALED  # a full key seals under `enc`: no session in front
    fresh = os.urandom(crypto.NONCE_SIZE)
    return bytes((flag,)) + fresh, current.encrypt(fresh, payload, blob_ad(blob_type, blob_id, flag))
