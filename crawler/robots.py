"""robots.txt (RFC 9309) for one origin: parsed once, then asked about each URL.

Protego does the path matching: percent-encoding normalisation of both sides, ``*`` and ``$``,
the longest match winning with ``Allow`` winning ties. This module adds what RFC 9309 and
Google's reference parser (google/robotstxt) need on top of it:

- the body: UTF-8 with errors replaced, BOM skipped, cut at 500 KiB on a line boundary, each
  line cut at Google's 16,663 characters (a long rule still matches as the prefix it starts
  with, as for Google);
- groups: consecutive ``User-agent`` lines share the rules after them, and only an
  ``Allow``/``Disallow`` line ends the list of agents (an unknown line or ``Crawl-delay``
  between two ``User-agent`` lines does not, as for Google);
- the user agent: a group is chosen by exact, case-insensitive product token (the leading
  ``[A-Za-z0-9_-]`` run of both our User-Agent and the robots.txt value: ``sgcrawl/0.1.0`` and
  ``User-agent: SGcrawl (beta)`` are both ``sgcrawl``), all matching groups merged, else the
  ``*`` groups merged (RFC 9309 2.2.1). This is done once at parse time, so protego holds a
  single group and ``allowed()`` is a single protego lookup.
"""

from __future__ import annotations

import math
import re
from typing import Final

from protego import Protego

__all__ = ["RobotsRules", "is_allowed", "product_token", "MAX_ROBOTS_BYTES"]

#: RFC 9309 2.5: parse at least 500 KiB; what lies beyond is ignored.
MAX_ROBOTS_BYTES: Final = 512_000
_MAX_LINE: Final = 2083 * 8 - 1  # google/robotstxt kMaxLineLen (bytes there), less its NUL
_BOM: Final = b"\xef\xbb\xbf"
# RFC 9309 says [A-Za-z_-]; digits too, or "MJ12bot" and "Rule1TestBot" would read as "mj" and
# "rule" and share groups. \w also keeps non-ASCII names ("Jävla-Foobot") whole.
_TOKEN = re.compile(r"[\w-]*")
_SITEMAP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*\Z", re.IGNORECASE)
_WILDCARD = re.compile(r"\*(?:\s|$)")  # "* anything" is still the global group, as for Google
_FIELDS: Final = {
    **dict.fromkeys(("user-agent", "useragent", "user agent"), "user-agent"),
    "allow": "allow",
    # Common misspellings, accepted by Google and protego alike.
    **dict.fromkeys(
        ("disallow", "dissallow", "dissalow", "disalow", "diasllow", "disallaw"), "disallow"
    ),
    **dict.fromkeys(("sitemap", "sitemaps", "site-map"), "sitemap"),
    **dict.fromkeys(("crawl-delay", "crawl delay"), "crawl-delay"),
}


def product_token(user_agent: str) -> str:
    """The lowercased product token of a User-Agent (``MyBot/1.0 (+url)`` -> ``mybot``).

    ``*`` is dropped first on both sides ("foo*bot" names foobot): it is no part of a name.
    """
    match = _TOKEN.match(user_agent.replace("*", "").strip())
    return match.group().lower() if match else ""


def _decode(body: str | bytes) -> str:
    """Text of a robots.txt body: BOM skipped, cut at 500 KiB, invalid UTF-8 replaced."""
    # A str goes through bytes as well: the cap is in bytes, and a lone surrogate becomes U+FFFD.
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    data = data.removeprefix(_BOM)
    if len(data) > MAX_ROBOTS_BYTES:
        data = data[:MAX_ROBOTS_BYTES]
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end >= 0:  # else one huge line: keep its start, the line cap cuts it further
            data = data[:end]
    return data.decode("utf-8", "replace")


def _directive(line: str) -> tuple[str, str] | None:
    """``(field, value)`` of a robots.txt line, or None for a blank, comment or unknown line."""
    line = line[:_MAX_LINE].partition("#")[0].strip()
    key, colon, value = line.partition(":")
    field = _FIELDS.get(key.strip().lower()) if colon else None
    if field:
        return field, value.strip()
    # A forgotten colon ("Disallow /x"), which Google and protego both forgive.
    words = line.split()
    for n in (1, 2):
        field = _FIELDS.get(" ".join(words[:n]).lower())
        if field and len(words) > n:
            return field, " ".join(words[n:])
    return None


def _agent(value: str) -> str:
    """The token a ``User-agent`` value names: ``*`` or a lowercased product token."""
    return "*" if _WILDCARD.match(value) else product_token(value)


