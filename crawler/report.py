"""The crawl report, computed from the database alone (so ``sgcrawl report`` needs no crawl).

The accounting always adds up: every discovered URL is a row of ``urls`` in exactly one
state, so ``discovered == stored + skipped + queued`` by construction, and the report shows
each term.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["build_report", "render_text", "render_json"]


def _connect_ro(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(f"no crawl database at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def build_report(path: Path) -> dict[str, Any]:
    """Totals, breakdowns and per-host figures of the crawl in database ``path``."""
    with _connect_ro(path) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM urls GROUP BY state").fetchall())
        skipped = dict(db.execute(
            "SELECT reason, COUNT(*) FROM urls WHERE state = 2 GROUP BY reason ORDER BY 2 DESC").fetchall())
        errors = dict(db.execute(
            "SELECT error, COUNT(*) FROM pages WHERE error IS NOT NULL GROUP BY error ORDER BY 2 DESC").fetchall())
        statuses = {str(k): v for k, v in db.execute(
            "SELECT status, COUNT(*) FROM pages WHERE status IS NOT NULL GROUP BY status ORDER BY status")}
        pages, failed, size, dups, first, last = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(error IS NOT NULL), 0), COALESCE(SUM(bytes), 0), "
            "COALESCE(SUM(duplicate_of IS NOT NULL), 0), MIN(fetched_at), MAX(fetched_at) FROM pages").fetchone()
        hosts = [dict(zip(("origin", "pages", "errors", "bytes"), row)) for row in db.execute(
            "SELECT u.origin, COUNT(*), SUM(p.error IS NOT NULL), SUM(p.bytes) FROM pages p "
            "JOIN urls u ON u.id = p.id GROUP BY u.origin ORDER BY 2 DESC LIMIT 50")]
        latencies = [r[0] for r in db.execute(
            "SELECT elapsed_ms FROM pages WHERE status IS NOT NULL ORDER BY elapsed_ms")]
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    stored, skipped_n, queued = states.get(1, 0), states.get(2, 0), states.get(0, 0)
    return {
        "status": meta.get("status", "unknown"),
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
        "status_codes": statuses,
        "bytes": size,
        "duplicates": dups,
        "latency_ms": {f"p{q}": _percentile(latencies, q) for q in (50, 90, 99)},
        "duration_s": round(last - first, 3) if first is not None else 0.0,
        "hosts": hosts,
        "pages": pages,
        "robots": meta.get("robots", {}),
    }


def _percentile(ordered: list[float], q: int) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 1)


def _breakdown(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def render_text(report: dict[str, Any]) -> str:
    t = report["totals"]
    lat = report["latency_ms"]
    lines = [
        f"Crawl {report['status']}: {t['discovered']:,} URLs discovered = "
        f"{t['stored']:,} stored + {t['skipped']:,} skipped + {t['queued']:,} queued",
        f"  stored    {t['stored']:>9,}  (ok {t['ok']:,}, failed {t['failed']:,}; "
        f"{report['duplicates']:,} duplicate bodies; {report['bytes'] / 1e6:,.1f} MB)",
        f"  skipped   {t['skipped']:>9,}  ({_breakdown(report['skipped'])})",
        f"  queued    {t['queued']:>9,}",
        f"  errors    {_breakdown(report['errors'])}",
        f"  status    {_breakdown(report['status_codes'])}",
        "  latency   " + (f"p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms"
                         if lat["p50"] is not None else "no responses"),
    ]
    robots = report["robots"]
    if robots:
        kinds = Counter(info["status"] for info in robots.values())
        delays = {o: i for o, i in robots.items() if i["crawl_delay"]}
        line = f"  robots    {len(robots):,} hosts: " + _breakdown(dict(kinds.most_common()))
        if delays:
            capped = [o for o, i in delays.items() if i["capped"]]
            line += f"; Crawl-delay on {len(delays):,}" + (f" (capped on {', '.join(capped[:5])})" if capped else "")
        lines.append(line)
    if report["hosts"]:
        lines.append("  hosts     " + ", ".join(f"{h['origin']} {h['pages']:,}" for h in report["hosts"][:8])
                     + (f" (+{len(report['hosts']) - 8} more)" if len(report["hosts"]) > 8 else ""))
    return "\n".join(lines)


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)
