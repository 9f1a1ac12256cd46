"""The crawl report as one self-contained HTML page.

Everything is inline: the CSS, and the charts as SVG drawn here in Python. The page makes no
network request (no script, font, image or stylesheet from anywhere), so it can be mailed,
archived or opened offline. It reads on a phone (tables scroll sideways, charts scale through
their ``viewBox``), prints cleanly, and follows the reader's light or dark preference.

Every string from the crawl (URLs, hosts, error details: they come from the web) goes
through :func:`html.escape`; URLs are shown as text, never as links.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from html import escape
from math import ceil, floor, log10
from typing import Any

from . import __version__

__all__ = ["render_html"]

W = 440  # chart viewBox width; heights vary
_CSS = """
:root{--bg:#fff;--fg:#1b1f24;--mute:#5b6570;--line:#d5dbe1;--card:#f4f6f8;--ok:#2f855a;--err:#c53030;
--s2:#2f855a;--s3:#3b6fc4;--s4:#d97706;--s5:#c53030;--s0:#7c8794;--bar:#3b6fc4}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e9ec;--mute:#9aa5b1;--line:#2e353d;
--card:#1a1f25;--ok:#48bb78;--err:#fc8181;--s2:#48bb78;--s3:#7aa2f7;--s4:#f6ad55;--s5:#fc8181;--bar:#7aa2f7}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line)}
.mute{color:var(--mute)}code,.url{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;background:var(--card);border:1px solid var(--line)}
.eq{font-size:1.1em;background:var(--card);padding:.6em .8em;border-radius:6px;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px;margin:.8em 0}
.card{background:var(--card);border-radius:6px;padding:.5em .7em}.card b{display:block;font-size:1.3em}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(400px,1fr));gap:16px}
figure{margin:0;background:var(--card);border-radius:6px;padding:8px}figcaption{font-size:.85em;color:var(--mute)}
svg.chart{width:100%;height:auto;display:block}
svg text{fill:var(--fg);font-size:11px}svg .axis{stroke:var(--line)}svg .mute{fill:var(--mute)}
.ok{fill:var(--ok)}.err{fill:var(--err)}.bar{fill:var(--bar)}.s2{fill:var(--s2)}.s3{fill:var(--s3)}
.s4{fill:var(--s4)}.s5{fill:var(--s5)}.s0{fill:var(--s0)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{padding:.3em .5em;border-bottom:1px solid var(--line);
text-align:left;vertical-align:top}th{white-space:nowrap}td.n,th.n{text-align:right;white-space:nowrap}
.flag{color:var(--err);font-weight:600}.nw{white-space:nowrap;word-break:normal}
table.narrow{width:auto;min-width:50%}
@media (max-width:480px){main{padding:10px}body{font-size:14px}.charts{grid-template-columns:1fr}}
@media print{:root{--bg:#fff;--fg:#000;--card:#fff;--line:#bbb}body{font-size:10pt}main{max-width:none;padding:0}
.scroll{overflow:visible}figure,section,tr{break-inside:avoid}.charts{grid-template-columns:1fr 1fr}
.url{font-size:8pt}}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _n(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


def _dur(s: float) -> str:
    if s < 60:
        return f"{s:.3g}s"
    if s < 3600:
        return f"{int(s // 60)}m" + (f"{int(s % 60)}s" if s % 60 else "")
    return f"{int(s // 3600)}h" + (f"{int(s % 3600 // 60)}m" if s % 3600 >= 60 else "")


def _ms(v: float) -> str:
    return f"{v / 1000:g}s" if v >= 1000 else f"{v:g}"


def _ticks(vmax: float) -> tuple[float, list[float]]:
    """A round axis top and 3-6 round ticks for counts up to ``vmax``."""
    if vmax <= 0:
        return 1, [0, 1]
    mag = 10 ** floor(log10(vmax / 4))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= vmax / 5)
    step = max(step, 1)
    top = ceil(vmax / step) * step
    return top, [i * step for i in range(int(round(top / step)) + 1)]


def _svg(cid: str, title: str, height: int, body: Iterable[str]) -> str:
    return (f'<svg id="{cid}" class="chart" viewBox="0 0 {W} {height}" role="img" aria-labelledby="{cid}-t">'
            f'<title id="{cid}-t">{_e(title)}</title>{"".join(body)}</svg>')


def _columns(cid: str, title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]],
             tips: Sequence[str], height: int = 230) -> str:
    """Vertical bars; each series (css class, values) stacks on the ones before it."""
    left, right, top, bottom = 46, 8, 10, 34
    n = len(labels)
    if n == 0:
        return _svg(cid, title, 80, ['<text class="mute" x="20" y="45">no data</text>'])
    totals = [sum(values[i] for _, values in series) for i in range(n)]
    ymax, ticks = _ticks(max(totals))
    plot_w, plot_h = W - left - right, height - top - bottom
    slot = plot_w / n
    out = []
    for t in ticks:
        y = top + plot_h - t / ymax * plot_h
        label = _n(t) if t < 1e4 else f"{t / 1000:g}k"
        out.append(f'<line class="axis" x1="{left}" x2="{W - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="mute" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    every = max(1, ceil(n / 8))
    for i in range(n):
        x, base = left + i * slot + slot * 0.1, top + plot_h
        for cls, values in series:
            h = values[i] / ymax * plot_h
            if h > 0:
                base -= h
                out.append(f'<rect class="{cls}" x="{x:.1f}" y="{base:.1f}" width="{max(slot * 0.8, 0.5):.1f}" '
                           f'height="{h:.1f}"><title>{_e(tips[i])}</title></rect>')
        if i % every == 0:
            out.append(f'<text x="{left + (i + 0.5) * slot:.1f}" y="{top + plot_h + 15}" '
                       f'text-anchor="middle">{_e(labels[i])}</text>')
    return _svg(cid, title, height, out)


def _hbars(cid: str, title: str, rows: Sequence[tuple[str, int, int]]) -> str:
    """Horizontal bars per host: (label, ok, errors)."""
    left, right, line = 150, 54, 20
    if not rows:
        return _svg(cid, title, 80, ['<text class="mute" x="20" y="45">no data</text>'])
    height = 10 + line * len(rows)
    vmax = max(ok + err for _, ok, err in rows) or 1
    out = []
    for i, (label, ok, err) in enumerate(rows):
        y, x = 6 + i * line, float(left)
        short = label if len(label) <= 22 else label[:21] + "…"
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end"><title>{_e(label)}</title>{_e(short)}</text>')
        for cls, v in (("ok", ok), ("err", err)):
            w = v / vmax * (W - left - right)
            if w > 0:
                out.append(f'<rect class="{cls}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{line - 6}">'
                           f'<title>{_e(label)}: {v:,} {"ok" if cls == "ok" else "failed"}</title></rect>')
                x += w
        out.append(f'<text x="{x + 4:.1f}" y="{y + 12}">{ok + err:,}</text>')
    return _svg(cid, title, height, out)


def _charts(r: dict[str, Any]) -> str:
    tp = r.get("throughput") or {"pages": [], "errors": [], "bucket_s": 1}
    step, pages, errs = tp["bucket_s"], tp["pages"], tp["errors"]
    tp_svg = _columns("chart-throughput", "Pages stored over time", [_dur(i * step) for i in range(len(pages))],
                      [("ok", [p - e for p, e in zip(pages, errs)]), ("err", errs)],
                      [f"{_dur(i * step)}–{_dur((i + 1) * step)}: {p:,} pages, {e:,} failed"
                       for i, (p, e) in enumerate(zip(pages, errs))])
    codes = dict(r["status_codes"])
    no_response = r["pages"] - sum(codes.values())
    if no_response > 0:
        codes["none"] = no_response
    keys = list(codes)
    st_svg = _columns("chart-status", "HTTP status codes", keys,
                      [(f"s{key[0] if key[0] in '2345' else '0'}", [codes[k] if k == key else 0 for k in keys]) for key in keys],
                      [f"{k}: {codes[k]:,} pages" for k in keys])
    hist = r.get("latency_histogram", [])
    lat_labels = ["<" + _ms(b["hi"]) if b["lo"] == 0 else ("≥" if b["hi"] is None else "") + _ms(b["lo"]) for b in hist]
    lat_svg = _columns("chart-latency", "Latency histogram (ms, log buckets)", lat_labels, [("bar", [b["count"] for b in hist])],
                       [f"{_ms(b['lo'])}–{_ms(b['hi']) if b['hi'] else '∞'} ms: {b['count']:,} responses" for b in hist])
    hosts = [h for h in r["hosts"] if h["pages"]][:15]
    host_svg = _hbars("chart-hosts", "Pages per host", [(h["origin"], h["pages"] - h["errors"], h["errors"]) for h in hosts])
    more = r.get("hosts_total", len(r["hosts"])) - len(hosts)
    lat = r["latency_ms"]
    figures = [
        (tp_svg, f"Throughput: pages stored per {_dur(step)} (failed in red), over {_dur(r['duration_s'])}."),
        (st_svg, "Status codes of all stored pages (none: no response, e.g. timeout or connection error)."),
        (lat_svg, f"Response time: p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms."),
        (host_svg, "Pages per host (failed in red)" + (f"; {more:,} more hosts in the table." if more > 0 else ".")),
    ]
    return '<div class="charts">' + "".join(f"<figure>{svg}<figcaption>{_e(cap)}</figcaption></figure>"
                                            for svg, cap in figures) + "</div>"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (), narrow: bool = False) -> str:
    def cell(tag: str, i: int, v: Any) -> str:
        return f'<{tag} class="n">{v}</{tag}>' if i in numeric else f"<{tag}>{v}</{tag}>"

    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    if not body:
        return '<p class="mute">none</p>'
    table = '<table class="narrow">' if narrow else "<table>"
    return (f'<div class="scroll">{table}<thead><tr>' + "".join(cell("th", i, _e(h)) for i, h in enumerate(head))
            + f"</tr></thead><tbody>{body}</tbody></table></div>")


