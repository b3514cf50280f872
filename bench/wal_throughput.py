"""Sustained WAL archiving: a backlog of N 16 MiB segments pushed the way PostgreSQL's
archiver does it, one `archive_command` at a time, in name order, each `.ready` renamed
to `.done` only after the command exited 0.

    python3 bench/wal_throughput.py [--segments 64] [--dir /work/bench-data/walthr]
        [--code before=PATH --code after=.] [--daemon after+daemon=.]

Each ``--code NAME=PATH`` is a source tree whose `axisor-backup wal-push` is timed (run as
``python -m app.cli`` with PYTHONPATH=PATH, its bytecode compiled first, a fresh repository
and state directory each; for the code before a change: ``git archive main | tar -x -C DIR``),
so a before/after comparison is one run on the same data; ``--daemon NAME=PATH`` the same with
`axisor-backup daemon` running (wal-push hands its file to it). ``--warm``: two segments of
another timeline are archived first, so the state folder holds what a running server's has
(the route to the markers, app/wal_quick.py); without it the first push stores its backlog
itself. Then, as the floor, the
`test ! -f ARCH/%f && cp %p ARCH/%f && sync ARCH/%f` archive_command of PostgreSQL's
manual, and WAL-G (`wal-g wal-push`, WALG_UPLOAD_CONCURRENCY=4, file storage) when
`wal-g` is on PATH.

Segments: each is half random bytes (incompressible: full-page images of random data,
already-compressed columns) and half repetitive 64-byte records with a running counter
(row inserts: zstd-3 shrinks them about 30x; no two segments share a chunk). The backlog
is all ready at the start: the case where the server writes WAL faster than it is archived.

Then, for each source tree, recovery's side: `wal-fetch` of every segment in order into
pg_wal/RECOVERYXLOG, one at a time as restore_command runs (each checked bit-exact, untimed).

Prints MB/s (10^6 bytes) and segments/s per tool and writes
bench/results/wal-throughput-<time>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEG = 16 * 1024 * 1024
HALF = SEG // 2


def segment_bytes(no: int) -> bytes:
    records = b"".join(
        (b"INSERT rel=16384 blk=%08d off=%04d xid=%012d" % (no * 131072 + i, i % 291, no * 1_000_003 + i)).ljust(63)
        + b"\n"
        for i in range(HALF // 64)
    )
    return os.urandom(HALF) + records


def make_segments(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"0000000100000001{i + 1:08X}" for i in range(count)]
    for i, n in enumerate(names):
        p = folder / n
        if not p.exists() or p.stat().st_size != SEG:
            p.write_bytes(segment_bytes(i))
    return names


def fresh_pg_wal(base: Path, source: Path, names: list[str]) -> Path:
    """A pg_wal holding the segments (hard links: the same page-cached bytes for every
    tool) and an ``archive_status/<name>.ready`` for each."""
    wal = base / "pg_wal"
    shutil.rmtree(wal, ignore_errors=True)
    (wal / "archive_status").mkdir(parents=True)
    for n in names:
        os.link(source / n, wal / n)
        (wal / "archive_status" / f"{n}.ready").touch()
    return wal


def archiver(
    wal: Path, command: list[str] | str, env: dict[str, str], cwd: Path
) -> tuple[float, list[float], list[dict]]:
    """Run ``command`` (``%p`` replaced) for the oldest .ready file until none is left, as
    PostgreSQL's archiver does; a failure stops the run (the real one would retry)."""
    status = wal / "archive_status"
    each: list[float] = []
    outputs: list[dict] = []
    started = time.perf_counter()
    while ready := sorted(e.name for e in os.scandir(status) if e.name.endswith(".ready")):
        name = ready[0][: -len(".ready")]
        path = str(wal / name)
        t = time.perf_counter()
        if isinstance(command, str):
            r = subprocess.run(
                ["sh", "-c", command.replace("%p", path).replace("%f", name)],
                capture_output=True,
                text=True,
                env=env,
                cwd=cwd,
            )
        else:
            r = subprocess.run(
                [a.replace("%p", path) for a in command], capture_output=True, text=True, env=env, cwd=cwd
            )
        each.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"archive command failed for {name} ({r.returncode}): {r.stderr.strip()[-500:]}")
        if r.stdout.strip().startswith("{"):
            outputs.append(json.loads(r.stdout))
        os.rename(status / f"{name}.ready", status / f"{name}.done")
    return time.perf_counter() - started, each, outputs


def summary(label: str, wall: float, each: list[float], count: int) -> dict:
    mbs = count * SEG / 1e6 / wall
    return {
        "tool": label,
        "wall_s": round(wall, 3),
        "mb_per_s": round(mbs, 1),
        "segments_per_s": round(count / wall, 2),
        "median_push_s": round(statistics.median(each), 4),
        "max_push_s": round(max(each), 4),
    }


