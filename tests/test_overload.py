"""The prober's own lateness is not the target's fault: stalls, late starts, no descriptors.

The targets run in their own thread, so blocking the prober's event loop on purpose does
not block them too: what the check sees is then the prober's doing, not the target's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import http.server
import logging
import os
import re
import resource
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from prober.checks.context import Shared
from prober.clock import SystemClock
from prober.config.monitors import ProbingMonitor
from prober.metrics import OverloadCollector
from prober.overload import Overload, Stalls, excuse
from prober.results import CheckResult, Outcome, down
from prober.scheduler import ProbeScheduler
from statuspage.health import Health
from tests.support.hostile import closed_port
from tests.support.monitors import monitor

STALL_S = 0.7  # the prober's loop blocked for this long, past the 0.5 s threshold


@dataclasses.dataclass
class Target:
    """An HTTP server in its own thread. On each request it runs `on_request` (in its
    thread), waits `delay` seconds, then answers 200."""

    url: str
    on_request: Callable[[], object] | None = None
    delay: float = 0.0


@pytest.fixture
def target() -> Iterator[Target]:
    box: list[Target] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            t = box[0]
            if t.on_request is not None:
                t.on_request()
            if t.delay:
                time.sleep(t.delay)  # this thread only: the target is slow, not the prober
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.append(Target(f"http://127.0.0.1:{server.server_address[1]}/"))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def block_loop(loop: asyncio.AbstractEventLoop, seconds: float = STALL_S) -> Callable[[], None]:
    """From the target's thread: block the prober's event loop, as a slow synchronous call
    in the prober would. The target then answers `delay` later, while the loop is blocked."""
    return lambda: loop.call_soon_threadsafe(time.sleep, seconds)


class Sink:
    def __init__(self) -> None:
        self.results: list[CheckResult] = []
        self.arrived = asyncio.Event()

    def __call__(self, m: ProbingMonitor, at: dt.datetime, result: CheckResult) -> None:
        self.results.append(result)
        self.arrived.set()


async def run_once(scheduler: ProbeScheduler, sink: Sink, monitor_id: str = "t") -> CheckResult:
    """Run the monitor's job now (its grid time is an hour away) and wait for the result."""
    scheduler._scheduler.modify_job(monitor_id, next_run_time=dt.datetime.now(dt.UTC))
    async with asyncio.timeout(10):
        await sink.arrived.wait()
    return sink.results[0]


async def check(shared: Shared, **fields: object) -> tuple[CheckResult, ProbeScheduler]:
    spec = monitor(str(fields.pop("type", "http")), interval="1h", **fields)
    sink = Sink()
    scheduler = ProbeScheduler([spec], shared, sink)
    scheduler.start()
    try:
        return await run_once(scheduler, sink), scheduler
    finally:
        await scheduler.stop(grace=1)


