"""Bandwidth limits (core/storage/throttle.py): the token bucket on a fake clock, and the
wrapper over a real local backend."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Coroutine
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import parse_config
from core.storage.backend import Backend
from core.storage.factory import as_local, open_location_backends, open_primary
from core.storage.local import LocalBackend
from core.storage.retry import RetryingBackend
from core.storage.throttle import (
    KIB,
    ThrottledBackend,
    ThrottledLocalBackend,
    TokenBucket,
    slice_size,
    throttled,
    ticking,
)

EPS = 1e-6


class FakeClock:
    """Virtual time: ``sleep`` parks the task until ``run`` moves the clock to its wake-up
    (the earliest first), so concurrent sleeps overlap as real ones do."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self.now + seconds, next(self._seq), fut))
        await fut

    def sleep_sync(self, seconds: float) -> None:
        self.now += seconds

    async def run(self, *coros: Coroutine[object, object, None]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        while True:
            for _ in range(3):  # every task woken runs up to its next sleep (or its end)
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                break
            wake, _, fut = heapq.heappop(self._waiters)
            self.now = max(self.now, wake)
            fut.set_result(None)
        for t in tasks:
            t.result()


def granted_within_bound(grants: list[tuple[float, int]], start: float, rate: float, burst: float) -> None:
    """By any grant time t, the bytes granted so far are at most rate * (t - start) + burst."""
    grants = sorted(grants)
    total = 0
    for when, n in grants:
        total += n
        assert total <= rate * (when - start) + burst + EPS * max(1.0, total), (when - start, total)


takes = st.lists(
    st.tuples(st.floats(min_value=0, max_value=2.0, allow_nan=False), st.integers(min_value=0, max_value=3_000_000)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=50_000_000),
    burst=st.one_of(st.none(), st.integers(1, 4_000_000)),
    sequence=takes,
)
def test_reserved_bytes_never_exceed_rate_times_t_plus_burst(rate, burst, sequence):
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock)
    start = clock.now
    grants = []
    for gap, n in sequence:
        clock.now += gap
        grants.append((clock.now + bucket.reserve(n), n))
    granted_within_bound(grants, start, rate, bucket.burst)


@settings(max_examples=100, deadline=None)
@given(
    rate=st.integers(min_value=1000, max_value=20_000_000),
    sizes=st.lists(st.integers(min_value=0, max_value=5_000_000), min_size=1, max_size=8),
)
def test_concurrent_takes_share_one_rate(rate, sizes):
    """Any number of transfers taking at once: the bucket's grants (slice by slice) stay
    under the bound, every slice is at most one slice size, and the last transfer ends about
    when its bytes allow (no time lost either)."""
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    start = clock.now
    grants: list[tuple[float, int]] = []
    reserve = bucket.reserve

    def recording(n: int) -> float:
        assert 0 < n <= bucket.slice
        wait = reserve(n)
        grants.append((clock.now + wait, n))
        return wait

    bucket.reserve = recording  # type: ignore[method-assign]

    asyncio.run(clock.run(*(bucket.take(n) for n in sizes)))
    assert sum(n for _, n in grants) == sum(sizes)
    granted_within_bound(grants, start, rate, bucket.burst)
    # The fake clock moved only by the waits: at least (total - burst) / rate, and not
    # much more (rounding of the last slices aside).
    elapsed = clock.now - start
    assert elapsed >= (sum(sizes) - bucket.burst) / rate - EPS
    assert elapsed <= sum(sizes) / rate + EPS


def test_take_sync_sleeps_the_calling_thread_slice_by_slice():
    clock = FakeClock()
    bucket = TokenBucket(100 * KIB, clock=clock, sleep_sync=clock.sleep_sync)
    assert bucket.slice == slice_size(100 * KIB) == 10 * KIB
    bucket.take_sync(1000 * KIB)
    # The first slice was in the bucket already; the other 99 each waited their 0.1 s.
    assert abs((clock.now - 1000.0) - 9.9) < EPS


def test_a_rested_bucket_lets_one_slice_through_at_once():
    clock = FakeClock()
    bucket = TokenBucket(1000 * KIB, clock=clock)
    assert bucket.reserve(bucket.slice) == 0.0
    assert bucket.reserve(bucket.slice) > 0  # the second must wait
    clock.now += 60  # an idle minute saves up no more than the burst
    assert bucket.reserve(bucket.slice) == 0.0
    assert bucket.reserve(1) > 0


