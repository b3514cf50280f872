"""Content-defined chunking of one stream (FastCDC, 2020 variant, via pyfastcdc).

Chosen after measuring: pyfastcdc releases the GIL in its inner loop and sustains
~1.8 GB/s per core here; the `fastcdc` package holds the GIL (see bench/RESULTS.md).
The gear table is mixed with the repository's secret seed so chunk boundaries in one
repository say nothing about another's.

pyfastcdc's own ``cut_stream`` allocates a fresh max-size buffer per file; with
thousands of files the page faults cost more than the chunking. So windows are read
into buffers that are reused across files, and cut with ``cut_buf``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from pyfastcdc import FastCDC

from core.repository.repo_config import ChunkerParams

# Bytes read per fill, beyond the uncut tail (at most one chunk). Each running stream holds
# WINDOW + max_size (two streams run at once). 4 MiB, not 16: one fill still feeds one 4 MiB
# take (core/backup/stream.py), the tail slid per fill is one chunk (~0.5 MiB memmove), and
# the two windows hold 24 MiB less: mixed bench set ~186 -> 164 MiB peak RSS, no slower
# (bench/RESULTS.md, "Peak memory (issue 19)").
WINDOW = 4 * 1024 * 1024
OBSERVE_STEP = 1024 * 1024  # ``observe`` sees the bytes read at least this often while a window fills

_free_buffers: list[bytearray] = []
_free_lock = threading.Lock()


def _get_buffer(size: int) -> bytearray:
    with _free_lock:
        while _free_buffers:
            buf = _free_buffers.pop()
            if len(buf) >= size:
                return buf
    return bytearray(size)


def _put_buffer(buf: bytearray) -> None:
    with _free_lock:
        if len(_free_buffers) < 2:  # as many as streams run at once
            _free_buffers.append(buf)


_local = threading.local()


def _cdc(params: ChunkerParams) -> FastCDC:
    """One FastCDC per thread and parameters: building one per file cost 3 % of a backup."""
    cache = getattr(_local, "cdc", None)
    if cache is None or cache[0] != params:
        cache = _local.cdc = (
            params,
            FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=params.seed),
        )
    return cache[1]


class ReadIntoStream(Protocol):
    """What the chunker reads from: a raw stream's ``readinto`` (a file, a pipe reader, the
    data runs of a sparse file, a generated tar); 0 or None at the end."""

    def readinto(self, buffer: Any, /) -> int | None: ...


class Chunker:
    """One file's chunk stream. Not thread-safe; advance it from one thread at a time."""

    def __init__(
        self,
        params: ChunkerParams,
        stream: ReadIntoStream,
        observe: Callable[[bytearray, int, int], None] | None = None,
        *,
        window: int = WINDOW,
    ) -> None:
        # ``window`` is a parameter so tests can drive every refill edge with inputs of a
        # few KiB (tests/core/test_chunker_property.py); the boundaries never depend on it.
        if window < 0:
            raise ValueError(f"chunker window must be >= 0 (got {window})")
        self._params = params
        self._stream = stream
        # Sees every byte read, in place in the window (buffer, start, end), before it is cut.
        self._observe = observe
        self._max = params.max_size
        # A pooled buffer may be longer than asked for: fill only this much of it.
        self._cap = window + params.max_size
        self._buf: bytearray | None = _get_buffer(self._cap)
        self._start = 0  # first byte not yet cut
        self._end = 0  # end of valid data
        self._eof = False

    def _fill(self) -> None:
        assert self._buf is not None
        if self._start:
            # Slide the uncut tail to the front; it is at most one chunk long.
            tail = self._end - self._start
            self._buf[:tail] = self._buf[self._start : self._end]
            self._start, self._end = 0, tail
        view = memoryview(self._buf)
        seen = self._end
        while self._end < self._cap and not self._eof:
            n = self._stream.readinto(view[self._end : self._cap])
            if not n:
                self._eof = True
            else:
                self._end += n
                # Every OBSERVE_STEP while the window fills, not once it is full: a pipe's
                # bytes are observed (a dump's checksums and row counts) while its writer is
                # still writing, not all after it ends (a 2.6 MB dump of 1,000 tables fits in
                # one window: its parse followed pg_dump's exit). Not per read: a pipe can
                # return a few KiB a read.
                if self._observe is not None and self._end - seen >= OBSERVE_STEP:
                    self._observe(self._buf, seen, self._end)
                    seen = self._end
        if self._observe is not None and self._end > seen:
            self._observe(self._buf, seen, self._end)

    def take(self, max_bytes: int) -> list[bytes]:
        """The next chunks, about ``max_bytes`` worth; empty at end of stream."""
        out: list[bytes] = []
        total = 0
        while total < max_bytes and self._buf is not None:
            if not self._eof and self._end - self._start < self._max:
                self._fill()
            if self._start == self._end:
                self.close()
                break
            window = memoryview(self._buf)[self._start : self._end]
            before = self._start
            for chunk in _cdc(self._params).cut_buf(window):
                # A cut that ends where the window ends may only be where the data ran out:
                # more data could move it, so it waits for the next fill -- unless the stream
                # is over, or the chunk is max_size long. FastCDC never looks further than
                # max_size bytes from a chunk's start, so such a cut is final whatever
                # follows. Waiting on it was issue 13's hang: with exactly max_size bytes
                # uncut (a run of one byte cut at max_size, window a multiple of max_size),
                # no refill happens (the tail is not below max_size) and the same cut came
                # back forever. Refilling at <= max_size would also have ended the loop, but
                # this rule is the true one: it is what makes every accepted cut the one
                # FastCDC makes on the whole input (tests/core/test_chunker_property.py).
                if chunk.offset + chunk.length == len(window) and not self._eof and chunk.length < self._max:
                    break
                out.append(bytes(chunk.data))
                total += chunk.length
                self._start += chunk.length
                if total >= max_bytes:
                    break
            window.release()
            if self._start == before:
                # Cannot happen: a window below max_size is refilled first, and one of at
                # least max_size yields a final cut. Should a change break that, fail loudly
                # rather than spin with the repository locked.
                raise RuntimeError(
                    f"chunker made no progress at {self._end - self._start} uncut bytes "
                    f"(eof={self._eof}); this is a bug"
                )
        return out

    def close(self) -> None:
        if self._buf is not None:
            _put_buffer(self._buf)
            self._buf = None
