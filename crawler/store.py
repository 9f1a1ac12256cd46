"""SQLite storage: the schema, the crawl's metadata and batched page writes.

One database file holds both the frontier (table ``urls``) and the pages, so that storing a
page, queueing the links found on it and acking its lease commit in one transaction: a crash
loses all of that batch or none of it, never a page without its links.

Schema (``sgcrawl export`` and ``sgcrawl report`` read it; documented in README.md):

- ``urls``: every URL the crawl ever discovered, exactly once. ``state`` 0 queued, 1 stored,
  2 skipped (``reason`` says why). ``parent`` is the ``urls.id`` of the page where it was first
  found; ``origin`` is the politeness lane (``host:port``). ``chain`` counts the ancestors in a
  row that share the URL's template (trap detection); ``admitted`` is 1 when the URL passed
  admission (it counts against --max-pages-per-host); ``fp`` is the URL's 63-bit fingerprint
  (:mod:`crawler.seen`), so a resumed crawl reloads its dedupe filter without reading URLs.
- ``pages``: one row per stored URL (``id`` = ``urls.id``), fetched or failed with ``error``.
  ``text`` NULL means the page's text is kept with its body (below), right after it. Text is
  stored as extracted, its runs of whitespace collapsed by its readers (:mod:`crawler.parse`).
- ``contents``: sha256 of a body -> the first page stored with it (content dedupe), and the
  body itself, zstd-compressed (:mod:`crawler.bodies`), when raw bodies are kept (``crawl.store_bodies``),
  followed by that first page's text (UTF-8) when it has one: the unpacked blob is the body's
  ``pages.bytes`` bytes, then the text. Packed together, the text adds ~5% to the body's
  packed size (its words are the body's, in the same order); kept in the row, it was two
  thirds of the bytes a crawl stored, and storing it cost ~20% of the crawl's speed.
- ``meta``: key/value facts about the crawl (seeds, settings, status).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from hashlib import sha256
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .bodies import digest as body_digest
from .bodies import pack_all, payload, text_of
from .models import Outcome

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Store", "Step", "StorageError", "QUEUED", "STORED", "SKIPPED", "open_db",
           "open_readonly", "exclusive", "remove_db", "in_thread", "select_in", "rows_insert", "insert_rows"]

QUEUED, STORED, SKIPPED = 0, 1, 2
EMPTY_HASH = sha256(b"").hexdigest()  # the content hash of a failed fetch
SCHEMA_VERSION = 4  # PRAGMA user_version of a crawl database
# Versions this one reads and resumes: a version 3 database is a version 4 one whose texts all
# sit in their pages rows (resuming it marks it 4: its new pages may keep texts with bodies).
_COMPATIBLE = (3, SCHEMA_VERSION)
PAGE_SIZE = 65536  # of a new crawl database (SQLite's largest)
_PACK_AT_ONCE = 32  # bodies (each with its page's text) given to zstd in one call, contents rows in one statement
#: Part of a transaction (:meth:`Store.commit`): runs in the connection's thread, never touches
#: the event loop's state.
Step = Callable[[sqlite3.Connection], None]
T = TypeVar("T")


class StorageError(Exception):
    """The crawl database cannot be used: unreadable, not ours, locked, or the disk is full.

    ``usage`` is True when the user can fix it by choosing another ``--db`` (exit code 2).
    """

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS urls (
    id      INTEGER PRIMARY KEY,
    url     TEXT NOT NULL UNIQUE,
    origin  TEXT NOT NULL,
    depth   INTEGER NOT NULL,
    parent  INTEGER,
    state   INTEGER NOT NULL,
    reason  TEXT,
    chain   INTEGER NOT NULL DEFAULT 0,
    admitted INTEGER NOT NULL DEFAULT 0,
    fp      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS urls_queued ON urls (origin, id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS urls_query ON urls (url) WHERE admitted = 1 AND depth > 0 AND instr(url, '?') > 0;
CREATE TABLE IF NOT EXISTS pages (
    id            INTEGER PRIMARY KEY,
    final_url     TEXT NOT NULL,
    status        INTEGER,
    fetched_at    REAL NOT NULL,
    elapsed_ms    REAL NOT NULL,
    content_type  TEXT,
    bytes         INTEGER NOT NULL,
    title         TEXT,
    description   TEXT,
    canonical     TEXT,
    meta_robots   TEXT,
    text          TEXT,
    links         INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,
    duplicate_of  INTEGER,
    error         TEXT,
    detail        TEXT,
    attempts      INTEGER NOT NULL,
    encoding      TEXT,
    headers       TEXT,
    noindex       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS contents (hash TEXT PRIMARY KEY, first INTEGER NOT NULL, body BLOB);
"""


