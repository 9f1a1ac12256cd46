"""Private-network guard: which IP addresses the crawler may connect to, enforced at connect time.

By default the crawler connects only to public addresses. The special ranges are grouped into
*networks* (``NETWORKS``); an address in one of them is refused unless that network is open:

- ``loopback``, ``private-10``, ``private-172``, ``private-192``, ``cgnat``, ``unique-local``
  open when a seed's host is an IP literal inside them (a seed on 10.1.2.3 opens 10.0.0.0/8)
  or is ``localhost`` / ``*.localhost`` (opens loopback). Any other host *name* opens nothing:
  what it resolves to is not known when the crawl starts, and trusting a name's answer is
  exactly the hole this guard closes.
- ``link-local``, ``site-local``, ``metadata`` (cloud metadata services), ``unspecified``
  (0.0.0.0/8 and ``::``, which Linux delivers to the local host), ``multicast`` and
  ``reserved`` (240.0.0.0/4 with the broadcast address, local-use NAT64 64:ff9b:1::/48)
  never open by seeds: only ``allow_private`` (``--allow-private``) opens them, and it opens
  everything.

IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped ``::ffff:a.b.c.d``,
IPv4-translated ``::ffff:0:a.b.c.d``, deprecated IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16`` and Teredo ``2001::/32`` (refused if its server or its
client address is). Documentation and benchmarking ranges (192.0.2.0/24, 198.18.0.0/15, ...)
count as public: some proxies hand out 198.18/15 "fake IPs" for every name.

Enforcement is on the address actually connected to, never on the URL's host, so neither a DNS
answer nor a redirect can get around it:

1. ``GuardedResolver`` drops refused addresses from every DNS answer (the connector caches the
   filtered answer); when none is left it raises ``PrivateAddressError``, which aiohttp wraps in
   ``ClientConnectorDNSError``.
2. The connector's ``socket_factory`` (a public ``TCPConnector`` argument since aiohttp 3.12)
   checks every address before a socket is opened. aiohttp never calls the resolver for IP
   literals (``http://127.0.0.1/``), so this is what refuses them; it wraps the error in
   ``ClientConnectorError``. It also backs up any resolver.

``is_private_address_error`` recognises the refusal through aiohttp's wrapping.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = ["NETWORKS", "OPENABLE", "GuardedResolver", "NetPolicy", "PrivateAddressError",
           "is_private_address_error", "make_connector", "network_of"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Most specific first: the first match names the network (metadata addresses sit inside others).
_V4_TABLE: tuple[tuple[str, ipaddress.IPv4Network], ...] = tuple(
    (name, ipaddress.IPv4Network(net)) for name, net in (
        ("metadata", "169.254.169.254/32"),  # AWS, GCP, Azure, OCI, OpenStack
        ("metadata", "100.100.100.200/32"),  # Alibaba Cloud
        ("metadata", "168.63.129.16/32"),  # Azure WireServer (a public-range address)
        ("unspecified", "0.0.0.0/8"),
        ("loopback", "127.0.0.0/8"),
        ("private-10", "10.0.0.0/8"),
        ("private-172", "172.16.0.0/12"),
        ("private-192", "192.168.0.0/16"),
        ("cgnat", "100.64.0.0/10"),
        ("link-local", "169.254.0.0/16"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),  # includes the broadcast address 255.255.255.255
    ))
_V6_TABLE: tuple[tuple[str, ipaddress.IPv6Network], ...] = tuple(
    (name, ipaddress.IPv6Network(net)) for name, net in (
        ("metadata", "fd00:ec2::254/128"),  # AWS IMDS over IPv6
        ("unspecified", "::/128"),
        ("loopback", "::1/128"),
        ("unique-local", "fc00::/7"),
        ("link-local", "fe80::/10"),
        ("site-local", "fec0::/10"),  # deprecated, still routed internally by some networks
        ("multicast", "ff00::/8"),
        ("reserved", "64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215): where the v4 sits varies
    ))

NETWORKS: frozenset[str] = frozenset(name for name, _ in (*_V4_TABLE, *_V6_TABLE))
"""Every network name ``network_of`` (and so ``NetPolicy.blocked_reason``) can return."""

OPENABLE: frozenset[str] = frozenset(
    {"loopback", "private-10", "private-172", "private-192", "cgnat", "unique-local"})
"""Networks a seed on an address inside them opens; the rest need ``allow_private``."""

_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOW32 = 0xFFFF_FFFF


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (mapped, translated, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip in _NAT64 or ip in _V4_TRANSLATED:
        return (ipaddress.IPv4Address(int(ip) & _LOW32),)
    if ip in _V4_COMPATIBLE and int(ip) > 1:  # not :: or ::1, which the v6 table names
        return (ipaddress.IPv4Address(int(ip) & _LOW32),)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client)
    return ()


def network_of(ip: IPAddress) -> str | None:
    """The special network ``ip`` belongs to (see ``NETWORKS``), or None for a public address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return next((name for name, net in _V4_TABLE if ip in net), None)
    for v4 in _embedded_v4(ip):
        if (name := network_of(v4)) is not None:
            return name
    return next((name for name, net in _V6_TABLE if ip in net), None)


