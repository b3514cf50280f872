#!/usr/bin/env python3
"""Benchmark axisor-backup against restic (and optionally borg) on the gen.py data set.

    python3 bench/run.py [--data DIR] [--work DIR] [--runs 3]
                         [--tools axisor,restic,borg] [--scale 1.0] [--seed 1]

For each run and each tool (tools alternate inside a run), on the same data:
  first      backup into a fresh repository (init is run and timed separately)
  unchanged  the same backup again, nothing changed
  churn      backup after churn round N (run N uses round N; reverted after the tool)
  restore    full restore of the latest snapshot into an empty directory, then
             every restored file is compared with the source by SHA-256
             (not timed; a mismatch fails the tool loudly and the exit code is 1)

Each step is timed around the tool process only: wall time by perf_counter,
user+sys CPU and peak RSS of the tool from GNU time (/usr/bin/time; see run_timed
for why not os.wait4).  Repository size is
measured (apparent bytes, like `du -sb`) before and after each step.  Before
each tool's first backup the data set is read once (warm page cache, as in
limits.md); dirty pages are flushed with sync() before every timed step.

The medians over --runs go to stdout as Markdown; raw results go to
bench/results-<UTC timestamp>.json.  Passphrases are passed through the
environment only.

The commands per tool are a data table (TOOLS below); {data}, {repo},
{target}, {snap}, {config}, {work}, {axisor} are filled in per step.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import churn  # noqa: E402
import gen  # noqa: E402

STEPS = ("first", "unchanged", "churn", "restore")

# ---------------------------------------------------------------------------
# Tool table.  Per tool:
#   env      extra environment (values are templates); secrets come from PASS_ENV
#   pass_env name of the variable that carries the passphrase
#   init / backup / restore  argv templates; restore runs in restore_cwd if set
#   version  argv to print the version (recorded, failures ignored)
#   files    {relative path under WORK: template} written before init
#   cleanup  paths under WORK removed before each run (repo, caches)
# The restored tree is expected at {target}/<data path without the leading '/'>
# for every tool (restic restore, borg extract and the axisor contract agree).

TOOLS: dict[str, dict] = {
    "axisor": {
        "pass_env": "AXISOR_BACKUP_PASSPHRASE",
        "env": {
            # keep any per-user state of the tool inside WORK, fresh per run
            "XDG_CACHE_HOME": "{work}/axisor-home/cache",
            "XDG_CONFIG_HOME": "{work}/axisor-home/config",
            "XDG_DATA_HOME": "{work}/axisor-home/data",
            "XDG_STATE_HOME": "{work}/axisor-home/state",
        },
        "files": {
            "axisor.toml": ('[application]\nuser_data = ["{data}"]\n[storage]\nlocal_path = "{work}/axisor-repo"\n'),
        },
        "repo": "{work}/axisor-repo",
        "init": ["{axisor}", "--config", "{work}/axisor.toml", "init"],
        "backup": ["{axisor}", "--config", "{work}/axisor.toml", "backup"],
        "restore": ["{axisor}", "--config", "{work}/axisor.toml", "restore", "latest", "--target", "{target}"],
        "restore_cwd": None,
        "version": ["{axisor}", "--version"],
        "cleanup": ["axisor-repo", "axisor-home"],
    },
    "restic": {
        "pass_env": "RESTIC_PASSWORD",
        "env": {"RESTIC_REPOSITORY": "{repo}", "RESTIC_CACHE_DIR": "{work}/restic-home/cache"},
        "files": {},
        "repo": "{work}/restic-repo",
        "init": ["restic", "init"],
        "backup": ["restic", "backup", "{data}"],
        "restore": ["restic", "restore", "latest", "--target", "{target}"],
        "restore_cwd": None,
        "version": ["restic", "version"],
        "cleanup": ["restic-repo", "restic-home"],
    },
    "borg": {
        "pass_env": "BORG_PASSPHRASE",
        "env": {"BORG_REPO": "{repo}", "BORG_BASE_DIR": "{work}/borg-home"},
        "files": {},
        "repo": "{work}/borg-repo",
        "init": ["borg", "init", "-e", "repokey"],
        "backup": ["borg", "create", "--compression", "zstd,3", "::{snap}", "{data}"],
        "restore": ["borg", "extract", "::{snap}"],
        "restore_cwd": "{target}",
        "version": ["borg", "--version"],
        "cleanup": ["borg-repo", "borg-home"],
    },
}


class ToolFailed(Exception):
    pass


class VerifyFailed(Exception):
    pass


# ---------------------------------------------------------------------------
# helpers


def fill(t, ctx: dict):
    if isinstance(t, str):
        return t.format(**ctx)
    if isinstance(t, (list, tuple)):
        return [fill(x, ctx) for x in t]
    if isinstance(t, dict):
        return {k: fill(v, ctx) for k, v in t.items()}
    return t


def dir_bytes(path: str) -> int:
    """Apparent size of a tree (like du -sb)."""
    total = 0
    if not os.path.exists(path):
        return 0
    for dp, dns, fns in os.walk(path):
        for fn in fns:
            try:
                total += os.lstat(os.path.join(dp, fn)).st_size
            except FileNotFoundError:
                pass
    return total


def tail(path: str, n: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8000))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    | " + ln for ln in lines[-n:])
    except OSError:
        return "    | (no output)"


GNU_TIME = "/usr/bin/time"


def run_timed(argv: list[str], env: dict, cwd: str | None, log: str, timeout: float) -> dict:
    """Run argv with output to log; wall from perf_counter, CPU and peak RSS of the tool.

    CPU and RSS come from GNU time (/usr/bin/time -f), which forks the tool from
    its own small process.  os.wait4()'s rusage of a child spawned directly from
    this script is not usable for RSS: Linux keeps the pre-exec high-water mark
    (this Python process's RSS, ~100 MB) in the child's maxrss.  Without GNU time
    we fall back to wait4 and flag the RSS as a lower bound of nothing.
    """
    tfile = log + ".time"
    use_time = os.access(GNU_TIME, os.X_OK)
    full = ([GNU_TIME, "-o", tfile, "-f", "%e %U %S %M"] + argv) if use_time else argv
    with open(log, "ab") as lf:
        lf.write(f"$ {' '.join(argv)}\n".encode())
        lf.flush()
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen(
                full,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=lf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            return {"rc": 127, "error": str(e), "wall": 0.0, "cpu": 0.0, "user": 0.0, "sys": 0.0, "rss_mib": 0.0}

        def kill():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    m = {"rc": p.returncode, "wall": wall, "rusage_source": "gnu-time" if use_time else "wait4"}
    if use_time and p.returncode >= 0:
        try:
            with open(tfile) as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip()]
            os.unlink(tfile)
            _, u, s, kb = lines[-1].split()
            m.update(user=float(u), sys=float(s), rss_mib=int(kb) / 1024.0)
            if lines[:-1]:
                m["time_note"] = " ".join(lines[:-1])  # e.g. "Command exited with non-zero status 1"
        except (OSError, ValueError, IndexError) as e:
            m["time_note"] = f"could not parse GNU time output: {e}"
    if "user" not in m:
        m.update(user=ru.ru_utime, sys=ru.ru_stime, rss_mib=ru.ru_maxrss / 1024.0)
        if not use_time:
            m["rss_note"] = "wait4 maxrss includes the harness's RSS at spawn; install GNU time"
    m["cpu"] = m["user"] + m["sys"]
    if p.returncode < 0 or (use_time and p.returncode == 128 + signal.SIGKILL and wall >= timeout):
        m["error"] = (
            f"timed out after {timeout:.0f} s (killed)" if wall >= timeout else f"killed by signal {-p.returncode}"
        )
    return m


def warm(data: str) -> float:
    """Read every file once (warm page cache)."""
    t0 = time.perf_counter()
    buf = bytearray(1 << 20)
    for dp, _, fns in os.walk(data):
        for fn in fns:
            if os.path.islink(os.path.join(dp, fn)):  # a dangling or outside link: nothing of the set
                continue
            with open(os.path.join(dp, fn), "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
    return time.perf_counter() - t0


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tree_hashes(root: str) -> dict[str, str]:
    files = []
    for dp, dns, fns in os.walk(root):
        for fn in fns:
            p = os.path.join(dp, fn)
            if os.path.islink(p):
                files.append((os.path.relpath(p, root), "symlink:" + os.readlink(p)))
            else:
                files.append((os.path.relpath(p, root), p))
    out = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        todo = [(rel, p) for rel, p in files if not p.startswith("symlink:")]
        for (rel, _), h in zip(todo, ex.map(_sha, [p for _, p in todo])):
            out[rel] = h
    for rel, p in files:
        if p.startswith("symlink:"):
            out[rel] = p
    return out


def verify_restore(data: str, target: str) -> dict:
    restored = os.path.join(target, data.lstrip("/"))
    if not os.path.isdir(restored):
        found = [dp for dp, dns, _ in os.walk(target) if os.path.basename(dp) == os.path.basename(data)]
        raise VerifyFailed(f"restored tree not found at {restored}" + (f" (candidates: {found[:3]})" if found else ""))
    t0 = time.perf_counter()
    src = tree_hashes(data)
    dst = tree_hashes(restored)
    missing = sorted(set(src) - set(dst))
    extra = sorted(set(dst) - set(src))
    differ = sorted(k for k in set(src) & set(dst) if src[k] != dst[k])
    if missing or extra or differ:
        raise VerifyFailed(
            f"restore mismatch: {len(missing)} missing, {len(extra)} extra, "
            f"{len(differ)} differing of {len(src)} files; "
            f"e.g. missing {missing[:3]} extra {extra[:3]} differ {differ[:3]}"
        )
    return {"files": len(src), "seconds": round(time.perf_counter() - t0, 2)}


def tree_stats(root: str) -> tuple[int, int]:
    n = b = 0
    for dp, _, fns in os.walk(root):
        for fn in fns:
            n += 1
            b += os.lstat(os.path.join(dp, fn)).st_size
    return n, b


def rm(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


# ---------------------------------------------------------------------------
# one run of one tool


def prepare_tool(name: str, axisor_bin: str, data: str, work: str, passphrase: str) -> tuple[dict, dict]:
    """A fresh start for one tool under WORK (its repository and state removed, its files
    written, its folders made): the template context and the environment to run it in."""
    spec = TOOLS[name]
    ctx = {"data": data, "work": work, "axisor": axisor_bin, "snap": "", "target": ""}
    ctx["repo"] = fill(spec["repo"], ctx)
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    for rel in spec["cleanup"]:
        rm(os.path.join(work, rel))
    for rel, body in spec["files"].items():
        with open(os.path.join(work, rel), "w") as f:
            f.write(fill(body, ctx))
    env = dict(os.environ)
    env.update(fill(spec["env"], ctx))
    env[spec["pass_env"]] = passphrase
    if name == "axisor":
        # This checkout's code, whatever the shared .venv's editable install points at (another
        # worktree's branch, mid-edit): the commit git_rev() records is the one measured.
        env["PYTHONPATH"] = REPO_ROOT
    for k in (
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
        "RESTIC_CACHE_DIR",
        "BORG_BASE_DIR",
    ):
        if k in spec["env"]:
            os.makedirs(env[k], exist_ok=True)
    return ctx, env


def run_tool(name: str, run_no: int, a, data: str, work: str, passphrase: str) -> dict:
    spec = TOOLS[name]
    ctx, env = prepare_tool(name, a.axisor_bin, data, work, passphrase)
    logdir = os.path.join(work, "logs")
    res: dict = {"tool": name, "run": run_no, "steps": {}}

    def step(label: str, argv_t, snap: str = "", target: str = "", cwd_t=None) -> dict:
        c = dict(ctx, snap=snap, target=target)
        argv = fill(argv_t, c)
        cwd = fill(cwd_t, c) if cwd_t else None
        log = os.path.join(logdir, f"{name}-run{run_no}-{label}.log")
        if os.path.exists(log):
            os.unlink(log)
        before = dir_bytes(ctx["repo"])
        os.sync()
        load = os.getloadavg()[0]  # other load on the machine skews timings
        m = run_timed(argv, env, cwd, log, a.timeout)
        m["loadavg1_before"] = load
        after = dir_bytes(ctx["repo"])
        m.update({"repo_bytes": after, "added_bytes": after - before, "log": log, "argv": argv})
        if m["rc"] != 0:
            raise ToolFailed(
                f"{name} {label} failed (exit {m['rc']}): {' '.join(argv)}\n"
                f"  log: {log}\n{tail(log)}" + (f"\n  {m['error']}" if "error" in m else "")
            )
        print(
            f"  {name:7} run {run_no} {label:9} {m['wall']:7.2f} s wall {m['cpu']:7.2f} s cpu "
            f"{m['rss_mib']:7.1f} MiB rss  repo {after / 1e6:9.1f} MB (+{m['added_bytes'] / 1e6:.1f})",
            file=sys.stderr,
            flush=True,
        )
        return m

    res["warm_s"] = round(warm(data), 2)
    res["init"] = step("init", spec["init"])
    res["steps"]["first"] = step("first", spec["backup"], snap="first")
    res["steps"]["unchanged"] = step("unchanged", spec["backup"], snap="unchanged")
    ch = churn.apply_round(data, run_no, a.seed, quiet=True)
    res["churn"] = ch
    try:
        res["steps"]["churn"] = step("churn", spec["backup"], snap="churn")
        target = os.path.join(work, f"restore-{name}")
        rm(target)
        os.makedirs(target)
        res["steps"]["restore"] = step(
            "restore", spec["restore"], snap="churn", target=target, cwd_t=spec["restore_cwd"]
        )
        res["verify"] = verify_restore(data, target)
        print(
            f"  {name:7} run {run_no} restore verified: {res['verify']['files']} files match (SHA-256)",
            file=sys.stderr,
            flush=True,
        )
    finally:
        churn.revert(data, quiet=True)
        rm(os.path.join(work, f"restore-{name}"))
    if not a.keep:
        for rel in spec["cleanup"]:
            rm(os.path.join(work, rel))
    return res


# ---------------------------------------------------------------------------
# report


def med(xs):
    return statistics.median(xs) if xs else None


def summarize(results: list[dict], tools: list[str], data_bytes: int) -> dict:
    summ: dict = {}
    for t in tools:
        rs = [r for r in results if r["tool"] == t and len(r["steps"]) == len(STEPS)]
        if not rs:
            continue
        s = {"runs": len(rs)}
        for st in STEPS:
            ms = [r["steps"][st] for r in rs]
            walls = [m["wall"] for m in ms]
            s[st] = {
                "wall": med(walls),
                "wall_min": min(walls),
                "wall_max": max(walls),
                "cpu": med([m["cpu"] for m in ms]),
                "rss_mib": med([m["rss_mib"] for m in ms]),
                "added_bytes": med([m["added_bytes"] for m in ms]),
                "repo_bytes": med([m["repo_bytes"] for m in ms]),
                "mb_s": data_bytes / 1e6 / med(walls) if med(walls) else None,
            }
        s["churn_changed_bytes"] = med([r["churn"]["changed_bytes"] for r in rs])
        summ[t] = s
    return summ


def fmt_table(summ: dict, data_bytes: int) -> str:
    out = []
    out.append("| tool | step | wall s (min–max) | MB/s | CPU s | peak RSS MiB | repo added MB | repo MB |")
    out.append("|---|---|---|---|---|---|---|---|")
    for t, s in summ.items():
        for st in STEPS:
            m = s[st]
            mbs = f"{m['mb_s']:.0f}" if st in ("first", "restore") else ""
            added = f"{m['added_bytes'] / 1e6:+.1f}" if st != "restore" else ""
            out.append(
                f"| {t} | {st} | {m['wall']:.2f} ({m['wall_min']:.2f}–{m['wall_max']:.2f}) | {mbs} | "
                f"{m['cpu']:.2f} | {m['rss_mib']:.0f} | {added} | {m['repo_bytes'] / 1e6:.1f} |"
            )
    base = "restic"
    others = [t for t in summ if t != base]
    if base in summ and others:
        out.append("")
        out.append(
            f"Ratios vs {base} (throughput = {base} wall / tool wall, >1 is faster than {base}; "
            f"bytes = tool / {base}: repo size for first, bytes added for unchanged/churn; "
            f"CPU and RSS = tool / {base}; <1 is better):"
        )
        out.append("")
        out.append("| tool | step | throughput | bytes | CPU | RSS |")
        out.append("|---|---|---|---|---|---|")
        b = summ[base]
        for t in others:
            for st in STEPS:
                m, r = summ[t][st], b[st]
                thr = r["wall"] / m["wall"] if m["wall"] else float("nan")
                if st == "first":
                    by = f"{m['repo_bytes'] / r['repo_bytes']:.2f}x" if r["repo_bytes"] else ""
                elif st == "restore":
                    by = ""
                elif r["added_bytes"] >= 1e6:
                    by = f"{m['added_bytes'] / r['added_bytes']:.2f}x"
                else:  # tiny denominators (unchanged run): show both sizes instead
                    by = f"{m['added_bytes']:,} B vs {r['added_bytes']:,} B"
                out.append(
                    f"| {t} | {st} | {thr:.2f}x | {by} | "
                    f"{m['cpu'] / r['cpu']:.2f}x | {m['rss_mib'] / r['rss_mib']:.2f}x |"
                )
    return "\n".join(out)


# ---------------------------------------------------------------------------


def versions(tools: list[str], a) -> dict:
    v = {}
    for t in tools:
        argv = fill(TOOLS[t]["version"], {"axisor": a.axisor_bin})
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            v[t] = (p.stdout or p.stderr).strip().splitlines()[0] if p.returncode == 0 else f"(exit {p.returncode})"
        except (OSError, subprocess.TimeoutExpired, IndexError) as e:
            v[t] = f"(unavailable: {e})"
    return v


def git_rev() -> str:
    """Commit (and dirty flag) of the checkout whose axisor is measured."""
    try:
        rev = subprocess.run(
            ["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO_ROOT, "status", "--porcelain", "--", "app", "core"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        return (rev or "(no commit)") + (" +uncommitted changes in app/ or core/" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "(unknown)"


def prepare_data(a) -> str:
    data = os.path.abspath(a.data or f"/work/bench-data/scale-{a.scale:g}")
    marker = gen.marker_path(data)
    if os.path.isdir(data) and churn._load_state(data) is not None:
        print(f"reverting leftover churn in {data}", file=sys.stderr)
        churn.revert(data)
    if os.path.isdir(data):
        if os.path.exists(marker):
            with open(marker) as f:
                info = json.load(f)
            if (info.get("scale"), info.get("seed")) != (a.scale, a.seed):
                if a.regen:
                    print(
                        f"data set has scale={info.get('scale')} seed={info.get('seed')}; regenerating", file=sys.stderr
                    )
                    gen.generate(data, a.scale, a.seed)
                else:
                    raise SystemExit(
                        f"{data} was generated with scale={info.get('scale')} seed={info.get('seed')}, "
                        f"not scale={a.scale} seed={a.seed}; pass --regen or another --data"
                    )
        else:
            print(f"note: {data} has no gen.py marker; using it as is", file=sys.stderr)
    else:
        print(f"generating data set (scale {a.scale}, seed {a.seed}) in {data}", file=sys.stderr)
        gen.generate(data, a.scale, a.seed)
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", help="data set dir (default /work/bench-data/scale-<scale>; generated if missing)")
    ap.add_argument("--work", default="/work/bench-work", help="repos, restores, logs (default /work/bench-work)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="axisor,restic", help="comma list of " + ",".join(TOOLS))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--regen", action="store_true", help="regenerate --data if its scale/seed differ")
    ap.add_argument(
        "--axisor-bin", default=os.environ.get("AXISOR_BIN", os.path.join(REPO_ROOT, ".venv/bin/axisor-backup"))
    )
    ap.add_argument("--timeout", type=float, default=900, help="seconds per tool step (default 900)")
    ap.add_argument("--keep", action="store_true", help="keep the repositories after each run")
    ap.add_argument("--out", default=HERE, help="directory for results-<timestamp>.json")
    a = ap.parse_args(argv)
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}; known: {', '.join(TOOLS)}")
    a.axisor_bin = os.path.abspath(a.axisor_bin)
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    data = prepare_data(a)
    if work.startswith(data.rstrip("/") + "/") or data.startswith(work.rstrip("/") + "/"):
        raise SystemExit("--work and --data must not contain each other")
    nfiles, data_bytes = tree_stats(data)
    passphrase = secrets.token_urlsafe(24)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    meta = {
        "timestamp": stamp,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "data": data,
        "data_files": nfiles,
        "data_bytes": data_bytes,
        "scale": a.scale,
        "seed": a.seed,
        "runs": a.runs,
        "tools": tools,
        "versions": versions(tools, a),
        "work": work,
        "git": git_rev(),
    }
    print(
        f"data: {data} ({nfiles:,} files, {data_bytes / 1e6:,.1f} MB); tools: {meta['versions']}",
        file=sys.stderr,
        flush=True,
    )
    results: list[dict] = []
    failures: dict[str, str] = {}
    for run_no in range(1, a.runs + 1):
        for t in tools:
            if t in failures:
                continue
            try:
                results.append(run_tool(t, run_no, a, data, work, passphrase))
            except ToolFailed as e:
                failures[t] = str(e)
                print(f"\n*** {t}: FAILED in run {run_no}:\n{e}\n", file=sys.stderr, flush=True)
            except VerifyFailed as e:
                failures[t] = f"RESTORE VERIFICATION FAILED: {e}"
                print(
                    f"\n!!!!!!!! {t}: RESTORE VERIFICATION FAILED in run {run_no} !!!!!!!!\n{e}\n",
                    file=sys.stderr,
                    flush=True,
                )
    summ = summarize(results, tools, data_bytes)
    out = {"meta": meta, "summary": summ, "failures": failures, "results": results}
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"results-{stamp}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(
        f"\n## Benchmark {stamp}: {nfiles:,} files, {data_bytes / 1e6:,.1f} MB (scale {a.scale:g}), "
        f"median of {a.runs} run(s)\n"
    )
    print(fmt_table(summ, data_bytes))
    churned = [r["churn"]["changed_bytes"] for r in results]
    if churned:
        print(
            f"\nChurn: {statistics.median(churned) / 1e6:.1f} MB changed per round (median). "
            f"Versions: " + "; ".join(f"{k}: {v}" for k, v in meta["versions"].items())
        )
    for t, msg in failures.items():
        print(f"\n**{t} FAILED**: {msg.splitlines()[0]}")
    print(f"\nraw results: {path}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
