"""The in-memory dedupe filter in front of the durable URL set (table ``urls``).

Memory must stay flat as a crawl grows, and a resume must start fast, so the filter keeps no
URL strings for the whole crawl:

- **Fingerprints**: 38 bits of a 63-bit fingerprint of every URL ever discovered: 6 pick one
  of 64 open-addressing tables (arrays of 4-byte slots, at most half full), 32 are kept:
  ~8 bytes a URL, against ~120 for a set of strings. Each table grows on its own, so a
  doubling never holds two copies of the whole set. The full fingerprint is stored in
  ``urls.fp``, so a resumed crawl reloads integers, not strings.
- **Recent URLs, exactly**: two generations of plain string sets, bounded. Most duplicate links
  point at pages found recently (navigation, hubs, neighbours): they are answered exactly here.

A URL whose fingerprint is known but that is not among the recent ones is only *maybe* seen: the
frontier confirms those on disk (one query per batch), so a fingerprint collision can never drop
a URL. A fingerprint miss is certain (the URL is new) once the table is complete; while a
resumed crawl is still loading it in the background, a miss is a *maybe* too.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from hashlib import blake2b

__all__ = ["SeenFilter", "fingerprint"]

RECENT = 25_000  # URLs per generation of the exact cache (two generations are kept)
_SHARDS = 64


def fingerprint(url: str) -> int:
    """A stable 63-bit fingerprint of a URL, never 0 (0 marks an empty slot); fits SQLite's INTEGER."""
    digest = blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


class SeenFilter:
    """``seen(url)`` answers NEW, SEEN or MAYBE; ``add(url, fp)`` records a new URL."""

    NEW, SEEN, MAYBE = 0, 1, 2

    def __init__(self, capacity: int = 1 << 16) -> None:
        size = 1 << max(4, (2 * capacity // _SHARDS - 1).bit_length())
        self._shards = [_Shard(size) for _ in range(_SHARDS)]
        self._count = 0
        self._recent: set[str] = set()
        self._older: set[str] = set()
        self.complete = True  # False while a resumed crawl's fingerprints are still loading

    def __len__(self) -> int:
        return self._count

    def check(self, url: str) -> tuple[int, int]:
        """(NEW | SEEN | MAYBE, the URL's fingerprint)."""
        if url in self._recent or url in self._older:
            return self.SEEN, 0
        fp = fingerprint(url)
        return (self.MAYBE if not self.complete or self._has(fp) else self.NEW), fp

    def add(self, url: str, fp: int) -> None:
        """Record a URL found to be new (``fp`` from :meth:`check`, or 0 to compute it)."""
        self._insert(fp or fingerprint(url))
        self.remember(url)

    def remember(self, url: str) -> None:
        """Keep ``url`` among the recent ones (also after a MAYBE was confirmed on disk)."""
        self._recent.add(url)
        if len(self._recent) >= RECENT:
            self._older, self._recent = self._recent, set()

    def load(self, fps: Iterable[int]) -> None:
        """Bulk-load fingerprints read back from disk (a resumed crawl)."""
        for fp in fps:
            self._insert(fp)

    def _has(self, fp: int) -> bool:
        shard = self._shards[fp >> 57]
        slots, mask, key = shard.slots, shard.mask, _key(fp)
        i = key & mask
        while value := slots[i]:
            if value == key:
                return True
            i = (i + 1) & mask
        return False

    def _insert(self, fp: int) -> None:
        shard = self._shards[fp >> 57]
        if 2 * (shard.count + 1) > len(shard.slots):
            shard.grow()
        if shard.put(_key(fp)):
            self._count += 1


def _key(fp: int) -> int:
    """The 32 bits of a fingerprint a table keeps (never 0: 0 marks an empty slot)."""
    return (fp >> 25) & 0xFFFFFFFF or 1


class _Shard:
    """One open-addressing table of 32-bit keys."""

    __slots__ = ("slots", "mask", "count")

    def __init__(self, size: int) -> None:
        self.slots = array("I", bytes(4 * size))
        self.mask = size - 1
        self.count = 0

    def put(self, key: int) -> bool:
        slots, mask = self.slots, self.mask
        i = key & mask
        while value := slots[i]:
            if value == key:
                return False
            i = (i + 1) & mask
        slots[i] = key
        self.count += 1
        return True

    def grow(self) -> None:
        old = self.slots
        self.slots = array("I", bytes(8 * len(old)))
        self.mask = 2 * len(old) - 1
        self.count = 0
        for key in old:
            if key:
                self.put(key)
