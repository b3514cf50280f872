"""Progress worth watching (issue 18): a scanner that forecasts what a backup visits, a
smoothed rate, an ETA, a percentage that never shows 100 % early; and a real backup job
whose progress carries them. No timed assertions: the clock is passed in."""

from __future__ import annotations

import asyncio
import os

from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import PASSPHRASE
from core.backup.scan import ScanTotals, scan_paths
from core.progress import RateMeter, eta_seconds, fraction
from fs_shapes import make_deep


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.floats(1e3, 1e10),
    total_s=st.floats(5, 3600),
    step=st.floats(0.25, 2.0),
    jitter=st.lists(st.floats(-0.3, 0.3), min_size=1, max_size=50),
)
def test_eta_at_half_way_is_within_half_of_the_real_remaining_time_on_a_steady_workload(rate, total_s, step, jitter):
    total = int(rate * total_s)
    meter = RateMeter()
    meter.update(0.0, 0)  # as the job runners do when the work starts
    t, i = 0.0, 0
    while t < total_s / 2:
        # Samples come irregularly (coalesced progress), the work itself is steady.
        t += step * (1 + jitter[i % len(jitter)])
        i += 1
        meter.update(t, int(rate * t))
    remaining_real = total_s - t
    eta = eta_seconds(int(rate * t), total, meter.rate)
    assert eta is not None
    assert abs(eta - remaining_real) <= 0.5 * remaining_real + step


def test_rate_follows_a_change_of_pace_and_eta_needs_a_total():
    meter = RateMeter()
    done, t = 0, 0.0
    for _ in range(40):  # 100 MB/s for 20 s
        t += 0.5
        done += 50_000_000
        meter.update(t, done)
    assert abs(meter.rate - 100e6) < 1e6
    for _ in range(40):  # then 10 MB/s for 20 s: after ~6 half-lives the rate has followed
        t += 0.5
        done += 5_000_000
        meter.update(t, done)
    assert abs(meter.rate - 10e6) < 1e6
    assert eta_seconds(done, None, meter.rate) is None and eta_seconds(done, done * 2, 0.0) is None


def test_fraction_never_shows_complete_before_the_work_is():
    assert fraction(100, 100, final=False) == 0.99 and fraction(120, 100, final=False) == 0.99
    assert fraction(100, 100, final=True) == 1.0 and fraction(5, None, final=False) is None


