"""A hostile web server for tests: every way a server or a page can be bad, one path each.

A raw asyncio TCP server, not aiohttp's: it must send what no well-behaved server sends
(resets mid-body, a lying Content-Length, broken chunked encoding, truncated gzip, headers of
100 KB). Every response closes its connection. Bodies are generated as they are sent, or built
once and cached, so the server stays small in memory: it runs in the test's own process,
whose peak RSS the test measures.

``CASES`` maps each path to what it does; the home page ``/`` links every one of them, plus a
link whose URL is 100 KB long (``/long/xxx…``, answered with a small page).
"""

from __future__ import annotations

import asyncio
import functools
import random
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["CASES", "HostileServer", "LONG_PATH", "MANY_LINKS", "HUGE", "BOMB", "HAS_BROTLI"]

try:
    import brotli  # type: ignore[import-not-found]  # only to build the brotli bomb
    HAS_BROTLI = True
except ImportError:
    try:
        import brotlicffi as brotli  # type: ignore[import-not-found,no-redef]
        HAS_BROTLI = True
    except ImportError:
        HAS_BROTLI = False

MB = 1 << 20
HUGE = 30 * MB  # the size of the huge pages
BOMB = 1 << 30  # what the bombs expand to: 1 GiB of zeros
MANY_LINKS = 50_000
LONG_PATH = "/long/" + "x" * 100_000  # a 100 KB URL path
DRIP = 0.2  # seconds between the bytes of a slow drip

Handler = Callable[["Conn"], Awaitable[None]]
CASES: dict[str, tuple[str, Handler]] = {}


def case(path: str, doc: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        CASES[path] = (doc, fn)
        return fn

    return register


@dataclass
class Conn:
    """One connection: the request that came in and the streams to answer on."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    path: str
    origin: str

    @property
    def gone(self) -> bool:
        """The client went away (closed or reset): stop sending."""
        return self.reader.at_eof() or self.writer.is_closing()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, status: int = 200, headers: list[tuple[str, str]] | None = None,
                   content_type: str | None = "text/html; charset=utf-8") -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Whatever')}", "Connection: close"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines += [f"{k}: {v}" for k, v in headers or ()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def page(self, body: bytes, status: int = 200, content_type: str | None = "text/html; charset=utf-8",
                   headers: list[tuple[str, str]] | None = None) -> None:
        await self.head(status, [("Content-Length", str(len(body))), *(headers or [])], content_type)
        await self.send(body)

    async def chunk(self, data: bytes) -> None:
        await self.send(b"%x\r\n%b\r\n" % (len(data), data))

    async def stream(self, blocks: Iterable[bytes], chunked: bool = False) -> None:
        """Send ``blocks`` until done or the client is gone."""
        for block in blocks:
            if self.gone:
                return
            await (self.chunk(block) if chunked else self.send(block))
        if chunked and not self.gone:
            await self.send(b"0\r\n\r\n")

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), not a FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 404: "Not Found"}


def _html(title: str, body: str = "") -> bytes:
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>".encode()


@functools.cache
def _noise(n: int, seed: int = 4) -> bytes:
    return random.Random(seed).randbytes(n)


def _zero_blocks(total: int, wbits: int) -> list[bytes]:
    """``total`` zero bytes compressed as gzip (``wbits`` 31), zlib (15) or raw deflate (-15).

    Deflate after a full flush forgets its history, so every MiB of zeros compresses to the
    same ~1 KB block: the stream is a header, that block ``total // MiB`` times, a trailer.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(MB)) + comp.flush(zlib.Z_FULL_FLUSH)
    end = comp.flush(zlib.Z_FINISH)
    n = total // MB
    if wbits == -15:
        return [block] * n + [end]
    if wbits == 15:  # zlib: 2-byte header, adler32 trailer
        return [b"\x78\xda", *[block] * n, end, struct.pack(">I", _zeros_check(zlib.adler32, n, 1))]
    crc = _zeros_check(zlib.crc32, n, 0)
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return [head, *[block] * n, end, struct.pack("<II", crc, total & 0xFFFFFFFF)]


@functools.cache
def _zeros_check(fn: Callable[[bytes, int], int], n: int, start: int) -> int:
    zeros, value = bytes(MB), start
    for _ in range(n):
        value = fn(zeros, value)
    return value


@functools.cache
def _gzip_bomb() -> bytes:
    """1 GiB of zeros, gzipped: about 1 MB."""
    return b"".join(_zero_blocks(BOMB, 31))


@functools.cache
def _gzip_page() -> bytes:
    """A gzipped HTML page (250 KB, 125 KB compressed), for the cases that cut it in half."""
    body = _html("gzip", "".join(f"<p>para {i} {_noise(40, i).hex()}</p>" for i in range(2500)))
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    return comp.compress(body) + comp.flush()


@functools.cache
def _many_links() -> bytes:
    links = "".join(f'<a href="/l/{i}">{i}</a>\n' for i in range(MANY_LINKS))
    return _html("many links", links)


@functools.cache
def _malformed() -> bytes:
    return (b"<html><head><title>malformed</title><body><p><b><i><table><tr><td>"
            + b"<div>" * 100_000
            + b"text\x00with\x00nuls <a href='/l/m1'>x</a> <a href=\"/l/m2\" <<<>>> </td></span>"
            + b"<script>unterminated <!-- comment <![CDATA[ " + b"\x00" * 1000)


@functools.cache
def _sitemap_garbage() -> bytes:
    laughs = b"".join(b'<!ENTITY lol%d "&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;">' % (i, i - 1, i - 1, i - 1, i - 1, i - 1)
                      for i in range(1, 10))
    return (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">' + laughs + b"]>"
            + b"<urlset><url><loc>&lol9;</loc></url><url><loc>" + _noise(300_000, 7) + b"<url><loc><loc><loc>")


