"""Sitemap parsing (sitemaps.org: XML urlset/index, plain text, RSS/Atom): pure, no I/O.

The crawler fetches; this module turns a body into page URLs or child-sitemap URLs. No XML
parser runs: ``<loc>`` contents are cut out with one compiled regex and only the five XML
entities and numeric references are decoded, so DTD tricks (billion laughs, external
entities) have nothing to expand. Gzip is recognised by its magic bytes and inflated in steps
under a cap on the *decompressed* size, so a gzip bomb costs about ``max_bytes`` and no more.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ada_url import URL

from crawler.urls import canonical_link, resolve

__all__ = ["Sitemap", "parse_sitemap", "default_sitemap_url"]

_GZIP = b"\x1f\x8b"
_STEP = 1 << 20  # inflate at most this much per call: bounds the overshoot past max_bytes
_P = rb"(?:([\w.-]+):)?"  # optional namespace prefix, captured
# Element text: runs without '<' and CDATA sections without '<', all possessive, so a hostile
# body of unclosed tags is still scanned in linear time.
_TEXT = rb"((?:[^<]++|<!\[CDATA\[(?:[^<\]]++|\](?!\]>))*+\]\]>)*+)"
_ROOT = re.compile(rb"<" + _P + rb"(urlset|sitemapindex|rss|feed|RDF)[\s/>]")
_LOC = re.compile(rb"<" + _P + rb"loc\s*>" + _TEXT + rb"</(?:[\w.-]+:)?loc\s*>")
_LINK = re.compile(
    rb"<(?:[\w.-]+:)?link\b([^<>]*?)(?:/>|>" + _TEXT + rb"</(?:[\w.-]+:)?link\s*>|>)"
)
# Names start only after a non-name byte and never backtrack: a long run stays linear.
_ATTR = re.compile(rb"""(?<![\w:.-])([\w:.-]++)\s*+=\s*+(?:"([^"]*)"|'([^']*)')""")
_LINE = re.compile(rb"^[ \t]*(?:\xef\xbb\xbf)?[ \t]*(https?://[^\r\n]*)", re.M | re.I)
_IS_TEXT = re.compile(rb"(?:\xef\xbb\xbf)?\s*https?://", re.I)
_BLANK = re.compile(rb"(?:\xef\xbb\xbf)?\s*")
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)
_ENTITY = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|(amp|lt|gt|quot|apos));")
# A named entity other than the five is defined in a DTD we refuse to read: its value is unknown.
_UNKNOWN = re.compile(r"&(?!(?:amp|lt|gt|quot|apos);)[A-Za-z_][\w.-]*;")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_ABSOLUTE = re.compile(r"https?://", re.I)


@dataclass(frozen=True, slots=True)
class Sitemap:
    """What one sitemap document lists.

    ``urls``: canonical page URLs (urlset, plain text, feed); ``sitemaps``: canonical child
    sitemap URLs (sitemapindex). ``error``: None, or why the result is partial or empty:
    ``empty``, ``not_a_sitemap``, ``bad_gzip``, ``too_large``, ``too_many_urls``.
    """

    urls: tuple[str, ...] = ()
    sitemaps: tuple[str, ...] = ()
    error: str | None = None


