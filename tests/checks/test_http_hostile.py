"""The HTTP check against targets that misbehave on purpose (RELIABILITY.md 5.1-5.2).

Each test asserts three things: the outcome, an error an operator can read, and that the
check ended inside its deadline (timeout + 1 s of slack, measured on the wall clock here).
"""

from __future__ import annotations

from typing import Any

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.results import CheckResult, Outcome
from tests.support import hostile
from tests.support.hostile import finishes_within, peak_memory, serve
from tests.support.monitors import monitor

MiB = 1024 * 1024
MEMORY_BOUND = 16 * MiB  # max_body is 1 MiB; a naive reader of the bomb needs 256 MiB+


async def probe(shared: Shared, port: int, timeout: float = 1.0, **fields: Any) -> CheckResult:
    spec = monitor(
        "http",
        url=f"http://127.0.0.1:{port}/",
        timeout=f"{timeout:g}s",
        interval="10s",
        **fields,
    )
    with finishes_within(timeout + 1):
        return await run_check(spec, shared)


async def test_headers_that_never_come_time_out_waiting_for_the_response(shared: Shared) -> None:
    async with serve(hostile.silent()) as port:
        result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error == "timed out after 1s waiting for the response"


async def test_body_that_stalls_after_the_headers_times_out_reading_the_body(
    shared: Shared,
) -> None:
    async with serve(hostile.stall_after_headers()) as port:
        result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error == "timed out after 1s reading the body"
    assert result.status_code is None  # no verdict on a half-read response


async def test_body_dripping_a_byte_every_half_second_is_cut_by_the_deadline(
    shared: Shared,
) -> None:
    # Every read succeeds within 0.5 s, so a per-read timeout (aiohttp's sock_read) would
    # never fire; only the check's total deadline ends this.
    async with serve(hostile.drip(every=0.5)) as port:
        result = await probe(shared, port, timeout=2)
    assert result.outcome is Outcome.DOWN
    assert result.error == "timed out after 2s reading the body"


async def test_endless_chunked_body_stops_at_max_body(shared: Shared) -> None:
    async with serve(hostile.endless_chunked()) as port:
        with peak_memory() as memory:
            result = await probe(shared, port, timeout=2, max_body="1MiB")
    assert result.outcome is Outcome.UP  # a status-only check: the first 1 MiB is judged
    assert result.details["body_truncated"] is True
    assert result.latency_ms < 1000  # stopped at the cap, long before the deadline
    assert memory.peak < MEMORY_BOUND


async def test_gzip_bomb_is_capped_after_decompression(shared: Shared) -> None:
    bomb = hostile.gzip_bomb_bytes(mib=256)
    assert len(bomb) < 512 * 1024  # a few hundred KB on the wire, 256 MiB inflated
    async with serve(hostile.gzip_bomb(bomb)) as port:
        with peak_memory() as memory:
            result = await probe(shared, port, max_body="1MiB", contains="never there")
    assert result.outcome is Outcome.DOWN
    assert result.error == (
        "contains 'never there': saw absent, wanted present"
        " (judged on the first 1048576 bytes: the body is larger than max_body)"
    )
    assert result.details["body_truncated"] is True
    assert memory.peak < MEMORY_BOUND, f"peak {memory.peak / MiB:.1f} MiB"


async def test_redirect_loop_stops_at_max_redirects(shared: Shared) -> None:
    seen: list[bytes] = []
    async with serve(hostile.recording(seen, hostile.redirect_loop())) as port:
        result = await probe(shared, port, max_redirects=5)
    assert result.outcome is Outcome.DOWN
    assert result.error == "too many redirects: more than 5"
    assert len(seen) == 6  # the first request and five redirects followed, then no more
    assert len(result.details["redirects"]) == 6


async def test_garbage_instead_of_http_is_an_invalid_response(shared: Shared) -> None:
    async with serve(hostile.ssh_banner()) as port:
        result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert result.error.startswith("invalid HTTP response")
    assert "SSH" not in result.error  # the target's bytes are not echoed
    assert "\n" not in result.error


async def test_connection_reset_after_the_request_is_down_after_one_attempt(
    shared: Shared,
) -> None:
    seen: list[bytes] = []
    async with serve(hostile.recording(seen, hostile.reset_after_request())) as port:
        result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error == "connection reset by peer"
    assert len(seen) == 1  # no hidden retry: one check, one request


async def test_close_before_any_response_is_down_after_one_attempt(shared: Shared) -> None:
    seen: list[bytes] = []
    async with serve(hostile.recording(seen, hostile.close_before_response())) as port:
        result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error == "server closed the connection without a response"
    assert len(seen) == 1


async def test_body_shorter_than_its_content_length_is_down(shared: Shared) -> None:
    # The 5 bytes that did arrive contain the keyword; a truncated body is still no verdict.
    async with serve(hostile.short_body()) as port:
        result = await probe(shared, port, contains="hello")
    assert result.outcome is Outcome.DOWN
    assert result.error is not None
    assert result.error.startswith("reading the body failed")
    assert "received 5 of 1000 bytes" in result.error


async def test_http10_body_ended_by_close_is_read_whole(shared: Shared) -> None:
    body = b"status: all systems go\n" * 100
    async with serve(hostile.http10_until_close(body)) as port:
        result = await probe(shared, port, contains="all systems go", not_contains="error")
    assert result.outcome is Outcome.UP, result.error
    assert result.status_code == 200
    assert [(a.name, a.ok) for a in result.assertions] == [
        ("status", True),
        ("contains 'all systems go'", True),
        ("not_contains 'error'", True),
    ]


async def test_200kb_header_line_is_an_invalid_response(shared: Shared) -> None:
    async with serve(hostile.huge_header(200 * 1024)) as port:
        result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error == "invalid HTTP response: a header or status line longer than 8190 bytes"


async def test_closed_port_is_refused_at_once(shared: Shared) -> None:
    port = hostile.closed_port()
    with finishes_within(1):
        result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error == "connection refused"


async def test_port_that_accepts_and_never_speaks_times_out(shared: Shared) -> None:
    async with serve(hostile.accepts_never_speaks()) as port:
        result = await probe(shared, port)
    assert result.outcome is Outcome.DOWN
    assert result.error == "timed out after 1s waiting for the response"


async def test_an_http_1_0_answer_is_recorded_for_metrics(shared: Shared) -> None:
    """probe_http_version reads it; HTTP/1.1, almost every answer's, is not stored."""
    raw = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with serve(hostile.respond(raw)) as port:
        result = await probe(shared, port)
    assert result.outcome is Outcome.UP, result.error
    assert result.details == {"http_version": "1.0"}
