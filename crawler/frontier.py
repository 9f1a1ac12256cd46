"""The frontier: the durable set of URLs to crawl, and the scheduler that scatters them.

What it owns: table ``urls`` (every discovered URL, once), the dedupe set, one queue per
origin, and the politeness lanes (:mod:`crawler.politeness`) it consults when it hands out
work. What it may touch: the crawl database connection, inside the gatherer's transaction for
writes. It never fetches, parses or stores pages.

Leases: a URL handed out by :meth:`lease` stays leased until the gatherer acks it with
:meth:`commit_batch` (stored or skipped) or a fetch worker gives it back with :meth:`release`
(retry later). Nothing is written at lease time: a leased URL is still ``queued`` on disk, so
a crash puts every leased URL back in the queue by itself. "Finished" means nothing queued
and nothing leased; an empty lease only means "nothing ready now".

Memory stays bounded: each origin keeps a window of at most ``WINDOW`` tasks in memory and a
count of the rest, which it reads back from disk in id order (roughly breadth-first).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from time import monotonic
from typing import Protocol

import aiosqlite

from .models import Task
from .politeness import Lanes
from .robots_cache import RobotsCache
from .scope import Admission, next_chain
from .seen import SeenFilter, fingerprint
from .stats import Stats
from .store import QUEUED, SKIPPED, STORED, Step, in_thread, insert_rows, rows_insert, select_in
from .urls import origin_of

__all__ = ["Frontier", "SqliteFrontier", "ResumeState"]

WINDOW = 256  # tasks per origin kept in memory
# A window is topped up from disk in the background once it runs this low, so that the
# scheduler never waits for a read (which queues behind the gatherer's commit: ~50 ms).
LOW_WATER = WINDOW // 4
_INSERT = rows_insert("INSERT INTO urls (id, url, origin, depth, parent, state, reason, chain, admitted, fp) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# Admitted URLs with a query, for the query-variant trap counts of a resumed crawl (a partial
# index serves it, so it reads only those rows).
_QUERY_URLS = "SELECT url FROM urls WHERE admitted = 1 AND depth > 0 AND instr(url, '?') > 0"


class Frontier(Protocol):
    """The scheduler interface every backend implements (SQLite now, Redis later)."""

    lanes: Lanes
    wakeup: asyncio.Event  # set whenever lease() may have something new to hand out

    async def add_seeds(self, urls: Sequence[str]) -> int: ...
    async def add(self, found: Sequence[tuple[Task, Sequence[str]]]) -> None: ...
    async def claim(self, url: str) -> bool: ...
    async def lease(self, limit: int) -> list[Task]: ...
    def release(self, task: Task, delay: float) -> None: ...
    async def commit_batch(self, commit: Callable[[Sequence[Step]], Awaitable[None]], pages: Step,
                           claimed: Sequence[tuple[str, Task, str]], found: Sequence[tuple[Task, Sequence[str]]],
                           stored: Sequence[Task], skipped: Sequence[tuple[Task, str]]) -> None: ...
    def next_ready_in(self) -> float | None: ...
    @property
    def finished(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What the database already held when the crawl opened it."""

    discovered: int
    stored: int
    queued: int


class _Queue:
    """One origin's queue: an in-memory window over its queued rows, plus due retries."""

    __slots__ = ("window", "pending", "cursor", "retries", "due", "blocked", "refilling")

    def __init__(self) -> None:
        self.window: deque[Task] = deque()
        self.pending = 0  # queued rows on disk with id > cursor, not yet in the window
        self.cursor = 0  # highest id in the window (read from disk, or put there when queued)
        self.retries: list[tuple[float, int, Task]] = []  # (not_before, seq, task) heap
        self.due: float | None = None  # when its live entry in the ready heap is due (None: none)
        self.blocked = False  # waiting for an in-flight slot of its lane
        self.refilling = False  # a read of its next rows is under way

    def has_work(self) -> bool:
        return bool(self.window or self.pending > 0 or self.retries)


