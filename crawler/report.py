"""The crawl report, computed from the database alone (so ``sgcrawl report`` needs no crawl).

The accounting always adds up: every discovered URL is a row of ``urls`` in exactly one
state, so ``discovered == stored + skipped + queued`` by construction, and the report shows
each term.

One pass copies the narrow columns of ``pages`` into a temporary table; everything else is a
SQL aggregate, except the latency percentiles and histogram, which read one sorted column (a
float per response). A 200,000-page database reports in about a second.

The report is a plain dict of JSON types; :func:`render_text`, :func:`render_json` and
:func:`crawler.report_html.render_html` only format it.
"""

from __future__ import annotations

import json
import sqlite3
from bisect import bisect_left
from collections import Counter
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .report_html import render_html  # re-exported: the page is built in its own module

__all__ = ["build_report", "render_text", "render_json", "render_html"]

ROBOTS_SKIPS = ("robots", "robots_unavailable")
MAX_HOSTS = 50  # rows of the per-host table; ``hosts_total`` counts them all
_ENDED = {"finished": "done", "max_pages": "max_pages", "interrupted": "interrupted", "running": "running"}
# Throughput bucket sizes (seconds): the smallest one giving at most 120 buckets is used.
_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
          900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
# Latency histogram edges (ms): five per decade from 0.1 ms to 100 s, 2 significant digits.
_EDGES = tuple(float(f"{10 ** (k / 5):.2g}") for k in range(-5, 26))


def _connect_ro(path: Path) -> sqlite3.Connection:
    from .store import open_readonly

    return open_readonly(path)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_report(path: Path) -> dict[str, Any]:
    """Totals, breakdowns, per-host figures and chart series of the crawl in database ``path``."""
    with closing(_connect_ro(path)) as db:
        # One pass over ``pages`` into a narrow temporary table: the columns the report needs
        # sit after ``text`` in each row, so every scan of ``pages`` reads the page texts.
        db.execute("CREATE TEMP TABLE r AS SELECT p.id, u.origin, u.depth, p.status, p.error, p.fetched_at, "
                   "p.elapsed_ms, p.bytes, p.duplicate_of FROM pages p JOIN urls u ON u.id = p.id")
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM main.meta")}
        states: Counter[int] = Counter()
        skipped: dict[str, int] = {}
        for state, reason, n in db.execute(
                "SELECT state, reason, COUNT(*) FROM urls GROUP BY state, reason ORDER BY 3 DESC"):
            states[state] += n
            if state == 2:
                skipped[reason] = n
        errors = dict(db.execute(
            "SELECT error, COUNT(*) FROM r WHERE error IS NOT NULL GROUP BY error ORDER BY 2 DESC, 1").fetchall())
        statuses = {str(k): v for k, v in db.execute(
            "SELECT status, COUNT(*) FROM r WHERE status IS NOT NULL GROUP BY status ORDER BY status")}
        pages, failed, size, dups, first, last = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(error IS NOT NULL), 0), COALESCE(SUM(bytes), 0), "
            "COALESCE(SUM(duplicate_of IS NOT NULL), 0), MIN(fetched_at), MAX(fetched_at) FROM r").fetchone()
        latencies = sorted(row[0] for row in db.execute("SELECT elapsed_ms FROM r WHERE status IS NOT NULL"))
        hosts = _hosts(db, meta)
        throughput = _throughput(db, first, last)
        top_errors = _top_errors(db, errors)
        depths = {str(d): n for d, n in db.execute("SELECT depth, COUNT(*) FROM r GROUP BY depth ORDER BY depth")}
        dup_examples = [{"url": u, "duplicate_of": d} for u, d in db.execute(
            "SELECT u.url, d.url FROM r JOIN urls u ON u.id = r.id JOIN urls d ON d.id = r.duplicate_of "
            "WHERE r.duplicate_of IS NOT NULL ORDER BY r.id LIMIT 5")]
    stored, skipped_n, queued = states.get(1, 0), states.get(2, 0), states.get(0, 0)
    status = meta.get("status", "unknown")
    return {
        "status": status,
        "ended": _ENDED.get(status, status),
        "seeds": meta.get("seeds", []),
        "totals": {
            "discovered": stored + skipped_n + queued,
            "stored": stored,
            "ok": stored - failed,
            "failed": failed,
            "skipped": skipped_n,
            "queued": queued,
        },
        "skipped": skipped,
        "errors": errors,
        "top_errors": top_errors,
        "status_codes": statuses,
        "bytes": size,
        "duplicates": dups,
        "duplicate_examples": dup_examples,
        "latency_ms": {f"p{q}": _percentile(latencies, q) for q in (50, 90, 99)},
        "latency_histogram": _histogram(latencies),
        "throughput": throughput,
        "duration_s": round(last - first, 3) if first is not None else 0.0,
        "started": _iso(first),
        "last_fetch": _iso(last),
        "hosts": hosts[:MAX_HOSTS],
        "hosts_total": len(hosts),
        "pages": pages,
        "depths": depths,
        "robots": meta.get("robots", {}),
        "settings": meta.get("settings", {}),
    }


