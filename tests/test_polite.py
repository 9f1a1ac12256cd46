"""A good citizen: robots.txt, Crawl-delay, Retry-After, back-off, sitemaps, nofollow, traps.

Every assertion is on what the test servers actually received, or on what was stored.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from datetime import datetime

from aiohttp import web

from conftest import html, records, redirect, respond, url_states

ROBOTS = "/robots.txt"


def text(body: str, status: int = 200):
    return respond(body, status=status, content_type="text/plain")


async def test_robots_is_fetched_once_first_and_obeyed(make_site, crawl):
    # Only the most specific group applies (RFC 9309): ours, chosen by product token, not "*".
    robots = "User-agent: *\nDisallow: /\n\nUser-agent: sgcrawl\nDisallow: /private\nDisallow: /no-sgcrawl\n"
    site = await make_site({ROBOTS: text(robots),
                            "/": html("home", ["/a", "/private/x", "/no-sgcrawl", "/private"]),
                            "/a": html("a", ["/private/y", "/b"]), "/b": html("b")})
    result = await crawl(site.url("/"), concurrency=8)
    assert site.log[0].path == ROBOTS
    assert site.count(ROBOTS) == 1
    assert not any(p.startswith(("/private", "/no-sgcrawl")) for p in site.paths())
    assert sorted(site.paths()) == ["/", "/a", "/b"]
    states = url_states(result.db)
    assert states[site.url("/private/x")] == (2, "robots")
    assert states[site.url("/no-sgcrawl")] == (2, "robots")


async def test_ignore_robots_never_asks(make_site, crawl):
    site = await make_site({ROBOTS: text("User-agent: *\nDisallow: /\n"), "/": html("home", ["/a"]),
                            "/a": html("a")})
    await crawl(site.url("/"), obey=False)
    assert site.count(ROBOTS) == 0 and sorted(site.paths()) == ["/", "/a"]


async def test_robots_5xx_blocks_the_host_and_404_allows(make_site, crawl):
    down = await make_site({ROBOTS: text("oops", status=503), "/": html("down")})
    missing = await make_site({"/": html("no robots", ["/a"]), "/a": html("a")})
    home = await make_site({"/": html("home", [down.url("/"), missing.url("/")])})
    result = await crawl(home.url("/"))
    assert down.paths() == [] and down.count(ROBOTS) == 1
    assert url_states(result.db)[down.url("/")] == (2, "robots_unavailable")
    assert sorted(missing.paths()) == ["/", "/a"]


async def test_robots_redirect_is_followed(make_site, crawl):
    site = await make_site({ROBOTS: redirect("/real-robots.txt"),
                            "/real-robots.txt": text("User-agent: *\nDisallow: /secret\n"),
                            "/": html("home", ["/secret", "/open"]), "/open": html("open")})
    await crawl(site.url("/"))
    assert "/secret" not in site.paths() and "/open" in site.paths()


async def test_crawl_delay_spaces_requests_on_the_wire(make_site, crawl):
    pages = {ROBOTS: text("User-agent: *\nCrawl-delay: 0.3\n"), "/": html("home", [f"/p{i}" for i in range(5)])}
    pages.update({f"/p{i}": html(f"p{i}") for i in range(5)})
    site = await make_site(pages)
    result = await crawl(site.url("/"), delay=0.0, per_host=4, concurrency=8)
    starts = [h.at for h in site.log]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(site.paths()) == 6
    assert min(gaps) >= 0.29, gaps
    meta = json.loads(sqlite3.connect(result.db).execute("SELECT value FROM meta WHERE key='robots'").fetchone()[0])
    assert meta[f"{site.host}:{site.server.port}"]["crawl_delay"] == 0.3


async def test_huge_crawl_delay_is_capped(make_site, crawl, tmp_path):
    site = await make_site({ROBOTS: text("User-agent: *\nCrawl-delay: 3600\n"), "/": html("home", ["/a"]),
                            "/a": html("a")})
    from conftest import make_config
    from crawler.pipeline import run_crawl

    config = make_config(tmp_path)
    object.__setattr__(config.robots, "max_crawl_delay", 0.2)  # frozen: tests may bend it
    result = await run_crawl(config, [site.url("/")], fresh=True, log=lambda _: None)
    assert sorted(site.paths()) == ["/", "/a"]
    info = json.loads(sqlite3.connect(result.db).execute("SELECT value FROM meta WHERE key='robots'").fetchone()[0])
    assert info[f"{site.host}:{site.server.port}"]["capped"] is True


async def test_retry_after_pauses_only_that_host(make_site, crawl):
    calls = 0

    async def busy(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
        return web.Response(text=html("ok now"), content_type="text/html")

    slow = await make_site({"/": busy})
    fast_pages = {"/": html("fast", [f"/f{i}" for i in range(30)])}
    fast_pages.update({f"/f{i}": html(f"f{i}") for i in range(30)})
    fast = await make_site(fast_pages)
    result = await crawl(slow.url("/"), fast.url("/"), delay=0.02, per_host=1, concurrency=4)
    hits = [h.at for h in slow.page_log]
    assert len(hits) == 2 and hits[1] - hits[0] >= 0.99
    during = [h for h in fast.page_log if hits[0] < h.at < hits[1]]
    assert len(during) >= 10  # the other host kept going while this one waited
    assert {r["url"]: r["status"] for r in records(result.db)}[slow.url("/")] == 200


async def test_503_without_retry_after_backs_off(make_site, crawl):
    calls = 0

    async def overloaded(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return web.Response(status=503, text="overloaded")
        return web.Response(text=html("fine"), content_type="text/html")

    site = await make_site({"/": overloaded})
    result = await crawl(site.url("/"), delay=0.0, retries=3, retry_backoff=0.01)
    hits = [h.at for h in site.page_log]
    assert len(hits) == 3
    assert hits[1] - hits[0] >= 0.99 and hits[2] - hits[1] >= 1.99  # 1 s, then 2 s: per-host back-off
    assert records(result.db)[0]["status"] == 200


async def test_sitemap_only_pages_are_crawled(make_site, crawl):
    sitemap = ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
               "<url><loc>{0}/hidden</loc></url><url><loc>{0}/also-hidden</loc></url>"
               "<url><loc>http://elsewhere.invalid/x</loc></url></urlset>")
    index = ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
             "<sitemap><loc>{0}/sm-pages.xml.gz</loc></sitemap></sitemapindex>")
    site = await make_site({"/": html("home")})
    site.pages.update({
        ROBOTS: text(f"User-agent: *\nSitemap: {site.url('/sm-index.xml')}\n"),
        "/sm-index.xml": respond(index.format(site.origin), content_type="application/xml"),
        "/sm-pages.xml.gz": respond(gzip.compress(sitemap.format(site.origin).encode()),
                                    content_type="application/gzip"),
        "/hidden": html("hidden"), "/also-hidden": html("also hidden"),
        "/sitemap.xml": respond(f"<urlset><url><loc>{site.origin}/from-default</loc></url></urlset>",
                                content_type="application/xml"),
        "/from-default": html("default sitemap"),
    })
    result = await crawl(site.url("/"))
    pages = [p for p in site.paths() if not p.startswith("/sm-")]
    assert sorted(pages) == ["/", "/also-hidden", "/from-default", "/hidden"]
    assert site.count("/sm-index.xml") == site.count("/sm-pages.xml.gz") == site.count("/sitemap.xml") == 1
    assert url_states(result.db)["http://elsewhere.invalid/x"] == (2, "scope")
    depths = {r["url"]: r["depth"] for r in records(result.db)}
    assert depths[site.url("/hidden")] == 1


async def test_no_sitemaps_flag(make_site, crawl):
    site = await make_site({"/": html("home"), "/sitemap.xml": respond(
        "<urlset><url><loc>/x</loc></url></urlset>", content_type="application/xml")})
    await crawl(site.url("/"), sitemaps=False)
    assert site.count("/sitemap.xml") == 0


async def test_nofollow_in_all_its_forms(make_site, crawl):
    site = await make_site({
        "/": html("home", ["/meta-nofollow", "/header-nofollow", "/noindex"],
                  body='<a href="/rel-nofollow" rel="external nofollow">x</a>'),
        "/rel-nofollow": html("never"),
        "/meta-nofollow": html("m", ["/from-meta"], head='<meta name="robots" content="NOFOLLOW">'),
        "/header-nofollow": respond(html("h", ["/from-header"]), headers={"X-Robots-Tag": "nofollow"}),
        "/noindex": html("n", ["/from-noindex"], head='<meta name="robots" content="noindex">'),
        "/from-meta": html("never"), "/from-header": html("never"), "/from-noindex": html("followed"),
    })
    result = await crawl(site.url("/"))
    assert sorted(site.paths()) == ["/", "/from-noindex", "/header-nofollow", "/meta-nofollow", "/noindex"]
    flags = {r["url"]: r["noindex"] for r in records(result.db)}
    assert flags[site.url("/noindex")] is True and flags[site.url("/")] is False


async def test_meta_refresh_is_followed_like_a_redirect(make_site, crawl):
    site = await make_site({
        "/": html("home", ["/moved"]),
        "/moved": html("moved", head='<meta http-equiv="refresh" content="0; url=/target">'
                                     '<meta name="robots" content="nofollow">'),
        "/target": html("Target"),
    })
    await crawl(site.url("/"))
    assert "/target" in site.paths()


async def test_canonical_and_charset_are_recorded(make_site, crawl):
    body = ('<html><head><meta charset="windows-1252"><title>Caf\xe9 cr\xe8me</title>'
            '<link rel="canonical" href="/the-one"></head><body>na\xefve</body></html>').encode("cp1252")
    site = await make_site({"/": respond(body, content_type="text/html")})
    result = await crawl(site.url("/"))
    rec = records(result.db)[0]
    assert rec["title"] == "Café crème" and "naïve" in rec["text"]
    assert rec["canonical"] == site.url("/the-one")


async def test_traps_are_skipped_with_a_reason(make_site, crawl):
    async def calendar(request: web.Request) -> web.Response:
        month = int(request.query.get("m", "0"))
        return web.Response(text=html(f"month {month}", [f"/cal?m={month + 1}"]), content_type="text/html")

    site = await make_site({
        "/": html("home", ["/a/b/a/b/a/b/", "/cal?m=0", "/" + "x" * 3000, "/file.pdf",
                           "/q?" + "&".join(f"k{i}=v" for i in range(20))]),
        "/cal": calendar,
    })
    result = await crawl(site.url("/"))
    states = url_states(result.db)
    assert states[site.url("/a/b/a/b/a/b/")] == (2, "trap")
    assert states[site.url("/" + "x" * 3000)] == (2, "url_too_long")
    assert states[site.url("/file.pdf")] == (2, "content_type")
    assert [s for u, s in states.items() if "k0=v" in u] == [(2, "trap")]
    months = [p for p in site.paths() if p.startswith("/cal")]
    assert 10 < len(months) <= 45  # the endless calendar is cut by its template chain
    assert any(s == (2, "trap") for u, s in states.items() if "/cal?m=" in u)


async def test_calendar_with_max_depth_ends(make_site, crawl):
    async def calendar(request: web.Request) -> web.Response:
        month = int(request.query.get("m", "0"))
        return web.Response(text=html(f"month {month}", [f"/cal?m={month + 1}"]), content_type="text/html")

    site = await make_site({"/": html("home", ["/cal?m=0"]), "/cal": calendar})
    await crawl(site.url("/"), max_depth=5)
    assert len(site.paths()) == 6


async def test_per_host_budget(make_site, crawl):
    pages = {"/": html("home", [f"/p{i}" for i in range(20)])}
    pages.update({f"/p{i}": html(f"p{i}") for i in range(20)})
    site = await make_site(pages)
    result = await crawl(site.url("/"), max_pages_per_host=5)
    assert len(site.paths()) == 6  # the seed + 5 admitted
    assert sum(1 for s in url_states(result.db).values() if s == (2, "host_budget")) == 15


async def test_politeness_holds_across_redirect_hops(make_site, crawl):
    site = await make_site({"/": html("home", ["/r1", "/r2", "/r3"]),
                            "/r1": redirect("/t1"), "/r2": redirect("/t2"), "/r3": redirect("/t3"),
                            "/t1": html("t1"), "/t2": html("t2"), "/t3": html("t3")})
    await crawl(site.url("/"), delay=0.15, per_host=3)
    starts = [h.at for h in site.log]
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.14


async def test_request_time_starts_when_the_request_is_sent(make_site, crawl):
    # The politeness wait and the robots.txt fetch come before the send: they are not the
    # page's request time, nor its fetch time.
    site = await make_site({ROBOTS: text("User-agent: *\nAllow: /\n"), "/": html("home", ["/a", "/b"]),
                            "/a": html("a"), "/b": html("b")})
    wall_minus_monotonic = time.time() - time.monotonic()
    result = await crawl(site.url("/"), delay=1.0, per_host=1, sitemaps=False)
    arrived = {h.path: h.at + wall_minus_monotonic for h in site.page_log}
    assert sorted(arrived) == ["/", "/a", "/b"]
    for rec in records(result.db):
        path = rec["url"][len(site.origin):]
        assert rec["elapsed_ms"] < 500, rec  # each waited 1 s for its turn; none takes that long
        fetched = datetime.fromisoformat(rec["fetched_at"]).timestamp()
        assert abs(fetched - arrived[path]) < 0.25, (path, fetched, arrived[path])


async def test_robots_redirect_hops_keep_the_gap(make_site, crawl):
    # aiohttp follows robots.txt redirects itself: each hop still waits for the host's gap.
    site = await make_site({ROBOTS: redirect("/r2"), "/r2": redirect("/real-robots.txt"),
                            "/real-robots.txt": text("User-agent: *\nAllow: /\n"),
                            "/": html("home", ["/a"]), "/a": html("a")})
    await crawl(site.url("/"), delay=0.3, per_host=2, sitemaps=False)
    assert [h.path for h in site.log] == [ROBOTS, "/r2", "/real-robots.txt", "/", "/a"]
    starts = [h.at for h in site.log]
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.29, starts


async def test_aiohttp_own_resend_keeps_the_gap(make_site, crawl):
    # A server that hangs up on a kept-alive connection without answering: aiohttp sends the
    # request again by itself. That resend is a request to the host like any other.
    calls = []

    async def hang_up_once(request: web.Request) -> web.StreamResponse:
        calls.append(request.path)
        if len(calls) == 1:
            request.transport.close()
        return web.Response(text=html("flaky"), content_type="text/html")

    site = await make_site({"/": html("home", ["/flaky"]), "/flaky": hang_up_once})
    result = await crawl(site.url("/"), delay=0.3, per_host=1, retries=0, obey=False, sitemaps=False)
    flaky = [h.at for h in site.log if h.path == "/flaky"]
    assert len(flaky) == 2  # aiohttp's resend: the one the crawler did not ask for
    assert flaky[1] - flaky[0] >= 0.29, flaky
    starts = [h.at for h in site.log]
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.29, starts
    assert result.stats.stored == 2 and result.stats.failed == 0
