"""crawler.sitemaps: XML/text/feed sitemaps, gzip and its bombs, hostile XML, caps."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crawler.sitemaps
from crawler.sitemaps import Sitemap, default_sitemap_url, parse_sitemap

SRC = "https://ex.com/sitemap.xml"
NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
MIB = 1 << 20


def urlset(*locs: str, ns: str = NS) -> bytes:
    items = "".join(f"<url><loc>{loc}</loc><lastmod>2024-01-01</lastmod></url>\n" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {ns}>\n{items}</urlset>\n'.encode()


def gzip_zeros(prefix: bytes, mib: int) -> bytes:
    """A valid gzip file of ``prefix`` then ``mib`` MiB of zeros, cheap to build at any size:
    a full flush makes every compressed MiB identical, so one block is repeated."""
    zeros = bytes(MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH) == block
    crc = zlib.crc32(prefix)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    size = (len(prefix) + mib * MIB) & 0xFFFFFFFF
    return head + block * mib + c.flush()[:-8] + struct.pack("<II", crc, size)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<urlset><url><loc>https://ex.com/&lol9;</loc></url><url><loc>https://ex.com/ok</loc></url>
<url><loc>&lol9;</loc></url></urlset>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<urlset><url><loc>https://ex.com/?q=&xxe;</loc></url>
<url><loc>https://ex.com/b</loc></url></urlset>"""

PAGES = ("https://ex.com/a", "https://ex.com/b")
INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://ex.com/s1.xml.gz</loc><lastmod>2024-01-01</lastmod></sitemap>
  <sitemap><loc>https://ex.com/s2.xml</loc></sitemap>
