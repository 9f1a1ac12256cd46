"""URL resolution and canonicalization: pure functions, no I/O.

Parsing is WHATWG (browser) parsing through ada-url, so a link resolves exactly as a browser
resolves it. Canonicalization follows w3lib's ``canonicalize_url`` (Scrapy's dedupe key) on top
of that parse: ada already lowercases scheme and host, converts IDNA hosts to punycode, drops
default and empty ports, resolves dot segments, removes tabs/newlines and percent-encodes
spaces and non-ASCII as UTF-8. What is left for us is the w3lib part: uppercase percent-escape
hex, decode escapes of harmless characters in the path, sort (and optionally filter) the query.
"""

from __future__ import annotations

import re
from urllib.parse import quote_plus, unquote_to_bytes

from ada_url import normalize_url
from ada_url.ada_adapter import ffi as _ffi
from ada_url.ada_adapter import lib as _ada

__all__ = ["resolve", "canonicalize", "canonical_link", "origin_of", "host_of", "TRACKING_PARAMS"]

#: query keys dropped by ``strip_tracking`` (plus every ``utm_*`` key). Not ``ref``: sites use it
#: for real content.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "yclid", "_ga", "_gl", "igshid"}
)

_TRACKING_BYTES = frozenset(k.encode() for k in TRACKING_PARAMS)
_HTTP = ("http://", "https://")
# Hrefs that can never become http(s): skipped before paying for an ada parse. Only a
# shortcut: anything it misses ("JavaScript:", " mailto:") is still rejected after the parse.
_NOT_HTTP = ("mailto:", "javascript:", "data:", "tel:", "sms:", "ftp:", "file:", "about:", "blob:")
_REL_BASE = "http://relative.invalid/"
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_AUTH_END = re.compile(r"[/?#]")
_SCHEME_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# Path escapes decoded to their character: the unreserved set (RFC 3986 6.2.2.2: always the
# same URL) plus sub-delims that no common server treats as a delimiter. Not ';' (Tomcat path
# parameters), '=', '&', '+' (form-style decoding), '/', '?', '#', '%' (they change meaning).
_PATH_DECODE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$'()*,:@"
)
# An absolute http(s) link that a WHATWG parse and _normalize leave as it is, but for its
# fragment (dropped), is "scheme://host[:port]" then a plain path. The scheme and host are
# lowercase; the host is a name whose last label starts with a letter (else it is parsed as an
# IPv4 address) and that has no punycode label (IDNA validates, and may change, those), or a
# dotted-quad address as WHATWG writes it; a port has no leading zeros, is not the scheme's
# default and is at most 65535. The path needs no percent-encoding, decoding or escaping, has no
# query, and no dot segment (the caller checks "/." too).
_LABEL = r"(?!xn--)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_ORIGIN = re.compile(
    rf"(https?)://(?:(?:{_OCTET}\.){{3}}{_OCTET}|(?:{_LABEL}\.)*(?!xn--)[a-z](?:[a-z0-9-]*[a-z0-9])?)"
    r"(?::([1-9][0-9]{0,4}))?")
_DEFAULT_PORT = {"http": "80", "https": "443"}
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
# A query a WHATWG parse leaves as it is (no escapes, no quote: it escapes ' in http(s) queries).
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9\-._~!$&()*+,;=:@/?]*")
# Origins seen in links, checked once each: a crawl meets few of them, and mostly the same.
_ORIGINS_SEEN: dict[str, bool] = {}
# The last base :func:`_plain_base` split, and its answer.
_LAST_BASE: tuple[str, tuple[str, str] | None] = ("", None)


def _plain_origin(origin: str) -> bool:
    ok = _ORIGINS_SEEN.get(origin)
    if ok is None:
        m = _PLAIN_ORIGIN.fullmatch(origin)
        ok = m is not None and (m[2] is None or (m[2] != _DEFAULT_PORT[m[1]] and int(m[2]) <= 65535))
        # Bounded, in count and in size (a DNS name has at most 253 characters): a hostile page
        # of links to many, or to very long, host names cannot grow it.
        if len(origin) <= 300:
            if len(_ORIGINS_SEEN) >= 4096:
                _ORIGINS_SEEN.clear()
            _ORIGINS_SEEN[origin] = ok
    return ok


