"""The private-network guard: the policy table, and the guard on real connections.

Connection tests run real servers on 127.0.0.x (loopback is closed unless a seed opens it) and a
fake resolver that maps public-looking names to those servers, as a hostile DNS answer would.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from crawler import netguard
from crawler.netguard import (NETWORKS, OPENABLE, GuardedResolver, NetPolicy, PrivateAddressError,
                              is_private_address_error, make_connector, network_of)

from conftest import redirect, respond

ip = ipaddress.ip_address
PUBLIC_SEED = "http://public.example/"


def test_public_names() -> None:
    assert sorted(netguard.__all__) == sorted(
        ["NETWORKS", "OPENABLE", "GuardedResolver", "NetPolicy", "PrivateAddressError",
         "is_private_address_error", "make_connector", "network_of"])
    assert OPENABLE < NETWORKS


@pytest.mark.parametrize("address, network", [
    # public
    ("8.8.8.8", None), ("1.1.1.1", None), ("93.184.216.34", None), ("2606:4700::1111", None),
    ("100.63.255.255", None), ("100.128.0.0", None), ("172.15.255.255", None), ("172.32.0.0", None),
    ("192.167.255.255", None), ("11.0.0.0", None), ("9.255.255.255", None), ("223.255.255.255", None),
    ("198.18.0.1", None), ("192.0.2.1", None), ("2001:db8::1", None), ("2002:0808:0808::1", None),
    ("64:ff9b::8.8.8.8", None), ("::ffff:8.8.8.8", None),
    # loopback, unspecified
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    # RFC 1918, CGNAT
    ("10.0.0.1", "private-10"), ("10.255.255.255", "private-10"),
    ("172.16.0.1", "private-172"), ("172.31.255.255", "private-172"),
    ("192.168.0.1", "private-192"), ("192.168.255.255", "private-192"),
    ("100.64.0.1", "cgnat"), ("100.127.255.255", "cgnat"),
    # IPv6 private
    ("fc00::1", "unique-local"), ("fdff:ffff::1", "unique-local"), ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"), ("febf::1", "link-local"), ("fec0::1", "site-local"),
    ("ff02::1", "multicast"), ("64:ff9b:1::a00:1", "reserved"),
    # link-local, metadata, multicast, reserved
    ("169.254.0.1", "link-local"), ("169.254.170.2", "link-local"),
    ("169.254.169.254", "metadata"), ("100.100.100.200", "metadata"), ("168.63.129.16", "metadata"),
    ("fd00:ec2::254", "metadata"), ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    # IPv6 forms carrying an IPv4 address are judged by it
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.1.2.3", "private-10"),
    ("::ffff:169.254.169.254", "metadata"), ("::ffff:0:192.168.1.1", "private-192"),
    ("::127.0.0.1", "loopback"), ("64:ff9b::10.0.0.1", "private-10"),
    ("64:ff9b::169.254.169.254", "metadata"), ("2002:7f00:0001::1", "loopback"),
    ("2002:a9fe:a9fe::", "metadata"), ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private-10"),
    ("2001:0:7f00:1:8000:63bf:3fff:fdd2", "loopback"),  # Teredo server 127.0.0.1, client public
])
def test_network_of(address: str, network: str | None) -> None:
    assert network_of(ip(address)) == network
    assert NetPolicy().blocked_reason(ip(address)) == network  # nothing opened: every special one refused
    assert NetPolicy(allow_private=True).allows(ip(address))


@pytest.mark.parametrize("seeds, opened", [
    ([PUBLIC_SEED], set()),
    (["https://example.com/", "http://8.8.8.8/"], set()),
    (["http://127.0.0.1:8080/"], {"loopback"}),
    (["http://127.9.9.9/"], {"loopback"}),
    (["http://[::1]:8080/"], {"loopback"}),
    (["http://localhost:8000/"], {"loopback"}),
    (["http://app.localhost./"], {"loopback"}),
    (["http://LOCALHOST/"], {"loopback"}),
    (["http://10.1.2.3/"], {"private-10"}),
    (["http://172.20.0.5/", "http://192.168.1.1/"], {"private-172", "private-192"}),
    (["http://100.64.1.1/"], {"cgnat"}),
    (["http://[fd12:3456::1]/"], {"unique-local"}),
    (["http://[::ffff:10.0.0.7]/"], {"private-10"}),
    # never opened by a seed
    (["http://169.254.1.1/"], set()),
    (["http://169.254.169.254/latest/meta-data/"], set()),
    (["http://100.100.100.200/"], set()),
    (["http://168.63.129.16/"], set()),
    (["http://[fd00:ec2::254]/"], set()),
    (["http://[fe80::1]/"], set()),
    (["http://0.0.0.0:8000/"], set()),
    (["http://224.0.0.1/"], set()),
    # names open nothing (their answer is unknown at seed time); bad URLs are ignored
    (["http://router.lan/", "http://intranet/"], set()),
    (["http://[::1/", "not a url", "", "http:///x"], set()),
])
def test_seeds_open_networks(seeds: list[str], opened: set[str]) -> None:
    policy = NetPolicy.from_seeds(seeds, allow_private=False)
    assert policy.open_networks == opened
    assert not policy.allow_private


@pytest.mark.parametrize("seed, address, allowed", [
    ("http://127.0.0.1/", "127.0.0.5", True),
    ("http://127.0.0.1/", "::1", True),
    ("http://127.0.0.1/", "::ffff:127.0.0.9", True),
    ("http://127.0.0.1/", "10.0.0.1", False),
    ("http://127.0.0.1/", "0.0.0.0", False),
    ("http://10.1.2.3/", "10.200.0.1", True),
    ("http://10.1.2.3/", "172.16.0.1", False),
    ("http://10.1.2.3/", "192.168.0.1", False),
    ("http://10.1.2.3/", "127.0.0.1", False),
    ("http://100.64.0.1/", "100.100.0.1", True),
    ("http://100.64.0.1/", "100.100.100.200", False),  # metadata inside the opened CGNAT block
    ("http://[fd00::1]/", "fd00:ec2::1", True),
    ("http://[fd00::1]/", "fd00:ec2::254", False),  # metadata inside the opened unique-local block
    ("http://169.254.169.254/", "169.254.169.254", False),
    ("http://169.254.1.1/", "169.254.1.1", False),
    ("http://localhost/", "127.0.0.1", True),
    (PUBLIC_SEED, "127.0.0.1", False),
    (PUBLIC_SEED, "8.8.8.8", True),
])
def test_policy_allows(seed: str, address: str, allowed: bool) -> None:
    policy = NetPolicy.from_seeds([seed], allow_private=False)
    assert policy.allows(ip(address)) is allowed
    assert (policy.blocked_reason(ip(address)) is None) is allowed
    assert NetPolicy.from_seeds([seed], allow_private=True).allows(ip(address))


def test_private_address_error_is_recognised_through_wrapping() -> None:
    err = PrivateAddressError("public.example", "127.0.0.1", "loopback")
    assert "public.example" in str(err) and "127.0.0.1" in str(err) and "loopback" in str(err)
    assert isinstance(err, OSError) and err.errno is None
    try:
        try:
            raise err
        except OSError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert is_private_address_error(outer)
    try:
        try:
            raise err
        except OSError:
            raise ValueError("while handling")  # noqa: B904 - the implicit __context__ is the point
    except ValueError as outer:
        assert is_private_address_error(outer)
    assert is_private_address_error(ExceptionGroup("g", [ValueError(), err]))
    assert not is_private_address_error(ConnectionRefusedError(111, "refused"))
    assert not is_private_address_error(ValueError("x"))


# --- the guard on real connections ---------------------------------------------------------


class FakeResolver(AbstractResolver):
    """Answers names from a table, as a (possibly hostile) DNS server would."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []
        self.closed = False

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for a in self.table[host]]

    async def close(self) -> None:
        self.closed = True


