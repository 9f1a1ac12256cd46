"""Never lose a page: kill -9 and resume, Ctrl-C once and twice, storage faults, the watchdog.

The crawler runs as a real ``sgcrawl run`` subprocess against servers in this test's event
loop; the servers decide when to kill it (after their N-th request), so the kill points are
fixed, not timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from time import monotonic

import pytest
from aiohttp import web

from conftest import html, make_config, records, run_cli

PAGES = 240


async def slow_site(make_site, n: int = PAGES, hosts: int = 3, pause: float = 0.004):
    """``n`` pages over ``hosts`` hosts, each answer held a little so a crawl takes a while."""
    sites = [await make_site({}) for _ in range(hosts)]
    hits = Counter()
    arrived = asyncio.Event()
    state = {"kill_at": None}

    def url(i: int) -> str:
        return sites[i % hosts].url(f"/p/{i}")

    def handler(i: int):
        async def page(request: web.Request) -> web.Response:
            hits[i] += 1
            if state["kill_at"] is not None and sum(hits.values()) >= state["kill_at"]:
                arrived.set()
            await asyncio.sleep(pause)
            links = [url(j) for j in range(4 * i + 1, min(4 * i + 5, n))] + [url((i * 7) % n)]
            return web.Response(text=html(f"page {i}", links), content_type="text/html")
        return page

    for i in range(n):
        sites[i % hosts].pages[f"/p/{i}"] = handler(i)
    return sites, url(0), hits, arrived, state


def crawl_args(seed: str, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "crawler", "run", seed, "--db", str(db), "--delay", "0",
            "--concurrency", "6", "--per-host", "2", "--no-progress", *extra]


async def start(args: list[str], cwd: Path, capture: bool = False) -> asyncio.subprocess.Process:
    out = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(*args, cwd=cwd, stdout=out, stderr=out)


async def crawl_until(make_site, tmp_path: Path, requests: int, pause: float, capture: bool = False):
    """Start a real crawl of a slow site and return once the servers saw ``requests`` requests."""
    sites, seed, hits, arrived, state = await slow_site(make_site, pause=pause)
    state["kill_at"] = requests
    db = tmp_path / "c.db"
    proc = await start(crawl_args(seed, db), tmp_path, capture)
    await asyncio.wait_for(arrived.wait(), 30)
    return proc, seed, db, state


def stored_urls(db: Path) -> list[str]:
    return [r["url"] for r in records(db)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_at", [15, 90, 200])
async def test_kill_9_then_resume_loses_nothing_and_stores_nothing_twice(make_site, tmp_path, kill_at):
    sites, seed, hits, arrived, state = await slow_site(make_site)
    reference = tmp_path / "reference.db"
    proc = await start(crawl_args(seed, reference), tmp_path)
    assert (await proc.wait()) == 0
    expected = set(stored_urls(reference))
    assert len(expected) == PAGES
    hits.clear()

    db = tmp_path / "killed.db"
    state["kill_at"] = kill_at
    proc = await start(crawl_args(seed, db), tmp_path)
    await asyncio.wait_for(arrived.wait(), 60)
    helpers = _descendants(proc.pid)  # the parse pool: forkserver, worker, resource tracker
    proc.send_signal(signal.SIGKILL)
    assert (await proc.wait()) == -signal.SIGKILL
    for _ in range(50):  # they notice the crawler is gone and leave: no orphans pile up
        if not any(Path(f"/proc/{pid}").exists() and _ppid(str(pid)) != -1 for pid in helpers):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"helper processes outlived the killed crawler: {helpers}")
    before = len(stored_urls(db)) if db.exists() else 0
    state["kill_at"] = None
    proc = await start(crawl_args(seed, db), tmp_path, capture=True)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "Resumed" in out.decode() or before == 0
    urls = stored_urls(db)
    assert len(urls) == len(set(urls))  # nothing stored twice
    assert set(urls) == expected  # nothing lost, nothing extra
    refetched = sum(hits.values()) - PAGES
    print(f"kill at request {kill_at}: {before} pages stored before the kill, {refetched} refetched")
    # Only what was fetched but not yet committed at the kill is fetched again: at most the
    # pipeline's depth (6 in flight, 6 waiting to parse, 2 parse batches of 32, the gather queue).
    # An idle machine refetches 10-30 here; a loaded one, whose parser lags, up to ~55.
    assert 0 <= refetched <= 6 + 6 + 2 * 32
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_ctrl_c_once_stops_cleanly_with_130(make_site, tmp_path):
    proc, seed, db, state = await crawl_until(make_site, tmp_path, 10, pause=0.2, capture=True)
    sent = monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()
    assert monotonic() - sent < 5 + 3  # the grace period, and a little to flush
    assert "stopping" in err.decode() and "stored" in out.decode()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        status = json.loads(con.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0])
    assert status == "interrupted"
    got = stored_urls(db)
    assert 0 < len(got) < PAGES
    state["kill_at"] = None
    res = await run_cli("run", seed, "--db", str(db), "--delay", "0", "--concurrency", "6", cwd=tmp_path)
    assert res.returncode == 0
    assert len(set(stored_urls(db))) == PAGES


async def test_ctrl_c_twice_exits_at_once_and_the_db_resumes(make_site, tmp_path):
    proc, seed, db, state = await crawl_until(make_site, tmp_path, 6, pause=0.5)
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.2)
    sent = monotonic()
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 130
    assert monotonic() - sent < 1.5  # not the 5 s grace: at once
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    state["kill_at"] = None
    res = await run_cli("export", "--db", str(db), cwd=tmp_path)
    assert res.returncode == 0
    res = await run_cli("run", seed, "--db", str(db), "--delay", "0", "--concurrency", "6", cwd=tmp_path)
    assert res.returncode == 0 and len(set(stored_urls(db))) == PAGES


async def test_resume_says_which_settings_changed(make_site, tmp_path):
    site = await make_site({"/": html("home", ["/a"]), "/a": html("a")})
    db = str(tmp_path / "c.db")
    assert (await run_cli("run", site.url("/"), "--db", db, "--delay", "0", cwd=tmp_path)).returncode == 0
    res = await run_cli("run", site.url("/"), "--db", db, "--delay", "0.01", "--max-depth", "3", cwd=tmp_path)
    assert res.returncode == 0
    assert "fetch.delay: 0.0 -> 0.01" in res.stdout and "crawl.max_depth: None -> 3" in res.stdout


async def test_two_runs_on_one_database_are_refused(make_site, tmp_path):
    first, seed, db, state = await crawl_until(make_site, tmp_path, 2, pause=0.5)
    res = await run_cli("run", seed, "--db", str(db), cwd=tmp_path)
    assert res.returncode == 2 and "another sgcrawl run" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    first.send_signal(signal.SIGKILL)
    await first.wait()


@pytest.mark.parametrize("kind", ["not-a-dir", "garbage-file"])
async def test_unusable_database_path_is_a_clear_error(tmp_path, kind):
    if kind == "not-a-dir":
        (tmp_path / "file").write_text("x")
        db = tmp_path / "file" / "crawl.db"
    else:
        db = tmp_path / "crawl.db"
        db.write_bytes(b"this is not a database, and it must survive" * 100)
    before = db.read_bytes() if db.exists() else None
    res = await run_cli("run", "http://127.0.0.1:9/", "--db", str(db), cwd=tmp_path)
    assert res.returncode == 2, res
    assert len(res.stderr.strip().splitlines()) == 1 and "--db" in res.stderr and "Traceback" not in res.stderr
    if before is not None:
        assert db.read_bytes() == before  # never damaged


async def test_disk_full_stops_with_a_clear_error_and_keeps_what_was_stored(make_site, tmp_path, monkeypatch):
    import crawler.store
    from crawler.pipeline import StorageError, run_crawl

    pages = {"/": html("home", [f"/p{i}" for i in range(300)])}
    # Bodies that do not compress away (bodies and texts are stored zstd-packed): ~3 KB each.
    pages.update({f"/p{i}": html(f"p{i}", body=f"<p>{random.Random(i).randbytes(3000).hex()}</p>") for i in range(300)})
    site = await make_site(pages)
    real_open = crawler.store.open_db

    async def small_disk(path: Path):
        db = await real_open(path)
        async with db.execute("PRAGMA page_size") as cur:
            page_size = (await cur.fetchone())[0]
        # SQLITE_FULL past 1 MiB: what a full disk looks like (the schema takes ~9 pages of it)
        await db.execute(f"PRAGMA max_page_count = {(1 << 20) // page_size}")
        return db

    monkeypatch.setattr("crawler.pipeline.open_db", small_disk)
    config = make_config(tmp_path, obey=False)
    with pytest.raises(StorageError, match="full"):
        await run_crawl(config, [site.url("/")], fresh=False, log=lambda _: None)
    with sqlite3.connect(config.crawl.db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = stored_urls(config.crawl.db)
    assert kept and len(kept) == len(set(kept))
    monkeypatch.setattr("crawler.pipeline.open_db", real_open)
    await run_crawl(config, [site.url("/")], fresh=False, log=lambda _: None)  # room again: resumes
    assert len(set(stored_urls(config.crawl.db))) == 301


async def test_watchdog_abandons_a_stuck_request(make_site, tmp_path):
    from crawler.pipeline import Crawl

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    site = await make_site({"/": html("home", ["/stuck", "/fine"]), "/stuck": hang, "/fine": html("fine")})
    lines: list[str] = []
    crawl = Crawl(make_config(tmp_path, timeout=600.0, retries=0), [site.url("/")], lines.append)
    crawl.stall_after = 0.5  # the crawl's own patience, shortened for the test
    result = await asyncio.wait_for(crawl.run(), 30)
    rec = {r["url"]: r for r in records(result.db)}
    assert rec[site.url("/stuck")]["error"] == "stalled"
    assert rec[site.url("/fine")]["status"] == 200
    assert any("watchdog" in line for line in lines)


def test_no_process_is_left_behind():
    # The parse pool's processes end with the crawl: nothing of ours survives a test run.
    me = os.getpid()
    kids = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == me]
    assert all("forkserver" in _cmdline(p) or "resource_tracker" in _cmdline(p) for p in kids), kids


def _descendants(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            kids.setdefault(_ppid(name), []).append(int(name))
    out, todo = [], [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _ppid(pid: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
