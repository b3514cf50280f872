"""A repository's creation, its key files (one per passphrase) and its locks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

from core import crypto
from core.errors import AxisorError, DamagedObject, UsageError
from core.repository import keys as keyfiles
from core.repository.lock import Lock, RemovedLock, remove_locks
from core.storage.backend import Backend, LocationRefused, replace_object
from core.repository.repository import Repository
from core.service.session import Session


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    created: str
    host: str
    user: str
    current: bool
    kind: str = "full"  # or "write-only"


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
        KeyInfo(k.id, k.created, k.host, k.user, k.id == current, k.kind)
        for k in await keyfiles.list_keys(session.backend)
    ]


async def add_key(
    session: Session, new_passphrase: str, *, allow_weak: bool = False, write_only: bool = False
) -> KeyInfo:
    """A key file for a new passphrase. ``write_only``: a key that backs up and pushes WAL
    and reads nothing (docs/FORMAT.md "Write-only keys"); index files sealed before the
    writers' key existed are sealed again under it first, so the new key deduplicates
    against everything stored."""
    check_strength(new_passphrase, allow_weak)
    repo = await session.repository(load_index=False)
    master = _master_of(repo, "add keys")
    if write_only:
        from core.repository import repo_config

        public = await repo_config.read_public(session.backend)
        secret = repo_config.secret_of(public, repo.cipher)  # type: ignore[arg-type]
        # Exclusive: each index file is deleted and put again under the same name, and no
        # reader may look in between (a crash there leaves its packs unindexed, which the
        # next full-key backup adopts and `repair index` restores).
        async with Lock(session.backend, exclusive=True, operation="key add --write-only"):
            if repo.config.version < 2:  # never lowers a rotated (3) repository
                # First the version, so no older program reads (and "repairs") what it
                # cannot open; then the index files, which this program reads either way.
                await repo_config.upgrade(session.backend, public, 2)
                repo.config = replace(repo.config, version=2)
            await reseal_index(repo)
        key = await asyncio.to_thread(keyfiles.wrap_writer, master, secret, new_passphrase)
    else:
        key = await asyncio.to_thread(keyfiles.wrap, master, new_passphrase)
    await keyfiles.store_key(session.backend, key)
    return KeyInfo(key.id, key.created, key.host, key.user, False, key.kind)


async def setup_wal_key(session: Session, key_file: Path, owner: str | None) -> KeyInfo:
    """A write-only key for the database server's archive_command: a random passphrase
    written to ``key_file`` (created, never overwritten; mode 0600; given to ``owner`` when
    named, which needs root), then the key added for it. The server's OS user then pushes
    WAL and can read, restore, prune and forget nothing (docs/SECURITY.md)."""
    import base64
    import os
    import pwd

    uid = gid = None
    if owner:
        try:
            entry = pwd.getpwnam(owner)
        except KeyError:
            raise UsageError(f"--owner {owner!r}: no such user on this host") from None
        uid, gid = entry.pw_uid, entry.pw_gid
    secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{key_file} exists: the server has a key already (remove it and its key with `key remove`, "
            "or give another --key-file)"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot create {key_file}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
            if uid is not None:
                os.fchown(f.fileno(), uid, gid if gid is not None else -1)
        return await add_key(session, secret, write_only=True)
    except BaseException as exc:
        os.unlink(key_file)  # no key without its file, no file without its key
        if isinstance(exc, PermissionError):
            raise UsageError(f"cannot give {key_file} to {owner}: {exc.strerror} (run as root)") from None
        raise


async def reseal_index(repo: Repository) -> int:
    """Seal again, under the current writers' key and under the same name, every index file
    still sealed under `enc` (written before that key existed) or under a retired key; how many. Same plaintext, same
    name: a reader at any moment reads the same index."""
    from core.repository.format import AD_INDEX, INDEX

    done = 0
    assert isinstance(repo.cipher, crypto.Cipher)
    current = repo.cipher.current_only()
    async for info in repo.backend.list(f"{INDEX}/"):
        sealed = await repo.backend.get(info.key)
        ad = AD_INDEX + bytes.fromhex(info.key.rsplit("/", 1)[-1])
        # Under the current writers' key: a write-only key derives from the current key only,
        # so one sealed under a retired key's writers' key is sealed again too.
        if current.opens_shared(sealed, ad):
            continue
        try:
            plain = repo.cipher.open(sealed, ad, shared=True)  # under `enc`, or a retired key
        except crypto.DecryptError:
            raise DamagedObject(info.key, "does not authenticate; `axisor-backup repair index` first") from None
        await replace_object(repo.backend, info.key, sealed, repo.cipher.seal(plain, ad, shared=True))
        done += 1
    return done


async def remove_key(session: Session, key_id: str) -> None:
    repo = await session.repository(load_index=False)
    _master_of(repo, "remove keys")
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
    _master_of(repo, "change passphrases")
    old = repo.key
    info = await add_key(session, new_passphrase, allow_weak=allow_weak)
    if old:
        async with Lock(session.backend, exclusive=True, operation="key passwd"):
            await session.backend.delete(f"keys/{old.id}")
    return info


@dataclass(frozen=True, slots=True)
class RotateResult:
    key: KeyInfo  # the key file for the current passphrase, wrapping the new master key
    locations: tuple  # core.repository.rotation.LocationRotation, primary first

    @property
    def complete(self) -> bool:
        return all(loc.rotated and not loc.problems for loc in self.locations)


async def rotate(session: Session) -> RotateResult:
    """A new encryption key for everything written from now on (`key rotate`); the old one
    retired into a keyring, readable until `prune --rewrite` re-seals what it sealed. At the
    primary first (it must succeed), then at each configured secondary it can reach; one that
    is unreachable or refuses is named in the result, the others still rotate."""
    from core.locations.sites import PRIMARY_NAME, is_unavailable
    from core.repository.rotation import LocationRotation, rotate_location

    repo = await session.repository(load_index=False)
    old = _master_of(repo, "rotate the master key")
    passphrase = session.passphrase(False)
    new = crypto.MasterKey(enc=crypto.MasterKey.generate().enc, ident=old.ident)
    key = await asyncio.to_thread(keyfiles.wrap, new, passphrase)
    sites = session.location_ops().sites
    retired = tuple(repo.retired)
    secondaries: list[tuple[str, Backend | BaseException]] = []
    for name in sites.secondaries:  # every key retired anywhere: copies are byte for byte
        try:
            other = await sites.repository(name)
            retired = tuple(dict.fromkeys(retired + other.retired))
            secondaries.append((name, other.backend))
        except Exception as exc:  # noqa: BLE001 - named in the result; the rotation goes on
            if not is_unavailable(exc):
                raise
            secondaries.append((name, exc))
    done = [await rotate_location(PRIMARY_NAME, repo.backend, old, new, retired, key)]
    for name, backend in secondaries:
        if isinstance(backend, BaseException):
            done.append(LocationRotation(name, False, problems=(f"not reached: {backend}",)))
            continue
        try:
            done.append(await rotate_location(name, backend, old, new, retired, key))
        except Exception as exc:  # noqa: BLE001 - as above
            if not is_unavailable(exc) and not isinstance(exc, LocationRefused):
                raise
            done.append(LocationRotation(name, False, problems=(f"not rotated: {exc}",)))
    return RotateResult(KeyInfo(key.id, key.created, key.host, key.user, True), tuple(done))


async def unlock(session: Session, *, remove_all: bool = False) -> list[RemovedLock]:
    """Remove the stale locks (every lock with ``remove_all``), each with why it was stale."""
    await session.repository(load_index=False)  # only someone holding a passphrase may clear locks
    return await remove_locks(session.backend, all_locks=remove_all)


async def escrow(session: Session, threshold: int, shares: int) -> list:
    """``shares`` escrow shares of the master key, any ``threshold`` of which rebuild it
    (core/repository/escrow.py). Needs a passphrase that opens the repository now."""
    from core.repository.escrow import make_shares

    repo = await session.repository(load_index=False)
    master = _master_of(repo, "split the master key")
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


def _master_of(repo: Repository, what: str) -> crypto.MasterKey:
    if repo.key is None:
        raise AxisorError("repository was opened without a key file")
    return repo.require_full(what)


__all__ = [
    "KeyInfo",
    "RotateResult",
    "rotate",
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
