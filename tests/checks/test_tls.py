"""The tls check against real TLS servers on loopback with trustme certificates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import pytest

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.results import CheckResult, Outcome
from tests.support.hostile import closed_port, finishes_within
from tests.support.monitors import monitor
from tests.support.pki import CA_NAME, Pki, StreamServer, deaf_after_handshake, hold, sni_router

TIMEOUT = 1.0


@pytest.fixture
def pki(tmp_path: Any) -> Pki:
    return Pki(tmp_path)


async def probe(shared: Shared, port: int, pki: Pki | None, **fields: Any) -> CheckResult:
    fields.setdefault("timeout", f"{TIMEOUT:g}s")
    if pki is not None:
        fields.setdefault("ca_file", pki.ca_file)
    spec = monitor("tls", host="127.0.0.1", port=port, **fields)
    return await run_check(spec, shared)


async def test_valid_certificate_is_up_with_certificate_and_phases(
    shared: Shared, pki: Pki
) -> None:
    async with StreamServer(hold, ssl=pki.valid()) as server:
        result = await probe(shared, server.port, pki)
    assert result.outcome is Outcome.UP, result.error
    assert result.error is None
    assert result.certificate is not None
    assert result.certificate.issuer == CA_NAME
    assert result.details["issuer"] == CA_NAME
    assert result.details["days_left"] > 365
    assert result.details["tls_version"].startswith("TLS")
    assert result.phases.connect_ms is not None
    assert result.phases.tls_ms is not None
    assert result.latency_ms >= result.phases.tls_ms


async def test_expired_certificate_is_down(shared: Shared, pki: Pki) -> None:
    async with StreamServer(hold, ssl=pki.expired()) as server:
        result = await probe(shared, server.port, pki)
    assert result.outcome is Outcome.DOWN
    assert result.error == "TLS certificate rejected: certificate has expired"


async def test_self_signed_certificate_is_down(shared: Shared, pki: Pki) -> None:
    async with StreamServer(hold, ssl=pki.self_signed()) as server:
        result = await probe(shared, server.port, pki)
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert "self-signed certificate" in result.error.replace("self signed", "self-signed")


async def test_untrusted_ca_is_down_without_ca_file(shared: Shared, pki: Pki) -> None:
    async with StreamServer(hold, ssl=pki.valid()) as server:
        result = await probe(shared, server.port, None)
    assert result.outcome is Outcome.DOWN
    assert result.error == "TLS certificate rejected: unable to get local issuer certificate"


@pytest.mark.parametrize(
    ("server_name", "message"),
    [
        ("localhost", "Hostname mismatch, certificate is not valid for 'localhost'"),
        (None, "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ],
)
async def test_wrong_host_is_down(
    shared: Shared, pki: Pki, server_name: str | None, message: str
) -> None:
    async with StreamServer(hold, ssl=pki.wrong_host()) as server:
        result = await probe(shared, server.port, pki, server_name=server_name)
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert message in result.error


async def test_expiring_within_warn_days_is_degraded(shared: Shared, pki: Pki) -> None:
    async with StreamServer(hold, ssl=pki.expiring(days=10)) as server:
        result = await probe(shared, server.port, pki, warn_days=14, down_days=3)
    assert result.outcome is Outcome.DEGRADED
    assert result.error is not None
    assert result.error.startswith("certificate expires in 10.0 days (")
    assert result.error.endswith(" UTC), warn_days 14")
    assert result.certificate is not None
    assert 9.9 < result.details["days_left"] <= 10


async def test_expiring_within_down_days_is_down(shared: Shared, pki: Pki) -> None:
    async with StreamServer(hold, ssl=pki.expiring(days=2)) as server:
        result = await probe(shared, server.port, pki, warn_days=14, down_days=3)
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert result.error.startswith("certificate expires in 2.0 days (")
    assert result.error.endswith(" UTC), down_days 3")
    assert result.certificate is not None
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    assert abs((result.certificate.not_after - expected).total_seconds()) < 60


async def test_zero_thresholds_accept_a_short_lived_certificate(shared: Shared, pki: Pki) -> None:
    async with StreamServer(hold, ssl=pki.expiring(days=2)) as server:
        result = await probe(shared, server.port, pki, warn_days=0, down_days=0)
    assert result.outcome is Outcome.UP


class ShiftedClock:
    """The system clock, with `now` moved: expiry is judged on the prober's clock."""

    def __init__(self, days: float) -> None:
        self.shift = dt.timedelta(days=days)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.shift

    def monotonic(self) -> float:
        return time.monotonic()


async def test_expiry_is_judged_on_the_context_clock(shared: Shared, pki: Pki) -> None:
    later = dataclasses.replace(shared, clock=ShiftedClock(days=12))
    async with StreamServer(hold, ssl=pki.expiring(days=20)) as server:
        result = await probe(later, server.port, pki)
    assert result.outcome is Outcome.DEGRADED
    assert result.error is not None
    assert result.error.startswith("certificate expires in 8.0 days")


async def test_server_name_is_sent_as_sni_and_verified(shared: Shared, pki: Pki) -> None:
    default = pki.wrong_host()
    seen = sni_router(default, {"svc.test": pki.leaf("svc.test")})
    async with StreamServer(hold, ssl=default) as server:
        named = await probe(shared, server.port, pki, server_name="svc.test")
        bare = await probe(shared, server.port, pki)
    assert named.outcome is Outcome.UP, named.error
    assert named.certificate is not None
    assert named.certificate.subject == "svc.test"
    assert bare.outcome is Outcome.DOWN  # an IP literal sends no SNI: the default cert
    assert bare.error is not None
    assert "IP address mismatch" in bare.error
    assert seen == ["svc.test", None]


async def test_port_that_never_speaks_tls_is_down_within_the_deadline(
    shared: Shared, pki: Pki
) -> None:
    async with StreamServer(hold) as server:
        with finishes_within(TIMEOUT + 1):
            result = await probe(shared, server.port, pki)
    assert result.outcome is Outcome.DOWN
    assert result.error == "timed out after 1s in the TLS handshake"
    assert result.phases.connect_ms is not None
    assert result.phases.tls_ms is None  # the handshake never ended: no time for it


async def test_peer_that_ignores_close_notify_costs_no_more_than_the_grace(
    shared: Shared, pki: Pki
) -> None:
    async with StreamServer(deaf_after_handshake(pki.valid())) as server:
        with finishes_within(1.5):  # the deadline is 3s; the polite close gets 0.5s
            result = await probe(shared, server.port, pki, timeout="3s")
    assert result.outcome is Outcome.UP, result.error
    assert result.latency_ms < 1000  # measured before the close


async def test_closed_port_is_refused_quickly(shared: Shared, pki: Pki) -> None:
    with finishes_within(0.5):
        result = await probe(shared, closed_port(), pki)
    assert result.outcome is Outcome.DOWN
    assert result.error == "connection refused"
    assert result.phases.tls_ms is None