def test_ticking_reports_every_granted_slice_within_the_block(tmp_path):
    b = throttled(LocalBackend(tmp_path), 0, 1024)
    assert isinstance(b, ThrottledLocalBackend) and b.download is not None
    b.download._sleep_sync = lambda s: None  # no real waiting in this test
    ticks: list[int] = []
    with ticking(b, lambda: ticks.append(1)):
        b.download.take_sync(10 * b.download.slice)
    b.download.take_sync(b.download.slice)  # after the block: no longer reported
    assert len(ticks) == 10
    with ticking(LocalBackend(tmp_path), lambda: ticks.append(1)):
        pass  # an unlimited backend has nothing to report


def test_slices_scale_with_the_rate_within_bounds():
    assert slice_size(1 * KIB) == 4 * KIB
    assert slice_size(2048 * KIB) == 2048 * KIB // 10
    assert slice_size(100 * 1024 * KIB) == 1024 * KIB


# --------------------------------------------------------------------------- the wrapper


def test_no_limit_means_no_wrapper(tmp_path):
    inner = LocalBackend(tmp_path)
    assert throttled(inner, 0, 0) is inner


def test_local_backend_keeps_its_direct_read_and_counts_payload(tmp_path):
    b = throttled(LocalBackend(tmp_path / "repo"), 0, 4096)
    assert isinstance(b, ThrottledLocalBackend) and isinstance(b, Backend)
    assert b.upload is None and b.download is not None and b.download.rate == 4096 * KIB
    assert as_local(b) is b.inner

    async def main() -> bytes:
        await b.create()
        await b.put("data/aa/one", [b"x" * 1000, b"y" * 24])
        assert (await b.stat("data/aa/one")).size == 1024
        assert [i.key async for i in b.list("data/")] == ["data/aa/one"]
        return await b.get("data/aa/one", 1000, 24)

    assert asyncio.run(main()) == b"y" * 24
    assert b.get_sync("data/aa/one") == b"x" * 1000 + b"y" * 24
    assert (b.uploaded, b.downloaded) == (1024, 24 + 1024)


def test_a_remote_is_throttled_outside_its_retries(tmp_path):
    """Waiting for the bucket must not eat into a request's timeout: the wrapper is on top."""
    c = parse_config(
        {
            "storage": {
                "local_path": str(tmp_path / "p"),
                "limit_upload": 100,
                "remote_storage": [
                    {"provider": "sftp", "name": "box", "endpoint": "backup.example:22", "limit_download": 50},
                    {"provider": "sftp", "name": "free", "endpoint": "backup.example:22"},
                    {"provider": "local", "name": "nas", "path": str(tmp_path / "nas"), "limit_upload": 7},
                ],
            }
        },
        base_dir=tmp_path,
    )
    found = dict(open_location_backends(c))
    primary, box, free, nas = found["local"], found["box"], found["free"], found["nas"]
    assert isinstance(primary, ThrottledLocalBackend) and primary.upload is not None
    assert primary.upload.rate == 100 * KIB and primary.download is None
    assert isinstance(box, ThrottledBackend) and not hasattr(box, "get_sync")
    assert isinstance(box.inner, RetryingBackend) and box.upload is None
    assert box.download is not None and box.download.rate == 50 * KIB
    assert isinstance(free, RetryingBackend)
    assert isinstance(nas, ThrottledLocalBackend) and as_local(nas) is not None
    assert as_local(box) is None and as_local(free) is None


def test_cli_limits_override_every_location(tmp_path):
    c = parse_config(
        {
            "storage": {
                "local_path": str(tmp_path / "p"),
                "limit_upload": 100,
                "limit_download": 9,
                "remote_storage": [{"provider": "local", "name": "nas", "path": "n", "limit_upload": 5}],
            }
        },
        base_dir=tmp_path,
    )
    assert c.with_limits(None, None) is c
    up = c.with_limits(2048, None)
    assert (up.storage.limit_upload, up.storage.limit_download) == (2048, 9)
    assert (up.storage.remote_storage[0].limit_upload, up.storage.remote_storage[0].limit_download) == (2048, 0)
    off = c.with_limits(0, 0)
    assert isinstance(open_primary(off.storage), LocalBackend)  # 0 on the command line: unlimited


def test_uploads_through_the_wrapper_take_their_time(tmp_path: Path):
    """Real time, loose bound only: 600 KiB at 1 MiB/s cannot finish in under ~0.4 s."""
    b = throttled(LocalBackend(tmp_path / "repo"), 1024, 0)

    async def main() -> float:
        await b.create()
        started = time.monotonic()
        await asyncio.gather(*(b.put(f"data/aa/{i}", b"z" * (200 * KIB)) for i in range(3)))
        return time.monotonic() - started

    assert asyncio.run(main()) >= 0.4
