"""Crawl counters: bumped by the stages, read on a timer by the progress display.

Progress observes, never drives: nothing here schedules, waits or prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import monotonic

from .models import Outcome, Skip, Task

_ROBOTS = (Skip.ROBOTS, Skip.ROBOTS_UNAVAILABLE)

__all__ = ["Stats"]


@dataclass(slots=True)
class Stats:
    """Counters of this run (not of earlier runs of a resumed crawl)."""

    started: float = field(default_factory=monotonic)
    fetched: int = 0  # fetch attempts finished (the watchdog's measure of progress)
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    retries: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    last_status: dict[str, str] = field(default_factory=dict)  # origin -> last HTTP status, or error kind
    robots_blocked: Counter[str] = field(default_factory=Counter)  # origin -> URLs robots.txt kept us from

    def gathered(self, stored: Sequence[Outcome], skipped: Sequence[tuple[Task, str]], aliases: int) -> None:
        self.stored += len(stored)
        for o in stored:
            r = o.result
            self.bytes += o.size
            self.last_status[r.task.origin] = str(r.status) if r.status is not None else (r.error or "?")
            if r.error is not None:
                self.failed += 1
                self.errors[r.error] += 1
        for task, reason in skipped:
            self.link_skipped(task.origin, reason)
        if aliases:
            self.skipped["redirect"] += aliases

    def link_skipped(self, origin: str, reason: str) -> None:
        """A URL recorded as skipped: at admission (scope, filter, depth, robots...) or after a fetch."""
        self.skipped[reason] += 1
        if reason in _ROBOTS:
            self.robots_blocked[origin] += 1

    @property
    def elapsed(self) -> float:
        return monotonic() - self.started

    def rate(self) -> float:
        """Pages stored per second since the start of this run."""
        return self.stored / max(self.elapsed, 1e-9)
