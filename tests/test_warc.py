"""WARC export: a real crawl of a small site comes back from the WARC page by page."""

from __future__ import annotations

import gzip as gz
import io
import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from warcio.archiveiterator import ArchiveIterator

from crawler.bodies import body_of, text_of, unpack
from crawler.export import iter_records
from crawler.warc import WarcUnavailable, write_warc

from conftest import html, redirect, respond

NOT_FOUND = b"<html><title>Not found</title></html>"  # conftest's answer for unknown paths
REWRITTEN = {"content-encoding", "transfer-encoding", "content-length"}


def gzipped(raw: bytes) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=gz.compress(raw), content_type="text/html", headers={"Content-Encoding": "gzip"})

    return handler


def site_map() -> tuple[dict[str, Any], dict[str, bytes]]:
    """The pages, and the (decoded) body each path answers with."""
    bodies = {
        "/": html("home", ["/a", "/gz", "/utf", "/dup1", "/gone", "/missing", "/boom", "/old", "/to-a",
                           "http://127.0.0.1:1/refused"]).encode(),
        "/a": html("A").encode(),
        "/gz": html("compressed", body="squeeze me " * 200).encode(),
        "/utf": html("Grüße", body="日本語 — naïve café").encode(),
        "/dup1": html("same", ["/dup2"], body="twins").encode(),
        "/gone": b"<html><title>Gone</title><p>this page has left</p></html>",
        "/missing": NOT_FOUND,
        "/boom": b"<h1>server error</h1>",
        "/new": html("moved here").encode(),
    }
    bodies["/dup2"] = bodies["/dup1"]
    pages: dict[str, Any] = {path: body for path, body in bodies.items() if path != "/missing"}
    pages["/gz"] = gzipped(bodies["/gz"])
    pages["/utf"] = respond(bodies["/utf"], headers={"X-Note": "café"}, content_type="text/html")
    pages["/gone"] = respond(bodies["/gone"], status=404)
    pages["/boom"] = respond(bodies["/boom"], status=500)
    pages["/old"] = redirect("/new")  # followed: recorded under /new
    pages["/to-a"] = redirect("/a")  # /a is already known: stored as a 302 of its own
    return pages, bodies


