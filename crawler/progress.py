"""Progress displays: they read counters on a timer and never touch the fetch/parse hot path.

Workers only bump counters (``Stats``, the frontier's counts, the politeness lanes); a display
samples them from its own task a few times a second (live) or every few seconds (plain lines),
so its cost is a small, bounded slice of the event loop, not a per-page one.

* :class:`LiveProgress`: a rich ``Live`` view on a terminal (counters, rates, ETA, busiest hosts,
  errors by kind). Its refresh interval grows when a frame gets expensive (many hosts).
* :class:`PlainProgress`: one line every few seconds on a log (``--no-progress``, no TTY).
* :class:`NoProgress`: nothing (``-q``).
"""

from __future__ import annotations

import asyncio
import heapq
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from .stats import Stats

if TYPE_CHECKING:
    from .frontier import SqliteFrontier
    from .pipeline import CrawlView
    from .politeness import Lanes

__all__ = ["HostRow", "LiveProgress", "NoProgress", "PlainProgress", "Rates", "host_rows", "progress_line"]

WINDOW = 5.0  # seconds over which the "recent" rate is measured
BUDGET = 0.02  # at most this share of the event loop goes to drawing (the interval grows to keep it)
MAX_INTERVAL = 10.0  # ... up to this many seconds between frames (a crawl of very many hosts)
UNKNOWN = "—"
_WHY = {"configured": "configured", "crawl-delay": "Crawl-delay", "auto-throttle": "auto-throttle",
        "back-off": "back-off"}
_ROBOTS = {"ok": "ok", "missing": "none", "unavailable": "down"}


