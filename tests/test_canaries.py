"""Canaries against real loopback servers: a failure is unknown only when every canary fails."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import pathlib
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from prober.canaries import Canaries
from prober.checks.context import Shared
from prober.config.monitors import ProbingMonitor
from prober.results import CheckResult, Outcome, down
from prober.scheduler import ProbeScheduler
from tests.support.hostile import closed_port
from tests.support.monitors import monitor
from tests.support.pki import StreamServer, hold

DOWN = down("connection refused", 3.0, details={"phase": "connect"})
NOT_JUDGED = (
    "not judged: the prober's own network is failing (every canary is down); "
    "the check saw: connection refused"
)


class SteppedClock:
    """The system clock, plus whatever the test adds with `advance`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


class HttpCanary:
    """An HTTP server on loopback that answers every request 503 and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.delay = 0.0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        await asyncio.sleep(self.delay)
        return web.Response(status=503, text="overloaded")


@pytest.fixture
async def http_canary() -> AsyncIterator[HttpCanary]:
    canary = HttpCanary()
    app = web.Application()
    app.router.add_get("/", canary.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    canary.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    yield canary
    await runner.cleanup()


@pytest.fixture
async def tcp_canary() -> AsyncIterator[StreamServer]:
    async with StreamServer(hold) as server:
        yield server


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def tcp(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def failing() -> list[str]:
    return [tcp(closed_port()), f"http://watch:hunter2@127.0.0.1:{closed_port()}/ping"]


async def test_no_canaries_never_fail_and_change_nothing(shared: Shared) -> None:
    canaries = Canaries([], shared)
    assert await canaries.all_failing() is False
    assert await canaries.judge(DOWN) is DOWN


async def test_reachable_canaries_leave_a_down_result_down(
    shared: Shared, http_canary: HttpCanary, tcp_canary: StreamServer
) -> None:
    canaries = Canaries([http_canary.url, tcp(tcp_canary.port)], shared)
    assert await canaries.judge(DOWN) is DOWN  # a 503 is still an answer: the network works
    assert http_canary.requests == 1
    assert tcp_canary.accepted == 1


async def test_every_canary_failing_turns_down_into_unknown(
    shared: Shared, caplog: pytest.LogCaptureFixture
) -> None:
    canaries = Canaries(failing(), shared)
    with caplog.at_level(logging.INFO, logger="prober.canaries"):
        judged = await canaries.judge(DOWN)
    assert judged.outcome is Outcome.UNKNOWN
    assert judged.error == NOT_JUDGED
    assert judged.details == {"phase": "connect", "canaries_failing": True}
    assert judged.latency_ms == DOWN.latency_ms
    assert "all 2 canaries failing: results that fail become unknown" in caplog.text
    assert "connection refused" in caplog.text
    assert "hunter2" not in caplog.text

    up = CheckResult(Outcome.UP, 1.0)
    slow = CheckResult(Outcome.DEGRADED, 900.0, error="slow")
    assert await canaries.judge(up) is up
    assert await canaries.judge(slow) is slow


async def test_one_reachable_canary_is_enough(shared: Shared, tcp_canary: StreamServer) -> None:
    canaries = Canaries([tcp(closed_port()), tcp(tcp_canary.port)], shared)
    assert await canaries.all_failing() is False
    assert await canaries.judge(DOWN) is DOWN


async def test_the_verdict_is_kept_for_ttl_seconds(
    shared: Shared, http_canary: HttpCanary, tcp_canary: StreamServer
) -> None:
    clock = SteppedClock()
    canaries = Canaries(
        [http_canary.url, tcp(tcp_canary.port)],
        dataclasses.replace(shared, clock=clock),
        ttl=30,
    )
    await canaries.judge(DOWN)
    clock.advance(29)
    await canaries.judge(DOWN)
    assert (http_canary.requests, tcp_canary.accepted) == (1, 1)
    clock.advance(2)
    await canaries.judge(DOWN)
    assert (http_canary.requests, tcp_canary.accepted) == (2, 2)


async def test_a_verdict_change_is_logged_once_each_way(
    shared: Shared, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SteppedClock()
    port = closed_port()
    canaries = Canaries([tcp(port)], dataclasses.replace(shared, clock=clock), ttl=30)
    with caplog.at_level(logging.INFO, logger="prober.canaries"):
        assert await canaries.all_failing() is True
        clock.advance(31)
        assert await canaries.all_failing() is True
        async with await asyncio.start_server(hang_up, "127.0.0.1", port):
            clock.advance(31)
            assert await canaries.all_failing() is False
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("prober network check: all 1 canaries failing")
    assert messages[1] == "canaries reachable again"


async def test_concurrent_callers_share_one_round(
    shared: Shared, http_canary: HttpCanary, tcp_canary: StreamServer
) -> None:
    http_canary.delay = 0.1
    canaries = Canaries([http_canary.url, tcp(tcp_canary.port)], shared)
    judged = await asyncio.gather(*(canaries.judge(DOWN) for _ in range(50)))
    assert all(r is DOWN for r in judged)
    assert (http_canary.requests, tcp_canary.accepted) == (1, 1)


async def test_a_cancelled_caller_does_not_cancel_the_round(
    shared: Shared, http_canary: HttpCanary
) -> None:
    http_canary.delay = 0.2
    canaries = Canaries([http_canary.url], shared)
    first = asyncio.create_task(canaries.all_failing())
    await asyncio.sleep(0.05)
    first.cancel()
    assert await canaries.all_failing() is False
    assert http_canary.requests == 1
    assert first.cancelled()


async def test_the_scheduler_records_unknown_while_every_canary_fails(shared: Shared) -> None:
    gone = monitor(
        "tcp", id="gone", host="127.0.0.1", port=closed_port(), interval="1s", timeout="500ms"
    )
    seen: list[CheckResult] = []

    def sink(m: ProbingMonitor, at: dt.datetime, result: CheckResult) -> None:
        seen.append(result)

    scheduler = ProbeScheduler([gone], shared, sink, canaries=Canaries(failing(), shared))
    scheduler.start()
    scheduler._scheduler.modify_job("gone", next_run_time=dt.datetime.now(dt.UTC))
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.02)
    await scheduler.stop(grace=1)
    assert seen
    assert all(r.outcome is Outcome.UNKNOWN for r in seen)
    assert seen[0].error == NOT_JUDGED
    assert seen[0].details["canaries_failing"] is True


def test_prober_check_judges_as_run_does(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "monitors.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [settings]
            canaries = {failing()!r}

            [[monitors]]
            id = "gone"
            type = "tcp"
            host = "127.0.0.1"
            port = {closed_port()}
            """
        ).replace("'", '"')
    )
    out = subprocess.run(
        [sys.executable, "-m", "prober", "check", "gone", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(out.stdout)
    assert result["outcome"] == "unknown", out.stderr
    assert result["error"] == NOT_JUDGED
    assert result["details"]["canaries_failing"] is True
    assert "hunter2" not in out.stdout + out.stderr