@dataclass(frozen=True, slots=True)
class PinnedPolicy(NetPolicy):
    """A policy that also allows exactly one address: an "allowed" host among closed loopback ones."""

    pinned: str = ""

    def blocked_reason(self, ip: Any) -> str | None:
        return None if str(ip) == self.pinned else NetPolicy.blocked_reason(self, ip)


def session(policy: NetPolicy, resolver: AbstractResolver | None = None) -> aiohttp.ClientSession:
    kwargs: dict[str, Any] = {"limit": 10, "ttl_dns_cache": 300}
    if resolver is not None:
        kwargs["resolver"] = resolver
    return aiohttp.ClientSession(connector=make_connector(policy, **kwargs),
                                 timeout=aiohttp.ClientTimeout(total=10))


async def test_dns_answer_on_loopback_is_refused(make_site: Any) -> None:
    site = await make_site({"/": "hello"})
    port = site.server.port
    resolver = FakeResolver({"public.example": [site.host]})
    async with session(NetPolicy.from_seeds([f"http://public.example:{port}/"], False), resolver) as s:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as info:
            await s.get(f"http://public.example:{port}/")
    assert is_private_address_error(info.value)
    assert isinstance(info.value.os_error, PrivateAddressError)
    assert "public.example" in str(info.value) and site.host in str(info.value)
    assert site.log == []
    assert resolver.closed  # the connector owns the wrapped resolver