# (a) the target answers at once; the prober's blocked loop makes the check time out
async def test_a_timeout_caused_by_a_loop_stall_is_unknown(
    shared: Shared, target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    target.on_request = block_loop(asyncio.get_running_loop())
    target.delay = 0.1  # the answer arrives while the loop is blocked
    with caplog.at_level(logging.INFO, logger="prober.overload"):
        result, scheduler = await check(shared, url=target.url, timeout="300ms")
    assert result.outcome is Outcome.UNKNOWN
    error = result.error or ""
    assert re.match(
        r"prober overloaded: (started \d\.\d s late, )?event loop stalled \d\.\d s", error
    )
    assert "during the check; the check saw: timed out after 300ms" in error
    assert result.details["prober_stalled_ms"] >= (STALL_S - 0.05) * 1000
    assert scheduler.overload.total == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("prober overloaded: 1 check recorded unknown")
    # stop() ends the streak, with its count
    assert not scheduler.overload.in_streak
    assert any(
        r.getMessage().startswith("prober no longer overloaded: 1 checks") for r in caplog.records
    )


# (b) the same target really failing, the loop free: down as before
async def test_a_target_really_down_stays_down(shared: Shared, target: Target) -> None:
    refused, scheduler = await check(
        shared, type="tcp", host="127.0.0.1", port=closed_port(), timeout="300ms"
    )
    assert (refused.outcome, refused.error) == (Outcome.DOWN, "connection refused")
    assert scheduler.overload.total == 0

    target.delay = 1.0  # the target's own thread stalls; the prober's loop is free
    hung, _ = await check(shared, url=target.url, timeout="300ms")
    assert hung.outcome is Outcome.DOWN
    assert hung.error == "timed out after 300ms waiting for the response"

    target.delay = 0.4
    slow, _ = await check(shared, url=target.url, timeout="3s", degraded_after="200ms")
    assert slow.outcome is Outcome.DEGRADED
    assert (slow.error or "").startswith("slow: ")


# (c) slow only because of the prober's stall
async def test_degraded_only_by_a_loop_stall_is_unknown(shared: Shared, target: Target) -> None:
    target.on_request = block_loop(asyncio.get_running_loop())
    result, scheduler = await check(shared, url=target.url, timeout="3s", degraded_after="200ms")
    assert result.outcome is Outcome.UNKNOWN
    assert re.match(r"prober overloaded: .*event loop stalled \d\.\d s", result.error or "")
    assert "the check saw: slow: " in (result.error or "")
    assert scheduler.overload.total == 1


# (d) success during a stall is evidence the target works
async def test_up_during_a_stall_stays_up(shared: Shared, target: Target) -> None:
    target.on_request = block_loop(asyncio.get_running_loop())
    result, scheduler = await check(shared, url=target.url, timeout="3s")
    assert result.outcome is Outcome.UP
    assert result.latency_ms >= (STALL_S - 0.05) * 1000  # the stall was there
    assert scheduler.overload.total == 0


class LateClock(SystemClock):
    """Wall time `by` seconds ahead of the scheduler's: every run starts that late."""

    def __init__(self, by: float) -> None:
        self.by = by

    def now(self) -> dt.datetime:
        return super().now() + dt.timedelta(seconds=self.by)


# (e) a late start: the prober's clock says the run began 0.8 s after it was due
async def test_a_failure_after_a_late_start_is_unknown(shared: Shared, target: Target) -> None:
    late = dataclasses.replace(shared, clock=LateClock(0.8))
    result, _ = await check(late, type="tcp", host="127.0.0.1", port=closed_port(), timeout="300ms")
    assert result.outcome is Outcome.UNKNOWN
    # (a busy machine may add a stall: "started 0.8 s late, event loop stalled ...")
    assert re.match(r"prober overloaded: started 0\.[89] s late[,;]", result.error or "")
    assert (result.error or "").endswith("; the check saw: connection refused")
    assert result.details["prober_late_ms"] == pytest.approx(800, abs=50)
    up, _ = await check(late, url=target.url, timeout="3s")
    assert up.outcome is Outcome.UP


async def test_waiting_for_a_concurrency_slot_counts_as_late(shared: Shared) -> None:
    spec = monitor("tcp", interval="1h", host="127.0.0.1", port=closed_port(), timeout="300ms")
    sink = Sink()
    scheduler = ProbeScheduler([spec], shared, sink, max_concurrency=1)
    scheduler.start()
    try:
        async with scheduler._slots:  # every slot taken, as by 1 slow check
            scheduler._scheduler.modify_job("t", next_run_time=dt.datetime.now(dt.UTC))
            async with asyncio.timeout(5):
                while not scheduler._in_flight:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.6)  # the run waits for the slot this long
        async with asyncio.timeout(5):
            await sink.arrived.wait()
    finally:
        await scheduler.stop(grace=1)
    result = sink.results[0]
    assert result.outcome is Outcome.UNKNOWN
    assert re.match(r"prober overloaded: started 0\.[6-9] s late", result.error or "")


