#!/usr/bin/env python3
"""The ceiling: a bare asyncio + aiohttp + selectolax crawl loop, nothing else.

No storage, no robots.txt, no politeness, an in-memory set for dedupe; links are resolved
with ada-url (C++; urllib's urljoin + urlsplit cost ~14 us a link, which would halve this
ceiling) and cut at '?' and '#' (as Scrapy's benchmark spider does), kept to the seed's host
prefix and port on 127.0.0.x. What sgcrawl does on top of this (canonicalization, a durable frontier,
robots, per-host lanes, text extraction, SQLite) is the price of a real crawl.

usage: bare_loop.py SEED_URL [--concurrency 64]   (prints one JSON line)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

import aiohttp
from ada_url import join_url
from selectolax.lexbor import LexborHTMLParser


async def crawl(seed: str, concurrency: int) -> dict[str, float]:
    port = urlsplit(seed).port
    # Links to keep: http://127.0.0.x:PORT/... (every host of the benchmark site).
    prefix, suffix = "http://127.0.0.", f":{port}/"
    seen = {seed}
    queue: asyncio.Queue[str] = asyncio.Queue()
    queue.put_nowait(seed)
    pages = 0
    nbytes = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal pages, nbytes
        while True:
            url = await queue.get()
            try:
                async with session.get(url) as resp:
                    body = await resp.read()
                    ctype = resp.headers.get("Content-Type", "")
                pages += 1
                nbytes += len(body)
                if "html" in ctype:
                    tree = LexborHTMLParser(body.decode("utf-8", "replace"))
                    for node in tree.css("a[href]"):
                        href = node.attributes.get("href") or ""
                        try:
                            link = join_url(url, href).split("#", 1)[0].split("?", 1)[0]
                        except ValueError:
                            continue
                        host_end = link.find("/", 7)
                        if (link.startswith(prefix) and link.endswith(suffix, 0, host_end + 1)
                                and link not in seen):
                            seen.add(link)
                            queue.put_nowait(link)
            except Exception:
                pass
            finally:
                queue.task_done()

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.monotonic()
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        await queue.join()
        elapsed = time.monotonic() - start
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return {"pages": pages, "seconds": round(elapsed, 2), "pages_per_s": round(pages / elapsed, 1),
            "mb": round(nbytes / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("seed")
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(crawl(args.seed, args.concurrency))))


if __name__ == "__main__":
    main()