async def test_dns_answer_on_loopback_allowed_with_allow_private(make_site: Any) -> None:
    site = await make_site({"/": "hello"})
    resolver = FakeResolver({"public.example": [site.host]})
    async with session(NetPolicy.from_seeds([PUBLIC_SEED], allow_private=True), resolver) as s:
        async with s.get(f"http://public.example:{site.server.port}/") as resp:
            assert resp.status == 200 and await resp.text() == "hello"
    assert site.paths() == ["/"]


async def test_refused_addresses_are_dropped_from_an_answer_and_cached(make_site: Any) -> None:
    site = await make_site({"/": "hello"})
    # 10.0.0.1 comes first and is refused (only loopback is open): it is never tried
    resolver = FakeResolver({"mixed.example": ["10.0.0.1", "169.254.169.254", site.host]})
    async with session(NetPolicy.from_seeds(["http://127.0.0.1/"], False), resolver) as s:
        for _ in range(3):
            async with s.get(f"http://mixed.example:{site.server.port}/", ) as resp:
                assert resp.status == 200
    assert resolver.calls == ["mixed.example"]  # ttl_dns_cache still caches (the filtered answer)
    assert site.paths() == ["/", "/", "/"]


async def test_guarded_resolver_directly() -> None:
    inner = FakeResolver({"a.example": ["127.0.0.1", "8.8.8.8"], "b.example": ["fd00:ec2::254"],
                          "c.example": ["::ffff:10.0.0.1"]})
    guard = GuardedResolver(NetPolicy(), inner)
    assert [r["host"] for r in await guard.resolve("a.example", 80)] == ["8.8.8.8"]
    with pytest.raises(PrivateAddressError, match="b.example at fd00:ec2::254: metadata"):
        await guard.resolve("b.example", 80)
    with pytest.raises(PrivateAddressError) as info:
        await guard.resolve("c.example", 80)
    assert info.value.network == "private-10"
    with pytest.raises(OSError, match="no such host") as other:
        await guard.resolve("nowhere.example", 80)
    assert not is_private_address_error(other.value)
    await guard.close()
    await guard.close()
    assert inner.closed


async def test_default_inner_resolver_resolves_localhost() -> None:
    guard = GuardedResolver(NetPolicy.from_seeds(["http://localhost/"], False))
    try:
        answers = await guard.resolve("localhost", 80, socket.AF_INET)
        assert answers and all(ip(a["host"]).is_loopback for a in answers)
        with pytest.raises(PrivateAddressError):
            await GuardedResolver(NetPolicy(), guard.inner).resolve("localhost", 80, socket.AF_INET)
    finally:
        await guard.close()


async def test_ip_literal_is_refused_and_opened_by_a_loopback_seed(make_site: Any) -> None:
    site = await make_site({"/": "hello"})
    resolver = FakeResolver({})
    async with session(NetPolicy.from_seeds([PUBLIC_SEED], False), resolver) as s:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await s.get(site.url("/"))
    assert is_private_address_error(info.value)
    assert not isinstance(info.value, aiohttp.ClientConnectorDNSError)
    assert site.host in str(info.value) and "loopback" in str(info.value)
    assert site.log == [] and resolver.calls == []  # aiohttp never resolves an IP literal

    async with session(NetPolicy.from_seeds(["http://127.0.0.1/"], False)) as s:
        async with s.get(site.url("/")) as resp:
            assert resp.status == 200
    assert site.paths() == ["/"]


