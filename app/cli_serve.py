"""`axisor-backup serve --stdio --path DIR [--append-only]`: serve a repository folder on
stdin/stdout to an ``ssh`` location (core/storage/serve.py), typically as an SSH forced
command; or `serve --listen HOST:PORT` behind its own SSH server (core/storage/
serve_ssh.py), each client key's list deciding append-only or full. A client may pick a
folder below ``--path`` (``served_folder``), never one outside it. Needs no config and no
passphrase: it never opens what it serves. The runbook:
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
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--stdio", action="store_true", help="speak on stdin/stdout (an SSH forced command)")
    how.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="run its own SSH server (asyncssh) there: keys in --authorized-keys get append-only "
        "sessions, keys in --trusted-keys full ones",
    )
    p.add_argument("--path", type=Path, required=True, metavar="DIR", help="the repository folder served")
    p.add_argument("--host-key", type=Path, metavar="FILE", help="with --listen: the server's private host key")
    p.add_argument(
        "--authorized-keys", type=Path, metavar="FILE", help="with --listen: client keys given append-only sessions"
    )
    p.add_argument("--trusted-keys", type=Path, metavar="FILE", help="with --listen: client keys given full sessions")
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


def listen_main(args: Any) -> int:
    """`serve --listen`: its own SSH server (core/storage/serve_ssh.py) until SIGTERM."""
    from core.storage.serve_ssh import listen

    host, sep, port = str(args.listen).rpartition(":")
    if not sep or not port.isdigit() or args.host_key is None:
        print("axisor-backup serve: --listen takes HOST:PORT and needs --host-key", file=sys.stderr)
        return Exit.USAGE
    if args.append_only:
        print(
            "axisor-backup serve: with --listen, each key's list decides: --authorized-keys (append-only) "
            "or --trusted-keys (full); --append-only is for --stdio",
            file=sys.stderr,
        )
        return Exit.USAGE
    if args.authorized_keys is None and args.trusted_keys is None:
        print("axisor-backup serve: --listen needs --authorized-keys or --trusted-keys", file=sys.stderr)
        return Exit.USAGE

    def ready(bound: int) -> None:
        print(f"serving {args.path} on {host or '*'}:{bound}", file=sys.stderr, flush=True)

    asyncio.run(
        listen(
            host.strip("[]") or "",
            int(port),
            args.path.expanduser().absolute(),
            host_key=args.host_key,
            authorized_keys=args.authorized_keys,
            trusted_keys=args.trusted_keys,
            folder_for=served_folder,
            ready=ready,
        )
    )
    return Exit.OK


def serve_main(args: Any) -> int:
    if args.listen:
        return listen_main(args)
    from core.storage.serve import serve_stdio

    root = served_folder(args.path.expanduser().absolute(), os.environ.get("SSH_ORIGINAL_COMMAND"))
    if isinstance(root, str):
        print(f"axisor-backup serve: {root}", file=sys.stderr)
        return Exit.USAGE
    return asyncio.run(serve_stdio(root, append_only=args.append_only))


__all__ = ["add_parser", "serve_main"]
