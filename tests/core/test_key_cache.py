"""The WAL path pays scrypt once per host, not once per segment, and the cache never
opens a repository for a passphrase, a key file or a user it was not made for."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from core import crypto
from core.errors import WrongPassphrase
from core.repository import keys as keyfiles
from core.repository.keycache import KeyCache
from core.storage.local import LocalBackend

PASS = "wal path passphrase"


@pytest.fixture
def world(tmp_path, monkeypatch):
    backend = LocalBackend(tmp_path / "repo")
    master = crypto.MasterKey.generate()
    key = keyfiles.wrap(master, PASS)
    (tmp_path / "repo" / "keys").mkdir(parents=True)
    asyncio.run(keyfiles.store_key(backend, key))
    derivations = []
    real = crypto.derive_key
    monkeypatch.setattr(crypto, "derive_key", lambda *a: derivations.append(1) or real(*a))
    return backend, master, key, KeyCache(tmp_path / "state", "r" * 32), derivations


def _unlock(backend, passphrase, cache):
    return asyncio.run(keyfiles.unlock(backend, passphrase, cache))


def test_second_open_skips_scrypt(world):
    backend, master, key, cache, derivations = world
    assert _unlock(backend, PASS, cache)[0].to_bytes() == master.to_bytes()
    assert len(derivations) == 1
    for _ in range(5):  # five more segments
        assert _unlock(backend, PASS, cache)[0].to_bytes() == master.to_bytes()
    assert len(derivations) == 1
    assert oct(cache.path.stat().st_mode & 0o777) == "0o600"


def test_a_wrong_passphrase_is_still_wrong(world):
    backend, _master, _key, cache, _ = world
    _unlock(backend, PASS, cache)
    with pytest.raises(WrongPassphrase):
        _unlock(backend, "another passphrase entirely", cache)


def test_a_rotated_key_file_voids_the_cache(world, tmp_path):
    backend, master, key, cache, derivations = world
    _unlock(backend, PASS, cache)
    (tmp_path / "repo" / "keys" / key.id).unlink()
    new_key = keyfiles.wrap(master, "the rotated passphrase")
    asyncio.run(keyfiles.store_key(backend, new_key))
    with pytest.raises(WrongPassphrase):
        _unlock(backend, PASS, cache)  # the old key file is gone: the cache opens nothing
    assert not cache.path.exists()


def test_a_cache_readable_by_others_or_damaged_is_not_used(world):
    backend, master, _key, cache, derivations = world
    _unlock(backend, PASS, cache)
    os.chmod(cache.path, 0o644)
    _unlock(backend, PASS, cache)
    assert len(derivations) == 2
    cache.path.write_text(json.dumps({"v": 1, "key_id": "x", "kek": "!!", "check": "0"}))
    os.chmod(cache.path, 0o600)
    assert _unlock(backend, PASS, cache)[0].to_bytes() == master.to_bytes()
    assert len(derivations) == 3
