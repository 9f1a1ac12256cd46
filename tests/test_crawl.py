"""End-to-end crawls against real local servers: what was fetched, how often, what was stored."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections import Counter
from pathlib import Path

from aiohttp import web

from crawler.bodies import unpack
from crawler.store import PAGE_SIZE, SCHEMA, SCHEMA_VERSION

from conftest import html, records, redirect, respond, url_states


async def three_host_site(make_site, n: int = 300):
    """``n`` pages over three hosts; every page reachable; noisy duplicate links on top."""
    sites = [await make_site({}) for _ in range(3)]
    rng = random.Random(7)

    def where(i: int):
        return sites[i % 3], f"/p/{i}.html"

    for i in range(n):
        site, path = where(i)
        links = []
        for child in range(3 * i + 1, min(3 * i + 4, n)):
            csite, cpath = where(child)
            links.append(cpath if csite is site else csite.url(cpath))
        for _ in range(6):  # noise: the same pages again, in forms that must canonicalize away
            j = rng.randrange(n)
            jsite, jpath = where(j)
            links.append(jsite.url(jpath) + rng.choice(["#top", "#c", "?utm_source=x", "?utm_medium=a&utm_source=b"]))
        links.append(site.url("/q?b=2&a=1"))
        links.append(site.url("/q?a=1&b=2#frag"))
        links += ["http://external.invalid/page", "mailto:someone@example.com", "javascript:void(0)",
                  "ftp://127.0.0.1/file"]
        site.pages[path] = html(f"Page {i}", links, body=f"<p>Body of page {i}</p>")
    for site in sites:
        site.pages["/q?a=1&b=2"] = html("Query page")
    sites[0].pages["/"] = html("Home", ["/p/0.html"])
    return sites


async def test_whole_site_is_crawled_once(make_site, crawl):
    sites = await three_host_site(make_site)
    result = await crawl(sites[0].url("/"), concurrency=16)
    fetched = Counter((s.host, h.path) for s in sites for h in s.page_log)
    assert max(fetched.values()) == 1, [k for k, v in fetched.items() if v > 1]
    pages = {(s.host, p) for s in sites for p in s.pages}
    assert set(fetched) == pages  # every page, nothing else: no fragment/query variant, no external
    recs = records(result.db)
    assert len(recs) == len(pages)
    assert len({r["url"] for r in recs}) == len(recs)
    assert all(r["status"] == 200 and r["error"] is None for r in recs)
    states = url_states(result.db)
    skipped = Counter(reason for state, reason in states.values() if state == 2)
    assert skipped == {"scope": 1}  # external.invalid, found many times, recorded once
    assert all(state != 0 for state, _ in states.values())


async def test_depth_limit(make_site, crawl):
    site = await make_site({"/": html("0", ["/1"]), "/1": html("1", ["/2"]), "/2": html("2", ["/3"]),
                            "/3": html("3")})
    result = await crawl(site.url("/"), max_depth=2)
    assert site.paths() == ["/", "/1", "/2"]
    assert url_states(result.db)[site.url("/3")] == (2, "depth")
    assert [r["depth"] for r in records(result.db)] == [0, 1, 2]


async def test_max_pages_stops_at_exactly_n(make_site, crawl):
    pages = {"/": html("home", [f"/p{i}" for i in range(50)])}
    pages.update({f"/p{i}": html(f"p{i}", [f"/p{i}/{j}" for j in range(5)]) for i in range(50)})
    site = await make_site(pages)
    result = await crawl(site.url("/"), max_pages=7, concurrency=4)
    assert len(records(result.db)) == 7
    assert len(site.page_log) == 7
    assert result.reason == "max_pages"


async def test_scope_modes(make_site, crawl, tmp_path):
    other = await make_site({"/": html("other host")})
    far = await make_site({"/": html("far")}, host="127.0.1.1")  # same machine, another /24 network
    site = await make_site({"/": html("home", [other.url("/"), far.url("/")])})
    result = await crawl(site.url("/"), scope="host")
    assert other.log == [] and far.log == []  # not even robots.txt
    assert url_states(result.db)[other.url("/")] == (2, "scope")
    await crawl(site.url("/"), scope="domain", fresh=True)
    assert other.paths() == ["/"] and far.log == []
    await crawl(site.url("/"), scope="any", fresh=True)
    assert far.paths() == ["/"]


async def test_include_exclude_filters(make_site, crawl):
    site = await make_site({"/": html("home", ["/blog/1", "/blog/2", "/shop/1", "/blog/private"]),
                            "/blog/1": html("b1"), "/blog/2": html("b2"), "/shop/1": html("s1"),
                            "/blog/private": html("secret")})
    result = await crawl(site.url("/"), include=["/blog/"], exclude=["private"])
    assert sorted(site.paths()) == ["/", "/blog/1", "/blog/2"]  # the seed matches no include: seeds always crawled
    states = url_states(result.db)
    assert states[site.url("/shop/1")] == (2, "filter")
    assert states[site.url("/blog/private")] == (2, "filter")


async def test_redirect_chain_is_followed_and_recorded(make_site, crawl):
    site = await make_site({
        "/": html("home", ["/old"]),
        "/old": redirect("/older", 301),
        "/older": redirect("/new"),
        "/new": html("New home", ["/old", "/new"]),
    })
    result = await crawl(site.url("/"))
    assert site.paths().count("/new") == 1 and site.paths().count("/old") == 1
    rec = {r["url"]: r for r in records(result.db)}
    assert rec[site.url("/old")]["final_url"] == site.url("/new")
    assert rec[site.url("/old")]["title"] == "New home"
    assert site.url("/new") not in rec  # stored under the URL that led to it
    assert url_states(result.db)[site.url("/new")] == (2, "redirect")


async def test_redirect_loop_and_too_many_hops(make_site, crawl):
    pages: dict = {"/": html("home", ["/loop-a", "/chain/0"]),
                   "/loop-a": redirect("/loop-b"), "/loop-b": redirect("/loop-a")}
    for i in range(15):
        pages[f"/chain/{i}"] = redirect(f"/chain/{i + 1}")
    site = await make_site(pages)
    result = await crawl(site.url("/"))
    rec = {r["url"]: r for r in records(result.db)}
    assert rec[site.url("/loop-a")]["error"] == "redirect_loop"
    assert rec[site.url("/chain/0")]["error"] == "too_many_redirects"
    assert site.count("/chain/11") == 0  # ten hops followed, no more
    assert site.count("/loop-a") == 1


async def test_redirect_out_of_scope_is_not_followed(make_site, crawl):
    far = await make_site({"/": html("far")}, host="127.0.1.2")
    site = await make_site({"/": html("home", ["/away"]), "/away": redirect(far.url("/"))})
    result = await crawl(site.url("/"))
    assert far.log == []
    assert url_states(result.db)[site.url("/away")] == (2, "scope")


async def test_identical_bodies_are_flagged_duplicate(make_site, crawl):
    same = html("Same", body="<p>identical</p>")
    site = await make_site({"/": html("home", ["/a", "/b", "/c"]), "/a": same, "/b": same, "/c": html("C")})
    result = await crawl(site.url("/"), concurrency=1)
    rec = {r["url"]: r for r in records(result.db)}
    assert rec[site.url("/a")]["duplicate_of"] is None
    assert rec[site.url("/b")]["duplicate_of"] == site.url("/a")
    assert rec[site.url("/b")]["content_hash"] == rec[site.url("/a")]["content_hash"]
    assert rec[site.url("/c")]["duplicate_of"] is None


async def test_transient_errors_are_retried(make_site, crawl):
    calls = Counter()

    async def flaky(request: web.Request) -> web.Response:
        calls[request.path] += 1
        if calls[request.path] <= 2:
            return web.Response(status=500, text="busy")
        return web.Response(text=html("finally"), content_type="text/html")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="down")

    site = await make_site({"/": html("home", ["/flaky", "/broken", "/missing"]), "/flaky": flaky,
                            "/broken": broken})
    result = await crawl(site.url("/"), retries=2)
    rec = {r["url"]: r for r in records(result.db)}
    assert site.count("/flaky") == 3 and rec[site.url("/flaky")]["status"] == 200
    assert site.count("/broken") == 3 and rec[site.url("/broken")]["error"] == "http_5xx"
    assert site.count("/missing") == 1 and rec[site.url("/missing")]["error"] == "http_4xx"


async def test_connection_errors_are_recorded(make_site, crawl):
    site = await make_site({"/": html("home", ["http://127.0.0.1:9/closed"])})
    result = await crawl(site.url("/"), retries=1, scope="any", obey=False)
    rec = {r["url"]: r for r in records(result.db)}
    assert rec["http://127.0.0.1:9/closed"]["error"] == "connection"
    assert rec["http://127.0.0.1:9/closed"]["status"] is None
    # Obeying robots.txt, an unreachable host's robots.txt means "disallow all" (RFC 9309).
    result = await crawl(site.url("/"), retries=1, scope="any", fresh=True)
    assert url_states(result.db)["http://127.0.0.1:9/closed"] == (2, "robots_unavailable")


async def test_non_html_is_skipped_not_parsed(make_site, crawl):
    site = await make_site({"/": html("home", ["/img.png", "/doc"]),
                            "/img.png": respond(b"\x89PNG....", content_type="image/png"),
                            "/doc": html("doc")})
    result = await crawl(site.url("/"))
    states = url_states(result.db)
    assert states[site.url("/img.png")] == (2, "content_type")
    assert states[site.url("/doc")] == (1, None)


async def test_body_size_cap(make_site, crawl):
    big = html("big", body="x" * 300_000)
    site = await make_site({"/": html("home", ["/big"]), "/big": big})
    result = await crawl(site.url("/"), max_bytes=100_000)
    rec = {r["url"]: r for r in records(result.db)}
    assert rec[site.url("/big")]["error"] == "too_large"


async def test_per_host_cap_and_delay_hold_on_the_wire(make_site, crawl):
    in_flight = peak = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            import asyncio
            await asyncio.sleep(0.05)
        finally:
            in_flight -= 1
        return web.Response(text=html("slow"), content_type="text/html")

    pages = {"/": html("home", [f"/s{i}" for i in range(12)])}
    pages.update({f"/s{i}": slow for i in range(12)})
    site = await make_site(pages)
    await crawl(site.url("/"), per_host=2, delay=0.0, concurrency=32)
    assert peak == 2
    site.log.clear()
    peak = 0
    await crawl(site.url("/"), per_host=4, delay=0.2, fresh=True)
    starts = [h.at for h in site.log]  # robots.txt and sitemap.xml requests are paced too
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= 0.19, gaps  # timed from request start to request start, as the server saw them


async def test_user_agent_is_sent(make_site, crawl):
    site = await make_site({"/": html("home")})
    await crawl(site.url("/"), user_agent="TestBot/9.9")
    assert {h.headers["User-Agent"] for h in site.log} == {"TestBot/9.9"}


async def test_accounting_adds_up(make_site, crawl):
    from crawler.report import build_report

    sites = await three_host_site(make_site, n=60)
    result = await crawl(sites[0].url("/"), max_depth=2)
    t = build_report(result.db)["totals"]
    assert t["discovered"] == t["stored"] + t["skipped"] + t["queued"]
    assert t["stored"] == len(records(result.db))
    assert t["skipped"] > 0


async def test_pages_parse_in_a_process_pool(make_site, crawl):
    sites = await three_host_site(make_site, n=90)
    result = await crawl(sites[0].url("/"), workers=2)
    recs = records(result.db)
    assert len(recs) == sum(len(s.pages) for s in sites)
    assert {r["title"] for r in recs} >= {f"Page {i}" for i in range(90)}
    assert all(r["links"] > 0 for r in recs if r["title"].startswith("Page"))


async def test_new_databases_take_large_pages_old_ones_keep_theirs(make_site, crawl, tmp_path):
    site = await make_site({"/": html("home", ["/a", "/b"]), "/a": html("a"), "/b": html("b")})
    fresh = await crawl(site.url("/"))
    with sqlite3.connect(fresh.db) as con:
        assert con.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 65536
    old = tmp_path / "old.db"  # a database from before: 4 KiB pages
    with sqlite3.connect(old) as con:
        con.execute("PRAGMA page_size=4096")
        con.executescript(SCHEMA)
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    result = await crawl(site.url("/"), db=str(old))
    assert result.stats.stored == 3
    with sqlite3.connect(old) as con:
        assert con.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert con.execute("SELECT COUNT(*) FROM pages").fetchone()[0] == 3


async def test_an_origin_with_more_queued_urls_than_its_window_is_fetched_in_order(make_site, crawl):
    # The frontier keeps 256 URLs per origin in memory and tops the window up from disk in the
    # background: fetched one at a time, the order shows no row skipped, repeated or reordered.
    n = 900
    pages = {"/": html("home", [f"/a{i}" for i in range(n // 2)])}
    pages.update({f"/a{i}": html(f"a{i}", [f"/b{i}"]) for i in range(n // 2)})
    pages.update({f"/b{i}": html(f"b{i}") for i in range(n // 2)})
    site = await make_site(pages)
    result = await crawl(site.url("/"), concurrency=1, per_host=1)
    expected = ["/"] + [f"/a{i}" for i in range(n // 2)] + [f"/b{i}" for i in range(n // 2)]
    assert site.paths() == expected
    assert len(records(result.db)) == n + 1


async def test_the_request_line_is_the_canonical_url(make_site, crawl):
    # What is requested is the URL the crawl stores, byte for byte: the query sorted, escapes of
    # unreserved characters decoded, characters WHATWG leaves in a path ([ ]) as they are.
    links = ["/a^b[c]", "/caf\u00e9", "/q?b=2&a=1", "/%7Euser/x%2fy"]
    site = await make_site({"/": html("home", links)})
    result = await crawl(site.url("/"), obey=False)
    stored = {r["url"].removeprefix(site.origin) for r in records(result.db)}
    assert stored == {"/", "/a%5Eb[c]", "/caf%C3%A9", "/q?a=1&b=2", "/~user/x%2Fy"}
    assert {hit.raw for hit in site.page_log} == stored


async def test_text_is_stored_as_extracted_and_exported_collapsed(make_site, crawl):
    page = html("spaced", body="<p>lots   of\n\n   space</p><p>and  more</p>")
    site = await make_site({"/": html("home", ["/spaced"]), "/spaced": page})
    result = await crawl(site.url("/"), obey=False, store_bodies=False)  # text kept in its row
    rec = {r["url"]: r for r in records(result.db)}[site.url("/spaced")]
    assert rec["text"] == "lots of space and more"
    with sqlite3.connect(result.db) as con:
        stored = con.execute("SELECT text FROM pages WHERE final_url = ?", (site.url("/spaced"),)).fetchone()[0]
    assert "   " in stored  # the scan for runs of spaces is the export's, not the crawl's


async def test_a_hanging_request_times_out_and_its_worker_goes_on(make_site, crawl):
    # One worker: the deadline's cancellation must end that request only, and the worker
    # goes on with the next page. A redirect hop that hangs gets a deadline of its own.
    import asyncio

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    pages = {"/": html("home", ["/hang", "/hop", "/a", "/b"]), "/hang": hang, "/hop": redirect("/hang2"),
             "/hang2": hang, "/a": html("a"), "/b": html("b")}
    site = await make_site(pages)
    result = await crawl(site.url("/"), concurrency=1, timeout=0.5, retries=1)
    rec = {r["url"]: r for r in records(result.db)}
    assert rec[site.url("/hang")]["error"] == "timeout"
    assert 500 <= rec[site.url("/hang")]["elapsed_ms"] < 2500
    assert rec[site.url("/a")]["status"] == 200 and rec[site.url("/b")]["status"] == 200
    # A timeout is transient: retried once. The retry follows the hop its first attempt
    # claimed (before, it stopped there as "known", and the hop was recorded nowhere).
    assert rec[site.url("/hop")]["error"] == "timeout"
    assert sorted(site.paths()) == sorted(["/", "/hang", "/hang", "/hop", "/hop", "/hang2", "/hang2", "/a", "/b"])
    assert url_states(result.db)[site.url("/hang2")] == (2, "redirect")


async def test_a_hanging_robots_txt_is_bounded_by_the_timeout(make_site, crawl):
    import asyncio

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="User-agent: *\nDisallow: /")

    site = await make_site({"/robots.txt": hang, "/": html("home", ["/a"]), "/a": html("a")})
    result = await asyncio.wait_for(crawl(site.url("/"), timeout=0.5, retries=0), 20)
    assert result.stats.fetched >= 1


async def test_a_reasons_cancellation_is_told_apart_from_the_crawls():
    # The deadline sweeper and the watchdog cancel a task for their reason; the task goes on
    # only when that reason alone cancelled it (Ctrl-C, a failing TaskGroup must still end it).
    import asyncio

    import pytest

    from crawler.cancels import Cancels

    cancels = Cancels()

    async def wait() -> str:
        me = asyncio.current_task()
        assert me is not None
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if not cancels.caught(me):
                raise
            return "went on"
        return "slept"

    ours, both, theirs = (asyncio.create_task(wait()) for _ in range(3))
    await asyncio.sleep(0)
    cancels.cancel(ours)
    cancels.cancel(ours)  # once only: a second cancel would outlive the first one's catch
    cancels.cancel(both)
    both.cancel()
    theirs.cancel()
    assert await ours == "went on" and not ours.cancelling()
    for task in (both, theirs):
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_parse_process_hashes_and_packs_what_the_writer_would(make_site, crawl, tmp_path):
    # With a parse process, pages it parses arrive hashed and packed (body, then text); pages
    # it does not parse (a 404 here) are still hashed and packed by the writer. Either way the
    # database says the same as a crawl parsed in the crawler's own process: same hashes, same
    # duplicates, same blobs, same text.
    same = html("Same", body="<p>identical — ça va</p>")
    gone = "<html><body><p>gone away</p></body></html>"

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text=gone, content_type="text/html")

    pages = {"/": html("home", ["/a", "/b", "/c", "/missing", "/e", "/gone", "/back"]), "/a": same, "/b": same,
             "/c": html("Ünïcode", body="<p>" + "naïve café " * 200 + "</p>"), "/e": html("empty"),
             "/gone": not_found, "/back": gone}

    def contents(db: Path) -> dict[str, tuple[str, bytes | None]]:
        with sqlite3.connect(db) as con:
            return {h: (first_url, body and unpack(body)) for h, first_url, body in con.execute(
                "SELECT c.hash, u.url, c.body FROM contents c JOIN urls u ON u.id = c.first")}

    def comparable(db: Path) -> dict[str, dict]:
        return {r["url"]: {k: v for k, v in r.items() if k not in ("fetched_at", "elapsed_ms")} for r in records(db)}

    for keep in (True, False):
        dbs = []
        for workers in (0, 1):
            site = await make_site(pages, host="127.0.3.1" if workers == 0 else "127.0.3.2")
            db = tmp_path / f"{keep}-{workers}.db"
            await crawl(site.url("/"), workers=workers, store_bodies=keep, concurrency=1, db=str(db))
            dbs.append(db)
        in_process, pooled = (comparable(db) for db in dbs)
        assert len(in_process) == 8
        assert [{k: v for k, v in r.items() if k not in ("url", "final_url", "parent", "duplicate_of")}
                for r in in_process.values()] == \
               [{k: v for k, v in r.items() if k not in ("url", "final_url", "parent", "duplicate_of")}
                for r in pooled.values()]
        for recs in (in_process, pooled):
            by_path = {url.split("/", 3)[3]: r for url, r in recs.items()}
            assert by_path["b"]["duplicate_of"] == by_path["a"]["url"]
            assert by_path["a"]["content_hash"] == hashlib.sha256(same.encode()).hexdigest()
            assert "naïve café" in by_path["c"]["text"]
            # An error page is not parsed: its body is kept without text. The same body served
            # fine later is parsed, and is its duplicate: its own text is kept all the same.
            assert (by_path["gone"]["status"], by_path["gone"]["text"]) == (404, "")
            assert by_path["back"]["duplicate_of"] == by_path["gone"]["url"]
            assert by_path["back"]["text"] == "gone away"
        blobs = [{h: body for h, (_, body) in contents(db).items()} for db in dbs]
        assert blobs[0] == blobs[1]
        assert len(blobs[1]) == 6  # "/", a (b is its duplicate), c, e, the 404 pages, gone (back is its duplicate)
        if keep:
            c = pooled[next(url for url in pooled if url.endswith("/c"))]
            blob = blobs[1][c["content_hash"]]
            assert blob is not None and blob[c["bytes"]:].decode().strip().startswith("naïve café")
        else:
            assert all(body is None for body in blobs[1].values())
