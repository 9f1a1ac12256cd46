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
