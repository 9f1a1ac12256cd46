"""Charset detection and decoding: browser order, WHATWG labels, the html5lib prescan suite."""

from __future__ import annotations

import base64
import codecs
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler import charset
from crawler.charset import decode, decode_html, detect, from_meta, looks_binary, normalize, prescan

CASES = json.loads((Path(__file__).parent / "data" / "html_encoding_cases.json").read_text())

# html5lib cases where the prescan gives another answer on purpose: the standard's
# prescan stops at 1024 bytes, and these declare their charset later, which a browser
# only honours once its tree builder reaches the <meta> ("change the encoding").
# parse_html does that step too: see test_parse.py::test_encoding_conformance_end_to_end.
LATE_META = "meta after the first 1024 bytes: found by the tree builder, not the prescan"
DEVIATIONS = {
    **{f"html5lib-enc-{n:03d}": LATE_META for n in range(48, 55)},
    "html5lib-enc-083": "the <meta> only exists once a script runs document.write()",
}


def conformance_answer(case: dict[str, Any]) -> tuple[str, str | None]:
    """(what sgcrawl says, what html5lib expects), both as WHATWG names."""
    name, declared = detect(base64.b64decode(case["data_b64"]), None)
    # the suite's default when nothing is declared is windows-1252
    return (name if declared else "windows-1252"), normalize(case["encoding"])


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_encoding_conformance(case: dict[str, Any]) -> None:
    got, expected = conformance_answer(case)
    if case["id"] in DEVIATIONS:
        assert got != expected, f"now conformant: drop {case['id']} from DEVIATIONS"
    else:
        assert got == expected


def test_encoding_conformance_score() -> None:
    score = sum(got == expected for got, expected in map(conformance_answer, CASES))
    assert len(CASES) == 83
    assert score == len(CASES) - len(DEVIATIONS) == 75


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("utf-8", "utf-8"), (" UTF8 ", "utf-8"), ("latin1", "windows-1252"),
        ("ISO-8859-1", "windows-1252"), ("ascii", "windows-1252"), ("US-ASCII", "windows-1252"),
        ("iso8859-2", "iso-8859-2"), ("latin2", "iso-8859-2"), ("iso-8859-9", "windows-1254"),
        ("Shift_JIS", "shift_jis"), ("sjis", "shift_jis"), ("windows-31j", "shift_jis"),
        ("EUC-JP", "euc-jp"), ("gb2312", "gbk"), ("big5", "big5"), ("ks_c_5601-1987", "euc-kr"),
        ("windows-874", "windows-874"), ("koi8-r", "koi8-r"), ("utf-16", "utf-16le"),
        ("bogus", None), ("", None), ("utf-7", None), ("base64", None), ("rot13", None),
        ('iso8859-2"', None),  # Python's lookup would fold the quote away
        ("utf\x00-8", None),
    ],
)
def test_normalize(label: str, name: str | None) -> None:
    assert normalize(label) == name


def test_every_supported_encoding_decodes() -> None:
    for name in set(charset._WHATWG.values()):
        assert normalize(name) == name
        assert isinstance(decode(b"abc\x80\xff\xfe", name), str)


@pytest.mark.parametrize(
    ("body", "content_type", "name"),
    [
        (codecs.BOM_UTF8 + b"<meta charset=latin1>x", "text/html; charset=latin1", "utf-8"),
        (codecs.BOM_UTF16_LE + "é".encode("utf-16le"), "text/html; charset=utf-8", "utf-16le"),
        (codecs.BOM_UTF16_BE + "é".encode("utf-16be"), None, "utf-16be"),
        (b"<meta charset=iso-8859-2>", "text/html; charset=koi8-r", "koi8-r"),  # header beats meta
        (b"<meta charset=iso-8859-2>", 'text/html; Charset="KOI8-R"', "koi8-r"),
        (b"<meta charset=iso-8859-2>", "text/html; charset=nonsense", "iso-8859-2"),  # unknown: ignored
        (b"<meta charset=iso-8859-2>", "text/html", "iso-8859-2"),
        (b'<meta http-equiv="Content-Type" content="text/html; charset=euc-jp">', None, "euc-jp"),
        (b"<meta charset=utf-16le>", None, "utf-8"),  # a prescanned document is not UTF-16
        (b"plain ascii", None, "utf-8"),
        ("valid utf-8 é".encode(), None, "utf-8"),
        (b"caf\xe9", None, "windows-1252"),  # not UTF-8: the legacy default
        (b"", None, "utf-8"),
    ],
)
def test_detect_order(body: bytes, content_type: str | None, name: str) -> None:
    assert decode_html(body, content_type)[1] == name


def test_detect_says_whether_declared() -> None:
    assert detect(b"<meta charset=koi8-r>", None) == ("koi8-r", True)
    assert detect(b"<p>nothing declared", None) == ("utf-8", False)