# A query part made only of these is its own unquote_plus/quote_plus round trip.
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


def _join(base: str, href: str) -> str:
    """ada's ``join_url`` without its wrapper: the parser's hot path (every link of every page).

    ``join_url`` registers a garbage-collector finalizer for each parse and copies the result
    twice; calling ada's C functions directly costs 1.06 instead of 1.53 us a link (measured).
    Raises ValueError (also for strings that cannot be encoded) when there is no valid URL.
    """
    base_bytes, href_bytes = base.encode(), href.encode()
    url = _ada.ada_parse_with_base(href_bytes, len(href_bytes), base_bytes, len(base_bytes))
    try:
        if not _ada.ada_is_valid(url):
            raise ValueError("invalid URL")
        href_str = _ada.ada_get_href(url)
        return _ffi.unpack(href_str.data, href_str.length).decode()
    finally:
        _ada.ada_free(url)


def resolve(base: str, href: str) -> str | None:
    """Resolve ``href`` against ``base`` exactly as a browser does (WHATWG URL).

    Returns the serialized absolute URL (fragment kept), or None when the result is
    not a crawlable http(s) URL (other schemes, unparsable input). Never raises.
    """
    try:
        out = _join(base, href)
    except (AttributeError, ValueError):  # None, lone surrogates
        return None
    return out if out.startswith(_HTTP) else None


def canonicalize(
    url: str,
    *,
    keep_fragments: bool = False,
    strip_tracking: bool = False,
    keep_blank_values: bool = True,
    query_separator: str = "&",
    encoding: str = "utf-8",
) -> str:
    """The canonical form of a URL, used as the dedupe key (w3lib ``canonicalize_url``).

    ``encoding`` is the page encoding used for non-ASCII characters in the query (the path
    is always UTF-8, as browsers do); when it cannot encode them, UTF-8 is used. A relative
    reference is canonicalized as if resolved against a root (``'?b=1'`` -> ``'/?b=1'``).
    Input that cannot be parsed at all comes back stripped but otherwise unchanged.
    """
    s = url.strip()
    if encoding.lower().replace("-", "").replace("_", "") not in ("utf8", "utf"):
        s = _encode_query(s, encoding)
    relative = False
    try:
        href = normalize_url(s)
    except ValueError:
        try:
            href, relative = _join(_REL_BASE, s), True
        except ValueError:
            return s
    if not href.startswith(_HTTP):
        href = _lower_host(href)  # WHATWG keeps the case of non-special hosts (sftp:, ...)
    out = _normalize(href, keep_fragments, strip_tracking, keep_blank_values, query_separator)
    if relative:  # give back a relative reference: drop what the dummy base added
        if not out.startswith(_REL_BASE):
            return out[len("http:") :]  # scheme-relative "//host/path"
        out = out[len(_REL_BASE) - 1 :]
        if not s.startswith(("/", "\\", "?", "#")):
            out = out[1:]
            if _SCHEME_LIKE.match(out):  # a decoded %3A must not turn "a%3Ab" into scheme "a:"
                out = "./" + out
    return out


def canonical_link(base: str, href: str, strip_tracking: bool = True) -> str | None:
    """Hot path for the parser: resolve + canonicalize (no fragment), None if not crawlable.

    Equal to ``canonicalize(resolve(base, href), strip_tracking=strip_tracking)``.
    """
    # Most links on most pages are absolute URLs already in canonical form, or relative ones
    # that resolve to such a URL by plain string work: those need no WHATWG parse (~1.4 us,
    # measured), and those with a plain query only our normalization of the query.
    try:
        if href.startswith(_HTTP):
            plain = _plain_absolute(href)
            link = None if plain is None else plain[0] + plain[1]
        elif (parts := _plain_base(base)) is not None:
            link = _plain_relative(*parts, href)
        else:
            link = None
    except AttributeError:  # not a string
        return None
    if link is None:
        return _canonical_link(base, href, strip_tracking)
    return link if "?" not in link else _normalize(link, False, strip_tracking, True, "&")


