"""Which discovered links a crawl follows: scope (host / registered domain / any) and admission.

Pure and offline: registered domains come from tldextract's bundled Public Suffix List
snapshot, never fetched and never cached on disk.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import tldextract

from crawler.models import Skip
from crawler.urls import host_of

__all__ = ["site_key", "Scope", "Admission", "SCOPE_MODES"]

SCOPE_MODES = ("host", "domain", "any")
_HTTP = ("http://", "https://")
_HOST_CACHE_MAX = 65536

# suffix_list_urls=() and cache_dir=None: the bundled snapshot only, no network, no disk
# writes. Private suffixes (github.io, blogspot.com...) count as suffixes, so that a crawl of
# one user's site does not spread to every other site on the same platform.
_EXTRACT = tldextract.TLDExtract(
    suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
)


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
    parts = _EXTRACT(host)
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


class Admission:
    """Decides whether a discovered link is queued, or skipped with a ``Skip`` reason."""

    def __init__(
        self,
        scope: Scope,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        max_depth: int | None = None,
        max_url_length: int = 2048,
    ) -> None:
        self.scope = scope
        self._include = [re.compile(p) for p in include]
        self._exclude = [re.compile(p) for p in exclude]
        self.max_depth = max_depth
        self.max_url_length = max_url_length

    def check(self, url: str, depth: int) -> str | None:
        """None to admit ``url`` found at ``depth``, else the skip reason.

        Checked in this order (the first that fails is reported): length, depth, scope,
        include/exclude filters (``re.search`` on the canonical URL).
        """
        if len(url) > self.max_url_length:
            return Skip.TOO_LONG
        if self.max_depth is not None and depth > self.max_depth:
            return Skip.DEPTH
        if not self.scope.allows(url):
            return Skip.SCOPE
        if self._include and not any(p.search(url) for p in self._include):
            return Skip.FILTER
        if any(p.search(url) for p in self._exclude):
            return Skip.FILTER
        return None
