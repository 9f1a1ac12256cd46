"""Wires the stages: scheduler -> fetch workers -> parse workers -> gatherer.

Every task lives in one ``asyncio.TaskGroup``. Work flows forward through bounded queues
(backpressure); links found on pages go back into the persistent frontier, never into a
bounded queue, so the loop cannot deadlock. The crawl ends when the frontier says so (nothing
queued, nothing leased); then shutdown flows downstream, stage by stage, with end markers.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import monotonic
from typing import Protocol

from .batches import take_batch
from .cancels import Cancels
from .config import Config
from .discover import discover_sitemaps
from .fetch import Fetcher
from .frontier import ResumeState, SqliteFrontier
from .gather import BATCH as GATHER_BATCH
from .gather import DONE, Gatherer
from .models import Error, FetchResult, Outcome, Task
from .netguard import NetPolicy
from .parse_stage import BATCH as PARSE_BATCH
from .parse_stage import ParseStage
from .politeness import Lanes
from .progress import PlainProgress
from .robots import product_token
from .robots_cache import RobotsCache
from .scope import Admission, Scope
from .stats import Stats
from .store import StorageError, Store, exclusive, open_db, remove_db

__all__ = ["Crawl", "CrawlResult", "CrawlView", "Progress", "ProgressFactory", "StorageError", "remove_db", "run_crawl"]


@dataclass(frozen=True, slots=True)
class CrawlResult:
    db: Path
    resumed: ResumeState | None  # what an earlier run had left, None for a new crawl
    stats: Stats
    reason: str  # why the crawl ended: done, max_pages, interrupted
    changed: tuple[str, ...] = ()  # settings that differ from the run being resumed


def settings_of(config: Config) -> dict[str, object]:
    """The settings a crawl records, to tell a resumed run what changed."""
    flat = {f"{section}.{key}": value for section in ("crawl", "fetch", "robots", "parse")
            for key, value in asdict(getattr(config, section)).items() if key not in ("db", "seeds")}
    return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v for k, v in flat.items()}


def _changes(before: dict[str, object], now: dict[str, object]) -> tuple[str, ...]:
    return tuple(f"{k}: {before[k]!r} -> {now[k]!r}" for k in now if k in before and before[k] != now[k])


class Crawl:
    """One run of a crawl over one database. :meth:`stop` ends it early, cleanly."""

    #: seconds in-flight requests get to finish after :meth:`stop` before they are abandoned
    grace = 5.0

    def __init__(self, config: Config, seeds: list[str], log: Callable[[str], None], fresh: bool = False,
                 progress: ProgressFactory | None = None) -> None:
        self.config = config
        self.seeds = seeds
        self.fresh = fresh  # discard any earlier crawl in the database first
        # The display: built once the crawl's counters exist; it reads them on its own timer.
        self.progress = progress or (lambda view: PlainProgress(view.stats, view.frontier, log))
        self.log = log
        self.stats = Stats()
        self.stopping = False
        # The watchdog's patience: longer than any single request may legitimately take.
        self.stall_after = max(60.0, 2 * config.fetch.timeout)
        self._fetching = 0
        self._frontier: SqliteFrontier | None = None
        self._inflight: dict[asyncio.Task[None], float] = {}  # fetch worker -> when its fetch started
        self._stalled = Cancels()  # workers whose fetch the watchdog cancelled

    def stop(self) -> None:
        """Stop scheduling; in-flight requests get :attr:`grace` seconds; then flush and end."""
        self.stopping = True
        if self._frontier is not None:
            self._frontier.wakeup.set()

    async def run(self) -> CrawlResult:
        """Run the crawl. Raises StorageError when the database cannot be used or written."""
        with exclusive(self.config.crawl.db):
            if self.fresh:
                remove_db(self.config.crawl.db)
            try:
                return await self._run()
            except* sqlite3.Error as group:
                leaf = _leaf(group)
                raise StorageError(f"{self.config.crawl.db}: {leaf} (what was stored so far is safe; "
                                   "fix the cause and run again to resume)") from leaf

    async def _run(self) -> CrawlResult:
        cfg = self.config
        db = await open_db(cfg.crawl.db)
        try:
            store = Store(db, cfg.crawl.store_bodies)
            meta = await store.get_meta()
            all_seeds = list(dict.fromkeys([*meta.get("seeds", []), *self.seeds]))
            scope = Scope(cfg.crawl.scope, all_seeds)
            admission = Admission(scope, cfg.crawl.include, cfg.crawl.exclude, cfg.crawl.max_depth,
                                  cfg.crawl.max_url_length, max_pages_per_host=cfg.crawl.max_pages_per_host)
            lanes = Lanes(cfg.fetch.per_host, cfg.fetch.delay, auto_throttle=cfg.fetch.auto_throttle)
            frontier = self._frontier = SqliteFrontier(db, admission, lanes, cfg.crawl.max_pages, stats=self.stats)
            fetcher = Fetcher(cfg.fetch, lanes, in_scope=scope.allows, claim=frontier.claim,
                              policy=NetPolicy.from_seeds(all_seeds, cfg.fetch.allow_private),
                              strip_tracking=cfg.crawl.strip_tracking, max_url_length=cfg.crawl.max_url_length)
            if cfg.robots.obey:
                frontier.robots = fetcher.robots = RobotsCache(
                    cfg.fetch.user_agent, fetcher.fetch_resource, lanes,
                    max_crawl_delay=cfg.robots.max_crawl_delay, refresh_after=cfg.robots.refresh_after)
            before = await frontier.open()
            resumed = before if before.discovered else None
            settings = settings_of(cfg)
            changed = _changes(meta.get("settings", {}), settings) if resumed else ()
            await store.set_meta(seeds=all_seeds, status="running", settings=settings)
            await frontier.add_seeds(self.seeds)
            async with fetcher, ParseStage(cfg.parse.workers, cfg.crawl.strip_tracking, cfg.crawl.store_bodies) as parser:
                await self._run_stages(frontier, fetcher, parser, Gatherer(store, frontier, self.stats, product_token(cfg.fetch.user_agent)))
            if fetcher.robots is not None:
                await store.set_meta(robots={o: asdict(i) for o, i in fetcher.robots.info.items()})
            await store.set_meta(hosts=_host_facts(lanes, meta.get("hosts", {})))
            reason = "interrupted" if self.stopping else "max_pages" if frontier.queued else "done"
            await store.set_meta(status="finished" if reason == "done" else reason)
            return CrawlResult(cfg.crawl.db, resumed, self.stats, reason, changed)
        finally:
            if self._frontier is not None:
                await self._frontier.settle()
            await db.close()

    async def _run_stages(self, frontier: SqliteFrontier, fetcher: Fetcher, parser: ParseStage,
                          gatherer: Gatherer) -> None:
        n_fetch = self.config.fetch.concurrency
        fetch_q: asyncio.Queue[Task | None] = asyncio.Queue(maxsize=n_fetch)
        parse_q: asyncio.Queue[FetchResult | None] = asyncio.Queue(maxsize=n_fetch)
        # Small on purpose: what waits here is fetched but not yet committed, and is fetched
        # again after a crash. One gatherer batch of room is enough to keep it busy.
        gather_q: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=GATHER_BATCH)
        progress = self.progress(CrawlView(self.stats, frontier, frontier.lanes, self.config))
        async with asyncio.TaskGroup() as tg:
            progress_task = tg.create_task(progress.run())
            if fetcher.robots is not None and self.config.crawl.sitemaps and self.seeds:
                tg.create_task(self._sitemaps(fetcher, frontier))
            fetchers = [tg.create_task(self._fetch_worker(fetcher, frontier, fetch_q, parse_q)) for _ in range(n_fetch)]
            parsers = [tg.create_task(self._parse_worker(parser, parse_q, gather_q)) for _ in range(parser.lanes)]
            gathering = tg.create_task(gatherer.run(gather_q))
            watchdog = tg.create_task(self._watchdog())
            tg.create_task(frontier.load_seen())
            await self._schedule(frontier, fetch_q)
            # Shutdown flows downstream: each stage drains, then tells the next one it is done.
            while self.stopping and not fetch_q.empty():
                fetch_q.get_nowait()  # leased but never started: still queued on disk
            for _ in fetchers:
                fetch_q.put_nowait(None)
            _, late = await asyncio.wait(fetchers, timeout=self.grace if self.stopping else None)
            if late:
                self.log(f"abandoning {len(late)} requests still in flight after {self.grace:g} s "
                         "(they stay queued for the next run)")
                for task in late:
                    task.cancel()
                await asyncio.wait(late)
            for _ in parsers:
                await parse_q.put(None)
            await asyncio.gather(*parsers)
            await gather_q.put(DONE)
            await gathering
            progress_task.cancel()
            watchdog.cancel()

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
        # Top up in batches: every finished fetch wakes us, but leasing one task at a time
        # costs a scheduler round per page. Lease when an eighth of the slots are free, or
        # at once when the workers have nothing left queued.
        low_water = max(1, cap // 8)
        while not (frontier.finished or self.stopping):
            frontier.wakeup.clear()
            room = min(cap - self._fetching, frontier.budget())
            timeout = None  # no room (or no budget): only a finished fetch or an ack can change that
            if room >= low_water or (room > 0 and fetch_q.empty()):
                tasks = await frontier.lease(room)
                self._fetching += len(tasks)
                for task in tasks:
                    fetch_q.put_nowait(task)  # never blocks: at most `cap` tasks are out
                if tasks:
                    continue
                # Nothing ready: sleep until the next lane we know of becomes ready (politeness
                # delay, retry not-before), unless new links or a freed slot wake us first.
                timeout = frontier.next_ready_in()
            if frontier.finished or self.stopping:
                break
            try:
                async with asyncio.timeout(timeout):
                    await frontier.wakeup.wait()
            except TimeoutError:
                pass

    async def _fetch_worker(self, fetcher: Fetcher, frontier: SqliteFrontier,
                            fetch_q: asyncio.Queue[Task | None], parse_q: asyncio.Queue[FetchResult | None]) -> None:
        retries, backoff = self.config.fetch.retries, self.config.fetch.retry_backoff
        me = asyncio.current_task()
        assert me is not None
        while (task := await fetch_q.get()) is not None:
            started = self._inflight[me] = monotonic()
            try:
                result = await fetcher.fetch(task)
            except asyncio.CancelledError:
                # The watchdog's cancellation (requests have their own timeouts; it is the net
                # under them, so that a crawl can never hang on one) ends this request only.
                # (Not an asyncio.timeout per fetch: entering one looks the running loop up,
                # a getpid() system call on Python 3.11, for a deadline almost never used.)
                if not self._stalled.caught(me):
                    raise
                result = FetchResult(task, task.url, None, None, (), b"", time.time(),
                                     round((monotonic() - started) * 1000, 3), error=Error.STALLED,
                                     detail=f"no progress for {self.stall_after:g} s")
            finally:
                del self._inflight[me]
                self._fetching -= 1
                self.stats.fetched += 1
            if result.error in Error.TRANSIENT and task.attempt < retries:
                # Exponential back-off with jitter; the task waits in the frontier, not in a worker.
                delay = backoff * (2 ** task.attempt) * random.uniform(0.5, 1.5)
                if result.retry_after is not None:
                    delay = max(delay, min(result.retry_after, 300.0))
                self.stats.retries += 1
                # The hops this attempt claimed go with the task (see Task.claimed).
                frontier.release(replace(task, claimed=result.aliases) if result.aliases else task, delay)
                continue
            await parse_q.put(result)

    async def _watchdog(self) -> None:
        """Abandon requests when the whole crawl has made no progress for ``stall_after``."""
        last, since = -1, monotonic()
        while True:
            await asyncio.sleep(min(self.stall_after / 4, 5.0))
            now = monotonic()
            if self.stats.fetched != last:
                last, since = self.stats.fetched, now
                continue
            # A worker is in _inflight only while it awaits its fetch: a cancel lands there.
            stuck = [w for w, started in self._inflight.items() if now - started >= self.stall_after]
            if stuck and now - since >= self.stall_after:
                self.log(f"watchdog: no progress for {now - since:.0f} s; abandoning {len(stuck)} "
                         "stuck requests (retried, or recorded as 'stalled')")
                for worker in stuck:
                    self._stalled.cancel(worker)
                since = now

    async def _parse_worker(self, parser: ParseStage, parse_q: asyncio.Queue[FetchResult | None],
                            gather_q: asyncio.Queue[Outcome | None]) -> None:
        while True:
            batch, ended = await take_batch(parse_q, PARSE_BATCH)
            for outcome in await parser.parse(batch) if batch else ():
                await gather_q.put(outcome)
            if ended:
                return


@dataclass(frozen=True, slots=True)
class CrawlView:
    """What a progress display may read (never write): counters, queues, lanes, settings."""

    stats: Stats
    frontier: SqliteFrontier
    lanes: Lanes
    config: Config


class Progress(Protocol):
    async def run(self) -> None: ...


ProgressFactory = Callable[[CrawlView], Progress]


def _host_facts(lanes: Lanes, before: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per-origin politeness facts for the report, added to those of earlier runs."""
    facts = dict(before)
    for origin in lanes.origins():
        delay, why, throttled, paused = lanes.state(origin)
        old = facts.get(origin, {})
        facts[origin] = {"delay": round(delay, 3), "why": why,
                         "throttled": int(old.get("throttled", 0)) + throttled,  # type: ignore[call-overload]
                         "paused_s": round(float(old.get("paused_s", 0.0)) + paused, 3)}  # type: ignore[arg-type]
    return facts


def _leaf(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def run_crawl(config: Config, seeds: list[str], *, fresh: bool, log: Callable[[str], None]) -> CrawlResult:
    """Run (or resume) the crawl of ``config.crawl.db``; ``fresh`` discards an earlier one first."""
    return await Crawl(config, seeds, log, fresh).run()

