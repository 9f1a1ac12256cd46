"""The crawl report: its numbers checked against the stored data, and the HTML page in a browser.

A small two-host site with 404s, a 500, a redirect, a robots.txt-disallowed path, a duplicate
body and hostile strings is crawled once per test; the report must agree with the JSONL export
and with the ``urls`` table. The HTML page is loaded in headless Chromium when it is installed
(Debian's ``chromium``; .ci/run installs it): no console errors, the four charts in the DOM.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from html import escape
from html.parser import HTMLParser
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from crawler.report import build_report, render_html, render_json, render_text
from crawler.urls import origin_of

from conftest import html, records, redirect, respond, url_states

HOSTILE = "<script>alert(1)</script>"
CHARTS = ("chart-throughput", "chart-status", "chart-latency", "chart-hosts")
SAME_BODY = html("Same", body="<p>identical body</p>")


async def crawl_site(make_site: Any, crawl: Any) -> tuple[Path, list[Any]]:
    b = await make_site({"/": html("B home", ["/x", "/gone"]), "/x": html("X")})
    a = await make_site({
        "/robots.txt": respond("User-agent: *\nDisallow: /private\n", content_type="text/plain"),
        "/": html("A home", ["/a", "/b", "/same", "/missing", "/old", "/boom", "/private/p", "/evil",
                             "/bad-redirect", b.url("/")]),
        "/a": html("A", ["/", "/missing2", "/private/q"]),
        "/b": SAME_BODY,
        "/same": SAME_BODY,
        "/old": redirect("/c"),
        "/c": html("C"),
        "/boom": respond("<title>err</title>", status=500),
        "/evil": html(HOSTILE),
        "/bad-redirect": redirect(f"http://{HOSTILE}/"),
    })
    result = await crawl(a.url("/"), scope="any", retries=0)
    return result.db, [a, b]


async def test_accounting_and_breakdowns_match_the_database(make_site, crawl):
    db, sites = await crawl_site(make_site, crawl)
    report = build_report(db)
    recs = records(db)
    states = url_states(db)
    t = report["totals"]
    assert t["discovered"] == t["stored"] + t["skipped"] + t["queued"] == len(states)
    assert t["stored"] == len(recs) == report["pages"] and t["queued"] == 0
    assert t["ok"] + t["failed"] == t["stored"] and t["failed"] == sum(1 for r in recs if r["error"])
    assert report["status"] == "finished" and report["ended"] == "done"
    assert report["skipped"] == dict(Counter(r for s, r in states.values() if s == 2))
    assert report["status_codes"] == {str(k): v for k, v in Counter(r["status"] for r in recs if r["status"]).items()}
    assert {"200", "404", "500"} <= set(report["status_codes"])
    assert report["errors"] == dict(Counter(r["error"] for r in recs if r["error"]))
    assert report["depths"] == {str(d): n for d, n in sorted(Counter(r["depth"] for r in recs).items())}
    assert report["bytes"] == sum(r["bytes"] for r in recs)
    assert sum(report["throughput"]["pages"]) == len(recs)
    assert sum(report["throughput"]["errors"]) == t["failed"]
    assert 1 <= len(report["throughput"]["pages"]) <= 121


async def test_per_host_rows_match_the_export(make_site, crawl):
    db, sites = await crawl_site(make_site, crawl)
    report = build_report(db)
    recs = records(db)
    states = url_states(db)
    hosts = {h["origin"]: h for h in report["hosts"]}
    assert report["hosts_total"] == len(hosts) == 2
    for site in sites:
        origin = origin_of(site.url("/"))
        mine = [r for r in recs if origin_of(r["url"]) == origin]
        row = hosts[origin]
        assert row["pages"] == len(mine)
        assert row["errors"] == sum(1 for r in mine if r["error"])
        assert row["bytes"] == sum(r["bytes"] for r in mine)
        assert row["robots_blocked"] == sum(1 for u, (s, reason) in states.items()
                                            if origin_of(u) == origin and reason in ("robots", "robots_unavailable"))
        assert row["robots"] == ("ok" if site is sites[0] else "missing")  # B has no robots.txt: 404
        assert row["delay_why"] is not None and row["latency_ms"] is not None
    assert hosts[origin_of(sites[0].url("/"))]["robots_blocked"] == 2  # /private/p and /private/q


async def test_errors_duplicates_and_latency(make_site, crawl):
    db, sites = await crawl_site(make_site, crawl)
    report = build_report(db)
    by_url = {r["url"]: r for r in records(db)}
    top = report["top_errors"]
    assert top["http_4xx"]["count"] == 3  # /missing, /missing2, B's /gone
    for kind, info in top.items():
        assert info["count"] == report["errors"][kind]
        assert 1 <= len(info["examples"]) <= 3
        for example in info["examples"]:
            assert by_url[example["url"]]["error"] == kind
    assert any(HOSTILE in (x["detail"] or "") for x in top["bad_redirect"]["examples"])
    # /same has the body of /b; the 404 pages all share the test server's "Not found" body
    assert report["duplicates"] == sum(1 for r in by_url.values() if r["duplicate_of"]) == 3
    pairs = {(x["url"], x["duplicate_of"]) for x in report["duplicate_examples"]}
    assert all(by_url[url]["duplicate_of"] == first for url, first in pairs) and len(pairs) == 3
    assert {frozenset(p) for p in pairs} >= {frozenset((sites[0].url("/b"), sites[0].url("/same")))}
    responses = sum(1 for r in by_url.values() if r["status"] is not None)
    assert sum(b["count"] for b in report["latency_histogram"]) == responses
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]


async def test_text_and_json(make_site, crawl):
    db, _ = await crawl_site(make_site, crawl)
    report = build_report(db)
    text = render_text(report)
    t = report["totals"]
    assert text.splitlines()[0] == (f"Crawl finished: {t['discovered']} URLs discovered = {t['stored']} stored + "
                                    f"{t['skipped']} skipped + {t['queued']} queued")
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "http_4xx" in text and "robots" in text
    assert json.loads(render_json(report)) == json.loads(json.dumps(report))


class Tags(HTMLParser):
    """Every tag of a page with its attributes, and the text of its <style> elements."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.style = ""
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        if self.tags and self.tags[-1][0] == "style":
            self.style += data


