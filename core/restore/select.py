"""Which paths of a snapshot a restore takes (``restore --include``): a path is restored when
it or a folder above it matches a pattern; patterns without a wildcard are looked up in a
set, the others matched with fnmatch."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from pathlib import Path

from core.restore.fsops import Parts


_GLOB_MAGIC = re.compile(r"[*?\[]")


@functools.lru_cache(maxsize=32)
def _split_patterns(patterns: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """(the patterns without a wildcard, as a set; the others). A pattern without ``*``, ``?``
    or ``[`` matches only itself, so a set lookup stands for its fnmatch: a restore of many
    named paths (a restore-test's sample) costs one lookup per folder level, not one
    fnmatch per pattern."""
    literal = frozenset(p for p in patterns if not _GLOB_MAGIC.search(p))
    return literal, tuple(p for p in patterns if p not in literal)


def included(path: str, patterns: tuple[str, ...]) -> bool:
    """A path is restored when it or any folder above it matches a pattern."""
    if not patterns:
        return True
    literal, globs = _split_patterns(patterns)
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if prefix in literal or prefix[1:] in literal:
            return True
        if any(fnmatch.fnmatchcase(prefix, p) or fnmatch.fnmatchcase(prefix[1:], p) for p in globs):
            return True
    return False


def path_parts(target: Path, path: Path) -> Parts:
    """``path`` (under ``target``) as components relative to it."""
    return tuple(os.fsencode(p) for p in path.relative_to(target).parts)


__all__ = ["included", "path_parts"]
