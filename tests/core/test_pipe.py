"""PipeReader: a child's stdout read ahead on a thread, in large pieces, with bounded memory."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

from core.backup.pipe import AHEAD_BYTES, WANT_PIPE_BYTES, PipeReader

# Writes SIZE bytes of a seeded pattern in 4 KiB writes, as pg_dump's stdio does.
WRITER = """
import hashlib, os, sys
size, step = int(sys.argv[1]), 4096
block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
done = 0
while done < size:
    n = min(step, size - done)
    off = done % len(block)
    piece = (block + block)[off:off + n]
    os.write(1, piece)
    done += n
"""


def _expected(size: int) -> str:
    block = hashlib.sha256(b"seed").digest() * 2048
    h = hashlib.sha256()
    done = 0
    while done < size:
        n = min(len(block), size - done)
        h.update(block[:n])
        done += n
    return h.hexdigest()


def _writer(size: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(size)], stdout=subprocess.PIPE)


def test_every_byte_in_order_and_small_writes_coalesced() -> None:
    size = 48 * 1024 * 1024
    proc = _writer(size)
    reader = PipeReader(proc.stdout)
    h = hashlib.sha256()
    got = 0
    buf = bytearray(3 * 1024 * 1024 + 17)  # not a multiple of anything the writer uses
    view = memoryview(buf)
    while n := reader.readinto(view):
        h.update(view[:n])
        got += n
    assert proc.wait() == 0
    reader.close()
    proc.stdout.close()
    assert got == size and h.hexdigest() == _expected(size)
    # 12,288 writes of 4 KiB. Without the nap a waiting reader gets ~72 KiB a read here
    # (and 4.7 KiB from pg_dump); with it, ~500 KiB.
    assert size / reader.reads >= 160 * 1024, f"{reader.reads} reads"


def test_read_ahead_is_bounded_while_the_consumer_is_busy() -> None:
    size = 160 * 1024 * 1024
    proc = _writer(size)
    reader = PipeReader(proc.stdout)
    deadline = time.monotonic() + 30
    peak = 0
    while time.monotonic() < deadline and peak < AHEAD_BYTES:
        peak = max(peak, reader.buffered)
        time.sleep(0.01)
    # Full, then it stops reading: the writer waits on the pipe instead of memory growing.
    time.sleep(0.3)
    assert AHEAD_BYTES <= reader.buffered <= AHEAD_BYTES + WANT_PIPE_BYTES
    assert proc.poll() is None
    buf = bytearray(8 * 1024 * 1024)
    total = 0
    while n := reader.readinto(buf):
        total += n
        assert reader.buffered <= AHEAD_BYTES + WANT_PIPE_BYTES
    assert total == size and proc.wait() == 0
    reader.close()
    proc.stdout.close()


def test_close_after_the_writer_is_killed_mid_stream() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os\nwhile True: os.write(1, b'x' * 4096)"], stdout=subprocess.PIPE
    )
    reader = PipeReader(proc.stdout)
    assert reader.readinto(bytearray(1 << 20)) > 0
    proc.kill()
    proc.wait()
    started = time.monotonic()
    reader.close()  # the thread's last read returned: close does not hang
    proc.stdout.close()
    assert time.monotonic() - started < 5
