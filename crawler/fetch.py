"""Fetching: one shared aiohttp session; every failure comes back as a value.

A fetch holds the in-flight slot of the lane its task was leased on. Redirects are followed
here, one hop at a time, so that each hop is checked (scope, hop count, loops) and is polite:
a hop to another origin gives back the old lane's slot and waits for one of the new lane's.
A hop's target is *claimed* in the frontier's dedupe set, so that it is fetched only here;
a target the crawl already knows ends the chain (it is or will be fetched on its own).

Every request aiohttp writes passes the send gate (:meth:`Fetcher._gate`, a client
middleware), not only the ones this module starts: the redirect hops aiohttp follows itself
(robots.txt, sitemaps) and its one automatic resend when a server closed a kept-alive
connection under a request. Each waits for its origin's gap and is stamped as sent.

Bodies are decoded here (:mod:`crawler.decode`), not by aiohttp (``auto_decompress=False``):
the decoder is fed one network chunk at a time with an output limit of what is left under ``--max-bytes``, so a bomb
costs the cap and no more, and a gzip stream that stops short is an error (``decode``) instead
of a silently truncated page (aiohttp checks the end of deflate streams, not of gzip ones).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from time import monotonic

import aiohttp
from yarl import URL

from .cancels import Cancels
from .config import FetchSettings
from .decode import ACCEPT_ENCODING, BodyDecoder, DecodeError
from .models import Error, FetchResult, Skip, Task
from .netguard import NetPolicy, is_private_address_error, make_connector
from .parse import is_html
from .politeness import Lanes
from .robots_cache import Resource, RobotsCache
from .urls import canonical_link, origin_of

__all__ = ["Fetcher"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SMALL = 64 * 1024  # a non-HTML body up to this size is read to keep the connection alive
# When the send gate last let a request of this task go (task-local): latency is timed from it.
_SENT_AT: ContextVar[float] = ContextVar("sent_at", default=0.0)


def _storable(value: str) -> str:
    """``value`` without lone surrogates, which SQLite cannot store: aiohttp decodes a header's
    undecodable bytes to them (surrogateescape), and error messages may quote such values."""
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def _classify(exc: BaseException) -> tuple[str, str]:
    """Map an exception from aiohttp or the socket layer to an error kind."""
    detail = _storable(f"{type(exc).__name__}: {exc}"[:300])
    if isinstance(exc, DecodeError):
        return Error.DECODE, str(exc)
    if is_private_address_error(exc):  # before DNS: aiohttp wraps a refused name as a DNS error
        return Skip.PRIVATE_ADDRESS, detail
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Error.TIMEOUT, detail
    if isinstance(exc, getattr(aiohttp, "ClientConnectorDNSError", ())):
        return Error.DNS, detail
    if isinstance(exc, aiohttp.InvalidURL):
        return Error.INVALID_URL, detail
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Error.CONNECTION, detail  # the body stopped short: reset, or fewer bytes than announced
    if isinstance(exc, (aiohttp.ClientConnectionError, ConnectionError, OSError)):
        return Error.CONNECTION, detail
    return Error.PROTOCOL, detail  # a malformed response: status line, headers too long or too many


class Fetcher:
    """Fetches tasks with one pooled session. Use as ``async with Fetcher(...) as f``."""

    def __init__(self, settings: FetchSettings, lanes: Lanes, *, in_scope: Callable[[str], bool],
                 claim: Callable[[str], Awaitable[bool]], policy: NetPolicy, strip_tracking: bool = True,
                 max_url_length: int = 2048) -> None:
        self.settings = settings
        self.policy = policy  # which private networks this crawl may connect to
        self.max_url_length = max_url_length
        self.lanes = lanes
        self.in_scope = in_scope
        self.claim = claim
        self.strip_tracking = strip_tracking
        self.robots: RobotsCache | None = None  # set when robots.txt is obeyed
        self._session: aiohttp.ClientSession | None = None
        # A page request's deadline is kept here, not in a timer of its own (see _expire).
        self._deadlines: dict[asyncio.Task[object], float] = {}
        self._expired = Cancels()
        self._expiry: asyncio.Task[None] | None = None
        # robots.txt and sitemaps: rare, and aiohttp follows their redirects: its own timer.
        self._resource_timeout = aiohttp.ClientTimeout(total=settings.timeout, connect=settings.connect_timeout)

    async def __aenter__(self) -> Fetcher:
        s = self.settings
        # The network guard checks every address actually connected to (DNS answers, IP literals,
        # every redirect hop) against the policy: private networks stay closed unless opened.
        connector = make_connector(self.policy, limit=s.concurrency, limit_per_host=0, ttl_dns_cache=300,
                                         enable_cleanup_closed=False)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # No total timer per request: page requests get their deadline from _expire, robots.txt
            # and sitemaps from _RESOURCE_TIMEOUT. No per-read timer either: it is re-armed on every
            # chunk of every response, a cost paid thousands of times a second for nothing the
            # total deadline misses.
            timeout=aiohttp.ClientTimeout(total=None, connect=s.connect_timeout),
            headers={"User-Agent": s.user_agent, "Accept-Encoding": ACCEPT_ENCODING,
                     "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"},
            auto_decompress=False,  # see the module docstring: BodyDecoder caps the decoded size
            # Cookies are not kept: a crawl is not a browsing session, and a jar grows with every host.
            cookie_jar=aiohttp.DummyCookieJar(),
            max_line_size=16384, max_field_size=16384,
            middlewares=(self._gate,),
        )
        self._expiry = asyncio.create_task(self._expire())
        return self

    async def _gate(self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        """Wait for the request's origin to allow a send, stamp it, then send (every attempt)."""
        await self.lanes.send_gate(origin_of(str(request.url)))
        _SENT_AT.set(monotonic())
        return await handler(request)

    async def __aexit__(self, *exc: object) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.wait([self._expiry])  # ended before the loop may close (never raises its error)
        if self._session is not None:
            await self._session.close()

    async def _expire(self) -> None:
        """End page requests that outlive ``--timeout`` (body included), a tick late at most.

        aiohttp's own total timeout arms a loop timer per request and a context for each
        read: ~3% of a crawl's time (measured). Here one task looks at the deadlines of the
        requests in flight a few times a second, and cancels a request past its own; the
        fetch turns that cancellation into a ``timeout`` error (see :meth:`fetch`).
        """
        tick = max(0.01, min(1.0, self.settings.timeout / 10))
        while True:
            await asyncio.sleep(tick)
            now = monotonic()
            for task, deadline in list(self._deadlines.items()):
                if now >= deadline:
                    self._expired.cancel(task)

    async def fetch(self, task: Task) -> FetchResult:
        """Fetch ``task`` (its lane slot was reserved by the lease) and give the slot back."""
        wall, start = time.time(), monotonic()
        _SENT_AT.set(start)  # until the gate stamps a send (none at all when robots say no)
        me = asyncio.current_task()
        assert me is not None
        url, origin = task.url, task.origin
        hops: list[str] = []
        status = content_type = None
        headers: tuple[tuple[str, str], ...] = ()

        def result(body: bytes = b"", **kw: object) -> FetchResult:
            # Timed from the last request's send: neither the politeness wait nor robots.txt
            # nor earlier redirect hops are part of this page's request time.
            sent, done = _SENT_AT.get(), monotonic()
            return FetchResult(task=task, final_url=url, status=status, content_type=content_type,
                               headers=headers, body=body, fetched_at=wall + (sent - start),
                               elapsed_ms=round((done - sent) * 1000, 3),
                               aliases=tuple(dict.fromkeys((*hops, *task.claimed)) if task.claimed else hops), **kw)  # type: ignore[arg-type]

        try:
            if not await self._robots_allow(origin, url):
                skipped_origin, origin = origin, None  # type: ignore[assignment]
                self.lanes.release(skipped_origin, sent=False)
                assert self.robots is not None
                return result(skip=self.robots.skip_reason(skipped_origin))
            while True:
                assert self._session is not None
                # The canonical URL is sent as it is (already percent-encoded, so yarl does not
                # re-encode it: ~1.5 us a request, and the request line is the URL the crawl knows).
                # Each hop has --timeout, from here until its body is read (what aiohttp's total
                # timer measured); _expire cancels it only while its deadline is in the table.
                self._deadlines[me] = monotonic() + self.settings.timeout
                try:
                    async with self._session.get(URL(url, encoded=True), allow_redirects=False) as resp:
                        status = resp.status
                        content_type = resp.headers.get("Content-Type")
                        if content_type is not None:
                            content_type = _storable(content_type)
                        headers = tuple(resp.headers.items())
                        location = resp.headers.get("Location") if status in _REDIRECTS else None
                        if location is None:
                            return await self._finish(resp, result, origin, _SENT_AT.get())
                        await self._drain(resp)
                finally:
                    del self._deadlines[me]
                target = canonical_link(url, location, self.strip_tracking)
                if target is None:
                    return result(error=Error.BAD_REDIRECT, detail=_storable(f"Location: {location[:200]}"))
                if target == task.url or target in hops:
                    return result(error=Error.REDIRECT_LOOP, detail=f"back to {target}")
                if len(hops) >= self.settings.max_redirects:
                    return result(error=Error.TOO_MANY_REDIRECTS, detail=f"more than {len(hops)} hops")
                if len(target) > self.max_url_length:
                    return result(skip=Skip.TOO_LONG, detail=f"redirect to a {len(target)}-character URL")
                if not self.in_scope(target):
                    url = target
                    return result(skip=Skip.SCOPE)
                if target not in task.claimed and not await self.claim(target):
                    url = target  # known to the crawl: it is fetched (or skipped) as its own URL
                    return result()
                hops.append(target)
                url, new_origin = target, origin_of(target)
                if new_origin != origin:
                    self.lanes.release(origin)
                    origin = None  # type: ignore[assignment]  # holding no slot while waiting
                    await self.lanes.acquire(new_origin)
                    origin = new_origin
                if not await self._robots_allow(origin, url):
                    assert self.robots is not None
                    return result(skip=self.robots.skip_reason(origin))
        except asyncio.CancelledError:
            if not self._expired.caught(me):
                raise
            return result(error=Error.TIMEOUT, detail=f"no complete response within {self.settings.timeout:g} s")
        except Exception as exc:  # every other failure is data, never a crash
            kind, detail = _classify(exc)
            if kind == Skip.PRIVATE_ADDRESS:
                return result(skip=kind, detail=detail)
            return result(error=kind, detail=detail)
        finally:
            if origin is not None:
                self.lanes.release(origin)

    async def _robots_allow(self, origin: str, url: str) -> bool:
        if self.robots is None:
            return True
        rules = self.robots.known(origin)
        if rules is None:
            rules = await self.robots.get(origin, url)
        return rules.allowed(url)

    async def fetch_resource(self, url: str, max_bytes: int = 512_000, max_redirects: int = 5) -> Resource:
        """GET an auxiliary resource (robots.txt, a sitemap) under a slot the caller holds.

        Redirects are followed by aiohttp (up to ``max_redirects``); the body is cut at
        ``max_bytes`` (decoded size). Never raises but for cancellation.
        """
        assert self._session is not None
        try:
            async with self._session.get(url, max_redirects=max_redirects, timeout=self._resource_timeout) as resp:
                body, _ = await self._read(resp, max_bytes, prefix=True)
                return Resource(resp.status, body)
        except aiohttp.TooManyRedirects:
            return Resource(310, b"")  # "a redirect left standing": callers treat it as 3xx
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Resource(None, b"", _classify(exc)[0])

    async def _finish(self, resp: aiohttp.ClientResponse, result: Callable[..., FetchResult],
                      origin: str, sent_at: float) -> FetchResult:
        status = resp.status
        if status in (429, 503):
            retry_after = _retry_after(resp, self.settings.max_retry_after)
            self.lanes.throttled(origin, retry_after)
        elif status < 400:
            self.lanes.healthy(origin, monotonic() - sent_at)
        if 200 <= status < 300 and not is_html(resp.content_type if resp.headers.get("Content-Type") else None):
            if (resp.content_length or 0) <= _SMALL:
                await self._drain(resp)
            return result(skip=Skip.CONTENT_TYPE)
        body, too_large = await self._read(resp)
        if too_large:
            return result(body, error=Error.TOO_LARGE, detail=f"body over {self.settings.max_bytes} bytes")
        if status == 429 or status >= 500:
            kind = Error.HTTP_429 if status == 429 else Error.HTTP_5XX
            return result(body, error=kind, detail=f"HTTP {status}",
                          retry_after=_retry_after(resp, self.settings.max_retry_after))
        if status >= 400:
            return result(body, error=Error.HTTP_4XX, detail=f"HTTP {status}")
        return result(body)

    async def _read(self, resp: aiohttp.ClientResponse, cap: int | None = None,
                    prefix: bool = False) -> tuple[bytes, bool]:
        """Read and decode the body up to ``cap`` (default ``max_bytes``); True if it was cut off.

        One announced as larger is not read at all, unless ``prefix`` asks for its first bytes.
        """
        cap = self.settings.max_bytes if cap is None else cap
        decoder = BodyDecoder(resp.headers.get("Content-Encoding", ""))
        if not prefix and not decoder.coding and (resp.content_length or 0) > cap:
            resp.close()
            return b"", True
        chunks, size = [], 0
        while chunk := await resp.content.readany():
            # One byte past the cap tells "too large" from "exactly the cap".
            chunk = decoder.feed(chunk, cap + 1 - size)
            size += len(chunk)
            if size > cap:
                resp.close()  # the rest is never read: the decoded size is what is capped
                chunks.append(chunk[: len(chunk) - (size - cap)])
                return b"".join(chunks), True
            chunks.append(chunk)
        decoder.check_end()
        return b"".join(chunks), False

    async def _drain(self, resp: aiohttp.ClientResponse) -> None:
        """Read a small body to reuse the connection; close it instead when large."""
        if (resp.content_length or 0) > _SMALL:
            resp.close()
            return
        try:
            _, too_large = await self._read(resp, _SMALL)
        except (DecodeError, aiohttp.ClientError, OSError):
            too_large = True  # a body nobody reads: its failure is not the page's
        if too_large:
            resp.close()


def _retry_after(resp: aiohttp.ClientResponse, cap: float) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), capped; None if absent or bad."""
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), cap)
