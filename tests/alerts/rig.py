"""An alerting rig: the real result writer (with the outbox) and the real dispatcher on a
SQLite file, fed results by hand, sending to a loopback sink. What `prober run` wires,
without the scheduler, so a test decides every result."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import sqlite3
import time
from typing import Any

import aiohttp

from prober.alerts.dispatcher import Dispatcher
from prober.alerts.outbox import Outbox, Routes
from prober.config import Config
from prober.config.load import load_config
from prober.results import Certificate, CheckResult, Outcome
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import NetworkChange, Observation, ResultWriter


def write_config(tmp_path: pathlib.Path, body: str, **settings: str) -> Config:
    lines = [
        f'database = "sqlite:///{tmp_path / "prober.db"}"',
        'public_url = "https://status.test"',
    ]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    path = tmp_path / "monitors.toml"
    path.write_text("[settings]\n" + "\n".join(lines) + "\n" + body)
    return load_config(path)


class Rig:
    def __init__(self, config: Config, **dispatcher: Any) -> None:
        self.config = config
        self.options = {"backoff_s": 0.05, "idle_s": 0.2, **dispatcher}
        self._last: dict[str, dt.datetime] = {}

    async def __aenter__(self) -> Rig:
        config = self.config
        open_engine(config.database_path).dispose()
        self.writer = ResultWriter(
            config.database_path,
            config.settings.location,
            [TrackSpec.of(m) for m in config.monitors],
            heartbeat_every=0.2,
            linger=0.0,
            outbox=Outbox(config.settings.location, Routes.of(config)),
        )
        self.writer.start()
        self.session = aiohttp.ClientSession()
        self.dispatcher = Dispatcher(config, config.database_path, self.session, **self.options)
        self.writer.on_alert = self.dispatcher.wake
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.dispatcher.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await self.task
        await asyncio.to_thread(self.writer.close)
        await self.session.close()

    def _at(self, monitor: str) -> dt.datetime:
        at = dt.datetime.now(dt.UTC)
        last = self._last.get(monitor)
        if last is not None and at <= last:
            at = last + dt.timedelta(milliseconds=1)
        self._last[monitor] = at
        return at

    async def result(self, monitor: str, outcome: Outcome, error: str | None = None,
                     certificate: Certificate | None = None) -> None:  # fmt: skip
        result = CheckResult(outcome, 12.0, error=error, certificate=certificate)
        self.writer.submit(Observation(monitor, self._at(monitor), result))
        assert await asyncio.to_thread(self.writer.flush, 5)

    async def down(self, *monitors: str, error: str = "status: saw 503, wanted [200]") -> None:
        for monitor in monitors:
            self.writer.submit(
                Observation(monitor, self._at(monitor), CheckResult(Outcome.DOWN, 5.0, error=error))
            )
        assert await asyncio.to_thread(self.writer.flush, 5)

    async def up(self, *monitors: str) -> None:
        for monitor in monitors:
            self.writer.submit(
                Observation(monitor, self._at(monitor), CheckResult(Outcome.UP, 5.0))
            )
        assert await asyncio.to_thread(self.writer.flush, 5)

    async def network(self, failing: bool) -> None:
        self.writer.submit(NetworkChange(failing, dt.datetime.now(dt.UTC)))
        assert await asyncio.to_thread(self.writer.flush, 5)


def alert_rows(config: Config) -> list[tuple[str, str, str, int]]:
    """(kind, monitor, state, attempts) of every outbox row, in id order."""
    conn = sqlite3.connect(config.database_path)
    try:
        return conn.execute(
            "SELECT kind, monitor, state, attempts FROM alert ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


async def settle(seconds: float) -> None:
    """Let time pass so that anything wrongly sent would have arrived."""
    await asyncio.sleep(seconds)


def now_s() -> float:
    return time.time()
