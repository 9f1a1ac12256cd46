#!/usr/bin/env python3
"""Target 4: how long does resuming a crawl with N queued URLs take to send its first request?

Builds (once) a crawl database holding N queued URLs spread over 250 origins on 127.0.0.x,
with a local server that answers every request and records when the first one arrived.
Then runs ``sgcrawl run --max-pages 1`` against it and reports seconds from process start to
that first page request (robots.txt excluded).

usage: resume_start.py [--urls 1000000] [--db /tmp/resume-1m.db]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from aiohttp import web

PORT = 8499


def build(db: Path, n: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from crawler.seen import fingerprint
    from crawler.store import SCHEMA, SCHEMA_VERSION

    db.unlink(missing_ok=True)
    con = sqlite3.connect(db)
    con.executescript(SCHEMA)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    seed = f"http://127.0.0.1:{PORT}/"
    con.execute("INSERT INTO urls (id, url, origin, depth, parent, state, reason, chain, admitted, fp) "
                "VALUES (1, ?, ?, 0, NULL, 1, NULL, 0, 1, ?)", (seed, f"127.0.0.1:{PORT}", fingerprint(seed)))

    def rows():  # type: ignore[no-untyped-def]
        for i in range(n):
            url = f"http://127.0.0.{1 + i % 250}:{PORT}/p/{i}.html"
            yield i + 2, url, f"127.0.0.{1 + i % 250}:{PORT}", 1, 1, 0, None, 0, 1, fingerprint(url)

    con.executemany("INSERT INTO urls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    con.execute("INSERT INTO meta VALUES ('seeds', ?)", (json.dumps([seed]),))
    con.commit()
    con.close()


async def measure(db: Path) -> float:
    first: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        if request.path != "/robots.txt" and not first:
            first.append(time.monotonic())
        return web.Response(text="<html><title>x</title></html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sites = [web.TCPSite(runner, f"127.0.0.{i}", PORT) for i in range(1, 251)]
    for site in sites:
        await site.start()
    work = db.with_suffix(".run.db")
    shutil.copy(db, work)
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", "run", "--db", str(work), "--max-pages", "2", "--delay", "0",
        "--no-progress", "--no-sitemaps", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await proc.wait()
    await runner.cleanup()
    work.unlink()
    if not first:
        raise SystemExit("no page request arrived")
    return first[0] - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--urls", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/resume-1m.db"))
    args = ap.parse_args()
    if not args.db.exists():
        t = time.monotonic()
        build(args.db, args.urls)
        print(f"built {args.db} with {args.urls:,} queued URLs in {time.monotonic() - t:.1f} s", file=sys.stderr)
    seconds = asyncio.run(measure(args.db))
    print(json.dumps({"queued": args.urls, "first_request_s": round(seconds, 2)}))


if __name__ == "__main__":
    main()
