"""The gatherer: the single writer. Dedupes, stores, queues new links, acks leases.

Each batch is one transaction, in this order: store the pages, record the links found on
them, then ack the leases. Link hygiene is decided here, where headers and page meet:
``X-Robots-Tag: nofollow`` drops a page's links (meta robots ``nofollow`` already did in the
parser); ``noindex`` in either flags the stored page; a ``<meta http-equiv=refresh>`` target is
followed like a redirect, even from a nofollow page. A crash before COMMIT loses the whole batch, and the leases were
never acked, so the URLs are fetched again on resume: a page may be re-fetched, never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .batches import take_batch
from .frontier import Frontier
from .models import Outcome, Skip, Task
from .parse import robots_directives
from .stats import Stats
from .store import Store

__all__ = ["Gatherer", "DONE"]

DONE = None  # the end-of-stream marker on the gather queue
BATCH = 256


class Gatherer:
    def __init__(self, store: Store, frontier: Frontier, stats: Stats, robots_token: str = "") -> None:
        self.store = store
        self.frontier = frontier
        self.stats = stats
        self.robots_token = robots_token  # our product token, for user-agent-specific X-Robots-Tag

    async def run(self, queue: asyncio.Queue[Outcome | None]) -> None:
        """Consume outcomes until DONE, writing them in batches as they come."""
        while True:
            batch, ended = await take_batch(queue, BATCH)
            if batch:
                await self.write(batch)
            if ended:
                return

    async def write(self, batch: Sequence[Outcome]) -> None:
        stored: list[Outcome] = []
        skipped: list[tuple[Task, str]] = []
        found: list[tuple[Task, Sequence[str]]] = []
        aliases: list[tuple[str, Task, str]] = []
        noindex: set[int] = set()
        for o in batch:
            r = o.result
            aliases.extend((url, r.task, Skip.REDIRECT) for url in r.aliases)
            if r.skip is not None:
                skipped.append((r.task, r.skip))
                continue
            stored.append(o)
            if o.page is not None:
                links, index = self._hygiene(o)
                if links:
                    found.append((r.task, links))
                if not index:
                    noindex.add(r.task.id)
        await self.frontier.commit_batch(self.store.commit, self.store.pages_step(stored, frozenset(noindex)),
                                          aliases, found, [o.result.task for o in stored], skipped)
        self.stats.gathered(stored, skipped, len(aliases))

    def _hygiene(self, o: Outcome) -> tuple[Sequence[str], bool]:
        """The links to follow from a parsed page, and whether it may be indexed."""
        page = o.page
        assert page is not None
        tags = [v for k, v in o.result.headers if k.lower() == "x-robots-tag"]
        directives = robots_directives(tags, self.robots_token) if tags else frozenset()
        links: Sequence[str] = () if "nofollow" in directives else page.links
        if page.refresh is not None:
            links = (*links, page.refresh)
        meta = page.meta_robots or ""
        index = "noindex" not in directives and "noindex" not in meta and "none" not in meta
        return links, index
