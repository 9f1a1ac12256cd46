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
from .config import ConfigError, load_config, read_seeds

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


@app.command()
def run(
    seeds: Annotated[Optional[list[str]], typer.Argument(help="Seed URLs (http or https).", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Configuration file [default: ./crawl.toml if present].", show_default=False)] = None,
    seeds_file: Annotated[Optional[str], typer.Option("--seeds", help="File of seed URLs, one a line, # comments; - reads stdin.", show_default=False)] = None,
    db: Annotated[Optional[Path], typer.Option("--db", help="The crawl's database; re-running with the same one resumes. [default: output/crawl.db]", show_default=False)] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard any previous crawl in --db and start over.")] = False,
    max_pages: Annotated[Optional[int], typer.Option("--max-pages", help="Stop after N URLs stored (fetched, with or without an error). [default: unlimited]", show_default=False)] = None,
    max_depth: Annotated[Optional[int], typer.Option("--max-depth", help="Follow links at most D hops from a seed (seeds are depth 0). [default: unlimited]", show_default=False)] = None,
    scope: Annotated[Optional[str], typer.Option("--scope", help="Follow links within the seeds' hosts, registered domains, or anywhere: host|domain|any. [default: domain]", show_default=False)] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Only follow links whose canonical URL matches this regex (repeatable).", show_default=False)] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Never follow links whose canonical URL matches this regex (repeatable).", show_default=False)] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight, all hosts together. [default: 64]", show_default=False)] = None,
    per_host: Annotated[Optional[int], typer.Option("--per-host", help="Requests in flight to one host. [default: 2]", show_default=False)] = None,
    delay: Annotated[Optional[float], typer.Option("--delay", help="Minimum seconds between request starts to one host. [default: 0.5]", show_default=False)] = None,
    ignore_robots: Annotated[bool, typer.Option("--ignore-robots", help="Do not fetch or obey robots.txt.")] = False,
    user_agent: Annotated[Optional[str], typer.Option("--user-agent", help=f"User-Agent header and robots.txt token. [default: sgcrawl/{__version__}]", show_default=False)] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Total seconds per request. [default: 30]", show_default=False)] = None,
    max_bytes: Annotated[Optional[int], typer.Option("--max-bytes", help="Larger bodies are cut off and recorded as too_large. [default: 10485760]", show_default=False)] = None,
    retries: Annotated[Optional[int], typer.Option("--retries", help="Retries for connection errors, timeouts, 5xx and 429. [default: 2]", show_default=False)] = None,
    export: Annotated[Optional[Path], typer.Option("--export", help="Also write the JSONL export here when the crawl ends.", show_default=False)] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Plain log lines instead of the live display (automatic when stdout is not a TTY).")] = False,
    allow_private: Annotated[bool, typer.Option("--allow-private", help="Allow private, loopback and link-local addresses even when no seed is on them.")] = False,
    max_pages_per_host: Annotated[Optional[int], typer.Option("--max-pages-per-host", help="Queue at most N URLs per host (host:port). [default: unlimited]", show_default=False)] = None,
    no_sitemaps: Annotated[bool, typer.Option("--no-sitemaps", help="Do not seed the crawl from robots.txt Sitemap: lines and /sitemap.xml.")] = False,
    auto_throttle: Annotated[bool, typer.Option("--auto-throttle", help="Adapt each host's delay to its response latency (never below --delay).")] = False,
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
        result = _crawl_with_signals(cfg, start, fresh, log)
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


def _crawl_with_signals(cfg: Any, seeds: list[str], fresh: bool, log: Any) -> Any:
    """Run the crawl; the first SIGINT/SIGTERM stops it cleanly, a second exits at once."""
    import asyncio
    import os
    import signal

    from .pipeline import Crawl

    async def main() -> Any:
        crawl = Crawl(cfg, seeds, log, fresh)
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if crawl.stopping:
                log("interrupted again: exiting now (the database stays consistent; run again to resume)")
                os._exit(EXIT_INTERRUPTED)
            log(f"stopping: no new requests; in-flight ones get {crawl.grace:g} s "
                "(Ctrl-C again to exit at once)")
            crawl.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await crawl.run()

    return asyncio.run(main())


def _export_to(db: Path, out: Path | str, include_text: bool) -> int:
    from .export import write_jsonl

    try:
        if str(out) == "-":
            return write_jsonl(db, sys.stdout, include_text)
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            return write_jsonl(db, fh, include_text)
    except FileNotFoundError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"--out: cannot write {out}: {exc.strerror or exc}", 1)


@app.command("export")
def export_cmd(
    db: Annotated[Path, typer.Option("--db", help="The crawl's database.")] = Path("output/crawl.db"),
    out: Annotated[str, typer.Option("--out", help="Output file, or - for stdout.")] = "-",
    fmt: Annotated[str, typer.Option("--format", help="jsonl (warc: not yet).")] = "jsonl",
    no_text: Annotated[bool, typer.Option("--no-text", help="Leave the visible text out of each record.")] = False,
) -> None:
    """Write one JSON object per crawled URL (JSONL)."""
    if fmt != "jsonl":
        _fail(f"--format: {fmt!r} is not supported yet (use jsonl)")
    n = _export_to(db, out, include_text=not no_text)
    if out != "-":
        print(f"exported {n:,} records to {out}", file=sys.stderr)


@app.command()
def report(
    db: Annotated[Path, typer.Option("--db", help="The crawl's database.")] = Path("output/crawl.db"),
    fmt: Annotated[str, typer.Option("--format", help="text or json (html: not yet).")] = "text",
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the report to this file instead of stdout.", show_default=False)] = None,
) -> None:
    """Print the crawl report: totals (they add up), errors, status codes, hosts, latency."""
    from .report import build_report, render_json, render_text

    if fmt not in ("text", "json"):
        _fail(f"--format: expected text or json, got {fmt!r}")
    try:
        data = build_report(db)
    except FileNotFoundError as exc:
        _fail(str(exc))
    text = render_text(data) if fmt == "text" else render_json(data)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")


def main() -> None:
    app()
