"""The parser stage: one HTML body in, a ``ParsedPage`` out (selectolax, lexbor backend).

``parse_html`` is a pure top-level function of picklable values, so that the pipeline
can run it in a process pool; it never raises, whatever the bytes. ``robots_directives``
reads the ``X-Robots-Tag`` response header, the HTTP twin of ``<meta name=robots>``.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Iterable
from typing import NamedTuple

from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawler.charset import decode, detect, from_meta, looks_binary
from crawler.models import ParsedPage
from crawler.urls import canonical_link, resolve

__all__ = ["parse_html", "is_html", "init_worker", "robots_directives", "collapse_whitespace"]

log = logging.getLogger(__name__)

_M_TOP_PAD = -2  # glibc mallopt parameter
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_INVISIBLE = ["script", "style", "noscript", "template", "svg"]
_ELEMENTS = "title,meta,link,base,a,area"  # what _elements collects
# lexbor hands out text nodes stripped, so only runs inside a node are left. Regexes
# with a literal first character scan at C speed: 2-4x faster than ' '.join(text.split()).
_NEWLINES = re.compile("\n[\n ]*")
_SPACES = re.compile("   *")

# lexbor's tree builder is quadratic in nesting depth (20,000 unclosed <div> take
# 0.5 s, 100,000 take 12 s). A page too short to nest that deep skips the check.
_NESTING_CHECK_CHARS = 50_000
_NESTING_CHECK_TAGS = 10_000
_MAX_DEPTH = 2_000
_TAG = re.compile(r"<(/?)([a-zA-Z][^\t\n\x0c\r />]*)|<!--")
_RAW_END = {name: re.compile(rf"</{name}[\t\n\x0c\r />]", re.I) for name in ("script", "style", "textarea", "title", "xmp")}
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_SIBLINGS = frozenset("p li dt dd option optgroup tr td th tbody thead tfoot rb rt rp".split())

# A longer <meta http-equiv=refresh> delay is a page that changes, not a redirect.
_MAX_REFRESH_DELAY = 60
_WS = "\t\n\x0c\r "  # ASCII whitespace, as HTML defines it
# Robots directive names, so that "unavailable_after: <date>" is not read as a
# user-agent prefix. Any other single token before the first ':' names a user agent.
_DIRECTIVES = frozenset(
    "all none index noindex follow nofollow noarchive nocache nosnippet noimageindex notranslate "
    "indexifembedded noodp noydir unavailable_after max-snippet max-image-preview max-video-preview".split())
_DIRECTIVE_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class _Head(NamedTuple):
    title: str | None
    description: str | None
    robots: str | None
    canonical: str | None  # raw href
    base: str | None  # raw href of the first <base href>
    charset: str | None  # the first <meta> charset declaration (WHATWG name)
    refresh: tuple[int, str | None] | None  # the first valid <meta http-equiv=refresh>: (delay, raw target)


def parse_html(body: bytes, url: str, content_type: str | None = None, *,
               strip_tracking: bool = True, collapse: bool = True) -> ParsedPage:
    """Extract title, description, canonical, meta robots, refresh, visible text and links.

    ``url`` is the final URL of the response: links resolve against the first
    ``<base href>`` (itself resolved against ``url``), else ``url``. ``refresh`` is
    the target of the first valid ``<meta http-equiv=refresh>`` (as browsers pick it)
    when its delay is at most 60 s and it leads to another page; it is extracted even
    when meta robots says ``nofollow``. Never raises: a binary body, or one the parser
    chokes on, gives an empty page.

    ``collapse=False`` leaves the text as lexbor gives it: its pieces stripped and joined with
    one space, runs of whitespace inside a piece kept. :func:`collapse_whitespace` finishes it.
    The crawl stores text so and its readers finish it: the scan for runs of spaces costs
    ~30 us a page (1.5 ns a character: spaces are too common for a fast search), ~6% of the
    event loop's time in one process.
    """
    encoding = "utf-8"
    try:
        encoding, declared = detect(body, content_type)
        if looks_binary(body, encoding):
            return _empty(encoding)
        return _parse(body, url, encoding, declared, strip_tracking, collapse)
    except Exception:  # a bug on one hostile page must not stop the crawl
        log.warning("could not parse %s", url, exc_info=True)
        return _empty(encoding)


def is_html(content_type: str | None) -> bool:
    """Parse this response? A missing Content-Type is sniffed by the parser, so yes."""
    if not content_type:
        return True
    return content_type.split(";", 1)[0].strip().lower() in _HTML_TYPES


def init_worker() -> None:
    """Prepare a process that parses pages (use as the process pool's ``initializer``).

    After each parse glibc gives the top of the heap back to the OS, and the next parse
    faults it in again: that doubles lexbor's time on a typical page (60 -> 29 us
    measured). 16 MiB of top padding keeps it. A no-op where libc has no mallopt.
    """
    try:
        ctypes.CDLL(None).mallopt(_M_TOP_PAD, 16 << 20)
    except (OSError, AttributeError):
        pass


def robots_directives(values: Iterable[str], user_agent_token: str) -> frozenset[str]:
    """The lowercased directive names of ``X-Robots-Tag`` header values that apply to us.

    Each value is one header line as received: comma-separated directives, optionally
    led by a user-agent token (``googlebot: noindex, nofollow``), which scopes the rest
    of that value to that agent; unprefixed values apply to every agent. The token is
    matched against ``user_agent_token`` case-insensitively. A known directive before
    a colon (``unavailable_after: 25 Jun 2010 15:00:00 PST``) is not a prefix. ``none``
    gives ``noindex`` and ``nofollow``; parameters are dropped (``max-snippet: 20`` ->
    ``max-snippet``); what is not a name is ignored. Never raises.
    """
    ours = user_agent_token.strip().lower() if isinstance(user_agent_token, str) else ""
    names: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            continue
        applies = True
        for item in value.lower().split(","):
            name, colon, rest = item.partition(":")
            name = name.strip(_WS)
            if colon and name not in _DIRECTIVES and _DIRECTIVE_NAME.fullmatch(name):
                applies = name == ours  # a user-agent prefix: it scopes what follows
                name = rest.partition(":")[0].strip(_WS)
            if applies:
                names.update(word for word in name.split() if _DIRECTIVE_NAME.fullmatch(word))
    if "none" in names:
        names.remove("none")
        names.update(("noindex", "nofollow"))
    return frozenset(names)


def _empty(encoding: str) -> ParsedPage:
    return ParsedPage(None, None, None, None, "", (), 0, encoding)


def _parse(body: bytes, url: str, encoding: str, declared: bool, strip_tracking: bool,
           collapse: bool) -> ParsedPage:
    tree = _tree(decode(body, encoding))
    nodes = _elements(tree)
    head = _head(nodes)
    if not declared and head.charset not in (None, encoding):
        # A <meta charset> past the prescan window: browsers "change the encoding"
        # and reparse. Pure ASCII reads the same in any ASCII-compatible encoding.
        encoding = head.charset
        if not body.isascii() or encoding == "iso-2022-jp":
            tree = _tree(decode(body, encoding))
            nodes = _elements(tree)
            head = _head(nodes)
    base = url if head.base is None else resolve(url, head.base) or url
    canonical = None if head.canonical is None else canonical_link(base, head.canonical, strip_tracking)
    found = _links(nodes["a"], base, strip_tracking)
    follow = not (head.robots and {"nofollow", "none"} & set(head.robots.replace(",", " ").split()))
    refresh = None
    if head.refresh is not None and head.refresh[0] <= _MAX_REFRESH_DELAY and head.refresh[1] is not None:
        refresh = canonical_link(base, head.refresh[1], strip_tracking)
        if refresh is not None and refresh == canonical_link(url, url, strip_tracking):
            refresh = None  # a page that reloads itself is not a redirect
    return ParsedPage(title=head.title, description=head.description, canonical=canonical,
                      meta_robots=head.robots, text=_text(tree, collapse),
                      links=tuple(link for link, ok in found.items() if ok) if follow else (),
                      n_links=len(found), encoding=encoding, refresh=refresh)


def _elements(tree: LexborHTMLParser) -> dict[str, list[LexborNode]]:
    """The elements the parser reads, by tag, each list in document order: one walk of the
    tree for all of them (a walk per tag name cost ~9 us each, six of them a page).
    ``a`` and ``area`` share one list: links in document order."""
    found: dict[str, list[LexborNode]] = {"title": [], "meta": [], "link": [], "base": [], "a": []}
    found["area"] = found["a"]
    for node in tree.css(_ELEMENTS):
        if (group := found.get(node.tag)) is not None:
            group.append(node)
    return found


def _head(nodes: dict[str, list[LexborNode]]) -> _Head:
    """The document's metadata, wherever the tree builder put it (head or body)."""
    titles = nodes["title"]
    title = collapse_whitespace(titles[0].text()) if titles else ""
    description = charset = refresh = None
    robots: list[str] = []
    for node in nodes["meta"]:
        attrs = node.attributes
        name = (attrs.get("name") or "").strip().lower()
        if name == "description" and description is None:
            description = collapse_whitespace(attrs.get("content") or "") or None
        elif name == "robots" and (content := attrs.get("content")):
            robots.append(collapse_whitespace(content).lower())
        if charset is None:
            charset = from_meta(attrs)
        if (refresh is None and (equiv := attrs.get("http-equiv"))
                and equiv.strip(_WS).lower() == "refresh" and (content := attrs.get("content"))):
            refresh = _refresh(content)
    canonical = None
    for node in nodes["link"]:
        attrs = node.attributes
        if "canonical" in (attrs.get("rel") or "").lower().split() and attrs.get("href") is not None:
            canonical = attrs["href"]
            break
    base = next((href for node in nodes["base"] if (href := node.attributes.get("href")) is not None), None)
    return _Head(title=title or None, description=description,
                 robots=", ".join(robots) or None, canonical=canonical, base=base, charset=charset,
                 refresh=refresh)


