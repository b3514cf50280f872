"""wal-push under load and under SIGKILL.

Load: a cluster with 1 MiB WAL segments (initdb --wal-segsize=1, so pgbench switches segments
dozens of times a second) archives through the real CLI while pgbench runs; afterwards the
server's archiver reports no failure, the archive has no gap from its first to its last
segment, and every archived segment reads back byte-identical to the server's own copy.

Crash: wal-push is SIGKILLed at random moments of its run, many times; whatever it left,
the name is either not archived (wal-fetch exits 1) or archived whole, never damaged, and a
second push succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import PASSPHRASE as WS_PASSPHRASE
from conftest import ROOT, Workspace
from wal_support import PASSPHRASE, ServerRepo, enable_archiving

SEG_1M = 1024 * 1024


def _segno(name: str, seg_size: int) -> tuple[int, int]:
    """(timeline, absolute segment number): computed here, not with core's helper it checks."""
    per_log = 0x100000000 // seg_size
    return int(name[:8], 16), int(name[8:16], 16) * per_log + int(name[16:24], 16)


def _pgbench(c, *args: str, timeout: float = 180) -> str:
    p = subprocess.run(
        [str(c.bin / "pgbench"), "-h", c.host, "-p", str(c.port), "-U", c.user, *args, "postgres"],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def _wait_archived(c, seg: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = c.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if last and last[:24] >= seg:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{seg} not archived: {c.psql('SELECT * FROM pg_stat_archiver')}\n"
        f"{(c.dir / 'server.log').read_text(errors='replace')[-3000:]}"
    )


async def _fetch_all(repo_dir: Path, passphrase: str, names: list[str], dest: Path) -> dict[str, bytes]:
    """wal-fetch's own code (core.sources.postgres.wal.fetch) over one opened repository:
    one CLI process per segment would cost minutes for no extra coverage."""
    from concurrent.futures import ThreadPoolExecutor

    from core.repository.repository import Repository
    from core.sources.postgres.wal import fetch
    from core.storage.local import LocalBackend

    backend = LocalBackend(repo_dir)
    with ThreadPoolExecutor(2) as pool:
        repo = await Repository.open(backend, passphrase)
        repo.executor = pool
        await repo.load_index()
        out = {}
        for n in names:
            await fetch(repo, n, dest)
            out[n] = dest.read_bytes()
        await backend.close()
    return out


def test_no_segment_lost_under_pgbench(pg_cluster, tmp_path: Path) -> None:
    c = pg_cluster("--wal-segsize=1")
    assert c.psql("SHOW wal_segment_size") == "1MB"
    sr = ServerRepo.create(f'url = "{c.url()}"\nmode = "physical"')
    try:
        assert sr.cli("init").code == 0
        # Keep every segment in pg_wal (no recycling) so each archived one can be compared.
        c.psql("ALTER SYSTEM SET wal_keep_size = '2GB'")
        c.psql("ALTER SYSTEM SET max_wal_size = '2GB'")
        c.psql("ALTER SYSTEM SET checkpoint_timeout = '1h'")
        # No WAL of its own once the load stops: the archive is then still while it is checked.
        c.psql("ALTER SYSTEM SET autovacuum = off")
        enable_archiving(c, sr.archive_command())
        first_live = c.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")

        _pgbench(c, "-i", "-s", "1", "-q")
        # After a checkpoint the first write to every page logs a full-page image: tens of MB
        # of WAL from a fixed number of transactions, however fast this machine is today.
        c.psql("CHECKPOINT")
        log = _pgbench(c, "-c", "4", "-j", "2", "-t", "1500", "-n")
        assert "number of failed transactions: 0" in log, log
        last = c.psql("SELECT pg_walfile_name(pg_switch_wal())")
        _wait_archived(c, last)

        stat = c.psql("SELECT archived_count, failed_count FROM pg_stat_archiver").split("|")
        assert stat[1] == "0", (c.dir / "server.log").read_text(errors="replace")[-3000:]

        names = sorted(n for n in os.listdir(sr.repo / "wal") if len(n) == 24)
        assert int(stat[0]) == len(os.listdir(sr.repo / "wal"))  # each archived exactly once, all present
        assert len(names) >= 20, names  # the load really switched segments many times
        print(f"{len(names)} segments of 1 MiB archived under load, none failed")
        # No gap, counted by hand from the first to the last archived segment.
        nums = [_segno(n, SEG_1M) for n in names]
        assert {t for t, _ in nums} == {1}
        assert [n for _, n in nums] == list(range(nums[0][1], nums[-1][1] + 1))
        assert names[0] <= first_live and names[-1] == last

        r = sr.cli("database", "status", "--json", as_server=False)
        assert r.code == 0, r.err
        st = r.json()
        assert st["gaps"] == [] and st["segments"] == len(names)
        assert (st["first_segment"], st["last_segment"]) == (names[0], last)
        assert st["server"]["reachable"] and st["server"]["failed_count"] == 0

        # Every archived segment reads back exactly as the server wrote it.
        fetched = asyncio.run(_fetch_all(sr.repo, PASSPHRASE, names, tmp_path / "seg"))
        compared = 0
        for n in names:
            assert len(fetched[n]) == SEG_1M, n
            live = c.dir / "data" / "pg_wal" / n
            if live.exists():
                assert fetched[n] == live.read_bytes(), n
                compared += 1
        assert compared >= len(names) - 2, (compared, len(names))  # wal_keep_size kept them all
        # ...and through the CLI itself, as restore_command runs it.
        for n in (names[0], names[len(names) // 2], last):
            out = tmp_path / "RECOVERYXLOG"
            r = sr.cli("wal-fetch", n, str(out), as_server=False)
            assert r.code == 0 and out.read_bytes() == fetched[n], r.err
    finally:
        sr.remove()


# -- crash safety ------------------------------------------------------------------------------


def _push_argv(ws: Workspace, path: Path) -> list[str]:
    return [sys.executable, "-m", "app.cli", "--config", str(ws.config), "wal-push", str(path)]


def _env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    e["AXISOR_BACKUP_PASSPHRASE"] = WS_PASSPHRASE
    return e


def _tree(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and "locks" not in p.parts}


def test_sigkill_during_wal_push_never_leaves_a_damaged_segment(ws: Workspace) -> None:
    assert ws.cli("init").code == 0
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    src = ws.root / "pg_wal"
    src.mkdir()

    def segment(i: int) -> Path:
        # Incompressible 16 MiB: the longest sealing and writing window a segment can give.
        p = src / f"0000000100000000000000{i:02X}"
        if not p.exists():
            p.write_bytes(hashlib.shake_256(f"seg{i}".encode()).digest(16 * SEG_1M))
        return p

    locks = ws.repo / "locks"

    def start(path: Path) -> tuple[subprocess.Popen, float]:
        """Start a push; return it once it holds its lock (start-up and scrypt are behind it),
        with the seconds that took."""
        held = set(os.listdir(locks))
        t = time.monotonic()
        p = subprocess.Popen(
            _push_argv(ws, path), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while p.poll() is None and not set(os.listdir(locks)) - held:
            time.sleep(0.001)
        return p, time.monotonic() - t

    # Calibrate: how long a push runs before and after it takes its lock.
    p, startup = start(segment(1))
    t = time.monotonic()
    assert p.wait() == 0
    work = time.monotonic() - t

    killed_before_commit = killed_mid_write = finished = 0
    attempts = 0
    # At least 12 kills, more (up to 30) until 3 have landed between the first write and the commit.
    while attempts < 12 or (killed_mid_write < 3 and attempts < 30):
        attempts += 1
        i = attempts + 1
        seg = segment(i)
        before = _tree(ws.repo)
        # Every other kill lands anywhere in the run; the rest inside the push proper (read,
        # seal, pack, index, manifest), where a crash could do harm.
        if i % 2:
            p = subprocess.Popen(
                _push_argv(ws, seg), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            delay = rnd.uniform(0, 1.1) * (startup + work)
        else:
            p, _ = start(seg)
            delay = rnd.uniform(0.3, 1.1) * work
        try:
            p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
        assert p.returncode in (0, -signal.SIGKILL), (seed, i, p.returncode)
        archived = (ws.repo / "wal" / seg.name).exists()
        if p.returncode == 0:
            finished += 1
        elif not archived:
            killed_before_commit += 1
            if _tree(ws.repo) - before:
                killed_mid_write += 1  # packs or an index written, the manifest not: the window at risk

        dest = ws.root / "restore" / "RECOVERYXLOG"
        dest.parent.mkdir(exist_ok=True)
        dest.unlink(missing_ok=True)
        r = ws.cli("wal-fetch", seg.name, str(dest))
        if archived:
            assert r.code == 0 and dest.read_bytes() == seg.read_bytes(), (seed, i, r.err)
        else:
            assert r.code == 1 and not dest.exists(), (seed, i, r.code, r.err)  # never 9: never damaged

        r = ws.cli("wal-push", str(seg), "--json")
        assert r.code == 0, (seed, i, r.err)
        assert r.json()["already_archived"] is archived

    print(
        f"seed {seed}: push {startup:.2f} s start-up + {work:.2f} s work; {attempts} kills: {killed_before_commit} before the commit "
        f"({killed_mid_write} after writing packs or index), {finished} finished first"
    )
    assert killed_before_commit >= 3 and killed_mid_write >= 1, (
        seed,
        startup,
        work,
        killed_before_commit,
        killed_mid_write,
        finished,
    )
    # What the kills left is debris, not damage: the whole repository verifies, WAL included.
    r = ws.cli("verify", "--full", "--json")
    assert r.code == 0, (seed, r.out, r.err)
    assert r.json()["wal_files_checked"] == attempts + 1
    names = [segment(i).name for i in range(1, 2 + attempts)]
    fetched = asyncio.run(_fetch_all(ws.repo, WS_PASSPHRASE, names, ws.root / "restore" / "again"))
    assert all(fetched[n] == (src / n).read_bytes() for n in names), seed
    assert not list((ws.root / "restore").glob(".*"))  # wal-fetch left no temp file
