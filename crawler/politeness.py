"""Per-host politeness: an in-flight cap and a minimum gap between request starts.

A *lane* is one origin (``host:port``). Two moments matter:

1. **Lease** (the scheduler, :meth:`Lanes.try_reserve`): a URL is handed out only when its lane
   has a free in-flight slot and its next start time has come; the slot is taken at once, with
   no ``await`` between the check and the take, so two workers can never win the same slot.
2. **Send** (:meth:`Lanes.send_gate`, from the fetcher's aiohttp middleware, so every request
   aiohttp writes passes it, its own redirect hops and resends too): right before the request is
   written, the worker waits until ``last_sent + delay`` and stamps ``last_sent``. The gap is timed from
   when requests actually go out, not from when they left a queue: a busy event loop can delay
   a leased request, and the next one must not then arrive early on the wire.

Redirect hops to another origin take a slot of that lane with :meth:`Lanes.acquire`.

One delay per lane, the largest of: the configured ``--delay``, the robots.txt ``Crawl-delay``
(capped), the auto-throttle delay (``--auto-throttle``: latency-based) and the back-off after
429/503 responses, which doubles on each and decays again on healthy responses. A 429/503
with ``Retry-After`` pauses that lane only, for that long. The lane remembers which term
won (``why``) for the display and the report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic

__all__ = ["Lanes"]


class _Lane:
    __slots__ = ("in_flight", "next_start", "last_sent", "paused_until", "base", "crawl_delay", "auto", "backoff",
                 "waiters", "paused_s", "throttled")

    def __init__(self, base: float) -> None:
        self.in_flight = 0
        self.next_start = 0.0  # monotonic time before which no new lease may start
        self.last_sent = -1e18  # monotonic time the last request was written
        self.paused_until = 0.0  # Retry-After / back-off pause
        self.base = base  # --delay
        self.crawl_delay = 0.0  # robots.txt Crawl-delay, capped
        self.auto = 0.0  # auto-throttle
        self.backoff = 0.0  # after 429/503 without Retry-After
        self.waiters: list[asyncio.Future[None]] = []
        self.paused_s = 0.0  # total time paused by Retry-After and back-off
        self.throttled = 0  # 429/503 responses seen

    @property
    def delay(self) -> float:
        return max(self.base, self.crawl_delay, self.auto, self.backoff)

    @property
    def why(self) -> str:
        """Which rule sets the current delay: configured, crawl-delay, auto-throttle or back-off."""
        terms = (("back-off", self.backoff), ("crawl-delay", self.crawl_delay), ("auto-throttle", self.auto))
        name, value = max(terms, key=lambda t: t[1])
        return name if value > self.base else "configured"


class Lanes:
    """Politeness state of every origin the crawl has talked to."""

    def __init__(self, per_host: int, delay: float, on_free: Callable[[str], None] | None = None, *,
                 auto_throttle: bool = False, max_delay: float = 60.0) -> None:
        self.per_host = per_host
        self.delay = delay
        self.auto_throttle = auto_throttle
        self.max_delay = max_delay  # ceiling of back-off and auto-throttle
        self._lanes: dict[str, _Lane] = {}
        self._on_free = on_free  # the frontier re-schedules a lane that was at its cap

    def _lane(self, origin: str) -> _Lane:
        lane = self._lanes.get(origin)
        if lane is None:
            lane = self._lanes[origin] = _Lane(self.delay)
        return lane

    def ready_at(self, origin: str) -> float:
        """Monotonic time at which ``origin`` may start its next request (delay only)."""
        lane = self._lanes.get(origin)
        return 0.0 if lane is None else lane.next_start

    def at_cap(self, origin: str) -> bool:
        lane = self._lanes.get(origin)
        return lane is not None and lane.in_flight >= self.per_host

    def in_flight(self, origin: str) -> int:
        lane = self._lanes.get(origin)
        return 0 if lane is None else lane.in_flight

    def try_reserve(self, origin: str, now: float) -> bool:
        """Take a slot of ``origin`` if one is free and its delay has passed."""
        lane = self._lane(origin)
        if lane.in_flight >= self.per_host or now < lane.next_start:
            return False
        lane.in_flight += 1
        lane.next_start = now + lane.delay
        return True

    async def acquire(self, origin: str) -> None:
        """Wait for and take a slot of ``origin`` (for redirect hops)."""
        lane = self._lane(origin)
        while not self.try_reserve(origin, monotonic()):
            if lane.in_flight >= self.per_host:
                fut = asyncio.get_running_loop().create_future()
                lane.waiters.append(fut)
                try:
                    await fut
                finally:
                    if fut in lane.waiters:
                        lane.waiters.remove(fut)
            else:
                await asyncio.sleep(max(lane.next_start - monotonic(), 0.0))

    async def send_gate(self, origin: str) -> None:
        """Wait until this origin's last request is ``delay`` old, then stamp this one as sent."""
        lane = self._lane(origin)
        while (wait := lane.last_sent + lane.delay - monotonic()) > 0:
            await asyncio.sleep(wait)
        now = monotonic()
        lane.last_sent = now
        lane.next_start = max(lane.next_start, now + lane.delay)

    def release(self, origin: str, sent: bool = True) -> None:
        """Give back a slot taken by :meth:`try_reserve` or :meth:`acquire`.

        ``sent=False``: no request went out under this slot (e.g. robots.txt said no), so the
        lane's next start goes back to what the last real request allows.
        """
        lane = self._lanes[origin]
        lane.in_flight -= 1
        if not sent:
            lane.next_start = max(lane.last_sent + lane.delay, lane.paused_until)
        if lane.waiters:
            fut = lane.waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
        if self._on_free is not None:
            self._on_free(origin)

    def pause(self, origin: str, seconds: float) -> None:
        """Start nothing on ``origin`` for ``seconds`` (Retry-After)."""
        lane = self._lane(origin)
        until = monotonic() + seconds
        if until > lane.next_start:
            lane.paused_s += until - max(lane.next_start, monotonic())
            lane.next_start = until
        lane.paused_until = max(lane.paused_until, until)

    def set_crawl_delay(self, origin: str, seconds: float) -> None:
        self._lane(origin).crawl_delay = seconds

    def throttled(self, origin: str, retry_after: float | None) -> None:
        """A 429 or 503: pause for Retry-After if given, else back off exponentially."""
        lane = self._lane(origin)
        lane.throttled += 1
        if retry_after is not None:
            self.pause(origin, retry_after)
        else:
            lane.backoff = min(max(2 * lane.backoff, 1.0, lane.base), self.max_delay)
            self.pause(origin, lane.backoff)

    def healthy(self, origin: str, latency: float) -> None:
        """A good response: back-off decays; auto-throttle follows the server's latency."""
        lane = self._lane(origin)
        if lane.backoff:
            lane.backoff = lane.backoff / 2 if lane.backoff / 2 >= max(lane.base, 0.05) else 0.0
        if self.auto_throttle:
            # Scrapy's AutoThrottle rule: aim for one request in flight per host, i.e. a gap of
            # one latency, smoothed; never below the configured delay (that is `delay`'s max).
            lane.auto = min((lane.auto + latency) / 2, self.max_delay)

    def state(self, origin: str) -> tuple[float, str, int, float]:
        """(delay, why, 429/503 count, seconds paused) of a lane, for display and report."""
        lane = self._lanes.get(origin)
        if lane is None:
            return self.delay, "configured", 0, 0.0
        return lane.delay, lane.why, lane.throttled, lane.paused_s

    def origins(self) -> list[str]:
        return list(self._lanes)
