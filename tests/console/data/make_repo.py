"""Regenerate tests/console/data/repo: the fixed repository the SVG snapshots draw.

Snapshot ids and times come from the repository's random key and the clock, so the
snapshots need one stored repository rather than a fresh one per run. Run from the
project root: .venv/bin/python tests/console/data/make_repo.py
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1])]

from console_support import _backups, write_platform  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        p = write_platform(Path(tmp))
        asyncio.run(_backups(p))
        shutil.rmtree(HERE / "repo", ignore_errors=True)
        shutil.copytree(p.repo, HERE / "repo")
        shutil.rmtree(HERE / "repo" / "locks", ignore_errors=True)
        # git keeps no empty folders; the backend creates them when it writes
        for d in sorted((HERE / "repo").rglob("*"), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


if __name__ == "__main__":
    main()
