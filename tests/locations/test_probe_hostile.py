"""A read probe against what storage lists, not what it should hold: a planted many-GB
object under data/ and an oversized config are read in bounded ranges, within the budget,
never whole (memory stays PARALLEL * PIECE). Real local backend, sparse planted files."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

from core.locations.probe import PIECE, probe_read
from core.storage.local import LocalBackend


def test_a_planted_huge_object_is_read_in_bounded_pieces(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "data" / "ab").mkdir(parents=True)
    with open(root / "config", "wb") as f:
        f.truncate(3 * 1024**3)  # 3 GiB "config": sparse, reads as zeros
    with open(root / "data" / "ab" / ("ab" + "0" * 62), "wb") as f:
        f.truncate(20 * 1024**3)  # a 20 GiB planted "pack"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    probe = asyncio.run(probe_read(LocalBackend(root), "local", budget=3 * PIECE))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert probe.ok and probe.objects_read == 1
    assert 3 * PIECE <= probe.bytes_read <= 3 * PIECE + 4 * PIECE  # the budget, plus pieces in flight
    assert grown_mib < 200, grown_mib  # never the whole object (a whole read would be 20 GiB)
