"""Crawl counters: bumped by the stages, read on a timer by the progress display.

Progress observes, never drives: nothing here schedules, waits or prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import monotonic

from .models import Outcome, Task

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

    def gathered(self, stored: Sequence[Outcome], skipped: Sequence[tuple[Task, str]], aliases: int) -> None:
        self.stored += len(stored)
        for o in stored:
            self.bytes += len(o.result.body)
            if o.result.error is not None:
                self.failed += 1
                self.errors[o.result.error] += 1
        for _, reason in skipped:
            self.skipped[reason] += 1
        if aliases:
            self.skipped["redirect"] += aliases

    @property
    def elapsed(self) -> float:
        return monotonic() - self.started

    def rate(self) -> float:
        """Pages stored per second since the start of this run."""
        return self.stored / max(self.elapsed, 1e-9)