def _sections(r: dict[str, Any]) -> list[tuple[str, str]]:
    hosts = _table(("host", "pages", "errors", "bytes", "mean ms", "mean gap", "delay", "429/503", "paused",
                    "robots", "blocked", "queued"),
                   ((f'<span class="url nw">{_e(h["origin"])}</span>', _n(h["pages"]), _n(h["errors"]), _bytes(h["bytes"]),
                     "-" if h["latency_ms"] is None else _n(h["latency_ms"]),
                     "-" if h["mean_gap_s"] is None else f'{h["mean_gap_s"]:g}s',
                     "-" if h["delay_s"] is None else f'{h["delay_s"]:g}s ({_e(h["delay_why"])})',
                     _n(h["throttled"]), f'{h["paused_s"]:g}s', _e(h["robots"] or "-"), _n(h["robots_blocked"]),
                     _n(h["queued"])) for h in r["hosts"]), numeric=(1, 2, 3, 4, 5, 7, 8, 10, 11))
    hosts += ('<p class="mute">mean ms: response time; mean gap: time between fetches, as observed; delay: the '
              "politeness delay at the end and what set it; 429/503: throttling answers; paused: Retry-After and "
              "back-off pauses; blocked: URLs robots.txt disallowed.</p>")
    if r.get("hosts_total", 0) > len(r["hosts"]):
        hosts += f'<p class="mute">The {len(r["hosts"]):,} hosts with most pages of {r["hosts_total"]:,}.</p>'
    errors = _table(("error", "pages", "examples"), (
        (f'<code class="nw">{_e(kind)}</code>', _n(info["count"]), "<br>".join(
            f'<span class="url">{_e(x["url"])}</span> <span class="mute">{_e(x["status"] or "")} {_e(x["detail"] or "")}</span>'
            for x in info["examples"])) for kind, info in r.get("top_errors", {}).items()), numeric=(1,))
    skipped = _table(("reason", "URLs"), ((f"<code>{_e(k)}</code>", _n(v)) for k, v in r["skipped"].items()), (1,), True)
    stored = max(r["totals"]["stored"], 1)
    depths = _table(("depth", "stored", "share"), ((_e(d), _n(n), f"{n / stored:.1%}") for d, n in r.get("depths", {}).items()),
                    (0, 1, 2), True)
    dups = _table(("page", "same body as"), ((f'<span class="url">{_e(x["url"])}</span>',
                                              f'<span class="url">{_e(x["duplicate_of"])}</span>')
                                             for x in r.get("duplicate_examples", [])))
    robots = _table(("host", "robots.txt", "HTTP", "Crawl-delay"), (
        (f'<span class="url">{_e(o)}</span>', _e(i["status"]), _e(i["http_status"] or "-"),
         "-" if i["crawl_delay"] is None else f'{i["crawl_delay"]:g}s'
         + (' <span class="flag">capped</span>' if i["capped"] else "")) for o, i in r["robots"].items()), (2, 3), True)
    return [("Hosts", hosts), ("Top errors", errors), ("Skipped URLs", skipped), ("Depth distribution", depths),
            (f"Duplicates ({r['duplicates']:,} pages with a body already stored)", dups), ("robots.txt", robots)]