@functools.cache
def _home_page() -> bytes:
    links = [path for path in CASES if path not in ("/", "/robots.txt", "/redirect-loop-2")
             and not path.startswith("/sitemap")]
    anchors = "".join(f'<a href="{path}">{path}</a>\n' for path in links)
    return _html("hostile home", anchors + f'<a href="{LONG_PATH}">long</a>')


# --- the site -------------------------------------------------------------------------------

@case("/", "links every case, and a 100 KB URL")
async def _home(c: Conn) -> None:
    await c.page(_home_page())


@case("/robots.txt", "600 KB of binary garbage, with Sitemap: lines to the sitemap bombs inside")
async def _robots(c: Conn) -> None:
    noise = _noise(600_000, 1)
    lines = b"".join(b"\nSitemap: %s%s\n" % (c.origin.encode(), p.encode())
                     for p in ("/sitemap-bomb.xml", "/sitemap-bomb.xml.gz"))
    await c.page(noise[:1000] + lines + noise[1000:], content_type="text/plain")


@case("/sitemap.xml", "garbage: billion laughs, random bytes, unclosed tags")
async def _sitemap(c: Conn) -> None:
    await c.page(_sitemap_garbage(), content_type="application/xml")


@case("/sitemap-bomb.xml", "Content-Encoding: gzip, 1 GiB of zeros")
async def _sitemap_bomb(c: Conn) -> None:
    await c.head(headers=[("Content-Encoding", "gzip")], content_type="application/xml")
    await c.stream(_zero_blocks(BOMB, 31))


@case("/sitemap-bomb.xml.gz", "a gzip file (not an encoding) of 1 GiB of zeros")
async def _sitemap_bomb_gz(c: Conn) -> None:
    await c.page(_gzip_bomb(), content_type="application/gzip")


@case("/slow-drip", "headers, then one byte every 0.2 s, forever")
async def _slow_drip(c: Conn) -> None:
    await c.head()
    await c.send(b"<html><title>drip</title>")
    while not c.gone:
        await c.send(b" ")
        await asyncio.sleep(DRIP)


