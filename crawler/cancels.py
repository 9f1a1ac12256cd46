"""Cancelling a task for one reason, and telling that cancellation apart from the crawl's own.

Two things end an await early without a timer of their own: a request's deadline (the
fetcher's sweeper, :mod:`crawler.fetch`) and the watchdog's stall net (:mod:`crawler.pipeline`).
Each cancels the task, and the task, catching ``CancelledError``, must go on only when that
reason, and no other, cancelled it (Ctrl-C or a failing TaskGroup must still end it).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Cancels"]


class Cancels:
    """The tasks cancelled for one reason, until each has caught its cancellation."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[Any]] = set()

    def cancel(self, task: asyncio.Task[Any]) -> None:
        """Cancel ``task`` for this reason (once: again before it caught it does nothing)."""
        if task not in self._pending:
            self._pending.add(task)
            task.cancel()

    def caught(self, task: asyncio.Task[Any]) -> bool:
        """In ``task``'s ``except CancelledError``: True when this reason alone cancelled it;
        the task is uncancelled and goes on. False: re-raise (someone else cancelled it too)."""
        if task not in self._pending:
            return False
        self._pending.discard(task)
        return task.uncancel() == 0
