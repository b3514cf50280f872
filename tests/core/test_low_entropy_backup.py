"""Issue 13, end to end: files of one repeated byte, 20 MiB and more, through the real CLI.

Such a file once made `axisor-backup backup` spin at 100 % CPU forever (the chunker's
refill logic, see tests/core/test_chunker_property.py). Here the real program must back
them up within a bounded time and restore them bit-exact.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

MIB = 1024 * 1024

pytestmark = pytest.mark.timeout(300)


def _write_run(path: Path, byte: int, size: int) -> str:
    block = bytes([byte]) * MIB
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            piece = block[: min(left, MIB)]
            fh.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while piece := fh.read(MIB):
            digest.update(piece)
    return digest.hexdigest()


def test_runs_of_one_byte_back_up_and_restore_bit_exact(ws, tmp_path: Path) -> None:
    files = {
        "zeros.bin": (0x00, 24 * MIB + 1),  # past the first hang (window 16 MiB + max 4 MiB)
        "exactly-20-mib.bin": (0xA5, 20 * MIB),  # the smallest file that hung: one buffer
        "ff-tail.bin": (0xFF, 21 * MIB + 4095),
    }
    expected = {name: _write_run(ws.src / name, byte, size) for name, (byte, size) in files.items()}
    assert ws.cli("init").code == 0

    # The CLI runs in a subprocess with a timeout: a hang fails here instead of blocking CI.
    b = ws.cli("backup", "--json", timeout=120)
    assert b.code == 0, b.err
    summary = b.json()["snapshots"][0]["summary"]
    assert summary["total_files"] == 3 and summary["bytes_read"] == sum(s for _, s in files.values())
    # Dedup still works on them: a run of one byte is a few distinct max-size chunks.
    assert summary["data_added"] < 3 * 8 * MIB

    target = tmp_path / "restored"
    r = ws.cli("restore", "latest", "--target", str(target), timeout=120)
    assert r.code == 0, r.err
    for name, digest in expected.items():
        restored = target / ws.src.relative_to("/") / name
        assert restored.stat().st_size == files[name][1]
        assert _sha256(restored) == digest, name

    v = ws.cli("verify", "--full", "--json", timeout=120)
    assert v.code == 0 and v.json()["ok"] is True, v.out + v.err