async def test_a_reload_can_raise_the_threshold(shared: Shared) -> None:
    late = dataclasses.replace(shared, clock=LateClock(0.8))
    spec = monitor("tcp", interval="1h", host="127.0.0.1", port=closed_port(), timeout="300ms")
    sink = Sink()
    scheduler = ProbeScheduler([spec], late, sink, overload_threshold=0.5)
    scheduler.reconfigure([spec], overload_threshold=2.0)
    scheduler.start()
    try:
        result = await run_once(scheduler, sink)
    finally:
        await scheduler.stop(grace=1)
    assert (result.outcome, result.error) == (Outcome.DOWN, "connection refused")


async def test_no_file_descriptors_is_the_probers_fault_and_healthz_says_so(
    shared: Shared,
) -> None:
    spec = monitor("tcp", interval="1h", host="127.0.0.1", port=closed_port(), timeout="300ms")
    sink = Sink()
    scheduler = ProbeScheduler([spec], shared, sink)
    scheduler.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor
        result = await run_once(scheduler, sink)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        await scheduler.stop(grace=1)
    assert result.outcome is Outcome.UNKNOWN
    assert result.error == (
        "prober out of file descriptors; the check saw: connect failed: Too many open files"
    )
    health = Health(lambda: True, lambda: True, out_of_files=scheduler.overload.out_of_files)
    report = health.report()
    assert (report["status"], report["problems"]) == (
        "unhealthy",
        ["out of file descriptors: 1 checks recorded unknown in the last minute"],
    )
    assert scheduler.overload.out_of_files(time.monotonic() + 61) == 0  # a minute later: over


# The stall recorder: overlap arithmetic, the stall in progress, and its cost


def stalls_of(*spans: tuple[float, float]) -> Stalls:
    stalls = Stalls(every=0.05, slack=0.005)
    for start, end in spans:
        stalls.observe(start, end)
    return stalls


def test_only_wakeups_later_than_the_slack_are_stalls() -> None:
    stalls = stalls_of((10.0, 10.004), (11.0, 11.006))
    assert stalls.unavailable(0, 100) == pytest.approx(0.006)


@pytest.mark.parametrize(
    ("t0", "t1", "expected"),
    [
        (0.0, 100.0, 0.5 + 1.0 + 0.25),  # all of them
        (10.2, 10.4, 0.2),  # inside one
        (10.25, 20.5, 0.25 + 1.0 + 0.25),  # cuts the first, whole second, cuts the third
        (11.0, 11.9, 0.0),  # between two
        (12.5, 12.5, 0.0),  # an instant inside one: no time
        (30.25, 40.0, 0.0),  # after them all
        (0.0, 10.0, 0.0),  # ends where the first begins
        (20.0, 20.1, 0.1),  # begins where one begins
    ],
)
def test_unavailable_is_the_stall_time_inside_the_window(
    t0: float, t1: float, expected: float
) -> None:
    stalls = stalls_of((10.0, 10.5), (12.0, 13.0), (20.0, 20.25), (30.0, 30.25))
    if t0 <= 30.0 <= t1:
        expected += min(t1, 30.25) - 30.0
    assert stalls.unavailable(t0, t1) == pytest.approx(expected)


def test_the_ring_is_bounded() -> None:
    stalls = Stalls(keep=3)
    for i in range(10):
        stalls.observe(i, i + 0.5)
    assert stalls.unavailable(0, 100) == pytest.approx(1.5)  # the newest 3
    assert stalls.worst(now=10.0, window_s=100) == pytest.approx(0.5)


