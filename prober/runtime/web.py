"""The web process: status page, APIs, feeds, badges, /healthz, /push, the agents' API
(prober.agent.gate), /metrics (on a listener of its own) and the monthly report files,
in a process of their own (`python -m prober.runtime.web`).

`prober run` starts it (prober.runtime.supervisor) with the listening sockets already
bound, and writes a pickled `Launch` to its stdin; stdin stays open for the life of the
parent, so end-of-file means the parent is gone and this process leaves too. Nothing done
here (a snapshot build, a visitor flood, a report) shares an interpreter or a GIL with the
checks. It runs at a lower CPU priority than the probing process, reads SQLite only, and
reaches the probing process through prober.runtime.control.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pathlib
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping

import aiohttp
import prometheus_client
from aiohttp import web
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from prober import logs
from prober.agent.gate import AgentGate
from prober.logs import LogFormat
from prober.push import BURST, REFILL_PER_S, digest, known_action
from prober.redact import Redactor
from prober.report import monthly
from prober.runtime import serving
from prober.runtime.connection import Limits
from prober.runtime.control import Client, WebState
from statuspage import subscribe
from statuspage.app import SECURITY_HEADERS, create_app, create_metrics_app
from statuspage.publisher import Publisher

log = logging.getLogger(__name__)

NICENESS = 10  # visitors wait for CPU before a check does
POLL_EVERY = 1.0  # seconds: the probing process's health and metrics are asked at most this often
SILENT_AFTER = 5.0  # seconds without an answer before /healthz says the prober is gone
MONTHLY_EVERY = 3600.0
SCRAPERS = 32  # connections at once on the metrics listener


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    state: WebState
    listen_fd: int
    control: pathlib.Path
    log_level: int
    log_format: LogFormat
    metrics_fd: int | None = None  # settings.metrics.listen, bound by the parent; None: off


class Remote:
    """The probing process's health report and metrics, asked for at most once a second
    (callers meanwhile share the answer), so a flood of /healthz or /metrics requests
    costs the probing loop one request a second."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._health: dict[str, object] = {}
        self._metrics = b""
        self._answered = time.monotonic()
        self._asked = -POLL_EVERY
        self._asking: asyncio.Future[None] | None = None

    async def refresh(self) -> None:
        """A fresh answer unless the last one is under a second old."""
        if time.monotonic() - self._asked < POLL_EVERY:
            return
        if self._asking is None:  # one question at a time; callers meanwhile share it
            self._asking = asyncio.ensure_future(self._ask())
        asking = self._asking
        try:
            await asyncio.shield(asking)
        finally:
            if self._asking is asking and asking.done():
                self._asking = None

    async def _ask(self) -> None:
        self._asked = time.monotonic()
        try:
            health, metrics = await asyncio.gather(self._client.health(), self._client.metrics())
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.debug("probing process did not answer: %s", exc)
            return
        self._health, self._metrics, self._answered = health, metrics, time.monotonic()

    async def report(self) -> dict[str, object]:
        await self.refresh()
        silent = time.monotonic() - self._answered
        if silent > SILENT_AFTER or not self._health:
            return {
                "status": "unhealthy",
                "problems": [f"the probing process has not answered for {silent:.0f} s"],
            }
        return self._health

    def collector(self) -> Collector:
        remote = self

        class Families(Collector):
            def collect(self) -> Iterator[Metric]:
                yield from text_string_to_metric_families(remote._metrics.decode())

        return Families()


class PushGate:
    """Heartbeats checked here before they cost the probing process anything: unknown
    tokens and malformed actions are 404, a token over its rate 429 (the same bucket as the
    probing process's, which stays the authority), the rest forwarded."""

    def __init__(self, client: Client, digests: frozenset[bytes]) -> None:
        self._client = client
        self.digests = digests
        self._buckets: dict[bytes, tuple[float, float]] = {}  # digest -> (tokens, at)

    async def receive(self, token: str, action: str, query: Mapping[str, str]) -> tuple[int, str]:
        key = digest(token)
        if key not in self.digests:
            return 404, "not found\n"
        if not known_action(action):  # exit codes: 1 to 3 ASCII digits
            return 404, "not found\n"
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (float(BURST), now))
        tokens = min(float(BURST), tokens + (now - at) * REFILL_PER_S)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return 429, "too many pings; slow down\n"
        self._buckets[key] = (tokens - 1, now)
        try:
            return await self._client.push(token, action, query)
        except (aiohttp.ClientError, OSError, TimeoutError):
            log.warning("push: the probing process did not take a heartbeat")
            return 503, "not recorded; try again\n"


