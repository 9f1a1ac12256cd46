"""Per-host politeness: an in-flight cap and a minimum gap between request starts.

A *lane* is one origin (``host:port``). Two moments matter:

1. **Lease** (the scheduler, :meth:`Lanes.try_reserve`): a URL is handed out only when its lane
   has a free in-flight slot and its next start time has come; the slot is taken at once, with
   no ``await`` between the check and the take, so two workers can never win the same slot.
2. **Send** (the fetch worker, :meth:`Lanes.send_gate`): right before the request is written,
   the worker waits until ``last_sent + delay`` and stamps ``last_sent``. The gap is timed from
   when requests actually go out, not from when they left a queue: a busy event loop can delay
   a leased request, and the next one must not then arrive early on the wire.

Redirect hops to another origin take a slot of that lane with :meth:`Lanes.acquire`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic

__all__ = ["Lanes"]


class _Lane:
    __slots__ = ("in_flight", "next_start", "last_sent", "delay", "waiters")

    def __init__(self, delay: float) -> None:
        self.in_flight = 0
        self.next_start = 0.0  # monotonic time before which no new lease may start
        self.last_sent = -1e18  # monotonic time the last request was written
        self.delay = delay
        self.waiters: list[asyncio.Future[None]] = []


class Lanes:
    """Politeness state of every origin the crawl has talked to."""

    def __init__(self, per_host: int, delay: float, on_free: Callable[[str], None] | None = None) -> None:
        self.per_host = per_host
        self.delay = delay
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

    def release(self, origin: str) -> None:
        """Give back a slot taken by :meth:`try_reserve` or :meth:`acquire`."""
        lane = self._lanes[origin]
        lane.in_flight -= 1
        if lane.waiters:
            fut = lane.waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
        if self._on_free is not None:
            self._on_free(origin)

    def pause(self, origin: str, seconds: float) -> None:
        """Start nothing on ``origin`` for ``seconds`` (Retry-After, back-off)."""
        lane = self._lane(origin)
        lane.next_start = max(lane.next_start, monotonic() + seconds)
