#!/usr/bin/env python3
"""Peak RSS, load time and lookup rate of the blob index at 1M / 5M / 20M blobs (issue 19).

    .venv/bin/python bench/index_memory.py WORK_DIR [--blobs 1000000,5000000,20000000]
        [--before /work/main] [--after .] [--skip-before-above 20000000]

For each size, a real repository is made once under WORK_DIR/N (kept for later runs) and
filled with index files exactly as a writer stores them: `encode_index`, sealed and named
by `Repository._store_object`, 3,000 packs of 32 blobs each a file (96,000 entries, under
INDEX_FILE_ENTRIES; 32 blobs of 512 KiB average fill a 16 MiB pack). Blob ids are random
32-byte ids, offsets and lengths what such packs hold. No pack is written: only the index
is measured.

Every measurement runs in a child process of its own (so its peak RSS is its own), which
opens the repository through `Repository.open`, loads the index with `load_index` (listing,
reading, authenticating and decoding every index file) and then times 100,000 `in` checks
of present ids, 100,000 of absent ids and 100,000 `lookup`s. "before" runs the code at
--before (main), "after" the code at --after, with the index cache in a fresh folder
("cold": the on-disk table is built) and then again ("warm": it is reused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

PACKS_PER_FILE = 3000
BLOBS_PER_PACK = 32
SAMPLE = 100_000
PASS = "bench"


def _ids(seed: int):
    r = random.Random(seed)
    while True:
        chunk = r.randbytes(32 * 4096)
        for i in range(0, len(chunk), 32):
            yield chunk[i : i + 32]


async def make_repo(path: Path, blobs: int) -> None:
    from core import crypto
    from core.repository.format import AD_INDEX, INDEX
    from core.repository.index import PackEntry, encode_index
    from core.repository.repository import Repository
    from core.storage.local import LocalBackend

    crypto.SCRYPT_N = 2**10
    if (path / "done").exists():
        return
    shutil.rmtree(path, ignore_errors=True)
    repo = await Repository.create(LocalBackend(path), PASS)
    ids = _ids(blobs)
    r = random.Random(-blobs)
    made = 0
    while made < blobs:
        packs = []
        for _ in range(PACKS_PER_FILE):
            if made >= blobs:
                break
            entries, offset = [], 0
            for _ in range(min(BLOBS_PER_PACK, blobs - made)):
                raw = r.randint(128 * 1024, 4 * 1024 * 1024)
                length = raw // 2 + 45
                entries.append(PackEntry(r.randint(0, 1), next(ids), offset, length, raw))
                offset += length
                made += 1
            packs.append((r.randbytes(32), offset + 2048, entries))
        await repo._store_object(INDEX, AD_INDEX, encode_index(packs))
    (path / "done").write_text(str(blobs))


def child(args: argparse.Namespace) -> None:
    """One measurement; prints one JSON line."""

    async def main() -> dict:
        from core import crypto
        from core.repository.repository import Repository
        from core.storage.local import LocalBackend

        crypto.SCRYPT_N = 2**10
        repo = await Repository.open(LocalBackend(Path(args.repo)), PASS)
        if args.cache and hasattr(repo, "index_cache_dir"):
            repo.index_cache_dir = Path(args.cache)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        await repo.load_index()
        load = time.perf_counter() - t0
        rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        index = repo.index
        n = len(index)
        # Present ids spread over the whole repository: every (n / SAMPLE)-th id generated.
        step = max(1, n // SAMPLE)
        present = [b for i, b in zip(range(n), _ids(args.blobs)) if i % step == 0][:SAMPLE]
        absent = [b for _, b in zip(range(SAMPLE), _ids(-1 - args.blobs))]
        t = time.perf_counter()
        hits = sum(1 for b in present if b in index)
        in_hit = len(present) / (time.perf_counter() - t)
        t = time.perf_counter()
        misses = sum(1 for b in absent if b in index)
        in_miss = len(absent) / (time.perf_counter() - t)
        t = time.perf_counter()
        found = sum(1 for b in present if index.lookup(b) is not None)
        lookups = len(present) / (time.perf_counter() - t)
        assert hits == found == len(present) and misses == 0, (hits, found, misses)
        return {
            "blobs": n,
            "load_s": round(load, 2),
            "rss_open_mib": rss0 // 1024,
            "rss_load_mib": rss_load // 1024,
            "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "in_hit_per_s": int(in_hit),
            "in_miss_per_s": int(in_miss),
            "lookup_per_s": int(lookups),
        }

    print(json.dumps(asyncio.run(main())), flush=True)


def run_child(code: Path, repo: Path, blobs: int, cache: Path | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code.resolve()))
    cmd = [sys.executable, __file__, "--child", "--repo", str(repo), "--n", str(blobs)]
    if cache is not None:
        cmd += ["--cache", str(cache)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("work", nargs="?")
    p.add_argument("--blobs", default="1000000,5000000,20000000")
    p.add_argument("--before", default="/work/main")
    p.add_argument("--after", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--skip-before-above", type=int, default=10**12)
    p.add_argument("--child", action="store_true")
    p.add_argument("--repo")
    p.add_argument("--n", dest="blobs_n", type=int)
    p.add_argument("--cache")
    args = p.parse_args()
    if args.child:
        args.blobs = args.blobs_n
        child(args)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    work = Path(args.work)
    print("| blobs | code | load s | RSS after load MiB | peak RSS MiB | `in` hit/s | `in` miss/s | lookup/s |")
    print("|---|---|---|---|---|---|---|---|")
    for blobs in (int(x) for x in args.blobs.split(",")):
        repo = work / str(blobs)
        t = time.perf_counter()
        asyncio.run(make_repo(repo, blobs))
        print(f"<!-- {blobs}: repository ready in {time.perf_counter() - t:.0f} s -->", flush=True)
        cache = work / f"cache-{blobs}"
        shutil.rmtree(cache, ignore_errors=True)
        runs = []
        if blobs <= args.skip_before_above:
            runs.append(("before (main, dict)", Path(args.before), None))
        runs += [("after, cold cache", Path(args.after), cache), ("after, warm cache", Path(args.after), cache)]
        for label, code, c in runs:
            r = run_child(code, repo, blobs, c)
            print(
                f"| {r['blobs']:,} | {label} | {r['load_s']} | {r['rss_load_mib']} | {r['rss_peak_mib']} | "
                f"{r['in_hit_per_s']:,} | {r['in_miss_per_s']:,} | {r['lookup_per_s']:,} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