class SqliteFrontier:
    """The embedded frontier: table ``urls`` of the crawl database."""

    def __init__(self, db: aiosqlite.Connection, admission: Admission, lanes: Lanes,
                 max_pages: int | None = None, robots: RobotsCache | None = None, stats: Stats | None = None) -> None:
        self.db = db
        self.admission = admission
        self.robots = robots  # when a link's origin has known rules, a disallowed link is skipped at once
        self.stats = stats  # counts links skipped at admission, for the display
        self.lanes = lanes
        lanes._on_free = self._on_free
        self.max_pages = max_pages
        self.wakeup = asyncio.Event()
        self._seen = SeenFilter()
        self._next_id = 1
        self._queues: dict[str, _Queue] = {}
        self._heap: list[tuple[float, int, str]] = []  # (ready_at, seq, origin)
        self._seq = itertools.count()
        # Makes "check the dedupe set, confirm on disk, insert" atomic for each adder.
        self._lock = asyncio.Lock()
        self.queued = 0  # not leased, waiting (window + on disk + retries)
        self.leased = 0
        self.stored = 0
        self.producers = 0  # sources besides pages that may still add URLs (sitemap discovery)
        self._refills: set[asyncio.Task[None]] = set()
        self._failed: BaseException | None = None  # a background read's error, raised by lease()

    async def open(self) -> ResumeState:
        """Read what the database already holds: per-origin counts, in one scan.

        No URL is read, and the dedupe filter's fingerprints are loaded afterwards by
        :meth:`load_seen`, while the crawl runs: a resumed crawl of a million URLs starts at once.
        """
        async with self.db.execute("SELECT COALESCE(MAX(id), 0), COUNT(*) FROM urls") as cur:
            max_id, discovered = await cur.fetchone()  # type: ignore[misc]
        self._next_id = max_id + 1
        self._seen.complete = discovered == 0
        admitted: dict[str, int] = {}
        async with self.db.execute("SELECT origin, SUM(state = 0), SUM(state = 1), SUM(admitted = 1 AND depth > 0) "
                                   "FROM urls GROUP BY origin") as cur:
            for origin, queued, stored, admitted[origin] in await cur.fetchall():
                self.stored += stored
                if queued:
                    self._queue(origin).pending = queued
                    self.queued += queued
                    self._schedule(origin, 0.0)
        async with self.db.execute(_QUERY_URLS) as cur:
            self.admission.preload(admitted, [row[0] for row in await cur.fetchall()])
        return ResumeState(discovered=discovered, stored=self.stored, queued=self.queued)

    async def load_seen(self) -> None:
        """Load the fingerprints of every URL already discovered (a resumed crawl), in chunks
        so the event loop keeps fetching; until done, the filter answers "maybe", never "new"."""
        if self._seen.complete:
            return
        async with self.db.execute("SELECT fp FROM urls") as cur:
            while rows := await cur.fetchmany(50_000):
                self._seen.load(row[0] for row in rows)
        self._seen.complete = True

    # -- adding ---------------------------------------------------------------------------

    async def claim(self, url: str) -> bool:
        """Mark ``url`` as discovered now; False if the crawl knew it (a redirect hop must not refetch it)."""
        async with self._lock:
            return bool(await self._fresh([url]))

    async def add_seeds(self, urls: Sequence[str]) -> int:
        """Queue seeds at depth 0. Seeds skip --include/--exclude: they are always crawled."""
        async with self._lock:
            rows = [self._row(url, fp, 0, None, QUEUED, None) for url, fp in await self._fresh(urls)]
            await self._write(rows)
        return len(rows)

    async def add(self, found: Sequence[tuple[Task, Sequence[str]]]) -> None:
        """Record links found on pages: new ones are queued or skipped with a reason.

        Dedupe is on the plain canonical string, before anything is built for a link: most
        links on a page were seen before. The lock makes check-and-insert atomic: two pages
        (or a page and a sitemap) finding the same link cannot both add it.
        """
        await self._add(_first_found(found))

    async def add_discovered(self, urls: Iterable[str], depth: int) -> None:
        """Record URLs found elsewhere than on a page (sitemaps): admitted like links, no parent."""
        await self._add(dict.fromkeys(urls, (None, depth)))

    async def _add(self, where: dict[str, tuple[Task | None, int]]) -> None:
        async with self._lock:
            await self._write(await self._new_rows(where))

    async def _new_rows(self, where: dict[str, tuple[Task | None, int]]) -> list[tuple]:
        """Rows for the URLs of ``where`` (URL -> (parent, depth), in the order found) that
        the crawl has never seen: queued, or skipped with a reason. The caller holds the lock."""
        return [self._admit(url, fp, *where[url]) for url, fp in await self._fresh(where)]

    async def _fresh(self, urls: Iterable[str]) -> list[tuple[str, int]]:
        """The URLs among ``urls`` the crawl has never discovered, with their fingerprints,
        now recorded as discovered. "Maybe seen" answers are confirmed on disk, in one query."""
        new: list[tuple[str, int]] = []
        maybe: dict[str, int] = {}
        seen = self._seen
        for url in urls:
            verdict, fp = seen.check(url)
            if verdict == SeenFilter.NEW:
                seen.add(url, fp)
                new.append((url, fp))
            elif verdict == SeenFilter.MAYBE:
                maybe[url] = fp
        if maybe:
            known = await self._on_disk(list(maybe))
            for url, fp in maybe.items():
                if url in known:
                    seen.remember(url)
                else:  # a fingerprint collision: the URL is new after all
                    seen.add(url, fp)
                    new.append((url, fp))
        return new

    async def _on_disk(self, urls: list[str]) -> set[str]:
        return await in_thread(self.db, _known, urls)

    def _admit(self, url: str, fp: int, parent: Task | None, depth: int) -> tuple:
        """The row of a new URL: queued, or skipped with the first reason that applies."""
        origin = origin_of(url)
        reason = None
        robots = self.robots
        if robots is not None:  # first: a disallowed URL must not use up the host's budget
            rules = robots.known(origin)
            if rules is not None and not rules.allowed(url):
                reason = robots.skip_reason(origin)
        chain = 0 if parent is None else next_chain(parent.url, parent.chain, url)
        reason = reason or self.admission.check(url, depth, chain)
        if reason is not None and self.stats is not None:
            self.stats.link_skipped(origin, reason)
        return self._row(url, fp, depth, parent, QUEUED if reason is None else SKIPPED, reason, chain, origin)

    async def commit_batch(self, commit: Callable[[Sequence[Step]], Awaitable[None]], pages: Step,
                           claimed: Sequence[tuple[str, Task, str]], found: Sequence[tuple[Task, Sequence[str]]],
                           stored: Sequence[Task], skipped: Sequence[tuple[Task, str]]) -> None:
        """The gatherer's batch, in one transaction: ``pages`` (its step), then rows for URLs
        already claimed (redirect hops: ``(url, parent task, reason)``), then the links found
        on pages, then the acks of the leases (stored, or skipped with a reason)."""
        async with self._lock:
            rows = [self._row(url, 0, parent.depth, parent, SKIPPED, reason) for url, parent, reason in claimed]
            rows += await self._new_rows(_first_found(found))
            self._enqueue(rows)
            await commit([pages, partial(_insert, rows), partial(_ack, stored, skipped)])
        self._acked(stored, skipped)

    def _row(self, url: str, fp: int, depth: int, parent: Task | None, state: int, reason: str | None,
             chain: int = 0, origin: str | None = None) -> tuple:
        # Ids are handed out here, by the only writer, so a task knows its row id without a read.
        self._next_id += 1
        return (self._next_id - 1, url, origin or origin_of(url), depth, parent and parent.id, state, reason,
                chain, state == QUEUED, fp or fingerprint(url))

    async def _write(self, rows: list[tuple]) -> None:
        """Insert new rows (the caller holds the lock) and queue the queued ones."""
        if rows:
            self._enqueue(rows)
            await in_thread(self.db, insert_rows, _INSERT, rows)

    def _enqueue(self, rows: list[tuple]) -> None:
        """Queue new queued rows in their origins' queues, *before* their insert is queued on
        the connection. A row goes straight into its window when nothing older waits on disk
        (no read needed); else it is counted, and a window refill (:meth:`_refill`) that runs
        first reads only older rows, one that runs after reads it too: the counts hold either way."""
        for id_, url, origin, depth, _, state, _, chain, _, _ in rows:
            if state != QUEUED:
                continue
            q = self._queue(origin)
            if q.pending == 0 and not q.refilling and len(q.window) < WINDOW:
                q.window.append(Task(id_, url, depth, origin, chain=chain))
                q.cursor = id_
            else:
                q.pending += 1
            self.queued += 1
            self._schedule(origin, 0.0)

    # -- scheduling -----------------------------------------------------------------------

    def _queue(self, origin: str) -> _Queue:
        q = self._queues.get(origin)
        if q is None:
            q = self._queues[origin] = _Queue()
        return q

    def _schedule(self, origin: str, at: float) -> None:
        """Put the origin in the ready heap at ``at`` (or when its lane allows), or move it
        earlier: an origin waiting for a retry must not keep new work waiting that long. The
        entry it had stays in the heap, stale, and is dropped when it comes out."""
        q = self._queues[origin]
        if q.blocked:
            return
        at = max(at, self.lanes.ready_at(origin))
        if q.due is None or at < q.due:
            q.due = at
            heapq.heappush(self._heap, (at, next(self._seq), origin))
            self.wakeup.set()

    def _on_free(self, origin: str) -> None:
        q = self._queues.get(origin)
        if q is not None and q.blocked:
            q.blocked = False
            if q.has_work():
                self._schedule(origin, 0.0)
        self.wakeup.set()

    def next_ready_in(self) -> float | None:
        """Seconds until the earliest scheduled origin may be ready, None if none is scheduled."""
        return max(self._heap[0][0] - monotonic(), 0.0) if self._heap else None

    def budget(self) -> int:
        """How many more URLs may be leased under --max-pages (a large number when unlimited)."""
        return 1 << 30 if self.max_pages is None else max(0, self.max_pages - self.stored - self.leased)

    async def lease(self, limit: int) -> list[Task]:
        """Up to ``limit`` tasks whose origins are ready now; each takes an in-flight slot."""
        if self._failed is not None:
            raise self._failed
        out: list[Task] = []
        limit = int(min(limit, self.budget()))
        while len(out) < limit and self._heap and self._heap[0][0] <= monotonic():
            at, _, origin = heapq.heappop(self._heap)
            q = self._queues[origin]
            if at != q.due:
                continue  # stale: the origin was moved earlier, and that entry came out first
            q.due = None
            if len(q.window) < LOW_WATER and q.pending > 0 and not q.refilling:
                self._start_refill(origin, q)  # it schedules the origin when its rows are in
            now = monotonic()
            due_retry = bool(q.retries) and q.retries[0][0] <= now
            if not (q.window or due_retry):
                if q.retries:
                    self._schedule(origin, q.retries[0][0])
                continue
            if not self.lanes.try_reserve(origin, now):
                if self.lanes.at_cap(origin):
                    q.blocked = True  # _on_free re-schedules it
                else:
                    self._schedule(origin, 0.0)
                continue
            task = heapq.heappop(q.retries)[2] if due_retry else q.window.popleft()
            self.queued -= 1
            self.leased += 1
            out.append(task)
            if q.has_work():
                self._schedule(origin, 0.0)
        return out

    def _start_refill(self, origin: str, q: _Queue) -> None:
        q.refilling = True
        task = asyncio.create_task(self._refill(origin, q))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _refill(self, origin: str, q: _Queue) -> None:
        """Read the origin's next queued rows into its window, then schedule it."""
        # No lock: inserts are counted before they are queued on the connection (_enqueue).
        try:
            async with self.db.execute(
                "SELECT id, url, depth, chain FROM urls WHERE origin = ? AND state = 0 AND id > ? ORDER BY id LIMIT ?",
                (origin, q.cursor, WINDOW - len(q.window)),
            ) as cur:
                rows = await cur.fetchall()
        except Exception as exc:  # the scheduler raises it (a database that failed ends the crawl)
            self._failed = exc
            self.wakeup.set()
            return
        finally:
            q.refilling = False
        for id_, url, depth, chain in rows:
            q.window.append(Task(id_, url, depth, origin, chain=chain))
        if rows:
            q.cursor = rows[-1][0]
        q.pending -= len(rows)
        if q.has_work():
            self._schedule(origin, 0.0)

    async def settle(self) -> None:
        """Wait for window reads still under way: the connection must outlive them."""
        if self._refills:
            await asyncio.wait(self._refills)

    def release(self, task: Task, delay: float) -> None:
        """Give a leased task back for another attempt, not before ``delay`` seconds from now."""
        q = self._queue(task.origin)
        heapq.heappush(q.retries, (monotonic() + delay, next(self._seq), replace(task, attempt=task.attempt + 1)))
        self.leased -= 1
        self.queued += 1
        self._schedule(task.origin, q.retries[0][0])

    def _acked(self, stored: Sequence[Task], skipped: Sequence[tuple[Task, str]]) -> None:
        self.leased -= len(stored) + len(skipped)
        self.stored += len(stored)
        self.wakeup.set()

    @property
    def finished(self) -> bool:
        if self.leased or self.producers:
            return False
        return self.queued == 0 or self.budget() <= 0

    def queued_by_origin(self) -> Iterable[tuple[str, int]]:
        """(origin, queued count) for the progress display."""
        for origin, q in self._queues.items():
            yield origin, len(q.window) + max(q.pending, 0) + len(q.retries)


