"""The progress a logical dump reports as its stream is stored (``DumpForecast``): the
table whose data is passing, with its size, and the stream's length forecast from the
catalog's table sizes and row estimates (``expected_text``)."""

from __future__ import annotations

import asyncio

from core.backup.run import DumpPosition, DumpProgress
from core.sources.postgres import dumpsum, names

# Bytes a heap row takes beyond its data: its header (23 bytes, aligned to 24) and its line
# pointer. What a table's COPY text is expected to take: its size less that per row, where
# the catalog has a row estimate (a quarter of the size at least: wide values are TOASTed).
ROW_OVERHEAD = 28


def expected_text(size: int, rows: float) -> int:
    return max(size - int(ROW_OVERHEAD * rows), size // 4) if rows > 0 else size


class DumpForecast:
    """The progress a logical dump tells with each take of its stream: the table whose data
    is passing (dumpsum reads it from the stream) with its size, and the stream's length
    forecast from the catalog (the tables listed in the dump's snapshot, their sizes and
    row estimates: expected_text) once it has been read. A dump in parts (dump_parts.py)
    tells one progress for all its streams: ``sums`` holds one reader per part, the bytes of
    every part add up, and a table's expectation is spent when it passes in whichever part
    holds it. The expectations still to come
    are scaled by the ratio of stream to expectation over the tables that have passed (1
    until CALIBRATE bytes of them have). Work per take, not per row: each passed table is
    looked at once."""

    CALIBRATE = 256 * 1024

    def __init__(
        self,
        sums: dumpsum.DumpChecksums | list[dumpsum.DumpChecksums] | None,
        listed: asyncio.Future,
        on_bytes: DumpProgress,
    ) -> None:
        self._parts = sums if isinstance(sums, list) else [] if sums is None else [sums]
        self._listed, self._on_bytes = listed, on_bytes
        self._sizes: dict[str, int] | None = None  # every listed table's size on disk, by names.key
        self._expect: dict[str, int] = {}  # and its expected length in the stream
        self._all = 0  # the sum of the expectations
        self._left = 0  # the expectations of the listed tables whose data has not passed yet
        self._seen = [0] * len(self._parts)  # how many of each part's passed are accounted for
        self._stream = self._expected = 0  # stream bytes and expectations of the passed tables: the ratio
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        self._on_bytes(n, self.position())

    def position(self) -> DumpPosition:
        parts = self._parts if self._parts and all(p.error is None for p in self._parts) else []
        # The table passing (the largest, of several parts), else the last one that passed
        # (a take can end between blocks).
        passing = [(p.passing_bytes, p.passing) for p in parts if p.passing is not None]
        last = [p.passed[-1][0] for p in parts if p.passed]
        table = max(passing)[1] if passing else last[0] if last else ""
        sizes = self._sizes if self._sizes is not None else self._read_sizes()
        if sizes is None:
            return DumpPosition(table)
        if not parts:  # no position in the stream: the expectations as they are
            return DumpPosition(table, None, max(self.done, self._all))
        expect = self._expect
        for i, sums in enumerate(parts):
            for key, length in sums.passed[self._seen[i] :]:
                if key in expect:  # else a table not listed (an extension's)
                    self._left -= expect[key]
                    self._stream += length
                    self._expected += expect[key]
            self._seen[i] = len(sums.passed)
        ratio = self._stream / self._expected if self._expected >= self.CALIBRATE else 1.0
        ahead = self._left * ratio
        for sums in parts:
            if sums.passing is not None and sums.passing in expect:  # of the table passing, what is left
                ahead -= min(expect[sums.passing] * ratio, sums.passing_bytes)
        # From where the streams have been read to, which is ahead of what is stored (the
        # chunker's window): the length read so far and what is still to come.
        fed = sum(p.fed for p in parts)
        return DumpPosition(table, sizes.get(table), max(self.done, fed + int(max(0.0, ahead))))

    def _read_sizes(self) -> dict[str, int] | None:
        listed = self._listed
        if not listed.done() or listed.cancelled() or listed.exception() is not None:
            return None
        rows = listed.result()
        self._sizes = {names.key(schema, name): size or 0 for schema, name, _, size, _ in rows}
        self._expect = {
            names.key(schema, name): expected_text(size or 0, tuples or 0) for schema, name, _, size, tuples in rows
        }
        self._all = self._left = sum(self._expect.values())
        return self._sizes