class Rates:
    """Recent rates from counter samples, one per refresh, kept for the last :data:`WINDOW` s."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, stored, queued)

    def sample(self, now: float, stored: int, queued: int) -> None:
        self._samples.append((now, stored, queued))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def recent(self) -> float | None:
        """Pages stored per second over the window; None until two samples exist."""
        (t0, s0, _), (t1, s1, _) = self._ends()
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None

    def eta(self, max_pages: int | None, stored_total: int, queued: int, leased: int) -> float | None:
        """Seconds left: to ``max_pages`` at the recent rate, or until a draining queue is empty."""
        rate = self.recent()
        if max_pages is not None:
            return max(max_pages - stored_total, 0) / rate if rate else None
        (t0, _, q0), (t1, _, q1) = self._ends()
        drain = (q0 - q1) / (t1 - t0) if t1 - t0 >= 1.0 else 0.0
        return (queued + leased) / drain if drain > 0 else None

    def _ends(self) -> tuple[tuple[float, int, int], tuple[float, int, int]]:
        if not self._samples:
            return (0.0, 0, 0), (0.0, 0, 0)
        return self._samples[0], self._samples[-1]


@dataclass(frozen=True, slots=True)
class HostRow:
    origin: str
    in_flight: int
    queued: int
    delay: float
    why: str  # configured, Crawl-delay, auto-throttle, back-off, Retry-After
    throttled: int  # 429/503 responses
    last: str  # last HTTP status (or error kind), or UNKNOWN
    robots: str  # robots.txt: ok, none (4xx: allow all), down (disallow all), off, or UNKNOWN
    blocked: str  # URLs skipped because robots.txt disallows them, or UNKNOWN


def host_rows(stats: Stats, frontier: SqliteFrontier, lanes: Lanes, limit: int) -> tuple[list[HostRow], int, int]:
    """The ``limit`` busiest hosts (in flight, then queued), the number of hosts, requests in flight."""
    queued = dict(frontier.queued_by_origin())
    lane_origins = lanes.origins()
    flying = {o: n for o in lane_origins if (n := lanes.in_flight(o))}  # at most --concurrency of them
    busiest = heapq.nlargest(limit, flying, key=lambda o: (flying[o], queued.get(o, 0)))
    if len(busiest) < limit:
        busiest += [o for o, _ in heapq.nlargest(limit, queued.items(), key=itemgetter(1)) if o not in flying]
        del busiest[limit:]
    # Per-host counters the gatherer may keep (``Stats.last_status``, ``Stats.robots_blocked``).
    last_status: dict[str, Any] = getattr(stats, "last_status", None) or {}
    blocked: dict[str, int] | None = getattr(stats, "robots_blocked", None)
    robots = frontier.robots.info if frontier.robots is not None else None
    now, rows = monotonic(), []
    for o in busiest:
        delay, why, throttled, _ = lanes.state(o)
        why = _WHY.get(why, why)
        if (wait := lanes.ready_at(o) - now) > delay + 0.01 and why != "back-off":
            why = f"Retry-After {wait:.0f}s"  # paused beyond the delay: only Retry-After does that
        info = robots.get(o) if robots is not None else None
        rows.append(HostRow(
            o, flying.get(o, 0), queued.get(o, 0), delay, why, throttled, str(last_status.get(o, UNKNOWN)),
            "off" if robots is None else _ROBOTS.get(info.status, info.status) if info else UNKNOWN,
            UNKNOWN if blocked is None else f"{blocked.get(o, 0):,}"))
    return rows, len(queued.keys() | lane_origins), sum(flying.values())


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds > 99 * 3600:
        return UNKNOWN
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _size(n: float) -> str:
    if n < 1000:
        return f"{n:,.0f} B"
    for unit in ("KB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:,.1f} {unit}"
    return f"{n / 1000:,.1f} GB"


def _kinds(counter: dict[str, int], limit: int) -> str:
    items = sorted(counter.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} {n:,}" for k, n in items[:limit])
    return text + (f", {len(items) - limit} more" if len(items) > limit else "")


def progress_line(stats: Stats, frontier: Any, rates: Rates | None = None) -> str:
    """One plain progress line: counters, rates, bytes, ETA, errors by kind."""
    recent = rates.recent() if rates else None
    eta = rates.eta(frontier.max_pages, frontier.stored, frontier.queued, frontier.leased) if rates else None
    line = (f"[{stats.elapsed:7.1f}s] stored {stats.stored} (failed {stats.failed}) "
            f"queued {frontier.queued} leased {frontier.leased} skipped {sum(stats.skipped.values())} "
            f"| {stats.rate():.1f} pages/s" + (f" (recent {recent:.1f})" if recent is not None else "")
            + f" | {stats.bytes / 1e6:.1f} MB")
    if eta is not None:
        line += f" | ETA {_duration(eta)}"
    if stats.errors:
        line += f" | errors: {_kinds(stats.errors, 4)}"
    return line


def _host_line(r: HostRow) -> str:
    return (f"    {r.origin}  in flight {r.in_flight}  queued {r.queued}  delay {r.delay:g}s ({r.why})  "
            f"last {r.last}  429/503 {r.throttled}  robots {r.robots}  blocked {r.blocked}")


class PlainProgress:
    """A line every ``interval`` seconds; with ``hosts`` > 0, also a line per busiest host."""

    def __init__(self, stats: Stats, frontier: Any, log: Callable[[str], None], interval: float = 5.0, *,
                 lanes: Lanes | None = None, hosts: int = 0) -> None:
        self.stats, self.frontier, self.log, self.interval = stats, frontier, log, interval
        self.lanes, self.hosts = lanes, hosts
        self.rates = Rates()

    async def run(self) -> None:
        self.rates.sample(monotonic(), self.stats.stored, self.frontier.queued)
        cost = 0.0
        while True:
            await asyncio.sleep(min(max(self.interval, cost / BUDGET), MAX_INTERVAL))
            started = perf_counter()
            self.rates.sample(monotonic(), self.stats.stored, self.frontier.queued)
            try:
                self.log(progress_line(self.stats, self.frontier, self.rates))
                if self.hosts and self.lanes is not None:
                    for row in host_rows(self.stats, self.frontier, self.lanes, self.hosts)[0]:
                        self.log(_host_line(row))
            except Exception as exc:  # observe, never drive: a display bug must not end the crawl
                self.log(f"progress display failed ({exc!r}); the crawl goes on")
                return
            cost = perf_counter() - started


class NoProgress:
    """``-q``: no progress output at all."""

    async def run(self) -> None:
        return None


class LiveProgress:
    """A rich ``Live`` view, redrawn every ``interval`` s (slower if a frame costs > 2 % of that)."""

    def __init__(self, view: CrawlView, console: Console | None = None, *, interval: float = 0.25,
                 verbose: bool = False) -> None:
        self.view, self.interval, self.verbose = view, interval, verbose
        self.console = console or Console()
        self.rates = Rates()
        self._live: Live | None = None

    async def run(self) -> None:
        # Log lines written to stderr meanwhile are printed above the display, not through it.
        live = self._live = Live(console=self.console, auto_refresh=False, transient=True,
                                 redirect_stdout=True, redirect_stderr=sys.stderr.isatty(),
                                 vertical_overflow="crop")
        cost = 0.0  # seconds a frame takes, smoothed (the first one also pays for warming up)
        try:
            with live:
                while True:
                    started = perf_counter()
                    live.update(self.renderable(), refresh=True)
                    cost = 0.8 * cost + 0.2 * (perf_counter() - started)
                    await asyncio.sleep(min(max(self.interval, cost / BUDGET), MAX_INTERVAL))
        except Exception as exc:  # a display bug must not take the crawl down with it (the TaskGroup would)
            print(f"sgcrawl: the live display failed ({exc!r}); the crawl goes on", file=sys.stderr)

    def close(self) -> None:
        """Take the display off the screen now (e.g. before ``os._exit``): cursor back, no debris."""
        if self._live is not None:
            self._live.stop()

    def renderable(self) -> RenderableType:
        """Sample the counters and build one frame."""
        stats, frontier, config = self.view.stats, self.view.frontier, self.view.config
        self.rates.sample(monotonic(), stats.stored, frontier.queued)
        recent = self.rates.recent()
        eta = self.rates.eta(frontier.max_pages, frontier.stored, frontier.queued, frontier.leased)
        fixed = 9 + bool(frontier.max_pages) + bool(stats.errors) + (self.verbose and bool(stats.skipped))
        room = max(self.console.size.height - fixed, 1)  # a frame taller than the screen cannot be redrawn
        rows, n_hosts, fetching = host_rows(stats, frontier, self.view.lanes, min(20 if self.verbose else 8, room))
        parts: list[RenderableType] = [
            Text(f"sgcrawl · {config.crawl.db} · Ctrl-C stops cleanly (run again to resume)", style="dim"),
            Text.assemble(
                ("stored ", "dim"), (f"{stats.stored:,}", "bold green"),
                (f" (failed {stats.failed:,})", "red" if stats.failed else "dim"),
                ("   queued ", "dim"), (f"{frontier.queued:,}", "bold"), ("   in flight ", "dim"), (f"{fetching:,}", "bold"),
                (f" (leased {frontier.leased:,})", "dim"), ("   skipped ", "dim"), (f"{sum(stats.skipped.values()):,}", "bold"),
                ("   retries ", "dim"), f"{stats.retries:,}"),
            Text.assemble(
                (f"{recent:,.1f}" if recent is not None else UNKNOWN, "bold cyan"), (" pages/s recent   ", "dim"),
                f"{stats.rate():,.1f}", (" avg   ", "dim"), _size(stats.bytes), ("   elapsed ", "dim"),
                _duration(stats.elapsed), ("   ETA ", "dim"), (_duration(eta), "bold"))]
        if frontier.max_pages:
            done = round(50 * min(frontier.stored / frontier.max_pages, 1.0))
            parts.append(Text.assemble(("━" * done, "magenta"), ("─" * (50 - done), "bright_black"),
                                       (f" {frontier.stored:,} / {frontier.max_pages:,} pages (--max-pages)", "dim")))
        parts.append(self._hosts_table(rows, n_hosts))
        if stats.errors:
            parts.append(Text.assemble(("errors  ", "bold red"), _kinds(stats.errors, 12 if self.verbose else 5)))
        if self.verbose and stats.skipped:
            parts.append(Text.assemble(("skipped ", "bold"), _kinds(stats.skipped, 12)))
        return Group(*parts)

    @staticmethod
    def _hosts_table(rows: list[HostRow], n_hosts: int) -> Text:
        """The host table as aligned text: a rich ``Table`` costs ~20x more to draw, on the crawl's loop."""
        cells = [(_cut(r.origin, 40), str(r.in_flight), f"{r.queued:,}", f"{r.delay:g}s", r.why, r.last, str(r.throttled),
                  r.robots, r.blocked) for r in rows]
        widths = [max([len(name), *(len(c[i]) for c in cells)]) for i, (name, _) in enumerate(_COLUMNS)]
        more = f" (busiest {len(rows)} of {n_hosts:,})" if n_hosts > len(rows) else ""
        text = Text(no_wrap=True, overflow="crop")
        text.append(f"hosts{more}\n", style="bold")
        text.append(_row([name for name, _ in _COLUMNS], widths) + "\n", style="bold")
        text.append("─" * (sum(widths) + 2 * (len(widths) - 1)))
        for r, c in zip(rows, cells):
            text.append("\n")
            for i, (cell, width) in enumerate(zip(c, widths)):
                text.append(_pad(cell, width, _COLUMNS[i][1]) + ("  " if i < len(c) - 1 else ""), style=_style(i, r))
        return text


_COLUMNS = (("host", "<"), ("in flight", ">"), ("queued", ">"), ("delay", ">"), ("why", "<"), ("last", ">"),
            ("429/503", ">"), ("robots", "<"), ("blocked", ">"))


def _style(column: int, r: HostRow) -> str:
    """Draw the eye to what slows a host down (why, 429/503) or fails (last status)."""
    if column == 4:
        return "yellow" if r.why == "back-off" or r.why.startswith("Retry-After") else ""
    if column == 5:
        return "red" if r.last != UNKNOWN and not (r.last.isdigit() and r.last[0] in "123") else ""
    return "yellow" if column == 6 and r.throttled else ""


def _pad(cell: str, width: int, align: str) -> str:
    return cell.ljust(width) if align == "<" else cell.rjust(width)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(_pad(c, w, a) for c, w, (_, a) in zip(cells, widths, _COLUMNS))


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
