"""parse_html: metadata, links (base, nofollow, dedupe), visible text, charsets, hostile input."""

from __future__ import annotations

import base64
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler import parse
from crawler.charset import normalize
from crawler.models import ParsedPage
from crawler.parse import parse_html, robots_directives

CASES = json.loads((Path(__file__).parent / "data" / "html_encoding_cases.json").read_text())
URL = "http://site.test/dir/page.html"


def page(head: str = "", body: str = "") -> bytes:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>".encode()


def links(body: str, head: str = "", url: str = URL) -> tuple[str, ...]:
    return parse_html(page(head, body), url).links


@pytest.mark.parametrize(
    ("head", "field", "value"),
    [
        ("<title>  Hello \n\t World </title>", "title", "Hello World"),
        ("<title></title>", "title", None),
        ("<title> \n </title>", "title", None),
        ("", "title", None),
        ("<title>A &amp; B</title><title>second</title>", "title", "A & B"),
        ('<meta name="description" content=" About  us ">', "description", "About us"),
        ('<meta name="Description" content="Any case">', "description", "Any case"),
        ('<meta name="description">', "description", None),
        ('<link rel="canonical" href="/dir/other.html#top">', "canonical", "http://site.test/dir/other.html"),
        ('<link rel="Canonical" href="x.html">', "canonical", "http://site.test/dir/x.html"),
        ('<link rel="canonical" href="javascript:void(0)">', "canonical", None),
        ('<link rel="stylesheet" href="/s.css">', "canonical", None),
        ('<meta name="robots" content="NoIndex, NoFollow">', "meta_robots", "noindex, nofollow"),
        ('<meta name="ROBOTS" content="noarchive">', "meta_robots", "noarchive"),
        ('<meta name="googlebot" content="nofollow">', "meta_robots", None),
        ("", "meta_robots", None),
    ],
)
def test_metadata(head: str, field: str, value: Any) -> None:
    assert getattr(parse_html(page(head), URL), field) == value


def test_metadata_misplaced_in_body_still_found() -> None:
    # <noscript><img> in <head> ends the head: what follows lands in <body>.
    head = '<noscript><img src="p.gif"></noscript><link rel="canonical" href="/c.html"><title>T</title>'
    parsed = parse_html(page(head), URL)
    assert (parsed.canonical, parsed.title) == ("http://site.test/c.html", "T")


@pytest.mark.parametrize(
    ("head", "url", "expected"),
    [
        ("", URL, "http://site.test/dir/a.html"),
        ('<base href="http://other.test/base/">', URL, "http://other.test/base/a.html"),
        ('<base href="/root/">', URL, "http://site.test/root/a.html"),  # relative base
        ('<base href="sub/">', URL, "http://site.test/dir/sub/a.html"),
        ('<base target="_blank"><base href="/b1/"><base href="/b2/">', URL, "http://site.test/b1/a.html"),
        ('<base href="javascript:x">', URL, "http://site.test/dir/a.html"),  # unusable: the URL
        ("", "http://site.test/final/", "http://site.test/final/a.html"),  # the final URL
    ],
)
def test_base_href(head: str, url: str, expected: str) -> None:
    assert links('<a href="a.html">a</a>', head, url) == (expected,)


def test_canonical_resolves_against_base() -> None:
    head = '<base href="http://other.test/b/"><link rel=canonical href="c.html">'
    assert parse_html(page(head), URL).canonical == "http://other.test/b/c.html"


@pytest.mark.parametrize(
    ("body", "head", "followed", "n_links"),
    [
        ('<a href="/a" rel="nofollow">a</a><a href="/b">b</a>', "", ["/b"], 2),
        ('<a href="/a" rel="NoFollow noopener">a</a>', "", [], 1),
        ('<a href="/a" rel="nofollowme">a</a>', "", ["/a"], 1),  # not the token
        ('<a href="/a" rel="nofollow">a</a><a href="/a">again</a>', "", ["/a"], 1),
        ('<a href="/a">a</a><a href="/b">b</a>', '<meta name="robots" content="noindex,nofollow">', [], 2),
        ('<a href="/a">a</a>', '<meta name="robots" content="none">', [], 1),
        ('<a href="/a">a</a>', '<meta name="robots" content="noindex">', ["/a"], 1),
    ],
)
def test_nofollow(body: str, head: str, followed: list[str], n_links: int) -> None:
    parsed = parse_html(page(head, body), URL)
    assert parsed.links == tuple(f"http://site.test{path}" for path in followed)
    assert parsed.n_links == n_links


