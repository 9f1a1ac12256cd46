"""The parser stage: runs :func:`crawler.parse.parse_html` off the event loop.

Parsing is CPU work. With ``workers`` > 0 it runs in a pool of processes, so that the event
loop's core is left to fetching and storing and a second core does the parsing (link
resolution and canonicalization included: that is per-link work, the bulk of it). With 0 it
runs in the loop's process, for small crawls and machines with one core.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from .fetch import is_html
from .models import Error, FetchResult, Outcome, ParsedPage

__all__ = ["ParseStage", "parse_job", "default_workers"]


def default_workers() -> int:
    """One parse process per core beyond the first (which runs the event loop), at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def parse_job(body: bytes, url: str, content_type: str | None, strip_tracking: bool) -> tuple[ParsedPage, str]:
    """Parse one page and hash its body: the unit of work shipped to a parse process."""
    from .parse import parse_html

    return parse_html(body, url, content_type, strip_tracking=strip_tracking), hashlib.sha256(body).hexdigest()


def _warm_up() -> None:
    from . import parse  # noqa: F401  (import once per process, not on the first page)


class ParseStage:
    """``async with ParseStage(workers, strip) as p: outcome = await p.parse(result)``."""

    def __init__(self, workers: int | None, strip_tracking: bool) -> None:
        self.workers = default_workers() if workers is None else workers
        self.strip_tracking = strip_tracking
        self._pool: ProcessPoolExecutor | None = None
        # Coroutines feeding the stage: enough to keep every process busy while results travel.
        self.lanes = max(1, 2 * self.workers)

    async def __aenter__(self) -> ParseStage:
        if self.workers > 0:
            # forkserver: never fork a process that runs threads (aiosqlite's, the resolver's).
            self._pool = self._new_pool()
        return self

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: never fork a process that runs threads (aiosqlite's, the resolver's).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["crawler.parse_stage", "crawler.parse"])
        return ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_warm_up)

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)

    async def parse(self, result: FetchResult) -> Outcome:
        body = result.body
        if result.error or result.skip or not body or not is_html(result.content_type):
            return Outcome(result, None, hashlib.sha256(body).hexdigest())
        args = (body, result.final_url, result.content_type, self.strip_tracking)
        try:
            if self._pool is None:
                page, digest = parse_job(*args)
            else:
                page, digest = await asyncio.get_running_loop().run_in_executor(self._pool, parse_job, *args)
        except BrokenProcessPool:
            # A parse process died (a parser bug on a hostile page): record the page, start anew.
            self._pool = self._new_pool()
            return self._failed(result, "parser process died")
        except Exception as exc:  # the parser promises never to raise; if it does, keep the page
            return self._failed(result, f"{type(exc).__name__}: {exc}"[:300])
        return Outcome(result, page, digest)

    @staticmethod
    def _failed(result: FetchResult, detail: str) -> Outcome:
        return Outcome(replace(result, error=Error.PARSE, detail=detail), None,
                       hashlib.sha256(result.body).hexdigest())
