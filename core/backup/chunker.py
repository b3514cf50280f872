"""Content-defined chunking of one stream (FastCDC, 2020 variant, via pyfastcdc).

Chosen after measuring: pyfastcdc releases the GIL in its inner loop and sustains
~1.8 GB/s per core here; the `fastcdc` package holds the GIL (bench/CHUNKER.md).
The gear table is mixed with the repository's secret seed so chunk boundaries in one
repository say nothing about another's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from pyfastcdc import FastCDC

from core.repository.repo_config import ChunkerParams


class Chunker:
    """One file's chunk stream. Not thread-safe; advance it from one thread at a time."""

    def __init__(self, params: ChunkerParams, stream: BinaryIO) -> None:
        cdc = FastCDC(
            params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=params.seed
        )
        self._chunks: Iterator = cdc.cut_stream(stream)

    def take(self, max_bytes: int) -> list[bytes]:
        """The next chunks, about ``max_bytes`` worth; empty at end of stream."""
        out: list[bytes] = []
        total = 0
        for chunk in self._chunks:
            # The view is only valid until the next chunk is cut: copy it.
            data = bytes(chunk.data)
            out.append(data)
            total += len(data)
            if total >= max_bytes:
                break
        return out
