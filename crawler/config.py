"""Configuration: defaults < crawl.toml < command-line flags, loaded once into frozen dataclasses.

One table (``SETTINGS``) names every setting once: its TOML section and key, its flag, its
type and bounds. Loading, validation and error messages all come from that table, so a
flag and its key cannot drift apart. Nothing outside this module and ``cli`` sees raw dicts.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__

__all__ = ["Config", "ConfigError", "CrawlSettings", "FetchSettings", "SETTINGS", "load_config", "read_seeds"]


class ConfigError(Exception):
    """A bad flag, key or value; the message names it and fits on one line."""


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    key: str
    kind: str  # int | float | bool | str | path | list | choice
    default: Any
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # None (absent) is a valid value, e.g. "unlimited"

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


MIB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("crawl", "seeds", "list", ()),
    Setting("crawl", "db", "path", "output/crawl.db"),
    Setting("crawl", "max_pages", "int", None, minimum=1, optional=True),
    Setting("crawl", "max_depth", "int", None, minimum=0, optional=True),
    Setting("crawl", "scope", "choice", "domain", choices=("host", "domain", "any")),
    Setting("crawl", "include", "list", ()),
    Setting("crawl", "exclude", "list", ()),
    Setting("crawl", "export", "path", None, optional=True),
    Setting("crawl", "progress", "bool", None, optional=True),
    Setting("crawl", "strip_tracking", "bool", True),
    Setting("crawl", "max_url_length", "int", 2048, minimum=16),
    Setting("crawl", "max_pages_per_host", "int", None, minimum=1, optional=True),
    Setting("crawl", "sitemaps", "bool", True),
    Setting("crawl", "store_bodies", "bool", True),
    Setting("fetch", "concurrency", "int", 64, minimum=1),
    Setting("fetch", "per_host", "int", 2, minimum=1),
    Setting("fetch", "delay", "float", 0.5, minimum=0),
    Setting("fetch", "timeout", "float", 30.0, minimum=0.001),
    Setting("fetch", "connect_timeout", "float", 10.0, minimum=0.001),
    Setting("fetch", "max_bytes", "int", 10 * MIB, minimum=1),
    Setting("fetch", "retries", "int", 2, minimum=0),
    Setting("fetch", "retry_backoff", "float", 1.0, minimum=0),
    Setting("fetch", "max_redirects", "int", 10, minimum=0),
    Setting("fetch", "user_agent", "str", f"sgcrawl/{__version__}"),
    Setting("fetch", "allow_private", "bool", False),
    Setting("fetch", "auto_throttle", "bool", False),
    Setting("fetch", "max_retry_after", "float", 300.0, minimum=0),
    Setting("robots", "obey", "bool", True),
    Setting("robots", "max_crawl_delay", "float", 30.0, minimum=0),
    Setting("robots", "refresh_after", "float", 86400.0, minimum=1),
    Setting("parse", "workers", "int", None, minimum=0, optional=True),
)
_BY_NAME = {s.name: s for s in SETTINGS}
_SECTIONS = {s.section for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class CrawlSettings:
    seeds: tuple[str, ...]
    db: Path
    max_pages: int | None
    max_depth: int | None
    scope: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    export: Path | None
    progress: bool | None  # None: automatic (live when stdout is a TTY)
    strip_tracking: bool
    max_url_length: int
    max_pages_per_host: int | None
    sitemaps: bool
    store_bodies: bool  # keep raw bodies (compressed, once per distinct body) for WARC export


@dataclass(frozen=True, slots=True)
class FetchSettings:
    concurrency: int
    per_host: int
    delay: float
    timeout: float
    connect_timeout: float
    max_bytes: int
    retries: int
    retry_backoff: float
    max_redirects: int
    user_agent: str
    allow_private: bool
    auto_throttle: bool
    max_retry_after: float


@dataclass(frozen=True, slots=True)
class RobotsSettings:
    obey: bool
    max_crawl_delay: float  # a larger Crawl-delay is cut to this (and the report says so)
    refresh_after: float  # seconds before a host's robots.txt is fetched again


@dataclass(frozen=True, slots=True)
class ParseSettings:
    workers: int | None  # None: automatic (a process per spare core); 0: in the event loop's process


@dataclass(frozen=True, slots=True)
class Config:
    crawl: CrawlSettings
    fetch: FetchSettings
    robots: RobotsSettings
    parse: ParseSettings
    source: Path | None = field(default=None, compare=False)  # the crawl.toml that was read, if any


def _check(setting: Setting, value: Any, where: str) -> Any:
    """Validate one value against its setting; ``where`` is how the user named it."""
    if value is None and setting.optional:
        return None
    kind = setting.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind in ("int", "float"):
        ok = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            expected = "an integer" if kind == "int" else "a number"
            raise ConfigError(f"{where}: expected {expected}, got {value!r}")
        if setting.minimum is not None and value < setting.minimum:
            raise ConfigError(f"{where}: must be at least {setting.minimum:g}, got {value!r}")
        return float(value) if kind == "float" else value
    if kind == "choice":
        if value not in setting.choices:
            raise ConfigError(f"{where}: expected one of {', '.join(setting.choices)}, got {value!r}")
        return value
    if kind == "list":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if not isinstance(value, str) or (kind == "path" and not value):
        raise ConfigError(f"{where}: expected a {'non-empty ' if kind == 'path' else ''}string, got {value!r}")
    return Path(value) if kind == "path" else value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section}: expected a table")
        for key, value in table.items():
            name = f"{section}.{key}"
            if name not in _BY_NAME:
                raise ConfigError(f"{path}: unknown key {name}")
            values[name] = _check(_BY_NAME[name], value, f"{path}: {name}")
    return values


def load_config(config_path: Path | None, flags: dict[str, Any]) -> Config:
    """Merge defaults, the config file and flags (keyed by setting name, None = not given).

    ``config_path`` None means ``./crawl.toml`` if it exists. Raises ConfigError.
    """
    source = config_path
    if source is None and Path("crawl.toml").is_file():
        source = Path("crawl.toml")
    values = {s.name: _check(s, s.default, s.name) for s in SETTINGS}
    if source is not None:
        values.update(_read_toml(source))
    for name, value in flags.items():
        if value is not None:
            setting = _BY_NAME[name]
            values[name] = _check(setting, value, setting.flag)
    for pattern_key in ("crawl.include", "crawl.exclude"):
        _check_regexes(values[pattern_key], _BY_NAME[pattern_key].flag)

    def section(cls: type, name: str) -> Any:
        return cls(**{s.key: values[s.name] for s in SETTINGS if s.section == name})

    return Config(
        crawl=section(CrawlSettings, "crawl"),
        fetch=section(FetchSettings, "fetch"),
        robots=section(RobotsSettings, "robots"),
        parse=section(ParseSettings, "parse"),
        source=source,
    )


def _check_regexes(patterns: tuple[str, ...], flag: str) -> None:
    import re

    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{flag}: invalid regular expression {pattern!r}: {exc}") from None


def read_seeds(lines: list[str]) -> list[str]:
    """Seed URLs from a seed file's lines: one a line; blank lines and ``#`` comments ignored.

    A comment is a line starting with ``#`` or anything after whitespace on a URL's line
    (a ``#`` inside a URL is a fragment, not a comment).
    """
    seeds = []
    for line in lines:
        words = line.split()
        if words and not words[0].startswith("#"):
            seeds.append(words[0])
    return seeds