def assert_self_contained(page: str) -> None:
    parsed = Tags(page)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "image", "use", "a"}, names
    for tag, attrs in parsed.tags:
        for name, value in attrs:
            assert name not in ("src", "href", "xlink:href", "srcset", "action", "poster", "data", "style"), (tag, name)
            assert "://" not in (value or ""), (tag, name, value)  # a URL only ever appears as text
    assert parsed.style and not re.search(r"url\s*\(|@import", parsed.style, re.I), "no CSS fetches"


async def test_html_is_self_contained_with_charts_and_escaped(make_site, crawl):
    db, _ = await crawl_site(make_site, crawl)
    page = render_html(build_report(db))
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert_self_contained(page)
    for chart in CHARTS:
        assert re.search(rf'<svg id="{chart}" class="chart" viewBox=', page), chart
    assert HOSTILE not in page and escape(HOSTILE) in page
    assert "@media print" in page and "prefers-color-scheme" in page and 'name="viewport"' in page


def test_html_escapes_every_field_and_copes_with_an_empty_crawl():
    evil = '"><img src=x onerror=alert(1)>' + HOSTILE
    host = {"origin": evil, "pages": 1, "errors": 1, "bytes": 10, "latency_ms": 1.0, "mean_gap_s": None,
            "delay_s": 0.5, "delay_why": evil, "throttled": 0, "paused_s": 0.0, "robots": evil,
            "robots_blocked": 0, "queued": 0}
    report: dict[str, Any] = {
        "status": evil, "ended": evil, "seeds": [evil], "started": evil, "last_fetch": None,
        "totals": {"discovered": 1, "stored": 1, "ok": 0, "failed": 1, "skipped": 0, "queued": 0},
        "skipped": {evil: 1}, "errors": {evil: 1}, "status_codes": {"500": 1}, "bytes": 10, "duplicates": 1,
        "top_errors": {evil: {"count": 1, "examples": [{"url": evil, "status": 500, "detail": evil}]}},
        "duplicate_examples": [{"url": evil, "duplicate_of": evil}], "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0},
        "latency_histogram": [{"lo": 1.0, "hi": 1.6, "count": 1}], "duration_s": 0.0, "pages": 1, "hosts": [host],
        "hosts_total": 1, "depths": {"0": 1}, "settings": {"fetch.user_agent": evil},
        "throughput": {"bucket_s": 1, "start": evil, "pages": [1], "errors": [1]},
        "robots": {evil: {"status": evil, "http_status": 200, "crawl_delay": 99.0, "capped": True}},
    }
    page = render_html(report)
    assert HOSTILE not in page and "<img" not in page
    assert_self_contained(page)
    assert "capped" in page
    empty = {**report, "hosts": [], "top_errors": {}, "latency_histogram": [], "status_codes": {}, "pages": 0,
             "throughput": {"bucket_s": 1, "start": None, "pages": [], "errors": []}, "robots": {},
             "latency_ms": {"p50": None, "p90": None, "p99": None}}
    page = render_html(empty)
    assert all(f'id="{chart}"' in page for chart in CHARTS)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


