"""Every fault either succeeds after retries or fails with one clear message, and never
leaves a partial object visible.

Faults come from FaultyBackend (between RetryingBackend and a real backend) and from
FaultProxy (real broken TCP connections between aiobotocore and the moto S3 server).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.backup.run import run_backup
from core.config import SourceSpec
from core.repository.repository import Repository
from core.restore.files import FileRestorer
from core.storage.backend import ObjectExists, ObjectNotFound, StorageError
from core.storage.local import LocalBackend
from core.storage.retry import RetryingBackend, RetryPolicy, StorageUnavailable, is_retryable
from core.storage.s3 import S3Backend

from .faults import FaultProxy, FaultyBackend
from .test_repository_remote import tree_digest

# The timeout must cover a real request on a busy 2-core machine, yet keep stalls cheap.
FAST = RetryPolicy(retries=3, timeout=1.5, base_delay=0.01, max_delay=0.05)


@pytest.fixture(params=["local", "s3"])
async def faulty(request, tmp_path):
    """(RetryingBackend, FaultyBackend) over a real local folder or a real S3 bucket."""
    if request.param == "local":
        inner = LocalBackend(tmp_path / "repo")
    else:
        server = request.getfixturevalue("moto_s3")
        inner = S3Backend(
            f"faults-{os.urandom(4).hex()}",
            endpoint=server.endpoint,
            credentials_file=server.credentials_file,
            prefix="r",
        )
    await inner.create()
    fb = FaultyBackend(inner)
    rb = RetryingBackend(fb, FAST, concurrency=4)
    try:
        yield rb, fb
    finally:
        await rb.close()


@pytest.mark.parametrize("fault", ["reset", "reset-after", "500", "stall", "stall-after"])
async def test_put_survives_one_fault(faulty, fault):
    rb, fb = faulty
    data = os.urandom(70_000)
    fb.script.append(fault)
    await rb.put("data/aa/obj", [data[:10], data[10:]])
    assert fb.injected == [("put", fault)]
    assert rb.retried >= 1
    assert await rb.get("data/aa/obj") == data
    assert [i.key async for i in rb.list("data/")] == ["data/aa/obj"]


@pytest.mark.parametrize("fault", ["reset", "reset-after", "500", "stall", "stall-after", "short"])
async def test_get_survives_one_fault(faulty, fault):
    rb, fb = faulty
    data = os.urandom(50_000)
    await rb.put("data/bb/obj", data)
    fb.script.append(fault)
    assert await rb.get("data/bb/obj", 1000, 20_000) == data[1000:21_000]
    fb.script.append(fault)
    assert await rb.get("data/bb/obj") == data
    assert rb.retried >= 2


async def test_stat_list_delete_survive_faults(faulty):
    rb, fb = faulty
    for i in range(4):
        await rb.put(f"index/i{i}", b"x" * i)
    fb.script.extend(["reset-after"])  # dies mid-listing after two entries
    assert [i.key async for i in rb.list("index/")] == [f"index/i{i}" for i in range(4)]
    fb.script.extend(["500"])
    assert (await rb.stat("index/i3")).size == 3
    fb.script.extend(["reset-after"])  # deleted, but the reply was lost
    await rb.delete("index/i2")
    assert [i.key async for i in rb.list("index/")] == ["index/i0", "index/i1", "index/i3"]


async def test_persistent_fault_fails_with_one_clear_message_and_no_object(faulty):
    rb, fb = faulty
    fb.always = "reset"
    with pytest.raises(StorageUnavailable) as info:
        await rb.put("snapshots/s1", b"manifest")
    message = str(info.value)
    assert message.startswith(rb.location + ": write snapshots/s1 (8 bytes) failed after 4 attempts")
    assert "ConnectionResetError" in message
    assert "\n" not in message
    fb.always = None
    assert [i.key async for i in rb.list("snapshots/")] == []
    with pytest.raises(ObjectNotFound):
        await rb.stat("snapshots/s1")


async def test_persistent_stall_times_out_cleanly(faulty):
    _, fb = faulty
    rb = RetryingBackend(fb, RetryPolicy(retries=2, timeout=0.3, base_delay=0.01, max_delay=0.05))
    fb.always = "stall"
    with pytest.raises(StorageUnavailable) as info:
        await rb.get("data/cc/none", 0, 10)
    assert "read data/cc/none (bytes 0-10) failed after 3 attempts: timed out" in str(info.value)


async def test_answers_are_not_retried(faulty):
    rb, fb = faulty
    with pytest.raises(ObjectNotFound):
        await rb.get("data/dd/missing")
    await rb.put("keys/k", b"one")
    with pytest.raises(ObjectExists):
        await rb.put("keys/k", b"one")  # the first attempt: an answer, not an accident
    assert rb.retried == 0


async def test_ambiguous_put_onto_different_bytes_is_a_conflict(faulty):
    rb, fb = faulty
    await fb.inner.put("keys/k", b"someone else's bytes")
    fb.script.append("reset")  # the first attempt fails in passing, so the retry is ambiguous
    with pytest.raises(ObjectExists):
        await rb.put("keys/k", b"ours")
    assert await rb.get("keys/k") == b"someone else's bytes"


def test_retryable_classification():
    assert is_retryable(ConnectionResetError())
    assert is_retryable(asyncio.TimeoutError())
    assert is_retryable(OSError(110, "timed out"))
    assert not is_retryable(OSError(13, "permission denied"))
    assert not is_retryable(StorageError("access denied"))
    assert not is_retryable(ObjectNotFound("x"))
    assert not is_retryable(ValueError("bug"))


async def test_backup_and_restore_through_random_faults(tmp_path, moto_s3):
    """A whole backup and restore on S3 while a fifth of all requests fail in passing."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(5_000_000))
    (src / "b.txt").write_text("faults pass\n" * 20_000)
    inner = S3Backend(
        f"rand-{os.urandom(4).hex()}", endpoint=moto_s3.endpoint, credentials_file=moto_s3.credentials_file
    )
    # Stalls are left to the tests above: each costs a whole timeout.
    fb = FaultyBackend(inner, rate=0.2, seed=7, kinds=("reset", "reset-after", "500", "short"))
    rb = RetryingBackend(fb, RetryPolicy(retries=6, timeout=10.0, base_delay=0.01, max_delay=0.05))
    pool = ThreadPoolExecutor(2)
    try:
        repo = await Repository.create(rb, "pw", pack_size=4 * 1024 * 1024)
        repo.executor = pool
        result = await run_backup(repo, [SourceSpec("application/user_data", "application", (src,), (), 30)])
        snap = result.results[0].snapshot
        repo2 = await Repository.open(rb, "pw")
        repo2.executor = pool
        await repo2.load_index()
        await FileRestorer(repo2, tmp_path / "out", executor=pool).restore(snap)
    finally:
        await rb.close()
        pool.shutdown()
    assert tree_digest(tmp_path / "out" / str(src).lstrip("/")) == tree_digest(src)
    kinds = {fault for _, fault in fb.injected}
    assert len(kinds) >= 3
    assert rb.retried >= 5


