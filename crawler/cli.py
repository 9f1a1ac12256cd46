"""The ``sgcrawl`` command line. Thin: it parses flags, loads config, and calls the stages.

Heavy modules (aiohttp, selectolax, the pipeline) are imported inside the commands, so that
``sgcrawl --help`` answers at once. Usage and configuration errors exit 2 with one line on
stderr that names the flag or key; never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from . import __version__
from .config import SETTINGS, ConfigError, load_config, read_seeds

try:  # typer >= 0.25 vendors click
    from typer._click import exceptions as _click_exc  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    from click import exceptions as _click_exc  # type: ignore[no-redef]

__all__ = ["app", "main"]

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


class _App(typer.Typer):
    """A Typer app whose usage errors are one line on stderr and exit code 2."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            rv = typer.main.get_command(self)(*args, standalone_mode=False, **kwargs)
        except _click_exc.UsageError as exc:
            _fail(exc.format_message())
        except (KeyboardInterrupt, typer.Abort):
            sys.exit(EXIT_INTERRUPTED)
        except _click_exc.ClickException as exc:
            _fail(exc.format_message())
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"sgcrawl: error: {message}", file=sys.stderr)
    sys.exit(code)


app = _App(
    name="sgcrawl",
    help="A concurrent, polite, crash-safe web crawler. Crawl with `run`, then `export` or `report`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"sgcrawl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """sgcrawl: crawl with `run`, then `export` or `report`."""


def _seed_list(args: list[str], seeds_file: str | None) -> list[str]:
    seeds = list(args)
    if seeds_file is not None:
        try:
            lines = sys.stdin.read().splitlines() if seeds_file == "-" else Path(seeds_file).read_text(
                encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            _fail(f"--seeds: cannot read {seeds_file}: {exc.strerror or exc}")
        seeds += read_seeds(lines)
    return seeds


def _canonical_seeds(raw: list[str]) -> list[str]:
    from .urls import canonicalize, resolve

    out = []
    for seed in raw:
        absolute = resolve(seed, seed) if "://" in seed else None
        if absolute is None:
            _fail(f"seed {seed!r} is not an http(s) URL")
        out.append(canonicalize(absolute))
    return out


_DEFAULTS = {s.name: s.default for s in SETTINGS}


def _d(name: str, unset: str = "unlimited") -> str:
    """``[default: X]`` of a setting, from the settings table (so help and config cannot drift)."""
    value = _DEFAULTS[name]
    if value is None or value == ():
        value = unset
    elif isinstance(value, bool):
        value = "on" if value else "off"
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"[default: {value}]"


@app.command()
def run(
    seeds: Annotated[Optional[list[str]], typer.Argument(metavar="SEED", help="Seed URLs (http or https). [default: crawl.seeds of the config]", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", metavar="FILE", help="Configuration file (TOML); flags override it. [default: ./crawl.toml if present]", show_default=False)] = None,
    seeds_file: Annotated[Optional[str], typer.Option("--seeds", metavar="FILE", help="File of seed URLs, one a line, # comments; - reads stdin. [default: none]", show_default=False)] = None,
    db: Annotated[Optional[Path], typer.Option("--db", metavar="PATH", help=f"The crawl's database; re-running with the same one resumes. {_d('crawl.db')}", show_default=False)] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard any previous crawl in --db and start over. [default: off: resume]")] = False,
    max_pages: Annotated[Optional[int], typer.Option("--max-pages", metavar="N", help=f"Stop after N URLs stored (fetched, with or without an error). {_d('crawl.max_pages')}", show_default=False)] = None,
    max_depth: Annotated[Optional[int], typer.Option("--max-depth", metavar="D", help=f"Follow links at most D hops from a seed (seeds are depth 0). {_d('crawl.max_depth')}", show_default=False)] = None,
    scope: Annotated[Optional[str], typer.Option("--scope", metavar="host|domain|any", help=f"Follow links within the seeds' hosts, registered domains, or anywhere. {_d('crawl.scope')}", show_default=False)] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", metavar="REGEX", help="Only follow links whose canonical URL matches this regex (repeatable). [default: none: all links]", show_default=False)] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", metavar="REGEX", help="Never follow links whose canonical URL matches this regex (repeatable). [default: none]", show_default=False)] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", metavar="N", help=f"Requests in flight, all hosts together. {_d('fetch.concurrency')}", show_default=False)] = None,
    per_host: Annotated[Optional[int], typer.Option("--per-host", metavar="N", help=f"Requests in flight to one host (host:port). {_d('fetch.per_host')}", show_default=False)] = None,
    delay: Annotated[Optional[float], typer.Option("--delay", metavar="SECONDS", help=f"Minimum seconds between request starts to one host (robots.txt Crawl-delay, back-off and Retry-After can raise it). {_d('fetch.delay')}", show_default=False)] = None,
    ignore_robots: Annotated[bool, typer.Option("--ignore-robots", help="Do not fetch or obey robots.txt. [default: off: robots.txt is obeyed]")] = False,
    user_agent: Annotated[Optional[str], typer.Option("--user-agent", metavar="TEXT", help=f"User-Agent header and robots.txt token. {_d('fetch.user_agent')}", show_default=False)] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", metavar="SECONDS", help=f"Total seconds per request, body included. {_d('fetch.timeout')}", show_default=False)] = None,
    max_bytes: Annotated[Optional[int], typer.Option("--max-bytes", metavar="N", help=f"Larger bodies (decoded) are cut off and recorded as too_large. {_d('fetch.max_bytes')}", show_default=False)] = None,
    retries: Annotated[Optional[int], typer.Option("--retries", metavar="N", help=f"Retries for connection errors, timeouts, 5xx and 429. {_d('fetch.retries')}", show_default=False)] = None,
    export: Annotated[Optional[Path], typer.Option("--export", metavar="PATH", help="Also write the JSONL export here when the crawl ends. [default: none]", show_default=False)] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Plain progress lines on stderr instead of the live display. [default: off: live display when stdout is a terminal, plain lines otherwise or with NO_COLOR or TERM=dumb]")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="More progress: plain lines every second instead of every 5, each followed by the busiest hosts; the live display shows up to 20 hosts and the skip reasons. [default: off]")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress output at all: only warnings, errors and the final report. [default: off]")] = False,
    allow_private: Annotated[bool, typer.Option("--allow-private", help="Allow private, loopback and link-local addresses even when no seed is on them. [default: off]")] = False,
    max_pages_per_host: Annotated[Optional[int], typer.Option("--max-pages-per-host", metavar="N", help=f"Queue at most N URLs per host (host:port). {_d('crawl.max_pages_per_host')}", show_default=False)] = None,
    no_sitemaps: Annotated[bool, typer.Option("--no-sitemaps", help="Do not seed the crawl from robots.txt Sitemap: lines and /sitemap.xml. [default: off: sitemaps are used]")] = False,
    auto_throttle: Annotated[bool, typer.Option("--auto-throttle", help="Adapt each host's delay to its response latency (never below --delay). [default: off]")] = False,
) -> None:
    """Crawl from the seed URLs; resumes if --db already holds an unfinished crawl."""
    flags: dict[str, Any] = {
        "crawl.db": str(db) if db is not None else None,
        "crawl.max_pages": max_pages, "crawl.max_depth": max_depth, "crawl.scope": scope,
        "crawl.include": include or None, "crawl.exclude": exclude or None,
        "crawl.export": str(export) if export is not None else None,
        "crawl.progress": False if no_progress else None,
        "fetch.concurrency": concurrency, "fetch.per_host": per_host, "fetch.delay": delay,
        "fetch.user_agent": user_agent, "fetch.timeout": timeout, "fetch.max_bytes": max_bytes,
        "fetch.retries": retries, "fetch.allow_private": True if allow_private else None,
        "robots.obey": False if ignore_robots else None,
        "crawl.max_pages_per_host": max_pages_per_host, "crawl.sitemaps": False if no_sitemaps else None,
        "fetch.auto_throttle": True if auto_throttle else None,
    }
    if verbose and quiet:
        _fail("-v/--verbose and -q/--quiet: choose one")
    try:
        cfg = load_config(config, flags)
    except ConfigError as exc:
        _fail(str(exc))
    raw = _seed_list(seeds or [], seeds_file) or list(cfg.crawl.seeds)
    start = _canonical_seeds(raw)
    if not start and not cfg.crawl.db.exists():
        _fail("no seed URLs: give SEED arguments, --seeds FILE, or crawl.seeds in the config")

    from .pipeline import StorageError
    from .report import build_report, render_text

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = _crawl_with_signals(cfg, start, fresh, log, _display(cfg, log, verbose, quiet))
    except StorageError as exc:
        _fail(str(exc), EXIT_USAGE if exc.usage else 1)
    if result.resumed is not None:
        r = result.resumed
        print(f"Resumed a crawl of {r.discovered:,} URLs ({r.stored:,} stored, {r.queued:,} queued).")
        for change in result.changed:
            print(f"  setting changed since the last run: {change}")
    print(render_text(build_report(result.db)))
    s = result.stats
    print(f"  this run  {s.stored:,} stored in {s.elapsed:.1f} s, {s.rate():.1f} pages/s, "
          f"{s.retries:,} retries; ended: {result.reason}")
    if cfg.crawl.export is not None:
        n = _export_to(result.db, cfg.crawl.export, include_text=True)
        print(f"  exported  {n:,} records to {cfg.crawl.export}")
    if result.reason == "interrupted":
        sys.exit(EXIT_INTERRUPTED)


