"""The blob index: blob id -> (pack, offset, length), loaded from every index file.

Values are kept as plain tuples with packs numbered, so a large repository costs about
a hundred bytes per blob in memory rather than an object each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgpack


@dataclass(frozen=True, slots=True)
class PackEntry:
    type: int
    id: bytes
    offset: int
    length: int  # sealed length on storage
    raw_length: int  # plaintext length


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack_id: bytes
    type: int
    offset: int
    length: int
    raw_length: int


class IndexFormatError(ValueError):
    pass


class Index:
    def __init__(self) -> None:
        self._packs: list[bytes] = []
        self._pack_sizes: list[int] = []
        self._pack_no: dict[bytes, int] = {}
        self._blobs: dict[bytes, tuple[int, int, int, int, int]] = {}
        self.files: set[str] = set()  # index object keys already loaded

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)

    def has_pack(self, pack_id: bytes) -> bool:
        return pack_id in self._pack_no

    def pack_ids(self) -> list[bytes]:
        return list(self._packs)

    def pack_size(self, pack_id: bytes) -> int:
        return self._pack_sizes[self._pack_no[pack_id]]

    def add_pack(self, pack_id: bytes, size: int, entries: list[PackEntry]) -> None:
        no = self._pack_no.get(pack_id)
        if no is None:
            no = len(self._packs)
            self._packs.append(pack_id)
            self._pack_sizes.append(size)
            self._pack_no[pack_id] = no
        for e in entries:
            # The first location wins: duplicates across packs are harmless copies.
            self._blobs.setdefault(e.id, (no, e.type, e.offset, e.length, e.raw_length))

    def drop_packs(self, pack_ids: set[bytes]) -> int:
        """Forget every blob located in ``pack_ids`` (packs found missing or truncated), so
        a writer stores those blobs again instead of referencing them. A copy of such a
        blob in another pack is forgotten too (the first location won): it is merely
        stored once more. Returns the number of blobs forgotten."""
        gone = {self._pack_no[p] for p in pack_ids if p in self._pack_no}
        if not gone:
            return 0
        drop = [b for b, v in self._blobs.items() if v[0] in gone]
        for b in drop:
            del self._blobs[b]
        return len(drop)

    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        v = self._blobs.get(blob_id)
        if v is None:
            return None
        return BlobLocation(self._packs[v[0]], v[1], v[2], v[3], v[4])

    def blobs(self) -> Iterator[tuple[bytes, BlobLocation]]:
        for blob_id, v in self._blobs.items():
            yield blob_id, BlobLocation(self._packs[v[0]], v[1], v[2], v[3], v[4])


IndexedPack = tuple[bytes, int, list[PackEntry]]  # pack id, pack size, blobs


def encode_index(packs: list[IndexedPack]) -> bytes:
    return msgpack.packb(
        {"v": 1, "packs": [[pid, size, [[e.type, e.id, e.offset, e.length, e.raw_length] for e in entries]]
                           for pid, size, entries in packs]},
        use_bin_type=True,
    )


def decode_index(raw: bytes) -> list[IndexedPack]:
    try:
        d = msgpack.unpackb(raw, raw=False)
        if d.get("v") != 1:
            raise IndexFormatError("index is not version 1")
        return [(bytes(pid), int(size),
                 [PackEntry(int(t), bytes(i), int(o), int(n), int(r)) for t, i, o, n, r in entries])
                for pid, size, entries in d["packs"]]
    except IndexFormatError:
        raise
    except Exception as exc:  # msgpack and shape errors alike mean a malformed index
        raise IndexFormatError(f"malformed index: {exc}") from None
