"""Undoing Content-Encoding (gzip, deflate, br) with a cap on the decoded size.

Fed one network chunk at a time with an output limit (what is left under ``--max-bytes``), a
decompression bomb costs the cap and no more. A compressed stream that stops short is an
error, not a silently truncated page. ``br`` is asked for only when a Brotli that can cap its
output per call (1.2 or later) is installed.
"""

from __future__ import annotations

import zlib

__all__ = ["ACCEPT_ENCODING", "BodyDecoder", "DecodeError"]


class DecodeError(Exception):
    """A corrupt or cut-short compressed body, or an unsupported Content-Encoding."""


try:  # Brotli >= 1.2 can cap its output per call; without that, br is neither asked for nor read
    import brotli  # type: ignore[import-not-found]

    brotli.Decompressor().process(b"", output_buffer_limit=1)
    ACCEPT_ENCODING, _DECODE_ERRORS = "gzip, deflate, br", (zlib.error, brotli.error)
except (ImportError, TypeError, AttributeError):
    brotli = None  # type: ignore[assignment]
    ACCEPT_ENCODING, _DECODE_ERRORS = "gzip, deflate", (zlib.error,)


class BodyDecoder:
    """Undoes a Content-Encoding one network chunk at a time, never past an output limit."""

    def __init__(self, header: str) -> None:
        codings = [c for c in header.lower().replace(" ", "").split(",") if c not in ("", "identity")]
        self.coding = {"x-gzip": "gzip"}.get(",".join(codings), ",".join(codings))
        if self.coding not in ("", "gzip", "deflate") and not (self.coding == "br" and brotli):
            raise DecodeError(f"unsupported Content-Encoding: {header[:100]}")
        self._z: zlib._Decompress | None = None
        self._br = brotli.Decompressor() if self.coding == "br" else None
        self._fed = False

    def feed(self, data: bytes, limit: int) -> bytes:
        """Decoded bytes of ``data``, at most about ``limit``: reaching it means "too large"."""
        self._fed = self._fed or bool(data)
        try:
            if self._br is not None:
                return self._br.process(data, output_buffer_limit=limit)
            if not self.coding:
                return data[:limit]
            out = b""
            while data and len(out) < limit:
                if self._z is None or (self._z.eof and data[:2] == b"\x1f\x8b"):  # (next) member
                    # "gzip" may come zlib-wrapped (47 reads both); "deflate" often comes raw.
                    zlib_head = len(data) > 1 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
                    self._z = zlib.decompressobj(47 if self.coding == "gzip" else 15 if zlib_head else -15)
                elif self._z.eof:
                    break  # trailing garbage after the stream: ignored, as browsers do
                out += self._z.decompress(data, limit - len(out))
                data = self._z.unused_data
            return out
        except _DECODE_ERRORS as exc:
            raise DecodeError(f"bad {self.coding} stream: {exc}"[:300]) from None

    def check_end(self) -> None:
        """The whole body was fed: a compressed stream must have come to its end."""
        done = self._br.is_finished() if self._br is not None else self._z is None or self._z.eof
        if self.coding and self._fed and not done:
            raise DecodeError(f"{self.coding} stream cut short")
