"""Which discovered links a crawl follows: scope (host / registered domain / any) and admission.

Pure and offline: registered domains come from tldextract's bundled Public Suffix List
snapshot, never fetched and never cached on disk.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from crawler.models import Skip
from crawler.urls import host_of, origin_of

if TYPE_CHECKING:
    import tldextract

__all__ = ["site_key", "Scope", "Admission", "SCOPE_MODES", "url_template", "next_chain"]

SCOPE_MODES = ("host", "domain", "any")
_HTTP = ("http://", "https://")
_HOST_CACHE_MAX = 65536
_MAX_QUERY_PARAMS = 16

#: Path extensions that are never HTML (after Scrapy's ``IGNORED_EXTENSIONS``): skipping them
#: saves a request per asset. Not xml/json/txt: feeds and sitemaps, and the fetcher records
#: any non-HTML response by itself.
SKIP_EXTENSIONS = frozenset(
    """
    jpg jpeg png gif webp svg ico bmp tif tiff avif heic psd eps
    mp3 mp4 m4a m4v avi mov wmv flv webm ogg ogv oga wav flac mkv mpg mpeg aac wma 3gp swf
    zip gz tgz bz2 xz 7z rar tar zst
    pdf doc docx xls xlsx ppt pptx odt ods odp odg rtf epub
    exe dmg iso bin apk msi deb rpm jar
    woff woff2 ttf otf eot
    css js mjs
    """.split()
)
# A block of 1 to 3 whole segments, three times in a row. Each repetition starts with "/" and
# the lookahead ends the match at a segment boundary, so "/a/a/ab" is not "/a" three times.
_REPEAT = re.compile(r"((?:/[^/]+){1,3})\1\1(?=/|$)")
_DIGITS = re.compile(r"[0-9]+")


@lru_cache(maxsize=1)
def _extract() -> tldextract.TLDExtract:
    """The registered-domain splitter, made on first use: importing tldextract takes ~70 ms
    (it brings requests along), which a crawl of IP addresses, or a report, never needs.

    suffix_list_urls=() and cache_dir=None: the bundled snapshot only, no network, no disk
    writes. Private suffixes (github.io, blogspot.com...) count as suffixes, so that a crawl of
    one user's site does not spread to every other site on the same platform.
    """
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


@lru_cache(maxsize=65536)
def site_key(host: str) -> str:
    """The registered domain of ``host`` (``www.bbc.co.uk`` -> ``bbc.co.uk``).

    A host with no registered domain (``localhost``, a bare public suffix) keys to itself.
    IP literals key to their network, /24 for IPv4 and /64 for IPv6 (``127.0.0.0/24``), so
    that one site spread over neighbouring addresses is one domain.
    """
    host = host.lower().rstrip(".")
    if host.startswith("["):
        host = host[1:-1]
    if ":" in host or host[-1:].isdigit():
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            prefix = 24 if ip.version == 4 else 64
            return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    parts = _extract()(host)
    return parts.top_domain_under_public_suffix or host


class Scope:
    """The ``--scope`` rule: does a URL belong to the crawl the seeds define?"""

    def __init__(self, mode: str, seeds: Iterable[str]) -> None:
        if mode not in SCOPE_MODES:
            raise ValueError(f"scope: expected one of {', '.join(SCOPE_MODES)}, got {mode!r}")
        self.mode = mode
        self._hosts = frozenset(host_of(s) for s in seeds)
        self._sites = frozenset(site_key(h) for h in self._hosts if h)
        self._cache: dict[str, bool] = {}

    def allows(self, url: str) -> bool:
        """True if ``url`` (a canonical http(s) URL) is inside the scope."""
        if not url.startswith(_HTTP):
            return False
        if self.mode == "any":
            return True
        host = host_of(url)
        if self.mode == "host":
            return host in self._hosts
        ok = self._cache.get(host)
        if ok is None:
            if len(self._cache) >= _HOST_CACHE_MAX:
                self._cache.clear()  # crude bound: a crawl over millions of hosts stays flat
            ok = self._cache[host] = bool(host) and site_key(host) in self._sites
        return ok


def url_template(url: str) -> str:
    """The shape of a URL: runs of digits -> ``0``, query values dropped, keys sorted and unique.

    ``/cal?month=2026-11`` and ``/cal?month=2026-12`` share ``/cal?month``; so do
    ``/cal/2026/11`` and ``/cal/2026/12`` (``/cal/0/0``).
    """
    base, sep, query = url.partition("?")
    if sep:
        base += "?" + "&".join(sorted({p.partition("=")[0] for p in query.split("&")}))
    return _DIGITS.sub("0", base)


_parent_template = lru_cache(maxsize=64)(url_template)  # a page's links share one parent


def next_chain(parent_url: str, parent_chain: int, url: str) -> int:
    """``chain`` of a link found on ``parent_url``: how many ancestors in a row share its template.

    ``parent_chain + 1`` when ``url`` has the parent's template, else 0. Seeds have chain 0.
    """
    return parent_chain + 1 if url_template(url) == _parent_template(parent_url) else 0


def _extension(path: str) -> str:
    """Lowercased extension of the last path segment (``;params`` dropped), or ``""``."""
    dot = path.rfind(".")
    if dot < 0 or path.find("/", dot) >= 0:
        return ""
    return path[dot + 1 :].partition(";")[0].lower()


def _is_trap_path(path: str, max_segments: int) -> bool:
    """More than ``max_segments`` segments, or a block of 1-3 segments repeated 3 times in a row."""
    segments = path.split("/")
    if len(segments) - 1 > max_segments:
        return True
    # A block of k segments three times means at least 2k repeated segments: most paths have
    # none, and skip the regex.
    return len(segments) - len(set(segments)) >= 2 and _REPEAT.search(path) is not None


class Admission:
    """Decides whether a discovered link is queued, or skipped with a ``Skip`` reason.

    Stateful: every URL it admits counts against its origin's page budget and, when it has a
    query, against the query variants of its path. Call :meth:`check` once per new URL.
    """

    def __init__(
        self,
        scope: Scope,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        max_depth: int | None = None,
        max_url_length: int = 2048,
        *,
        max_pages_per_host: int | None = None,
        max_query_variants: int = 256,
        max_path_segments: int = 32,
        max_chain: int = 40,
        skip_extensions: bool = True,
    ) -> None:
        self.scope = scope
        self._include = [re.compile(p) for p in include]
        self._exclude = [re.compile(p) for p in exclude]
        self.max_depth = max_depth
        self.max_url_length = max_url_length
        self.max_pages_per_host = max_pages_per_host
        self.max_query_variants = max_query_variants
        self.max_path_segments = max_path_segments
        self.max_chain = max_chain
        self.skip_extensions = skip_extensions
        self._admitted: dict[str, int] = {}  # origin -> URLs admitted
        self._variants: dict[int, int] = {}  # hash of the URL before "?" -> queries admitted

    def check(self, url: str, depth: int, chain: int = 0) -> str | None:
        """None to admit (and count) ``url`` found at ``depth``, else the skip reason.

        ``chain`` comes from :func:`next_chain`. Checked in this order, the first that fails
        is reported: length, depth, scope, include/exclude filters (``re.search`` on the
        canonical URL), non-HTML extension, traps (endless chain, too many or repeating path
        segments, too many query parameters or query variants of one path), host budget.
        Only admitted URLs use up budgets, so a skipped URL never hides a later good one.
        """
        if len(url) > self.max_url_length:
            return Skip.TOO_LONG
        if self.max_depth is not None and depth > self.max_depth:
            return Skip.DEPTH
        if not self.scope.allows(url):
            return Skip.SCOPE
        if self._include and not any(p.search(url) for p in self._include):
            return Skip.FILTER
        if self._exclude and any(p.search(url) for p in self._exclude):
            return Skip.FILTER
        start = url.find("/", url.find("//") + 2)
        if start < 0:
            start = len(url)
        qpos = url.find("?", start)
        path = url[start:] if qpos < 0 else url[start:qpos]
        if self.skip_extensions and _extension(path) in SKIP_EXTENSIONS:
            return Skip.CONTENT_TYPE
        if chain > self.max_chain or _is_trap_path(path, self.max_path_segments):
            return Skip.TRAP
        key = 0
        if qpos >= 0:
            if url.count("&", qpos) >= _MAX_QUERY_PARAMS:
                return Skip.TRAP
            key = hash(url[:qpos])
            if self._variants.get(key, 0) >= self.max_query_variants:
                return Skip.TRAP
        origin = origin_of(url)
        admitted = self._admitted.get(origin, 0)
        if self.max_pages_per_host is not None and admitted >= self.max_pages_per_host:
            return Skip.HOST_BUDGET
        self._admitted[origin] = admitted + 1
        if qpos >= 0:
            self._variants[key] = self._variants.get(key, 0) + 1
        return None

    def preload(self, counts: Mapping[str, int], urls: Iterable[str] = ()) -> None:
        """Start from what a resumed crawl already admitted.

        ``counts``: URLs admitted per origin (``host:port``), replacing the current counts.
        ``urls``: the admitted URLs themselves, optional: those with a query count towards
        their path's query variants (else each path gets ``max_query_variants`` more).
        """
        self._admitted.update(counts)
        for url in urls:
            qpos = url.find("?", url.find("//") + 2)
            if qpos >= 0:
                key = hash(url[:qpos])
                self._variants[key] = self._variants.get(key, 0) + 1

    def admitted(self, origin: str) -> int:
        """How many URLs of ``origin`` (``host:port``) were admitted so far, preload included."""
        return self._admitted.get(origin, 0)
