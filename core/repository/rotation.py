"""One location's part of `key rotate`: a new encryption key, the old one retired.

The master key is (enc, ident); rotation replaces `enc` and keeps `ident` (blob ids,
snapshot ids and deduplication stay valid). At a location, under its exclusive lock:

1. a new keyring object (every retired key plus the old `enc`) sealed under the new `enc`;
2. a key file for the current passphrase wrapping the new master key;
3. ``config`` sealed again under the new `enc` (delete then put; the old bytes put back
   should the put fail);
4. every other key file deleted (each wraps, or a write-only key derives from, the old key);
5. the older keyring objects deleted.

The order keeps the location openable at every step: until (3) the old key files open it,
after (3) the new one does. docs/FORMAT.md "Keyring" and "Key rotation"."""

from __future__ import annotations

from dataclasses import dataclass, replace

from core import crypto
from core.repository import keyring, repo_config
from core.repository import keys as keyfiles
from core.repository.format import CONFIG, KEYS, ROTATED_VERSION
from core.repository.lock import Lock
from core.storage.backend import Backend, LocationRefused, ObjectNotFound, replace_object


@dataclass(frozen=True, slots=True)
class LocationRotation:
    """What rotation did at one location; ``problems`` names what it could not do."""

    location: str
    rotated: bool  # config sealed under the new key and the new key file written
    removed_keys: tuple[str, ...] = ()  # "id (kind)"
    problems: tuple[str, ...] = ()


async def rotate_location(
    name: str,
    backend: Backend,
    old: crypto.MasterKey,
    new: crypto.MasterKey,
    retired: tuple[bytes, ...],
    key: keyfiles.KeyFile,
) -> LocationRotation:
    """Rotate at ``backend``: ``retired`` (the keys retired so far, from every location) and
    the old `enc` go into the new keyring; ``key`` (wrapping ``new``) is the only key file left."""
    problems: list[str] = []
    async with Lock(backend, exclusive=True, operation="key rotate"):
        raw = await repo_config.read_public(backend)
        ring = await keyring.read(backend, old, retired)
        config = repo_config.decode(raw, crypto.Cipher(old, retired + ring.keys))
        stamp = keyring.now()
        entries = list(ring.retired) + [keyring.Retired(r, stamp) for r in retired if r not in ring.keys]
        entries = [e for e in entries if e.enc not in (old.enc, new.enc)] + [keyring.Retired(old.enc, stamp)]
        ring_key, sealed = keyring.encode(new, entries)
        await backend.put(ring_key, sealed)
        await keyfiles.store_key(backend, key)
        await _reseal_config(backend, replace(config, version=max(config.version, ROTATED_VERSION)), new)
        removed = []
        async for info in backend.list(f"{KEYS}/"):
            key_id = info.key.rsplit("/", 1)[-1]
            if key_id == key.id:
                continue
            kind = "key"
            try:
                kind = keyfiles.KeyFile.decode(key_id, await backend.get(info.key)).kind
            except Exception:  # noqa: BLE001 - a damaged key file is removed all the same; its kind is unknown
                kind = "unreadable"
            try:
                await backend.delete(info.key)
                removed.append(f"{key_id} ({kind})")
            except ObjectNotFound:
                pass
            except LocationRefused as exc:
                problems.append(
                    f"{info.key} not removed ({exc}): its passphrase still opens the OLD key at this location"
                )
        # One that did not open may hold a key some data here still needs: kept, and said.
        problems += [f"keyring object kept: {d}" for d in ring.damaged]
        for obj in ring.objects:
            if obj == ring_key:
                continue
            try:
                await backend.delete(obj)
            except ObjectNotFound:
                pass
            except LocationRefused as exc:
                problems.append(f"{obj} not removed ({exc}): it holds retired keys under the old key")
    return LocationRotation(name, True, tuple(removed), tuple(problems))


async def _reseal_config(backend: Backend, config: repo_config.RepoConfig, new: crypto.MasterKey) -> None:
    """``config`` sealed under ``new`` (and at its new version); objects never change in place:
    delete, put, and the old bytes put back should the put fail (as repo_config.upgrade)."""
    await replace_object(backend, CONFIG, await backend.get(CONFIG), config.encode(crypto.Cipher(new)))