async def serve(launch: Launch, limits: Limits) -> None:
    loop = asyncio.get_running_loop()
    listeners = serving.Listeners(limits)  # deadlines and a cap on connections, each
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    client = Client(launch.control)
    state = launch.state
    remote = Remote(client)
    gate = PushGate(client, state.push_digests)
    publisher = Publisher(state.config)
    # a reload never changes [[agents]] (prober.reload refuses it): None stays None
    agents = AgentGate(client.agent, state.config) if state.config.agents else None
    app = create_app(
        state.config, remote, publisher=publisher, push_receiver=gate.receive, agents=agents
    )
    signups = subscribe.Gate(client.subscriptions)  # 404s while settings.subscriptions is unset
    app[subscribe.GATE] = signups
    page = socket.socket(fileno=launch.listen_fd)
    # builds a small page before it listens: see statuspage.app
    runner = await listeners.start(app, "page", page, headers=SECURITY_HEADERS)
    scrapes: web.AppRunner | None = None
    if launch.metrics_fd is not None:  # the operators' listener: /metrics, nothing else
        registry = prometheus_client.CollectorRegistry()
        registry.register(remote.collector())  # the probing process's families
        registry.register(listeners)  # connections, timeouts and bad requests of both
        scrapes = await listeners.start(
            create_metrics_app(publisher, registry, prepare=remote.refresh),
            "metrics",
            socket.socket(fileno=launch.metrics_fd),
            headers=SECURITY_HEADERS,
            max_connections=min(SCRAPERS, limits.max_connections),
        )

    async def reload() -> None:
        try:
            new = await client.state()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.error("status page: could not read the reloaded config: %s", exc)
            return
        gate.digests = new.push_digests
        publisher.reconfigure(new.config)
        if agents is not None:
            agents.reconfigure(new.config)
        log.info("status page: config reloaded")

    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))
    tasks = [asyncio.create_task(_monthly_reports(publisher))]
    await client.ready(os.getpid())
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        if scrapes is not None:  # first: it reads the publisher the page's app closes
            await scrapes.cleanup()
        await runner.cleanup()
        await signups.close()  # sign-ups answered but not yet forwarded
        await client.close()


async def _monthly_reports(publisher: Publisher) -> None:
    """Last month's report under reports/ beside the database, once the month is over:
    checked at start and every hour, so a prober down on the 1st catches up. Here, not in
    the probing process: a month of 10,000 monitors is seconds of CPU."""
    await asyncio.sleep(30.0)  # not in the start-up rush
    while True:
        try:
            written = await asyncio.to_thread(monthly.write_monthly, publisher.config)
        except Exception:  # a report must never take the page down
            log.exception("writing the monthly report failed; retrying in an hour")
        else:
            for path in written:
                log.info("monthly report written path=%s", path)
        await asyncio.sleep(MONTHLY_EVERY)


def _leave_with_parent() -> None:
    """stdin is a pipe the parent holds open: end-of-file means it died (even by kill -9)."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):  # the raw fd: a daemon thread must hold no io lock
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    launch = pickle.load(sys.stdin.buffer)  # noqa: S301 (written by our parent)
    assert isinstance(launch, Launch)
    config = launch.state.config
    logs.setup(Redactor(config.secret_values()), launch.log_level, log_format=launch.log_format)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    _leave_with_parent()
    limits = Limits.for_file_limit(serving.raise_file_limit())
    asyncio.run(serve(launch, limits))
    return 0


if __name__ == "__main__":  # run as prober.runtime.web, so the pickled Launch resolves
    from prober.runtime import web as module

    sys.exit(module.main())
