"""Watching the watcher: the heartbeat against a loopback sink and a real result writer,
event-loop lag, and /healthz turning 503 for each problem."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import pathlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import prometheus_client
import pytest
from pytest_aiohttp import AiohttpClient

from prober.config.load import load_config
from prober.results import CheckResult, Outcome
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from prober.watchdog import HeartbeatCollector, HeartbeatStats, LoopLag, heartbeat
from statuspage.app import create_app
from statuspage.health import Health
from tests.support.net import free_port
from tests.support.sink import running_sink

SECRET = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
READ_ONLY = "CREATE TRIGGER ro BEFORE INSERT ON result BEGIN SELECT RAISE(ABORT, 'read-only'); END;"


def _sql(path: pathlib.Path, statement: str) -> None:
    """On a connection of its own, as another process would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(statement)
    finally:
        conn.close()


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _beating(
    url: str, health: Health, stats: HeartbeatStats, every: float = 0.2
) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(
            heartbeat(url, session, health, every=every, ping_timeout=2.0, stats=stats)
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_pings_stop_while_the_database_refuses_writes_and_resume_after(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="prober.watchdog")
    path = tmp_path / "prober.db"
    open_engine(path).dispose()
    writer = ResultWriter(path, "here", [TrackSpec.plain("api")], heartbeat_every=0.2, linger=0)
    writer.start()
    health = Health(scheduler_running=lambda: True, database_writable=writer.healthy)
    stats = HeartbeatStats()
    try:
        async with (
            running_sink() as sink,
            _beating(f"http://127.0.0.1:{sink.port}/ping/{SECRET}", health, stats),
        ):
            pings = await sink.wait_for(2)
            assert {p.path for p in pings} == {f"/ping/{SECRET}"}
            assert pings[0].headers["User-Agent"].startswith("prober/")

            _sql(path, READ_ONLY)
            result = CheckResult(Outcome.UP, 12.0)
            writer.submit(Observation("api", dt.datetime.now(dt.UTC), result))
            await _until(lambda: not writer.healthy())
            await asyncio.sleep(0.3)  # a ping already on its way may still land
            stopped_at = len(sink.received)
            await asyncio.sleep(1.0)
            assert len(sink.received) == stopped_at
            assert stats.withheld >= 3
            withheld = [r.getMessage() for r in caplog.records if "withheld" in r.message]
            assert withheld == ["heartbeat withheld: database not taking writes"]

            _sql(path, "DROP TRIGGER ro")
            await sink.wait_for(stopped_at + 2, within=15)  # the writer retries, backing off
            assert writer.healthy() and writer.committed == 1
            assert "heartbeat resumed: prober healthy again" in caplog.text
    finally:
        await asyncio.to_thread(writer.close)
    assert (stats.failed, stats.sent) == (0, len(sink.received))
    registry = prometheus_client.CollectorRegistry()
    registry.register(HeartbeatCollector(stats))
    text = prometheus_client.generate_latest(registry).decode()
    assert f"prober_heartbeat_sent_total {float(stats.sent)}" in text
    assert f"prober_heartbeat_withheld_total {float(stats.withheld)}" in text


async def test_a_failed_ping_is_logged_once_and_never_with_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://user:pw-{SECRET}@127.0.0.1:{free_port()}/ping/{SECRET}?token={SECRET}"
    stats = HeartbeatStats()
    async with _beating(url, Health(lambda: True, lambda: True), stats, every=0.05):
        await _until(lambda: stats.failed >= 4)
    failed = [r.getMessage() for r in caplog.records if "heartbeat" in r.message]
    assert len(failed) == 1
    assert failed[0].startswith("heartbeat ping failed: ClientConnectorError: Cannot connect")
    assert SECRET not in caplog.text
    assert "/ping" not in caplog.text


async def test_a_non_2xx_answer_fails_and_recovery_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="prober.watchdog")
    stats = HeartbeatStats()
    async with running_sink() as sink:
        sink.answers = [(500, {}), (404, {})]
        async with _beating(sink.url, Health(lambda: True, lambda: True), stats, every=0.05):
            await sink.wait_for(3)
            await _until(lambda: "recovered" in caplog.text)
    assert [r.getMessage() for r in caplog.records] == [
        "heartbeat ping failed: status 500",
        "heartbeat ping recovered",
    ]
    assert stats.failed == 2


