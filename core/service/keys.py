"""A repository's creation, its key files (one per passphrase) and its locks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from core.errors import AxisorError, UsageError
from core.repository import keys as keyfiles
from core.repository.lock import Lock, RemovedLock, remove_locks
from core.repository.repository import Repository
from core.service.session import Session


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    created: str
    host: str
    user: str
    current: bool


def check_strength(passphrase: str, allow_weak: bool) -> None:
    why = keyfiles.weak_passphrase(passphrase)
    if why and not allow_weak:
        raise UsageError(why)


async def init(session: Session, *, allow_weak: bool = False) -> Repository:
    passphrase = session.passphrase(True)
    check_strength(passphrase, allow_weak)
    repo = await Repository.create(
        session.backend, passphrase, pack_size=session.config.storage.pack_size_mib * 1024 * 1024
    )
    return session.adopt(repo)


async def keys(session: Session) -> list[KeyInfo]:
    repo = await session.repository(load_index=False)
    current = repo.key.id if repo.key else ""
    return [
        KeyInfo(k.id, k.created, k.host, k.user, k.id == current) for k in await keyfiles.list_keys(session.backend)
    ]


async def add_key(session: Session, new_passphrase: str, *, allow_weak: bool = False) -> KeyInfo:
    check_strength(new_passphrase, allow_weak)
    repo = await session.repository(load_index=False)
    master = _master_of(repo)
    key = await asyncio.to_thread(keyfiles.wrap, master, new_passphrase)
    await keyfiles.store_key(session.backend, key)
    return KeyInfo(key.id, key.created, key.host, key.user, False)


async def remove_key(session: Session, key_id: str) -> None:
    repo = await session.repository(load_index=False)
    matches = [k for k in await keyfiles.list_keys(session.backend) if k.id.startswith(key_id)]
    if len(matches) != 1:
        raise UsageError(f"key id {key_id!r} matches {len(matches)} keys; give a unique prefix")
    if repo.key and matches[0].id == repo.key.id:
        raise UsageError("refusing to remove the key in use; open with another passphrase first")
    async with Lock(session.backend, exclusive=True, operation="key remove"):
        await session.backend.delete(f"keys/{matches[0].id}")


async def change_passphrase(session: Session, new_passphrase: str, *, allow_weak: bool = False) -> KeyInfo:
    """Add a key for the new passphrase, then remove the one in use. The master key stays
    the same (rotating it re-encrypts everything; a different operation)."""
    check_strength(new_passphrase, allow_weak)
    repo = await session.repository(load_index=False)
    old = repo.key
    info = await add_key(session, new_passphrase, allow_weak=allow_weak)
    if old:
        async with Lock(session.backend, exclusive=True, operation="key passwd"):
            await session.backend.delete(f"keys/{old.id}")
    return info


async def unlock(session: Session, *, remove_all: bool = False) -> list[RemovedLock]:
    """Remove the stale locks (every lock with ``remove_all``), each with why it was stale."""
    await session.repository(load_index=False)  # only someone holding a passphrase may clear locks
    return await remove_locks(session.backend, all_locks=remove_all)


async def escrow(session: Session, threshold: int, shares: int) -> list:
    """``shares`` escrow shares of the master key, any ``threshold`` of which rebuild it
    (core/repository/escrow.py). Needs a passphrase that opens the repository now."""
    from core.repository.escrow import make_shares

    repo = await session.repository(load_index=False)
    master = _master_of(repo)
    return await asyncio.to_thread(make_shares, repo.config.id, master.to_bytes(), threshold, shares)


async def recover(
    session: Session, share_texts: list[str], new_passphrase: str | None, *, allow_weak: bool = False
) -> KeyInfo | None:
    """Rebuild the master key from escrow shares, prove it opens this repository's config,
    and (with ``new_passphrase``) add a key file for it; no passphrase is asked for. None
    when only checked."""
    from core import crypto
    from core.repository import repo_config
    from core.repository.escrow import Share, rebuild

    if new_passphrase is not None:
        check_strength(new_passphrase, allow_weak)
    public = await repo_config.read_public(session.backend)
    shares = [Share.parse(t) for t in share_texts]
    master = crypto.MasterKey.from_bytes(rebuild(shares, str(public.get("id"))))
    try:
        repo_config.decode(public, crypto.Cipher(master))
    except (crypto.DecryptError, ValueError, KeyError):
        raise UsageError(
            "the shares rebuild a key that does not open this repository's config: a share is from "
            "another split, or mistyped in a way its check digits missed"
        ) from None
    if new_passphrase is None:
        return None
    key = await asyncio.to_thread(keyfiles.wrap, master, new_passphrase)
    await keyfiles.store_key(session.backend, key)
    return KeyInfo(key.id, key.created, key.host, key.user, False)


def _master_of(repo: Repository):
    if repo.key is None:
        raise AxisorError("repository was opened without a key file")
    return repo.master


__all__ = [
    "KeyInfo",
    "add_key",
    "change_passphrase",
    "check_strength",
    "escrow",
    "init",
    "keys",
    "recover",
    "remove_key",
    "unlock",
]