</sitemapindex>"""

CASES: list[tuple[str, bytes, Sitemap]] = [
    ("urlset", urlset(*PAGES), Sitemap(urls=PAGES)),
    ("urlset-no-namespace", urlset(*PAGES, ns=""), Sitemap(urls=PAGES)),
    ("index", INDEX, Sitemap(sitemaps=("https://ex.com/s1.xml.gz", "https://ex.com/s2.xml"))),
    (
        "prefixed",
        b'<sm:urlset xmlns:sm="http://www.sitemaps.org/schemas/sitemap/0.9"><sm:url>'
        b"<sm:loc>https://ex.com/a</sm:loc></sm:url><sm:url><loc>https://ex.com/x</loc>"
        b"</sm:url></sm:urlset>",
        Sitemap(urls=("https://ex.com/a",)),
    ),
    (
        "prefixed-index",
        b'<s:sitemapindex xmlns:s="x"><s:sitemap><s:loc>https://ex.com/s.xml</s:loc>'
        b"</s:sitemap></s:sitemapindex>",
        Sitemap(sitemaps=("https://ex.com/s.xml",)),
    ),
    (
        "image-and-video-locs-are-not-pages",
        b'<urlset xmlns:image="i" xmlns:video="v"><url><loc>https://ex.com/a</loc>'
        b"<image:image><image:loc>https://ex.com/i.jpg</image:loc></image:image>"
        b"<video:video><video:content_loc>https://ex.com/v.mp4</video:content_loc>"
        b"</video:video></url></urlset>",
        Sitemap(urls=("https://ex.com/a",)),
    ),
    (
        "cdata",
        urlset("<![CDATA[https://ex.com/a?x=1&y=2]]>", " <![CDATA[ https://ex.com/b ]]> "),
        Sitemap(urls=("https://ex.com/a?x=1&y=2", "https://ex.com/b")),
    ),
    ("cdata-keeps-entities-literal", urlset("<![CDATA[https://ex.com/&amp;]]>"),
     Sitemap(urls=("https://ex.com/&amp;",))),
    (
        "entities",
        urlset(
            "https://ex.com/q?a=1&amp;b=2",
            "https://ex.com/&#x41;&#66;?c=&apos;&quot;",
            "https://ex.com/&lt;x&gt;",
            "https://ex.com/&#1114112;",
        ),
        Sitemap(
            urls=(
                "https://ex.com/q?a=1&b=2",
                "https://ex.com/AB?c=%27%22",
                "https://ex.com/%3Cx%3E",
                "https://ex.com/%EF%BF%BD",
            )
        ),
    ),
    ("unescaped-ampersand-tolerated", urlset("https://ex.com/q?a=1&b=2"),
     Sitemap(urls=("https://ex.com/q?a=1&b=2",))),
    ("whitespace", urlset("\n\t  https://ex.com/a  \r\n"), Sitemap(urls=("https://ex.com/a",))),
    (
        "dropped-locs",
        urlset("/relative", "page.html", "//ex.com/schemeless", "ftp://ex.com/f",
               "javascript:alert(1)", "mailto:a@ex.com", "https://", "http://a b:99999/", ""),
        Sitemap(),
    ),
    (
        "canonical-and-deduplicated",
        urlset("HTTPS://EX.com:443/a?utm_source=x", "https://ex.com/a#frag",
               "https://ex.com/b?z=1&a=2", "https://ex.com/a"),
        Sitemap(urls=("https://ex.com/a", "https://ex.com/b?a=2&z=1")),
    ),
    ("empty-urlset", urlset(), Sitemap()),
    ("unclosed-loc", b"<urlset><url><loc>https://ex.com/a</url><url><loc>https://ex.com/b</loc>",
     Sitemap(urls=("https://ex.com/b",))),
    ("billion-laughs", BILLION_LAUGHS, Sitemap(urls=("https://ex.com/ok",))),
    ("external-entity", XXE, Sitemap(urls=("https://ex.com/b",))),
    (
        "plain-text",
        b"\xef\xbb\xbfhttps://ex.com/a\r\n\n  http://ex.com/b?utm_medium=x \n# comment\n"
        b"ftp://ex.com/c\nnot a url\nHTTPS://EX.COM/d",
        Sitemap(urls=("https://ex.com/a", "http://ex.com/b", "https://ex.com/d")),
    ),
    (
        "rss",
        b'<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">'
        b'<channel><link>https://ex.com/</link><atom:link rel="self" href="https://ex.com/feed"/>'
        b"<item><link>https://ex.com/p1</link></item><item><link> <![CDATA[https://ex.com/p2]]>"
        b"</link></item></channel></rss>",
        Sitemap(urls=("https://ex.com/", "https://ex.com/p1", "https://ex.com/p2")),
    ),
    (
        "atom",
        b'<feed xmlns="http://www.w3.org/2005/Atom"><link rel="self" href="https://ex.com/f"/>'
        b"<link href='https://ex.com/'/><entry><link rel=\"alternate\" "
        b'href="https://ex.com/e?a=1&amp;b=2"/><link rel="enclosure" href="https://ex.com/m.mp3"/>'
        b"</entry></feed>",
        Sitemap(urls=("https://ex.com/", "https://ex.com/e?a=1&b=2")),
    ),
    ("empty", b"", Sitemap(error="empty")),
    ("blank", b" \r\n\t ", Sitemap(error="empty")),
    ("html", b"<!doctype html><html><body><a href='https://ex.com/a'>a</a></body></html>",
     Sitemap(error="not_a_sitemap")),
    ("json", b'{"urls": ["https://ex.com/a"]}', Sitemap(error="not_a_sitemap")),
    ("binary", bytes(range(256)) * 4, Sitemap(error="not_a_sitemap")),
    ("zip", b"PK\x03\x04" + bytes(100), Sitemap(error="not_a_sitemap")),
    ("gzip-magic-only", b"\x1f\x8b", Sitemap(error="bad_gzip")),
    ("corrupt-gzip", b"\x1f\x8b\x08\x00" + bytes(range(200)), Sitemap(error="bad_gzip")),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse(body: bytes, expected: Sitemap) -> None:
    assert parse_sitemap(body, SRC) == expected


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gzipped_is_the_same(body: bytes, expected: Sitemap) -> None:
    if body.startswith(b"\x1f\x8b"):
        pytest.skip("already gzip")
    assert parse_sitemap(gzip.compress(body), SRC) == expected


LONG = urlset(*PAGES, *(f"https://ex.com/{i}" for i in range(500)))
TEXT = b"https://ex.com/a\nhttps://ex.com/b\nhttps://ex.com/long-path"
GZIP_CASES = [
    ("concatenated-members", gzip.compress(TEXT[:17]) + gzip.compress(TEXT[17:34]),
     Sitemap(urls=PAGES)),
    ("trailing-padding", gzip.compress(urlset(*PAGES)) + bytes(512), Sitemap(urls=PAGES)),
    ("truncated-xml", gzip.compress(LONG)[:600], None),
    ("truncated-text", gzip.compress(TEXT)[:-12], Sitemap(urls=PAGES, error="bad_gzip")),
]
GZIP_IDS = [c[0] for c in GZIP_CASES]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in GZIP_CASES], ids=GZIP_IDS)
def test_gzip(body: bytes, expected: Sitemap | None) -> None:
    got = parse_sitemap(body, SRC)
    if expected is None:  # truncated mid-document: what decoded before the cut is kept
        assert got.error == "bad_gzip"
        assert got.urls[:2] == PAGES and all(u.startswith("https://ex.com/") for u in got.urls)
    else:
        assert got == expected


def test_plain_body_over_max_bytes_keeps_complete_entries() -> None:
    body = urlset(*PAGES, "https://ex.com/c")
    cut = body.index(b"https://ex.com/c") + 5
    assert parse_sitemap(body, SRC, max_bytes=cut) == Sitemap(urls=PAGES, error="too_large")
    text = b"https://ex.com/a\nhttps://ex.com/b\nhttps://ex.com/abcdef\n"
    got = parse_sitemap(text, SRC, max_bytes=len(text) - 3)
    assert got == Sitemap(urls=PAGES, error="too_large")


@pytest.mark.parametrize(
    ("mib", "max_bytes"),
    [(10, MIB), (1024, 8 * MIB), (1024, 50 * MIB)],
    ids=["10MiB-zeros", "1GiB-zeros", "1GiB-zeros-default-cap"],
)
def test_gzip_bomb_stops_at_max_bytes(mib: int, max_bytes: int) -> None:
    bomb = gzip_zeros(urlset(*PAGES).removesuffix(b"</urlset>\n"), mib)
    assert len(bomb) < mib * 1100  # ~1000:1
    tracemalloc.start()
    start = time.perf_counter()
    try:
        got = parse_sitemap(bomb, SRC, max_bytes=max_bytes)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == Sitemap(urls=PAGES, error="too_large")
    assert peak < max_bytes * 1.25 + 2 * MIB + len(bomb)
    assert elapsed < 5  # a hang guard, not a benchmark: inflating 50 MiB takes ~0.1 s


@pytest.mark.parametrize("src", ["", "not a url", "ftp://ex.com/s.xml", "https://other.example/"])
def test_source_url_does_not_change_absolute_locs(src: str) -> None:
    assert parse_sitemap(urlset(*PAGES, "/rel"), src) == Sitemap(urls=PAGES)


def test_gzip_bomb_helper_is_a_valid_gzip() -> None:
    assert gzip.decompress(gzip_zeros(b"<urlset>", 3)) == b"<urlset>" + bytes(3 * MIB)


def test_too_many_urls_keeps_the_first_max_urls() -> None:
    locs = [f"https://ex.com/p{i}" for i in range(50_001)]
    got = parse_sitemap(urlset(*locs), SRC)
    assert got.error == "too_many_urls"
    assert got.urls == tuple(locs[:50_000])
    assert parse_sitemap(urlset(*locs[:50_000]), SRC) == Sitemap(urls=tuple(locs[:50_000]))


@pytest.mark.parametrize(
    ("locs", "max_urls", "expected"),
    [
        (["https://ex.com/a", "https://ex.com/a", "https://ex.com/b"], 2, Sitemap(urls=PAGES)),
        (["https://ex.com/a", "https://ex.com/b", "https://ex.com/b"], 1,
         Sitemap(urls=PAGES[:1], error="too_many_urls")),
        (["https://ex.com/a", "/dropped", "https://ex.com/b"], 2, Sitemap(urls=PAGES)),
        (["https://ex.com/a"], 0, Sitemap(error="too_many_urls")),
    ],
)
def test_max_urls_counts_distinct_valid_urls(
    locs: list[str], max_urls: int, expected: Sitemap
) -> None:
    assert parse_sitemap(urlset(*locs), SRC, max_urls=max_urls) == expected


HOSTILE_UNITS = [
    b"<loc><![CDATA[https://ex.com/", b"<loc>https://ex.com/", b"<link x='", b"<link>",
    b"<loc><![CDATA[]]]", b"\n http://", b"<sm:", b"&#", b"&a",
]
HOSTILE_RUNS = [b"<link ", b"<link a=", b"<loc>&", b"<", b"<![CDATA["]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "body",
    [root + unit * (2_000_000 // len(unit)) for unit in HOSTILE_UNITS
     for root in (b"<urlset>", b"<rss>", b"https://ex.com/\n")]
    + [b"<rss>" + run + b"a" * 2_000_000 for run in HOSTILE_RUNS],
    ids=lambda b: repr(b[:24]),
)
def test_hostile_input_is_scanned_in_linear_time(body: bytes) -> None:
    # Quadratic scanning of 2 MB would take hours and hit the timeout; linear takes ms.
    assert parse_sitemap(body, SRC).error in (None, "too_many_urls")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://ex.com/a/b?c=1", "https://ex.com/sitemap.xml"),
        ("http://ex.com:8080/", "http://ex.com:8080/sitemap.xml"),
        ("https://user:pw@ex.com/x", "https://ex.com/sitemap.xml"),
        ("http://[::1]:8000/x", "http://[::1]:8000/sitemap.xml"),
        ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/sitemap.xml"),
    ],
)
def test_default_sitemap_url(url: str, expected: str) -> None:
    assert default_sitemap_url(url) == expected


def test_public_names() -> None:
    assert sorted(crawler.sitemaps.__all__) == ["Sitemap", "default_sitemap_url", "parse_sitemap"]


TOKENS = st.sampled_from(
    ["<urlset>", "<sitemapindex>", "<sm:urlset>", "<rss>", "<feed>", "<url>", "<loc>", "</loc>",
     "<sm:loc>", "</sm:loc>", "<link href='", "'/>", "<link>", "</link>", "<![CDATA[", "]]>",
     "&amp;", "&#x41;", "&#99999999;", "&lol;", "https://ex.com/", "http://", "/a", "?q=1", " ",
     "\n", "\x00", "\xff", "é", "[::1]"]
)


@settings(max_examples=300, deadline=None)
@given(st.binary(), st.booleans())
def test_never_raises_on_bytes(body: bytes, gzipped: bool) -> None:
    _check(gzip.compress(body)[: len(body) + 10] if gzipped else body)


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=40).map("".join), st.integers(0, 300), st.integers(0, 5))
def test_never_raises_on_sitemap_like_text(text: str, max_bytes: int, max_urls: int) -> None:
    body = text.encode()
    for b in (body, gzip.compress(body), b"\x1f\x8b" + body):
        got = _check(b, max_bytes=max_bytes, max_urls=max_urls)
        assert len(got.urls) + len(got.sitemaps) <= max_urls


def _check(body: bytes, **caps: int) -> Sitemap:
    got = parse_sitemap(body, SRC, **caps)
    assert got.error in (None, "empty", "not_a_sitemap", "bad_gzip", "too_large", "too_many_urls")
    assert not (got.urls and got.sitemaps)
    for u in got.urls + got.sitemaps:
        assert u.startswith(("http://", "https://")) and "#" not in u
    return got
