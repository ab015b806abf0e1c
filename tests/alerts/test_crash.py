"""kill -9 of `prober run` around an alert: nothing lost, at most one repeat, same key."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from aiohttp import web

from tests.support.net import free_port
from tests.support.sink import Sink, running_sink


@asynccontextmanager
async def failing_target() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=500, text="broken")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


def _config(tmp_path: pathlib.Path, target: str, sink: Sink) -> pathlib.Path:
    path = tmp_path / "monitors.toml"
    path.write_text(f"""
[settings]
listen = "127.0.0.1:{free_port()}"
metrics = {{ listen = "" }}
database = "sqlite:///{tmp_path / "prober.db"}"
alert_group_wait = "2s"

[[notifiers]]
id = "hook"
type = "webhook"
url = "{sink.url}"

[[monitors]]
id = "api"
type = "http"
url = "{target}"
interval = "1s"
timeout = "500ms"
down_after = 1
notify = ["hook"]
""")
    return path


@contextmanager
def prober(config: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "prober", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _states(db: pathlib.Path) -> list[str]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return [s for (s,) in conn.execute("SELECT state FROM alert ORDER BY id")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


async def _until(predicate: object, within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


def _kill9(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


async def test_kill_between_detect_and_send_delivers_after_restart(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "prober.db"
    async with failing_target() as target, running_sink() as sink:
        config = _config(tmp_path, target, sink)
        with prober(config) as first:
            await _until(lambda: _states(db) == ["pending"])  # detected, inside the group wait
            _kill9(first)
        assert sink.received == []
        with prober(config):
            await sink.wait_for(1, within=20)
            await asyncio.sleep(3.0)  # still down: nothing more to say
        assert len(sink.received) == 1
        assert sink.received[0].json()["kind"] == "opened"
        assert _states(db) == ["sent"]


async def test_kill_between_send_and_record_repeats_once_with_the_same_key(
    tmp_path: pathlib.Path,
) -> None:
    db = tmp_path / "prober.db"
    async with failing_target() as target, running_sink() as sink:
        sink.hold = asyncio.Event()  # the receiver takes the request and never answers
        config = _config(tmp_path, target, sink)
        with prober(config) as first:
            await sink.wait_for(1, within=20)
            assert _states(db) == ["sending"]
            _kill9(first)
        sink.hold.set()
        sink.hold = None
        with prober(config):
            await sink.wait_for(2, within=20)
            await asyncio.sleep(3.0)
        assert len(sink.received) == 2
        first_try, again = sink.received
        assert again.headers["Idempotency-Key"] == first_try.headers["Idempotency-Key"]
        assert again.body == first_try.body
        assert _states(db) == ["sent"]
