"""``sgcrawl bench``: crawl a generated local site at full speed and report pages/s and memory.

Like ``scrapy bench``: no setup, nothing left behind. A separate process serves a
deterministic site (pages of ~20 KB with ~25 links, over several 127.0.0.x hosts, robots.txt
allowing all) so that serving does not share the crawler's event loop; the crawl runs with
politeness off (``--delay 0``, 64 per host) into a temporary database, which is deleted.
For comparisons with other crawlers, see ``bench/`` in the repository.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchResult", "run_bench", "serve"]

WORDS = ("crawl page link text host site data fast polite queue fetch parse store report "
         "river stone cloud garden music ocean market design energy travel history science").split()


_TEXT = " ".join(random.Random(0).choice(WORDS) for _ in range(8000))


def page(i: int, pages: int, hosts: int, port: int) -> bytes:
    """Page ``i`` of the site: deterministic, ~20 KB, links to its tree children and others."""
    rng = random.Random(i)

    def url(j: int) -> str:
        return f"http://127.0.0.{1 + j % hosts}:{port}/p/{j}.html"

    links = [url(j) for j in range(10 * i + 1, min(10 * i + 11, pages))]
    links += [url(rng.randrange(pages)) + rng.choice(["", "#top", "?utm_source=x"]) for _ in range(15)]
    start = rng.randrange(len(_TEXT) // 2)
    words = _TEXT[start:start + 17_000]
    anchors = "".join(f'<li><a href="{u}">{rng.choice(WORDS)}</a></li>' for u in links)
    return (f"<!doctype html><html><head><title>Page {i}</title></head><body><h1>Page {i}</h1>"
            f"<p>{words}</p><ul>{anchors}</ul></body></html>").encode()


def serve(pages: int, hosts: int, port: int) -> None:
    """Serve the site until killed (runs in the server process)."""
    from aiohttp import web

    robots = b"User-agent: *\nAllow: /\n"
    site = [page(i, pages, hosts, port) for i in range(pages)]  # rendered before "ready": not timed

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/robots.txt":
            return web.Response(body=robots, content_type="text/plain")
        name = request.path.rsplit("/", 1)[-1]
        if request.path == "/":
            return web.Response(body=site[0], content_type="text/html")
        try:
            i = int(name.removesuffix(".html"))
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= i < pages:
            raise web.HTTPNotFound()
        return web.Response(body=site[i], content_type="text/html")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for h in range(1, hosts + 1):
            await web.TCPSite(runner, f"127.0.0.{h}", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass(frozen=True, slots=True)
class BenchResult:
    pages: int
    seconds: float
    pages_per_s: float
    peak_rss_mb: float  # the crawler's own process (parse processes not included)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_bench(pages: int = 2000, hosts: int = 4) -> BenchResult:
    """Serve a site of ``pages`` pages, crawl it, clean up; returns the figures."""
    from .config import load_config
    from .gc_tuning import tune_gc
    from .pipeline import Crawl

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "crawler.bench", str(pages), str(hosts), str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the benchmark site did not start")
        with tempfile.TemporaryDirectory(prefix="sgcrawl-bench-") as tmp:
            flags = {"crawl.db": os.path.join(tmp, "bench.db"), "fetch.delay": 0.0, "fetch.per_host": 64,
                     "fetch.concurrency": 64, "crawl.sitemaps": False}
            config = load_config(Path(os.devnull), flags)
            crawl = Crawl(config, [f"http://127.0.0.1:{port}/"], lambda line: None,
                          progress=lambda view: _Quiet())
            tune_gc()  # as `sgcrawl run` does
            start = time.monotonic()
            result = asyncio.run(crawl.run())
            seconds = time.monotonic() - start
    finally:
        server.kill()
        server.wait()
    stored = result.stats.stored
    peak = _peak_rss_mb()
    return BenchResult(stored, round(seconds, 2), round(stored / seconds, 1), round(peak, 1))


def _peak_rss_mb() -> float:
    """This process's own high-water mark. Not ru_maxrss: Linux carries the parent's into a
    child across fork and exec, so a crawler started by a large process would report its size."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Quiet:
    async def run(self) -> None:
        await asyncio.Event().wait()


if __name__ == "__main__":  # the server process: python -m crawler.bench PAGES HOSTS PORT
    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
