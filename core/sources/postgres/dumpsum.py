"""Per-table checksums read from pg_dump's own output as it streams past.

A logical backup used to checksum every table with a second scan on the server (each row's
text hashed in SQL): on a 1 GB pgbench database that scan cost the server more CPU than the
dump itself. The rows are already in the dump, so this module hashes them there, on the
client, at memory speed: the custom format's data block for each table is the table's COPY
text, one length-prefixed piece per row, and its BLAKE3 is the table's checksum.

Validation hashes the restored table the same way: ``pg_dump --data-only`` of the target
through the same parser. Both sides therefore go through pg_dump's own COPY with the same
output settings (pg_dump pins DateStyle, IntervalStyle and float digits; ``PGOPTIONS``
below pins the time zone and bytea format), and a table restored by pg_restore is a fresh
heap filled in dump order, so its rows come back in the same order.

The format (pg_backup_archiver.c, pg_backup_custom.c; archive versions 1.12 to 1.16):
header and table of contents first (pg_dump cannot seek back on a pipe), then one block
per entry with data: a type byte (1 = table data, 3 = large objects), the entry's dump id,
then length-prefixed pieces ending with a zero length. Integers are a sign byte and
``int_size`` little-endian bytes. A table's COPY text holds no NUL byte and no raw newline
except at the end of each row, so "newline, then a zero length" can only be the end of
a table's block: the end is found with one ``bytes.find`` rather than a walk over rows.
Anything else (an unknown version or block type) stops the checksums, never the backup.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
import blake3

from core.backup.chunker import ReadIntoStream
from core.sources.postgres import dump_args, names

METHOD = "dump-blake3-v1"
# Output settings pg_dump leaves to the session; pinned for the dump and for validation.
PGOPTIONS = dump_args.PGOPTIONS

_MAGIC = b"PGDMP"
_BLK_DATA = 1
_BLK_BLOBS = 3
_VERSIONS = range(0x010C00, 0x011100)  # 1.12.0 .. 1.16.x
_INT_SIZES = (4, 8)


class DumpFormatError(ValueError):
    """The stream is not a custom-format dump this parser understands."""


class _NeedMore(Exception):
    pass


class _Reader:
    def __init__(self, buf: bytes | bytearray) -> None:
        self.buf = buf
        self.pos = 0
        self.int_size = 4

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise _NeedMore
        out = bytes(self.buf[self.pos : end])
        self.pos = end
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def int(self) -> int:
        raw = self.take(1 + self.int_size)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def str(self) -> str | None:
        n = self.int()
        if n < 0:
            return None
        # Names are in the dump's encoding; surrogateescape keeps any bytes distinct.
        return self.take(n).decode("utf-8", "surrogateescape")


# Entries whose SQL is kept: the encoding, and the statements that name roles (carry.py).
_KEEP_DEFN = frozenset({"ENCODING", "ACL", "DEFAULT ACL", "POLICY"})


@dataclass(frozen=True, slots=True)
class TocEntry:
    dump_id: int
    has_data: bool
    desc: str
    namespace: str
    tag: str
    owner: str = ""
    deps: tuple[int, ...] = ()
    copy_stmt: str = ""  # TABLE DATA: ``COPY schema.table (columns) FROM stdin;``
    defn: str = ""  # kept for _KEEP_DEFN only: ``SET client_encoding = 'UTF8';``, the GRANTs of an ACL

    @property
    def key(self) -> str:
        """The canonical name (names.key) of the table a TABLE or TABLE DATA entry is."""
        return names.key(self.namespace, self.tag)


@dataclass(frozen=True, slots=True)
class DumpLayout:
    version: tuple[int, int, int]
    int_size: int
    toc_end: int  # offset of the first data block
    entries: dict[int, TocEntry]

    @property
    def encoding(self) -> str | None:
        """The client encoding the dump's data is in (its ENCODING entry)."""
        for e in self.entries.values():
            if e.desc == "ENCODING":
                m = re.search(r"client_encoding\s*=\s*'([^']+)'", e.defn)
                return m.group(1) if m else None
        return None

    def data_entries(self) -> dict[str, TocEntry]:
        """TABLE DATA entries by table key."""
        return {e.key: e for e in self.entries.values() if e.desc == "TABLE DATA"}


def parse_layout(buf: bytes | bytearray) -> DumpLayout:
    """The header and table of contents at the start of ``buf``; raises _NeedMore if ``buf``
    ends before the table of contents does."""
    layout = LayoutReader().parse(buf)
    if layout is None:
        raise _NeedMore
    return layout