def test_links_deduplicated_in_document_order() -> None:
    body = ('<a href="/b">1</a><a href="/a#x">2</a><a href="/a#y">3</a><a href="/a">4</a>'
            '<a href="http://SITE.test:80/b">5</a><map><area href="/c"></map><a href="/d">6</a>')
    assert links(body) == tuple(f"http://site.test/{p}" for p in "bacd")


@pytest.mark.parametrize(
    "href",
    ["mailto:a@site.test", "javascript:void(0)", "JavaScript:go()", "data:text/html,hi", "tel:+1",
     "ftp://site.test/f", "http://[bad", ""],
)
def test_non_http_links_dropped(href: str) -> None:
    parsed = parse_html(page(body=f'<a href="{href}">x</a><a name="anchor-without-href">y</a>'), URL)
    expected = ("http://site.test/dir/page.html",) if href == "" else ()  # "" is the page itself
    assert (parsed.links, parsed.n_links) == (expected, len(expected))


def test_strip_tracking_is_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def record(base: str, href: str, strip_tracking: bool) -> None:
        seen.append(strip_tracking)

    monkeypatch.setattr(parse, "canonical_link", record)
    parse_html(page(body='<a href="/a">a</a>'), URL, strip_tracking=False)
    parse_html(page(body='<a href="/a">a</a>'), URL)
    assert seen == [False, True]


def refresh_meta(content: str, equiv: str = "refresh") -> str:
    return f'<meta http-equiv="{equiv}" content="{content}">'


@pytest.mark.parametrize(
    ("head", "url", "refresh"),
    [
        (refresh_meta("5;url=/x"), URL, "http://site.test/x"),
        (refresh_meta("0; URL='/x'"), URL, "http://site.test/x"),
        (refresh_meta("0;/x"), URL, "http://site.test/x"),  # no "url="
        (refresh_meta("0,/x"), URL, "http://site.test/x"),
        (refresh_meta("  0  ;  url  =  &quot;next.html?b=2&amp;a=1#top&quot;  "), URL,
         "http://site.test/dir/next.html?a=1&b=2"),
        (refresh_meta("0; url='/x'junk'"), URL, "http://site.test/x"),  # cut at the closing quote
        (refresh_meta("1.5; url=/x"), URL, "http://site.test/x"),  # the fraction is ignored
        (refresh_meta(".5; url=/x"), URL, "http://site.test/x"),
        (refresh_meta("60; url=/x"), URL, "http://site.test/x"),
        (refresh_meta("0; url=http://other.test/y?utm_source=z"), URL, "http://other.test/y"),
        (refresh_meta("0;url=x.html", equiv="Refresh"), URL, "http://site.test/dir/x.html"),
        (refresh_meta("0;url=x.html", equiv=" REFRESH "), URL, "http://site.test/dir/x.html"),
        (refresh_meta("0;url=x.html") + '<base href="/b/">', URL, "http://site.test/b/x.html"),  # base wins
        (refresh_meta("0; urlish.html"), URL, "http://site.test/dir/urlish.html"),  # a URL starting "url"
        (refresh_meta("61; url=/x"), URL, None),  # a slow refresh is a changing page, not a redirect
        (refresh_meta("99999999999999999999999999; url=/x"), URL, None),
        (refresh_meta("3"), URL, None),  # no target: reloads itself
        (refresh_meta("0; url="), URL, None),  # empty target: the page itself
        (refresh_meta("0; url=page.html#frag"), URL, None),  # self-refresh
        (refresh_meta("0; url=http://SITE.test:80/dir/page.html"), URL, None),
        (refresh_meta("0; url=page.html"), URL + "?utm_source=x", None),  # same page once canonical
        (refresh_meta("0; url=javascript:go()"), URL, None),
        (refresh_meta("0; url=mailto:a@site.test"), URL, None),
        (refresh_meta("0; url=http://[bad"), URL, None),
        (refresh_meta("soon; url=/x"), URL, None),
        (refresh_meta("-1; url=/x"), URL, None),
        (refresh_meta("5x; url=/x"), URL, None),
        ('<meta http-equiv="refresh">', URL, None),
        ('<meta name="refresh" content="0;url=/x">', URL, None),  # name=, not http-equiv=
        (refresh_meta("0;url=/first") + refresh_meta("0;url=/second"), URL, "http://site.test/first"),
        (refresh_meta("3") + refresh_meta("0;url=/second"), URL, None),  # the first valid one counts
        (refresh_meta("99;url=/a") + refresh_meta("0;url=/second"), URL, None),
        (refresh_meta("") + refresh_meta("bad") + refresh_meta("0;url=/3"), URL, "http://site.test/3"),
        ("", URL, None),
    ],
)
def test_meta_refresh(head: str, url: str, refresh: str | None) -> None:
    assert parse_html(page(head), url).refresh == refresh


