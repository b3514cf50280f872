"""The blob index's on-disk table: fixed-size records sorted by blob id, read with pread.

A local cache, not a repository format (docs/FORMAT.md, "Local caches", lays out every
byte). An `Index` above its threshold keeps its blobs here instead of in a dict, so memory
stays flat however many blobs a repository holds: what stays in memory is the bucket
directories (a few bytes per 64 blobs) and one bucket read per lookup.

Building is an external bucket sort: records are appended to an unlinked spill file in
1,024 buckets by their id's first 10 bits, then each bucket (a thousandth of the whole) is
read back, sorted and written out in turn. Records are stable-sorted by id and the first
of equal ids is kept, which is the dict index's "first location wins".

Lookups use pread rather than mmap: pages of a mapping count in the process's RSS as they
are touched, and a backup's lookups touch all of them; the page cache serves preads as
well without being charged to the process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import struct
from array import array
from collections.abc import Iterator
from pathlib import Path

import blake3
import msgpack

MAGIC = b"AXIDXv1\n"
# id, pack number, type, offset, length, raw length (sealed length and plaintext length)
RECORD = struct.Struct("<32sIBQQQ")
# By pack number: pack id, pack size, blobs of the table located in it.
PACK = struct.Struct("<32sQQ")
# Sorted by pack id: pack id, pack number.
PACK_KEY = struct.Struct("<32sI")
ALIAS = 2**64 - 1  # the size of a repeated pack's later numbers (no record names them)
# magic, tag, blob count, pack numbers, distinct packs, blob bits, pack bits, files bytes,
# file size, body hash
HEADER = struct.Struct("<8s32sQQQBBQQ32s")
HEADER_SIZE = HEADER.size + 32  # then the header's own hash
ID_SIZE = 32
SPILL_BITS = 10
SPILL_FLUSH = 8 * 1024 * 1024  # bytes buffered before a spill write
READ_PIECE = 8 * 1024 * 1024
BLOBS_PER_BUCKET = 64  # about 4 KiB read per lookup
PACKS_PER_BUCKET = 16


class TableDamaged(ValueError):
    pass


def _bits(count: int, per_bucket: int) -> int:
    return max(SPILL_BITS, min(32, (max(1, count // per_bucket)).bit_length()))


def _top(key: bytes, bits: int) -> int:
    return int.from_bytes(key[:4], "big") >> (32 - bits)


class Spill:
    """Fixed-size records whose first 32 bytes are an id, bucketed by the id's first bits
    into an unlinked temp file; read back a bucket at a time in the order they came."""

    def __init__(self, directory: Path, size: int) -> None:
        self._fd = _temp(directory)
        self.size = size
        self.count = 0
        self._end = 0
        self._buf = [bytearray() for _ in range(1 << SPILL_BITS)]
        self._buffered = 0
        self._segments: list[array] = [array("Q") for _ in range(1 << SPILL_BITS)]

    def add(self, record: bytes) -> None:
        self._buf[(record[0] << 2) | (record[1] >> 6)] += record
        self.count += 1
        self._buffered += len(record)
        if self._buffered >= SPILL_FLUSH:
            self.flush()

    def flush(self) -> None:
        for j, buf in enumerate(self._buf):
            if buf:
                os.pwrite(self._fd, buf, self._end)
                self._segments[j].extend((self._end, len(buf)))
                self._end += len(buf)
                buf.clear()
        self._buffered = 0

    def bucket(self, j: int) -> bytes:
        seg = self._segments[j]
        return b"".join(_pread(self._fd, seg[i + 1], seg[i]) for i in range(0, len(seg), 2))

    def close(self) -> None:
        os.close(self._fd)


def _pread(fd: int, length: int, offset: int) -> bytes:
    out = os.pread(fd, length, offset)
    while len(out) < length:  # a short read: regular files rarely do, but may
        more = os.pread(fd, length - len(out), offset + len(out))
        if not more:
            raise TableDamaged("shorter than its header says")
        out += more
    return out


class _Out:
    """Sequential writes to the new table, hashed as they go."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = HEADER_SIZE
        self.hash = blake3.blake3()

    def write(self, data: bytes | bytearray) -> None:
        if data:
            self.hash.update(data)
            mv = memoryview(data)
            while mv:
                n = os.pwrite(self.fd, mv, self.pos)
                self.pos += n
                mv = mv[n:]


