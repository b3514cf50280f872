"""Progress of a logical database backup (issue 18): the table whose data is passing, named
schema-qualified and escaped, with its size; bytes done of a total forecast from the
catalog's table sizes in the dump's snapshot; a rate and an ETA once the total is known.
A real cluster and a real backup job through the engine; no timed assertion (the job's
clock ticks a second per reading, so a rate exists however fast this host dumps)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import types

from dataclasses import replace

import pytest

from app.cli_jobs import _progress_line
from conftest import PASSPHRASE, Workspace
from core.backup.chunker import Chunker
from core.config import load_config
from core.jobs.api import JobState, connect_engine
from core.text import human_bytes

# A table name with a tab and a bracket: shown escaped, never raw (core.text.shown).
ODD = "Big\tTable[1]"


@pytest.fixture(scope="module")
def cluster(pg_cluster):
    c = pg_cluster()
    c.createdb("progress")
    # ~12 MB of COPY text in one table (three stream takes of 4 MiB), a few small ones.
    c.psql(
        f'CREATE SCHEMA sales; CREATE TABLE sales."{ODD}" AS '
        "SELECT g AS id, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 110000) g; "
        "CREATE TABLE public.small AS SELECT g AS id FROM generate_series(1, 50) g; "
        "CREATE TABLE public.empty (id int); ANALYZE",
        "progress",
    )
    return c


def _run_job(ws: Workspace, monkeypatch) -> tuple:
    import core.backup.job as backup_job
    import core.backup.stream as stream_module
    import core.jobs.engine as engine_module

    ticks = itertools.count()
    monkeypatch.setattr(backup_job, "time", types.SimpleNamespace(monotonic=lambda: float(next(ticks))))
    monkeypatch.setattr(engine_module, "PROGRESS_EVENT_INTERVAL", 0.0)  # every report becomes an event
    # A report per MiB stored, not per 4 MiB: on a loaded host the catalog's sizes may come
    # after the first takes of a 12 MB dump. And a 2 MiB window, not 16: the stream is read
    # not much ahead of what is stored, so the forecast, not the bytes read, makes the total.
    monkeypatch.setattr(stream_module, "TAKE_BYTES", 1024 * 1024)
    monkeypatch.setattr(stream_module, "Chunker", functools.partial(Chunker, window=2 * 1024 * 1024))
    config = load_config(ws.config)

    async def run():
        engine = await connect_engine(config, lambda _c: PASSPHRASE, prefer_daemon=False)
        seen = []
        try:
            events = await engine.subscribe()
            job = await engine.submit("backup", {"type": "full", "sources": ["database"]})
            async for ev in events:
                if ev.job.id == job.id and ev.type == "progress" and ev.job.progress is not None:
                    seen.append(ev.job.progress)
                if ev.job.id == job.id and ev.type == "finished":
                    return ev.job, seen
        finally:
            await engine.close()

    job, seen = asyncio.run(run())
    return job, seen


def test_a_logical_backup_job_names_the_table_passing_with_its_size_and_a_total(
    ws: Workspace, cluster, monkeypatch
) -> None:
    c = cluster
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{c.url("progress")}"\npg_bin_dir = "{c.bin}"\n'
        f'[storage]\nlocal_path = "{ws.repo}"\n'
    )
    assert ws.cli("init").code == 0
    job, seen = _run_job(ws, monkeypatch)
    assert job.state == JobState.COMPLETED, job.error
    dump_size = job.result["snapshots"][0]["metadata"]["dump_size"]
    size = int(c.psql(f"SELECT pg_table_size('sales.\"{ODD}\"')", "progress"))

    dumping = [p for p in seen if p.phase.startswith("backup") and p.bytes_done]
    assert dumping, seen
    # The big table, schema-qualified, quoted as an identifier, its tab escaped, with its size.
    named = [p for p in dumping if 'sales."Big\\tTable[1]"' in p.current]
    assert named, [p.current for p in dumping]
    assert all("\t" not in p.current for p in seen)
    sized = [p for p in named if p.current_size is not None]  # once the catalog's sizes are read
    assert sized and all(p.current_size == size and p.current.endswith(f" ({human_bytes(size)})") for p in sized)

    with_total = [p for p in dumping if p.bytes_total]
    assert with_total, dumping
    assert all(p.bytes_done <= p.bytes_total for p in with_total)
    assert all(p.phase == "backup" for p in with_total)  # no longer counting: the catalog has answered
    # A forecast (heap pages are not COPY text: less the row headers the catalog's row
    # estimate accounts for), close: pg_table_size alone is 24 % over here.
    assert all(abs(p.bytes_total - dump_size) <= 0.1 * dump_size for p in with_total), (dump_size, with_total)
    assert any(p.eta_seconds is not None for p in with_total), "no ETA was ever shown"
    # Before the sizes are read there is no total, and so no ETA: never a made-up figure.
    assert all(p.eta_seconds is None for p in dumping if not p.bytes_total)

    # The line `backup` draws on a terminal: figures first, then the table, in the columns there
    # are (the job's name goes first, then the middle of the name); `jobs --follow` prints it whole.
    shown = [p for p in sized if p.eta_seconds is not None]
    assert shown, sized
    running = replace(job, state=JobState.RUNNING, progress=shown[0])
    table = f'sales."Big\\tTable[1]" ({human_bytes(size)})'
    assert _progress_line(running).endswith(f", {table}") and job.id in _progress_line(running)
    for width in (79, 100, 160):
        line = _progress_line(running, width)
        assert len(line) <= width and " %, " in line and "ETA " in line and "/s, " in line, line
        assert line.endswith(f", {table}") or "…" in line and line.endswith(" MiB)"), line
    assert _progress_line(running, 160).endswith(f", {table}")
    long = replace(running, progress=replace(shown[0], current="x" * 300 + ".tail (1.0 GiB)"))
    line = _progress_line(long, 100)
    assert len(line) <= 100 and "ETA " in line and "…" in line and line.endswith(".tail (1.0 GiB)"), line


def test_the_forecast_scales_the_sizes_to_come_by_what_passed_tables_took() -> None:
    """Heap pages are not COPY text: once a table has passed, the sizes still to come are
    scaled by its stream-to-size ratio (here without row estimates: the sizes as they are).
    The position read is the stream's (dumpsum's fed), ahead of what is stored."""
    from core.sources.postgres.dump_forecast import DumpForecast, expected_text

    told = []
    sums = types.SimpleNamespace(error=None, passing=None, passing_bytes=0, passed=[], fed=0)

    async def run() -> None:
        listed = asyncio.get_running_loop().create_future()
        forecast = DumpForecast(sums, listed, lambda n, where: told.append(where))  # type: ignore[arg-type]
        sums.fed, sums.passing, sums.passing_bytes = 600_000, "public.a", 500_000
        forecast(400_000)  # the sizes are not read yet: the table, no total
        listed.set_result(
            [("public", "a", 0, 2_000_000, -1), ("public", "b", 0, 4_000_000, 0), ("x", "ext", 0, None, -1)]
        )
        forecast(100_000)  # ratio 1 until a table has passed: a's 2 MB, less the 0.5 MB passed, and b's 4 MB
        sums.passed, sums.passing, sums.passing_bytes = [("public.a", 1_000_000)], "public.b", 1_000_000
        sums.fed = 2_100_000
        forecast(1_500_000)  # a took half its size: b's 4 MB are forecast as 2 MB, 1 MB of it passed
        sums.fed, sums.passing_bytes = 4_100_000, 3_000_000
        forecast(2_000_000)  # b passed its forecast: the total is what was read, never less
        sums.error = "the stream cannot be read"
        forecast(1_000_000)  # no position any more: the sizes as they are, or what was stored

    asyncio.run(run())
    assert [(w.table, w.table_size, w.total) for w in told] == [
        ("public.a", None, None),
        ("public.a", 2_000_000, 600_000 + 1_500_000 + 4_000_000),
        ("public.b", 4_000_000, 2_100_000 + 1_000_000),
        ("public.b", 4_000_000, 4_100_000),
        ("", None, 6_000_000),
    ]
    assert expected_text(1_000_000, 10_000) == 720_000 and expected_text(1_000_000, -1) == 1_000_000
    assert expected_text(1_000_000, 1e6) == 250_000  # wide rows TOASTed: never less than a quarter