def _plain_tail(tail: str) -> bool:
    """Whether a URL's path (and query) is as a WHATWG parse writes it: a plain path without
    dot segments, and a query of characters that the parse never escapes or changes."""
    q = tail.find("?")
    path = tail if q < 0 else tail[:q]
    if _PLAIN_PATH.fullmatch(path) is None or "/." in path:
        return False
    return q < 0 or _PLAIN_QUERY.fullmatch(tail, q + 1) is not None


def _plain_absolute(url: str) -> tuple[str, str] | None:
    """(origin, path and query) of an absolute http(s) URL that a WHATWG parse leaves as it is
    but for its fragment (dropped), or None: see ``_PLAIN_ORIGIN`` and :func:`_plain_tail`."""
    end = url.find("/", 8 if url[4] == "s" else 7)
    if end < 0:
        return None
    cut = url.find("#", end)
    tail = url[end:] if cut < 0 else url[end:cut]
    if _plain_tail(tail) and _plain_origin(url[:end]):
        return url[:end], tail
    return None


def _plain_base(base: str) -> tuple[str, str] | None:
    """(origin, directory) of a base that is a plain URL (:func:`_plain_absolute`), or None.
    The directory ends with its "/"."""
    global _LAST_BASE
    last = _LAST_BASE  # one tuple, read once: a page's links all share its base
    if last[0] == base:
        return last[1]
    parts = _plain_absolute(base) if base.startswith(_HTTP) else None
    if parts is not None:
        path = parts[1].partition("?")[0]
        parts = parts[0], path[: path.rfind("/") + 1]
    _LAST_BASE = base, parts
    return parts


def _plain_relative(origin: str, directory: str, href: str) -> str | None:
    """A relative ``href`` resolved against a plain base, when the result is a plain URL (its
    query still to be normalized); None for anything else (then ada and _normalize decide).

    Covers the common forms: "/p/x.html", "x.html", "./x.html", "../p/x.html", with or without
    a plain query or a fragment, without a WHATWG parse: 1.1 instead of 1.8 us a link
    (measured), and no GIL hand-off (ada's calls let go of the GIL, and getting it back waits
    on the other threads).
    """
    cut = href.find("#")
    path = href if cut < 0 else href[:cut]
    if path[:1] != "/":
        if not path or path[0] == "?" or ":" in path:  # the base's own path; or maybe a scheme
            return None
        while path[:1] == ".":
            if path[:2] == "./":
                path = path[2:]
            elif path[:3] == "../":
                path = path[3:]
                if directory != "/":  # ".." above the root stays at the root
                    directory = directory[: directory.rfind("/", 0, -1) + 1]
            else:
                return None  # ".", "..", ".x": left to ada
        path = directory + path
    elif path[:2] == "//":  # another host
        return None
    return origin + path if _plain_tail(path) else None


def _canonical_link(base: str, href: str, strip_tracking: bool) -> str | None:
    try:
        if href.startswith(_NOT_HTTP):
            return None
        out = _join(base, href)
    except (AttributeError, ValueError):
        return None
    if not out.startswith(_HTTP):
        return None
    return _normalize(out, False, strip_tracking, True, "&")


def origin_of(url: str) -> str:
    """Politeness lane key of a canonical URL: ``host:port`` (port always explicit).

    IPv6 hosts keep their brackets (``[::1]:80``); userinfo is dropped.
    """
    host, port = _host_port(url)
    return f"{host}:{port or ('443' if url[:6].lower() == 'https:' else '80')}"