def test_meta_refresh_ignores_nofollow_and_body_placement() -> None:
    # nofollow is the crawler's business; the refresh sits in <body> after <noscript><img>
    head = '<meta name="robots" content="nofollow"><noscript><img src="p.gif"></noscript>'
    head += refresh_meta("0;url=/x")
    parsed = parse_html(page(head, '<a href="/a">a</a>'), URL)
    assert (parsed.refresh, parsed.links) == ("http://site.test/x", ())


def test_meta_refresh_strip_tracking_passed_through() -> None:
    head = refresh_meta("0;url=/x?utm_source=a")
    assert parse_html(page(head), URL, strip_tracking=False).refresh == "http://site.test/x?utm_source=a"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["noindex"], {"noindex"}),
        (["NoIndex, NOFOLLOW"], {"noindex", "nofollow"}),
        (["noindex", "nofollow"], {"noindex", "nofollow"}),  # several header lines
        (["none"], {"noindex", "nofollow"}),
        (["all"], {"all"}),
        (["noarchive,nosnippet , max-snippet: 20"], {"noarchive", "nosnippet", "max-snippet"}),
        (["sgcrawl: noindex, nofollow"], {"noindex", "nofollow"}),
        (["SGCrawl:none"], {"noindex", "nofollow"}),
        (["googlebot: noindex, nofollow"], set()),  # another bot's
        (["googlebot: noindex", "nofollow"], {"nofollow"}),
        (["googlebot: noindex", "sgcrawl: noarchive"], {"noarchive"}),
        (["googlebot: noindex, sgcrawl: nofollow"], {"nofollow"}),  # lines folded into one
        (["unavailable_after: 25 Jun 2010 15:00:00 PST"], {"unavailable_after"}),
        (["noindex, unavailable_after: Friday, 25-Jun-10 15:00:00 GMT"], {"noindex", "unavailable_after"}),
        (["sgcrawl: unavailable_after: 25 Jun 2010 15:00:00 PST"], {"unavailable_after"}),
        (["otherbot: unavailable_after: 25 Jun 2010 15:00:00 PST"], set()),
        (["noindex nofollow"], {"noindex", "nofollow"}),  # spaces instead of commas
        (["", " ", ",,", ":", "::noindex", "\x00<html>"], set()),
        (["sgcrawl:", "googlebot:"], set()),
        ([], set()),
        ([None, 5, "noindex"], {"noindex"}),  # not strings: ignored
    ],
)
def test_robots_directives(values: list[Any], expected: set[str]) -> None:
    assert robots_directives(values, "sgcrawl") == expected


def test_robots_directives_token_is_case_insensitive() -> None:
    assert robots_directives(["SGCrawl: noindex"], " SGCRAWL ") == {"noindex"}
    assert robots_directives(("googlebot: noindex" for _ in range(2)), "googlebot") == {"noindex"}


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("<p>Hello <b>big</b>\n   world</p><p>Next&nbsp;one</p>", "Hello big world Next\xa0one"),
        ("<script>var s = 'no';</script><style>p{}</style>kept", "kept"),
        ("<noscript>enable js</noscript><template><p>tpl</p></template><svg><text>svg</text></svg>ok", "ok"),
        ("<!-- a comment -->visible", "visible"),
        ("a\t\r\n\x0cb   c", "a b c"),
        ("", ""),
    ],
)
def test_visible_text(body: str, text: str) -> None:
    parsed = parse_html(page("<title>not body</title><style>x{}</style>", body), URL)
    assert parsed.text == text


@pytest.mark.parametrize(
    ("body", "content_type", "title", "encoding"),
    [
        ("<meta charset=windows-1252><title>Caf\xe9 \x93ok\x94</title>".encode("latin-1"), None,
         "Café “ok”", "windows-1252"),
        ("<title>Café</title>".encode("cp1252"), None, "Café", "windows-1252"),  # invalid UTF-8
        ("<meta charset=Shift_JIS><title>日本語のページ</title>".encode("shift_jis"), None, "日本語のページ", "shift_jis"),
        ("<title>東京の天気</title>".encode("euc-jp"), "text/html; charset=EUC-JP", "東京の天気", "euc-jp"),
        ("<meta charset=euc-jp><title>Ünïcödé</title>".encode(), "text/html; charset=utf-8", "Ünïcödé", "utf-8"),
        (b"\xef\xbb\xbf<meta charset=latin1><title>\xc3\xa9</title>", None, "é", "utf-8"),
        ("<title>Привет</title>".encode("utf-16le"), "text/html; charset=utf-16le", "Привет", "utf-16le"),
    ],
)
def test_charset(body: bytes, content_type: str | None, title: str, encoding: str) -> None:
    parsed = parse_html(body, URL, content_type)
    assert (parsed.title, parsed.encoding) == (title, encoding)