def live_display_wanted(progress: bool | None, stdout_isatty: bool, env: dict[str, str]) -> bool:
    """The live display needs a terminal that can take it, and nobody saying no to it."""
    return (progress is not False and stdout_isatty and env.get("TERM", "") != "dumb"
            and not env.get("NO_COLOR"))


def _display(cfg: Any, log: Any, verbose: bool, quiet: bool) -> Any:
    """The progress factory: live, plain lines on stderr (every 5 s, -v: every 1 s + hosts), or none."""
    import os

    from .progress import LiveProgress, NoProgress, PlainProgress

    if quiet:
        return lambda view: NoProgress()
    if live_display_wanted(cfg.crawl.progress, sys.stdout.isatty(), dict(os.environ)):
        return lambda view: LiveProgress(view, verbose=verbose)
    return lambda view: PlainProgress(view.stats, view.frontier, log, 1.0 if verbose else 5.0,
                                      lanes=view.lanes, hosts=5 if verbose else 0)


def _crawl_with_signals(cfg: Any, seeds: list[str], fresh: bool, log: Any, progress: Any) -> Any:
    """Run the crawl; the first SIGINT/SIGTERM stops it cleanly, a second exits at once."""
    import asyncio
    import os
    import signal

    from .gc_tuning import tune_gc
    from .pipeline import Crawl

    displays: list[Any] = []

    def make_display(view: Any) -> Any:
        displays.append(progress(view))
        return displays[-1]

    async def main() -> Any:
        crawl = Crawl(cfg, seeds, log, fresh, make_display)
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if crawl.stopping:
                for display in displays:  # os._exit skips the display's cleanup: cursor back first
                    getattr(display, "close", lambda: None)()
                log("interrupted again: exiting now (the database stays consistent; run again to resume)")
                os._exit(EXIT_INTERRUPTED)
            log(f"stopping: no new requests; in-flight ones get {crawl.grace:g} s "
                "(Ctrl-C again to exit at once)")
            crawl.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await crawl.run()

    tune_gc()
    return asyncio.run(main())


