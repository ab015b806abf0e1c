"""The http check over HTTPS: certificate verification, ca_file, verify_tls, TLS timing.

The server is an aiohttp app with a trustme leaf for 127.0.0.1 (an IP SAN), so the URL
needs no name resolution.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.results import CheckResult, Outcome
from tests.support.monitors import monitor
from tests.support.pki import CA_NAME, Pki

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def pki(tmp_path: Any) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def https(aiohttp_server: ServerFactory) -> Callable[[ssl.SSLContext], Awaitable[int]]:
    """Start an HTTPS app answering `GET /` with "ok"; returns its port."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(ssl_ctx: ssl.SSLContext) -> int:
        app = web.Application()
        app.router.add_get("/", ok)
        server = await aiohttp_server(app, ssl=ssl_ctx)
        assert server.port is not None
        return server.port

    return start


async def probe(shared: Shared, port: int, **fields: Any) -> CheckResult:
    fields.setdefault("timeout", "2s")
    spec = monitor("http", url=f"https://127.0.0.1:{port}/", **fields)
    return await run_check(spec, shared)


async def test_valid_certificate_is_up_with_tls_timed(
    shared: Shared, pki: Pki, https: Callable[[ssl.SSLContext], Awaitable[int]]
) -> None:
    port = await https(pki.valid())
    result = await probe(shared, port, ca_file=pki.ca_file, contains=["ok"])
    assert result.outcome is Outcome.UP, result.error
    assert result.status_code == 200
    assert result.phases.connect_ms is not None
    assert result.phases.tls_ms is not None
    assert result.phases.first_byte_ms is not None
    # for /metrics' probe_http_ssl and probe_tls_version_info; HTTP/1.1 is not stored
    assert result.details == {"tls_version": "TLSv1.3"}


async def test_valid_certificate_is_recorded(
    shared: Shared, pki: Pki, https: Callable[[ssl.SSLContext], Awaitable[int]]
) -> None:
    port = await https(pki.valid())
    result = await probe(shared, port, ca_file=pki.ca_file)
    assert result.outcome is Outcome.UP, result.error
    assert result.certificate is not None
    assert result.certificate.issuer == CA_NAME


async def test_ca_file_is_what_makes_the_private_ca_trusted(
    shared: Shared, pki: Pki, https: Callable[[ssl.SSLContext], Awaitable[int]]
) -> None:
    port = await https(pki.valid())
    result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error == "TLS certificate rejected: unable to get local issuer certificate"


async def test_expired_certificate_is_down(
    shared: Shared, pki: Pki, https: Callable[[ssl.SSLContext], Awaitable[int]]
) -> None:
    port = await https(pki.expired())
    result = await probe(shared, port, ca_file=pki.ca_file)
    assert result.outcome is Outcome.DOWN
    assert result.error == "TLS certificate rejected: certificate has expired"
    assert result.status_code is None


async def test_self_signed_certificate_is_down(
    shared: Shared, pki: Pki, https: Callable[[ssl.SSLContext], Awaitable[int]]
) -> None:
    port = await https(pki.self_signed())
    result = await probe(shared, port, ca_file=pki.ca_file)
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert "self-signed certificate" in result.error.replace("self signed", "self-signed")


async def test_wrong_host_is_down(
    shared: Shared, pki: Pki, https: Callable[[ssl.SSLContext], Awaitable[int]]
) -> None:
    port = await https(pki.wrong_host())
    result = await probe(shared, port, ca_file=pki.ca_file)
    assert result.outcome is Outcome.DOWN
    assert result.error == (
        "TLS certificate rejected: IP address mismatch, certificate is not valid for '127.0.0.1'."
    )


async def test_verify_tls_false_accepts_a_self_signed_certificate(
    shared: Shared, pki: Pki, https: Callable[[ssl.SSLContext], Awaitable[int]]
) -> None:
    port = await https(pki.self_signed())
    result = await probe(shared, port, verify_tls=False)
    assert result.outcome is Outcome.UP, result.error
    assert result.status_code == 200
    assert result.phases.tls_ms is not None
