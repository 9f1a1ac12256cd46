"""crawler.scope: registered domains (offline), scope modes, admission order and filters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import crawler.scope
from crawler.models import Skip
from crawler.scope import Admission, Scope, site_key


def test_public_names() -> None:
    assert set(crawler.scope.__all__) == {"site_key", "Scope", "Admission", "SCOPE_MODES"}


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("example.com", "example.com"),
        ("www.example.com", "example.com"),
        ("WWW.Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("www.bbc.co.uk", "bbc.co.uk"),
        ("a.b.bbc.co.uk", "bbc.co.uk"),
        ("sub.example.co.jp", "example.co.jp"),
        ("co.uk", "co.uk"),  # a bare public suffix keys to itself
        ("com", "com"),
        ("localhost", "localhost"),  # no registered domain
        ("foo.bar.internal", "foo.bar.internal"),  # unknown suffix: the host itself
        ("alice.github.io", "alice.github.io"),  # private suffixes count: one user's site
        ("x.blogspot.com", "x.blogspot.com"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("127.0.0.1", "127.0.0.0/24"),
        ("127.0.0.8", "127.0.0.0/24"),
        ("10.1.2.3", "10.1.2.0/24"),
        ("::1", "::/64"),
        ("2001:db8::1", "2001:db8::/64"),
        ("[2001:db8:0:0:ff::1]", "2001:db8::/64"),
        ("", ""),
    ],
)
def test_site_key(host: str, key: str) -> None:
    assert site_key(host) == key


def test_site_key_is_offline_and_writes_nothing(tmp_path: Path) -> None:
    # A fresh interpreter (nothing loaded yet) with networking made to fail loudly and an
    # empty home for tldextract's default cache directory.
    code = textwrap.dedent(
        """
        import socket
        def boom(*a, **k):
            raise AssertionError("network access")
        socket.socket.connect = boom
        socket.getaddrinfo = boom
        socket.create_connection = boom
        from crawler.scope import site_key
        assert site_key("www.bbc.co.uk") == "bbc.co.uk"
        assert site_key("a.example.com") == "example.com"
        """
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("TLDEXTRACT_CACHE", None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path, timeout=30)
    assert list(tmp_path.iterdir()) == []


SEEDS = ["http://www.example.com/", "http://127.0.0.1:8431/"]


@pytest.mark.parametrize(
    ("mode", "url", "allowed"),
    [
        ("host", "http://www.example.com/a", True),
        ("host", "https://www.example.com:8443/a", True),  # host, not port
        ("host", "http://example.com/a", False),
        ("host", "http://127.0.0.1:9999/", True),
        ("host", "http://127.0.0.2:8431/", False),
        ("domain", "http://example.com/a", True),
        ("domain", "http://a.b.example.com/a", True),
        ("domain", "http://example.org/", False),
        ("domain", "http://notexample.com/", False),
        ("domain", "http://127.0.0.2:8431/p/1.html", True),  # same /24
        ("domain", "http://127.0.0.254/", True),
        ("domain", "http://127.0.1.1/", False),
        ("any", "http://anything.test/", True),
        ("any", "https://[::1]/", True),
        ("any", "ftp://example.com/", False),
        ("domain", "mailto:x@example.com", False),
        ("host", "", False),
    ],
)
def test_scope(mode: str, url: str, allowed: bool) -> None:
    assert Scope(mode, SEEDS).allows(url) is allowed


def test_scope_cache_gives_same_answers() -> None:
    scope = Scope("domain", SEEDS)
    urls = [f"http://h{i}.example.com/" for i in range(50)] + ["http://other.net/"] * 3
    assert [scope.allows(u) for u in urls] == [True] * 50 + [False] * 3
    assert [scope.allows(u) for u in urls] == [True] * 50 + [False] * 3


def test_scope_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="scope"):
        Scope("planet", SEEDS)


def test_skip_reasons_are_the_model_constants() -> None:
    reasons = (Skip.TOO_LONG, Skip.DEPTH, Skip.SCOPE, Skip.FILTER)
    assert reasons == ("url_too_long", "depth", "scope", "filter")


LONG = "http://www.example.com/" + "a" * 100


@pytest.mark.parametrize(
    ("include", "exclude", "max_depth", "url", "depth", "reason"),
    [
        ([], [], None, "http://www.example.com/x", 99, None),
        # order: length before depth before scope before filter
        ([], [], 1, LONG, 5, Skip.TOO_LONG),
        ([], [], 1, "http://elsewhere.org/" + "a" * 100, 5, Skip.TOO_LONG),
        ([], [], 1, "http://elsewhere.org/", 2, Skip.DEPTH),
        (["nomatch"], [], 1, "http://elsewhere.org/", 1, Skip.SCOPE),
        ([], [], 1, "http://www.example.com/x", 1, None),  # depth == max is allowed
        ([], [], 0, "http://www.example.com/x", 1, Skip.DEPTH),
        # include: some must match (re.search, anywhere in the URL)
        (["/blog/", r"\.pdf$"], [], None, "http://www.example.com/blog/1", 1, None),
        (["/blog/", r"\.pdf$"], [], None, "http://www.example.com/a.pdf", 1, None),
        (["/blog/", r"\.pdf$"], [], None, "http://www.example.com/shop/1", 1, Skip.FILTER),
        # exclude: none may match, and it wins over include
        ([], [r"\?sort="], None, "http://www.example.com/l?sort=asc", 1, Skip.FILTER),
        (["/blog/"], ["/draft"], None, "http://www.example.com/blog/draft-1", 1, Skip.FILTER),
        (["/blog/"], ["/draft"], None, "http://www.example.com/blog/final", 1, None),
    ],
)
def test_admission(
    include: list[str],
    exclude: list[str],
    max_depth: int | None,
    url: str,
    depth: int,
    reason: str | None,
) -> None:
    admission = Admission(Scope("domain", SEEDS), include, exclude, max_depth, max_url_length=64)
    assert admission.check(url, depth) == reason


def test_admission_length_limit_is_inclusive() -> None:
    admission = Admission(Scope("any", []), [], [], None, max_url_length=30)
    url = "http://example.com/" + "a" * 11
    assert len(url) == 30 and admission.check(url, 0) is None
    assert admission.check(url + "a", 0) == Skip.TOO_LONG


def test_admission_bad_regex_fails_at_construction() -> None:
    with pytest.raises(re.error):
        Admission(Scope("any", []), ["("], [], None)
