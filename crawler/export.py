"""JSONL export: one JSON object per stored URL, streamed from the database.

Keys are those of SPEC.md (``url`` … ``error``), plus ``description``, ``canonical``,
``meta_robots``, ``noindex`` (the page asked not to be indexed) and ``attempts``. ``text`` is left out with ``include_text=False``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .bodies import text_of
from .parse import collapse_whitespace
from .store import open_readonly

__all__ = ["iter_records", "write_jsonl"]

_QUERY = """
SELECT u.url, p.final_url, p.status, u.depth, par.url, p.fetched_at, p.elapsed_ms,
       p.content_type, p.bytes, p.title, {text}, p.links, p.content_hash, dup.url, p.error,
       p.description, p.canonical, p.meta_robots, p.noindex, p.attempts{blob}
FROM pages p
JOIN urls u ON u.id = p.id
LEFT JOIN urls par ON par.id = u.parent
LEFT JOIN urls dup ON dup.id = p.duplicate_of{join}
ORDER BY p.id
"""
# A text NULL in its row is kept after the body, in the page's contents blob (crawler.store).
_WITH_TEXT = {"text": "p.text", "blob": ", c.body",
              "join": "\nLEFT JOIN contents c ON p.text IS NULL AND c.hash = p.content_hash"}
_WITHOUT_TEXT = {"text": "NULL", "blob": "", "join": ""}
_KEYS = ("url", "final_url", "status", "depth", "parent", "fetched_at", "elapsed_ms", "content_type",
         "bytes", "title", "text", "links", "content_hash", "duplicate_of", "error",
         "description", "canonical", "meta_robots", "noindex", "attempts")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iter_records(db_path: Path, include_text: bool = True) -> Iterator[dict[str, Any]]:
    """Export records in the order the URLs were discovered. Raises FileNotFoundError."""
    db = open_readonly(db_path)
    try:
        for row in db.execute(_QUERY.format(**(_WITH_TEXT if include_text else _WITHOUT_TEXT))):
            record = dict(zip(_KEYS, row))
            record["fetched_at"] = _iso(record["fetched_at"])
            record["noindex"] = bool(record["noindex"])
            if not include_text:
                del record["text"]
            else:  # stored as extracted (crawler.parse: collapse=False); finished here
                text = record["text"]
                record["text"] = collapse_whitespace(text_of(row[-1], record["bytes"]) if text is None else text)
            yield record
    finally:
        db.close()


def write_jsonl(db_path: Path, out: IO[str], include_text: bool = True) -> int:
    """Write every record as one line of JSON; returns the number of lines."""
    n = 0
    for record in iter_records(db_path, include_text):
        out.write(json.dumps(record, ensure_ascii=False))
        out.write("\n")
        n += 1
    return n