def _hosts(db: sqlite3.Connection, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per origin that was fetched, is queued, was robots-blocked or has politeness facts."""
    rows: dict[str, dict[str, Any]] = {}

    def row(origin: str) -> dict[str, Any]:
        return rows.setdefault(origin, {
            "origin": origin, "pages": 0, "errors": 0, "bytes": 0, "latency_ms": None, "mean_gap_s": None,
            "delay_s": None, "delay_why": None, "throttled": 0, "paused_s": 0.0, "robots": None,
            "robots_blocked": 0, "queued": 0})

    for origin, n, errs, size, lat, t0, t1 in db.execute(
            "SELECT origin, COUNT(*), SUM(error IS NOT NULL), SUM(bytes), AVG(CASE WHEN status IS NOT NULL "
            "THEN elapsed_ms END), MIN(fetched_at), MAX(fetched_at) FROM r GROUP BY origin"):
        row(origin).update(pages=n, errors=errs, bytes=size, latency_ms=None if lat is None else round(lat, 1),
                           mean_gap_s=round((t1 - t0) / (n - 1), 3) if n > 1 else None)
    for origin, queued, blocked in db.execute(
            "SELECT origin, SUM(state = 0), SUM(state = 2) FROM urls "
            "WHERE state = 0 OR (state = 2 AND reason IN (?, ?)) GROUP BY origin", ROBOTS_SKIPS):
        row(origin).update(queued=queued, robots_blocked=blocked)
    for origin, facts in meta.get("hosts", {}).items():
        row(origin).update(delay_s=facts.get("delay"), delay_why=facts.get("why"),
                           throttled=facts.get("throttled", 0), paused_s=facts.get("paused_s", 0.0))
    for origin, info in meta.get("robots", {}).items():
        row(origin)["robots"] = info.get("status")
    return sorted(rows.values(), key=lambda h: (-h["pages"], -h["queued"], h["origin"]))


def _throughput(db: sqlite3.Connection, first: float | None, last: float | None) -> dict[str, Any]:
    """Pages (and failed pages) stored per time bucket, from the first fetch to the last."""
    if first is None or last is None:
        return {"bucket_s": 1, "start": None, "pages": [], "errors": []}
    span = last - first
    step = next((s for s in _STEPS if span / s <= 120), _STEPS[-1])
    n = int(span / step) + 1
    pages, errors = [0] * n, [0] * n
    for b, count, errs in db.execute(
            "SELECT MIN(CAST((fetched_at - ?) / ? AS INTEGER), ?), COUNT(*), SUM(error IS NOT NULL) "
            "FROM r GROUP BY 1", (first, step, n - 1)):
        pages[b], errors[b] = count, errs
    return {"bucket_s": step, "start": _iso(first), "pages": pages, "errors": errors}


def _top_errors(db: sqlite3.Connection, errors: dict[str, int]) -> dict[str, Any]:
    """Error kind -> count and the first three URLs that failed with it (with status and detail)."""
    top: dict[str, Any] = {kind: {"count": n, "examples": []} for kind, n in list(errors.items())[:10]}
    for kind, url, status, detail in db.execute(
            "SELECT e.error, u.url, e.status, p.detail FROM (SELECT id, error, status, "
            "ROW_NUMBER() OVER (PARTITION BY error ORDER BY id) AS n FROM r WHERE error IS NOT NULL) e "
            "JOIN urls u ON u.id = e.id JOIN pages p ON p.id = e.id WHERE e.n <= 3 ORDER BY e.error, e.id"):
        if kind in top:
            top[kind]["examples"].append({"url": url, "status": status, "detail": detail})
    return top


def _percentile(ordered: list[float], q: int) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 1)


def _histogram(ordered: list[float]) -> list[dict[str, Any]]:
    """Log-spaced latency buckets ``[lo, hi)`` in ms (``hi`` None: open-ended), empty ends trimmed."""
    if not ordered:
        return []
    bounds = (0.0, *_EDGES)
    cuts = [bisect_left(ordered, b) for b in bounds] + [len(ordered)]
    buckets = [{"lo": bounds[i], "hi": bounds[i + 1] if i + 1 < len(bounds) else None,
                "count": cuts[i + 1] - cuts[i]} for i in range(len(bounds))]
    used = [i for i, b in enumerate(buckets) if b["count"]]
    return buckets[used[0] : used[-1] + 1]


def _breakdown(counts: dict[str, int], limit: int = 8) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} {v:,}" for k, v in items[:limit]) or "none"
    return text + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


def render_text(report: dict[str, Any]) -> str:
    """The end-of-crawl summary: the accounting first, then one line per topic (80 columns)."""
    t = report["totals"]
    lat = report["latency_ms"]
    duration = report["duration_s"]
    rate = f"{report['pages'] / duration:,.1f} pages/s" if duration else "-"
    span = f"{duration:,.0f}" if duration >= 100 else f"{duration:.3g}"
    ended = report.get("ended", report["status"])
    lines = [
        f"Crawl {report['status']}: {t['discovered']:,} URLs discovered = "
        f"{t['stored']:,} stored + {t['skipped']:,} skipped + {t['queued']:,} queued",
        f"  ended     {ended}; {span} s from first to last fetch, {rate}",
        *(["            (still running, or stopped without a clean shutdown)"] if ended == "running" else []),
        f"  stored    {t['stored']:>9,}  (ok {t['ok']:,}, failed {t['failed']:,}; {_size(report['bytes'])})",
        f"  skipped   {t['skipped']:>9,}  " + _cut(f"({_breakdown(report['skipped'])})", 58),
        f"  queued    {t['queued']:>9,}",
        f"  dupes     {report['duplicates']:>9,}  pages with a body already stored",
        "  status    " + _cut(_breakdown(report["status_codes"]), 68),
        "  latency   " + (f"p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms"
                         if lat["p50"] is not None else "no responses"),
        "  depths    " + _cut(", ".join(f"{d}: {n:,}" for d, n in report.get("depths", {}).items()) or "-", 68),
    ]
    for kind, info in report.get("top_errors", {}).items():
        example = info["examples"][0]["url"] if info["examples"] else ""
        lines.append(_cut(f"  error     {kind} {info['count']:,}  e.g. {example}", 80))
    robots = report["robots"]
    if robots:
        kinds = Counter(info["status"] for info in robots.values())
        delays = {o: i for o, i in robots.items() if i["crawl_delay"]}
        line = f"  robots    {len(robots):,} hosts: " + _breakdown(dict(kinds.most_common()))
        if delays:
            capped = [o for o, i in delays.items() if i["capped"]]
            line += f"; Crawl-delay on {len(delays):,}" + (f" (capped on {', '.join(capped[:5])})" if capped else "")
        lines.append(_cut(line, 80))
    if report["hosts"]:
        lines.append(f"  {'host':<28} {'pages':>8} {'errors':>7} {'bytes':>10} {'mean ms':>8} {'blocked':>8}")
        for h in report["hosts"][:8]:
            ms = "-" if h.get("latency_ms") is None else f"{h['latency_ms']:,.0f}"
            lines.append(f"  {_cut(h['origin'], 28):<28} {h['pages']:>8,} {h['errors']:>7,} "
                         f"{_size(h['bytes']):>10} {ms:>8} {h.get('robots_blocked', 0):>8,}")
        total = report.get("hosts_total", len(report["hosts"]))
        if total > 8:
            lines.append(f"  (+{total - 8:,} more hosts)")
    return "\n".join(lines)


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)