@case("/slow-headers", "the status line, then one header byte every 0.2 s, forever")
async def _slow_headers(c: Conn) -> None:
    await c.send(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    while not c.gone:
        await c.send(b"a")
        await asyncio.sleep(DRIP)


@case("/reset", "Content-Length 200,000, half of it, then a TCP reset")
async def _reset(c: Conn) -> None:
    await c.head(headers=[("Content-Length", "200000")])
    await c.send(b"<html><title>reset</title>" + b"a" * 100_000)
    await asyncio.sleep(0.1)
    c.reset()


@case("/reset-chunked", "chunked, a few chunks, then a TCP reset")
async def _reset_chunked(c: Conn) -> None:
    await c.head(headers=[("Transfer-Encoding", "chunked")])
    for _ in range(3):
        await c.chunk(b"<p>" + b"a" * 10_000)
    await asyncio.sleep(0.1)
    c.reset()


@case("/broken-chunked", "chunked, then a chunk size that is not hex")
async def _broken_chunked(c: Conn) -> None:
    await c.head(headers=[("Transfer-Encoding", "chunked")])
    await c.chunk(b"<html><title>broken chunked</title>")
    await c.send(b"zz-not-hex\r\nwhatever\r\n")


@case("/content-length-lie", "Content-Length 1,000,000, 1,000 bytes, then close")
async def _content_length_lie(c: Conn) -> None:
    await c.head(headers=[("Content-Length", "1000000")])
    await c.send(b"<html><title>liar</title>" + b"a" * 1000)


@case("/empty-reply", "reads the request, closes without a byte")
async def _empty_reply(c: Conn) -> None:
    return


@case("/not-http", "answers with something that is not HTTP")
async def _not_http(c: Conn) -> None:
    await c.send(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage\r\n\r\n")


@case("/truncated-gzip", "gzip; Content-Length claims the whole stream, half is sent, close")
async def _truncated_gzip(c: Conn) -> None:
    data = _gzip_page()
    await c.head(headers=[("Content-Encoding", "gzip"), ("Content-Length", str(len(data)))])
    await c.send(data[: len(data) // 2])


@case("/truncated-gzip-eof", "gzip, no Content-Length, half the stream, clean close")
async def _truncated_gzip_eof(c: Conn) -> None:
    data = _gzip_page()
    await c.head(headers=[("Content-Encoding", "gzip")])
    await c.send(data[: len(data) // 2])


@case("/truncated-gzip-exact", "gzip; Content-Length is the truncated length: HTTP is complete, gzip is not")
async def _truncated_gzip_exact(c: Conn) -> None:
    data = _gzip_page()[: len(_gzip_page()) // 2]
    await c.page(data, headers=[("Content-Encoding", "gzip")])


@case("/bad-gzip", "Content-Encoding: gzip over bytes that are not gzip")
async def _bad_gzip(c: Conn) -> None:
    await c.page(_noise(20_000, 2), headers=[("Content-Encoding", "gzip")])


@case("/gzip-bomb", "gzip, 1 GiB of zeros in ~1 MB, with Content-Length")
async def _gzip_bomb_case(c: Conn) -> None:
    await c.page(_gzip_bomb(), headers=[("Content-Encoding", "gzip")])


@case("/gzip-bomb-chunked", "gzip, 1 GiB of zeros, chunked")
async def _gzip_bomb_chunked(c: Conn) -> None:
    await c.head(headers=[("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")])
    await c.stream(_zero_blocks(BOMB, 31), chunked=True)


@case("/deflate-bomb", "deflate (zlib format), 1 GiB of zeros, close-delimited")
async def _deflate_bomb(c: Conn) -> None:
    await c.head(headers=[("Content-Encoding", "deflate")])
    await c.stream(_zero_blocks(BOMB, 15))


@case("/raw-deflate-bomb", "deflate without the zlib header, 1 GiB of zeros")
async def _raw_deflate_bomb(c: Conn) -> None:
    await c.head(headers=[("Content-Encoding", "deflate")])
    await c.stream(_zero_blocks(BOMB, -15))


@case("/brotli-garbage", "Content-Encoding: br over random bytes")
async def _brotli_garbage(c: Conn) -> None:
    await c.page(_noise(20_000, 3), headers=[("Content-Encoding", "br")])


if HAS_BROTLI:
    @case("/brotli-bomb", "br, 1 GiB of zeros in ~2 KB")
    async def _brotli_bomb(c: Conn) -> None:
        await c.page(_brotli_bomb_body(), headers=[("Content-Encoding", "br")])

    @functools.cache
    def _brotli_bomb_body() -> bytes:
        comp = brotli.Compressor(quality=5)
        return b"".join(comp.process(bytes(MB)) for _ in range(BOMB // MB)) + comp.finish()


@case("/unknown-encoding", "Content-Encoding: x-rot13 over plain HTML")
async def _unknown_encoding(c: Conn) -> None:
    await c.page(_html("unknown encoding"), headers=[("Content-Encoding", "x-rot13")])


@case("/huge", "30 MB of HTML, no Content-Length, close-delimited")
async def _huge(c: Conn) -> None:
    await c.head()
    await c.stream(_huge_blocks())


@case("/huge-cl", "30 MB of HTML with Content-Length")
async def _huge_cl(c: Conn) -> None:
    await c.head(headers=[("Content-Length", str(HUGE))])
    await c.stream(_huge_blocks())


@case("/huge-chunked", "30 MB of HTML, chunked")
async def _huge_chunked(c: Conn) -> None:
    await c.head(headers=[("Transfer-Encoding", "chunked")])
    await c.stream(_huge_blocks(), chunked=True)


def _huge_blocks() -> list[bytes]:
    block = b"<p>" + b"lorem ipsum " * 5460 + b"</p>\n"  # 64 KiB
    return [block] * (HUGE // len(block))


@case("/huge-header", "one response header of 100 KB")
async def _huge_header(c: Conn) -> None:
    await c.page(_html("huge header"), headers=[("X-Huge", "h" * 100_000)])


@case("/many-headers", "2,000 response headers")
async def _many_headers(c: Conn) -> None:
    await c.page(_html("many headers"), headers=[(f"X-H{i}", str(i)) for i in range(2000)])


@case("/huge-location", "a redirect whose Location is 100 KB")
async def _huge_location(c: Conn) -> None:
    await c.page(b"", 302, headers=[("Location", c.origin + LONG_PATH + "2")])


@case("/binary-html", "1 MB of random bytes labelled text/html")
async def _binary_html(c: Conn) -> None:
    await c.page(_noise(MB, 5))


@case("/bad-utf8", "invalid UTF-8 declared as utf-8")
async def _bad_utf8(c: Conn) -> None:
    body = (b"<html><head><meta charset=utf-8><title>bad \xff\xfe utf8 \xc3\x28 \xed\xa0\x80</title></head>"
            b"<body>overlong \xc0\xaf, truncated \xe2\x82, lone \x80\x80 <a href='/l/\xff\xfe'>x</a></body></html>")
    await c.page(body)


@case("/bad-header-bytes", "header values that are not UTF-8, the Content-Type's among them")
async def _bad_header_bytes(c: Conn) -> None:
    await c.page(_html("odd headers"), content_type="text/html; charset=caf\xe9", headers=[("X-Odd", "\xff\xfe")])


@case("/many-links", "50,000 distinct links")
async def _many_links_case(c: Conn) -> None:
    await c.page(_many_links())


@case("/long-url", "a page whose only link is 100 KB long")
async def _long_url(c: Conn) -> None:
    await c.page(_html("long url", f'<a href="{LONG_PATH}?q=1">long</a>'))


@case("/malformed", "unclosed tags, 100,000 nested divs, NULs")
async def _malformed_case(c: Conn) -> None:
    await c.page(_malformed())


@case("/redirect-loop", "302 to /redirect-loop-2, which redirects back")
async def _redirect_loop(c: Conn) -> None:
    await c.page(b"", 302, headers=[("Location", "/redirect-loop-2")])


@case("/redirect-self", "302 to itself")
async def _redirect_self(c: Conn) -> None:
    await c.page(b"", 302, headers=[("Location", "/redirect-self")])


@case("/redirect-loop-2", "302 back to /redirect-loop (not linked: reached only as a hop)")
async def _redirect_loop_2(c: Conn) -> None:
    await c.page(b"", 302, headers=[("Location", "/redirect-loop")])


@case("/redirect-endless", "302 to /redirect-endless/1, /2, ... forever")
async def _redirect_endless(c: Conn) -> None:
    n = int(c.path.rsplit("/", 1)[-1]) + 1 if c.path.count("/") > 1 else 1
    await c.page(b"", 302, headers=[("Location", f"/redirect-endless/{n}")])


async def _long(c: Conn) -> None:
    await c.page(_html("long", f"path of {len(c.path)} bytes"))


async def _not_found(c: Conn) -> None:
    await c.page(_html("not found"), 404)


@dataclass
class HostileServer:
    """``async with HostileServer(host) as server``: serves ``CASES`` on ``server.origin``."""

    host: str = "127.0.0.1"
    port: int = 0
    log: list[str] = field(default_factory=list)  # request paths (cut at 200 chars), in order
    long_requests: list[int] = field(default_factory=list)  # lengths of the /long/ paths asked for
    _server: asyncio.Server | None = None
    _open: dict[asyncio.Task[None], asyncio.StreamWriter] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=256 * 1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Hang up on every client; endless handlers notice (``Conn.gone``) and return. Cancelling
        # them instead makes Python 3.11's start_server log a CancelledError for each.
        for writer in self._open.values():
            writer.transport.abort()
        if self._open:
            await asyncio.wait(list(self._open), timeout=2 * DRIP + 1)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task: asyncio.Task[None] = asyncio.current_task()  # type: ignore[assignment]
        self._open[task] = writer
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            target = request.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            path = target.split("?", 1)[0]
            self.log.append(target[:200])
            if path.startswith("/long/"):
                self.long_requests.append(len(target))
                handler: Handler = _long
            elif path.startswith("/redirect-endless/"):
                handler = _redirect_endless
            else:
                handler = CASES.get(path, ("", _not_found))[1]
            await handler(Conn(reader, writer, target, self.origin))
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
            pass  # the client went away, or sent nonsense: nothing to answer
        finally:
            del self._open[task]
            if not writer.transport.is_closing():
                writer.close()