async def test_ordinary_connection_errors_are_not_private(make_site: Any) -> None:
    site = await make_site({"/": "hello"})
    port = site.server.port
    await site.server.close()  # nothing listens there any more
    async with session(NetPolicy.from_seeds(["http://127.0.0.1/"], False)) as s:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await s.get(f"http://{site.host}:{port}/")
    assert not is_private_address_error(info.value)


@pytest.mark.parametrize("target", ["literal", "name"])
async def test_redirect_to_a_closed_address_is_not_followed(make_site: Any, target: str) -> None:
    blocked = await make_site({"/secret": "secret"})
    location = (blocked.url("/secret") if target == "literal"
                else f"http://evil.example:{blocked.server.port}/secret")
    allowed = await make_site({"/": redirect(location), "/ok": respond("fine")})
    resolver = FakeResolver({"public.example": [allowed.host], "evil.example": [blocked.host]})
    policy = PinnedPolicy(pinned=allowed.host)  # the allowed site stands in for a public host
    async with session(policy, resolver) as s:
        async with s.get(f"http://public.example:{allowed.server.port}/ok") as resp:
            assert await resp.text() == "fine"
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await s.get(f"http://public.example:{allowed.server.port}/", allow_redirects=True)
    assert is_private_address_error(info.value)
    assert allowed.paths() == ["/ok", "/"]
    assert blocked.log == []


async def test_make_connector_keeps_settings_and_wraps_a_socket_factory(make_site: Any) -> None:
    site = await make_site({"/": "hello"})
    made: list[Any] = []

    def factory(addr_info: Any) -> socket.socket:
        made.append(addr_info[4][0])
        return socket.socket(addr_info[0], addr_info[1], addr_info[2])

    connector = make_connector(NetPolicy.from_seeds(["http://127.0.0.1/"], False), limit=7,
                               limit_per_host=3, socket_factory=factory)
    async with aiohttp.ClientSession(connector=connector) as s:
        assert connector.limit == 7 and connector.limit_per_host == 3
        async with s.get(site.url("/")) as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ClientConnectorError):
            await s.get("http://10.0.0.1:9/")  # refused before the wrapped factory runs
    assert made == [site.host]
    assert connector.closed


# -- the guard inside a real crawl --------------------------------------------------------------


async def test_a_crawl_with_public_seeds_never_reaches_private_addresses(make_site, tmp_path, monkeypatch):
    """Seeds are public names; DNS and a redirect try to lead the crawl onto loopback."""
    from conftest import html, make_config, records, redirect, url_states
    from crawler import fetch, pipeline
    from crawler.pipeline import run_crawl

    inside = await make_site({"/": html("internal admin")})  # what an attacker wants reached
    rebound = await make_site({"/": html("rebound")})
    site = await make_site({})
    port = site.server.port
    site.pages.update({
        "/": html("public home", [f"http://rebind.example:{rebound.server.port}/", inside.url("/"), "/go"]),
        "/go": redirect(inside.url("/secret")),
    })
    table = {"www.public.example": [site.host], "rebind.example": [rebound.host]}
    # The seed's own server must be reachable: a policy that opens nothing but pins its address.
    monkeypatch.setattr(pipeline.NetPolicy, "from_seeds", classmethod(
        lambda cls, seeds, allow: PinnedPolicy(frozenset(), allow, pinned=site.host)))
    real = fetch.make_connector
    monkeypatch.setattr(fetch, "make_connector", lambda policy, **kw: real(policy, resolver=FakeResolver(table), **kw))
    seed = f"http://www.public.example:{port}/"
    # --scope any: nothing but the guard stands between the crawl and the loopback servers.
    result = await run_crawl(make_config(tmp_path, scope="any"), [seed], fresh=True, log=lambda _: None)
    assert inside.log == [] and rebound.log == []
    states = url_states(result.db)
    assert states[inside.url("/")] == (2, "private_address")
    assert states[f"http://rebind.example:{rebound.server.port}/"] == (2, "private_address")
    assert states[f"{seed}go"] == (2, "private_address")  # the redirect hop met the guard
    assert states[inside.url("/secret")] == (2, "redirect")
    assert [r["url"] for r in records(result.db)] == [seed]
