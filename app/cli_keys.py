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
from core.errors import Exit

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
            lambda: "\n".join(f"{'*' if k.current else ' '} {k.id[:12]}  {k.created}  {k.user}@{k.host}" for k in keys),
        )
    elif args.key_command == "add":
        k = await svc.add_key(_new_passphrase(args), allow_weak=args.weak_passphrase)
        out.emit(asdict(k), lambda: f"added key {k.id[:12]}")
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
    return EXIT_OK