def host_of(url: str) -> str:
    """Lowercase host name (no port, no brackets for IPv6) of a canonical URL."""
    host = _host_port(url)[0]
    return host[1:-1] if host.startswith("[") else host


def _host_port(url: str) -> tuple[str, str]:
    """Split the authority of ``scheme://[userinfo@]host[:port]/...`` by slicing (no parse)."""
    start = url.find("//") + 2
    end = url.find("/", start)  # canonical http(s) URLs always have a path
    auth = url[start:] if end < 0 else url[start:end]
    if "?" in auth or "#" in auth:  # not canonical: cut at the first delimiter
        auth = _AUTH_END.split(auth, maxsplit=1)[0]
    auth = auth.rpartition("@")[2].lower()
    if auth.startswith("["):
        close = auth.find("]") + 1
        return auth[:close], auth[close + 1 :]
    host, _, port = auth.partition(":")
    return host, port


def _lower_host(href: str) -> str:
    start = href.find("//") + 2
    if start == 1:
        return href  # no authority (mailto:, data:, ...)
    m = _AUTH_END.search(href, start)
    end = m.start() if m else len(href)
    user, at, hostport = href[start:end].rpartition("@")
    return href[:start] + user + at + hostport.lower() + href[end:]


def _normalize(
    href: str, keep_fragments: bool, strip_tracking: bool, keep_blank: bool, sep: str
) -> str:
    """w3lib-style normalization of an ada-serialized absolute URL."""
    head, hash_, fragment = href.partition("#")
    if "?" not in head and "%" not in head and "|" not in head:
        return head + hash_ + fragment if keep_fragments else head  # the common, fast case
    head, _, query = head.partition("?")
    auth_end = head.find("/", head.find("//") + 2) if "//" in head else -1
    if auth_end < 0:  # opaque (mailto:) or authority without a path (foo://h?q)
        auth_end = len(head)
    path = head[auth_end:]
    if "%" in path:
        path = _PCT.sub(_fix_escape, path)
    head = head[:auth_end] + path.replace("|", "%7C")  # w3lib quotes '|'; WHATWG leaves it
    if query:
        query = _sort_query(query, strip_tracking, keep_blank, sep)
    out = f"{head}?{query}" if query else head
    return out + hash_ + fragment if keep_fragments else out


def _fix_escape(m: re.Match[str]) -> str:
    char = chr(int(m.group(1), 16))
    return char if char in _PATH_DECODE else m.group(0).upper()


def _sort_query(query: str, strip_tracking: bool, keep_blank: bool, sep: str) -> str:
    """Decode each pair to bytes, drop blanks/tracking, sort, re-encode (w3lib semantics)."""
    items: list[tuple[bytes, bytes, str, str]] = []
    for pair in query.split(sep):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if not (value or keep_blank):
            continue
        kb, ke = _requote(key)
        if strip_tracking and (kb.startswith(b"utm_") or kb in _TRACKING_BYTES):
            continue
        vb, ve = _requote(value)
        items.append((kb, vb, ke, ve))
    items.sort()
    return sep.join(f"{ke}={ve}" for _, _, ke, ve in items)


def _requote(part: str) -> tuple[bytes, str]:
    """(raw bytes, canonical form) of a query key or value: form-decode then quote_plus."""
    if _PLAIN.fullmatch(part):
        return part.encode(), part
    raw = unquote_to_bytes(part.replace("+", " "))
    return raw, quote_plus(raw, safe="")


def _encode_query(s: str, encoding: str) -> str:
    """Percent-encode non-ASCII characters of the query with ``encoding`` (else leave them
    for ada to encode as UTF-8), as a browser does for a form on a page in that encoding."""
    head, hash_, fragment = s.partition("#")
    path, q, query = head.partition("?")
    if not q or query.isascii():
        return s
    try:
        query = "".join(c if c.isascii() else quote_plus(c.encode(encoding)) for c in query)
    except (UnicodeError, LookupError):
        return s
    return f"{path}?{query}{hash_}{fragment}"
