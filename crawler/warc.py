"""WARC export: the stored pages as WARC/1.1 request and response records (written by warcio).

The file opens with a ``warcinfo`` record (software, format, user agent, robots policy, one
``seed`` line per seed). Then, for every stored page that got an HTTP response (in discovery
order), a ``request`` record and the record of its response, linked both ways by
``WARC-Concurrent-To``. Pages without a response (DNS or connection failures) have no records.

What the records hold, and why it differs from a proxy capture:

- **The payload is decoded.** The crawler keeps the body after undoing ``Content-Encoding``
  (that is what it parsed and hashed), so the HTTP headers of each record lose
  ``Content-Encoding``, ``Transfer-Encoding`` and ``Content-Length`` and get a
  ``Content-Length`` that is true of the decoded payload. Every other header is written as
  received, non-ASCII bytes included (a line break inside a value becomes a space).
- **Requests are reconstructed.** The crawler does not keep the request it sent: each
  ``request`` record is ``GET path HTTP/1.1`` with ``Host``, the crawl's ``User-Agent`` and
  ``Accept``. The status line's reason phrase is the standard one (it is not stored either).
- **Redirects.** The crawler follows them and keeps only the last response, so a page is
  recorded under the URL that answered it (``final_url``); the 3xx hops before it have no
  records (the JSONL export maps ``url`` to ``final_url``). A 3xx that is stored itself (a loop,
  a bad ``Location``, or a redirect to a URL the crawl fetches on its own) is a response
  record without a body, under the URL that sent it.
- **Duplicates.** A body is stored once (``contents``); a page whose body equals that of a page
  written before it is a ``revisit`` record (profile identical-payload-digest) with its own
  HTTP headers and ``WARC-Refers-To``/``-Target-URI``/``-Date`` naming the original response.
- **Cut-off bodies** carry ``WARC-Truncated``: ``length`` (over ``max_bytes``), ``time``,
  ``disconnect``, ``unspecified`` (could not be decoded, malformed exchange).

The database is read in one pass with a cursor, one body decompressed at a time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from http import HTTPStatus
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from . import __version__
from .bodies import body_of
from .store import open_readonly

__all__ = ["WarcUnavailable", "write_warc"]

ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"  # what fetch.py sends
_REWRITTEN = frozenset({"content-encoding", "transfer-encoding", "content-length"})
_TRUNCATED = {"too_large": "length", "timeout": "time", "stalled": "time", "connection": "disconnect",
              "decode": "unspecified", "protocol": "unspecified"}

_MISSING = """SELECT COUNT(*) FROM pages p LEFT JOIN contents c ON c.hash = p.content_hash
WHERE p.status IS NOT NULL AND p.bytes > 0 AND c.body IS NULL"""
# The URL that sent a stored 3xx without error (a redirect to a URL known to the crawl) is
# the last redirect hop recorded for the page, or the page's own URL: fetch.py stores the
# target as final_url. Only pages that had such hops are listed, so this stays small.
_HOPS = """SELECT a.parent, a.url FROM urls a JOIN pages p ON p.id = a.parent
WHERE a.reason = 'redirect' AND p.status BETWEEN 300 AND 399 AND p.error IS NULL ORDER BY a.id"""
_PAGES = """
SELECT p.id, u.url, p.final_url, p.status, p.fetched_at, p.headers, p.error, c.body, p.bytes,
       o.id, o.final_url, o.fetched_at