def _parse_ip(text: str) -> IPAddress | None:
    """An address from a URL host or a resolver/socket answer; None if it is not an IP literal."""
    text = text.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # the zone of fe80::1%eth0 is irrelevant
    except ValueError:
        return None


def _seed_network(url: str) -> str | None:
    """The openable network a seed URL's host is on, if its host is an IP literal or localhost."""
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return "loopback"
    ip = _parse_ip(host)
    name = network_of(ip) if ip is not None else None
    return name if name in OPENABLE else None


@dataclass(frozen=True, slots=True)
class NetPolicy:
    """Which addresses the crawl may connect to: public ones, plus the networks opened for it."""

    open_networks: frozenset[str] = frozenset()
    allow_private: bool = False

    @classmethod
    def from_seeds(cls, seed_urls: Iterable[str], allow_private: bool) -> NetPolicy:
        """Open each openable network a seed is on (see the module docstring).

        Pass every seed of the crawl, stored ones included, so that a resumed crawl opens the
        same networks. A seed that does not parse opens nothing.
        """
        opened = frozenset(name for url in seed_urls if (name := _seed_network(url)) is not None)
        return cls(opened, allow_private)

    def blocked_reason(self, ip: IPAddress) -> str | None:
        """The closed network ``ip`` is on (e.g. ``"loopback"``, ``"metadata"``), or None if allowed."""
        if self.allow_private:
            return None
        name = network_of(ip)
        return None if name is None or name in self.open_networks else name

    def allows(self, ip: IPAddress) -> bool:
        return self.blocked_reason(ip) is None


class PrivateAddressError(OSError):
    """A connection refused by the policy: ``host`` resolved to (or is) a closed network's address."""

    def __init__(self, host: str, address: str, network: str) -> None:
        message = (f"refused to connect to {host} at {address}: {network} address "
                   f"(not opened by a seed; --allow-private opens it)")
        super().__init__(None, message)  # errno None; strerror is what aiohttp's errors print
        self.host, self.address, self.network = host, address, network

    def __str__(self) -> str:
        return str(self.strerror)


def is_private_address_error(exc: BaseException) -> bool:
    """True if ``exc`` is, or wraps, a ``PrivateAddressError``.

    aiohttp raises ``ClientConnectorDNSError`` (refused DNS answer) or ``ClientConnectorError``
    (refused IP literal) with the original as ``os_error`` and ``__cause__``; this walks those,
    ``__context__`` and exception groups.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, PrivateAddressError):
            return True
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
        if isinstance(e, aiohttp.ClientConnectorError):
            todo.append(e.os_error)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
    return False


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and drops the addresses ``policy`` refuses.

    Raises ``PrivateAddressError`` when every address is refused. Owns ``inner`` (default
    ``aiohttp.DefaultResolver()``; create it inside a running loop): ``close`` closes it.
    """

    def __init__(self, policy: NetPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner: AbstractResolver = inner if inner is not None else aiohttp.DefaultResolver()
        self._closed = False

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self.inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refused: tuple[str, str] | None = None
        for answer in answers:
            ip = _parse_ip(answer["host"])
            reason = "unparsable" if ip is None else self.policy.blocked_reason(ip)
            if reason is None:
                kept.append(answer)
            elif refused is None:
                refused = (answer["host"], reason)
        if not kept and refused is not None:
            raise PrivateAddressError(host, *refused)
        return kept

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.inner.close()


def _guarded_socket_factory(policy: NetPolicy, inner: aiohttp.SocketFactoryType | None
                            ) -> aiohttp.SocketFactoryType:
    def factory(addr_info: aiohttp.AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        ip = _parse_ip(address)
        reason = "unparsable" if ip is None else policy.blocked_reason(ip)
        if reason is not None:
            raise PrivateAddressError(address, address, reason)
        if inner is not None:
            return inner(addr_info)
        return socket.socket(family=family, type=type_, proto=proto)  # as aiohappyeyeballs does

    return factory


class _GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that also closes the guard resolver it was given (it owns it)."""

    _guard: GuardedResolver

    async def close(self, **kwargs: Any) -> None:  # passes through: the signature varies by version
        try:
            await super().close(**kwargs)
        finally:
            await self._guard.close()


def make_connector(policy: NetPolicy, **connector_kwargs: Any) -> aiohttp.TCPConnector:
    """An ``aiohttp.TCPConnector(**connector_kwargs)`` that connects only where ``policy`` allows.

    A ``resolver`` or ``socket_factory`` in ``connector_kwargs`` is wrapped (the connector then
    owns that resolver and closes it). DNS caching (``ttl_dns_cache``) works as usual: the
    cache holds the filtered answers. Call inside a running event loop.
    """
    inner = connector_kwargs.pop("resolver", None)
    factory = connector_kwargs.pop("socket_factory", None)
    guard = GuardedResolver(policy, inner)
    connector = _GuardedConnector(resolver=guard, socket_factory=_guarded_socket_factory(policy, factory),
                                  **connector_kwargs)
    connector._guard = guard
    return connector
