"""Sealing and opening single blobs. Pure CPU work, run on worker threads.

Sealed blob = nonce(12) | AES-256-GCM(plaintext = flag(1) | payload) | tag(16), with the
blob type and id bound as associated data, so a blob moved under another id or type fails.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import zstandard

from core import crypto
from core.errors import DamagedObject
from core.repository.format import COMPRESSION_NONE, COMPRESSION_ZSTD, blob_ad

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
    type: int
    id: bytes
    data: bytes
    raw_length: int


def seal_blob(cipher: crypto.Cipher, level: int, blob_type: int, blob_id: bytes,
              data: bytes | memoryview) -> SealedBlob:
    raw_length = len(data)
    packed = _compressor(level).compress(data) if level > 0 else b""
    if level > 0 and len(packed) < raw_length:
        payload = b"\x01" + packed
    else:
        payload = b"\x00" + bytes(data)
    return SealedBlob(blob_type, blob_id, cipher.seal(payload, blob_ad(blob_type, blob_id)), raw_length)


def open_blob(cipher: crypto.Cipher, blob_type: int, blob_id: bytes, sealed: bytes | memoryview,
              raw_length: int, where: str) -> bytes:
    """Decrypt, decompress and check the id; raise DamagedObject naming ``where``."""
    try:
        payload = cipher.open(sealed, blob_ad(blob_type, blob_id))
    except crypto.DecryptError as exc:
        raise DamagedObject(where, f"blob {blob_id.hex()[:16]} does not authenticate ({exc})") from None
    flag = payload[0] if payload else -1
    if flag == COMPRESSION_ZSTD:
        try:
            data = _decompressor().decompress(memoryview(payload)[1:], max_output_size=raw_length)
        except zstandard.ZstdError as exc:
            raise DamagedObject(where, f"blob {blob_id.hex()[:16]} does not decompress: {exc}") from None
    elif flag == COMPRESSION_NONE:
        data = payload[1:]
    else:
        raise DamagedObject(where, f"blob {blob_id.hex()[:16]} has unknown compression flag {flag}")
    if len(data) != raw_length or cipher.typed_id(blob_type, data) != blob_id:
        raise DamagedObject(where, f"blob {blob_id.hex()[:16]} content does not match its id")
    return data