def _refresh(content: str) -> tuple[int, str | None] | None:
    """``(delay, raw target)`` of a refresh ``content``, None if a browser would ignore it.

    The WHATWG "shared declarative refresh steps": ``5;url=/x``, ``0; URL='/x'``,
    ``0,/x``, ``3`` (no target: reload). The fraction of a delay is ignored.
    """
    rest = content.lstrip(_WS)
    digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
    if not digits and not rest.startswith("."):
        return None
    rest = rest[len(digits):].lstrip("0123456789.")
    if rest and rest[0] not in ";," + _WS:
        return None
    digits = digits.lstrip("0")  # int() raises past 4,300 digits: cap before converting
    delay = int(digits or "0") if len(digits) <= 4 else _MAX_REFRESH_DELAY + 1
    rest = rest.lstrip(_WS)
    if rest[:1] in (";", ","):
        rest = rest[1:].lstrip(_WS)
    if not rest:
        return delay, None
    if rest[:3].lower() == "url":
        after = rest[3:].lstrip(_WS)
        if not after.startswith("="):
            return delay, rest  # "url" was the start of a relative URL
        rest = after[1:].lstrip(_WS)
    if rest[:1] in ("'", '"'):
        rest = rest[1:].partition(rest[0])[0]
    return delay, rest