@pytest.mark.parametrize(
    ("body", "content_type", "text"),
    [
        (codecs.BOM_UTF8 + "é".encode(), None, "é"),  # the BOM is not text
        (codecs.BOM_UTF16_LE + "<p>é".encode("utf-16le"), None, "<p>é"),
        (b"\x93smart\x94 caf\xe9", "text/html; charset=iso-8859-1", "\u201csmart\u201d café"),
        ("日本語".encode("shift_jis"), "text/html; charset=Shift_JIS", "日本語"),
        ("①".encode("cp932"), "text/html; charset=shift_jis", "①"),  # browsers' Shift_JIS is cp932
        (b"bad \xff utf-8", "text/html; charset=utf-8", "bad \ufffd utf-8"),  # replaced, never raised
    ],
)
def test_decode_html_text(body: bytes, content_type: str | None, text: str) -> None:
    assert decode_html(body, content_type)[0] == text


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b'<meta charset="koi8-r">', "koi8-r"),
        (b"<META CHARSET=KOI8-R>", "koi8-r"),
        (b"<meta content='text/html; charset=koi8-r' http-equiv=content-type>", "koi8-r"),
        (b'<meta http-equiv="content-type" content="text/html; charset=\'koi8-r\'">', "koi8-r"),
        (b'<meta content="text/html; charset=koi8-r">', None),  # needs the http-equiv pragma
        (b'<!-- <meta charset="koi8-r"> --><meta charset="euc-jp">', "euc-jp"),
        (b'<p title="<meta charset=koi8-r>"><meta charset="euc-jp">', "euc-jp"),
        (b"<meta charset=bogus><meta charset=euc-jp>", "euc-jp"),
        (b"<meta charset=koi8-r", None),  # cut off: the scan ends
        (b"<!-- never closed <meta charset=koi8-r>", None),
        (b"<meta/charset=koi8-r>", "koi8-r"),
        (b"<metacharset=koi8-r>", None),
        (b"", None),
    ],
)
def test_prescan(head: bytes, name: str | None) -> None:
    assert prescan(head) == name


@pytest.mark.parametrize(
    ("body", "binary"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", True),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(256)), True),
        (b"<html><body>hello</body></html>", False),
        (b"<p>a stray NUL \x00 in a long enough page of text, still a page</p>", False),
        (codecs.BOM_UTF16_LE + "<p>hi</p>".encode("utf-16le"), False),
        (b"", False),
    ],
)
def test_looks_binary(body: bytes, binary: bool) -> None:
    assert looks_binary(body) is binary


def test_utf16_declared_by_header_is_not_binary() -> None:
    body = "<p>hi</p>".encode("utf-16le")
    assert looks_binary(body) and not looks_binary(body, "utf-16le")


@settings(max_examples=300, deadline=None)
@given(st.binary(), st.one_of(st.none(), st.text(max_size=40)))
def test_never_raises(body: bytes, content_type: str | None) -> None:
    text, name = decode_html(body, content_type)
    assert isinstance(text, str) and normalize(name) == name
    found = prescan(body)
    assert found is None or normalize(found) == found


@pytest.mark.parametrize(
    ("attrs", "name"),
    [
        ({"charset": "KOI8-R"}, "koi8-r"),
        ({"charset": "utf-16be"}, "utf-8"),
        ({"http-equiv": "Content-Type", "content": "text/html; charset=euc-jp"}, "euc-jp"),
        ({"http-equiv": "Content-Type ", "content": "text/html; charset=euc-jp"}, None),
        ({"content": "text/html; charset=euc-jp"}, None),
        ({"name": "description", "content": None}, None),
    ],
)
def test_from_meta(attrs: dict[str, str | None], name: str | None) -> None:
    assert from_meta(attrs) == name


def test_public_names() -> None:
    assert set(charset.__all__) == {"decode_html", "decode", "detect", "prescan", "from_meta",
                                    "normalize", "looks_binary"}


_HEAD_PIECES = st.sampled_from([
    "<!doctype html>", "<!DOCTYPE html>", "<!-- x -->", "<!--", "<!-x>", "<html lang=\"en\">", "<head>", "</head>",
    "<title>t</title>", "<meta charset=\"utf-8\">", "<meta charset=utf-8>", "<meta charset=\"koi8-r\" >",
    "<meta charset=utf-8/>", "<meta charset=utf-8 />", "<meta charset='latin1'>", "<meta charset=\"bogus\">",
    "<meta charset = \"utf-8\">", "<meta charset=\"utf-16\">",
    "<meta http-equiv=\"content-type\" content=\"text/html; charset=iso-8859-2\">",
    "<meta name=\"x\" content=\"charset=windows-1251\">", "<meta name=\"viewport\" content=\"w\">", "<meta>",
    "<metadata>", "<meta/charset=\"gbk\">", "<a x=\"<meta charset=utf-8>\">", "<a x=y>", "<a/>", "< b", "text", " ",
    "\t", "\x0b", "<?xml?>", "</ >", "<br/>", "<A HREF=\"X\">", "<META CHARSET=\"WINDOWS-1251\">", "=", "\"", ">",
    "<", "<x y=\">\">", "<x-y z=\"1\">", "<p  class=\"a\"  >", "<a b=\"1\"c=\"2\">",
])


@settings(max_examples=2000, deadline=None)
@given(st.lists(_HEAD_PIECES, max_size=12).map("".join), st.integers(0, 400))
def test_prescan_shortcut_reads_as_the_scan_does(head: str, cut: int) -> None:
    # prescan() first tries one regular expression for the common head; wherever it answers,
    # the answer must be the full scan's, also for a head cut off anywhere (the 1024-byte window).
    from crawler import charset

    data = head.encode("latin-1")[: cut or None]
    assert prescan(data) == charset._scan(data.lower())