FROM pages p
JOIN urls u ON u.id = p.id
LEFT JOIN contents c ON c.hash = p.content_hash AND p.bytes > 0
LEFT JOIN pages o ON o.id = p.duplicate_of AND o.id < p.id AND o.content_hash = p.content_hash
WHERE p.status IS NOT NULL
ORDER BY p.id
"""


class WarcUnavailable(Exception):
    """The database cannot give a WARC: the crawl did not keep its raw bodies."""


class _RawHeaders(StatusAndHeaders):
    """HTTP headers written as received: warcio would %-encode non-ASCII values (and fail on
    the undecodable bytes aiohttp hands over as surrogates)."""

    def compute_headers_buffer(self, header_filter: Any = None) -> None:
        self.headers_buff = self.to_str(header_filter).encode("utf-8", "surrogateescape") + b"\r\n"


def _date(ts: float) -> str:
    return str(datetime_to_iso_date(datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None), use_micros=True))


def _digest(body: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode()


def _clean(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _response_headers(status: int, stored: str | None, length: int) -> _RawHeaders:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    kept = [(_clean(k), _clean(v)) for k, v in json.loads(stored or "[]") if k.lower() not in _REWRITTEN]
    return _RawHeaders(f"{status} {phrase}".strip(), [*kept, ("Content-Length", str(length))], protocol="HTTP/1.1")


def _request_headers(uri: str, user_agent: str | None) -> _RawHeaders:
    parts = urlsplit(uri)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [("Host", parts.netloc.rpartition("@")[2])]
    if user_agent:
        headers.append(("User-Agent", user_agent))
    headers.append(("Accept", ACCEPT))
    return _RawHeaders(f"GET {target} HTTP/1.1", headers, is_http_request=True)


def _open(db_path: Path) -> sqlite3.Connection:
    return open_readonly(db_path)


def _meta(db: sqlite3.Connection) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}


def _warcinfo(writer: WARCWriter, meta: dict[str, Any], user_agent: str | None, out: BinaryIO) -> None:
    settings = meta.get("settings", {})
    fields = [("software", f"sgcrawl/{__version__}"), ("format", "WARC File Format 1.1"),
              ("conformsTo", "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/")]
    if user_agent:
        fields.append(("http-header-user-agent", user_agent))
    if "robots.obey" in settings:
        fields.append(("robots", "obey" if settings["robots.obey"] else "ignore"))
    fields += [("seed", seed) for seed in meta.get("seeds", [])]
    data = "".join(f"{k}: {_clean(str(v))}\r\n" for k, v in fields).encode("utf-8", "surrogateescape")
    name = getattr(out, "name", None)
    headers = {"WARC-Filename": Path(name).name} if isinstance(name, str) and not name.startswith("<") else {}
    writer.write_record(writer.create_warc_record("", "warcinfo", payload=BytesIO(data), length=len(data),
                                                  warc_headers_dict=headers))


def _rows(db: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    hops = dict(db.execute(_HOPS).fetchall())  # last hop per page wins (ORDER BY a.id)
    for row in db.execute(_PAGES):
        page_id, url, final_url, status = row[:4]
        if 300 <= status < 400 and row[6] is None:
            final_url = hops.get(page_id, url)
        yield (page_id, final_url, *row[3:])


def write_warc(db_path: Path, out: BinaryIO, *, gzip: bool = True, user_agent: str | None = None) -> int:
    """Write the crawl in ``db_path`` to ``out`` as WARC/1.1 (each record gzipped unless
    ``gzip=False``); returns the number of pages written (response and revisit records).

    ``user_agent`` overrides the crawl's ``fetch.user_agent`` in the reconstructed requests.
    Raises FileNotFoundError (no database) and WarcUnavailable (bodies not kept), both before
    writing anything.
    """
    db = _open(db_path)
    try:
        missing = db.execute(_MISSING).fetchone()[0]
        if missing:
            raise WarcUnavailable(
                f"{db_path}: this crawl was run with crawl.store_bodies = false: its raw bodies were not kept "
                f"({missing:,} pages), so no WARC can be written; run it again with store_bodies on")
        meta = _meta(db)
        user_agent = user_agent or meta.get("settings", {}).get("fetch.user_agent")
        writer = WARCWriter(out, gzip=gzip, warc_version="WARC/1.1")
        _warcinfo(writer, meta, user_agent, out)
        ids = uuid.uuid4()  # response record ids are derived from page ids, so revisits can name them
        n = 0
        for page_id, uri, status, fetched_at, headers, error, body_z, size, orig_id, orig_uri, orig_at in _rows(db):
            body = body_of(body_z, size) if body_z is not None else b""
            rid = f"<urn:uuid:{uuid.uuid5(ids, str(page_id))}>"
            req_id = f"<urn:uuid:{uuid.uuid4()}>"
            date = _date(fetched_at)
            http = _response_headers(status, headers, len(body))
            warc_headers = {"WARC-Record-ID": rid, "WARC-Date": date, "WARC-Concurrent-To": req_id}
            if orig_id is not None:
                warc_headers["WARC-Refers-To"] = f"<urn:uuid:{uuid.uuid5(ids, str(orig_id))}>"
                record = writer.create_revisit_record(uri, _digest(body), orig_uri, _date(orig_at), http, warc_headers)
            else:
                if error in _TRUNCATED:
                    warc_headers["WARC-Truncated"] = _TRUNCATED[error]
                record = writer.create_warc_record(uri, "response", payload=BytesIO(body), length=len(body),
                                                   http_headers=http, warc_headers_dict=warc_headers)
            request = writer.create_warc_record(
                uri, "request", http_headers=_request_headers(uri, user_agent),
                warc_headers_dict={"WARC-Record-ID": req_id, "WARC-Date": date, "WARC-Concurrent-To": rid})
            writer.write_record(request)
            writer.write_record(record)
            n += 1
        return n
    finally:
        db.close()
