"""Wires the stages: scheduler -> fetch workers -> parse workers -> gatherer.

Every task lives in one ``asyncio.TaskGroup``. Work flows forward through bounded queues
(backpressure); links found on pages go back into the persistent frontier, never into a
bounded queue, so the loop cannot deadlock. The crawl ends when the frontier says so (nothing
queued, nothing leased); then shutdown flows downstream, stage by stage, with end markers.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import Config
from .discover import discover_sitemaps
from .fetch import Fetcher
from .frontier import ResumeState, SqliteFrontier
from .gather import DONE, Gatherer
from .models import Error, FetchResult, Outcome, Task
from .parse_stage import BATCH as PARSE_BATCH
from .parse_stage import ParseStage
from .politeness import Lanes
from .progress import PlainProgress
from .robots import product_token
from .robots_cache import RobotsCache
from .scope import Admission, Scope
from .stats import Stats
from .store import Store, open_db

__all__ = ["Crawl", "CrawlResult", "remove_db", "run_crawl"]


@dataclass(frozen=True, slots=True)
class CrawlResult:
    db: Path
    resumed: ResumeState | None  # what an earlier run had left, None for a new crawl
    stats: Stats
    reason: str  # why the crawl ended


def remove_db(path: Path) -> None:
    """Delete a crawl database and its WAL side files (``--fresh``)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class Crawl:
    """One run of a crawl over one database."""

    def __init__(self, config: Config, seeds: list[str], log: Callable[[str], None]) -> None:
        self.config = config
        self.seeds = seeds
        self.log = log
        self.stats = Stats()
        self._fetching = 0

    async def run(self) -> CrawlResult:
        cfg = self.config
        db = await open_db(cfg.crawl.db)
        try:
            store = Store(db)
            meta = await store.get_meta()
            all_seeds = list(dict.fromkeys([*meta.get("seeds", []), *self.seeds]))
            scope = Scope(cfg.crawl.scope, all_seeds)
            admission = Admission(scope, cfg.crawl.include, cfg.crawl.exclude, cfg.crawl.max_depth,
                                  cfg.crawl.max_url_length, max_pages_per_host=cfg.crawl.max_pages_per_host)
            lanes = Lanes(cfg.fetch.per_host, cfg.fetch.delay, auto_throttle=cfg.fetch.auto_throttle)
            frontier = SqliteFrontier(db, admission, lanes, cfg.crawl.max_pages)
            fetcher = Fetcher(cfg.fetch, lanes, in_scope=scope.allows, claim=frontier.claim,
                              strip_tracking=cfg.crawl.strip_tracking)
            if cfg.robots.obey:
                frontier.robots = fetcher.robots = RobotsCache(
                    cfg.fetch.user_agent, fetcher.fetch_resource, lanes,
                    max_crawl_delay=cfg.robots.max_crawl_delay, refresh_after=cfg.robots.refresh_after)
            before = await frontier.open()
            resumed = before if before.discovered else None
            await store.set_meta(seeds=all_seeds, status="running")
            await frontier.add_seeds(self.seeds)
            async with fetcher, ParseStage(cfg.parse.workers, cfg.crawl.strip_tracking) as parser:
                await self._run_stages(frontier, fetcher, parser, Gatherer(store, frontier, self.stats, product_token(cfg.fetch.user_agent)))
            if fetcher.robots is not None:
                await store.set_meta(robots={o: asdict(i) for o, i in fetcher.robots.info.items()})
            reason = "max_pages" if frontier.queued else "done"
            await store.set_meta(status="finished" if reason == "done" else "stopped")
            return CrawlResult(cfg.crawl.db, resumed, self.stats, reason)
        finally:
            await db.close()

    async def _run_stages(self, frontier: SqliteFrontier, fetcher: Fetcher, parser: ParseStage,
                          gatherer: Gatherer) -> None:
        n_fetch = self.config.fetch.concurrency
        fetch_q: asyncio.Queue[Task | None] = asyncio.Queue(maxsize=n_fetch)
        parse_q: asyncio.Queue[FetchResult | None] = asyncio.Queue(maxsize=n_fetch)
        gather_q: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=1024)
        progress = PlainProgress(self.stats, frontier, self.log)
        async with asyncio.TaskGroup() as tg:
            progress_task = tg.create_task(progress.run())
            if fetcher.robots is not None and self.config.crawl.sitemaps and self.seeds:
                tg.create_task(self._sitemaps(fetcher, frontier))
            fetchers = [tg.create_task(self._fetch_worker(fetcher, frontier, fetch_q, parse_q)) for _ in range(n_fetch)]
            parsers = [tg.create_task(self._parse_worker(parser, parse_q, gather_q)) for _ in range(parser.lanes)]
            gathering = tg.create_task(gatherer.run(gather_q))
            await self._schedule(frontier, fetch_q)
            # Shutdown flows downstream: each stage drains, then tells the next one it is done.
            for _ in fetchers:
                await fetch_q.put(None)
            await asyncio.gather(*fetchers)
            for _ in parsers:
                await parse_q.put(None)
            await asyncio.gather(*parsers)
            await gather_q.put(DONE)
            await gathering
            progress_task.cancel()

    async def _sitemaps(self, fetcher: Fetcher, frontier: SqliteFrontier) -> None:
        """Seed from sitemaps; the frontier is not finished while this may still add URLs."""
        assert fetcher.robots is not None
        frontier.producers += 1
        try:
            await discover_sitemaps(self.seeds, fetcher, fetcher.robots, frontier, self.log)
        finally:
            frontier.producers -= 1
            frontier.wakeup.set()

    async def _schedule(self, frontier: SqliteFrontier, fetch_q: asyncio.Queue[Task | None]) -> None:
        """Scatter: lease ready URLs while fetch workers are free; sleep until something changes."""
        cap = self.config.fetch.concurrency
        while not frontier.finished:
            frontier.wakeup.clear()
            room = cap - self._fetching
            if room > 0:
                tasks = await frontier.lease(room)
                self._fetching += len(tasks)
                for task in tasks:
                    fetch_q.put_nowait(task)  # never blocks: at most `cap` tasks are out
                if tasks:
                    continue
            if frontier.finished:
                break
            try:
                # Woken by new links, a free lane slot or an ack; the timeout is only the time at
                # which a lane we know about becomes ready (politeness delay, retry not-before).
                await asyncio.wait_for(frontier.wakeup.wait(), frontier.next_ready_in())
            except TimeoutError:
                pass

    async def _fetch_worker(self, fetcher: Fetcher, frontier: SqliteFrontier,
                            fetch_q: asyncio.Queue[Task | None], parse_q: asyncio.Queue[FetchResult | None]) -> None:
        retries, backoff = self.config.fetch.retries, self.config.fetch.retry_backoff
        while (task := await fetch_q.get()) is not None:
            try:
                result = await fetcher.fetch(task)
            finally:
                self._fetching -= 1
            if result.error in Error.TRANSIENT and task.attempt < retries:
                # Exponential back-off with jitter; the task waits in the frontier, not in a worker.
                delay = backoff * (2 ** task.attempt) * random.uniform(0.5, 1.5)
                if result.retry_after is not None:
                    delay = max(delay, min(result.retry_after, 300.0))
                self.stats.retries += 1
                frontier.release(task, delay)
                continue
            await parse_q.put(result)

    async def _parse_worker(self, parser: ParseStage, parse_q: asyncio.Queue[FetchResult | None],
                            gather_q: asyncio.Queue[Outcome | None]) -> None:
        while True:
            # Take what is waiting, up to a batch: batches grow under load and stay at one
            # page when the crawl is slow, so a page never waits for others to arrive.
            batch: list[FetchResult] = []
            item = await parse_q.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= PARSE_BATCH or parse_q.empty():
                    break
                item = parse_q.get_nowait()
            for outcome in await parser.parse(batch) if batch else ():
                await gather_q.put(outcome)
            if item is None:
                return


async def run_crawl(config: Config, seeds: list[str], *, fresh: bool, log: Callable[[str], None]) -> CrawlResult:
    """Run (or resume) the crawl of ``config.crawl.db``; ``fresh`` discards an earlier one first."""
    if fresh:
        remove_db(config.crawl.db)
    return await Crawl(config, seeds, log).run()