def _delay(value: str) -> float | None:
    try:
        delay = float(value)
    except ValueError:
        return None
    return delay if math.isfinite(delay) and delay >= 0 else None


class RobotsRules:
    """The rules of one robots.txt for one user agent: what may be fetched, how slowly.

    Build with ``parse``, ``allow_all`` (robots.txt is 4xx) or ``disallow_all`` (5xx or
    unreachable, RFC 9309 2.3.1). Immutable; safe to share between tasks.
    """

    __slots__ = ("_protego", "_default", "_crawl_delay", "_sitemaps")

    def __init__(
        self,
        rules: list[tuple[str, str]],
        *,
        default: bool = True,
        crawl_delay: float | None = None,
        sitemaps: tuple[str, ...] = (),
    ) -> None:
        self._default = default
        self._crawl_delay = crawl_delay
        self._sitemaps = sitemaps
        self._protego: Protego | None = None
        if rules:  # only the chosen group reaches protego, under "*"
            text = "".join(f"{field}: {value}\n" for field, value in rules)
            self._protego = Protego.parse("user-agent: *\n" + text)

    @classmethod
    def parse(cls, text: str | bytes, user_agent: str) -> RobotsRules:
        """Parse a robots.txt body for ``user_agent`` (a full User-Agent or its token).

        Never raises: what cannot be read is ignored, so garbage means "allow all".
        """
        token = product_token(user_agent)
        groups: list[tuple[set[str], list[tuple[str, str]], list[str]]] = []
        sitemaps: dict[str, None] = {}  # ordered set
        agents_open = False  # True while a group's User-agent lines are still being read
        for line in _decode(text).splitlines():
            parsed = _directive(line)
            if parsed is None:
                continue
            field, value = parsed
            if field == "user-agent":
                if not agents_open:
                    groups.append((set(), [], []))
                    agents_open = True
                groups[-1][0].add(_agent(value))
            elif field == "sitemap":
                if _SITEMAP_URL.match(value):
                    sitemaps[value] = None
            elif groups:  # rules before any User-agent line belong to no group
                if field == "crawl-delay":
                    groups[-1][2].append(value)
                else:
                    agents_open = False
                    if value:  # an empty Allow/Disallow matches nothing
                        groups[-1][1].append((field, value))
        chosen = [g for g in groups if token and token in g[0]]
        chosen = chosen or [g for g in groups if "*" in g[0]]
        delays = [d for g in chosen for v in g[2] if (d := _delay(v)) is not None]
        return cls(
            [rule for g in chosen for rule in g[1]],
            # Merged groups with several delays: the slowest wins, politeness first.
            crawl_delay=max(delays) if delays else None,
            sitemaps=tuple(sitemaps),
        )

    @classmethod
    def allow_all(cls) -> RobotsRules:
        """Rules that allow everything: robots.txt is missing (4xx) or says nothing."""
        return cls([])

    @classmethod
    def disallow_all(cls) -> RobotsRules:
        """Rules that allow nothing: robots.txt could not be fetched (5xx, unreachable)."""
        return cls([], default=False)

    def allowed(self, url: str) -> bool:
        """May ``url`` (absolute http(s), or a bare path such as ``/x?y``) be fetched?"""
        if self._protego is None:
            return self._default
        try:
            return self._protego.can_fetch(url, "*")
        except (ValueError, UnicodeError):
            # Only malformed input gets here: a lone surrogate, or "//[" read as a host.
            clean = url.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            if clean.startswith("/"):
                clean = "http://_" + clean  # a bare path is a path, whatever follows "//"
            try:
                return self._protego.can_fetch(clean, "*")
            except ValueError:  # a host no one can parse ("http://[x/"): never fetched
                return False

    @property
    def crawl_delay(self) -> float | None:
        """Seconds between requests asked by the applicable group's ``Crawl-delay``, if any."""
        return self._crawl_delay

    @property
    def sitemaps(self) -> tuple[str, ...]:
        """The absolute http(s) ``Sitemap:`` URLs, in file order, without duplicates."""
        return self._sitemaps

    def __repr__(self) -> str:
        kind = "rules" if self._protego else ("allow_all" if self._default else "disallow_all")
        delay, sitemaps = self._crawl_delay, len(self._sitemaps)
        return f"<RobotsRules {kind} crawl_delay={delay} sitemaps={sitemaps}>"


def is_allowed(robots_txt: str, user_agent: str, url: str) -> bool:
    """One-shot check: may ``user_agent`` fetch ``url`` (absolute or a bare path)?"""
    return RobotsRules.parse(robots_txt, user_agent).allowed(url)