def start_daemon(axisor: list[str], env: dict[str, str], code: Path, work: Path) -> subprocess.Popen:
    """`axisor-backup daemon` on this config and state folder; returns once its socket answers."""
    log = open(work / "daemon.log", "w")
    proc = subprocess.Popen(
        [*axisor, "daemon"], cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while "daemon started" not in (work / "daemon.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"daemon did not start: {(work / 'daemon.log').read_text()[-500:]}")
        time.sleep(0.1)
    return proc


def warm_up(axisor: list[str], env: dict[str, str], code: Path, work: Path, source: Path) -> None:
    """Two segments of another timeline archived first, the way any server's first push ahead
    does it: the route to the markers is recorded (app/wal_quick.py), as on a running server."""
    wal = work / "warm" / "pg_wal"
    (wal / "archive_status").mkdir(parents=True)
    names = [f"0000000900000001{i:08X}" for i in (1, 2)]
    for i, n in enumerate(names):
        shutil.copyfile(source / sorted(os.listdir(source))[i], wal / n)
        (wal / "archive_status" / f"{n}.ready").touch()
    archiver(wal, [*axisor, "wal-push", "%p"], env, code)
    shutil.rmtree(work / "warm")


def run_axisor(
    label: str, code: Path, base: Path, source: Path, names: list[str], daemon: bool = False, warm: bool = False
) -> dict:
    work = base / label
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pf = work / "passphrase"
    pf.write_text("bench passphrase\n")
    pf.chmod(0o600)
    cfg = work / "config.toml"
    cfg.write_text(f'[storage]\nlocal_path = "{work / "repo"}"\npassphrase_file = "{pf}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env.update(PYTHONPATH=str(code), AXISOR_BACKUP_STATE_DIR=str(work / "state"))
    axisor = [sys.executable, "-m", "app.cli", "--config", str(cfg)]
    subprocess.run([*axisor, "init"], cwd=code, env=env, check=True, capture_output=True)
    if warm:
        warm_up(axisor, env, code, work, source)
    wal = fresh_pg_wal(work, source, names)
    proc = start_daemon(axisor, env, code, work) if daemon else None
    try:
        wall, each, outs = archiver(wal, [*axisor, "wal-push", "%p", "--json"], env, code)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=120)
    res = summary(label, wall, each, len(names))
    res["code"] = str(code)
    res["from_marker"] = sum(bool(o.get("from_marker")) for o in outs)
    res["through_daemon"] = sum(bool(o.get("through_daemon")) for o in outs)
    res["full_pushes"] = len(outs) - res["from_marker"]
    if len(outs) == len(each):
        full = [t for t, o in zip(each, outs) if not o.get("from_marker")]
        marker = [t for t, o in zip(each, outs) if o.get("from_marker")]
        res["full_push_seconds"] = [round(t, 3) for t in full]
        res["marker_push_median_s"] = round(statistics.median(marker), 4) if marker else None
        res["in_command_seconds_full"] = [o.get("seconds") for o in outs if not o.get("from_marker")]
    shutil.rmtree(wal)
    # Recovery's side: restore_command for each segment in order, into pg_wal/RECOVERYXLOG
    # (PostgreSQL replays it before asking for the next; replay itself is not simulated).
    # Every segment is checked bit-exact, untimed.
    restore = work / "restore" / "pg_wal"
    restore.mkdir(parents=True)
    dest = restore / "RECOVERYXLOG"
    fetch_times = []
    started = time.perf_counter()
    for n in names:
        t = time.perf_counter()
        subprocess.run([*axisor, "wal-fetch", n, str(dest)], cwd=code, env=env, check=True, capture_output=True)
        fetch_times.append(time.perf_counter() - t)
        if hashlib.sha256(dest.read_bytes()).digest() != hashlib.sha256((source / n).read_bytes()).digest():
            raise SystemExit(f"{label}: {n} came back different")
    fetch_wall = sum(fetch_times)
    res["fetch"] = {
        "wall_s": round(fetch_wall, 3),
        "mb_per_s": round(len(names) * SEG / 1e6 / fetch_wall, 1),
        "median_fetch_s": round(statistics.median(fetch_times), 4),
        "max_fetch_s": round(max(fetch_times), 4),
        "elapsed_with_checks_s": round(time.perf_counter() - started, 3),
    }
    shutil.rmtree(work / "restore", ignore_errors=True)  # a prefetch follower may be leaving
    return res


def run_cp(base: Path, source: Path, names: list[str]) -> dict:
    work = base / "cp"
    shutil.rmtree(work, ignore_errors=True)
    (work / "arch").mkdir(parents=True)
    wal = fresh_pg_wal(work, source, names)
    arch = work / "arch"
    wall, each, _ = archiver(
        wal, f'test ! -f "{arch}/%f" && cp "%p" "{arch}/%f" && sync "{arch}/%f"', dict(os.environ), ROOT
    )
    shutil.rmtree(wal)
    return summary("cp + sync", wall, each, len(names))


def run_walg(base: Path, source: Path, names: list[str]) -> dict | None:
    walg = shutil.which("wal-g")
    if walg is None:
        return None
    work = base / "walg"
    shutil.rmtree(work, ignore_errors=True)
    (work / "store").mkdir(parents=True)
    wal = fresh_pg_wal(work, source, names)
    env = dict(
        os.environ,
        WALG_FILE_PREFIX=str(work / "store"),
        WALG_UPLOAD_CONCURRENCY="4",
        WALG_COMPRESSION_METHOD="zstd",
        PGDATA=str(work),
    )
    wall, each, _ = archiver(wal, [walg, "wal-push", "%p"], env, ROOT)
    shutil.rmtree(wal)
    return summary("wal-g (concurrency 4)", wall, each, len(names))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=64)
    ap.add_argument("--dir", type=Path, default=Path("/work/bench-data/walthr"))
    ap.add_argument(
        "--code",
        action="append",
        default=[],
        help="NAME=PATH of a source tree to time (default: this one, as 'axisor')",
    )
    ap.add_argument(
        "--daemon",
        action="append",
        default=[],
        help="NAME=PATH of a source tree to time with `axisor-backup daemon` running",
    )
    ap.add_argument(
        "--warm",
        action="store_true",
        help="archive two other segments first (a running server's state: the route recorded)",
    )
    args = ap.parse_args()
    codes = [(c.split("=", 1)[0], Path(c.split("=", 1)[1]).resolve(), False) for c in args.code]
    codes += [(c.split("=", 1)[0], Path(c.split("=", 1)[1]).resolve(), True) for c in args.daemon]
    codes = codes or [("axisor", ROOT, False)]
    base = args.dir
    base.mkdir(parents=True, exist_ok=True)
    source = base / "segments"
    names = make_segments(source, args.segments)
    load = [os.getloadavg()[0]]
    rows = []
    for _, code, _ in codes:
        # Bytecode compiled, as an installed package has it: without it (PYTHONDONTWRITEBYTECODE
        # in a shell, a fresh checkout) every run compiles its imports again, ~0.1-0.2 s each.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "app", "core"],
            cwd=code,
            check=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        )
    for label, code, daemon in codes:
        rows.append(run_axisor(label, code, base, source, names, daemon, args.warm))
        load.append(os.getloadavg()[0])
    rows.append(run_cp(base, source, names))
    walg = run_walg(base, source, names)
    if walg:
        rows.append(walg)
    load.append(os.getloadavg()[0])
    res = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "segments": args.segments,
        "segment_bytes": SEG,
        "content": "half random, half repetitive 64-byte records",
        "load_average_1m": load,
        "walg_installed": walg is not None,
        "warm": args.warm,
        "rows": rows,
        "target": "WAL-G daemon mode, concurrency 4: about 110 MB/s (issue 19)",
    }
    out = ROOT / "bench" / "results" / f"wal-throughput-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"{args.segments} x 16 MiB segments, backlog all .ready, pushed one at a time in order")
    print(f"{'tool':24} {'wall s':>8} {'MB/s':>7} {'seg/s':>6} {'median push s':>14} {'full/marker':>12}")
    for r in rows:
        split = f"{r['full_pushes']}/{r['from_marker']}" if "full_pushes" in r else ""
        if r.get("through_daemon"):
            split = f"{split} ({r['through_daemon']} daemon)"
        print(
            f"{r['tool']:24} {r['wall_s']:8.2f} {r['mb_per_s']:7.1f} {r['segments_per_s']:6.2f} "
            f"{r['median_push_s']:14.3f} {split:>12}"
        )
        if r.get("full_push_seconds"):
            print(
                f"{'':24} full pushes {', '.join(f'{t:.2f}' for t in r['full_push_seconds'])} s; "
                f"answered from a marker: median {r['marker_push_median_s']} s"
            )
    for r in rows:
        if "fetch" in r:
            f = r["fetch"]
            print(
                f"{r['tool'] + ' wal-fetch':24} {f['wall_s']:8.2f} {f['mb_per_s']:7.1f} "
                f"{len(names) / f['wall_s']:6.2f} {f['median_fetch_s']:14.3f}"
            )
    if walg is None:
        print("wal-g not installed: target is WAL-G's ~110 MB/s (daemon mode, concurrency 4; issue 19)")
    print(f"load average {', '.join(f'{x:.1f}' for x in load)}; {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
