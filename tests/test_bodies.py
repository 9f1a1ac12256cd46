"""Body packing and hashing (crawler.bodies): what the writer stores must read back exactly."""

from __future__ import annotations

import hashlib
import zlib

import pytest

from crawler.bodies import body_of, digest, pack_all, pack_page, payload, text_of, unpack


@pytest.mark.parametrize("size", [0, 1, 2046, 2047, 2048, 4094, 4095, 22_000, 1_000_003])
def test_digest_is_the_sha256_of_the_whole_body(size: int) -> None:
    body = bytes(i * 7 % 251 for i in range(size))
    assert digest(body) == hashlib.sha256(body).hexdigest()


def test_pack_all_round_trips_each_body_in_order() -> None:
    bodies = [b"<html>" + bytes([n]) * (n * 997) + b"</html>" for n in range(1, 40)] + [b"x"]
    packed = pack_all(bodies)
    assert len(packed) == len(bodies)
    assert [unpack(bytes(blob)) for blob in packed] == bodies
    assert pack_all([]) == []


@pytest.mark.parametrize("text", ["", "plain words", "naïve café — 中文 " * 300])
def test_a_page_packed_alone_reads_back_as_one_packed_in_a_batch(text: str) -> None:
    # A parse process packs each page alone (pack_page), the writer a batch (pack_all): the
    # readers must not see which one did it.
    body = "<html><p>café</p></html>".encode() * 50
    for blob in (pack_page(body, text), bytes(pack_all([payload(body, text)])[0])):
        assert body_of(blob, len(body)) == body
        assert text_of(blob, len(body)) == text
    assert payload(body, "") == body


def test_unpack_still_reads_zlib_bodies_of_older_databases() -> None:
    assert unpack(zlib.compress(b"<p>old</p>", 1)) == b"<p>old</p>"


def test_contents_rows_go_in_one_statement_and_read_back_exactly() -> None:
    # The blobs travel joined in one parameter and each row slices its own out of it: a blob
    # that ends in zero bytes, one of a single byte, rows without one, and zstd's own buffer
    # segments must all read back byte for byte.
    import sqlite3

    from crawler.store import SCHEMA, insert_contents

    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    blobs = [b"\x00\x01tail\x00\x00", None, b"x", *pack_all([b"<p>one</p>" * 30, b"<p>two</p>"]), None]
    rows = [(f"h{i}", i) for i in range(len(blobs))]
    insert_contents(conn, rows, blobs, at_once=4)  # two steps: offsets start again in each
    insert_contents(conn, [], [])
    stored = {h: (first, body) for h, first, body in conn.execute("SELECT hash, first, body FROM contents")}
    assert stored == {h: (first, None if blob is None else bytes(blob)) for (h, first), blob in zip(rows, blobs)}
    assert unpack(stored["h3"][1]) == b"<p>one</p>" * 30
