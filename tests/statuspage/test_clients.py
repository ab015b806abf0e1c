"""statuspage.clients: the address per-client limits count against; X-Forwarded-For is
believed only from `settings.trusted_proxies`, and loopback is nobody's proxy by default."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from statuspage.clients import client_address, from_chain, networks

PROXY = ["127.0.0.1", "::1"]  # the documented reverse proxy on the same box
CHAIN = ["127.0.0.1", "10.0.0.0/8"]  # and a load balancer in front of it

# (peer, X-Forwarded-For values, trusted_proxies, client)
CASES: list[tuple[str | None, list[str], list[str], str | None]] = [
    # a direct peer is the client, whatever it claims
    ("203.0.113.7", [], [], "203.0.113.7"),
    ("203.0.113.7", ["198.51.100.1"], [], "203.0.113.7"),
    ("203.0.113.7", ["198.51.100.1"], PROXY, "203.0.113.7"),  # not a proxy of ours
    ("2001:db8::7", ["198.51.100.1"], PROXY, "2001:db8::7"),
    # loopback is trusted only when listed
    ("127.0.0.1", ["198.51.100.1"], [], "127.0.0.1"),
    ("::1", ["198.51.100.1"], ["127.0.0.1"], "::1"),
    ("127.0.0.2", ["198.51.100.1"], ["127.0.0.1"], "127.0.0.2"),
    ("127.0.0.2", ["198.51.100.1"], ["127.0.0.0/8"], "198.51.100.1"),
    # behind the proxy: the address it appended
    ("127.0.0.1", [], PROXY, "127.0.0.1"),  # no header: the proxy itself asked
    ("127.0.0.1", ["198.51.100.1"], PROXY, "198.51.100.1"),
    ("::1", ["2001:db8::1"], PROXY, "2001:db8::1"),
    # what a client wrote left of it is ignored: the rightmost untrusted address wins
    ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], PROXY, "198.51.100.1"),
    ("127.0.0.1", ["127.0.0.1, 198.51.100.1"], PROXY, "198.51.100.1"),
    ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], PROXY, "198.51.100.1"),  # two header lines
    # a chain of trusted proxies is walked through
    ("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], CHAIN, "198.51.100.1"),
    ("127.0.0.1", ["10.0.0.9, 10.1.2.3"], CHAIN, "10.0.0.9"),  # all trusted: the farthest
    ("127.0.0.1", ["198.51.100.1,10.1.2.3 ,  ,"], CHAIN, "198.51.100.1"),  # empty: skipped
    # malformed: nothing left of it can be believed; the nearest trusted hop answers
    ("127.0.0.1", ["198.51.100.1, unknown"], PROXY, "127.0.0.1"),
    ("127.0.0.1", ["198.51.100.1, not an ip, 10.1.2.3"], CHAIN, "10.1.2.3"),
    ("127.0.0.1", ["<script>"], PROXY, "127.0.0.1"),
    ("127.0.0.1", [""], PROXY, "127.0.0.1"),
    ("127.0.0.1", ["999.1.1.1"], PROXY, "127.0.0.1"),
    # the forms with a port some proxies write, and IPv4-mapped IPv6
    ("127.0.0.1", ["198.51.100.1:5678"], PROXY, "198.51.100.1"),
    ("127.0.0.1", ["[2001:db8::1]:443"], PROXY, "2001:db8::1"),
    ("127.0.0.1", ["[2001:db8::1]"], PROXY, "2001:db8::1"),
    ("::ffff:127.0.0.1", ["198.51.100.1"], PROXY, "198.51.100.1"),
    ("127.0.0.1", ["::ffff:198.51.100.1"], PROXY, "198.51.100.1"),
    # no IP peer at all (a Unix socket)
    (None, ["198.51.100.1"], PROXY, None),
    ("", ["198.51.100.1"], PROXY, None),
]


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "client"), CASES)
def test_client_address_table(
    peer: str | None, forwarded: list[str], trusted: list[str], client: str | None
) -> None:
    found = from_chain(peer, forwarded, networks(tuple(trusted)))
    assert found == (None if client is None else ipaddress.ip_address(client))


async def test_client_address_of_a_real_request(aiohttp_client: AiohttpClient) -> None:
    """Over a real loopback connection: the peer is 127.0.0.1, which is believed only when
    the list names it."""

    async def who(request: web.Request) -> web.Response:
        trusted = request.query.getall("trusted", [])
        return web.Response(text=str(client_address(request, trusted)))

    app = web.Application()
    app.router.add_get("/", who)
    client = await aiohttp_client(app)
    xff = {"X-Forwarded-For": "6.6.6.6, 198.51.100.1"}
    for path, headers, expected in (
        ("/", {}, "127.0.0.1"),
        ("/", xff, "127.0.0.1"),  # loopback, not listed: the header is ignored
        ("/?trusted=127.0.0.1", {}, "127.0.0.1"),
        ("/?trusted=127.0.0.1", xff, "198.51.100.1"),
        ("/?trusted=10.0.0.0/8", xff, "127.0.0.1"),
    ):
        response = await client.get(path, headers=headers)
        assert await response.text() == expected, (path, headers)
