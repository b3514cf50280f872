"""Reading a child program's stdout pipe ahead of the chunker, in large pieces.

Two measured problems, one reader:

- pg_dump writes its archive through stdio, 4 KiB per write. A reader that is always
  waiting is woken for every one of them: a 657 MB dump cost 138,000 reads and as many
  context switches on both sides, 0.45 s of our CPU and 0.3 s of pg_dump's. So the pipe
  is enlarged to 1 MiB and, after a short read, the reader naps briefly and lets the pipe
  fill (a writer adding to a non-empty pipe wakes nobody): ~2,000 reads of ~320 KiB. The
  nap is short enough that the pipe never fills at pg_dump's full speed (~260 MB/s here).
- The chunker cuts and hashes a window at a time (16 MiB then: ~20 ms). Reading on the same
  thread left the pipe unread that long; pg_dump blocked on it, and the server's COPY,
  the slowest part of a dump, blocked behind pg_dump. So a thread of its own reads up to
  ``AHEAD_BYTES`` ahead: a 1 GB database's backup went from 3.17 s to 2.69 s (pg_dump alone
  to /dev/null: 2.45 s).
"""

from __future__ import annotations

import collections
import fcntl
import io
import os
import threading
import time
from typing import IO

# Linux fcntl commands (not every Python exports them).
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)

WANT_PIPE_BYTES = 1024 * 1024
# At 1 MiB of pipe: 2 ms fills about half of it at 260 MB/s.
NAP_PER_MIB = 0.002
# Read ahead at most this much: memory stays flat however fast the child writes.
AHEAD_BYTES = 32 * 1024 * 1024


def pipe_capacity(fd: int) -> int:
    """Enlarge the pipe behind ``fd`` to 1 MiB where allowed; return its capacity (0: not a pipe)."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, WANT_PIPE_BYTES)
    except OSError:
        pass  # over the user's pipe-buffer quota, or not a pipe: keep what it has
    try:
        return fcntl.fcntl(fd, F_GETPIPE_SZ)
    except OSError:
        return 0


class PipeReader(io.RawIOBase):
    """A raw, read-only stream over ``pipe`` whose bytes are read on a thread of its own.

    The caller owns ``pipe``. Close this reader before closing the pipe, and only once the
    writer has exited or been killed: the thread's last read must have returned."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._fd = pipe.fileno()
        capacity = pipe_capacity(self._fd)
        self._short = capacity // 4  # not a pipe (a file, in tests): never nap
        self._nap = NAP_PER_MIB * capacity / WANT_PIPE_BYTES
        self._pieces: collections.deque[memoryview] = collections.deque()
        self._held = 0
        self._cond = threading.Condition()
        self._eof = False
        self._error: OSError | None = None
        self._stopped = False
        self.reads = 0  # os.read calls that returned data: what the coalescing saves
        self._thread = threading.Thread(target=self._run, daemon=True, name="axisor-pipe")
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while self._held >= AHEAD_BYTES and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                data = os.read(self._fd, WANT_PIPE_BYTES)
                if not data:
                    return
                with self._cond:
                    self.reads += 1
                    self._pieces.append(memoryview(data))
                    self._held += len(data)
                    self._cond.notify_all()
                if len(data) < self._short:
                    time.sleep(self._nap)
        except OSError as exc:
            self._error = exc
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def readable(self) -> bool:
        return True

    @property
    def buffered(self) -> int:
        """Bytes read from the pipe and not yet handed out."""
        with self._cond:
            return self._held

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        n = 0
        with self._cond:
            while not self._pieces and not self._eof:
                self._cond.wait()
            while self._pieces and n < len(out):
                piece = self._pieces[0]
                take = min(len(piece), len(out) - n)
                out[n : n + take] = piece[:take]
                n += take
                if take < len(piece):
                    self._pieces[0] = piece[take:]
                else:
                    self._pieces.popleft()
            self._held -= n
            self._cond.notify_all()
            if not n and self._error is not None:
                raise self._error
        return n

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._pieces.clear()
            self._cond.notify_all()
        self._thread.join()
        super().close()
