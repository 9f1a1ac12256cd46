"""A small run of the benchmark in CI: `sgcrawl bench` and the bare-loop baseline start, crawl, end.

Figures are never asserted here (machines are noisy): only that the tools work and count right.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent


async def test_sgcrawl_bench_crawls_the_whole_generated_site(tmp_path):
    res = await run_cli("bench", "--pages", "150", "--hosts", "3", cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    match = re.search(r"([\d,]+) pages in ([\d.]+) s = ([\d,]+) pages/s; peak memory (\d+) MB", res.stdout)
    assert match, res.stdout
    assert match.group(1) == "151"  # the home page and every generated page, once
    assert list(tmp_path.iterdir()) == []  # nothing left behind


async def test_bare_loop_baseline_runs(make_site):
    import asyncio

    from conftest import html

    site = await make_site({"/": html("home", ["/a", "/b?x=1#f"]), "/a": html("a", ["/b"]), "/b": html("b")})
    proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "bench" / "bare_loop.py"), site.url("/"),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert json.loads(out.decode().strip().splitlines()[-1])["pages"] == 3
