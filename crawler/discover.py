"""Sitemap discovery: seeds the frontier from the seed hosts' sitemaps.

For each seed origin: the ``Sitemap:`` lines of its robots.txt and ``/sitemap.xml``; sitemap
index files are followed (at most ``max_files`` files in all). Every fetch takes an in-flight
slot of its origin and passes its send gate, like a page; robots.txt rules apply to sitemap
URLs too. Found URLs enter the frontier at depth 1 through the same admission rules as links
(scope, filters, budgets), so a sitemap cannot widen the crawl.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from .fetch import Fetcher
from .frontier import SqliteFrontier
from .politeness import Lanes
from .robots import RobotsRules
from .robots_cache import RobotsCache
from .sitemaps import default_sitemap_url, parse_sitemap
from .urls import origin_of

__all__ = ["discover_sitemaps"]

# sitemaps.org allows 50 MB uncompressed; reading one briefly holds about twice its size, so
# sgcrawl reads the first 20 MiB (still ~100,000 URLs) and keeps memory flat.
MAX_SITEMAP_BYTES = 20 * 1024 * 1024


async def discover_sitemaps(seeds: Sequence[str], fetcher: Fetcher, robots: RobotsCache, frontier: SqliteFrontier,
                            log: Callable[[str], None], max_files: int = 50) -> int:
    """Fetch and parse the seed hosts' sitemaps; returns the number of URLs offered."""
    lanes = frontier.lanes
    todo: list[str] = []
    for seed in dict.fromkeys(seeds):
        origin = origin_of(seed)
        rules = await _rules(origin, seed, robots, lanes)
        todo += [*rules.sitemaps, default_sitemap_url(seed)]
    seen: set[str] = set()
    offered = 0
    while todo and len(seen) < max_files:
        url = todo.pop(0)
        if url in seen:
            continue
        seen.add(url)
        origin = origin_of(url)
        if not (await _rules(origin, url, robots, lanes)).allowed(url):
            continue
        await lanes.acquire(origin)
        try:
            res = await fetcher.fetch_resource(url, MAX_SITEMAP_BYTES)
        finally:
            lanes.release(origin)
        if res.status != 200 or not res.body:
            continue
        sitemap = await asyncio.to_thread(parse_sitemap, res.body, url)  # up to ~0.3 s for 50k URLs
        if sitemap.error and not (sitemap.urls or sitemap.sitemaps):
            log(f"sitemap {url}: {sitemap.error}")
            continue
        todo += sitemap.sitemaps
        await frontier.add_discovered(sitemap.urls, depth=1)
        offered += len(sitemap.urls)
    return offered


async def _rules(origin: str, url: str, robots: RobotsCache, lanes: Lanes) -> RobotsRules:
    """robots.txt rules of ``origin``, fetched under a slot of its lane when not known yet."""
    rules = robots.known(origin)
    if rules is not None:
        return rules
    await lanes.acquire(origin)
    sent = False
    try:
        rules = robots.known(origin)  # another worker may have fetched it while we waited
        if rules is None:
            sent = True
            rules = await robots.get(origin, url)
        return rules
    finally:
        lanes.release(origin, sent=sent)
