"""The parser stage: one HTML body in, a ``ParsedPage`` out (selectolax, lexbor backend).

``parse_html`` is a pure top-level function of picklable values, so that the pipeline
can run it in a process pool; it never raises, whatever the bytes.
"""

from __future__ import annotations

import ctypes
import logging
import re
from typing import NamedTuple

from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawler.charset import decode, detect, from_meta, looks_binary
from crawler.models import ParsedPage
from crawler.urls import canonical_link, resolve

__all__ = ["parse_html", "init_worker"]

log = logging.getLogger(__name__)

_M_TOP_PAD = -2  # glibc mallopt parameter
_INVISIBLE = ["script", "style", "noscript", "template", "svg"]
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


class _Head(NamedTuple):
    title: str | None
    description: str | None
    robots: str | None
    canonical: str | None  # raw href
    base: str | None  # raw href of the first <base href>
    charset: str | None  # the first <meta> charset declaration (WHATWG name)


def parse_html(body: bytes, url: str, content_type: str | None = None, *,
               strip_tracking: bool = True) -> ParsedPage:
    """Extract title, description, canonical, meta robots, visible text and links.

    ``url`` is the final URL of the response: links resolve against the first
    ``<base href>`` (itself resolved against ``url``), else ``url``. Never raises:
    a binary body, or one the parser chokes on, gives an empty page.
    """
    encoding = "utf-8"
    try:
        encoding, declared = detect(body, content_type)
        if looks_binary(body, encoding):
            return _empty(encoding)
        return _parse(body, url, encoding, declared, strip_tracking)
    except Exception:  # a bug on one hostile page must not stop the crawl
        log.warning("could not parse %s", url, exc_info=True)
        return _empty(encoding)


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


def _empty(encoding: str) -> ParsedPage:
    return ParsedPage(None, None, None, None, "", (), 0, encoding)


def _parse(body: bytes, url: str, encoding: str, declared: bool, strip_tracking: bool) -> ParsedPage:
    tree = _tree(decode(body, encoding))
    head = _head(tree)
    if not declared and head.charset not in (None, encoding):
        # A <meta charset> past the prescan window: browsers "change the encoding"
        # and reparse. Pure ASCII reads the same in any ASCII-compatible encoding.
        encoding = head.charset
        if not body.isascii() or encoding == "iso-2022-jp":
            tree = _tree(decode(body, encoding))
            head = _head(tree)
    base = url if head.base is None else resolve(url, head.base) or url
    canonical = None if head.canonical is None else canonical_link(base, head.canonical, strip_tracking)
    found = _links(tree, base, strip_tracking)
    follow = not (head.robots and {"nofollow", "none"} & set(head.robots.replace(",", " ").split()))
    return ParsedPage(title=head.title, description=head.description, canonical=canonical,
                      meta_robots=head.robots, text=_text(tree),
                      links=tuple(link for link, ok in found.items() if ok) if follow else (),
                      n_links=len(found), encoding=encoding)


def _head(tree: LexborHTMLParser) -> _Head:
    """The document's metadata, wherever the tree builder put it (head or body)."""
    titles = tree.tags("title")
    title = _collapse(titles[0].text()) if titles else ""
    description = charset = None
    robots: list[str] = []
    for node in tree.tags("meta"):
        attrs = node.attributes
        name = (attrs.get("name") or "").strip().lower()
        if name == "description" and description is None:
            description = _collapse(attrs.get("content") or "") or None
        elif name == "robots" and (content := attrs.get("content")):
            robots.append(_collapse(content).lower())
        if charset is None:
            charset = from_meta(attrs)
    canonical = None
    for node in tree.tags("link"):
        attrs = node.attributes
        if "canonical" in (attrs.get("rel") or "").lower().split() and attrs.get("href") is not None:
            canonical = attrs["href"]
            break
    base = next((href for node in tree.tags("base") if (href := node.attributes.get("href")) is not None), None)
    return _Head(title=title or None, description=description,
                 robots=", ".join(robots) or None, canonical=canonical, base=base, charset=charset)


def _links(tree: LexborHTMLParser, base: str, strip_tracking: bool) -> dict[str, bool]:
    """Canonical http(s) links in document order -> whether any of them may be followed."""
    nodes: list[LexborNode] = tree.tags("a")
    if tree.tags("area"):  # rare: only then pay for a selector that keeps document order
        nodes = tree.css("a[href], area[href]")
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


def _text(tree: LexborHTMLParser) -> str:
    body = tree.body
    if body is None:  # a <frameset> document
        return ""
    tree.strip_tags(_INVISIBLE)
    return _collapse(body.text(separator=" ", strip=True, skip_empty=True))


def _collapse(text: str) -> str:
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
