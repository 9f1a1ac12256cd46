"""Progress displays: live (rich) on a terminal, plain lines otherwise, nothing with -q.

The live display is checked three ways: rendered into a recording console during a real crawl,
through a pseudo-terminal (the exact bytes: escapes or none), and on a real terminal (tmux).
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import re
import shlex
import shutil
import struct
import sys
import termios
from pathlib import Path

import pytest
from aiohttp import web
from rich.console import Console

from conftest import html, make_config, respond, run_cli
from crawler.cli import live_display_wanted
from crawler.pipeline import Crawl
from crawler.progress import LiveProgress, PlainProgress, Rates

PLAIN_LINE = re.compile(r"^\[\s*\d+\.\ds\] stored \d+ \(failed \d+\) queued \d+ leased \d+ skipped \d+ \| [\d.]+ pages/s",
                        re.MULTILINE)
ANSI = "\x1b"


def slow(page: str, pause: float):
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(pause)
        return web.Response(text=page, content_type="text/html")

    return handler


async def slow_site(make_site, pages: int = 30, pause: float = 0.1):
    """A site whose crawl takes about ``pages * pause / 2`` seconds at two requests in flight."""
    links = [f"/p{i}" for i in range(pages)]
    return await make_site({"/": html("home", [*links, "/private"]), **{p: slow(html(p), pause) for p in links},
                            "/robots.txt": respond("User-agent: *\nDisallow: /private\n", content_type="text/plain")})


async def test_live_display_shows_hosts_and_counters_that_move(make_site, tmp_path):
    a, b = await slow_site(make_site), await slow_site(make_site)
    console = Console(record=True, force_terminal=True, width=120, height=40, file=io.StringIO())
    config = make_config(tmp_path, per_host=2)
    crawl = Crawl(config, [a.url("/"), b.url("/")], log=lambda line: None,
                  progress=lambda view: LiveProgress(view, console, interval=0.05))

    text = ""

    async def frame_after(stored_above: int) -> tuple[str, int]:
        """The first frame showing more than ``stored_above`` pages stored (polled, not slept for)."""
        nonlocal text
        for _ in range(400):
            await asyncio.sleep(0.05)
            text += console.export_text(clear=True)
            if "sgcrawl ·" in text:
                frame = "sgcrawl ·" + text.rsplit("sgcrawl ·", 1)[1]
                if (m := re.search(r"stored ([\d,]+)", frame)) and int(m[1].replace(",", "")) > stored_above:
                    return frame, int(m[1].replace(",", ""))
        raise AssertionError(text[-3000:])

    running = asyncio.create_task(crawl.run())
    first, n_first = await frame_after(0)
    second, n_second = await frame_after(n_first)
    result = await running
    assert result.stats.stored == 62
    for frame in (first, second):
        for site in (a, b):
            origin = site.origin.removeprefix("http://")
            assert re.search(rf"{re.escape(origin)}\s+[0-2]\s+\d+\s+0s\s+configured\s+\S+\s+0\s+ok", frame), frame
        assert "pages/s recent" in frame and "elapsed" in frame and "ETA" in frame
    assert 0 < n_first < n_second < 62, (first, second)


async def test_eta_and_progress_bar_with_max_pages(make_site, tmp_path):
    site = await slow_site(make_site, pages=40, pause=0.05)
    console = Console(record=True, force_terminal=True, width=120, height=40, file=io.StringIO())
    crawl = Crawl(make_config(tmp_path, per_host=2, max_pages=30), [site.url("/")], log=lambda line: None,
                  progress=lambda view: LiveProgress(view, console, interval=0.05))
    running = asyncio.create_task(crawl.run())
    await asyncio.sleep(0.6)
    frame = console.export_text().rsplit("sgcrawl ·", 1)[1]
    await running
    assert re.search(r"ETA 0:00:0\d", frame) and re.search(r"\d+ / 30 pages", frame), frame


async def test_plain_lines_in_process(make_site, tmp_path):
    site = await slow_site(make_site, pages=20)
    lines: list[str] = []
    crawl = Crawl(make_config(tmp_path, per_host=2), [site.url("/")], log=lines.append,
                  progress=lambda view: PlainProgress(view.stats, view.frontier, lines.append, 0.2,
                                                      lanes=view.lanes, hosts=3))
    await crawl.run()
    assert len(PLAIN_LINE.findall("\n".join(lines))) >= 2, lines
    assert any(line.startswith(f"    {site.host}:") and "robots ok" in line for line in lines), lines
    assert not any(ANSI in line for line in lines)


async def test_no_progress_prints_plain_lines_on_stderr(make_site, tmp_path):
    site = await slow_site(make_site, pages=30)
    res = await run_cli("run", site.url("/"), "--db", str(tmp_path / "c.db"), "--delay", "0", "--no-progress", "-v",
                        cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert PLAIN_LINE.search(res.stderr), res.stderr  # -v: a line every second
    assert f"    {site.host}:" in res.stderr  # -v: and the busiest hosts under it
    assert "Crawl finished" in res.stdout and ANSI not in res.stdout + res.stderr


async def run_in_terminal(*args: str, cwd: Path, env: dict[str, str], timeout: float = 45) -> tuple[int, str]:
    """Run ``sgcrawl`` with stdin, stdout and stderr on a pseudo-terminal; return every byte it wrote."""
    try:
        master, slave = os.openpty()
    except OSError as exc:  # pragma: no cover - a container without /dev/ptmx
        pytest.skip(f"no pseudo-terminals here: {exc}")
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    clean = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "LINES")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", *args, cwd=cwd, env={**clean, "TERM": "xterm-256color", **env},
        stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    closed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            data = b""
        if data:
            chunks.append(data)
        else:
            loop.remove_reader(master)
            closed.set()

    loop.add_reader(master, readable)
    try:
        await asyncio.wait_for(asyncio.gather(proc.wait(), closed.wait()), timeout)
    finally:
        loop.remove_reader(master)
        os.close(master)
    assert proc.returncode is not None
    return proc.returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}], ids=["NO_COLOR", "TERM=dumb"])
async def test_no_color_and_dumb_terminal_get_plain_lines_without_escapes(make_site, tmp_path, env):
    site = await slow_site(make_site, pages=30)
    rc, out = await run_in_terminal("run", site.url("/"), "--db", str(tmp_path / "c.db"), "--delay", "0", "-v",
                                    cwd=tmp_path, env=env)
    assert rc == 0, out
    assert ANSI not in out, repr(out[:2000])
    assert PLAIN_LINE.search(out.replace("\r\n", "\n")) and "Crawl finished" in out, out


async def test_terminal_gets_the_live_display_and_quiet_gets_nothing(make_site, tmp_path):
    site = await slow_site(make_site, pages=20)
    args = ("run", site.url("/"), "--db", str(tmp_path / "c.db"), "--delay", "0", "--fresh")
    rc, out = await run_in_terminal(*args, cwd=tmp_path, env={})
    assert rc == 0 and ANSI in out and "pages/s recent" in out and "Crawl finished" in out, out
    assert "\x1b[?25h" in out  # the cursor, hidden while the display is up, is shown again
    rc, out = await run_in_terminal(*args, "-q", cwd=tmp_path, env={})
    assert rc == 0 and "Crawl finished" in out, out
    assert ANSI not in out and "pages/s recent" not in out and not PLAIN_LINE.search(out.replace("\r\n", "\n")), out


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
async def test_live_display_on_a_real_terminal(make_site, tmp_path):
    a, b = await slow_site(make_site, pages=40), await slow_site(make_site, pages=40)
    server = f"sgcrawl-test-{os.getpid()}-{id(tmp_path)}"
    command = (f"cd {shlex.quote(str(tmp_path))} && env -u NO_COLOR {shlex.quote(sys.executable)} -m crawler run "
               f"{a.url('/')} {b.url('/')} --db c.db --delay 0; echo SGCRAWL-EXIT=$?; sleep 60")

    async def tmux(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "tmux", "-L", server, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TERM": "xterm-256color"})
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        return out.decode()

    await tmux("new-session", "-d", "-x", "160", "-y", "50", command)
    try:
        during, screen = None, ""
        for _ in range(300):
            await asyncio.sleep(0.1)
            screen = await tmux("capture-pane", "-p")
            if during is None and "pages/s recent" in screen and a.host in screen and b.host in screen:
                during = screen
            if "SGCRAWL-EXIT=" in screen:
                break
        assert during is not None, screen
        assert re.search(r"stored [\d,]+ \(failed 0\)\s+queued [\d,]+\s+in flight \d+", during), during
        assert re.search(r"host\s+in flight\s+queued\s+delay\s+why\s+last\s+429/503\s+robots\s+blocked", during), during
        assert "SGCRAWL-EXIT=0" in screen and "Crawl finished" in screen, screen
        # The display is gone (no debris, no frame left half-drawn) and the report follows.
        assert "pages/s recent" not in screen and "sgcrawl ·" not in screen and "in flight" not in screen, screen
    finally:
        await tmux("kill-server")


async def test_run_help_names_every_default(tmp_path):
    res = await run_cli("run", "--help", cwd=tmp_path)
    assert res.returncode == 0
    options = res.stdout.split("Options:", 1)[1]
    blocks = re.split(r"\n  (?=-)", "\n" + options)[1:]
    names = [block.split()[0].rstrip(",") for block in blocks]
    assert {"--max-pages", "--delay", "--per-host", "--no-progress", "-v", "-q", "--export"} <= set(names)
    for block in blocks:
        if not block.startswith("-h, --help"):
            assert "[default:" in " ".join(block.split()), block
    assert re.search(r"--delay.*\[default:\s+0\.5\]", options, re.DOTALL)


async def test_verbose_and_quiet_together_is_a_usage_error(tmp_path):
    res = await run_cli("run", "http://127.0.0.1:9/", "-v", "-q", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "-q" in res.stderr


@pytest.mark.parametrize("progress, tty, env, live", [
    (None, True, {"TERM": "xterm"}, True),
    (True, True, {"TERM": "xterm"}, True),
    (False, True, {"TERM": "xterm"}, False),  # --no-progress, or crawl.progress = false
    (None, False, {"TERM": "xterm"}, False),  # stdout piped or redirected
    (True, False, {"TERM": "xterm"}, False),
    (None, True, {"TERM": "dumb"}, False),
    (None, True, {"TERM": "xterm", "NO_COLOR": "1"}, False),
    (None, True, {"TERM": "xterm", "NO_COLOR": ""}, True),  # no-color.org: empty means unset
])
def test_when_the_live_display_is_used(progress, tty, env, live):
    assert live_display_wanted(progress, tty, env) is live


def test_host_rows_busiest_first_with_why_and_per_host_counters():
    from types import SimpleNamespace

    from crawler.politeness import Lanes
    from crawler.progress import UNKNOWN, host_rows

    lanes = Lanes(per_host=4, delay=0.0)
    for origin, slots in (("a:80", 1), ("b:80", 3), ("c:80", 0), ("d:80", 0)):
        lanes.set_crawl_delay(origin, 2.0 if origin == "a:80" else 0.0)
        for _ in range(slots):
            assert lanes.try_reserve(origin, 0.0)
    lanes.throttled("c:80", retry_after=30.0)
    frontier = SimpleNamespace(robots=None, queued_by_origin=lambda: iter([("a:80", 5), ("c:80", 9), ("d:80", 1), ("e:80", 7)]))
    stats = SimpleNamespace()  # a Stats without per-host counters: shown as unknown
    rows, n_hosts, fetching = host_rows(stats, frontier, lanes, limit=4)  # type: ignore[arg-type]
    assert [r.origin for r in rows] == ["b:80", "a:80", "c:80", "e:80"] and n_hosts == 5 and fetching == 4
    by = {r.origin: r for r in rows}
    assert (by["a:80"].delay, by["a:80"].why, by["a:80"].queued) == (2.0, "Crawl-delay", 5)
    assert by["c:80"].why.startswith("Retry-After") and by["c:80"].throttled == 1
    assert by["b:80"].why == "configured" and by["b:80"].robots == "off"
    assert by["b:80"].last == by["b:80"].blocked == UNKNOWN
    stats = SimpleNamespace(last_status={"b:80": "200", "c:80": "429"}, robots_blocked={"c:80": 12})
    by = {r.origin: r for r in host_rows(stats, frontier, lanes, limit=4)[0]}  # type: ignore[arg-type]
    assert (by["b:80"].last, by["b:80"].blocked, by["c:80"].last, by["c:80"].blocked) == ("200", "0", "429", "12")


def test_recent_rate_and_eta():
    rates = Rates(window=5.0)
    assert rates.recent() is None and rates.eta(100, 0, 50, 0) is None
    for t in range(11):  # 10 pages/s, the queue draining by 4/s
        rates.sample(float(t), 10 * t, 100 - 4 * t)
    assert rates.recent() == pytest.approx(10.0)
    assert rates.eta(max_pages=200, stored_total=100, queued=60, leased=0) == pytest.approx(10.0)
    assert rates.eta(max_pages=None, stored_total=100, queued=60, leased=4) == pytest.approx(16.0)
    growing = Rates()
    for t in range(3):
        growing.sample(float(t), t, 10 + t)
    assert growing.eta(None, 2, 12, 0) is None  # the queue grows: no honest ETA


async def test_a_failing_display_does_not_end_the_crawl(make_site, tmp_path):
    site = await slow_site(make_site, pages=5, pause=0.01)

    class Broken(LiveProgress):
        def renderable(self):  # type: ignore[override]
            raise RuntimeError("display bug")

    console = Console(force_terminal=True, width=120, file=io.StringIO())
    crawl = Crawl(make_config(tmp_path), [site.url("/")], log=lambda line: None,
                  progress=lambda view: Broken(view, console, interval=0.01))
    assert (await crawl.run()).stats.stored == 6
