"""Test sites: real aiohttp servers on loopback addresses, built from a ``{path: page}`` map.

An integration test reads as a site map plus assertions on what the server saw (``site.log``)
and on what the crawl stored. Each site listens on its own 127.0.0.x address (several
addresses = several hosts) and records every request with the time it arrived.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crawler.config import SETTINGS, Config, load_config
from crawler.pipeline import CrawlResult, run_crawl

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Page = str | bytes | Handler


def respond(body: str | bytes = b"", status: int = 200, content_type: str = "text/html",
            headers: dict[str, str] | None = None) -> Handler:
    """A handler that answers every request with this response."""

    async def handler(request: web.Request) -> web.Response:
        payload = body.encode() if isinstance(body, str) else body
        return web.Response(body=payload, status=status, headers=headers, content_type=content_type)

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    return handler


def html(title: str = "", links: tuple[str, ...] | list[str] = (), body: str = "", head: str = "") -> str:
    """A small HTML page with a title, some links and optional extra markup."""
    anchors = "".join(f'<a href="{href}">link</a>\n' for href in links)
    return f"<!doctype html><html><head><title>{title}</title>{head}</head><body>{body}\n{anchors}</body></html>"


AUXILIARY = ("/robots.txt", "/sitemap.xml")


@dataclass
class Hit:
    path: str  # path and query as requested
    at: float  # monotonic arrival time
    method: str
    headers: dict[str, str]
    raw: str = ""  # the request target exactly as it came on the wire


@dataclass
class Site:
    """A running test site. ``origin`` is ``http://127.0.0.x:port``."""

    pages: dict[str, Page]
    host: str
    server: TestServer | None = None
    log: list[Hit] = field(default_factory=list)

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://{self.host}:{self.server.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def count(self, path: str) -> int:
        return sum(1 for h in self.log if h.path == path)

    @property
    def page_log(self) -> list[Hit]:
        """Requests for pages: the log without robots.txt and sitemap.xml."""
        return [h for h in self.log if h.path not in AUXILIARY]

    def paths(self) -> list[str]:
        """Paths of page requests, in arrival order."""
        return [h.path for h in self.page_log]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.log.append(Hit(request.path_qs, monotonic(), request.method, dict(request.headers), request.raw_path))
        page = self.pages.get(request.path_qs, self.pages.get(request.path))
        if page is None:
            return web.Response(status=404, text="<html><title>Not found</title></html>", content_type="text/html")
        if callable(page):
            return await page(request)
        if isinstance(page, bytes):
            return web.Response(body=page, content_type="text/html")
        return web.Response(text=page, content_type="text/html")


_hosts = itertools.count(2)


@pytest.fixture
async def make_site() -> Any:
    """``await make_site({path: page}, host=None)``: start a site on a fresh 127.0.0.x."""
    sites: list[Site] = []

    async def start(pages: dict[str, Page], host: str | None = None) -> Site:
        site = Site(pages, host or f"127.0.0.{next(_hosts) % 250 + 2}")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", site._handle)
        site.server = TestServer(app, host=site.host, port=0)
        await site.server.start_server()
        sites.append(site)
        return site

    yield start
    for site in sites:
        assert site.server is not None
        await site.server.close()


def make_config(tmp_path: Path, **settings: Any) -> Config:
    """A crawl config for tests: fast politeness unless a test asks for more, no crawl.toml."""
    flags: dict[str, Any] = {"crawl.db": str(tmp_path / "crawl.db"), "fetch.delay": 0.0,
                             "fetch.per_host": 8, "fetch.retry_backoff": 0.05, "parse.workers": 0,
                             "fetch.timeout": 10.0}
    sections = {setting.key: setting.section for setting in SETTINGS}
    for key, value in settings.items():
        flags[f"{sections[key]}.{key}"] = value
    config_file = tmp_path / "empty.toml"
    config_file.write_text("")
    return load_config(config_file, flags)


@pytest.fixture
def crawl(tmp_path: Path) -> Callable[..., Awaitable[CrawlResult]]:
    """``await crawl(seed_url, ..., max_pages=3, fresh=False)``: run the real pipeline in-process."""

    async def run(*seeds: str, fresh: bool = False, **settings: Any) -> CrawlResult:
        config = make_config(tmp_path, **settings)
        return await run_crawl(config, list(seeds), fresh=fresh, log=lambda line: None)

    return run


def records(db: Path) -> list[dict[str, Any]]:
    from crawler.export import iter_records

    return list(iter_records(db))


def url_states(db: Path) -> dict[str, tuple[int, str | None]]:
    import sqlite3

    with sqlite3.connect(db) as con:
        return {u: (s, r) for u, s, r in con.execute("SELECT url, state, reason FROM urls")}


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 60) -> CliResult:
    """Run the real ``sgcrawl`` entry point in a subprocess, without blocking the test's servers."""
    import asyncio
    import os

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout)
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


__all__ = ["Site", "html", "redirect", "respond", "make_config", "records", "url_states", "run_cli", "json"]