def _first_found(found: Sequence[tuple[Task, Sequence[str]]]) -> dict[str, tuple[Task | None, int]]:
    """URL -> (parent, depth) of links found on pages: the first page to find a link is its parent."""
    where: dict[str, tuple[Task | None, int]] = {}
    for parent, links in found:
        at = (parent, parent.depth + 1)
        for url in links:
            where.setdefault(url, at)
    return where


def _known(conn: sqlite3.Connection, urls: list[str]) -> set[str]:
    """The URLs among ``urls`` in table ``urls``. (A URL not ASCII is no canonical one, but
    may come from a caller: it is looked up alone, as JSON may not carry it intact.)"""
    plain = [url for url in urls if url.isascii()]
    known = {url for (url,) in select_in(conn, "SELECT url FROM urls WHERE url IN (SELECT value FROM json_each(?))", plain)}
    if len(plain) < len(urls):
        known.update(url for url in urls if not url.isascii()
                     and conn.execute("SELECT 1 FROM urls WHERE url = ?", (url,)).fetchone())
    return known


# Steps of a transaction: they run in the connection's thread (Store.commit), on plain values.

def _insert(rows: list[tuple], conn: sqlite3.Connection) -> None:
    insert_rows(conn, _INSERT, rows)


def _ack(stored: Sequence[Task], skipped: Sequence[tuple[Task, str]], conn: sqlite3.Connection) -> None:
    if stored:
        conn.execute(f"UPDATE urls SET state = {STORED} WHERE id IN (SELECT value FROM json_each(?))",
                     (json.dumps([t.id for t in stored]),))
    if skipped:
        conn.executemany(f"UPDATE urls SET state = {SKIPPED}, reason = ? WHERE id = ?",
                         [(reason, t.id) for t, reason in skipped])
