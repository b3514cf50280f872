"""The Backend contract, run unchanged against every backend on its real server:
local disk, S3 and GCS-style (moto), SFTP (asyncssh and OpenSSH), Azure (Azurite), FTP
(pyftpdlib). A backend that passes this can hold a repository."""

from __future__ import annotations

import asyncio
import os

import pytest

from core.storage.backend import (
    ObjectExists,
    ObjectNotFound,
    StorageError,
    backend_usage,
)


async def keys_of(backend, prefix: str) -> list[str]:
    return [info.key async for info in backend.list(prefix)]


async def test_put_get_roundtrip_buffers_and_parts(backend):
    data = os.urandom(300_000)
    await backend.put("data/ab/one", data)
    await backend.put("data/ab/two", [data[:1000], memoryview(data)[1000:200_000], data[200_000:]])
    await backend.put("snapshots/empty", b"")
    assert await backend.get("data/ab/one") == data
    assert await backend.get("data/ab/two") == data
    assert await backend.get("snapshots/empty") == b""
    assert (await backend.stat("data/ab/one")).size == len(data)
    assert (await backend.stat("snapshots/empty")).size == 0


async def test_put_never_overwrites(backend):
    await backend.put("keys/k1", b"first")
    with pytest.raises(ObjectExists) as info:
        await backend.put("keys/k1", b"second, longer than the first")
    assert "keys/k1" in str(info.value)
    assert await backend.get("keys/k1") == b"first"


async def test_missing_objects_raise_not_found(backend):
    with pytest.raises(ObjectNotFound) as info:
        await backend.get("data/00/nothing")
    assert "data/00/nothing" in str(info.value)
    with pytest.raises(ObjectNotFound):
        await backend.get("data/00/nothing", 10, 5)
    with pytest.raises(ObjectNotFound):
        await backend.stat("data/00/nothing")
    with pytest.raises(ObjectNotFound):
        await backend.delete("data/00/nothing")


async def test_ranged_reads(backend):
    data = bytes(range(256)) * 40
    await backend.put("data/cd/pack", data)
    assert await backend.get("data/cd/pack", 0, 10) == data[:10]
    assert await backend.get("data/cd/pack", 1000, 2345) == data[1000:3345]
    assert await backend.get("data/cd/pack", len(data) - 7, 7) == data[-7:]
    assert await backend.get("data/cd/pack", 5, 0) == b""
    assert await backend.get("data/cd/pack", 9000) == data[9000:]


async def test_list_prefixes_recursive_and_sorted(backend):
    names = ["data/00/aa", "data/00/ab", "data/ff/zz", "index/i1", "snapshots/s1", "snapshots/s2x", "config"]
    for n in names:
        await backend.put(n, n.encode())
    assert await keys_of(backend, "data/") == ["data/00/aa", "data/00/ab", "data/ff/zz"]
    assert await keys_of(backend, "snapshots/s2") == ["snapshots/s2x"]
    assert await keys_of(backend, "locks/") == []
    listed = {info.key: info.size async for info in backend.list("")}
    assert listed == {n: len(n) for n in names}


async def test_delete_removes_object(backend):
    await backend.put("locks/l1", b"lock")
    await backend.delete("locks/l1")
    with pytest.raises(ObjectNotFound):
        await backend.get("locks/l1")
    assert await keys_of(backend, "locks/") == []
    await backend.put("locks/l1", b"again")  # the name is free once more
    assert await backend.get("locks/l1") == b"again"


async def test_exists_tracks_the_repository_config(backend):
    assert await backend.exists() is False
    await backend.put("config", b"cfg")
    assert await backend.exists() is True


async def test_invalid_keys_refused(backend):
    for bad in ("../escape", "/abs", "data//x", "data/./x"):
        with pytest.raises(StorageError):
            await backend.put(bad, b"x")


async def test_concurrent_puts_and_gets(backend):
    blobs = {f"data/{i:02x}/obj{i}": os.urandom(20_000 + i) for i in range(24)}
    await asyncio.gather(*(backend.put(k, v) for k, v in blobs.items()))
    got = await asyncio.gather(*(backend.get(k) for k in blobs))
    assert got == list(blobs.values())
    ranged = await asyncio.gather(*(backend.get(k, 100, 1000) for k in blobs))
    assert ranged == [v[100:1100] for v in blobs.values()]


async def test_racing_writers_of_one_key(backend, kind):
    payloads = [bytes([i]) * 50_000 for i in range(6)]
    results = await asyncio.gather(*(backend.put("index/race", p) for p in payloads), return_exceptions=True)
    for r in results:
        assert r is None or isinstance(r, ObjectExists), r
    stored = await backend.get("index/race")
    assert stored in payloads  # one writer's whole object, never a mix or a part
    if kind not in ("ftp", "ftps"):
        # FTP (with or without TLS) has no create-only primitive: two writers can both pass
        # the existence check (docs/ARCHITECTURE.md); every other store refuses all but one.
        assert sum(r is None for r in results) == 1
        assert stored == payloads[results.index(None)]


async def test_usage_counts_objects(backend, kind):
    await backend.put("data/01/a", b"x" * 1000)
    await backend.put("data/02/b", b"y" * 234)
    usage = await backend_usage(backend)
    assert usage is not None
    assert usage.objects == 2
    assert usage.bytes_used == 1234
    if kind in ("local", "sftp-asyncssh", "sftp-openssh"):
        assert usage.free_bytes is not None and usage.free_bytes > 0


async def test_location_names_where_without_secrets(backend, kind, request):
    where = backend.location
    assert where and repr(backend)
    for secret in ("test-secret-key", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq"):
        assert secret not in where and secret not in repr(backend)
    if kind == "ftp":
        password = request.getfixturevalue("ftp_server").credentials_file.read_text().split("=")[1].strip()
        assert password not in where and password not in repr(backend)