class LayoutReader:
    """parse_layout, resumable: given the same buffer again, grown, it goes on from the last
    entry it read whole instead of starting over. (A 1,000-table dump's table of contents is
    1.5 MB; read again from the start each time more arrived, it cost a second parse, 0.4 s
    on a loaded host, after pg_dump had ended.)"""

    def __init__(self) -> None:
        self._pos = 0
        # (version, int size, offset size, version as one number), once the header is read
        self._head: tuple[tuple[int, int, int], int, int, int] | None = None
        self._left = 0
        self._entries: dict[int, TocEntry] = {}

    def parse(self, buf: bytes | bytearray) -> DumpLayout | None:
        """The layout once ``buf`` holds the whole table of contents, else None."""
        r = _Reader(buf)
        r.pos = self._pos
        try:
            if self._head is None:
                self._head = self._read_head(r)
                self._pos = r.pos
            version, r.int_size, off_size, number = self._head
            while self._left:
                entry = _read_entry(r, number, off_size)
                self._entries[entry.dump_id] = entry
                self._left -= 1
                self._pos = r.pos
        except _NeedMore:
            return None
        return DumpLayout(version, self._head[1], self._pos, self._entries)

    def _read_head(self, r: _Reader) -> tuple[tuple[int, int, int], int, int, int]:
        if r.take(5) != _MAGIC:
            raise DumpFormatError("not a pg_dump custom-format archive")
        vmaj, vmin, vrev = r.byte(), r.byte(), r.byte()
        version = (vmaj << 16) | (vmin << 8) | vrev
        if version not in _VERSIONS:
            raise DumpFormatError(f"archive version {vmaj}.{vmin}.{vrev} is not one this version reads")
        r.int_size = r.byte()
        if r.int_size not in _INT_SIZES:
            raise DumpFormatError(f"integer size {r.int_size} is not one this version reads")
        off_size = r.byte()
        if r.byte() != 1:  # archCustom
            raise DumpFormatError("not a custom-format archive")
        if version >= 0x010F00:
            compression = r.byte()  # algorithm: 0 none
        else:
            compression = r.int()  # level: 0 none
        if compression != 0:
            raise DumpFormatError("the archive is compressed")
        for _ in range(7):  # creation time
            r.int()
        r.str(), r.str(), r.str()  # database name, server version, pg_dump version
        self._left = r.int()
        return (vmaj, vmin, vrev), r.int_size, off_size, version


# After the dump id and the has-data flag, per field of an entry: -1 an integer, 0 a string
# skipped, n > 0 a string kept in slot n. Fields: table oid, oid, tag, desc; section;
# definition, drop, copy statement, namespace, tablespace, table access method; relkind
# (1.16+); owner, "false".
_TAG, _DESC, _DEFN, _COPY, _NAMESPACE, _OWNER = 1, 2, 3, 4, 5, 6
_ENTRY = (0, 0, _TAG, _DESC, -1, _DEFN, 0, _COPY, _NAMESPACE, 0, 0, _OWNER, 0)
_ENTRY_116 = (0, 0, _TAG, _DESC, -1, _DEFN, 0, _COPY, _NAMESPACE, 0, 0, -1, _OWNER, 0)
_INTS = {4: struct.Struct("<BI"), 8: struct.Struct("<BQ")}  # sign byte, little-endian magnitude


def _read_entry(r: _Reader, version: int, off_size: int) -> TocEntry:
    """One table-of-contents entry at ``r.pos`` (moved past it). Integers unpacked with
    struct, and only the strings a TocEntry keeps decoded (a definition only for
    _KEEP_DEFN): through _Reader's methods a 9,000-entry table of contents took 0.3 s, with
    every field decoded 0.2 s of CPU, read while pg_dump still runs."""
    buf, p, end = r.buf, r.pos, len(r.buf)
    unpack = _INTS[r.int_size].unpack_from
    step = 1 + r.int_size
    kept: list[str | None] = [None] * 7
    try:
        neg, v = unpack(buf, p)
        dump_id = -v if neg else v
        has_data = unpack(buf, p + step)[1] != 0
        p += 2 * step
        for slot in _ENTRY_116 if version >= 0x011000 else _ENTRY:
            neg, v = unpack(buf, p)
            p += step
            if slot < 0 or neg:  # an integer, or a null string
                continue
            if p + v > end:
                raise _NeedMore
            if slot and (slot != _DEFN or kept[_DESC] in _KEEP_DEFN):
                # Names are in the dump's encoding; surrogateescape keeps any bytes distinct.
                kept[slot] = buf[p : p + v].decode("utf-8", "surrogateescape")
            p += v
        deps = []
        while True:  # dependencies, ended by a null
            neg, v = unpack(buf, p)
            p += step
            if neg:
                break
            if p + v > end:
                raise _NeedMore
            dep = buf[p : p + v]
            p += v
            if dep.isdigit():
                deps.append(int(dep))
    except struct.error:
        raise _NeedMore from None
    p += 1 + off_size  # data offset: unknown on a pipe
    if p > end:
        raise _NeedMore
    r.pos = p
    desc = kept[_DESC] or ""
    return TocEntry(
        dump_id,
        has_data,
        desc,
        kept[_NAMESPACE] or "",
        kept[_TAG] or "",
        kept[_OWNER] or "",
        tuple(deps),
        kept[_COPY] or "",
        kept[_DEFN] or "",
    )


