#!/usr/bin/env python3
"""Apply the ~1% churn of limits.md section 2 to a data set made by gen.py, or undo it.

    python3 bench/churn.py DATA ROUND      # ROUND = 1, 2, 3, ...
    python3 bench/churn.py DATA revert

A round (deterministic for a given round number and data set):
  * db/pg_dump.sql: 4 ranges of ~1.75 MB of rows in the middle (0.29% of the
    dump each) are rewritten with changed rows; row lengths change, so the
    tail shifts.  The file is rewritten in place (same inode): the part from
    the first range to EOF goes through a temp file in the side directory and
    is copied back, then the file is truncated.
  * ~30 KB of log lines are appended to each of 200 logs (10% of the logs).
  * 100 new small config files are added (0.5% of the conf files).
At scale 1.0 that changes about 13-14 MB.  Rounds stack: round 2 applied after
round 1 changes the data a little more.

Everything needed to revert is kept in a side directory outside DATA
(DATA.churn/): a copy of the original dump, the original sizes and mtimes of
the touched logs and directories, and the list of added files.  `revert`
restores the data set byte-for-byte (and the mtimes) and removes the side
directory.  Pure stdlib.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

SQL_REL = "db/pg_dump.sql"
RANGES = 4
RANGE_FRACTION = 1_750_000 / gen.SQL_BYTES  # ~1.75 MB at scale 1
LOG_FRACTION = 0.10  # 200 of 2,000 logs
LOG_APPEND = 30_000
NEW_FRACTION = 0.005  # 100 of 20,000 conf files
COPY_BUF = 8 << 20


def side_dir(data: str) -> str:
    return os.path.abspath(data).rstrip("/") + ".churn"


def _load_state(data: str) -> dict | None:
    p = os.path.join(side_dir(data), "state.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def _save_state(data: str, st: dict) -> None:
    p = os.path.join(side_dir(data), "state.json")
    with open(p + ".tmp", "w") as f:
        json.dump(st, f, indent=1)
    os.replace(p + ".tmp", p)


def _copy(src, dst, n: int | None = None) -> int:
    """Copy n bytes (or to EOF) from file object src to dst."""
    done = 0
    while n is None or done < n:
        want = COPY_BUF if n is None else min(COPY_BUF, n - done)
        b = src.read(want)
        if not b:
            break
        dst.write(b)
        done += len(b)
    return done


def _mutate_rows(r: random.Random, block: bytes) -> bytes:
    """Rewrite the data rows of a COPY block: an 'updated' text column and one
    other column taken from another row, so row lengths change."""
    lines = block.decode("ascii").split("\n")
    rows = [ln.split("\t") for ln in lines]
    donors = [c for c in rows if len(c) > 4 and c[0].isdigit()]
    out = []
    for cols in rows:
        if len(cols) > 4 and cols[0].isdigit():
            k = r.randrange(0, 40)
            cols[-2 if cols[-1].startswith("{") else -1] = " ".join(gen.zipf_words(r, k)) if k else "\\N"
            d = donors[r.randrange(len(donors))]
            if len(d) == len(cols):
                j = r.randrange(2, len(cols) - 1)
                cols[j] = d[j]
            out.append("\t".join(cols))
        else:
            out.append("\t".join(cols))
    return "\n".join(out).encode("ascii")


def _sql_ranges(r: random.Random, f, size: int) -> list[tuple[int, int]]:
    """4 non-overlapping line-aligned ranges of data rows in the middle of the dump."""
    want = max(4096, int(size * RANGE_FRACTION))
    ranges = []
    for k in range(RANGES):
        lo = size * (0.30 + 0.10 * k)
        start = int(lo + r.random() * size * 0.06)
        f.seek(start)
        f.readline()  # move to the next line start
        s = f.tell()
        f.seek(s + want)
        f.readline()
        e = f.tell()
        ranges.append((s, min(e, size)))
    for (a, b), (c, d) in zip(ranges, ranges[1:]):
        assert b <= c, "churn ranges overlap"
    return ranges


def churn_sql(data: str, r: random.Random, side: str, st: dict) -> int:
    path = os.path.join(data, SQL_REL)
    if "sql" not in st:
        bak = os.path.join(side, "pg_dump.sql.orig")
        shutil.copyfile(path, bak)
        s0 = os.stat(path)
        st["sql"] = {"backup": bak, "size": s0.st_size, "mtime_ns": s0.st_mtime_ns}
        _save_state(data, st)
    size = os.path.getsize(path)
    changed = 0
    tmp = os.path.join(side, "pg_dump.sql.tail")
    with open(path, "r+b") as f:
        ranges = _sql_ranges(r, f, size)
        first = ranges[0][0]
        with open(tmp, "wb") as t:
            pos = first
            for s, e in ranges:
                f.seek(pos)
                _copy(f, t, s - pos)
                f.seek(s)
                new = _mutate_rows(r, f.read(e - s))
                t.write(new)
                changed += len(new)
                pos = e
            f.seek(pos)
            _copy(f, t)
        with open(tmp, "rb") as t:
            f.seek(first)
            _copy(t, f)
            f.truncate()
    os.unlink(tmp)
    return changed


def churn_logs(data: str, r: random.Random, st: dict, round_no: int) -> int:
    logs = sorted(
        os.path.relpath(os.path.join(dp, fn), data)
        for dp, _, fns in os.walk(os.path.join(data, "logs"))
        for fn in fns
        if fn.endswith(".log")
    )
    if not logs:
        return 0
    pick = r.sample(logs, max(1, round(len(logs) * LOG_FRACTION)))
    orig = st.setdefault("logs", {})
    added = 0
    t = (1000 + round_no) * 86400
    for rel in pick:
        p = os.path.join(data, rel)
        s = os.stat(p)
        if rel not in orig:
            orig[rel] = [s.st_size, s.st_mtime_ns]
        text, t = gen.log_text(r, rel, t, r.randrange(int(LOG_APPEND * 0.85), int(LOG_APPEND * 1.15)))
        with open(p, "ab") as f:
            f.write(text)
        added += len(text)
    return added


def churn_new_files(data: str, r: random.Random, st: dict, round_no: int) -> int:
    conf = os.path.join(data, "conf")
    dirs = sorted(os.path.relpath(dp, data) for dp, _, fns in os.walk(conf) if fns)
    if not dirs:
        dirs = ["conf"]
        os.makedirs(conf, exist_ok=True)
    n_conf = sum(len(fns) for _, _, fns in os.walk(conf))
    n = max(1, round(n_conf * NEW_FRACTION))
    sizes = gen.lognormal_sizes(r, n, gen.CONF_MEDIAN, gen.CONF_MEAN, gen.CONF_MIN, gen.CONF_MAX)
    added_files = st.setdefault("added", [])
    dir_mtimes = st.setdefault("dirs", {})
    total = 0
    for i in range(n):
        d = dirs[r.randrange(len(dirs))]
        if d not in dir_mtimes:
            dir_mtimes[d] = os.stat(os.path.join(data, d)).st_mtime_ns
        ext = r.choice(("json", "yaml", "ini"))
        rel = f"{d}/{r.choice(gen.CONF_STEMS)}-r{round_no:02d}-{i:04d}.{ext}"
        body = gen.conf_text(r, ext, d.split("/")[1].split("-")[0] if "/" in d else "app", sizes[i])
        p = os.path.join(data, rel)
        if os.path.exists(p):
            raise SystemExit(f"churn: {rel} already exists (round {round_no} applied twice?)")
        with open(p, "wb") as f:
            f.write(body)
        added_files.append(rel)
        total += len(body)
    return total


def apply_round(data: str, round_no: int, seed: int = 1, quiet: bool = False) -> dict:
    data = os.path.abspath(data)
    if not os.path.isfile(os.path.join(data, SQL_REL)):
        raise SystemExit(f"churn: {data} does not look like a gen.py data set (no {SQL_REL})")
    side = side_dir(data)
    os.makedirs(side, exist_ok=True)
    st = _load_state(data) or {"rounds": []}
    if round_no in st["rounds"]:
        raise SystemExit(f"churn: round {round_no} is already applied to {data}; revert first")
    t0 = time.perf_counter()
    r = random.Random(f"{seed}:churn:{round_no}")
    sql = churn_sql(data, r, side, st)
    logs = churn_logs(data, r, st, round_no)
    new = churn_new_files(data, r, st, round_no)
    st["rounds"].append(round_no)
    _save_state(data, st)
    res = {
        "round": round_no,
        "sql_rewritten": sql,
        "log_appended": logs,
        "new_files": new,
        "changed_bytes": sql + logs + new,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if not quiet:
        print(
            f"churn round {round_no}: {res['changed_bytes'] / 1e6:.1f} MB changed "
            f"(sql {sql / 1e6:.2f} MB rewritten, logs +{logs / 1e6:.2f} MB, new files {new / 1e6:.2f} MB) "
            f"in {res['seconds']:.1f} s",
            file=sys.stderr,
        )
    return res


def revert(data: str, quiet: bool = False) -> bool:
    data = os.path.abspath(data)
    st = _load_state(data)
    side = side_dir(data)
    if st is None:
        if not quiet:
            print(f"churn: nothing to revert for {data}", file=sys.stderr)
        return False
    for rel in st.get("added", []):
        p = os.path.join(data, rel)
        if os.path.exists(p):
            os.unlink(p)
    for rel, (size, mtime_ns) in st.get("logs", {}).items():
        p = os.path.join(data, rel)
        os.truncate(p, size)
        os.utime(p, ns=(mtime_ns, mtime_ns))
    sql = st.get("sql")
    if sql:
        p = os.path.join(data, SQL_REL)
        with open(sql["backup"], "rb") as src, open(p, "r+b") as dst:
            _copy(src, dst)
            dst.truncate()
        os.utime(p, ns=(sql["mtime_ns"], sql["mtime_ns"]))
    for rel, mtime_ns in st.get("dirs", {}).items():
        os.utime(os.path.join(data, rel), ns=(mtime_ns, mtime_ns))
    shutil.rmtree(side)
    if not quiet:
        print(f"churn: reverted rounds {st['rounds']} of {data}", file=sys.stderr)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("round", help="round number (1, 2, ...) or 'revert'")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.round == "revert":
        revert(a.data)
        return 0
    try:
        n = int(a.round)
    except ValueError:
        ap.error("ROUND must be a number or 'revert'")
    if n < 1:
        ap.error("ROUND must be >= 1")
    apply_round(a.data, n, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
