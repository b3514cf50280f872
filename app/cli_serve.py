"""`axisor-backup serve --stdio --path DIR [--append-only]`: serve a repository folder on
stdin/stdout to an ``ssh`` location (core/storage/serve.py), typically as an SSH forced
command (a forced command's client may pick a folder below the forced ``--path``:
``served_folder``). Needs no config and no passphrase: it never opens what it serves. The runbook:
docs/OPERATIONS.md "Append-only locations"; docs/CLI.md "serve".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import Exit


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve a repository folder to an ssh location on stdin/stdout (an SSH forced command)",
    )
    p.add_argument("--stdio", action="store_true", required=True, help="speak on stdin/stdout (the only transport)")
    p.add_argument("--path", type=Path, required=True, metavar="DIR", help="the repository folder served")
    p.add_argument(
        "--append-only",
        action="store_true",
        help="accept new objects only: refuse every delete and replacement outside locks/ "
        "(no prune, forget, repair or key removal through this server)",
    )


def served_folder(forced: Path, original: str | None) -> Path | str:
    """The folder to serve: ``--path`` of this command; below it, as an SSH forced command,
    the ``--path`` the client asked for (``SSH_ORIGINAL_COMMAND``), when that is a relative
    path with no ``..``: one key can reach several repositories under one folder, never a
    folder outside it, and never with other options (``--append-only`` stays as forced).
    A string is the refusal to print."""
    if not original:
        return forced
    try:
        words = shlex.split(original)
    except ValueError:
        return f"the client's command {original!r} cannot be parsed"
    asked = words[words.index("--path") + 1] if "--path" in words[:-1] else ""
    if not asked:
        return forced
    sub = PurePosixPath(asked)
    if sub.is_absolute() or ".." in sub.parts:
        return f"the client asked for --path {asked!r}: only a relative path below the forced --path is served"
    return forced / sub


def serve_main(args: Any) -> int:
    from core.storage.serve import serve_stdio

    root = served_folder(args.path.expanduser().absolute(), os.environ.get("SSH_ORIGINAL_COMMAND"))
    if isinstance(root, str):
        print(f"axisor-backup serve: {root}", file=sys.stderr)
        return Exit.USAGE
    return asyncio.run(serve_stdio(root, append_only=args.append_only))


__all__ = ["add_parser", "serve_main"]