class Table:
    """An open table file, read with pread; its two bucket directories in memory."""

    def __init__(
        self,
        fd: int,
        path: Path,
        owned: bool,
        tag: bytes,
        blob_count: int,
        pack_count: int,
        key_count: int,
        blob_bits: int,
        pack_bits: int,
        files_len: int,
    ) -> None:
        self._fd = fd
        self.path = path
        self.owned = owned  # a temp file of this process: removed when closed
        self.tag = tag
        self.blob_count = blob_count
        self.pack_count = pack_count  # pack numbers, a repeated pack's later ones included
        self.key_count = key_count  # distinct packs
        self.blob_bits = blob_bits
        self.pack_bits = pack_bits
        self._pack_keys = HEADER_SIZE
        self._pack_dir_at = self._pack_keys + key_count * PACK_KEY.size
        self._records = self._pack_dir_at + ((1 << pack_bits) + 1) * 8
        self._blob_dir_at = self._records + blob_count * RECORD.size
        self._packs = self._blob_dir_at + ((1 << blob_bits) + 1) * 8
        self._files = self._packs + pack_count * PACK.size
        self.size = self._files + files_len
        self.blob_dir = array("Q")
        self.pack_dir = array("Q")

    def _load_dirs(self) -> None:
        self.blob_dir = array("Q", _pread(self._fd, ((1 << self.blob_bits) + 1) * 8, self._blob_dir_at))
        self.pack_dir = array("Q", _pread(self._fd, ((1 << self.pack_bits) + 1) * 8, self._pack_dir_at))
        for d, n in ((self.blob_dir, self.blob_count), (self.pack_dir, self.key_count)):
            if d[0] != 0 or d[-1] != n or any(d[i] > d[i + 1] for i in range(len(d) - 1)):
                raise TableDamaged("bucket directory out of order")

    # -- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, tag: bytes, *, verify: bool = True, owned: bool = False) -> Table:
        """Open a table file; TableDamaged unless its header, size and (``verify``) body
        hash all match. Only a regular file of ours that nobody else can write is read."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise TableDamaged("not a private regular file of this user")
            head = os.pread(fd, HEADER_SIZE, 0)
            if len(head) != HEADER_SIZE or blake3.blake3(head[: HEADER.size]).digest() != head[HEADER.size :]:
                raise TableDamaged("header does not match its hash")
            magic, ftag, blobs, packs, keys, bbits, pbits, files_len, size, body = HEADER.unpack(head[: HEADER.size])
            if magic != MAGIC or ftag != tag:
                raise TableDamaged("another table's header")
            if not (SPILL_BITS <= bbits <= 32 and SPILL_BITS <= pbits <= 32) or keys > packs:
                raise TableDamaged("header out of range")
            table = cls(fd, path, owned, tag, blobs, packs, keys, bbits, pbits, files_len)
            if table.size != size or st.st_size != size:
                raise TableDamaged(f"{st.st_size} bytes, its header says {size}")
            if verify:
                h = blake3.blake3(max_threads=blake3.blake3.AUTO)
                for offset in range(HEADER_SIZE, size, READ_PIECE):
                    h.update(_pread(fd, min(READ_PIECE, size - offset), offset))
                if h.digest() != body:
                    raise TableDamaged("content does not match its hash")
            table._load_dirs()
            return table
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self.owned:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass

    # -- reading --------------------------------------------------------------------

    def find(self, blob_id: bytes) -> tuple[int, int, int, int, int] | None:
        """(pack number, type, offset, length, raw length) of a blob, or None."""
        if len(blob_id) != ID_SIZE:
            return None
        b = _top(blob_id, self.blob_bits)
        lo, hi = self.blob_dir[b], self.blob_dir[b + 1]
        if lo == hi:
            return None
        size = RECORD.size
        buf = _pread(self._fd, (hi - lo) * size, self._records + lo * size)
        i = _search(buf, size, blob_id)
        if i < 0:
            return None
        _, no, t, o, n, r = RECORD.unpack_from(buf, i * size)
        return no, t, o, n, r

    def pack_no(self, pack_id: bytes) -> int | None:
        """The number of a pack (its first, if it was added again), or None."""
        if len(pack_id) != ID_SIZE:
            return None
        b = _top(pack_id, self.pack_bits)
        lo, hi = self.pack_dir[b], self.pack_dir[b + 1]
        if lo == hi:
            return None
        size = PACK_KEY.size
        buf = _pread(self._fd, (hi - lo) * size, self._pack_keys + lo * size)
        i = _search(buf, size, pack_id)
        return None if i < 0 else PACK_KEY.unpack_from(buf, i * size)[1]

    def pack(self, no: int) -> tuple[bytes, int, int]:
        """(pack id, size, blobs located in it) of pack number ``no``."""
        return PACK.unpack(_pread(self._fd, PACK.size, self._packs + no * PACK.size))

    def packs(self) -> Iterator[tuple[bytes, int, int]]:
        """Every pack by number; a repeated pack's later numbers have size ALIAS."""
        yield from self._walk(self._packs, self.pack_count, PACK)

    def pack_ids_blob(self) -> bytes:
        """Every pack id, 32 bytes each by number (for walking all blobs)."""
        return b"".join(p[0] for p in self.packs())

    def records(self) -> Iterator[tuple[bytes, int, int, int, int, int]]:
        yield from self._walk(self._records, self.blob_count, RECORD)

    def _walk(self, start: int, count: int, st: struct.Struct) -> Iterator:
        per = max(1, READ_PIECE // st.size)
        for first in range(0, count, per):
            n = min(per, count - first)
            yield from st.iter_unpack(_pread(self._fd, n * st.size, start + first * st.size))

    def files(self) -> list[str]:
        raw = _pread(self._fd, self.size - self._files, self._files)
        try:
            files = msgpack.unpackb(raw, raw=False)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is damage
            raise TableDamaged(f"file list unreadable: {exc}") from None
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TableDamaged("file list malformed")
        return files

    def blob_bucket(self, j: int) -> bytes:
        """The records whose ids start with spill bucket ``j`` (SPILL_BITS bits)."""
        return self._range(self.blob_dir, self.blob_bits, j, self._records, RECORD.size)

    def pack_key_bucket(self, j: int) -> bytes:
        return self._range(self.pack_dir, self.pack_bits, j, self._pack_keys, PACK_KEY.size)

    def _range(self, directory: array, bits: int, j: int, start: int, size: int) -> bytes:
        shift = bits - SPILL_BITS
        lo, hi = directory[j << shift], directory[(j + 1) << shift]
        return _pread(self._fd, (hi - lo) * size, start + lo * size) if hi > lo else b""


def _search(buf: bytes, size: int, key: bytes) -> int:
    """Index of ``key`` among the records in ``buf`` (key first), or -1. A scan in C
    (a bucket is a few KiB) is several times faster than bisecting in Python; a match
    that does not start a record is skipped."""
    i = buf.find(key)
    while i >= 0 and i % size:
        i = buf.find(key, i + 1)
    return -1 if i < 0 else i // size


def _id(record: bytes) -> bytes:
    return record[:ID_SIZE]


def build(
    directory: Path,
    tag: bytes,
    old: Table | None,
    dropped: set[int],
    blobs: Spill | None,
    packs: PackSpill | None,
    files: list[str],
) -> Table:
    """A new table: ``old``'s records but those of ``dropped`` packs, then ``blobs``', the
    first of equal ids kept; ``old``'s packs then ``packs``' (numbered on from them; a
    pack seen again keeps its first number, and records naming a later one are moved to
    it). Written to a temp file of this process in ``directory`` (``Table.owned``)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"tmp-{os.getpid()}-{secrets.token_hex(6)}.axidx"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        out = _Out(fd)
        old_packs = old.pack_count if old is not None else 0
        pack_count = old_packs + (packs.count if packs is not None else 0)
        pbits = _bits(pack_count, PACKS_PER_BUCKET)
        alias: dict[int, int] = {}
        key_count, pack_dir = _merge_keys(out, pbits, old, packs, alias)
        out.write(pack_dir.tobytes())
        live = array("Q", bytes(8 * pack_count))
        estimate = (old.blob_count if old is not None else 0) + (blobs.count if blobs is not None else 0)
        bbits = _bits(estimate, BLOBS_PER_BUCKET)
        blob_count, blob_dir = _merge_records(out, bbits, old, blobs, dropped, alias, live)
        out.write(blob_dir.tobytes())
        # Packs by number: the old table's in order, then the new ones.
        piece = bytearray()
        no = 0
        for pid, size, _ in old.packs() if old is not None else ():
            piece += PACK.pack(pid, size, live[no])
            no += 1
            if len(piece) >= READ_PIECE:
                out.write(piece)
                piece.clear()
        for pid, size in packs.records() if packs is not None else ():
            piece += PACK.pack(pid, ALIAS if no in alias else size, live[no])
            no += 1
            if len(piece) >= READ_PIECE:
                out.write(piece)
                piece.clear()
        out.write(piece)
        assert no == pack_count
        files_raw = msgpack.packb(sorted(files), use_bin_type=True)
        out.write(files_raw)
        header = HEADER.pack(
            MAGIC, tag, blob_count, pack_count, key_count, bbits, pbits, len(files_raw), out.pos, out.hash.digest()
        )
        os.pwrite(fd, header + blake3.blake3(header).digest(), 0)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    try:
        return Table.open(path, tag, verify=False, owned=True)
    except BaseException:
        os.unlink(path)
        raise


def _records(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _merge_keys(
    out: _Out, bits: int, old: Table | None, packs: PackSpill | None, alias: dict[int, int]
) -> tuple[int, array]:
    """Write the pack keys sorted by id; a pack id seen again goes into ``alias``."""
    directory = array("Q", bytes(8 * ((1 << bits) + 1)))
    count = 0
    shift = 32 - bits
    for j in range(1 << SPILL_BITS):
        recs = _records(old.pack_key_bucket(j), PACK_KEY.size) if old is not None else []
        if packs is not None:
            more = packs.keys.bucket(j)
            if more:
                recs += _records(more, PACK_KEY.size)
                recs.sort(key=_id)  # stable: the first number stays first
        kept = []
        prev, first = b"", 0
        for r in recs:
            k = r[:ID_SIZE]
            no = int.from_bytes(r[32:36], "little")
            if k == prev:
                alias[no] = first
                continue
            prev, first = k, no
            kept.append(r)
            directory[(int.from_bytes(k[:4], "big") >> shift) + 1] += 1
        count += len(kept)
        out.write(b"".join(kept))
    for i in range(1, len(directory)):
        directory[i] += directory[i - 1]
    return count, directory


def _merge_records(
    out: _Out, bits: int, old: Table | None, blobs: Spill | None, dropped: set[int], alias: dict[int, int], live: array
) -> tuple[int, array]:
    """Write the blob records sorted by id, the first of equal ids kept."""
    directory = array("Q", bytes(8 * ((1 << bits) + 1)))
    count = 0
    shift = 32 - bits
    for j in range(1 << SPILL_BITS):
        recs = _records(old.blob_bucket(j), RECORD.size) if old is not None else []
        if dropped and recs:
            recs = [r for r in recs if int.from_bytes(r[32:36], "little") not in dropped]
        if blobs is not None:
            more = blobs.bucket(j)
            if more:
                new = _records(more, RECORD.size)
                if alias:
                    new = [_renumber(r, alias) for r in new]
                recs += new
                recs.sort(key=_id)  # stable: of equal ids, the first added stays first
        kept = []
        prev = b""
        for r in recs:
            k = r[:ID_SIZE]
            if k == prev:
                continue
            prev = k
            kept.append(r)
            directory[(int.from_bytes(k[:4], "big") >> shift) + 1] += 1
            live[int.from_bytes(r[32:36], "little")] += 1
        count += len(kept)
        out.write(b"".join(kept))
    for i in range(1, len(directory)):
        directory[i] += directory[i - 1]
    return count, directory


def _renumber(record: bytes, alias: dict[int, int]) -> bytes:
    no = alias.get(int.from_bytes(record[32:36], "little"))
    return record if no is None else record[:32] + no.to_bytes(4, "little") + record[36:]


class PackSpill:
    """Packs numbered on from a table's, not sorted yet: by number in one unlinked file,
    and their keys in a Spill."""

    def __init__(self, directory: Path) -> None:
        self.keys = Spill(directory, PACK_KEY.size)
        self._seq = _temp(directory)
        self._buf = bytearray()
        self._end = 0
        self.count = 0

    def add(self, pack_id: bytes, size: int, no: int) -> None:
        self._buf += _PACK_SEQ.pack(pack_id, size)
        self.keys.add(PACK_KEY.pack(pack_id, no))
        self.count += 1
        if len(self._buf) >= SPILL_FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            os.pwrite(self._seq, self._buf, self._end)
            self._end += len(self._buf)
            self._buf.clear()
        self.keys.flush()

    def records(self) -> Iterator[tuple[bytes, int]]:
        per = READ_PIECE // _PACK_SEQ.size
        for first in range(0, self._end, per * _PACK_SEQ.size):
            yield from _PACK_SEQ.iter_unpack(_pread(self._seq, min(per * _PACK_SEQ.size, self._end - first), first))

    def close(self) -> None:
        os.close(self._seq)
        self.keys.close()


_PACK_SEQ = struct.Struct("<32sQ")


def _temp(directory: Path) -> int:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"spill-{os.getpid()}-{secrets.token_hex(6)}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.unlink(path)  # gone with the process, whatever happens
    return fd


def sweep(directory: Path) -> None:
    """Remove the temp tables of processes that are gone (killed while building)."""
    try:
        names = [p for p in directory.iterdir() if p.name.startswith("tmp-") and p.suffix == ".axidx"]
    except OSError:
        return
    for p in names:
        try:
            pid = int(p.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                p.unlink()
        except (ValueError, IndexError, OSError):
            continue
