"""The redirect rule: a public target may never redirect to a loopback, private or
link-local address (cloud metadata, the prober's own admin ports).

All traffic stays on loopback, so the classification is injected: 127.0.0.2 plays a public
server, every other address an internal one. Server A (127.0.0.2) redirects, server B
(127.0.0.3) stands for the internal service that must never be reached.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from prober.addresses import IpAddress
from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.checks.session import open_shared
from prober.results import CheckResult, Outcome
from tests.support.hostile import finishes_within
from tests.support.monitors import monitor

PUBLIC = ipaddress.ip_address("127.0.0.2")
ServerFactory = Callable[..., Awaitable[TestServer]]


def only_127_0_0_2_is_public(ip: IpAddress) -> bool:
    """The injected classifier: True means internal."""
    return ip != PUBLIC


@pytest.fixture
async def policed() -> AsyncIterator[Shared]:
    async with open_shared(classify_address=only_127_0_0_2_is_public) as shared:
        yield shared


def redirector() -> web.Application:
    """/go?to=URL answers 302 Location: URL."""

    async def go(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    app = web.Application()
    app.router.add_get("/go", go)
    return app


def recorder(seen: list[str]) -> web.Application:
    """Answers every path with 200 "internal secret" and notes it."""

    async def anything(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="internal secret")

    app = web.Application()
    app.router.add_get("/{tail:.*}", anything)
    return app


async def probe(shared: Shared, server: TestServer, to: str, **fields: Any) -> CheckResult:
    url = server.make_url("/go").with_query(to=to)
    spec = monitor("http", url=str(url), timeout="2s", interval="10s", **fields)
    with finishes_within(3):
        return await run_check(spec, shared)


@pytest.mark.parametrize(
    ("location", "blocked_ip"),
    [
        ("http://127.0.0.3:{port}/metadata", "127.0.0.3"),
        # Python < 3.13 prints the mapped address as ::ffff:7f00:3
        (
            "http://[::ffff:127.0.0.3]:{port}/metadata",
            str(ipaddress.ip_address("::ffff:127.0.0.3")),
        ),
        ("http://127.0.0.1:{port}/metadata", "127.0.0.1"),
    ],
)
async def test_public_target_may_not_redirect_to_an_internal_address(
    policed: Shared, aiohttp_server: ServerFactory, location: str, blocked_ip: str
) -> None:
    seen: list[str] = []
    internal = await aiohttp_server(recorder(seen), host="127.0.0.3")
    also_internal = await aiohttp_server(recorder(seen), host="127.0.0.1")
    public = await aiohttp_server(redirector(), host="127.0.0.2")
    port = internal.port if "127.0.0.3" in location else also_internal.port

    result = await probe(policed, public, location.format(port=port), contains="secret")

    assert result.outcome is Outcome.DOWN
    assert result.error == (
        f"redirect to {blocked_ip} blocked: a public target may not redirect to a loopback, "
        "private or link-local address"
    )
    assert seen == []  # B never received a request (not even a connection)


async def test_the_mapped_ipv6_redirect_does_reach_b_without_the_rule(
    aiohttp_server: ServerFactory,
) -> None:
    """Control for the mapped case above: the address itself is reachable here, so the
    block is the rule's doing, not a connect failure."""
    seen: list[str] = []
    internal = await aiohttp_server(recorder(seen), host="127.0.0.3")
    public = await aiohttp_server(redirector(), host="127.0.0.2")
    async with open_shared(classify_address=lambda ip: False) as everything_public:
        result = await probe(
            everything_public,
            public,
            f"http://[::ffff:127.0.0.3]:{internal.port}/metadata",
            contains="secret",
        )
    assert result.outcome is Outcome.UP, result.error
    assert seen == ["/metadata"]


async def test_internal_origin_may_redirect_internally(
    policed: Shared, aiohttp_server: ServerFactory
) -> None:
    # A monitor of an internal service was configured by its operator: its redirects
    # within the private network are ordinary.
    seen: list[str] = []
    internal = await aiohttp_server(recorder(seen), host="127.0.0.1")
    origin = await aiohttp_server(redirector(), host="127.0.0.1")
    result = await probe(
        policed, origin, f"http://127.0.0.1:{internal.port}/status", contains="secret"
    )
    assert result.outcome is Outcome.UP, result.error
    assert seen == ["/status"]


async def test_public_target_may_redirect_to_a_public_address(
    policed: Shared, aiohttp_server: ServerFactory
) -> None:
    seen: list[str] = []
    elsewhere = await aiohttp_server(recorder(seen), host="127.0.0.2")
    public = await aiohttp_server(redirector(), host="127.0.0.2")
    result = await probe(policed, public, f"http://127.0.0.2:{elsewhere.port}/page")
    assert result.outcome is Outcome.UP, result.error
    assert seen == ["/page"]


@pytest.mark.parametrize(
    ("location", "scheme"),
    [("file:///etc/passwd", "file"), ("gopher://127.0.0.3:70/_x", "gopher")],
)
async def test_redirect_to_a_non_http_scheme_is_refused(
    policed: Shared, aiohttp_server: ServerFactory, location: str, scheme: str
) -> None:
    public = await aiohttp_server(redirector(), host="127.0.0.2")
    result = await probe(policed, public, location)
    assert result.outcome is Outcome.DOWN
    assert result.error == (
        f"redirect to a {scheme}: URL refused (only http and https are followed)"
    )
    assert result.status_code == 302


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("64:ff9b::a00:1", True),  # NAT64 form of 10.0.0.1
        ("2002:a00:1::1", True),  # 6to4 form of 10.0.0.1
        ("::ffff:10.0.0.1", True),
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 form of 169.254.169.254
        ("64:ff9b::808:808", False),  # NAT64 form of 8.8.8.8
        ("8.8.8.8", False),
    ],
)
async def test_the_redirect_rule_sees_the_ipv4_address_inside_ipv6_forms(
    address: str, internal: bool
) -> None:
    """The real classifier (no injection): a public target redirecting to the NAT64 or 6to4
    spelling of a private address is redirecting to that private address."""
    async with open_shared() as shared:
        assert shared.classify_address(ipaddress.ip_address(address)) is internal
