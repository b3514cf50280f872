"""Packs: sealed blobs back to back, then a sealed header listing them, then a trailer.

    [blob 0]...[blob n-1][sealed header][u32 LE header length][b"AXP1"]

The header is at the end so a pack can be streamed out as blobs arrive; the trailer's
fixed size lets a reader find the header with one ranged read.
"""

from __future__ import annotations

import msgpack

from core import crypto
from core.repository.format import AD_PACK_HEADER, PACK_MAGIC, PACK_TRAILER
from core.repository.index import PackEntry


class PackFormatError(ValueError):
    pass


class Packer:
    """Collects sealed blobs as separate buffers: no copying into one big buffer, the
    storage backend writes them out with one gathered write."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.entries: list[PackEntry] = []
        self.size = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, blob_type: int, blob_id: bytes, head: bytes, body: bytes, raw_length: int) -> None:
        length = len(head) + len(body)
        self.entries.append(PackEntry(blob_type, blob_id, self.size, length, raw_length))
        self.parts.append(head)
        self.parts.append(body)
        self.size += length

    def finalize(self, cipher: crypto.AnyCipher) -> tuple[bytes, list[bytes], list[PackEntry]]:
        """Return (pack id, pack parts, entries). CPU-bound: call from a worker thread."""
        header = msgpack.packb(
            [[e.type, e.id, e.offset, e.length, e.raw_length] for e in self.entries], use_bin_type=True
        )
        sealed = cipher.seal(header, AD_PACK_HEADER)
        self.parts.append(sealed)
        self.parts.append(PACK_TRAILER.pack(len(sealed), PACK_MAGIC))
        self.size += len(sealed) + PACK_TRAILER.size
        h = crypto.content_hasher()
        for part in self.parts:
            h.update(part)
        return h.digest(), self.parts, self.entries


def parse_trailer(trailer: bytes, pack_size: int) -> int:
    """Return the sealed header's length from the last PACK_TRAILER.size bytes."""
    if len(trailer) != PACK_TRAILER.size:
        raise PackFormatError("pack is too short for a trailer")
    length, magic = PACK_TRAILER.unpack(trailer)
    if magic != PACK_MAGIC:
        raise PackFormatError("pack trailer has the wrong magic")
    if length + PACK_TRAILER.size > pack_size or length < crypto.SEAL_OVERHEAD:
        raise PackFormatError(f"pack header length {length} does not fit a pack of {pack_size} bytes")
    return length


def decode_header(cipher: crypto.AnyCipher, sealed_header: bytes, header_offset: int) -> list[PackEntry]:
    try:
        raw = cipher.open(sealed_header, AD_PACK_HEADER)
    except crypto.DecryptError as exc:
        raise PackFormatError(f"pack header does not authenticate: {exc}") from None
    try:
        entries = [PackEntry(int(t), bytes(i), int(o), int(n), int(r)) for t, i, o, n, r in msgpack.unpackb(raw)]
    except Exception as exc:
        raise PackFormatError(f"pack header is malformed: {exc}") from None
    end = 0
    for e in entries:
        if e.offset != end or e.length < crypto.SEAL_OVERHEAD:
            raise PackFormatError("pack header entries are not contiguous")
        end = e.offset + e.length
    if end != header_offset:
        raise PackFormatError("pack header entries do not end where the header starts")
    return entries
