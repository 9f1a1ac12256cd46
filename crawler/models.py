"""The small immutable values that travel between pipeline stages.

Failures travel as values (``FetchResult.error`` is a kind string), never as exceptions
across a queue. See ARCHITECTURE.md for which stage produces and consumes each.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Task", "FetchResult", "ParsedPage", "Outcome", "Skip", "Error"]


class Skip:
    """Reasons a discovered URL is recorded as skipped instead of fetched or stored."""

    SCOPE = "scope"  # outside --scope (also: a redirect that leaves the scope)
    FILTER = "filter"  # --include / --exclude
    DEPTH = "depth"  # beyond --max-depth
    TOO_LONG = "url_too_long"  # longer than the URL length cap
    CONTENT_TYPE = "content_type"  # the response was not HTML
    REDIRECT = "redirect"  # reached as a redirect hop: its content is stored under the URL that redirected
    ROBOTS = "robots"  # disallowed by robots.txt
    ROBOTS_UNAVAILABLE = "robots_unavailable"  # robots.txt answered 5xx or was unreachable: disallow all
    TRAP = "trap"  # a crawler trap: repeating path segments, query-parameter explosion, endless chains
    HOST_BUDGET = "host_budget"  # beyond --max-pages-per-host
    PRIVATE_ADDRESS = "private_address"  # resolves to a private/loopback/metadata address the crawl may not use


class Error:
    """Kinds of failure recorded on a stored URL (the JSONL ``error`` key)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    DNS = "dns"
    TOO_LARGE = "too_large"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    HTTP_429 = "http_429"
    REDIRECT_LOOP = "redirect_loop"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    BAD_REDIRECT = "bad_redirect"  # a Location header that is not a crawlable URL
    INVALID_URL = "invalid_url"
    DECODE = "decode"  # a body that could not be decompressed
    PROTOCOL = "protocol"  # any other malformed HTTP exchange
    PARSE = "parse"  # the parser failed on the body (kept, unparsed)
    STALLED = "stalled"  # the watchdog abandoned a request that made no progress

    #: failures worth another attempt (connection trouble, timeouts, overload)
    TRANSIENT = frozenset({TIMEOUT, CONNECTION, HTTP_5XX, HTTP_429, STALLED})


@dataclass(frozen=True, slots=True)
class Task:
    """A leased URL: what a fetch worker needs to fetch it and the gatherer to ack it."""

    id: int  # row id in the frontier; the lease is acked by id
    url: str  # canonical URL
    depth: int
    origin: str  # politeness lane key: "host:port" of the URL
    attempt: int = 0  # 0 for the first try
    chain: int = 0  # ancestors in a row with this URL's template (calendar-trap detection)
    # Redirect hops earlier attempts claimed: a retry may follow them again, and the last
    # attempt records them all (they are known to the crawl through this task alone).
    claimed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What came back for a task: a response, or a failure kind in ``error``.

    ``skip`` set means the URL is recorded as skipped (e.g. not HTML), not stored.
    ``aliases`` are the redirect hops this fetch claimed: each is recorded as skipped
    with reason ``redirect`` so that no other task fetches it again.
    """

    task: Task
    final_url: str
    status: int | None
    content_type: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    fetched_at: float  # wall clock, seconds since the epoch
    elapsed_ms: float
    error: str | None = None
    detail: str | None = None  # human-readable detail of the error, for the report
    skip: str | None = None
    aliases: tuple[str, ...] = ()
    retry_after: float | None = None  # seconds, from a Retry-After header


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """What the parser extracted from one HTML body.

    ``links`` are canonical absolute http(s) URLs in document order, deduplicated,
    without the ones marked ``rel=nofollow`` (and empty when the page's meta robots
    says ``nofollow``). ``n_links`` counts every distinct http(s) link found.
    """

    title: str | None
    description: str | None
    canonical: str | None  # <link rel=canonical>, resolved
    meta_robots: str | None  # content of <meta name=robots>, lowercased
    text: str | None  # visible text, whitespace collapsed; None: packed with the body (Outcome.packed)
    links: tuple[str, ...]
    n_links: int
    encoding: str  # the charset the body was decoded with
    refresh: str | None = None  # <meta http-equiv=refresh> target (canonical URL), followed like a redirect


@dataclass(frozen=True, slots=True)
class Outcome:
    """A fetch result joined with its parse (None when the body was not parsed).

    The body travels on, in ``result.body``, to be hashed and packed for storage (see
    :meth:`crawler.store.Store.pages_step`). A parse process does that itself, for the pages it
    parses (``digest``, and ``packed`` when bodies are kept): the writer's thread had been
    the crawl's bottleneck. Otherwise the writer does it.
    """

    result: FetchResult  # its body is b"" once hashed and packed elsewhere (``digest`` set)
    page: ParsedPage | None
    digest: str | None = None  # sha256 of the body, hex
    packed: bytes | None = None  # the body and the page's text, one zstd frame (crawler.bodies.pack_page)
    body_size: int = 0  # the size of the body when it was let go (``digest`` set)

    @property
    def size(self) -> int:
        """Bytes of the body as fetched (decoded)."""
        return self.body_size if self.digest is not None else len(self.result.body)
