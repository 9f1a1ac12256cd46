"""The dedupe filter: fingerprints in a flat table, recent URLs exact, "maybe" confirmed on disk."""

from __future__ import annotations

from collections import Counter

from crawler import seen as seen_module
from crawler.seen import SeenFilter, fingerprint

from conftest import html, records


def test_new_then_seen_and_maybe_once_forgotten():
    f = SeenFilter(capacity=8)
    verdict, fp = f.check("http://a/1")
    assert verdict == SeenFilter.NEW and fp == fingerprint("http://a/1") and fp > 0
    f.add("http://a/1", fp)
    assert f.check("http://a/1")[0] == SeenFilter.SEEN  # exact, from the recent URLs
    g = SeenFilter()
    g.load([fp])  # what a resumed crawl knows: the fingerprint, not the string
    assert g.check("http://a/1")[0] == SeenFilter.MAYBE


def test_grows_and_keeps_everything():
    f = SeenFilter(capacity=4)
    urls = [f"http://h/{i}" for i in range(5000)]
    for url in urls:
        f.add(url, 0)
    assert len(f) == 5000
    fresh = SeenFilter()
    fresh.load(fingerprint(u) for u in urls)
    assert all(fresh.check(u)[0] == SeenFilter.MAYBE for u in urls)
    assert fresh.check("http://h/elsewhere")[0] == SeenFilter.NEW


def test_recent_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(seen_module, "RECENT", 100)
    f = SeenFilter()
    for i in range(1000):
        f.add(f"http://h/{i}", 0)
    assert len(f._recent) + len(f._older) <= 200
    assert f.check("http://h/999")[0] == SeenFilter.SEEN
    assert f.check("http://h/0")[0] == SeenFilter.MAYBE  # forgotten exactly, still known by fingerprint


async def test_fingerprint_collisions_never_drop_a_url(make_site, crawl, monkeypatch):
    # Every URL gets one of two fingerprints: nearly every check is a "maybe", settled on disk.
    monkeypatch.setattr(seen_module, "fingerprint", lambda url: 1 + len(url) % 2)
    monkeypatch.setattr(seen_module, "RECENT", 3)
    pages = {"/": html("home", [f"/p{i}" for i in range(60)])}
    pages.update({f"/p{i}": html(f"p{i}", [f"/p{(i * 7) % 60}", f"/p{(i * 11) % 60}", "/"]) for i in range(60)})
    site = await make_site(pages)
    result = await crawl(site.url("/"))
    fetched = Counter(site.paths())
    assert set(fetched) == set(pages) and max(fetched.values()) == 1
    assert len(records(result.db)) == 61


def test_on_disk_confirmation_finds_exactly_the_stored_urls():
    import sqlite3

    from crawler.frontier import _known
    from crawler.store import SCHEMA

    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    stored = ["http://h/a", "http://h/b?x=1&y=%22", "http://h/é"]  # the last one not canonical (not ASCII)
    conn.executemany("INSERT INTO urls (id, url, origin, depth, state, fp) VALUES (?, ?, 'h:80', 0, 0, 1)",
                     list(enumerate(stored, 1)))
    asked = [*stored, "http://h/c", 'http://h/"quoted"', "http://h/ü"]
    assert _known(conn, asked) == set(stored)
    assert _known(conn, []) == set()
