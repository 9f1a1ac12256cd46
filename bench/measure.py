#!/usr/bin/env python3
"""Run a command and report wall time, CPU seconds and peak RSS of its whole process tree.

``/usr/bin/time`` misses processes that are not reaped by the command itself (sgcrawl's parse
processes are children of multiprocessing's forkserver), so this polls /proc instead: CPU is
the last seen utime+stime of every process in the tree, summed; peak RSS is the largest sum
of the tree's resident sets at any poll (every 250 ms).

usage: measure.py [--json] -- COMMAND [ARGS...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(name))
    return tree


def _tree(root: int) -> list[int]:
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _sample(pid: int) -> tuple[float, int, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as fh:
            rss = int(fh.read().split()[1]) * PAGE
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            pss = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("Pss:"))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, rss, pss


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return 0


def measure(cmd: list[str], stdout=None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=stdout)
    cpu: dict[int, float] = {}
    peak = peak_pss = main_hwm = 0
    tree: list[int] = []
    polls = 0
    while proc.poll() is None:
        total = total_pss = 0
        if polls % 4 == 0:  # walking /proc is the costly part: once a second is enough
            tree = _tree(proc.pid)
        polls += 1
        for pid in tree:
            sample = _sample(pid)
            if sample is not None:
                cpu[pid], rss, pss = sample
                total += rss
                total_pss += pss
        peak, peak_pss = max(peak, total), max(peak_pss, total_pss)
        main_hwm = max(main_hwm, _hwm(proc.pid))
        time.sleep(0.25)  # the measuring must not cost the measured: ~1% of a core at this rate
    wall = time.monotonic() - start
    return {"returncode": proc.returncode, "wall_s": round(wall, 2), "cpu_s": round(sum(cpu.values()), 2),
            "peak_rss_mb": round(peak / 1e6, 1), "peak_pss_mb": round(peak_pss / 1e6, 1),
            "main_peak_rss_mb": round(main_hwm / 1e6, 1)}


def main() -> None:
    args = sys.argv[1:]
    as_json = "--json" in args[: args.index("--")] if "--" in args else False
    cmd = args[args.index("--") + 1:] if "--" in args else args
    result = measure(cmd)
    print(json.dumps(result) if as_json else
          f"wall {result['wall_s']} s, cpu {result['cpu_s']} s, peak rss {result['peak_rss_mb']} MB "
          f"(pss {result['peak_pss_mb']} MB, main process {result['main_peak_rss_mb']} MB), "
          f"exit {result['returncode']}", file=sys.stderr)


if __name__ == "__main__":
    main()
