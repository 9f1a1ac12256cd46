"""The parser stage: runs :func:`crawler.parse.parse_html` off the event loop.

Parsing is CPU work. With ``workers`` > 0 it runs in a pool of processes, so that the event
loop's core is left to fetching and storing and a second core does the parsing (link
resolution and canonicalization included: that is per-link work, the bulk of it). With 0 it
runs in the loop's process, for small crawls and machines with one core.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from .models import Error, FetchResult, Outcome, ParsedPage
from .parse import is_html

__all__ = ["ParseStage", "parse_jobs", "default_workers", "BATCH"]

BATCH = 32  # pages per call to a parse process
#: Only the first bytes of a body are parsed: a DOM costs ~38x the bytes of a link farm, and a
#: 10 MiB page of nothing but links would otherwise take ~370 MB. Text and links past this
#: point are lost; the page itself (hash, size) is whole.
PARSE_MAX_BYTES = 4 * 1024 * 1024


def default_workers() -> int:
    """One parse process per core beyond the first (which runs the event loop), at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


Job = tuple[bytes, str, "str | None"]  # body, final URL, Content-Type
Parsed = tuple[ParsedPage, "str | None", "bytes | None"]  # the page, the body's sha256, body and text packed


def parse_jobs(jobs: list[Job], strip_tracking: bool, pack: bool | None = None) -> list[Parsed]:
    """Parse pages: the unit of work shipped to a parse process, where the CPU it costs does
    not slow the event loop.

    ``pack``: None, the body is left to the writer (the loop's own process: packing here
    would stop the loop). Else the body is hashed here too, and with True packed with the
    page's text, as the writer would store it: on the benchmark, hashing and packing had been
    2 of the writer's 4.4 s of CPU a 20,000-page crawl, and the writer's thread the bottleneck.

    Pages travel in batches: one page per call costs more in pickling and wake-ups than
    parsing it in the loop's own process does (measured: 2,860 vs 4,917 pages/s).
    """
    from .bodies import digest, pack_page
    from .parse import parse_html

    out: list[Parsed] = []
    for body, url, ctype in jobs:
        # collapse=False: the text is stored as lexbor gives it, and its readers collapse it.
        page = parse_html(body[:PARSE_MAX_BYTES], url, ctype, strip_tracking=strip_tracking, collapse=False)
        if pack:
            # The text travels inside the packed body only: as a str it was the largest part of
            # a page waiting for the writer (2 bytes a character: ~40 KB on the benchmark).
            out.append((replace(page, text=None), digest(body), pack_page(body, page.text)))
        else:
            out.append((page, None if pack is None else digest(body), None))
    return out


def _init_process() -> None:
    from .gc_tuning import tune_gc
    from .parse import init_worker

    init_worker()
    tune_gc()


def _init_pool_process(crawler_pid: int) -> None:
    # A terminal's Ctrl-C reaches the whole process group; the crawler's own process decides
    # how to shut down and ends the pool, so its workers must not die of it mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # If the crawler is killed (kill -9), nothing tells a worker: it would wait on its task
    # queue forever, keeping the forkserver alive too. It checks, and follows it.
    threading.Thread(target=_follow, args=(crawler_pid,), daemon=True).start()
    _init_process()


def _follow(pid: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # alive, as someone else: cannot be ours, but do not guess
            pass


class ParseStage:
    """``async with ParseStage(workers, strip) as p: outcome = await p.parse(result)``."""

    def __init__(self, workers: int | None, strip_tracking: bool, keep_bodies: bool = True) -> None:
        self.workers = default_workers() if workers is None else workers
        self.strip_tracking = strip_tracking
        self.keep_bodies = keep_bodies  # whether a parse process packs the bodies it parses
        self._pool: ProcessPoolExecutor | None = None
        # Coroutines feeding the stage: enough to keep every process busy while results travel.
        self.lanes = max(1, 2 * self.workers)

    async def __aenter__(self) -> ParseStage:
        if self.workers > 0:
            self._pool = self._new_pool()
        return self

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: never fork a process that runs threads (aiosqlite's, the resolver's).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["crawler.parse_stage", "crawler.parse"])
        return ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_pool_process,
                                   initargs=(os.getpid(),))

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)

    async def parse(self, results: list[FetchResult]) -> list[Outcome]:
        """Parse the HTML bodies among ``results`` (not error pages, nor skipped ones)."""
        todo = [r for r in results if r.body and not r.skip and not r.error and is_html(r.content_type)]
        if not todo:
            return [Outcome(r, None) for r in results]
        jobs: list[Job] = [(r.body, r.final_url, r.content_type) for r in todo]
        try:
            if self._pool is None:
                done = parse_jobs(jobs, self.strip_tracking)
            else:
                done = await asyncio.get_running_loop().run_in_executor(
                    self._pool, parse_jobs, jobs, self.strip_tracking, self.keep_bodies)
        except BrokenProcessPool:
            # A parse process died (a parser bug on a hostile page): record the pages, start anew.
            self._pool = self._new_pool()
            sent = {id(r) for r in todo}
            return [Outcome(replace(r, error=Error.PARSE, detail="parser process died") if id(r) in sent else r, None)
                    for r in results]
        parsed = {id(r): one for r, one in zip(todo, done)}
        return [self._outcome(r, *parsed[id(r)]) if id(r) in parsed else Outcome(r, None) for r in results]

    def _outcome(self, r: FetchResult, page: ParsedPage, digest: str | None, packed: bytes | None) -> Outcome:
        if digest is not None and (packed is not None or not self.keep_bodies):
            # Hashed (and packed, if kept): the writer needs no more of the body than its size.
            # A page waiting for the writer holds ~40% less memory (measured at 200,000 pages,
            # where the writer is the slower stage and its queue is full).
            return Outcome(replace(r, body=b""), page, digest, packed, len(r.body))
        return Outcome(r, page, digest, packed)