def _links(nodes: list[LexborNode], base: str, strip_tracking: bool) -> dict[str, bool]:
    """Canonical http(s) links of ``<a>`` and ``<area>`` elements (in document order) -> whether
    any of them may be followed."""
    found: dict[str, bool] = {}
    resolved: dict[str, str | None] = {}  # pages repeat hrefs: canonicalize each once
    for node in nodes:
        attrs = node.attributes
        if (href := attrs.get("href")) is None:
            continue
        if href in resolved:
            link = resolved[href]
        else:
            link = resolved[href] = canonical_link(base, href, strip_tracking)
        if link is None:
            continue
        rel = attrs.get("rel")
        if rel and "nofollow" in rel.lower().split():
            found.setdefault(link, False)
        else:
            found[link] = True  # a dict keeps the position of the first occurrence
    return found


def _text(tree: LexborHTMLParser, collapse: bool) -> str:
    body = tree.body
    if body is None:  # a <frameset> document
        return ""
    tree.strip_tags(_INVISIBLE)
    text = body.text(separator=" ", strip=True, skip_empty=True)
    return collapse_whitespace(text) if collapse else text


def collapse_whitespace(text: str) -> str:
    """Collapse runs of HTML (ASCII) whitespace to one space and strip the ends."""
    for char in "\t\r\x0c":
        if char in text:
            text = text.replace(char, "\n")
    if "\n" in text:
        text = _NEWLINES.sub(" ", text)
    return _SPACES.sub(" ", text).strip(" ")


def _tree(text: str) -> LexborHTMLParser:
    if len(text) > _NESTING_CHECK_CHARS and text.count("<") > _NESTING_CHECK_TAGS:
        text = _cap_nesting(text)
    return LexborHTMLParser(text)


def _cap_nesting(text: str) -> str:
    """Cut ``text`` where its elements nest deeper than ``_MAX_DEPTH`` (an estimate).

    Only a hostile or broken page nests that deep; cutting it bounds the parse time.
    The estimate is linear: raw text and comments are skipped with one search each.
    """
    stack: list[str] = []
    open_count: dict[str, int] = {}
    pos = 0
    while match := _TAG.search(text, pos):
        pos = match.end()
        if match[0] == "<!--":
            end = text.find("-->", pos)
            pos = end + 3 if end >= 0 else -1
        elif (name := match[2].lower()) in _RAW_END and not match[1]:
            raw_end = _RAW_END[name].search(text, pos)
            pos = raw_end.end() if raw_end else -1
        elif match[1]:  # an end tag closes up to its element, when that one is open
            if open_count.get(name):
                while (top := stack.pop()) != name:
                    open_count[top] -= 1
                open_count[name] -= 1
        elif name not in _VOID and not (name in _SIBLINGS and stack and stack[-1] == name):
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
            if len(stack) > _MAX_DEPTH:
                return text[: match.start()]
        if pos < 0:  # an unclosed comment or raw text element runs to the end
            break
    return text