# A table's rows are counted in the stream when its data block is at most this long (its
# pieces walked in Python, ~2,000 rows at most); a longer block's table is counted with
# count(*) in SQL instead, told through ``on_uncounted`` as soon as the block passes it.
COUNT_LIMIT = 64 * 1024
_TRAILER = b"\\.\n\n\n"  # a backslash, a dot, three newlines: ends a COPY block in some pg_dump versions


class DumpChecksums:
    """Fed the dump's bytes in order (``feed(buf, start, end)``, the chunker's own buffer, no
    copy); after ``finish`` ``tables`` maps each table's key (names.key: ``schema.name``, each part
    quoted when it is not a plain lower-case identifier) to the BLAKE3 of its data block,
    or ``error`` says why the stream could not be read.

    ``counts`` maps the key of each table whose block is at most ``count_limit`` bytes to its
    row count: the newlines of its COPY text (a row's text has no other), read from its
    pieces, so a backup of many small tables runs no count(*) of its own. For every other
    table ``on_uncounted(key)`` is called once, from the feeding thread, as soon as that is
    known; ``on_uncounted(None)`` once when the stream cannot be read (no count after that).

    A table's block ends where the next block's header (known from the table of contents:
    blocks follow its order) comes right after a zero length. That 12-byte sequence is found
    with memchr on its rarest byte, so the scan costs little beyond the hash itself.

    For progress (read between feeds, never called back): ``fed`` counts the bytes fed,
    ``passing`` is the key of the table whose block is open (None between blocks),
    ``passing_bytes`` how much of it has passed, and ``passed`` lists (key, block length)
    of each table's block once it ends.
    Kept per buffer and per block, never per row."""

    def __init__(
        self, *, count_limit: int | None = None, on_uncounted: Callable[[str | None], None] | None = None
    ) -> None:
        self.tables: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self._count_limit = COUNT_LIMIT if count_limit is None else count_limit
        self._on_uncounted = on_uncounted
        self._rows: bytearray | None = None  # the open table's block so far, while it may be counted
        # The last bytes hashed of each table's block (its end: the last piece, the end marker),
        # which tell how this pg_dump ends a table's COPY data (``\\.`` or not).
        self.tails: dict[str, bytes] = {}
        self._last = b""
        self.error: str | None = None
        self.layout: DumpLayout | None = None
        self._head = bytearray()
        self._layout_reader = LayoutReader()
        self._blocks: list[tuple[int, int, str | None]] = []  # (kind, dump id, table) still to come
        self._header = bytearray()  # a block header being assembled
        self._expect: tuple[int, int, str | None] | None = None
        self._table: str | None = None
        self._hasher: blake3.blake3 | None = None
        self._seq = b""  # the end of this block plus the next block's header; b"" for the last
        self._pivot = 0
        self._carry = b""  # bytes held back: maybe the start of _seq
        self._tail = b""  # the last block's final bytes (its end marker is the stream's end)
        self._empty_start = False
        self._blobs: _BlobWalker | None = None
        self.fed = 0  # bytes of the stream fed so far
        self.passing: str | None = None
        self.passing_bytes = 0
        self.passed: list[tuple[str, int]] = []

    def feed(self, buf: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
        if self.error is not None:
            return
        end = len(buf) if end is None else end
        self.fed += end - start
        try:
            self._process(buf, start, end)
        except DumpFormatError as exc:
            self._fail(str(exc))

    def _fail(self, error: str) -> None:
        self.error = error
        if self._on_uncounted is not None:
            self._on_uncounted(None)

    def _uncounted(self, table: str | None) -> None:
        self._rows = None
        if self._on_uncounted is not None:
            self._on_uncounted(table or "")

    def finish(self) -> None:
        """End of stream: a block left open or missing is an error."""
        if self.error is not None:
            return
        try:
            if self.layout is None:
                layout = self._parse_head(final=True)
                assert layout is not None  # final=True raises rather than wait for more
                rest = bytes(self._head[layout.toc_end :])
                self._head = bytearray()
                self._process(rest, 0, len(rest))
            if self._table is not None and not self._seq:
                marker = self._marker()
                if not self._tail.endswith(marker):
                    raise DumpFormatError("the last table's data does not end with an end marker")
                self._close_table()
            if self._table is not None or self._blobs is not None or self._header or self._carry:
                raise DumpFormatError("the dump ended inside a data block")
            if self._blocks:
                raise DumpFormatError(f"the dump ended before {len(self._blocks)} of its data blocks")
        except DumpFormatError as exc:
            self._fail(str(exc))

    # -- internals ------------------------------------------------------------------------

    def _marker(self) -> bytes:
        assert self.layout is not None
        return b"\n" + b"\x00" * (1 + self.layout.int_size)

    def _header_bytes(self, kind: int, dump_id: int) -> bytes:
        assert self.layout is not None
        return bytes((kind, 0)) + dump_id.to_bytes(self.layout.int_size, "little")

    def _process(self, buf: bytes | bytearray, s: int, e: int) -> None:
        if self.layout is None:
            self._head += memoryview(buf)[s:e]
            layout = self._parse_head(final=False)
            if layout is None:
                return
            rest = bytes(self._head[layout.toc_end :])
            self._head = bytearray()
            buf, s, e = rest, 0, len(rest)
        while s < e:
            if self._table is not None:
                s = self._data(buf, s, e)
            elif self._blobs is not None:
                s = self._blobs.feed(buf, s, e)
                if self._blobs.done:
                    self._blobs = None
            else:
                s = self._block_header(buf, s, e)

    def _parse_head(self, final: bool) -> DumpLayout | None:
        """The layout once the head holds the whole table of contents; None until then."""
        layout = self._layout_reader.parse(self._head)
        if layout is None:
            if final:
                raise DumpFormatError("the dump ended inside its table of contents")
            return None
        self.layout = layout
        for entry in self.layout.entries.values():
            if entry.has_data:
                kind = _BLK_BLOBS if entry.desc in ("BLOBS", "LARGE OBJECTS") else _BLK_DATA
                table = entry.key if kind == _BLK_DATA else None
                self._blocks.append((kind, entry.dump_id, table))
        self._blocks.reverse()  # popped from the end, in table-of-contents order
        return layout

    def _block_header(self, buf: bytes | bytearray, s: int, e: int) -> int:
        assert self.layout is not None
        need = 2 + self.layout.int_size
        take = min(need - len(self._header), e - s)
        self._header += memoryview(buf)[s : s + take]
        if len(self._header) < need:
            return s + take
        if not self._blocks:
            raise DumpFormatError("a data block the table of contents does not list")
        kind, dump_id, table = self._blocks.pop()
        if bytes(self._header) != self._header_bytes(kind, dump_id):
            raise DumpFormatError(f"expected the data block of entry {dump_id}, found another")
        self._header = bytearray()
        if kind == _BLK_BLOBS:
            self._blobs = _BlobWalker(self.layout.int_size)
            return s + take
        self._table, self._hasher = table, blake3.blake3()
        self.passing, self.passing_bytes = table, 0
        self._rows = bytearray()
        if self._blocks:
            nxt_kind, nxt_id, _ = self._blocks[-1]
            nxt = self._header_bytes(nxt_kind, nxt_id)
            self._seq = self._marker() + nxt
            # memchr on the next id's low byte (rare in row data), else on the block type.
            self._pivot = len(self._seq) - len(nxt) + (2 if nxt[2] else 0)
            # An empty table: the marker's newline is not there, its zero length is. A
            # newline stands in for it (and is not hashed).
            self._carry = b"\n"
            self._empty_start = True
        else:
            self._seq = b""
            self._tail = b"\n"
        return s + take

    def _close_table(self) -> None:
        assert self._hasher is not None and self.layout is not None
        self.tables[self._table or ""] = self._hasher.hexdigest()[:32]
        self.tails[self._table or ""] = self._last
        self.passed.append((self._table or "", self.passing_bytes))
        self.passing = None
        if self._rows is not None:
            count = count_rows(self._rows, self.layout.int_size)
            if count is None:
                self._uncounted(self._table)
            else:
                self.counts[self._table or ""] = count
                self._rows = None
        self._table, self._hasher, self._carry, self._tail, self._last = None, None, b"", b"", b""

    def _hash(self, buf: bytes | bytearray, s: int, e: int) -> None:
        if s >= e:
            return
        assert self._hasher is not None
        self._hasher.update(memoryview(buf)[s:e])
        self.passing_bytes += e - s
        if self._rows is not None:
            if len(self._rows) + e - s > self._count_limit:
                self._uncounted(self._table)
            else:
                self._rows += memoryview(buf)[s:e]
        self._last = (self._last + bytes(buf[max(s, e - 32) : e]))[-32:]  # per buffer, not per row

    def _data(self, buf: bytes | bytearray, s: int, e: int) -> int:
        """Hash table data up to and including its end marker; return where the next block starts."""
        seq = self._seq
        if not seq:  # the last block: it ends where the stream does
            self._hash(buf, s, e)
            self._tail = (self._tail + bytes(buf[max(s, e - 8) : e]))[-8:]
            return e
        ln = len(seq)
        assert self.layout is not None  # data blocks come after the table of contents
        mlen = ln - 2 - self.layout.int_size
        if self._carry:
            fake = self._empty_start  # the leading newline of an empty table is not data
            self._empty_start = False
            carry = self._carry
            window = carry + bytes(buf[s : s + ln])
            at = window.find(seq)
            if at >= 0:
                cut = at + mlen
                self._hash(window, 1 if fake else 0, cut)
                self._close_table()
                if cut < len(carry):  # the next header starts in the carry: parse that first
                    rest = carry[cut:]
                    self._process(rest, 0, len(rest))
                    return s
                return s + cut - len(carry)
            if not fake:
                self._hash(carry, 0, len(carry))
            self._carry = b""
        pos = s
        while True:
            p = buf.find(seq[self._pivot], pos + self._pivot, e)
            if p < 0:
                break
            start = p - self._pivot
            if start + ln > e:
                break
            if buf[start : start + ln] == seq:
                self._hash(buf, s, start + mlen)
                self._close_table()
                return start + mlen
            pos = start + 1
        # Hold back a tail that may be the start of the sequence.
        keep = 0
        for k in range(min(ln - 1, e - s), 0, -1):
            if buf[e - k : e] == seq[:k]:
                keep = k
                break
        self._hash(buf, s, e - keep)
        self._carry = bytes(buf[e - keep : e])
        return e


def count_rows(block: bytes | bytearray, int_size: int) -> int | None:
    """The rows in a table's data block (its pieces and the zero length that ends them): the
    newlines of its COPY text, pg_dump's ``\\.`` trailer aside. None when the block is not
    pieces ending with a zero length (then the table is counted in SQL)."""
    unpack = _INTS[int_size].unpack_from
    step = 1 + int_size
    p, rows, end = 0, 0, len(block)
    try:
        while True:
            neg, v = unpack(block, p)
            p += step
            if neg or p + v > end:
                return None
            if not v:
                return rows if p == end else None
            if v != len(_TRAILER) or block[p : p + v] != _TRAILER:
                rows += block.count(b"\n", p, p + v)
            p += v
    except struct.error:
        return None


class _BlobWalker:
    """Large objects: (oid, pieces ending with a zero length)... ending with oid 0. Skipped
    (their checksum is taken on the server); walked piece by piece, ~16 KiB each."""

    def __init__(self, int_size: int) -> None:
        self.int_size = int_size
        self.done = False
        self._int = bytearray()
        self._skip = 0
        self._want_oid = True

    def feed(self, buf: bytes | bytearray, s: int, e: int) -> int:
        n = 1 + self.int_size
        while s < e and not self.done:
            if self._skip:
                step = min(self._skip, e - s)
                self._skip -= step
                s += step
                continue
            step = min(n - len(self._int), e - s)
            self._int += memoryview(buf)[s : s + step]
            s += step
            if len(self._int) < n:
                break
            value = int.from_bytes(self._int[1:], "little")
            self._int = bytearray()
            if self._want_oid:
                if value == 0:
                    self.done = True
                else:
                    self._want_oid = False
            elif value == 0:
                self._want_oid = True
            else:
                self._skip = value
        return s


def checksum_stream(stream: ReadIntoStream, bufsize: int = 1024 * 1024) -> DumpChecksums:
    """Read ``stream`` (a dump) to its end and return its per-table checksums."""
    sums = DumpChecksums()
    buf = bytearray(bufsize)
    view = memoryview(buf)
    while n := stream.readinto(view):
        sums.feed(buf, 0, n)
    sums.finish()
    return sums