def test_scanner_counts_what_a_backup_visits(ws):
    src = ws.src
    for i in range(30):
        (src / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
    (src / "skip.tmp").write_bytes(b"x" * 5000)
    (src / "link").symlink_to("f1.bin")
    os.mkfifo(src / "fifo")
    make_deep(src, 3000)  # iterative: no recursion limit
    totals = ScanTotals()
    scan_paths([src], ("*.tmp",), totals)
    assert totals.done
    expected_files = 30 + 1  # the binaries and the deep folder's leaf
    expected_bytes = sum(1000 + i for i in range(30)) + len(b"bottom\n")
    assert (totals.files, totals.bytes) == (expected_files, expected_bytes)

    stopped = ScanTotals(stop=True)
    scan_paths([src], (), stopped)
    assert not stopped.done and stopped.files == 0


def test_a_backup_job_reports_totals_percentage_and_eta(ws, monkeypatch):
    """A real backup job through the engine: its progress carries the scanner's totals and
    an ETA. The job's clock ticks a second per reading, so that a rate exists however fast
    this host backs up ten megabytes (no timed assertion)."""
    import itertools
    import types

    from core.config import load_config
    from core.backup import job as backup_job
    from core.jobs.api import JobState, connect_engine

    ticks = itertools.count()
    monkeypatch.setattr(backup_job, "time", types.SimpleNamespace(monotonic=lambda: float(next(ticks))))

    for i in range(40):
        (ws.src / f"data{i}.bin").write_bytes(os.urandom(256 * 1024))
    config = load_config(ws.config)
    assert ws.cli("init").code == 0

    async def run(kind: str = "full"):
        engine = await connect_engine(config, lambda _c: PASSPHRASE, prefer_daemon=False)
        seen = []
        try:
            events = await engine.subscribe()
            job = await engine.submit("backup", {"type": kind})
            async for ev in events:
                if ev.job.id == job.id and ev.job.progress is not None:
                    seen.append(ev.job.progress)
                if ev.job.id == job.id and ev.type == "finished":
                    return ev.job, seen
        finally:
            await engine.close()

    job, seen = asyncio.run(run())
    assert job.state == JobState.COMPLETED, job.error
    total = sum(p.stat().st_size for p in ws.src.iterdir() if p.is_file())
    with_totals = [p for p in seen if p.bytes_total]
    assert with_totals, seen
    assert with_totals[-1].bytes_total == total and with_totals[-1].files_total == len(list(ws.src.iterdir()))
    assert all(p.bytes_done <= p.bytes_total for p in with_totals)
    assert any(p.eta_seconds is not None for p in with_totals), "no ETA was ever shown"

    # The next run forecasts from the previous snapshot (no scan doubling an unchanged run's
    # stat work): the same totals, from the first report on.
    job, seen = asyncio.run(run("incremental"))
    assert job.state == JobState.COMPLETED, job.error
    backup_reports = [p for p in seen if p.phase.startswith("backup")]
    assert backup_reports and all(p.bytes_total == total for p in backup_reports if p.bytes_done), seen


def test_a_full_verification_reports_packs_and_bytes_of_the_total(ws):
    """`verify` once showed "0 B" all the way: a full one now counts packs and bytes read
    against what storage holds, with the pack being read, then the snapshots walked."""
    from core.config import load_config
    from core.service import BackupService

    for i in range(12):
        (ws.src / f"data{i}.bin").write_bytes(os.urandom(200 * 1024))
    assert ws.cli("init").code == 0 and ws.cli("backup").code == 0 and ws.cli("backup", "--type", "full").code == 0
    seen = []

    async def run():
        svc = BackupService(load_config(ws.config), lambda _c: PASSPHRASE)
        try:
            return await svc.verify(full=True, on_progress=seen.append)
        finally:
            await svc.close()

    report = asyncio.run(run())
    assert report.ok
    packs = [p for p in (ws.repo / "data").rglob("*") if p.is_file()]
    reading = [p for p in seen if p.phase == "reading packs"]
    assert reading[0].done == 0 and reading[-1].done == reading[-1].total == len(packs)
    assert reading[-1].bytes_done == reading[-1].bytes_total == sum(p.stat().st_size for p in packs)
    assert all(p.current.startswith("data/") for p in reading[1:])
    walking = [p for p in seen if p.phase == "walking snapshots"]
    assert [p.done for p in walking] == [0, 1] and all(p.total == 2 for p in walking)


def test_a_restore_reports_files_and_bytes_of_what_its_plan_writes(ws, tmp_path):
    from core.config import load_config
    from core.service import BackupService

    sizes = [1000 * (i + 1) for i in range(25)]
    for i, n in enumerate(sizes):
        (ws.src / f"r{i}.bin").write_bytes(os.urandom(n))
    assert ws.cli("init").code == 0 and ws.cli("backup").code == 0
    seen = []

    async def run():
        svc = BackupService(load_config(ws.config), lambda _c: PASSPHRASE)
        try:
            snaps = await svc.resolve(["latest"])
            return await svc.restore_many(snaps, tmp_path / "out", on_progress=seen.append)
        finally:
            await svc.close()

    asyncio.run(run())
    total = sum(p.stat().st_size for p in ws.src.iterdir() if p.is_file())
    files = sum(1 for p in ws.src.iterdir() if p.is_file())
    assert seen and all(p.files_total == files and p.bytes_total == total for p in seen)
    assert (seen[-1].files_done, seen[-1].bytes_done) == (files, total)
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
