"""Sparse files: where the holes are (SEEK_DATA/SEEK_HOLE), and reading only the data.

A file is asked for holes only when its allocated blocks are fewer than its size needs:
SEEK_DATA on every file would cost two system calls per file for nothing.
"""

from __future__ import annotations

import errno
import os


def maybe_sparse(st: os.stat_result) -> bool:
    return st.st_size > 0 and st.st_blocks * 512 < st.st_size


def holes(fd: int, size: int) -> tuple[tuple[int, int], ...]:
    """(offset, length) of each hole in the first ``size`` bytes, in order."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos: the rest is a hole
                data = size
            elif exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return ()  # the filesystem cannot tell: read it all
            else:
                raise
        data = min(data, size)
        if data > pos:
            out.append((pos, data - pos))
        if data >= size:
            break
        try:
            pos = os.lseek(fd, data, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
    os.lseek(fd, 0, os.SEEK_SET)
    return tuple(out)


def data_extents(size: int, hole_list: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """The complement of ``hole_list`` in [0, size): (offset, length) of each data run."""
    out: list[tuple[int, int]] = []
    pos = 0
    for off, length in hole_list:
        if off > pos:
            out.append((pos, off - pos))
        pos = off + length
    if pos < size:
        out.append((pos, size - pos))
    return out


class ExtentReader:
    """A raw stream of only the data runs of a file, for the chunker (readinto)."""

    def __init__(self, fd: int, extents: list[tuple[int, int]]) -> None:
        self._fd = fd
        self._extents = extents
        self._i = 0
        self._pos = extents[0][0] if extents else 0

    def readinto(self, buf) -> int:
        view = memoryview(buf)
        while self._i < len(self._extents):
            off, length = self._extents[self._i]
            left = off + length - self._pos
            if left <= 0:
                self._i += 1
                if self._i < len(self._extents):
                    self._pos = self._extents[self._i][0]
                continue
            n = os.preadv(self._fd, [view[:left]], self._pos)
            if n == 0:  # the file shrank under us: the caller sees a short read
                self._i = len(self._extents)
                return 0
            self._pos += n
            return n
        return 0

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        """The descriptor belongs to the caller's file object, which closes it."""