async def test_a_stall_in_progress_counts_before_the_ticker_wakes() -> None:
    loop = asyncio.get_running_loop()
    stalls = Stalls()
    stalls.start()
    try:
        t0 = loop.time()
        await asyncio.sleep(0.1)
        assert stalls.unavailable(t0, loop.time()) == 0.0
        time.sleep(0.3)  # the loop blocked; the ticker has not run since
        assert stalls.unavailable(t0, loop.time()) >= 0.3 - stalls.every
        assert stalls.worst() >= 0.3 - stalls.every
        await asyncio.sleep(0.05)  # now it has: the stall is recorded, not pending
        assert stalls._stalls
        assert 0.3 - stalls.every <= stalls.unavailable(t0, loop.time()) <= 0.35
        assert stalls.worst(window_s=0.01) == 0.0
    finally:
        stalls.stop()
    assert not stalls.running


async def test_the_ticker_costs_next_to_nothing() -> None:
    """20 wake-ups a second: well under 1% of one core (measured: ~0.3% idle, in a VM)."""
    stalls = Stalls()
    cpu = time.process_time()
    await asyncio.sleep(0.5)
    idle = time.process_time() - cpu
    stalls.start()
    cpu = time.process_time()
    wall = time.perf_counter()
    await asyncio.sleep(0.5)
    ticking = time.process_time() - cpu
    stalls.stop()
    elapsed = time.perf_counter() - wall
    assert (ticking - idle) / elapsed < 0.02


# The judgement itself


def test_excuse_judges_only_failures_past_the_threshold() -> None:
    failed = down("connection refused", 5.0)
    assert excuse(failed, 0.3, 0.1, 0.5) is None  # 0.4 s in all: the target's fault
    assert excuse(failed, 0.3, 0.3, 0.5) == (
        "prober overloaded: started 0.3 s late, event loop stalled 0.3 s during the check;"
        " the check saw: connection refused"
    )
    assert excuse(CheckResult(Outcome.UP, 900.0), 5.0, 5.0, 0.5) is None
    assert excuse(CheckResult(Outcome.UNKNOWN, 0.0, error="x"), 5.0, 5.0, 0.5) is None
    long = excuse(down("x" * 600, 1.0), 1.0, 0.0, 0.5)
    assert long is not None
    assert len(long) == 500
    assert excuse(down("DNS lookup failed: Too many open files in system", 1.0), 0, 0, 0.5) == (
        "prober out of file descriptors;"
        " the check saw: DNS lookup failed: Too many open files in system"
    )


def test_overload_is_counted_for_metrics_and_healthz_and_streaks_end_when_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    overload = Overload(gap_s=60)
    at = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    with caplog.at_level(logging.INFO, logger="prober.overload"):
        for i in range(5):
            overload.record("api", "prober overloaded: started 0.8 s late; saw", 100.0 + i, at)
        overload.end_if_quiet(150.0)
        assert overload.in_streak
        overload.end_if_quiet(165.0)
        assert not overload.in_streak
        overload.record("api", "prober out of file descriptors; the check saw: x", 300.0, at)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "prober overloaded: 1 check recorded unknown, not down or degraded"
            " (monitor=api: started 0.8 s late); the streak's count is logged when it ends",
        ),
        ("INFO", "prober no longer overloaded: 5 checks recorded unknown in 4 s"),
        (
            "WARNING",
            "prober overloaded: 1 check recorded unknown, not down or degraded"
            " (monitor=api: out of file descriptors); the streak's count is logged when it ends",
        ),
    ]
    assert (overload.total, overload.last_at) == (6, at)
    assert (overload.out_of_files(330.0), overload.out_of_files(361.0)) == (1, 0)  # 60 s

    families = {f.name: f.samples for f in OverloadCollector(overload).collect()}
    assert families["prober_checks_overloaded"][0].name == "prober_checks_overloaded_total"
    assert families["prober_checks_overloaded"][0].value == 6
    assert families["prober_overloaded"][0].value == 1.0

    health = Health(lambda: True, lambda: True, overloaded_checks=lambda: overload.total)
    report = health.report()
    assert (report["status"], report["overloaded_checks"]) == ("ok", 6)  # reported, not a problem