async def headless(browser: str, page: Path, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """Load ``page``; returns the DOM after load and the console lines Chromium logged.

    Host names resolve nowhere, so a request to the network would log a console error too.
    """
    profile = tmp / f"profile-{page.stem}"
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", "--enable-logging=stderr",
        "--v=0", "--virtual-time-budget=2000", "--dump-dom", *extra, page.as_uri(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    console = [line for line in err.decode(errors="replace").splitlines()
               if ":CONSOLE" in line or "Uncaught" in line or "Failed to load" in line]
    return out.decode(errors="replace"), console


async def test_html_in_headless_chromium(make_site, crawl, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    # The check must be able to fail: a page with a console error and a missing resource.
    control = tmp_path / "control.html"
    control.write_text('<!doctype html><img src="https://cdn.example.com/x.png">'
                       '<script>console.error("control error"); nope();</script>')
    _, console = await headless(browser, control, tmp_path)
    assert any("Uncaught" in line for line in console), "Chromium does not log console errors: the check is blind"

    db, _ = await crawl_site(make_site, crawl)
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(db)), encoding="utf-8")
    shot = tmp_path / "report.png"
    dom, console = await headless(browser, page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert console == []
    for chart in CHARTS:
        assert f'id="{chart}"' in dom, chart
    assert dom.count("<rect") >= 8
    assert shot.is_file() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_crawl_that_stored_nothing_still_reports(tmp_path):
    import sqlite3

    from crawler.store import SCHEMA, SCHEMA_VERSION

    db = tmp_path / "new.db"
    with sqlite3.connect(db) as con:
        con.executescript(SCHEMA)
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("INSERT INTO urls (url, origin, depth, state) VALUES ('http://a.test/', 'a.test:80', 0, 0)")
        con.execute("""INSERT INTO meta VALUES ('status', '"running"')""")
    con.close()
    report = build_report(db)
    assert report["totals"] == {"discovered": 1, "stored": 0, "ok": 0, "failed": 0, "skipped": 0, "queued": 1}
    assert report["ended"] == "running" and report["hosts"][0]["queued"] == 1
    assert report["throughput"]["pages"] == [] and report["latency_histogram"] == []
    assert render_text(report).startswith("Crawl running: 1 URLs discovered = 0 stored + 0 skipped + 1 queued")
    assert all(f'id="{chart}"' in render_html(report) for chart in CHARTS)