def parse_sitemap(
    body: bytes, url: str, *, max_bytes: int = 50 * 1024 * 1024, max_urls: int = 50_000
) -> Sitemap:
    """Parse a sitemap ``body`` fetched from ``url``; never raises.

    Gzip (by magic bytes) is inflated up to ``max_bytes``. Locs must be absolute http(s) URLs
    (as the protocol requires): relative and other-scheme ones are dropped. URLs are
    canonicalized (tracking parameters stripped), deduplicated in order and capped at
    ``max_urls``. A truncated body (``too_large``, ``bad_gzip``) keeps what was complete.
    """
    max_bytes = max(max_bytes, 0)
    data: bytes | bytearray
    locs: Iterator[str | None]
    if body[:2] == _GZIP:
        data, end, error = _inflate(body, max_bytes)
    else:
        data, end = body, min(len(body), max_bytes)
        error = "too_large" if len(body) > max_bytes else None
    if _BLANK.fullmatch(data, 0, end):
        return Sitemap(error=error or "empty")
    index = False
    if root := _ROOT.search(data, 0, end):
        index = root[2] == b"sitemapindex"
        if root[2] in (b"urlset", b"sitemapindex"):
            # Only locs in the root's namespace prefix: not <image:loc> or <video:loc> media.
            locs = (_text(m[2]) for m in _LOC.finditer(data, root.end(), end) if m[1] == root[1])
        else:
            locs = _feed_links(data, root.end(), end)
    elif _IS_TEXT.match(data, 0, end):
        cut = data.rfind(b"\n", 0, end) + 1 if error else end  # a cut-off last line is partial
        locs = (m[1].decode("utf-8", "replace").strip() for m in _LINE.finditer(data, 0, cut))
    else:
        return Sitemap(error=error or "not_a_sitemap")
    base = url if resolve(url, url) else None
    found: dict[str, None] = {}
    for loc in locs:
        if not (loc and _ABSOLUTE.match(loc)):
            continue
        u = canonical_link(base or loc, loc, strip_tracking=True)
        if u is None or u in found:
            continue
        if len(found) >= max_urls:
            error = "too_many_urls"  # checked before the truncation error: we stopped earlier
            break
        found[u] = None
    return Sitemap(() if index else tuple(found), tuple(found) if index else (), error)


def default_sitemap_url(url: str) -> str:
    """``scheme://host[:port]/sitemap.xml`` of a canonical http(s) URL (ValueError if invalid)."""
    return URL(url).origin + "/sitemap.xml"


def _inflate(body: bytes, max_bytes: int) -> tuple[bytearray, int, str | None]:
    """Gunzip ``body`` into at most ``max_bytes`` (+1 to detect overflow): (data, end, error)."""
    out = bytearray()
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = body
    try:
        while pending:
            # max_length >= 1 always: 0 would mean "no limit".
            chunk = d.decompress(pending, min(_STEP, max_bytes + 1 - len(out)))
            out += chunk
            if len(out) > max_bytes:
                return out, max_bytes, "too_large"
            if d.eof:  # concatenated members are one file (RFC 1952); gzip(1) ignores the rest
                pending = d.unused_data
                if not pending.startswith(_GZIP):
                    break
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif not chunk and len(d.unconsumed_tail) == len(pending):
                break  # no progress: cannot happen with zlib, but must never spin
            else:
                pending = d.unconsumed_tail
    except zlib.error:
        return out, len(out), "bad_gzip"
    return out, len(out), None if d.eof else "bad_gzip"


def _text(raw: bytes) -> str | None:
    """Character data of a loc: CDATA as is, the rest unescaped; None if it needs a DTD."""
    text = raw.decode("utf-8", "replace")
    if "&" not in text and "<" not in text:
        return text.strip()
    parts = _CDATA.split(text) if "<" in text else [text]
    for i in range(0, len(parts), 2):
        if "&" in parts[i]:
            if _UNKNOWN.search(parts[i]):
                return None
            parts[i] = _ENTITY.sub(_entity, parts[i])
    return "".join(parts).strip()


def _entity(m: re.Match[str]) -> str:
    if m[3]:
        return _NAMED[m[3]]
    code = int(m[1]) if m[1] else int(m[2], 16)
    return chr(code) if code <= 0x10FFFF else "\ufffd"


def _feed_links(data: bytes | bytearray, start: int, end: int) -> Iterator[str | None]:
    """RSS ``<link>url</link>`` and Atom ``<link href=url>`` (rel absent or alternate)."""
    for m in _LINK.finditer(data, start, end):
        attrs = {a[1].lower(): a[2] if a[2] is not None else a[3] for a in _ATTR.finditer(m[1])}
        if b"href" in attrs:
            if attrs.get(b"rel", b"alternate").strip() == b"alternate":
                yield _text(attrs[b"href"])
        elif m[2] is not None:
            yield _text(m[2])
