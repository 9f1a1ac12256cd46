#!/usr/bin/env python3
"""Crawl the benchmark site with sgcrawl and its peers, alternating runs; print a table.

Each run is a whole process measured from outside (bench/measure.py: wall time, CPU seconds
of the process tree, peak RSS of the tree). pages/s = pages fetched / wall time of the
process, start-up included, the same rule for every crawler. Median of --runs.

Ratios are given twice: of the medians, and the median (and range) of each round's own ratio.
The machine's speed drifts by 10-20% within an hour; crawlers run in the same round meet the
same phase, so a round's ratio cancels most of that drift. "server CPU s" is the CPU the
static server (every process named nginx) spent during the run: with the crawler's own, it
says how much of the machine's two cores a crawler used, and what was left.

usage: compare.py SEED_URL [--runs 3] [--only sgcrawl,bare,scrapy] [--sgcrawl-args "..."]
       [--label NAME]   (repeatable sgcrawl variants: --variant NAME="extra args")
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import measure  # noqa: E402

SGCRAWL_ARGS = "--delay 0 --per-host 64 --concurrency 64 --exclude '\\?' --no-progress"


def run_sgcrawl(seed: str, extra: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="sgbench-") as tmp:
        db = Path(tmp) / "crawl.db"
        cmd = [sys.executable, "-m", "crawler", "run", seed, "--db", str(db), *shlex.split(extra)]
        stats = measure_quiet(cmd)
        with sqlite3.connect(db) as con:
            pages = con.execute("SELECT COUNT(*) FROM pages").fetchone()[0]
    return {**stats, "pages": pages}


def run_json(cmd: list[str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w+", suffix=".json") as out:
        stats = measure_quiet(cmd, stdout=out)
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
    return {**stats, "pages": json.loads(lines[-1])["pages"]}


def measure_quiet(cmd: list[str], stdout=subprocess.DEVNULL) -> dict[str, float]:  # type: ignore[no-untyped-def]
    server = server_cpu_s()
    result = measure(cmd, stdout=stdout)
    if result["returncode"] != 0:
        raise SystemExit(f"failed ({result['returncode']}): {' '.join(cmd)}")
    return {**result, "server_cpu_s": round(server_cpu_s() - server, 2)}


def server_cpu_s() -> float:
    """CPU seconds (user + system) spent so far by the processes named nginx."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            if fields[0].endswith("(nginx"):
                ticks += sum(int(x) for x in fields[1].split()[11:13])
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("seed")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="sgcrawl,bare,scrapy")
    ap.add_argument("--sgcrawl-args", default=SGCRAWL_ARGS)
    ap.add_argument("--variant", action="append", default=[], help='NAME="extra sgcrawl args"')
    args = ap.parse_args()

    runners = {}
    for name in args.only.split(","):
        if name == "sgcrawl":
            runners["sgcrawl"] = lambda: run_sgcrawl(args.seed, args.sgcrawl_args)
        elif name == "bare":
            runners["bare loop"] = lambda: run_json([sys.executable, str(HERE / "bare_loop.py"), args.seed])
        elif name == "scrapy":
            py = HERE / ".venv-scrapy" / "bin" / "python"
            runners["scrapy"] = lambda: run_json([str(py), str(HERE / "scrapy_spider.py"), args.seed])
    for variant in args.variant:
        label, _, extra = variant.partition("=")
        runners[f"sgcrawl {label}"] = lambda extra=extra: run_sgcrawl(args.seed, f"{args.sgcrawl_args} {extra}")

    results: dict[str, list[dict[str, float]]] = {name: [] for name in runners}
    for i in range(args.runs):  # alternate, so that machine noise spreads over every crawler
        for name, run in runners.items():
            r = run()
            r["pages_per_s"] = r["pages"] / r["wall_s"]
            results[name].append(r)
            print(f"run {i + 1} {name}: {r['pages']} pages, {r['pages_per_s']:.0f} pages/s, "
                  f"{r['cpu_s']} CPU s, {r['peak_rss_mb']} MB", file=sys.stderr)

    keys = ("pages", "pages_per_s", "cpu_s", "server_cpu_s", "peak_rss_mb")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in results.items()}
    print("| crawler | pages | pages/s | CPU s | server CPU s | peak RSS MB | vs scrapy | vs bare loop |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in med.items():
        vs = {ref: f"{m['pages_per_s'] / med[ref]['pages_per_s']:.2f}x" if ref in med else "" for ref in ("scrapy", "bare loop")}
        print(f"| {name} | {m['pages']:.0f} | {m['pages_per_s']:.0f} | {m['cpu_s']:.1f} | {m['server_cpu_s']:.1f} "
              f"| {m['peak_rss_mb']:.0f} | {vs['scrapy']} | {vs['bare loop']} |")
    print("\nEach round's own ratio: median [lowest, highest] over the rounds")
    for name, rs in results.items():
        cells = []
        for ref in ("scrapy", "bare loop"):
            if ref in results and ref != name:
                ratios = sorted(r["pages_per_s"] / q["pages_per_s"] for r, q in zip(rs, results[ref]))
                cells.append(f"vs {ref} {statistics.median(ratios):.2f}x [{ratios[0]:.2f}, {ratios[-1]:.2f}]")
        if cells:
            print(f"  {name}: " + "; ".join(cells))

if __name__ == "__main__":
    main()
