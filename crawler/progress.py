"""Progress display: reads counters on a timer, never touches the hot path.

:class:`PlainProgress` prints one line every few seconds (no TTY, or ``--no-progress``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from .stats import Stats

__all__ = ["PlainProgress", "progress_line"]


class _Frontier(Protocol):
    queued: int
    leased: int


def progress_line(stats: Stats, frontier: _Frontier) -> str:
    skipped = sum(stats.skipped.values())
    return (f"[{stats.elapsed:7.1f}s] stored {stats.stored} (failed {stats.failed}) "
            f"queued {frontier.queued} in flight {frontier.leased} skipped {skipped} "
            f"| {stats.rate():.1f} pages/s | {stats.bytes / 1e6:.1f} MB")


class PlainProgress:
    def __init__(self, stats: Stats, frontier: _Frontier, log: Callable[[str], None], interval: float = 5.0) -> None:
        self.stats, self.frontier, self.log, self.interval = stats, frontier, log, interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.log(progress_line(self.stats, self.frontier))
