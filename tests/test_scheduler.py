"""Scheduling: a stable phase per monitor, runs on time, no frozen monitors, clean stop."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from prober.checks.context import Shared
from prober.config.monitors import ProbingMonitor
from prober.results import CheckResult, Outcome
from prober.scheduler import ProbeScheduler, lateness, next_due, phase_offset
from tests.support.monitors import monitor


@given(st.text(min_size=1, max_size=30), st.floats(min_value=1, max_value=86400))
def test_phase_is_stable_and_inside_the_interval(monitor_id: str, interval: float) -> None:
    phase = phase_offset(monitor_id, interval)
    assert 0 <= phase < interval
    assert phase == phase_offset(monitor_id, interval)


def test_phases_spread_monitors_over_the_interval() -> None:
    phases = [phase_offset(f"m{i}", 60) for i in range(1000)]
    per_second = [0] * 60
    for p in phases:
        per_second[int(p)] += 1
    assert max(per_second) < 40  # 1000/60 ≈ 17 a second, not 1000 at :00


def test_next_due_is_on_the_grid_and_lateness_measures_from_it() -> None:
    now = dt.datetime(2026, 11, 22, 5, 0, 0, 123000, tzinfo=dt.UTC)
    due = next_due("api", 60, now)
    assert now <= due < now + dt.timedelta(seconds=60)
    assert lateness("api", 60, due) == pytest.approx(0, abs=1e-6)
    assert lateness("api", 60, due + dt.timedelta(seconds=0.25)) == pytest.approx(0.25, abs=1e-6)
    assert lateness("api", 60, due - dt.timedelta(seconds=0.01)) == pytest.approx(-0.01, abs=1e-6)


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/hang", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


class Sink:
    def __init__(self) -> None:
        self.results: list[tuple[str, dt.datetime, CheckResult]] = []

    def __call__(self, m: ProbingMonitor, at: dt.datetime, result: CheckResult) -> None:
        self.results.append((m.id, at, result))

    def of(self, monitor_id: str) -> list[CheckResult]:
        return [r for i, _, r in self.results if i == monitor_id]


async def test_monitors_run_each_interval_and_a_hung_target_never_freezes_one(
    shared: Shared, target: str
) -> None:
    fine = monitor("http", id="fine", url=f"{target}/ok", interval="1s", timeout="500ms")
    hung = monitor("http", id="hung", url=f"{target}/hang", interval="1s", timeout="500ms")
    sink = Sink()
    scheduler = ProbeScheduler([fine, hung], shared, sink)
    scheduler.start()
    await asyncio.sleep(4.2)
    await scheduler.stop(grace=1)
    assert len(sink.of("fine")) >= 3
    assert all(r.outcome is Outcome.UP for r in sink.of("fine"))
    hung_results = sink.of("hung")
    assert len(hung_results) >= 3  # each run hits its deadline; the next one still starts
    assert all(r.outcome is Outcome.DOWN and "timed out" in (r.error or "") for r in hung_results)
    assert scheduler.lag.percentile(99) < 0.5


async def test_stop_cancels_checks_that_outlive_the_grace(shared: Shared, target: str) -> None:
    slow = monitor("http", id="slow", url=f"{target}/hang", interval="20s", timeout="15s")
    sink = Sink()
    scheduler = ProbeScheduler([slow], shared, sink)
    scheduler.start()
    # run it now instead of waiting for its phase
    scheduler._scheduler.modify_job("slow", next_run_time=dt.datetime.now(dt.UTC))
    await asyncio.sleep(0.5)
    assert scheduler._in_flight
    loop = asyncio.get_running_loop()
    started = loop.time()
    await scheduler.stop(grace=0.5)
    assert loop.time() - started < 3
    assert not scheduler._in_flight
    assert not scheduler.running