def stored_pages(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT u.url, p.final_url, p.status, p.headers FROM pages p JOIN urls u ON u.id = p.id")
        return [{"url": u, "final_url": f, "status": s, "headers": json.loads(h) if h else []} for u, f, s, h in rows]


def read_warc(data: bytes) -> list[dict[str, Any]]:
    records = []
    for rec in ArchiveIterator(io.BytesIO(data), check_digests="raise"):
        records.append({"type": rec.rec_type, "protocol": rec.rec_headers.protocol,
                        "warc": dict(rec.rec_headers.headers), "http": rec.http_headers,
                        "body": rec.content_stream().read()})
    return records


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def crawl_site(make_site: Any, crawl: Any, **settings: Any) -> tuple[Any, Path, dict[str, bytes]]:
    pages, bodies = site_map()
    site = await make_site(pages)
    result = await crawl(site.url("/"), retries=0, scope="any", obey=False, **settings)
    return site, result.db, bodies


@pytest.mark.parametrize("compress", [True, False])
async def test_every_stored_page_comes_back_with_headers_and_body(make_site: Any, crawl: Any, tmp_path: Path,
                                                                  compress: bool) -> None:
    site, db, bodies = await crawl_site(make_site, crawl)
    out = tmp_path / ("crawl.warc.gz" if compress else "crawl.warc")
    with out.open("wb") as fh:
        n = write_warc(db, fh, gzip=compress)
    data = out.read_bytes()
    assert data[:2] == b"\x1f\x8b" if compress else data.startswith(b"WARC/1.1\r\n")
    records = read_warc(data)
    assert all(r["protocol"] == "WARC/1.1" for r in records)

    info = records[0]
    assert info["type"] == "warcinfo" and [r["type"] for r in records].count("warcinfo") == 1
    assert b"software: sgcrawl/" in info["body"] and f"seed: {site.url('/')}\r\n".encode() in info["body"]

    by_id = {r["warc"]["WARC-Record-ID"]: r for r in records}
    answers = {r["warc"]["WARC-Target-URI"]: r for r in records if r["type"] in ("response", "revisit")}
    requests = [r for r in records if r["type"] == "request"]
    assert n == len(answers) == len(requests)

    pages = stored_pages(db)
    answered = [p for p in pages if p["status"] is not None]
    assert len(answered) == n == len(pages) - 1  # only the refused connection has no response
    assert not any("127.0.0.1:1" in uri for uri in answers)

    for page in answered:
        path = path_of(page["url"])
        uri = site.url("/to-a") if path == "/to-a" else page["final_url"]
        rec = answers.pop(uri)
        assert rec["http"].get_statuscode() == str(page["status"])
        body = rec["body"]
        if rec["type"] == "revisit":
            original = by_id[rec["warc"]["WARC-Refers-To"]]
            assert original["warc"]["WARC-Target-URI"] == rec["warc"]["WARC-Refers-To-Target-URI"]
            assert original["warc"]["WARC-Date"] == rec["warc"]["WARC-Refers-To-Date"]
            assert original["warc"]["WARC-Payload-Digest"] == rec["warc"]["WARC-Payload-Digest"]
            body = original["body"]
        expected = b"" if path == "/to-a" else bodies[path_of(page["final_url"])]
        assert body == expected, path
        kept = [(k, v) for k, v in page["headers"] if k.lower() not in REWRITTEN]
        assert rec["http"].headers == [*kept, ("Content-Length", str(len(expected)))], path

        request = by_id[rec["warc"]["WARC-Concurrent-To"]]
        assert request["type"] == "request"
        assert request["warc"]["WARC-Concurrent-To"] == rec["warc"]["WARC-Record-ID"]
        assert request["warc"]["WARC-Target-URI"] == uri and request["warc"]["WARC-Date"] == rec["warc"]["WARC-Date"]
        sent = next(h for h in site.page_log if h.path == path_of(uri))
        assert request["http"].protocol == "GET" and request["http"].statusline == f"{path_of(uri)} HTTP/1.1"
        assert request["http"]["User-Agent"] == sent.headers["User-Agent"]
        assert request["http"]["Host"] == sent.headers["Host"]
    assert not answers

    kinds = {path_of(r["warc"]["WARC-Target-URI"]): r for r in records if r["type"] in ("response", "revisit")}
    assert kinds["/dup2"]["type"] == "revisit" and kinds["/dup1"]["type"] == "response"
    assert kinds["/gz"]["http"]["Content-Encoding"] is None
    assert kinds["/utf"]["http"]["X-Note"] == "café"
    assert kinds["/to-a"]["http"].get_statuscode() == "302" and kinds["/to-a"]["http"]["Location"] == "/a"
    assert "/old" not in kinds and kinds["/new"]["http"].get_statuscode() == "200"
    assert {kinds[p]["http"].get_statuscode() for p in ("/gone", "/missing", "/boom")} == {"404", "500"}


async def test_user_agent_override(make_site: Any, crawl: Any) -> None:
    _, db, _ = await crawl_site(make_site, crawl, max_pages=3)
    buf = io.BytesIO()
    assert write_warc(db, buf, user_agent="archiver/1.0") == sum(p["status"] is not None for p in stored_pages(db))
    records = read_warc(buf.getvalue())
    assert b"http-header-user-agent: archiver/1.0" in records[0]["body"]
    assert {r["http"]["User-Agent"] for r in records if r["type"] == "request"} == {"archiver/1.0"}


async def test_bodies_are_zstd_and_older_zlib_ones_still_export(make_site: Any, crawl: Any) -> None:
    _, db, bodies = await crawl_site(make_site, crawl)
    with sqlite3.connect(db) as con:
        blobs = con.execute("SELECT hash, body FROM contents WHERE body IS NOT NULL").fetchall()
        assert blobs and all(body[:4] == b"\x28\xb5\x2f\xfd" for _, body in blobs)  # zstd frames
        before = io.BytesIO()
        write_warc(db, before)
        # A database written before bodies were zstd: every body a zlib stream. Same export.
        con.executemany("UPDATE contents SET body = ? WHERE hash = ?",
                        [(zlib.compress(unpack(body)), h) for h, body in blobs])
    after = io.BytesIO()
    write_warc(db, after)
    payload = [(r["warc"]["WARC-Target-URI"], r["body"]) for r in read_warc(after.getvalue()) if r["type"] == "response"]
    assert payload == [(r["warc"]["WARC-Target-URI"], r["body"])
                       for r in read_warc(before.getvalue()) if r["type"] == "response"]
    assert bodies["/gz"] in [body for _, body in payload]


async def test_no_bodies_kept_means_no_warc(make_site: Any, crawl: Any) -> None:
    _, db, _ = await crawl_site(make_site, crawl, store_bodies=False)
    buf = io.BytesIO()
    with pytest.raises(WarcUnavailable, match=r"crawl\.store_bodies = false.*run it again with store_bodies on"):
        write_warc(db, buf)
    assert buf.getvalue() == b""


async def test_texts_kept_after_their_bodies_export_as_texts_in_rows_do(make_site: Any, crawl: Any,
                                                                       tmp_path: Path) -> None:
    # With bodies kept, the first page with a body has its text packed after it (pages.text
    # NULL); without bodies, in a duplicate's row, and in a database of schema 3, the text is
    # in the row. The export cannot tell them apart.
    _, packed, _ = await crawl_site(make_site, crawl)
    _, plain, _ = await crawl_site(make_site, crawl, store_bodies=False, db=str(tmp_path / "plain.db"))

    def texts(db: Path) -> dict[str, str]:
        return {path_of(r["url"]): r["text"] for r in iter_records(db)}

    expected = texts(plain)
    assert "squeeze me squeeze me" in expected["/gz"] and "日本語 — naïve café" in expected["/utf"]
    assert texts(packed) == expected
    with sqlite3.connect(plain) as con:
        assert con.execute("SELECT COUNT(*) FROM pages WHERE text IS NULL").fetchone()[0] == 0
    with sqlite3.connect(packed) as con:
        in_blob = {path_of(u) for (u,) in con.execute(
            "SELECT u.url FROM pages p JOIN urls u ON u.id = p.id WHERE p.text IS NULL")}
        assert {"/", "/gz", "/utf", "/dup1"} <= in_blob and "/dup2" not in in_blob  # a duplicate keeps its own
        # Back to schema 3: every text in its row, every blob a body alone. Same export.
        moved = con.execute("SELECT p.id, c.hash, c.body, p.bytes FROM pages p "
                            "JOIN contents c ON c.hash = p.content_hash WHERE p.text IS NULL").fetchall()
        for page_id, digest, blob, size in moved:
            con.execute("UPDATE pages SET text = ? WHERE id = ?", (text_of(blob, size), page_id))
            con.execute("UPDATE contents SET body = ? WHERE hash = ?", (zlib.compress(body_of(blob, size)), digest))
        con.execute("PRAGMA user_version = 3")
    assert texts(packed) == expected
    await crawl(db=str(packed), retries=0, scope="any", obey=False)  # resumed: it is version 4 now
    with sqlite3.connect(packed) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 4
    assert texts(packed) == expected


def test_missing_database(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no crawl database at"):
        write_warc(tmp_path / "nope.db", io.BytesIO())


async def test_cut_off_bodies_redirect_hops_and_odd_headers(make_site: Any, crawl: Any) -> None:
    big = b"<html>" + b"x" * 5000 + b"</html>"
    site = await make_site({"/": html("home", ["/big", "/hop1"]), "/big": big,
                            "/hop1": redirect("/hop2"), "/hop2": redirect("/")})
    db = (await crawl(site.url("/"), obey=False, max_bytes=1000)).db
    with sqlite3.connect(db) as con:  # headers aiohttp could not decode, a status without a phrase
        con.execute("UPDATE pages SET status = 599, headers = ? WHERE id = (SELECT id FROM urls WHERE url = ?)",
                    (json.dumps([["X-Raw", "caf\udce9"], ["X-Fold", "a\r\n b"]]), site.url("/")))
    buf = io.BytesIO()
    assert write_warc(db, buf, gzip=False) == 3
    answers = {path_of(r["warc"]["WARC-Target-URI"]): r for r in read_warc(buf.getvalue()) if r["type"] == "response"}
    cut = answers["/big"]  # announced as too large: not read at all
    assert cut["warc"]["WARC-Truncated"] == "length" and cut["body"] == b"" and cut["http"]["Content-Length"] == "0"
    # /hop1 -> /hop2 -> / (known): the 302 is recorded under the URL that sent it, /hop2
    assert answers["/hop2"]["http"].get_statuscode() == "302" and answers["/hop2"]["http"]["Location"] == "/"
    assert "WARC-Truncated" not in answers["/hop2"]["warc"]
    home = answers["/"]
    assert home["http"].get_statuscode() == "599"
    assert home["http"].headers == [("X-Raw", "caf\xe9"), ("X-Fold", "a   b"), ("Content-Length", str(len(home["body"])))]
    assert b"X-Raw: caf\xe9\r\n" in buf.getvalue()  # the bytes as received


def test_public_names() -> None:
    import crawler.warc

    assert sorted(crawler.warc.__all__) == ["WarcUnavailable", "write_warc"]
