"""Phase times are measured when a phase ends: one cut short has no time, in every check type.

A timeout while waiting for the response must not report `first_byte_ms` (no byte came),
neither in `details` (what `prober check --json` prints) nor in the stored columns.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
from typing import Any

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.results import CheckResult, Outcome
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from tests.support import hostile
from tests.support.dnsserver import Behaviour, DnsServer
from tests.support.hostile import closed_port, serve
from tests.support.monitors import monitor
from tests.support.pki import Pki, StreamServer, hold

PHASE_COLUMNS = ("dns_us", "connect_us", "tls_us", "first_byte_us")


async def check(shared: Shared, type_: str, **fields: Any) -> CheckResult:
    fields.setdefault("timeout", "1s")
    fields.setdefault("interval", "10s")
    return await run_check(monitor(type_, **fields), shared)


def stored_phases(tmp_path: pathlib.Path, result: CheckResult) -> dict[str, int | None]:
    """The result's phase columns as the writer stores them."""
    path = tmp_path / "p.db"
    open_engine(path).dispose()
    writer = ResultWriter(path, "here", [TrackSpec.plain("t")], heartbeat_every=60)
    writer.start()
    writer.submit(Observation("t", dt.datetime(2026, 12, 3, tzinfo=dt.UTC), result))
    assert writer.flush(10)
    writer.close()
    with sqlite3.connect(path) as conn:
        row = conn.execute(f"SELECT {', '.join(PHASE_COLUMNS)} FROM result").fetchone()
    return dict(zip(PHASE_COLUMNS, row, strict=True))


async def test_http_timeout_waiting_for_the_response_has_no_first_byte(
    shared: Shared, tmp_path: pathlib.Path
) -> None:
    async with serve(hostile.silent()) as port:  # accepts, reads, never answers
        result = await check(shared, "http", url=f"http://127.0.0.1:{port}/")
    assert result.error == "timed out after 1s waiting for the response"
    assert result.phases.connect_ms is not None  # the connection was made
    assert result.phases.first_byte_ms is None
    assert result.details_json()["phases"] == {"connect_ms": result.phases.as_dict()["connect_ms"]}
    stored = stored_phases(tmp_path, result)
    assert stored["first_byte_us"] is None
    assert stored["connect_us"] is not None
    assert stored["dns_us"] is None
    assert stored["tls_us"] is None


async def test_http_stall_after_the_headers_keeps_first_byte(shared: Shared) -> None:
    async with serve(hostile.stall_after_headers()) as port:
        result = await check(shared, "http", url=f"http://127.0.0.1:{port}/")
    assert result.error == "timed out after 1s reading the body"
    assert result.phases.first_byte_ms is not None  # the headers did come


async def test_http_refused_connection_has_no_connect_time(shared: Shared) -> None:
    result = await check(shared, "http", url=f"http://127.0.0.1:{closed_port()}/")
    assert result.error == "connection refused"
    assert result.details_json().get("phases") is None


async def test_https_handshake_that_never_ends_has_no_tls_time(shared: Shared) -> None:
    async with serve(hostile.silent()) as port:
        result = await check(shared, "http", url=f"https://127.0.0.1:{port}/")
    assert result.error == "timed out after 1s in the TLS handshake"
    assert result.phases.connect_ms is not None
    assert result.phases.tls_ms is None
    assert result.phases.first_byte_ms is None


async def test_tcp_tls_handshake_that_never_ends_has_no_tls_time(
    shared: Shared, tmp_path: pathlib.Path
) -> None:
    async with StreamServer(hold) as server:
        result = await check(
            shared,
            "tcp",
            host="127.0.0.1",
            port=server.port,
            tls=True,
            ca_file=Pki(tmp_path).ca_file,
        )
    assert result.outcome is Outcome.DOWN
    assert result.error == "timed out after 1s in the TLS handshake"
    assert result.phases.connect_ms is not None
    assert result.phases.tls_ms is None


async def test_tcp_plain_connect_is_timed(shared: Shared) -> None:
    async with StreamServer(hold) as server:
        result = await check(shared, "tcp", host="127.0.0.1", port=server.port)
    assert result.outcome is Outcome.UP, result.error
    assert result.phases.connect_ms is not None


async def test_dns_without_an_answer_has_no_dns_time(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.behave("www.example.test", Behaviour.DROP)
    result = await check(shared, "dns", query="www.example.test", nameservers=[dns_server.address])
    assert result.outcome is Outcome.DOWN
    assert result.phases.dns_ms is None
    assert "phases" not in result.details_json()


async def test_dns_answer_is_timed_even_when_it_is_a_failure(
    dns_server: DnsServer, shared: Shared
) -> None:
    dns_server.behave("www.example.test", Behaviour.SERVFAIL)
    result = await check(shared, "dns", query="www.example.test", nameservers=[dns_server.address])
    assert result.outcome is Outcome.DOWN
    assert result.error == "rcode SERVFAIL, wanted NOERROR"
    assert result.phases.dns_ms is not None