def _export_to(db: Path, out: Path | str, include_text: bool) -> int:
    from .export import write_jsonl
    from .store import StorageError

    try:
        if str(out) == "-":
            return write_jsonl(db, sys.stdout, include_text)
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            return write_jsonl(db, fh, include_text)
    except (FileNotFoundError, StorageError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"--out: cannot write {out}: {exc.strerror or exc}", 1)


@app.command("export")
def export_cmd(
    db: Annotated[Path, typer.Option("--db", help="The crawl's database.")] = Path("output/crawl.db"),
    out: Annotated[str, typer.Option("--out", help="Output file, or - for stdout.")] = "-",
    fmt: Annotated[str, typer.Option("--format", help="jsonl (one JSON object per crawled URL) or warc "
                                                      "(WARC/1.1 request and response records; gzipped unless the name ends in .warc).")] = "jsonl",
    no_text: Annotated[bool, typer.Option("--no-text", help="Leave the visible text out of each JSONL record.")] = False,
) -> None:
    """Write the crawl out: JSONL (one object per crawled URL) or WARC."""
    if fmt not in ("jsonl", "warc"):
        _fail(f"--format: expected jsonl or warc, got {fmt!r}")
    n = _export_warc(db, out) if fmt == "warc" else _export_to(db, out, include_text=not no_text)
    if out != "-":
        print(f"exported {n:,} {'pages' if fmt == 'warc' else 'records'} to {out}", file=sys.stderr)