def _header(r: dict[str, Any]) -> str:
    seeds, settings = r["seeds"], r.get("settings", {})
    shown = ("crawl.scope", "crawl.max_pages", "crawl.max_depth", "fetch.concurrency", "fetch.per_host",
             "fetch.delay", "robots.obey", "fetch.user_agent")
    ended = r.get("ended", r["status"])
    note = " (still running, or stopped without a clean shutdown)" if ended == "running" else ""
    return (f'<h1>sgcrawl report</h1><p><span class="badge">{_e(r["status"])}</span> ended: <b>{_e(ended)}</b>'
            f'{note} · started {_e(r.get("started") or "-")} · last fetch {_e(r.get("last_fetch") or "-")}</p>'
            + "<p>Seeds: " + ", ".join(f'<span class="url">{_e(s)}</span>' for s in seeds[:10])
            + (f' <span class="mute">(+{len(seeds) - 10:,} more)</span>' if len(seeds) > 10 else "") + "</p>"
            + '<p class="mute">' + " · ".join(f"{_e(k.split('.')[1])} {_e(settings[k])}"
                                              for k in shown if k in settings) + "</p>")


def _totals(r: dict[str, Any]) -> str:
    t, lat = r["totals"], r["latency_ms"]
    rate = f"{r['pages'] / r['duration_s']:,.1f}" if r["duration_s"] else "-"
    cards = [("stored ok", _n(t["ok"])), ("failed", _n(t["failed"])), ("bytes", _bytes(r["bytes"])),
             ("duplicates", _n(r["duplicates"])), ("pages/s", rate), ("fetching time", _dur(r["duration_s"])),
             ("latency p50/90/99", " / ".join("-" if lat[k] is None else f"{lat[k]:g}" for k in ("p50", "p90", "p99"))
              + " ms"), ("hosts", _n(r.get("hosts_total", len(r["hosts"]))))]
    return (f'<p class="eq" id="accounting"><b>{t["discovered"]:,}</b> URLs discovered = <b>{t["stored"]:,}</b> '
            f'stored + <b>{t["skipped"]:,}</b> skipped + <b>{t["queued"]:,}</b> queued</p><div class="cards">'
            + "".join(f'<div class="card"><span class="mute">{_e(k)}</span><b>{v}</b></div>' for k, v in cards)
            + "</div>")


def render_html(report: dict[str, Any]) -> str:
    """The report as one HTML document (a str); no external resources of any kind."""
    body = [f"<header>{_header(report)}</header>", f"<section><h2>Totals</h2>{_totals(report)}</section>",
            f"<section><h2>Charts</h2>{_charts(report)}</section>",
            *(f"<section><h2>{_e(title)}</h2>{content}</section>" for title, content in _sections(report))]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = ", ".join(report["seeds"][:3]) or "crawl"
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="color-scheme" content="light dark"><title>sgcrawl report: {_e(title)}</title>'
            f'<style>{_CSS}</style></head><body><main>{"".join(body)}'
            f'<footer class="mute"><p>sgcrawl {_e(__version__)} · generated {now}</p></footer></main></body></html>\n')
