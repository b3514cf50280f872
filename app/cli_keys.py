"""`axisor-backup init` (a repository with its first key) and `key list|add|remove|passwd`, with
the new passphrase read from a file, $AXISOR_BACKUP_NEW_PASSPHRASE or the terminal."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli_output import Output
from core.config import PassphraseError, resolve_passphrase
from core.errors import Exit, UsageError

if TYPE_CHECKING:
    from core.service import BackupService

EXIT_OK = Exit.OK


async def cmd_init(svc: BackupService, args, out: Output) -> int:
    repo = await svc.init(allow_weak=args.weak_passphrase)
    out.emit(
        {"repository": svc.backend.location, "id": repo.config.id, "version": repo.config.version},
        lambda: f"created repository {repo.config.id[:8]} at {svc.backend.location}",
    )
    return EXIT_OK


def _new_passphrase(args) -> str:
    path = getattr(args, "new_passphrase_file", None)
    if path:
        # Read exactly as storage.passphrase_file is read, so the same file opens the
        # repository afterwards: same permission rule, exactly one trailing newline dropped.
        from core.config import StorageConfig

        value = resolve_passphrase(StorageConfig(local_path=Path("/"), passphrase_file=path), env={}, interactive=False)
    elif os.environ.get("AXISOR_BACKUP_NEW_PASSPHRASE"):
        value = os.environ["AXISOR_BACKUP_NEW_PASSPHRASE"]
    elif sys.stdin.isatty():
        value = getpass.getpass("New passphrase: ")
        if getpass.getpass("New passphrase again: ") != value:
            raise PassphraseError("the two new passphrases differ")
    else:
        raise PassphraseError("no new passphrase: set AXISOR_BACKUP_NEW_PASSPHRASE or --new-passphrase-file")
    if not value:
        raise PassphraseError("the new passphrase is empty")
    return value


async def cmd_key(svc: BackupService, args, out: Output) -> int:
    if args.key_command == "list":
        keys = await svc.keys()
        out.emit(
            [asdict(k) for k in keys],
            lambda: "\n".join(
                f"{'*' if k.current else ' '} {k.id[:12]}  {k.created}  {k.user}@{k.host}"
                + ("  write-only" if k.kind == "write-only" else "")
                for k in keys
            ),
        )
    elif args.key_command == "add":
        k = await svc.add_key(_new_passphrase(args), allow_weak=args.weak_passphrase, write_only=args.write_only)
        out.emit(
            asdict(k),
            lambda: (
                f"added write-only key {k.id[:12]}: it backs up and pushes WAL, and reads, restores, "
                "prunes and forgets nothing"
                if k.kind == "write-only"
                else f"added key {k.id[:12]}"
            ),
        )
    elif args.key_command == "remove":
        await svc.remove_key(args.key_id)
        out.emit({"removed": args.key_id}, lambda: f"removed key {args.key_id}")
    elif args.key_command == "passwd":
        k = await svc.change_passphrase(_new_passphrase(args), allow_weak=args.weak_passphrase)
        out.emit(
            asdict(k),
            lambda: (
                f"passphrase changed; new key {k.id[:12]}. It wraps the same master key: "
                "the old key file is removed, but the data are not re-encrypted (anyone who copied the "
                "old key file and knows the old passphrase can still read them)"
            ),
        )
    elif args.key_command == "rotate":
        return await _rotate(svc, out)
    elif args.key_command == "escrow":
        return await _escrow(svc, args, out)
    elif args.key_command == "recover":
        texts = [p.read_text() for p in args.share]
        new = None if args.check else _new_passphrase(args)
        k = await svc.recover(texts, new, allow_weak=args.weak_passphrase)
        if k is None:
            out.emit({"checked": True}, lambda: f"the {len(texts)} shares rebuild the master key: the repository opens")
        else:
            out.emit(asdict(k), lambda: f"recovered: added key {k.id[:12]} for the new passphrase")
    return EXIT_OK


async def _escrow(svc: BackupService, args, out: Output) -> int:
    """Share files, 0600, in a new or empty folder: shares are secrets, never printed."""
    folder: Path = args.out
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} is not empty: escrow shares go into a new or empty folder")
    shares = await svc.escrow(args.threshold, args.shares)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = []
    for share in shares:
        path = folder / f"share-{share.x}-of-{len(shares)}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(share.text() + "\n")
        paths.append(str(path))
    out.emit(
        {"threshold": args.threshold, "shares": paths},
        lambda: (
            f"{len(paths)} shares written to {folder} (any {args.threshold} rebuild the master key); "
            "give each to a different keeper and delete this folder; prove them with `axisor-backup key recover --check`"
        ),
    )
    return EXIT_OK


async def _rotate(svc: BackupService, out: Output) -> int:
    """Every location's outcome by name; WARNINGS when one could not rotate wholly."""
    result = await svc.rotate_key()

    def text() -> str:
        lines = [f"rotated: new key file {result.key.id[:12]} for the current passphrase wraps the new master key"]
        for loc in result.locations:
            lines.append(f"  {loc.location}: {'rotated' if loc.rotated else 'NOT rotated'}")
            lines += [f"    removed key file {k}" for k in loc.removed_keys]
            lines += [f"    {p}" for p in loc.problems]
        lines.append(
            "add other passphrases again with `key add` (write-only keys with `key add --write-only`); "
            "data written before now stays under the old key until `axisor-backup prune --rewrite`"
        )
        return "\n".join(lines)

    out.emit(
        {
            "key": asdict(result.key),
            "complete": result.complete,
            "locations": [asdict(loc) for loc in result.locations],
        },
        text,
    )
    return EXIT_OK if result.complete else Exit.WARNINGS