def _export_warc(db: Path, out: str) -> int:
    from .store import StorageError
    from .warc import WarcUnavailable, write_warc

    try:
        if out == "-":
            return write_warc(db, sys.stdout.buffer)
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")  # never a half-written WARC under the real name
        try:
            with part.open("wb") as fh:
                n = write_warc(db, fh, gzip=not path.name.endswith(".warc"))
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
        return n
    except (FileNotFoundError, WarcUnavailable, StorageError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"--out: cannot write {out}: {exc.strerror or exc}", 1)


@app.command()
def report(
    db: Annotated[Path, typer.Option("--db", help="The crawl's database.")] = Path("output/crawl.db"),
    fmt: Annotated[str, typer.Option("--format", help="text, json, or html (one self-contained page with charts).")] = "text",
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the report to this file instead of stdout "
                                                             "[html default: output/report.html].", show_default=False)] = None,
) -> None:
    """Print the crawl report: totals (they add up), errors, status codes, hosts, latency."""
    from .report import build_report, render_html, render_json, render_text

    renderers = {"text": render_text, "json": render_json, "html": render_html}
    if fmt not in renderers:
        _fail(f"--format: expected text, json or html, got {fmt!r}")
    from .store import StorageError

    try:
        data = build_report(db)
    except (FileNotFoundError, StorageError) as exc:
        _fail(str(exc))
    text = renderers[fmt](data)
    if out is None and fmt == "html":
        out = Path("output/report.html")  # a page of HTML on a terminal helps nobody
    if out is None:
        print(text)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        _fail(f"--out: cannot write {out}: {exc.strerror or exc}", 1)
    print(f"report written to {out}", file=sys.stderr)


@app.command()
def bench(
    pages: Annotated[int, typer.Option("--pages", min=10, help="Pages of the generated site.")] = 2000,
    hosts: Annotated[int, typer.Option("--hosts", min=1, max=250, help="Hosts (127.0.0.1..N) it is spread over.")] = 4,
) -> None:
    """Crawl a generated local site at full speed (politeness off); print pages/s and peak memory."""
    from .bench import run_bench

    print(f"serving a generated site of {pages:,} pages on 127.0.0.1-{hosts} and crawling it...", file=sys.stderr)
    r = run_bench(pages, hosts)
    print(f"sgcrawl bench: {r.pages:,} pages in {r.seconds:.2f} s = {r.pages_per_s:,.0f} pages/s; "
          f"peak memory {r.peak_rss_mb:.0f} MB (crawler process)")


def main() -> None:
    app()
