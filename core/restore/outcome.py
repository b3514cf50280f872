"""What a restore did, as values: its counts, warnings and stripped privileges (listed up
to ``MAX_LISTED``, counted beyond), the files it could not write in full (``PartialFile``),
and the inodes it placed and checked while writing (``Placed``, which validation reads)."""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from pathlib import Path

from core.restore.fsops import Parts

MAX_LISTED = 200  # warnings and stripped files listed; the rest are counted


def merge_ranges(ranges) -> list[tuple[int, int]]:
    """(offset, length) ranges sorted, with touching or overlapping ones merged."""
    out: list[list[int]] = []
    for off, length in sorted(r for r in ranges if r[1] > 0):
        if out and off <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], off + length - out[-1][0])
        else:
            out.append([off, length])
    return [(a, b) for a, b in out]


@dataclass
class PartialFile:
    """A file the restore could not write in full: where it belongs, the byte ranges of the
    file that are missing (holes in the partial copy), the damaged objects, where its bytes
    were kept, and (filled in afterwards) where an intact copy is."""

    path: str  # where it belongs, as shown (core.text.shown)
    dest: Path  # the same, as a path (not shown: validation skips it)
    inner: Parts  # its path inside the snapshot
    size: int
    content: tuple[bytes, ...]  # its data blob ids
    missing: list[tuple[int, int]]  # (offset, length) in the file, sorted and merged
    damaged: list[tuple[str, str]]  # (object, reason), each object once
    failed: frozenset[bytes]  # the blobs that could not be read or opened
    kept_as: str | None = None  # the <name>.axisor-partial path, shown; None: not kept
    existing: bool = False  # something was at its name: left exactly as it was
    note: str = ""
    intact: list[tuple[str, str]] = field(default_factory=list)  # (location, snapshot id)

    @property
    def missing_bytes(self) -> int:
        return sum(length for _off, length in self.missing)

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "size": self.size,
            "missing": [[o, n] for o, n in self.missing],
            "missing_bytes": self.missing_bytes,
            "damaged": [{"object": o, "reason": r} for o, r in self.damaged],
            "kept_as": self.kept_as,
            "existing_left": self.existing,
            "note": self.note,
            "intact_copies": [{"location": loc, "snapshot": sid} for loc, sid in self.intact],
        }


class Placed:
    """The files a restore wrote whole and checked while writing: every blob's id verified
    after decryption, one piece per blob of the snapshot's list, their bytes adding up to
    the data, the file as long as the snapshot says. For each, the (st_dev, st_ino) it was
    put in place as, kept by its ordinal in the snapshot's walk (pre-order: the same for the
    restore and its validation), in two arrays: 16 bytes a node however long its path, so a
    million files cost 16 MB, not a dict of paths."""

    def __init__(self) -> None:
        self._dev = array.array("Q")
        self._ino = array.array("Q")

    def extend_to(self, count: int) -> None:
        """Make room for ordinals below ``count`` (from the walking thread; a worker's
        ``record`` of a smaller ordinal may run meanwhile: each array call holds the GIL)."""
        missing = count - len(self._ino)
        if missing > 0:
            self._dev.extend([0] * missing)
            self._ino.extend([0] * missing)

    def record(self, ordinal: int, dev: int, ino: int) -> None:
        self._dev[ordinal] = dev
        self._ino[ordinal] = ino

    def get(self, ordinal: int) -> tuple[int, int] | None:
        """(st_dev, st_ino), or None when the file was not proven while writing (inode 0
        is never a file's on Linux: it stands for "not recorded")."""
        if ordinal >= len(self._ino) or not self._ino[ordinal]:
            return None
        return self._dev[ordinal], self._ino[ordinal]


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    special: int = 0  # devices and FIFOs
    bytes: int = 0
    unchanged: int = 0  # already right: not written
    metadata: int = 0  # same content: only mode, owner, attributes or times set
    removed: int = 0  # with --delete: paths the snapshot does not have
    errors: list[str] = field(default_factory=list)
    # Attributes the target refused, unknown owners...: the restore finished, with these.
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    # Files the snapshot has setuid/setgid/capabilities on, restored without them.
    stripped: list[str] = field(default_factory=list)
    stripped_count: int = 0
    # Files not restored in full (damaged or missing blobs): every one is listed.
    partial: list[PartialFile] = field(default_factory=list)
    partial_cleared: int = 0  # <name>.axisor-partial leftovers removed once the file was whole
    # Files written whole and checked while writing: validation needs only to see the same
    # inode still at their names (core/restore/validate.py).
    placed: "Placed" = field(default_factory=lambda: Placed(), repr=False)

    @property
    def partial_count(self) -> int:
        return len(self.partial)

    def warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append(message)

    def strip(self, where: str) -> None:
        self.stripped_count += 1
        if len(self.stripped) < MAX_LISTED:
            self.stripped.append(where)

    def warnings_listed(self) -> list[str]:
        more = self.warning_count - len(self.warnings)
        return self.warnings + ([f"... and {more} more"] if more > 0 else [])

    def stripped_listed(self) -> list[str]:
        more = self.stripped_count - len(self.stripped)
        return self.stripped + ([f"... and {more} more"] if more > 0 else [])


__all__ = ["MAX_LISTED", "PartialFile", "Placed", "RestoreStats", "merge_ranges"]
