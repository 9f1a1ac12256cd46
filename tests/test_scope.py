"""crawler.scope: registered domains (offline), scope modes, admission order and filters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import crawler.scope
from crawler.models import Skip
from crawler.scope import Admission, Scope, next_chain, site_key, url_template


def test_public_names() -> None:
    assert set(crawler.scope.__all__) == {
        "site_key", "Scope", "Admission", "SCOPE_MODES", "url_template", "next_chain"
    }


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("example.com", "example.com"),
        ("www.example.com", "example.com"),
        ("WWW.Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("www.bbc.co.uk", "bbc.co.uk"),
        ("a.b.bbc.co.uk", "bbc.co.uk"),
        ("sub.example.co.jp", "example.co.jp"),
        ("co.uk", "co.uk"),  # a bare public suffix keys to itself
        ("com", "com"),
        ("localhost", "localhost"),  # no registered domain
        ("foo.bar.internal", "foo.bar.internal"),  # unknown suffix: the host itself
        ("alice.github.io", "alice.github.io"),  # private suffixes count: one user's site
        ("x.blogspot.com", "x.blogspot.com"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("127.0.0.1", "127.0.0.0/24"),
        ("127.0.0.8", "127.0.0.0/24"),
        ("10.1.2.3", "10.1.2.0/24"),
        ("::1", "::/64"),
        ("2001:db8::1", "2001:db8::/64"),
        ("[2001:db8:0:0:ff::1]", "2001:db8::/64"),
        ("", ""),
    ],
)
def test_site_key(host: str, key: str) -> None:
    assert site_key(host) == key


def test_site_key_is_offline_and_writes_nothing(tmp_path: Path) -> None:
    # A fresh interpreter (nothing loaded yet) with networking made to fail loudly and an
    # empty home for tldextract's default cache directory.
    code = textwrap.dedent(
        """
        import socket
        def boom(*a, **k):
            raise AssertionError("network access")
        socket.socket.connect = boom
        socket.getaddrinfo = boom
        socket.create_connection = boom
        from crawler.scope import site_key
        assert site_key("www.bbc.co.uk") == "bbc.co.uk"
        assert site_key("a.example.com") == "example.com"
        """
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("TLDEXTRACT_CACHE", None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path, timeout=30)
    assert list(tmp_path.iterdir()) == []


SEEDS = ["http://www.example.com/", "http://127.0.0.1:8431/"]


@pytest.mark.parametrize(
    ("mode", "url", "allowed"),
    [
        ("host", "http://www.example.com/a", True),
        ("host", "https://www.example.com:8443/a", True),  # host, not port
        ("host", "http://example.com/a", False),
        ("host", "http://127.0.0.1:9999/", True),
        ("host", "http://127.0.0.2:8431/", False),
        ("domain", "http://example.com/a", True),
        ("domain", "http://a.b.example.com/a", True),
        ("domain", "http://example.org/", False),
        ("domain", "http://notexample.com/", False),
        ("domain", "http://127.0.0.2:8431/p/1.html", True),  # same /24
        ("domain", "http://127.0.0.254/", True),
        ("domain", "http://127.0.1.1/", False),
        ("any", "http://anything.test/", True),
        ("any", "https://[::1]/", True),
        ("any", "ftp://example.com/", False),
        ("domain", "mailto:x@example.com", False),
        ("host", "", False),
    ],
)
def test_scope(mode: str, url: str, allowed: bool) -> None:
    assert Scope(mode, SEEDS).allows(url) is allowed


def test_scope_cache_gives_same_answers() -> None:
    scope = Scope("domain", SEEDS)
    urls = [f"http://h{i}.example.com/" for i in range(50)] + ["http://other.net/"] * 3
    assert [scope.allows(u) for u in urls] == [True] * 50 + [False] * 3
    assert [scope.allows(u) for u in urls] == [True] * 50 + [False] * 3


def test_scope_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="scope"):
        Scope("planet", SEEDS)


def test_skip_reasons_are_the_model_constants() -> None:
    reasons = (Skip.TOO_LONG, Skip.DEPTH, Skip.SCOPE, Skip.FILTER, Skip.CONTENT_TYPE, Skip.TRAP,
               Skip.HOST_BUDGET)
    assert reasons == ("url_too_long", "depth", "scope", "filter", "content_type", "trap",
                       "host_budget")


LONG = "http://www.example.com/" + "a" * 100


@pytest.mark.parametrize(
    ("include", "exclude", "max_depth", "url", "depth", "reason"),
    [
        ([], [], None, "http://www.example.com/x", 99, None),
        # order: length before depth before scope before filter
        ([], [], 1, LONG, 5, Skip.TOO_LONG),
        ([], [], 1, "http://elsewhere.org/" + "a" * 100, 5, Skip.TOO_LONG),
        ([], [], 1, "http://elsewhere.org/", 2, Skip.DEPTH),
        (["nomatch"], [], 1, "http://elsewhere.org/", 1, Skip.SCOPE),
        ([], [], 1, "http://www.example.com/x", 1, None),  # depth == max is allowed
        ([], [], 0, "http://www.example.com/x", 1, Skip.DEPTH),
        # include: some must match (re.search, anywhere in the URL)
        (["/blog/", r"\.xml$"], [], None, "http://www.example.com/blog/1", 1, None),
        (["/blog/", r"\.xml$"], [], None, "http://www.example.com/a.xml", 1, None),
        (["/blog/", r"\.xml$"], [], None, "http://www.example.com/shop/1", 1, Skip.FILTER),
        # an include does not bring back what is never HTML
        (["/blog/", r"\.pdf$"], [], None, "http://www.example.com/a.pdf", 1, Skip.CONTENT_TYPE),
        # exclude: none may match, and it wins over include
        ([], [r"\?sort="], None, "http://www.example.com/l?sort=asc", 1, Skip.FILTER),
        (["/blog/"], ["/draft"], None, "http://www.example.com/blog/draft-1", 1, Skip.FILTER),
        (["/blog/"], ["/draft"], None, "http://www.example.com/blog/final", 1, None),
    ],
)
def test_admission(
    include: list[str],
    exclude: list[str],
    max_depth: int | None,
    url: str,
    depth: int,
    reason: str | None,
) -> None:
    admission = Admission(Scope("domain", SEEDS), include, exclude, max_depth, max_url_length=64)
    assert admission.check(url, depth) == reason


def test_admission_length_limit_is_inclusive() -> None:
    admission = Admission(Scope("any", []), [], [], None, max_url_length=30)
    url = "http://example.com/" + "a" * 11
    assert len(url) == 30 and admission.check(url, 0) is None
    assert admission.check(url + "a", 0) == Skip.TOO_LONG


def test_admission_bad_regex_fails_at_construction() -> None:
    with pytest.raises(re.error):
        Admission(Scope("any", []), ["("], [], None)


def test_admission_defaults() -> None:
    admission = Admission(Scope("any", []))
    assert admission.max_url_length == 2048
    assert admission.max_pages_per_host is None
    assert (admission.max_query_variants, admission.max_path_segments, admission.max_chain) == (256, 32, 40)
    assert admission.check("http://example.com/" + "a" * 2029, 0) is None  # 2,048 characters
    assert admission.check("http://example.com/" + "a" * 2030, 0) == Skip.TOO_LONG


# -- non-HTML by extension ---------------------------------------------------------------

E = "http://example.com"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"{E}/a.jpg", Skip.CONTENT_TYPE),
        (f"{E}/img/Photo.JPEG", Skip.CONTENT_TYPE),  # case-insensitive
        (f"{E}/a.png", Skip.CONTENT_TYPE),
        (f"{E}/icons/favicon.ico", Skip.CONTENT_TYPE),
        (f"{E}/v/clip.mp4", Skip.CONTENT_TYPE),
        (f"{E}/dl/src.tar.gz", Skip.CONTENT_TYPE),
        (f"{E}/dl/a.zip?v=2", Skip.CONTENT_TYPE),  # the query does not hide it
        (f"{E}/paper.pdf", Skip.CONTENT_TYPE),
        (f"{E}/paper.PDF;jsessionid=AB12", Skip.CONTENT_TYPE),  # path parameters dropped
        (f"{E}/setup.exe", Skip.CONTENT_TYPE),
        (f"{E}/f/font.woff2", Skip.CONTENT_TYPE),
        (f"{E}/s/site.css", Skip.CONTENT_TYPE),
        (f"{E}/s/app.js", Skip.CONTENT_TYPE),
        (f"{E}/", None),
        (f"{E}/about", None),  # no extension
        (f"{E}/index.html", None),
        (f"{E}/page.HTM", None),
        (f"{E}/view.php?id=3", None),
        (f"{E}/default.aspx", None),
        (f"{E}/sitemap.xml", None),  # sitemaps and feeds: the fetcher judges the response
        (f"{E}/feed.json", None),
        (f"{E}/robots.txt", None),
        (f"{E}/search?q=a.pdf", None),  # the extension is in the query, not the path
        (f"{E}/photos.jpg/", None),  # a directory
        (f"{E}/files.zip/readme", None),
        (f"{E}/v1.2/docs", None),
        (f"{E}/archive.pdfx", None),
        (f"{E}/.png", Skip.CONTENT_TYPE),
    ],
)
def test_skip_by_extension(url: str, reason: str | None) -> None:
    assert Admission(Scope("any", [])).check(url, 1) == reason


def test_skip_extensions_can_be_turned_off() -> None:
    admission = Admission(Scope("any", []), skip_extensions=False)
    assert admission.check(f"{E}/a.pdf", 1) is None


# -- traps: path segments -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "trap"),
    [
        ("/a/a/a/", True),
        ("/a/a/a", True),
        ("/x/a/a/a/y", True),
        ("/a/b/a/b/a/b/", True),
        ("/a/b/a/b/a/b", True),
        ("/x/a/b/c/a/b/c/a/b/c/y", True),
        ("/01/01/01", True),  # three equal single segments: accepted false positive
        ("/ab/ab/ab/ab/", True),
        ("/a/a/", False),  # twice is not a trap
        ("/a/b/a/", False),
        ("/a/b/a/b/", False),
        ("/a/b/c/d/a/b/c/d/a/b/c/d/", False),  # blocks of 4 are not looked for
        ("/2024/01/01/", False),
        ("/a/a/ab", False),  # whole segments only
        ("/a/ab/a/ab/a/ab", True),
        ("/a/ab/a/ab/a/abc", False),
        ("/a/a-a/a", False),
        ("/a//a//a/", False),  # empty segments do not count
        ("/a/b/c/d/e/f/g", False),
        ("/" + "/".join(f"s{i}" for i in range(32)), False),  # 32 segments: allowed
        ("/" + "/".join(f"s{i}" for i in range(33)), True),  # 33: too deep
        ("/" + "/".join(f"s{i}" for i in range(31)) + "/", False),  # 32 with the empty last
    ],
)
def test_repeating_path_segments(path: str, trap: bool) -> None:
    admission = Admission(Scope("any", []))
    assert admission.check(E + path, 1) == (Skip.TRAP if trap else None)
    assert admission.check(E + path + "?q=1", 1) == (Skip.TRAP if trap else None)


def test_max_path_segments_is_configurable() -> None:
    admission = Admission(Scope("any", []), max_path_segments=3)
    assert admission.check(f"{E}/a/b/c", 1) is None
    assert admission.check(f"{E}/a/b/c/d", 1) == Skip.TRAP


# -- traps: query parameters ----------------------------------------------------------------


def _query(n: int) -> str:
    return "&".join(f"k{i:02d}=v" for i in range(n))


@pytest.mark.parametrize(
    ("n", "reason"), [(1, None), (15, None), (16, None), (17, Skip.TRAP), (40, Skip.TRAP)]
)
def test_too_many_query_parameters(n: int, reason: str | None) -> None:
    assert Admission(Scope("any", [])).check(f"{E}/list?{_query(n)}", 1) == reason


def test_query_variants_per_path() -> None:
    admission = Admission(Scope("any", []), max_query_variants=3)
    admitted = [admission.check(f"{E}/list?page={i}", 1) for i in range(5)]
    assert admitted == [None, None, None, Skip.TRAP, Skip.TRAP]
    # another path, another port, another scheme: their own counts
    assert admission.check(f"{E}/other?page=9", 1) is None
    assert admission.check("http://example.com:8080/list?page=9", 1) is None
    assert admission.check("https://example.com/list?page=9", 1) is None
    # the path itself without a query is not a variant and is never counted
    assert admission.check(f"{E}/list", 1) is None
    assert [admission.check(f"{E}/plain/{i}", 1) for i in range(10)] == [None] * 10


def test_skipped_urls_do_not_use_up_query_variants() -> None:
    admission = Admission(Scope("any", []), max_query_variants=2, max_pages_per_host=1)
    assert admission.check("http://a.test/l?p=1", 1) is None
    assert admission.check("http://a.test/l?p=2", 1) == Skip.HOST_BUDGET  # not admitted
    assert admission.check("http://a.test/l?p=2", 1) == Skip.HOST_BUDGET
    admission = Admission(Scope("any", []), ["keep"], max_query_variants=1)
    assert admission.check("http://a.test/l?p=drop", 1) == Skip.FILTER
    assert admission.check("http://a.test/l?p=keep", 1) is None  # the first admitted one


# -- endless chains ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "template"),
    [
        ("http://example.com/cal?month=2026-11", "http://example.com/cal?month"),
        ("http://example.com/cal?year=2026&month=11", "http://example.com/cal?month&year"),
        ("http://example.com/cal?month=1&month=2", "http://example.com/cal?month"),
        ("http://example.com/cal/2026/11", "http://example.com/cal/0/0"),
        ("http://example.com/p/00123.html", "http://example.com/p/0.html"),
        ("http://127.0.0.12:8431/p/7.html", "http://0.0.0.0:0/p/0.html"),
        ("http://example.com/a-b/c", "http://example.com/a-b/c"),
        ("http://example.com/?", "http://example.com/?"),
        ("http://example.com/s?q", "http://example.com/s?q"),
        ("http://example.com/v2/items?id=5&p=", "http://example.com/v0/items?id&p"),
    ],
)
def test_url_template(url: str, template: str) -> None:
    assert url_template(url) == template


@pytest.mark.parametrize(
    ("parent", "parent_chain", "url", "chain"),
    [
        ("http://e.test/cal?month=2026-11", 0, "http://e.test/cal?month=2026-12", 1),
        ("http://e.test/cal?month=2026-11", 7, "http://e.test/cal?month=2026-12", 8),
        ("http://e.test/cal?month=2026-11", 7, "http://e.test/cal?month=2026-12&view=w", 0),
        ("http://e.test/cal/2026/11", 3, "http://e.test/cal/2026/12", 4),
        ("http://e.test/cal/2026/11", 3, "http://e.test/about", 0),
        ("http://e.test/p/00012.html", 0, "http://e.test/p/00123.html", 1),
        ("http://e.test/p/00012.html", 5, "http://e.test/p/00123.html", 6),
        ("http://e.test/p/00012.html", 5, "http://e.test/q/00123.html", 0),
        ("http://e.test/", 0, "http://e.test/p/1.html", 0),
    ],
)
def test_next_chain(parent: str, parent_chain: int, url: str, chain: int) -> None:
    assert next_chain(parent, parent_chain, url) == chain


def _follow(admission: Admission, step: Callable[[int], str], hops: int) -> list[str | None]:
    """Crawl pages where page i (step(i), the seed is step(0)) links to page i+1, until a skip."""
    reasons: list[str | None] = []
    url, chain = step(0), 0
    for i in range(1, hops + 1):
        nxt = step(i)
        chain = next_chain(url, chain, nxt)
        reasons.append(admission.check(nxt, i, chain))
        if reasons[-1] is not None:
            break
        url = nxt
    return reasons


@pytest.mark.parametrize(
    "step",
    [
        lambda i: f"http://e.test/cal?month={2026 + i // 12}-{i % 12 + 1:02d}",
        lambda i: f"http://e.test/cal/{2026 + i // 12}/{i % 12 + 1}",
        lambda i: f"http://e.test/cal?day={i}&view=month",
    ],
    ids=["query", "path", "query-two-keys"],
)
def test_calendar_stops_at_max_chain(step: Callable[[int], str]) -> None:
    admission = Admission(Scope("any", []), max_chain=5)
    reasons = _follow(admission, step, 100)
    assert reasons == [None] * 5 + [Skip.TRAP]  # chains 1..5 admitted, 6 is a trap
    # with the default limit, without --max-depth, it still ends: at 40 hops
    admission = Admission(Scope("any", []))
    assert len(_follow(admission, step, 1000)) == 41
    assert admission.admitted("e.test:80") == 40


def test_breadth_first_site_is_not_a_chain() -> None:
    """A benchmark-like site: every page is /p/NNNNN.html with 10 links; chain = BFS depth."""
    admission = Admission(Scope("any", []), max_chain=6)
    level, chains = [("http://e.test/p/00000.html", 0)], {}
    for depth in range(1, 6):  # 10 + 100 + ... + 100,000 pages
        nxt = []
        for parent, chain in level:
            base = int(parent[-10:-5])
            for k in range(10):
                url = f"http://e.test/p/{(base * 10 + k + 1) % 100000:05d}.html"
                if url in chains:
                    continue
                chains[url] = c = next_chain(parent, chain, url)
                assert admission.check(url, depth, c) is None
                nxt.append((url, c))
        level = nxt
    assert max(chains.values()) == 5  # the depth, far below max_chain
    # the same site linking into other sections resets the chain
    assert next_chain("http://e.test/p/00123.html", 5, "http://e.test/tag/7") == 0


def test_chain_order_and_limit_is_exclusive() -> None:
    admission = Admission(Scope("any", []), max_chain=3)
    assert admission.check(f"{E}/c/4", 4, 3) is None
    assert admission.check(f"{E}/c/5", 5, 4) == Skip.TRAP


# -- per-host budget -----------------------------------------------------------------------------


def test_host_budget_per_origin() -> None:
    admission = Admission(Scope("any", []), max_pages_per_host=3)
    a = [admission.check(f"http://a.test/{i}", 1) for i in range(5)]
    assert a == [None, None, None, Skip.HOST_BUDGET, Skip.HOST_BUDGET]
    # origin is host:port: another port or scheme is another lane with its own budget
    assert admission.check("http://a.test:8080/x", 1) is None
    assert admission.check("https://a.test/x", 1) is None
    assert admission.check("http://b.test/x", 1) is None
    assert admission.admitted("a.test:80") == 3
    assert admission.admitted("a.test:443") == 1
    assert admission.admitted("nowhere.test:80") == 0


def test_host_budget_preload_for_resume() -> None:
    admission = Admission(Scope("any", []), max_pages_per_host=3)
    admission.preload({"a.test:80": 2, "b.test:80": 3, "c.test:80": 7})
    assert admission.admitted("a.test:80") == 2
    assert admission.check("http://a.test/new1", 1) is None
    assert admission.check("http://a.test/new2", 1) == Skip.HOST_BUDGET
    assert admission.check("http://b.test/new", 1) == Skip.HOST_BUDGET
    assert admission.check("http://c.test/new", 1) == Skip.HOST_BUDGET
    assert admission.check("http://d.test/new", 1) is None


def test_preload_query_variants() -> None:
    admission = Admission(Scope("any", []), max_query_variants=2)
    admission.preload({}, ["http://a.test/l?p=1", "http://a.test/l?p=2", "http://a.test/m"])
    assert admission.check("http://a.test/l?p=3", 1) == Skip.TRAP
    assert admission.check("http://a.test/m?p=1", 1) is None


def test_unlimited_budget_still_counts() -> None:
    admission = Admission(Scope("any", []))
    for i in range(10):
        assert admission.check(f"http://a.test/{i}", 1) is None
    assert admission.admitted("a.test:80") == 10


def test_skipped_urls_do_not_use_up_the_budget() -> None:
    admission = Admission(Scope("host", ["http://a.test/"]), max_depth=2, max_pages_per_host=1)
    for url, depth in [
        ("http://a.test/deep", 3), ("http://b.test/x", 1), ("http://a.test/x.png", 1),
        ("http://a.test/a/a/a/", 1), ("http://a.test/" + "x" * 3000, 1),
    ]:
        assert admission.check(url, depth) is not None
    assert admission.admitted("a.test:80") == 0
    assert admission.check("http://a.test/ok", 1) is None


# -- order of reasons ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "depth", "chain", "reason"),
    [
        ("http://a.test/a/a/a/x.png?" + "z" * 200, 9, 99, Skip.TOO_LONG),
        ("http://other.test/a/a/a/x.png", 9, 99, Skip.DEPTH),
        ("http://other.test/a/a/a/x.png", 1, 99, Skip.SCOPE),
        ("http://a.test/drop/a/a/a/x.png", 1, 99, Skip.FILTER),
        ("http://a.test/a/a/a/x.png", 1, 99, Skip.CONTENT_TYPE),
        ("http://a.test/a/a/a/x.html", 1, 0, Skip.TRAP),
        ("http://a.test/x.html", 1, 99, Skip.TRAP),
        ("http://a.test/x.html?" + _query(20), 1, 0, Skip.TRAP),
        ("http://full.test/x.html", 1, 0, Skip.HOST_BUDGET),
        ("http://a.test/x.html", 1, 0, None),
    ],
)
def test_order_of_reasons(url: str, depth: int, chain: int, reason: str | None) -> None:
    scope = Scope("host", ["http://a.test/", "http://full.test/"])
    admission = Admission(scope, [], ["/drop/"], 2, 200, max_pages_per_host=5, max_chain=3)
    admission.preload({"full.test:80": 5})
    assert admission.check(url, depth, chain) == reason


def test_check_cost(record_property: pytest.RecordProperty) -> None:
    """Not a timing assertion: reports what check() costs on typical new links (-s to see)."""
    admission = Admission(Scope("domain", ["http://127.0.0.1:8431/"]), max_depth=50,
                          max_pages_per_host=10**9)
    urls = [f"http://127.0.0.{i % 50}:8431/p/{i:06d}.html" for i in range(50_000)]
    start = time.perf_counter()
    for url in urls:
        admission.check(url, 3, 2)
    check_us = (time.perf_counter() - start) / len(urls) * 1e6
    parent = "http://127.0.0.1:8431/p/000001.html"
    start = time.perf_counter()
    for url in urls:
        next_chain(parent, 2, url)
    chain_us = (time.perf_counter() - start) / len(urls) * 1e6
    record_property("check_us", check_us)
    record_property("next_chain_us", chain_us)
    print(f"check(): {check_us:.2f} µs, next_chain(): {chain_us:.2f} µs per URL")