def rows_insert(insert: str) -> str:
    """``insert`` (``INSERT ... (columns) VALUES (?, ...)``) made to take a whole batch of rows
    as one JSON array, for :func:`insert_rows`."""
    columns, _, values = insert.partition("VALUES")
    picks = ", ".join(f"value->>{i}" for i in range(values.count("?")))
    return f"{columns}SELECT {picks} FROM json_each(?)"


def insert_rows(conn: sqlite3.Connection, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` with a :func:`rows_insert` statement: one step for the batch, where
    ``executemany`` steps once per row, and each step lets go of the GIL and must win it back
    from the busy event loop (~1,500 hand-offs a gathered batch). Strings travel exact (no
    ASCII escaping, so a lone surrogate is refused at bind, as with parameters); no blobs."""
    if rows:
        conn.execute(statement, (json.dumps(rows, ensure_ascii=False),))


# Blobs cannot travel in JSON: they travel joined in a second parameter, and each row says
# where its own is (1-based offset and length), or NULL for none.
_INSERT_CONTENTS = ("INSERT INTO contents (hash, first, body) SELECT value->>0, value->>1, CASE WHEN value->>2 "
                    "IS NULL THEN NULL ELSE substr(?2, value->>2, value->>3) END FROM json_each(?1)")


def insert_contents(conn: sqlite3.Connection, rows: Sequence[tuple[str, int]], blobs: Sequence[Any],
                    at_once: int = _PACK_AT_ONCE) -> None:
    """Rows of table ``contents`` ((hash, first page), and each one's blob or None), ``at_once``
    rows a step, for the reason of :func:`insert_rows`: a step per row (``executemany``) let go
    of the GIL once a page and then waited to get it back (in one process, the crawl ran 9%
    slower when hashing let go of it once more a page). Not a whole batch a step: the joined
    blobs are copied once more when bound, and 256 pages of them raised the peak at 200,000
    pages by ~9 MB (measured)."""
    for start in range(0, len(rows), at_once):
        chunk = blobs[start:start + at_once]
        spans: list[tuple[str, int, int | None, int | None]] = []
        at = 1
        for (digest, first), blob in zip(rows[start:start + at_once], chunk):
            if blob is None:
                spans.append((digest, first, None, None))
            else:
                size = len(blob)
                spans.append((digest, first, at, size))
                at += size
        conn.execute(_INSERT_CONTENTS, (json.dumps(spans), b"".join(blob for blob in chunk if blob is not None)))


_INSERT_PAGES = rows_insert("""INSERT OR REPLACE INTO pages (id, final_url, status, fetched_at, elapsed_ms,
    content_type, bytes, title, description, canonical, meta_robots, text, links, content_hash,
    duplicate_of, error, detail, attempts, encoding, headers, noindex)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""")


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open a crawl database for reading (export, report), checking it is one of ours.

    Raises FileNotFoundError (no file) or StorageError (not a crawl database of this version).
    """
    if not path.is_file():
        raise FileNotFoundError(f"no crawl database at {path}")
    # as_uri(): a '#' or '?' in the file name must not end the path part of the URI.
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StorageError(f"--db {path}: not a usable SQLite database: {exc}", usage=True) from None
    if version not in _COMPATIBLE:
        db.close()
        raise StorageError(f"--db {path}: not a crawl database of this sgcrawl version "
                           f"(schema {version}, expected {SCHEMA_VERSION})", usage=True)
    return db


async def open_db(path: Path) -> aiosqlite.Connection:
    """Open (creating if needed) a crawl database in WAL mode, in autocommit mode.

    Transactions are explicit (:meth:`Store.transaction`): one per gathered batch.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"--db {path}: cannot open: {exc}", usage=True) from None
    try:
        async with db.execute("PRAGMA user_version") as cur:
            version = (await cur.fetchone())[0]  # type: ignore[index]
        async with db.execute("SELECT COUNT(*) FROM sqlite_master") as cur:
            tables = (await cur.fetchone())[0]  # type: ignore[index]
        if tables and version not in _COMPATIBLE:
            raise StorageError(f"--db {path}: not a crawl database of this sgcrawl version "
                               "(use another --db, or --fresh to replace it)", usage=True)
        if not tables:
            # Rows here are large (a page's text and packed body: ~30 KB on the benchmark site).
            # With 64 KiB pages they sit in their b-tree leaf instead of a chain of 4 KiB overflow
            # pages: the writer's CPU per page halves (71 vs 145 us measured), the file grows ~7%.
            # Only a new file takes it; an existing one keeps its page size.
            await db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        await db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a power cut may lose the last batches but never corrupts the file;
        # a process crash (kill -9) loses nothing that was committed.
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        # 8 MB of page cache (not 32): the writer only appends and the dedupe lookups hit the
        # hash index; the smaller cache cost nothing measurable in pages/s and keeps the
        # crawler's resident set lower at 200,000 pages (169 -> 156 MB measured).
        await db.execute("PRAGMA cache_size=-8000")
        await db.executescript(SCHEMA)
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        await db.close()
        raise StorageError(f"--db {path}: not a usable SQLite database: {exc}", usage=True) from None
    except BaseException:
        await db.close()
        raise
    return db


class Store:
    """Page writes and crawl metadata on an open crawl database."""

    def __init__(self, db: aiosqlite.Connection, keep_bodies: bool = True) -> None:
        self.db = db
        self.keep_bodies = keep_bodies  # pack bodies into ``contents`` (WARC export needs them)

    async def commit(self, steps: Sequence[Step]) -> None:
        """Run ``steps`` in one transaction, in the connection's thread, in one round trip.

        A gathered batch is a dozen statements; awaited one by one, each waits for the busy
        event loop to resume the gatherer, and the transaction stays open across those waits.
        """
        await in_thread(self.db, _transaction, steps)

    def pages_step(self, outcomes: Sequence[Outcome], noindex: frozenset[int] = frozenset()) -> Step:
        """The step that stores fetched pages (idempotent: a page re-fetched after a crash
        replaces itself). Rows are built here, in the caller's thread; the step hashes and
        packs the bodies a parse process has not already hashed and packed
        (:class:`crawler.models.Outcome`), and writes.

        ``noindex``: ids of pages that asked not to be indexed (meta robots, X-Robots-Tag):
        stored, and flagged.

        Content dedupe: the first page stored with a body keeps it (packed, when bodies are
        kept); later ones point to it with ``duplicate_of``. Empty bodies (failed fetches) are
        never duplicates.
        """
        rows = []
        for o in outcomes:
            r, p = o.result, o.page
            rows.append([
                r.task.id, r.final_url, r.status, r.fetched_at, r.elapsed_ms, r.content_type,
                o.size, p and p.title, p and p.description, p and p.canonical,
                p and p.meta_robots, p.text if p else "", p.n_links if p else 0, EMPTY_HASH,
                None, r.error, r.detail, r.task.attempt + 1,
                p and p.encoding, json.dumps(r.headers) if r.headers else None, int(r.task.id in noindex),
            ])
        keep = self.keep_bodies

        def step(conn: sqlite3.Connection) -> None:
            # Hashing and packing happen here, in the database thread, for the pages a parse
            # process has not already hashed and packed (see crawler.parse_stage.parse_jobs):
            # so that they take little from the event loop (see crawler.bodies).
            for row, o in zip(rows, outcomes):
                if o.size:
                    row[13] = o.digest or body_digest(o.result.body)
            first = dict(select_in(conn, "SELECT hash, first FROM contents WHERE hash IN (SELECT value FROM json_each(?))",
                                   list({row[13] for row, o in zip(rows, outcomes) if o.size})))
            new: list[tuple[list[Any], Outcome]] = []
            for row, o in zip(rows, outcomes):
                if not o.size:
                    continue
                digest = row[13]
                if digest not in first:
                    first[digest] = row[0]
                    new.append((row, o))
                elif first[digest] != row[0]:
                    row[14] = first[digest]  # duplicate_of
                    if row[11] is None and o.packed is not None:  # its text came packed: unpack it
                        row[11] = text_of(o.packed, o.size)
            blobs: list[bytes | None] = [o.packed for _, o in new] if keep else [None] * len(new)
            if keep:
                # The first page with a body keeps its text right after it (see the module
                # docstring): one zstd frame, where the text's words are matches in the body.
                todo = [i for i, blob in enumerate(blobs) if blob is None]
                # A few dozen at a time: each body joined with its text is a copy (~42 KB on the
                # benchmark), and a whole batch of them at once was ~8 MB more at the peak.
                for start in range(0, len(todo), _PACK_AT_ONCE):
                    chunk = todo[start:start + _PACK_AT_ONCE]
                    packed = pack_all([payload(new[i][1].result.body, new[i][0][11]) for i in chunk])
                    for i, blob in zip(chunk, packed):
                        blobs[i] = blob
                for row, _ in new:
                    if row[11]:
                        row[11] = None  # the text is in the blob
            insert_contents(conn, [(row[13], row[0]) for row, _ in new], blobs)
            insert_rows(conn, _INSERT_PAGES, rows)

        return step

    async def get_meta(self) -> dict[str, Any]:
        async with self.db.execute("SELECT key, value FROM meta") as cur:
            return {k: json.loads(v) async for k, v in cur}

    async def set_meta(self, **values: Any) -> None:
        await self.db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in values.items()],
        )


async def in_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, *args)`` with the plain sqlite3 connection, in the connection's own thread, in
    one round trip: for work of many statements that must not wait on the event loop between
    them. (aiosqlite has no public call for this; its private one is used here only.)"""
    return await db._execute(lambda: fn(db._conn, *args))  # type: ignore[no-any-return]


def select_in(conn: sqlite3.Connection, sql: str, keys: list[str]) -> list[Any]:
    """The rows of ``sql``, whose one parameter is ``keys`` as a JSON array: write the test as
    ``x IN (SELECT value FROM json_each(?))``. Keys must be ASCII (canonical URLs, hex digests).

    One statement text for any number of keys (each length of an ``IN (?, ?, ...)`` list is a
    statement of its own in the connection's cache, ~10 MB measured), and one call instead of
    one per key: 1.1 instead of 4.9 us a URL, and no GIL hand-off for each.
    """
    return conn.execute(sql, (json.dumps(keys),)).fetchall() if keys else []


def _transaction(conn: sqlite3.Connection, steps: Sequence[Step]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in steps:
            step(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def remove_db(path: Path) -> None:
    """Delete a crawl database and its WAL side files (``--fresh``)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def exclusive(db: Path) -> Iterator[None]:
    """One run per database: a second would double-fetch and fight over the writer lock.

    An advisory lock on ``<db>.lock``; the kernel drops it when the process dies (kill -9),
    so a crashed run never blocks the next one.
    """
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"--db {db}: cannot create its lock file: {exc.strerror or exc}", usage=True) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise StorageError(f"--db {db}: another sgcrawl run is using it (pid {holder})", usage=True) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
