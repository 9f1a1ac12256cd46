"""crawler.robots: google/robotstxt and protego conformance, then our own layer's contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crawler.robots
from crawler.robots import MAX_ROBOTS_BYTES, RobotsRules, is_allowed, product_token

DATA = Path(__file__).parent / "data"


def _cases(name: str) -> list[dict[str, Any]]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


GOOGLE = _cases("robots_google_cases.json")
PROTEGO = _cases("robots_protego_cases.json")

# Cases we decide against, with the reason. Each asserts the opposite of the file's answer,
# so that a change in either direction is noticed.
GOOGLE_DEVIATIONS = {
    # We are given a whole User-Agent ("MyBot/1.0 (+https://x.y/bot)") and match its product
    # token (RFC 9309 2.2.1), so "Foo Bar" is the bot "Foo" and gets the "User-Agent: Foo Bar"
    # group. Google's library wants the bare token and treats "Foo Bar" as matching nothing.
    "google-041": "we match the product token of a full User-Agent string",
    # RFC 9309 2.2.2: non-ASCII octets MUST be percent-encoded before comparison, on the URL
    # as on the rule. Google leaves a raw URL raw, so Allow: /foo/bar/ツ (or its escape) misses
    # /foo/bar/ツ; we encode it and match (as protego-275 and protego-277 expect). Our own URLs
    # are canonical, already encoded, so the crawl is the same either way.
    "google-064": "RFC 9309 2.2.2: a raw non-ASCII URL is percent-encoded before matching",
    "google-066": "RFC 9309 2.2.2: a raw non-ASCII URL is percent-encoded before matching",
    # RFC 9309 2.2.2: escapes of unreserved characters are decoded before comparison, so
    # /foo/bar/%62%61%7A is /foo/bar/baz (as protego-278 expects). Google compares bytes. Our
    # canonical URLs decode such escapes, so Google's way would make the rule never match.
    "google-067": "RFC 9309 2.2.2: %62%61%7A is baz (escaped unreserved characters decoded)",
}
PROTEGO_DEVIATIONS = {
    # Unknown lines do not end a group (Google ID_LineSyntax_Groups_OtherRules, google-020):
    # "User-agent: *", an unknown line, then "User-agent: ia_archiver / Disallow: /" is one
    # group, so "*" is disallowed everything. Protego starts a new group at the unknown line.
    "protego-240": "unknown line does not end a group (google-020)",
    "protego-241": "unknown line does not end a group (google-020)",
    "protego-242": "unknown line does not end a group (google-020)",
    # Protego searches the whole User-Agent for a robots.txt name ("...; Львів-bot/1.1)");
    # we take the leading product token, "Mozilla" here, as RFC 9309 2.2.1 and Google do.
    "protego-117": "the group is chosen by the leading product token only",
    # Protego falls back to a group whose name is a prefix of ours ("hedwig" for hedwig-new,
    # "hedwig-news" for hedwig-news2). RFC 9309 2.2.1: with no exactly matching group the
    # crawler MUST obey "*", and so does Google's library.
    "protego-315": "no prefix matching of user agents: RFC 9309 says fall back to *",
    "protego-321": "no prefix matching of user agents: RFC 9309 says fall back to *",
    "protego-322": "no prefix matching of user agents: RFC 9309 says fall back to *",
    "protego-324": "no prefix matching of user agents: RFC 9309 says fall back to *",
    "protego-325": "no prefix matching of user agents: RFC 9309 says fall back to *",
}


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["id"] for c in cases]


def test_public_names() -> None:
    assert set(crawler.robots.__all__) == {
        "RobotsRules", "is_allowed", "product_token", "MAX_ROBOTS_BYTES"
    }


def test_deviations_are_real_cases() -> None:
    assert set(GOOGLE_DEVIATIONS) <= set(_ids(GOOGLE))
    assert set(PROTEGO_DEVIATIONS) <= set(_ids(PROTEGO))
    assert len(GOOGLE) - len(GOOGLE_DEVIATIONS) >= 138


@pytest.mark.parametrize("case", GOOGLE, ids=_ids(GOOGLE))
def test_google(case: dict[str, Any]) -> None:
    expected = case["allowed"] ^ (case["id"] in GOOGLE_DEVIATIONS)
    assert is_allowed(case["robots_txt"], case["user_agent"], case["url"]) is expected


@pytest.mark.parametrize("case", PROTEGO, ids=_ids(PROTEGO))
def test_protego(case: dict[str, Any]) -> None:
    expected = case["allowed"] ^ (case["id"] in PROTEGO_DEVIATIONS)
    assert is_allowed(case["robots_txt"], case["user_agent"], case["url"]) is expected


# --- user agent and groups ------------------------------------------------------------------

@pytest.mark.parametrize(("ua", "token"), [
    ("sgcrawl/0.1.0", "sgcrawl"),
    ("MyBot/1.0 (+https://x.y/bot)", "mybot"),
    ("  Foo_Bar-baz ", "foo_bar-baz"),
    ("MJ12bot/v1.4", "mj12bot"),
    ("*", ""),
    ("", ""),
    ("/1.0", ""),
])
def test_product_token(ua: str, token: str) -> None:
    assert product_token(ua) == token


ROBOTS = """\
User-agent: *
Disallow: /private/
Crawl-delay: 3

