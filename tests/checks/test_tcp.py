"""The tcp check against real loopback servers: plain, banner, echo, silent, and TLS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.checks.tcp import MAX_EXPECT
from prober.results import CheckResult, Outcome
from tests.support.hostile import closed_port, finishes_within
from tests.support.monitors import monitor
from tests.support.pki import CA_NAME, Pki, StreamServer, banner, echo, hold

TIMEOUT = 1.0


@pytest.fixture
def pki(tmp_path: Any) -> Pki:
    return Pki(tmp_path)


async def probe(shared: Shared, port: int, **fields: Any) -> CheckResult:
    fields.setdefault("timeout", f"{TIMEOUT:g}s")
    return await run_check(monitor("tcp", host="127.0.0.1", port=port, **fields), shared)


async def test_open_port_is_up(shared: Shared) -> None:
    async with StreamServer(hold) as server:
        result = await probe(shared, server.port)
    assert result.outcome is Outcome.UP
    assert result.error is None
    assert result.phases.connect_ms is not None
    assert result.phases.tls_ms is None
    assert server.accepted == 1


async def test_closed_port_is_refused(shared: Shared) -> None:
    with finishes_within(0.5):
        result = await probe(shared, closed_port())
    assert result.outcome is Outcome.DOWN
    assert result.error == "connection refused"


async def test_silent_port_with_expect_is_down_within_the_deadline(shared: Shared) -> None:
    async with StreamServer(hold) as server:
        with finishes_within(TIMEOUT + 1):
            result = await probe(shared, server.port, expect="SSH-")
    assert result.outcome is Outcome.DOWN
    assert result.error == "timed out after 1s waiting for 'SSH-' (saw nothing)"


async def test_banner_matching_expect_is_up(shared: Shared) -> None:
    async with StreamServer(banner(b"SSH-2.0-OpenSSH_9.6\r\n")) as server:
        result = await probe(shared, server.port, expect="SSH-2.0")
    assert result.outcome is Outcome.UP, result.error


async def test_send_then_expect_against_an_echo_server(shared: Shared) -> None:
    async with StreamServer(echo) as server:
        result = await probe(shared, server.port, send="PING hello\r\n", expect="hello")
    assert result.outcome is Outcome.UP, result.error
    assert result.latency_ms > 0


async def test_wrong_reply_is_down_quoting_what_arrived(shared: Shared) -> None:
    async with StreamServer(banner(b"220 mail.local ESMTP\r\n")) as server:
        with finishes_within(TIMEOUT + 1):
            result = await probe(shared, server.port, expect="SSH-2.0")
    assert result.outcome is Outcome.DOWN
    assert result.error == (
        "timed out after 1s waiting for 'SSH-2.0' (saw '220 mail.local ESMTP\\r\\n')"
    )


async def test_close_before_the_expected_reply_is_down(shared: Shared) -> None:
    async with StreamServer(banner(b"abc", then_close=True)) as server:
        result = await probe(shared, server.port, expect="SSH-2.0")
    assert result.outcome is Outcome.DOWN
    assert result.error == "connection closed before 'SSH-2.0' arrived (saw 'abc')"


async def test_expected_text_split_across_packets_is_found(shared: Shared) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for piece in (b"hello SS", b"H", b"-2.0 there"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        await hold(reader, writer)

    async with StreamServer(trickle) as server:
        result = await probe(shared, server.port, expect="SSH-2.0")
    assert result.outcome is Outcome.UP, result.error


async def test_reply_is_read_up_to_64_kib(shared: Shared) -> None:
    async with StreamServer(banner(b"x" * (MAX_EXPECT + 10) + b"READY")) as server:
        result = await probe(shared, server.port, expect="READY")
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert result.error.startswith("'READY' not in the first 64 KiB (saw 'xxxx")
    assert result.error.endswith("…')")


async def test_tls_with_ca_file_is_up_and_records_the_certificate(shared: Shared, pki: Pki) -> None:
    async with StreamServer(echo, ssl=pki.valid()) as server:
        result = await probe(
            shared,
            server.port,
            tls=True,
            server_name="localhost",
            ca_file=pki.ca_file,
            send="ping\n",
            expect="ping",
        )
    assert result.outcome is Outcome.UP, result.error
    assert result.phases.connect_ms is not None
    assert result.phases.tls_ms is not None
    assert result.certificate is not None
    assert result.certificate.issuer == CA_NAME


async def test_tls_with_an_untrusted_certificate_is_down(shared: Shared, pki: Pki) -> None:
    async with StreamServer(hold, ssl=pki.self_signed()) as server:
        result = await probe(shared, server.port, tls=True, ca_file=pki.ca_file)
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert result.error.startswith("TLS certificate rejected: ")


async def test_tls_without_verification_accepts_a_self_signed_certificate(
    shared: Shared, pki: Pki
) -> None:
    async with StreamServer(hold, ssl=pki.self_signed()) as server:
        result = await probe(shared, server.port, tls=True, verify_tls=False)
    assert result.outcome is Outcome.UP, result.error
    assert result.certificate is not None
    assert result.certificate.subject == "self-signed.test"


async def test_tls_against_a_plain_port_is_down(shared: Shared) -> None:
    async with StreamServer(banner(b"SSH-2.0-OpenSSH_9.6\r\n")) as server:
        result = await probe(shared, server.port, tls=True)
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert result.error.startswith("TLS handshake failed: ")
