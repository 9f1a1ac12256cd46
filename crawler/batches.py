"""Taking work off a queue in batches, for the stages that pay per call (parse, store)."""

from __future__ import annotations

import asyncio
from typing import TypeVar

__all__ = ["take_batch"]

T = TypeVar("T")


async def take_batch(queue: asyncio.Queue[T | None], limit: int) -> tuple[list[T], bool]:
    """Wait for one item, then take what else is waiting, up to ``limit`` items.

    Batches grow under load and stay at one item when work trickles in, so nothing waits for
    others to arrive. Returns (items, ended): ``ended`` once the ``None`` end marker was taken;
    nothing after the marker is taken.
    """
    batch: list[T] = []
    item = await queue.get()
    while item is not None:
        batch.append(item)
        if len(batch) >= limit or queue.empty():
            break
        item = queue.get_nowait()
    return batch, item is None