async def test_no_url_means_no_heartbeat() -> None:
    async with aiohttp.ClientSession() as session:
        health = Health(lambda: True, lambda: True)
        async with asyncio.timeout(1):
            await heartbeat("", session, health)


async def test_loop_lag_sees_a_stall() -> None:
    lag = LoopLag(every=0.05)  # a stall shows as between (stall - every) and stall
    task = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0.2)
        assert lag.worst() < 0.5
        time.sleep(0.6)  # the event loop blocked, as by a slow synchronous call
        assert lag.worst() >= 0.5  # seen before the lag task has even woken
        await asyncio.sleep(0.3)
        assert lag.worst() >= 0.5
        assert lag.worst(window_s=0.1) < 0.5  # and it ages out of a window
        assert Health(lambda: True, lambda: True, loop_lag=lag.worst).problems() == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


NOW = 1_800_000_000.0


@dataclasses.dataclass
class Readings:
    """What the live objects would say; one healthy set, changed one figure at a time."""

    scheduler: bool = True
    lag: float = 0.0123
    last: float | None = NOW - 30
    writer: int = 7
    alerts: int = 2


async def test_healthz_is_json_and_turns_503_for_each_problem(
    tmp_path: pathlib.Path, aiohttp_client: AiohttpClient
) -> None:
    path = tmp_path / "monitors.toml"
    path.write_text(f'[settings]\ndatabase = "sqlite:///{tmp_path / "p.db"}"\n')
    config = load_config(path)
    open_engine(config.database_path).dispose()
    now = [Readings()]
    health = Health(
        scheduler_running=lambda: now[0].scheduler,
        database_writable=lambda: True,
        loop_lag=lambda: now[0].lag,
        last_result_at=lambda: now[0].last,
        writer_queue=lambda: now[0].writer,
        alert_queue=lambda: now[0].alerts,
        max_result_age=180.0,
        clock=lambda: NOW,
        started_at=NOW - 600,
    )
    client = await aiohttp_client(create_app(config, health))

    response = await client.get("/healthz")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content_type == "application/json"
    assert await response.json() == {
        "status": "ok",
        "problems": [],
        "scheduler_running": True,
        "database_writable": True,
        "loop_lag_ms": 12.3,
        "last_result_age_s": 30.0,
        "writer_queue": 7,
        "alert_queue": 2,
        "overloaded_checks": 0,
    }

    cases: list[tuple[Readings, str]] = [
        (Readings(lag=2.5), "event loop stalled 2.5 s in the last minute (limit 2 s)"),
        (Readings(last=NOW - 181), "newest result is 181 s old (limit 180 s)"),
        (Readings(last=None), "no result yet after 600 s (limit 180 s)"),
        (Readings(scheduler=False), "scheduler not running"),
        (Readings(writer=50_001), "50001 results waiting for the database (limit 50000)"),
    ]
    for readings, problem in cases:
        now[0] = readings
        response = await client.get("/healthz")
        body = await response.json()
        assert (response.status, body["status"], body["problems"]) == (
            503,
            "unhealthy",
            [problem],
        ), readings
        assert response.headers["Cache-Control"] == "no-store"
    assert body["writer_queue"] == 50_001  # the last case: every figure is in the body

    now[0] = Readings(alerts=10_000)  # a backlog of alerts is reported, not a problem
    response = await client.get("/healthz")
    assert (response.status, (await response.json())["alert_queue"]) == (200, 10_000)
