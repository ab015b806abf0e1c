"""Fixtures for check tests: real loopback servers, started in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.dnsserver import DnsServer


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    """A DNS server on 127.0.0.1:<free port>, UDP and TCP; program it with add / behave."""
    async with DnsServer() as server:
        yield server