User-agent: SGcrawl (beta)
User-agent: other
Disallow: /only-sgcrawl/
"""


@pytest.mark.parametrize("ua", ["sgcrawl/0.1.0", "SGCRAWL", "sgcrawl/2 (+https://x.y/bot)"])
def test_own_group_by_token(ua: str) -> None:
    rules = RobotsRules.parse(ROBOTS, ua)
    assert not rules.allowed("https://example.com/only-sgcrawl/x")
    assert rules.allowed("https://example.com/private/x")  # the * group does not apply
    assert rules.crawl_delay is None  # nor does its Crawl-delay


@pytest.mark.parametrize("ua", ["sgcrawler/1.0", "sg/1.0", "", "*"])
def test_other_agents_get_star(ua: str) -> None:
    rules = RobotsRules.parse(ROBOTS, ua)
    assert not rules.allowed("https://example.com/private/x")
    assert rules.allowed("https://example.com/only-sgcrawl/x")
    assert rules.crawl_delay == 3.0


def test_groups_for_the_same_agent_merge() -> None:
    text = "User-agent: a\nDisallow: /x\n\nUser-agent: b\nDisallow: /y\n\nUser-agent: A\nAllow: /z"
    rules = RobotsRules.parse(text, "a")
    assert [rules.allowed(p) for p in ("/x", "/y", "/z", "/w")] == [False, True, True, True]


def test_non_rule_lines_do_not_split_agents() -> None:
    text = "User-agent: a\nCrawl-delay: 5\nHost: x\nUser-agent: b\nDisallow: /\n"
    rules = RobotsRules.parse(text, "a")
    assert not rules.allowed("/x")
    assert rules.crawl_delay == 5.0


def test_rules_before_any_agent_are_ignored() -> None:
    assert RobotsRules.parse("Disallow: /\nUser-agent: x\nDisallow: /x\n", "y").allowed("/a")


# --- crawl delay ----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "delay"), [
    ("2", 2.0), ("0.5", 0.5), (" 10 ", 10.0), ("0", 0.0), ("1e1", 10.0),
    ("abc", None), ("-1", None), ("", None), ("nan", None), ("inf", None), ("5s", None),
])
def test_crawl_delay_values(value: str, delay: float | None) -> None:
    assert RobotsRules.parse(f"User-agent: *\nCrawl-delay: {value}\n", "x").crawl_delay == delay


def test_crawl_delay_absent_and_merged() -> None:
    assert RobotsRules.parse("User-agent: *\nDisallow: /x\n", "x").crawl_delay is None
    text = "User-agent: x\nCrawl-delay: 1\nCrawl-delay: oops\n\nUser-agent: x\nCrawl-delay: 4\n"
    assert RobotsRules.parse(text, "x").crawl_delay == 4.0  # the slowest of merged groups
    assert RobotsRules.parse(text, "y").crawl_delay is None


# --- sitemaps -------------------------------------------------------------------------------

def test_sitemaps() -> None:
    text = """\