def test_late_meta_charset_reparses() -> None:
    # Past the 1024-byte prescan: the tree builder's <meta> still decides, as in a browser.
    body = b"<!--" + b"x" * 2000 + b"--><meta charset=euc-jp><title>" + "日本".encode("euc-jp") + b"</title>"
    parsed = parse_html(body, URL)
    assert (parsed.title, parsed.encoding) == ("日本", "euc-jp")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_encoding_conformance_end_to_end(case: dict[str, Any]) -> None:
    body = base64.b64decode(case["data_b64"])
    got, expected = parse_html(body, URL).encoding, normalize(case["encoding"])
    if case["id"] == "html5lib-enc-083":  # needs a script to run
        assert got != expected
    elif expected == "windows-1252" and body.isascii():
        assert got in ("windows-1252", "utf-8")  # same text: ASCII reads alike in both
    else:
        assert got == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
        b"<html><head><title>cut",
        b"<a href='/x",
        b"<div " * 1000,
        b"<p>NUL\x00 inside \x00<a href='/n\x00ul'>x</a>",
        b"<div>" * 200_000,  # nests deeper than the parser can afford: cut, not hung
        b"<b></p>" * 100_000,
        b"<table>" * 50_000,
        b"<!--" * 10_000 + b"<script>" * 10_000,
        b"\xff\xfe" + b"\x00<\x00a" * 1000,
        b"<base href='http://[::1'><a href=x>x</a>",
    ],
    ids=lambda body: repr(body[:20]),
)
def test_hostile_input_never_raises(body: bytes) -> None:
    parsed = parse_html(body, URL, "text/html")
    assert isinstance(parsed, ParsedPage) and isinstance(parsed.text, str)


def test_binary_body_gives_empty_page() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR<title>no</title><a href='/x'>x</a>" + bytes(range(64))
    assert parse_html(png, URL, "text/html") == ParsedPage(None, None, None, None, "", (), 0, "windows-1252")


def test_fifty_thousand_links() -> None:
    body = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(50_000)) + '<a href="/p/0#again">0</a>'
    parsed = parse_html(page(body=body), URL)
    assert parsed.n_links == len(parsed.links) == 50_000
    assert parsed.links[-1] == "http://site.test/p/49999"


def test_result_pickles_for_a_process_pool() -> None:
    parsed = parse_html(page("<title>T</title>", '<a href="/a">a</a>'), URL)
    assert pickle.loads(pickle.dumps(parsed)) == parsed
    assert pickle.loads(pickle.dumps(parse_html)) is parse_html


HTML_BITS = st.sampled_from([
    "<a href=", "<area href=", "<base href=", "<meta charset=", "<meta name=robots content=",
    "<link rel=canonical href=", "<title>", "</title>", "<script>", "</script>", "<svg>", "<!--",
    "-->", "<div>", "</p>", ">", '"', "'", " ", "/", "#", "?", "http://h.test/", "mailto:x",
    "nofollow", "utf-16", "shift_jis", "é", "\x00", "\ufffd", "&amp;", "&#0;", "\n",
])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(), st.lists(HTML_BITS, max_size=60).map(lambda bits: "".join(bits).encode())),
       st.sampled_from([None, "text/html", "text/html; charset=utf-16", "text/html; charset=x"]))
def test_fuzz_never_raises(body: bytes, content_type: str | None) -> None:
    parsed = parse_html(body, URL, content_type)
    assert parsed.n_links >= len(parsed.links)
    assert all(link.startswith(("http://", "https://")) for link in parsed.links)


def test_init_worker_is_harmless() -> None:
    parse.init_worker()
    assert parse_html(page("<title>T</title>"), URL).title == "T"


def test_public_names() -> None:
    assert parse.__all__ == ["parse_html", "is_html", "init_worker", "robots_directives", "collapse_whitespace"]


def test_parse_processes_do_not_import_the_http_client() -> None:
    # A parse process (and the forkserver it comes from) imports crawler.parse_stage: with
    # aiohttp in tow each of the two cost ~18 MB more resident memory.
    code = "import sys, crawler.parse_stage; print(sorted(m for m in ('aiohttp', 'aiosqlite') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_text_left_uncollapsed_is_finished_by_collapse_whitespace() -> None:
    # The crawl stores text as lexbor gives it (collapse=False) and its readers collapse it.
    body = b"<html><body><p>one\n   two\t\tthree  four</p> <div>  five\r\n</div><script>x</script></body></html>"
    raw = parse_html(body, "http://example.com/", collapse=False).text
    done = parse_html(body, "http://example.com/").text
    assert done == "one two three four five"
    assert raw != done and parse.collapse_whitespace(raw) == done
