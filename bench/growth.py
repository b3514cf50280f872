#!/usr/bin/env python3
"""Growth (issue 19): first backup, unchanged re-run and restore at 1x, 4x and 16x the data,
axisor-backup and restic side by side: does time grow linearly and memory stay flat?

    .venv/bin/python bench/growth.py [--base-scale 0.2] [--multiples 1,4,16] [--rounds 1]
    .venv/bin/python bench/growth.py --base-scale 0.01 --multiples 1,2 --keep-data   # smoke (~1 min)
    .venv/bin/python bench/growth.py --plot-only bench/results/growth-<ts>.json      # redraw the PNG

Data: the mixed set of bench/gen.py at `--base-scale` times each multiple M (default 0.2:
~278 MB, 4x ~1.11 GB, 16x ~4.45 GB), generated under `--data-root`/xM if missing, with
`--dump-parts M` so a bigger set has the same file sizes as the base one (M dumps of the
base dump's size, M times the logs, binaries and config files, each drawn from the same
distribution), not a few bigger files. The shape (files, median, p90 and largest size)
of every set is printed and recorded. The sets are deleted at the end unless --keep-data.

Per size and round, the tools alternate who goes first; per tool: a fresh repository
(bench/run.py's prepare_tool), every file read once (warm page cache), `init` (not in the
table), the first backup, an unchanged re-run, and a full restore into an empty folder
(axisor: validation as written, the default), each timed with GNU time (wall, user+sys
CPU, peak RSS: run.py's run_timed), then every restored file compared with the source by
SHA-256 (a mismatch stops the run). `uptime` is recorded before and after each size.

Output: a Markdown table on stdout (size, tool, step, wall, CPU, peak RSS, MB/s, wall per
GB and wall per GB relative to the 1x set); raw JSON in bench/results/growth-<UTC>.json;
a PNG (two panels: wall time and peak RSS against data size, every tool and step) in
bench/results/growth-<UTC>.png, drawn with matplotlib from the `bench` dependency group
(`uv sync --frozen --only-group bench --inexact`); without it the PNG is skipped and
--plot-only draws it later from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gen  # noqa: E402
import run as bench  # noqa: E402  (run_timed, warm, verify_restore, prepare_tool, TOOLS)

STEPS = ("first", "unchanged", "restore")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load_marker(data: str) -> dict | None:
    try:
        with open(gen.marker_path(data)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_data(data: str, scale: float, seed: int, parts: int) -> None:
    info = load_marker(data)
    want = (round(scale, 6), seed, parts)
    if os.path.isdir(data) and info and (round(info["scale"], 6), info["seed"], info.get("dump_parts", 1)) == want:
        return
    print(f"generating {data}: scale {scale:g}, seed {seed}, dump parts {parts}", file=sys.stderr, flush=True)
    gen.generate(data, scale, seed, dump_parts=parts)


def shape(data: str) -> dict:
    """Files, bytes and the file size distribution of a set."""
    sizes = []
    dirs = 0
    for dp, dns, fns in os.walk(data):
        dirs += len(dns)
        sizes += [os.lstat(os.path.join(dp, fn)).st_size for fn in fns]
    sizes.sort()
    q = statistics.quantiles(sizes, n=10) if len(sizes) > 1 else sizes * 9
    return {
        "files": len(sizes),
        "dirs": dirs,
        "bytes": sum(sizes),
        "median": int(statistics.median(sizes)),
        "p90": int(q[8]),
        "max": sizes[-1],
    }


def run_one(tool: str, size_label: str, rnd: int, data: str, a, passphrase: str) -> dict:
    spec = bench.TOOLS[tool]
    work = os.path.join(a.work, f"{size_label}-{tool}")
    bench.rm(work)
    os.makedirs(work)
    ctx, env = bench.prepare_tool(tool, a.axisor_bin, data, work, passphrase)
    res: dict = {"tool": tool, "size": size_label, "round": rnd, "steps": {}}
    res["warm_s"] = round(bench.warm(data), 2)

    def step(label: str, argv_t, target: str = "") -> dict:
        argv = bench.fill(argv_t, dict(ctx, target=target, snap=label))
        log = os.path.join(work, "logs", f"{label}.log")
        os.sync()
        load = os.getloadavg()
        m = bench.run_timed(argv, env, None, log, a.timeout)
        m["loadavg_before"] = [round(x, 2) for x in load]
        m["repo_bytes"] = bench.dir_bytes(ctx["repo"])
        if m["rc"] != 0:
            raise bench.ToolFailed(
                f"{tool} {label} at {size_label} failed (exit {m['rc']}): see {log}\n{bench.tail(log)}"
            )
        print(
            f"  {size_label:4} {tool:7} r{rnd} {label:9} {m['wall']:8.2f} s wall {m['cpu']:8.2f} s cpu "
            f"{m['rss_mib']:7.1f} MiB  load {load[0]:.2f}",
            file=sys.stderr,
            flush=True,
        )
        return m

    res["init"] = step("init", spec["init"])
    res["steps"]["first"] = step("first", spec["backup"])
    res["steps"]["unchanged"] = step("unchanged", spec["backup"])
    target = os.path.join(work, "restore")
    os.makedirs(target)
    res["steps"]["restore"] = step("restore", spec["restore"], target=target)
    res["verify"] = bench.verify_restore(data, target)
    print(f"  {size_label:4} {tool:7} r{rnd} restore verified: {res['verify']['files']} files", file=sys.stderr)
    bench.rm(work)
    return res


def summarize(results: list[dict], sizes: list[dict]) -> list[dict]:
    """One row per size, tool and step: medians over rounds."""
    rows = []
    base_per_gb: dict[tuple[str, str], float] = {}
    for sz in sizes:
        for tool in sorted({r["tool"] for r in results}):
            mine = [r for r in results if r["size"] == sz["label"] and r["tool"] == tool]
            if not mine:
                continue
            for st in STEPS:
                ms = [r["steps"][st] for r in mine]
                wall = statistics.median(m["wall"] for m in ms)
                gb = sz["shape"]["bytes"] / 1e9
                per_gb = wall / gb
                base_per_gb.setdefault((tool, st), per_gb)
                rows.append(
                    {
                        "size": sz["label"],
                        "multiple": sz["multiple"],
                        "gb": gb,
                        "tool": tool,
                        "step": st,
                        "wall": wall,
                        "cpu": statistics.median(m["cpu"] for m in ms),
                        "rss_mib": statistics.median(m["rss_mib"] for m in ms),
                        "mb_s": sz["shape"]["bytes"] / 1e6 / wall,
                        "wall_per_gb": per_gb,
                        "per_gb_vs_1x": per_gb / base_per_gb[(tool, st)],
                        "load1": statistics.median(m["loadavg_before"][0] for m in ms),
                    }
                )
    return rows


def table(rows: list[dict]) -> str:
    out = [
        "| size | GB | tool | step | wall s | CPU s | peak RSS MiB | MB/s | wall s per GB | per GB vs 1x | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['size']} | {r['gb']:.2f} | {r['tool']} | {r['step']} | {r['wall']:.2f} | {r['cpu']:.2f} | "
            f"{r['rss_mib']:.0f} | {r['mb_s']:.0f} | {r['wall_per_gb']:.2f} | {r['per_gb_vs_1x']:.2f}x | "
            f"{r['load1']:.1f} |"
        )
    by = {(r["size"], r["tool"], r["step"]): r for r in rows}
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    if any(k[1] == "restic" for k in by) and any(k[1] == "axisor" for k in by):
        out += ["", "| size | step | throughput vs restic (restic wall / axisor wall) | RSS axisor / restic |"]
        out.append("|---|---|---|---|")
        for s in sizes:
            for st in STEPS:
                a, r = by.get((s, "axisor", st)), by.get((s, "restic", st))
                if a and r:
                    out.append(f"| {s} | {st} | {r['wall'] / a['wall']:.2f}x | {a['rss_mib'] / r['rss_mib']:.2f}x |")
    return "\n".join(out)


def plot(doc: dict, path: str) -> bool:
    """Two panels: wall time and peak RSS against data size, every tool and step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print(
            "matplotlib is missing: `uv sync --frozen --only-group bench --inexact`, then "
            f"`bench/growth.py --plot-only {path[:-4]}.json`",
            file=sys.stderr,
        )
        return False
    rows = doc["summary"]
    colors = {"first": "tab:blue", "unchanged": "tab:green", "restore": "tab:red"}
    styles = {"axisor": ("-", "o"), "restic": ("--", "s")}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for tool in sorted({r["tool"] for r in rows}):
        for st in STEPS:
            pts = sorted((r["gb"], r["wall"], r["rss_mib"]) for r in rows if r["tool"] == tool and r["step"] == st)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ls, mk = styles.get(tool, (":", "^"))
            label = f"{tool} {st}"
            ax1.plot(xs, [p[1] for p in pts], ls, marker=mk, color=colors[st], label=label)
            ax2.plot(xs, [p[2] for p in pts], ls, marker=mk, color=colors[st], label=label)
            if tool == "axisor" and st != "unchanged":  # linear from the smallest set, for the eye
                x0, w0 = pts[0][0], pts[0][1]
                ax1.plot(xs, [w0 * x / x0 for x in xs], ":", color=colors[st], alpha=0.5, linewidth=1)
    ticks = sorted({(r["gb"], r["size"]) for r in rows})
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks([g for g, _ in ticks])
        ax.set_xticklabels([f"{g:.2f}\n({s})" for g, s in ticks])
        ax.minorticks_off()
        ax.set_xlabel("data size, GB (multiple of the base set), log scale")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_yscale("log")
    ax1.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax1.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.set_ylabel("wall time, s (log)")
    ax1.set_title("Wall time (dotted: axisor's 1x time scaled linearly)")
    ax2.set_ylabel("peak RSS, MiB")
    ax2.set_ylim(bottom=0)
    ax2.set_title("Peak RSS (GNU time %M)")
    ax1.legend(fontsize=8)
    fig.suptitle(f"axisor-backup vs restic, growth ({doc['meta']['timestamp']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def axisor_code(axisor_bin: str) -> str:
    """Which code the axisor runs import (run.py puts this checkout on their PYTHONPATH), and its commit."""
    py = os.path.join(os.path.dirname(axisor_bin), "python")
    try:
        where = subprocess.run(
            [py, "-c", "import app, os; print(os.path.dirname(os.path.dirname(os.path.abspath(app.__file__))))"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",  # not this checkout: the interpreter would import app/ from its cwd
            env=dict(os.environ, PYTHONPATH=bench.REPO_ROOT),
        ).stdout.strip()
        return f"{where} @ {bench.git_rev()}"
    except (OSError, subprocess.TimeoutExpired):
        return "(unknown)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-scale", type=float, default=0.2, help="gen.py scale of the 1x set (default 0.2)")
    ap.add_argument("--multiples", default="1,4,16")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tools", default="axisor,restic")
    ap.add_argument("--data-root", default="/work/bench-data/growth")
    ap.add_argument("--work", default="/work/bench-work/growth")
    ap.add_argument("--keep-data", action="store_true", help="keep the generated sets (default: deleted at the end)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per step")
    ap.add_argument("--axisor-bin", default=os.path.join(bench.REPO_ROOT, ".venv/bin/axisor-backup"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--plot-only", metavar="JSON", help="only draw the PNG of an earlier run's JSON")
    a = ap.parse_args(argv)
    if a.plot_only:
        with open(a.plot_only) as f:
            doc = json.load(f)
        png = a.plot_only[:-5] + ".png"
        return 0 if plot(doc, png) else 1
    tools = [t for t in a.tools.split(",") if t]
    multiples = [int(m) for m in a.multiples.split(",")]
    a.axisor_bin = os.path.abspath(a.axisor_bin)
    a.work = os.path.abspath(a.work)
    os.makedirs(a.out, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    meta = {
        "timestamp": stamp,
        "base_scale": a.base_scale,
        "multiples": multiples,
        "rounds": a.rounds,
        "tools": tools,
        "versions": bench.versions(tools, a),
        "axisor_code": axisor_code(a.axisor_bin),
        "bench_git": bench.git_rev(),
        "cpus": os.cpu_count(),
        "uptime_start": uptime(),
    }
    print(f"{meta['uptime_start']}\nversions: {meta['versions']}; axisor code: {meta['axisor_code']}", file=sys.stderr)
    sizes = []
    for m in multiples:
        data = os.path.join(a.data_root, f"x{m}")
        ensure_data(data, a.base_scale * m, a.seed, m)
        sizes.append({"label": f"{m}x", "multiple": m, "data": data, "shape": shape(data)})
    print("\n| size | files | dirs | GB | median B | p90 B | largest B |\n|---|---|---|---|---|---|---|")
    for sz in sizes:
        s = sz["shape"]
        print(
            f"| {sz['label']} | {s['files']:,} | {s['dirs']:,} | {s['bytes'] / 1e9:.3f} | {s['median']:,} | "
            f"{s['p90']:,} | {s['max']:,} |"
        )
    passphrase = secrets.token_urlsafe(24)
    results: list[dict] = []
    failed = None
    for i, sz in enumerate(sizes):
        sz["uptime_before"] = uptime()
        print(f"{sz['label']}: {sz['uptime_before']}", file=sys.stderr, flush=True)
        for rnd in range(1, a.rounds + 1):
            order = tools if (i + rnd) % 2 else tools[::-1]  # alternate who goes first
            for tool in order:
                try:
                    results.append(run_one(tool, sz["label"], rnd, sz["data"], a, passphrase))
                except (bench.ToolFailed, bench.VerifyFailed) as e:
                    failed = str(e)
                    print(f"\n*** {e}", file=sys.stderr)
                    break
            if failed:
                break
        sz["uptime_after"] = uptime()
        print(f"{sz['label']} done: {sz['uptime_after']}", file=sys.stderr, flush=True)
        if failed:
            break
    meta["uptime_end"] = uptime()
    rows = summarize(results, sizes)
    doc = {"meta": meta, "sizes": sizes, "summary": rows, "results": results, "failed": failed}
    path = os.path.join(a.out, f"growth-{stamp}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    png = path[:-5] + ".png"
    drawn = plot(doc, png)
    print(f"\n## Growth {stamp}: base scale {a.base_scale:g}, {a.rounds} round(s); {meta['versions']}\n")
    print(table(rows))
    print(f"\nstart: {meta['uptime_start']}\nend:   {meta['uptime_end']}")
    for sz in sizes:
        print(f"{sz['label']}: before {sz.get('uptime_before', '')} / after {sz.get('uptime_after', '')}")
    print(f"\nraw: {path}" + (f"\nplot: {png}" if drawn else ""))
    if not a.keep_data:
        for sz in sizes:
            bench.rm(sz["data"])
            bench.rm(gen.marker_path(sz["data"]))
    if failed:
        print(f"\n**FAILED**: {failed.splitlines()[0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