# --------------------------------------------------------------------------- real TCP faults


@pytest.fixture
async def proxied_s3(moto_s3):
    host, port = moto_s3.endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy(host, int(port))
    await proxy.start()
    inner = S3Backend(
        f"proxy-{os.urandom(4).hex()}",
        endpoint=f"http://127.0.0.1:{proxy.port}",
        credentials_file=moto_s3.credentials_file,
        timeout=1.0,
    )
    rb = RetryingBackend(inner, RetryPolicy(retries=3, timeout=2.0, base_delay=0.01, max_delay=0.05))
    await rb.create()
    try:
        yield rb, proxy, inner
    finally:
        await rb.close()
        await proxy.close()


async def _fresh_connections(inner: S3Backend) -> None:
    # Pooled keep-alive connections would bypass the next scripted connection faults.
    await inner.close()


@pytest.mark.parametrize("mode", ["reset", "500", "stall", "truncate"])
async def test_s3_through_broken_connections(proxied_s3, mode):
    rb, proxy, inner = proxied_s3
    data = os.urandom(200_000)
    await _fresh_connections(inner)
    if mode != "truncate":  # a cut reply to a PUT is a reset; truncation matters for reads
        proxy.script.append(mode)
    await rb.put("data/ee/obj", data)
    await _fresh_connections(inner)
    proxy.script.append(mode)
    assert await rb.get("data/ee/obj") == data
    await _fresh_connections(inner)
    proxy.script.append(mode)
    assert await rb.get("data/ee/obj", 150_000, 50_000) == data[150_000:]
    # Every scripted fault met a real request (aiohttp itself re-sends a request whose
    # brand-new connection was reset, so resets need not reach the retry layer).
    assert proxy.seen.count(mode) == (2 if mode == "truncate" else 3)
    if mode != "reset":
        assert rb.retried >= proxy.seen.count(mode)


async def test_s3_server_gone_fails_clearly(proxied_s3):
    rb, proxy, inner = proxied_s3
    await _fresh_connections(inner)
    proxy.script.extend(["reset"] * 10)
    with pytest.raises(StorageUnavailable) as info:
        await rb.put("snapshots/s", b"x" * 1000)
    assert "write snapshots/s (1000 bytes) failed after 4 attempts" in str(info.value)
    assert "connection failed" in str(info.value)
    assert "test-secret-key" not in str(info.value)
    await _fresh_connections(inner)
    assert [i.key async for i in rb.list("snapshots/")] == []


class InFlight:
    """Counts concurrent puts reaching a real local backend."""

    def __init__(self, inner) -> None:
        self.inner, self.now, self.peak = inner, 0, 0
        self.location = inner.location

    async def put(self, key, data):
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0)  # let every other caller in, if the limit allows
            await self.inner.put(key, data)
        finally:
            self.now -= 1


async def test_concurrency_limit_is_respected(tmp_path):
    counted = InFlight(LocalBackend(tmp_path / "r"))
    rb = RetryingBackend(counted, RetryPolicy(retries=0, timeout=None), concurrency=3)
    await asyncio.gather(*(rb.put(f"data/00/o{i}", b"x") for i in range(20)))
    assert counted.peak == 3
    assert len(list((tmp_path / "r" / "data" / "00").iterdir())) == 20


def test_backoff_is_bounded_full_jitter():
    policy = RetryPolicy(base_delay=0.2, max_delay=2.0)
    delays = [policy.delay(n) for n in range(10) for _ in range(50)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert max(policy.delay(0) for _ in range(50)) <= 0.2
    assert len(set(delays)) > 400  # jittered, not a fixed ladder
