"""The blob index: blob id -> (pack, offset, length), loaded from every index file.

Values are kept as plain tuples with packs numbered, so a large repository costs about
a hundred bytes per blob in memory rather than an object each.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import msgpack

from core.repository import indextable


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


# Above this many blobs held in memory an index moves them to an on-disk table (a dict
# costs about 290 bytes a blob: 200,000 blobs are about 58 MB). Tests force it low.
THRESHOLD_ENV = "AXISOR_INDEX_DISK_THRESHOLD"
DEFAULT_THRESHOLD = 200_000
SPILL_BUFFER = 50_000

_Value = tuple[int, int, int, int, int]  # pack number, type, offset, length, raw length


def _threshold() -> int:
    try:
        return max(1, int(os.environ.get(THRESHOLD_ENV, "")))
    except ValueError:
        return DEFAULT_THRESHOLD


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @functools.wraps(method)
    def wrapper(self: Index, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(_F, wrapper)


class Index:
    """Blob id -> location. Small, a dict (``_blobs``); past ``threshold`` blobs, an
    on-disk table (core/repository/indextable.py) plus that dict as an overlay of the
    blobs added since, and the table's packs dropped since. Answers are the same either
    way: the first location added wins, and a dropped pack's blobs are forgotten.

    Packs are numbered in the order they are first seen: the table's first (0 ..
    ``_base``-1), then those added since (``_packs``). Worker threads ask ``in`` while
    the event loop adds packs, so everything past the dict is done under ``_lock``.
    While ``_spill`` is pending (the
    overlay was moved there, not yet sorted), the next question settles it into a new
    table first: loading index files asks nothing, so it costs one sort however many
    files there are."""

    def __init__(self, *, spill_dir: Path | None = None, threshold: int | None = None) -> None:
        self._lock = threading.RLock()
        self._packs: list[bytes] = []
        self._pack_sizes: list[int] = []
        self._pack_no: dict[bytes, int] = {}
        self._blobs: dict[bytes, _Value] = {}
        self.files: set[str] = set()  # index object keys already loaded
        self.spill_dir = spill_dir  # where the table and its spill go (None: the system temp folder)
        self.threshold = threshold if threshold is not None else _threshold()
        self.cache_tag = bytes(32)  # written into a table, so a cached one is known as this repository's
        self._table: indextable.Table | None = None
        self._base = 0  # packs in the table
        self._dropped: set[int] = set()  # table packs whose blobs (in the table) are forgotten
        self._dropped_blobs = 0
        self._spill: indextable.Spill | None = None
        self._pack_spill: indextable.PackSpill | None = None  # packs moved with the spill
        self._built = False  # a table was built since opened (save_table has something to save)

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the table's file (a temp one is removed). Only for an index no longer used."""
        table, self._table = getattr(self, "_table", None), None
        if table is not None:
            table.close()
        spill, self._spill = getattr(self, "_spill", None), None
        if spill is not None:
            spill.close()
        packs, self._pack_spill = getattr(self, "_pack_spill", None), None
        if packs is not None:
            packs.close()

    @property
    def on_disk(self) -> bool:
        return self._table is not None or self._spill is not None

    def __contains__(self, blob_id: bytes) -> bool:
        # Without the lock, as fast as the dict: a spill sets ``_spill`` before it empties
        # the dict, so a miss here that races one is asked again below, under the lock.
        if blob_id in self._blobs:
            return True
        if self._table is None and self._spill is None:
            return False
        with self._lock:
            self._settle()
            if blob_id in self._blobs:
                return True
            table = self._table
            if table is None:
                return False
            v = table.find(blob_id)
            return v is not None and v[0] not in self._dropped

    @_locked
    def __len__(self) -> int:
        self._settle()
        count = len(self._blobs)
        if self._table is not None:
            count += self._table.blob_count - self._dropped_blobs
        return count

    @_locked
    def has_pack(self, pack_id: bytes) -> bool:
        self._settle()
        return self._number(pack_id) is not None

    @_locked
    def pack_ids(self) -> list[bytes]:
        self._settle()
        if self._table is None:
            return list(self._packs)
        return [p[0] for p in self._table.packs() if p[1] != indextable.ALIAS] + self._packs

    def packs(self) -> Iterator[tuple[bytes, int]]:
        """(pack id, size) of every pack: one pass over the table rather than a read a pack."""
        with self._lock:
            self._settle()
        if self._table is not None:
            for pack_id, size, _ in self._table.packs():
                if size != indextable.ALIAS:
                    yield pack_id, size
        yield from zip(self._packs, self._pack_sizes)

    @_locked
    def pack_size(self, pack_id: bytes) -> int:
        self._settle()
        no = self._number(pack_id)
        if no is None:
            raise KeyError(pack_id)
        if no >= self._base:
            return self._pack_sizes[no - self._base]
        assert self._table is not None
        return self._table.pack(no)[1]

    @_locked
    def add_pack(self, pack_id: bytes, size: int, entries: list[PackEntry]) -> None:
        # With a spill pending, a pack moved there is not found: it gets another number,
        # which settling maps back to its first (indextable.build).
        no = self._number(pack_id)
        if no is None:
            no = self._base + len(self._packs)
            self._packs.append(pack_id)
            self._pack_sizes.append(size)
            self._pack_no[pack_id] = no
        blobs = self._blobs
        if self._table is None or self._spill is not None:
            # Without a table, exactly the dict index; with a spill pending, settling keeps
            # the first of equal ids.
            for e in entries:
                # The first location wins: duplicates across packs are harmless copies.
                blobs.setdefault(e.id, (no, e.type, e.offset, e.length, e.raw_length))
        else:
            for e in entries:
                if e.id not in blobs and self._table_value(e.id) is None:
                    blobs[e.id] = (no, e.type, e.offset, e.length, e.raw_length)
        # While a spill is pending the overlay is only its write buffer: kept small.
        limit = self.threshold if self._spill is None else min(self.threshold, SPILL_BUFFER)
        if len(blobs) > limit or len(self._packs) > limit:
            self._spill_overlay()

    @_locked
    def drop_packs(self, pack_ids: set[bytes]) -> int:
        """Forget every blob located in ``pack_ids`` (packs found missing or truncated), so
        a writer stores those blobs again instead of referencing them. A copy of such a
        blob in another pack is forgotten too (the first location won): it is merely
        stored once more. Returns the number of blobs forgotten."""
        self._settle()
        gone = {no for no in (self._number(p) for p in pack_ids) if no is not None}
        if not gone:
            return 0
        drop = [b for b, v in self._blobs.items() if v[0] in gone]
        for b in drop:
            del self._blobs[b]
        count = len(drop)
        if self._table is not None:
            for no in gone:
                if no < self._base and no not in self._dropped:
                    self._dropped.add(no)
                    forgotten = self._table.pack(no)[2]
                    self._dropped_blobs += forgotten
                    count += forgotten
        return count

    @_locked
    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        v = self._blobs.get(blob_id)
        if v is None or self._spill is not None:
            if self._table is None and self._spill is None:
                return None
            v = self._table_value(blob_id)
            if v is None:
                return None
        return BlobLocation(self._pack_id(v[0]), v[1], v[2], v[3], v[4])

    def blobs(self) -> Iterator[tuple[bytes, BlobLocation]]:
        """Not while blobs are added (a table replaced meanwhile would be closed under it)."""
        with self._lock:
            self._settle()
        if self._table is not None:
            ids = self._table.pack_ids_blob()
            dropped = self._dropped
            for blob_id, no, t, o, n, r in self._table.records():
                if no not in dropped:
                    yield blob_id, BlobLocation(ids[no * 32 : no * 32 + 32], t, o, n, r)
        for blob_id, v in self._blobs.items():
            yield blob_id, BlobLocation(self._pack_id(v[0]), v[1], v[2], v[3], v[4])

    # -- the on-disk table --------------------------------------------------------------

    def _number(self, pack_id: bytes) -> int | None:
        no = self._pack_no.get(pack_id)
        if no is None and self._table is not None:
            no = self._table.pack_no(pack_id)
        return no

    def _pack_id(self, no: int) -> bytes:
        if no >= self._base:
            return self._packs[no - self._base]
        assert self._table is not None
        return self._table.pack(no)[0]

    @_locked
    def _table_value(self, blob_id: bytes) -> _Value | None:
        """A blob's location when it is not in the overlay (the spill settled first)."""
        self._settle()
        v = self._blobs.get(blob_id)
        if v is not None:
            return v
        if self._table is None:
            return None
        v = self._table.find(blob_id)
        if v is None or v[0] in self._dropped:
            return None
        return v

    def _dir(self) -> Path:
        return self.spill_dir if self.spill_dir is not None else Path(tempfile.gettempdir())

    def _spill_overlay(self) -> None:
        """Move the overlay's blobs and packs to the spill; sorting waits for a question."""
        if self._spill is None:
            self._spill = indextable.Spill(self._dir(), indextable.RECORD.size)
            self._pack_spill = indextable.PackSpill(self._dir())
        assert self._pack_spill is not None
        for i, (pack_id, size) in enumerate(zip(self._packs, self._pack_sizes)):
            self._pack_spill.add(pack_id, size, self._base + i)
        self._base += len(self._packs)
        self._packs, self._pack_sizes, self._pack_no = [], [], {}
        pack = indextable.RECORD.pack
        add = self._spill.add
        odd: dict[bytes, _Value] = {}
        for blob_id, v in self._blobs.items():
            if len(blob_id) == indextable.ID_SIZE:
                add(pack(blob_id, *v))
            else:
                odd[blob_id] = v  # only 32-byte ids go to disk: others stay (writers make none)
        self._blobs = odd

    def _settle(self) -> None:
        if self._spill is None:
            return
        self._spill_overlay()
        spill, packs = self._spill, self._pack_spill
        assert packs is not None
        try:
            spill.flush()
            packs.flush()
            table = indextable.build(
                self._dir(), self.cache_tag, self._table, self._dropped, spill, packs, sorted(self.files)
            )
        except BaseException:
            self.close()  # what was spilled is lost: an index that cannot be asked any more
            raise
        old, self._table = self._table, table
        # Only now: a lock-free `in` that finds neither a table nor a spill answers no.
        self._spill = self._pack_spill = None
        spill.close()
        packs.close()
        if old is not None:
            old.close()
        assert table.pack_count == self._base
        self._dropped, self._dropped_blobs = set(), 0
        self._built = True

    # -- kept between runs (Repository.load_index) --------------------------------------

    @classmethod
    def from_cache(
        cls, path: Path, tag: bytes, *, spill_dir: Path | None = None, threshold: int | None = None
    ) -> Index | None:
        """The index a cached table holds (its ``files`` the index files it was built from),
        or None when there is none or it does not check out (a damaged one is removed)."""
        try:
            table = indextable.Table.open(path, tag)
            files = table.files()
        except FileNotFoundError:
            return None
        except (OSError, indextable.TableDamaged):
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        index = cls(spill_dir=spill_dir, threshold=threshold)
        index.cache_tag = tag
        index._table = table
        index._base = table.pack_count
        index.files = set(files)
        return index

    @_locked
    def save_table(self, path: Path) -> bool:
        """Keep this index's table at ``path`` for the next run, when everything it holds
        came from ``files`` (the caller's promise: nothing added or dropped since loading).
        Folds a pending spill in; a small overlay alone is not worth rewriting the table
        for (the next run loads those files again). Returns whether a table was saved."""
        self._settle()
        table = self._table
        if table is None or not self._built or self._blobs or self._packs or not table.owned:
            return False
        try:
            if table.files() != sorted(self.files):
                return False
            os.replace(table.path, path)  # atomic: a reader opens the old table or this one
        except (OSError, indextable.TableDamaged):
            return False
        table.path, table.owned = path, False
        self._built = False
        return True


IndexedPack = tuple[bytes, int, list[PackEntry]]  # pack id, pack size, blobs


def encode_index(packs: list[IndexedPack]) -> bytes:
    return msgpack.packb(
        {
            "v": 1,
            "packs": [
                [pid, size, [[e.type, e.id, e.offset, e.length, e.raw_length] for e in entries]]
                for pid, size, entries in packs
            ],
        },
        use_bin_type=True,
    )


def decode_index(raw: bytes) -> list[IndexedPack]:
    try:
        d = msgpack.unpackb(raw, raw=False)
        if d.get("v") != 1:
            raise IndexFormatError("index is not version 1")
        return [
            (bytes(pid), int(size), [PackEntry(int(t), bytes(i), int(o), int(n), int(r)) for t, i, o, n, r in entries])
            for pid, size, entries in d["packs"]
        ]
    except IndexFormatError:
        raise
    except Exception as exc:  # msgpack and shape errors alike mean a malformed index
        raise IndexFormatError(f"malformed index: {exc}") from None