Sitemap: https://example.com/a.xml
User-agent: somebot
Disallow: /
SITEMAP: http://example.com/b.xml.gz # comment
Sitemap: /relative.xml
Sitemap: ftp://example.com/c.xml
Sitemap: https://example.com/a.xml
Sitemap https://example.com/d.xml
Sitemap:
"""
    assert RobotsRules.parse(text, "sgcrawl").sitemaps == (
        "https://example.com/a.xml", "http://example.com/b.xml.gz", "https://example.com/d.xml"
    )
    assert RobotsRules.parse("User-agent: *\nDisallow: /\n", "x").sitemaps == ()


# --- body: size cap, bytes, encoding --------------------------------------------------------

def _padded(rule: str, pad_to: int) -> bytes:
    head = b"User-agent: *\nDisallow: /early\n"
    filler = b"# " + b"x" * (pad_to - len(head) - 3) + b"\n"
    return head + filler + rule.encode() + b"\n"


def test_rules_after_500_kib_are_ignored() -> None:
    before = _padded("Disallow: /late", MAX_ROBOTS_BYTES - 100)
    after = _padded("Disallow: /late", MAX_ROBOTS_BYTES + 10)
    assert not RobotsRules.parse(before, "x").allowed("/late")
    rules = RobotsRules.parse(after, "x")
    assert rules.allowed("/late")
    assert not rules.allowed("/early")
    # The same as str: the cap is in UTF-8 bytes either way.
    assert RobotsRules.parse(after.decode(), "x").allowed("/late")


def test_cut_is_on_a_line_boundary() -> None:
    # The rule straddles the 500 KiB mark: cut mid-line it would read "Disallow: /a" and
    # block everything under /a. It must be dropped whole instead.
    body = _padded("Disallow: /abcdefghijklmnop", MAX_ROBOTS_BYTES - 15)
    assert len(body) > MAX_ROBOTS_BYTES > body.index(b"Disallow: /abc") + 12
    assert RobotsRules.parse(body, "x").allowed("/a")


def test_bytes_bom_and_invalid_utf8() -> None:
    body = b"\xef\xbb\xbfUser-agent: *\nDisallow: /x\n# \xff\xfe\x00 junk\nDisallow: /caf\xc3\xa9"
    rules = RobotsRules.parse(body, "x")
    assert not rules.allowed("https://e.com/x")
    assert not rules.allowed("https://e.com/caf%C3%A9")
    assert rules.allowed("https://e.com/y")
    assert not RobotsRules.parse("\ufeffUser-agent: *\nDisallow: /x\n", "x").allowed("/x")
    # A str may hold a lone surrogate (from a bad decode upstream): it becomes U+FFFD too.
    assert not is_allowed("User-agent: *\nDisallow: /\ud800\n", "x", "/\ud800")
    # An invalid byte in a rule becomes U+FFFD; the rules around it still hold.
    rules = RobotsRules.parse(b"User-agent: *\nDisallow: /\xff\nDisallow: /y\n", "x")
    assert not rules.allowed("/y") and rules.allowed("/z")


def test_garbage_allows_all() -> None:
    for body in (b"\x00\x01\x02" * 1000, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 50, "<html>"):
        rules = RobotsRules.parse(body, "sgcrawl")
        assert rules.allowed("https://e.com/") and rules.crawl_delay is None


def test_allow_all_and_disallow_all() -> None:
    assert RobotsRules.allow_all().allowed("https://e.com/anything?x=1")
    assert not RobotsRules.disallow_all().allowed("https://e.com/")
    for rules in (RobotsRules.allow_all(), RobotsRules.disallow_all()):
        assert rules.crawl_delay is None and rules.sitemaps == ()


# --- URLs -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "allowed"), [
    ("https://e.com/a/b?x=1", False),
    ("/a/b?x=1", False),
    ("https://e.com/a/b", True),
    ("https://e.com/A/b?x=1", True),  # paths are case-sensitive
    ("https://e.com/a/b?x=1#frag", False),
    ("https://e.com/a/%62?x=1", False),  # escapes of unreserved characters are decoded
    ("https://e.com/p.pdf", False),
    ("https://e.com/p.pdf?download", True),  # "$" anchors at the end of path and query
    ("https://e.com/robots.txt", True),  # always allowed (RFC 9309 2.2.2)
])
def test_urls(url: str, allowed: bool) -> None:
    text = "User-agent: *\nDisallow: /a/b?x=\nDisallow: /*.pdf$\nDisallow: /robots\n"
    assert RobotsRules.parse(text, "x").allowed(url) is allowed


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_never_raises(robots_txt: str, path: str) -> None:
    assert isinstance(is_allowed(robots_txt, "sgcrawl/0.1.0", path), bool)
    assert isinstance(is_allowed("User-agent: *\nDisallow: /a*b$\n", "x", path), bool)


@settings(max_examples=200, deadline=None)
@given(st.binary(), st.sampled_from(["https://e.com/", "//[x", "http://[", "/\ud800", "?q"]))
def test_never_raises_on_bytes(body: bytes, url: str) -> None:
    rules = RobotsRules.parse(b"User-agent: *\nDisallow: /z\n" + body, "x")
    assert isinstance(rules.allowed(url), bool)
