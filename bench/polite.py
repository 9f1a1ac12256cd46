#!/usr/bin/env python3
"""Target 5: a polite broad crawl keeps every host busy at its allowed rate.

250 hosts (127.0.0.1-250), one request in flight and one second between request starts per
host: the ideal is 250 pages/s. Crawls the benchmark site (generated with --hosts 250 and
served with ACCESS_LOG set, see README.md) for --pages pages, then reads nginx's access log:
pages/s against the ideal, and every per-host gap between request starts as nginx saw them.

usage: polite.py ACCESS_LOG [--pages 12500] [--seed http://127.0.0.1:8431/]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def gaps(log: Path, since: float) -> tuple[int, list[float]]:
    starts: dict[str, list[float]] = defaultdict(list)
    requests = 0
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        done, host, duration = float(parts[0]), parts[1], float(parts[4])
        if done < since or parts[2] == "/robots.txt" or parts[2] == "/sitemap.xml":
            continue
        requests += 1
        starts[host].append(done - duration)  # $msec is when the request ended
    out = []
    for times in starts.values():
        times.sort()
        out += [b - a for a, b in zip(times, times[1:])]
    return requests, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("access_log", type=Path)
    ap.add_argument("--pages", type=int, default=12_500)
    ap.add_argument("--seed", default="http://127.0.0.1:8431/")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sgpolite-") as tmp:
        since = time.time()
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "crawler", "run", args.seed, "--db", f"{tmp}/c.db", "--delay", "1",
                        "--per-host", "1", "--concurrency", "512", "--max-pages", str(args.pages),
                        "--exclude", "\\?", "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - start
    time.sleep(1.5)  # nginx flushes its log buffer every second
    requests, g = gaps(args.access_log, since)
    g.sort()
    early = sum(1 for x in g if x < 0.99)
    print(json.dumps({"pages": args.pages, "wall_s": round(wall, 1), "pages_per_s": round(args.pages / wall, 1),
                      "vs_ideal_250": round(args.pages / wall / 250, 3), "requests_logged": requests,
                      "gaps": len(g), "min_gap_s": round(g[0], 3) if g else None,
                      "p1_gap_s": round(g[len(g) // 100], 3) if g else None, "gaps_under_0.99s": early}))


if __name__ == "__main__":
    main()
