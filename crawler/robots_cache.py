"""robots.txt of every origin: fetched once before anything else there, shared by all workers.

RFC 9309 semantics (section 2.3.1): a 2xx body is parsed (at most 500 KiB); 4xx means allow
all; 5xx, 429, or an unreachable server means disallow all, until a later fetch (after
``RETRY_UNAVAILABLE`` seconds) succeeds; redirects are followed up to five hops. Rules are
fetched again after ``refresh_after`` seconds on long crawls. The Crawl-delay of the group
that applies to us raises the origin's politeness delay (capped at ``max_crawl_delay``).

The fetch itself goes out under the in-flight slot of the worker that first needs the rules,
through the lane's send gate: robots.txt requests are as polite as page requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import monotonic

from .models import Skip
from .politeness import Lanes
from .robots import RobotsRules

__all__ = ["RobotsCache", "RobotsInfo", "robots_url", "Resource"]

RETRY_UNAVAILABLE = 600.0  # seconds before asking an unavailable robots.txt again


@dataclass(frozen=True, slots=True)
class Resource:
    """A small auxiliary fetch (robots.txt, a sitemap): status, body, or an error kind."""

    status: int | None
    body: bytes
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RobotsInfo:
    """What the report says about one origin's robots.txt."""

    status: str  # "ok", "missing" (4xx: allow all), "unavailable" (5xx/unreachable: disallow all)
    http_status: int | None
    crawl_delay: float | None  # as written in robots.txt
    capped: bool  # Crawl-delay was above max_crawl_delay and was cut to it


def robots_url(url: str) -> str:
    """``scheme://host[:port]/robots.txt`` of a canonical URL."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}/robots.txt"


class RobotsCache:
    def __init__(self, user_agent: str, fetch: Callable[[str], Awaitable[Resource]], lanes: Lanes, *,
                 max_crawl_delay: float = 30.0, refresh_after: float = 86400.0) -> None:
        self.user_agent = user_agent
        self._fetch = fetch
        self.lanes = lanes
        self.max_crawl_delay = max_crawl_delay
        self.refresh_after = refresh_after
        self._rules: dict[str, tuple[RobotsRules, float]] = {}  # origin -> (rules, expires at)
        self._pending: dict[str, asyncio.Future[RobotsRules]] = {}
        self.info: dict[str, RobotsInfo] = {}

    def known(self, origin: str) -> RobotsRules | None:
        """The origin's rules if they are fetched and fresh; None means "ask :meth:`get`"."""
        entry = self._rules.get(origin)
        return entry[0] if entry is not None and entry[1] > monotonic() else None

    def skip_reason(self, origin: str) -> str:
        info = self.info.get(origin)
        return Skip.ROBOTS_UNAVAILABLE if info is not None and info.status == "unavailable" else Skip.ROBOTS

    async def get(self, origin: str, url: str) -> RobotsRules:
        """The rules for ``origin`` (fetching robots.txt for ``url``'s origin if needed).

        The caller must hold an in-flight slot of ``origin``: the fetch goes out under it.
        """
        while True:
            rules = self.known(origin)
            if rules is not None:
                return rules
            pending = self._pending.get(origin)
            if pending is None:
                break
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # we were cancelled; otherwise the fetching worker was: try again
        fut: asyncio.Future[RobotsRules] = asyncio.get_running_loop().create_future()
        self._pending[origin] = fut
        try:
            rules = await self._load(origin, url)
            fut.set_result(rules)
            return rules
        finally:
            del self._pending[origin]
            if not fut.done():
                fut.cancel()

    async def _load(self, origin: str, url: str) -> RobotsRules:
        res = await self._fetch(robots_url(url))
        kind = _outcome(res)
        if kind == "ok":
            rules = RobotsRules.parse(res.body, self.user_agent)
            delay = rules.crawl_delay
            if delay:
                self.lanes.set_crawl_delay(origin, min(delay, self.max_crawl_delay))
            self.info[origin] = RobotsInfo(kind, res.status, delay, delay is not None and delay > self.max_crawl_delay)
            ttl = self.refresh_after
        elif kind == "missing":
            rules, ttl = RobotsRules.allow_all(), self.refresh_after
            self.info[origin] = RobotsInfo(kind, res.status, None, False)
        else:
            rules, ttl = RobotsRules.disallow_all(), min(RETRY_UNAVAILABLE, self.refresh_after)
            self.info[origin] = RobotsInfo(kind, res.status, None, False)
        self._rules[origin] = (rules, monotonic() + ttl)
        return rules


def _outcome(res: Resource) -> str:
    """RFC 9309 section 2.3.1: "ok" (parse it), "missing" (allow all) or "unavailable" (disallow all)."""
    status = res.status
    if status is not None and 200 <= status < 300:
        return "ok"
    if status is not None and (300 <= status < 400 or (400 <= status < 500 and status != 429)):
        # 4xx is "unavailable" in the RFC's words: allow all. A redirect left standing means more
        # than five hops, which the RFC lets a crawler treat the same way. 429 is an overload.
        return "missing"
    if res.error == "private_address":
        # The network guard refused the host: let the page requests meet the guard themselves, so
        # that they are recorded as private_address rather than as a robots.txt outage.
        return "missing"
    return "unavailable"
