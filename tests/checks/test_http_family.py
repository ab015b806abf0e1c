"""`ip_version` pins the address family of an HTTP check."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.results import Outcome
from tests.support.monitors import monitor


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this machine")


@pytest.fixture
async def v6_port() -> AsyncIterator[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "::1", 0).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.mark.parametrize(
    ("ip_version", "outcome"), [(None, Outcome.UP), (6, Outcome.UP), (4, Outcome.DOWN)]
)
async def test_ip_version(
    shared: Shared, v6_port: int, ip_version: int | None, outcome: Outcome
) -> None:
    spec = monitor("http", url=f"http://[::1]:{v6_port}/", ip_version=ip_version, timeout="2s")
    result = await run_check(spec, shared)
    assert result.outcome is outcome
    if outcome is Outcome.DOWN:
        assert result.error == "ip_version is 4 but ::1 is an IPv6 address"
