"""The web process's listeners: aiohttp's server with the limits the open internet needs
(`Listeners.start` instead of `web.AppRunner` + `web.SockSite`). What each connection must
keep (deadlines, headers, client errors) is prober.runtime.connection.

- A cap on open connections per listener, well below the file limit (`Limits.for_file_limit`), kept
  where connections are accepted (`Site`, not asyncio's accept loop: that one accepts up
  to 128 at once before reading any, and closing one after the fact has already cost a
  descriptor). At the cap, the connection that has waited longest for a request is closed
  to make room: a slow or idle client, never one being answered; when none is waiting,
  the newcomer is closed as soon as accepted. Both are counted. A visitor's request is
  read within three turns of the loop after its accept; with `ACCEPT_BATCH` accepted a
  turn, a flood needs `max_connections / ACCEPT_BATCH` turns to push it out first.
- accept() failing for want of descriptors is counted, logged once a minute and retried
  a second later; `AcceptErrors` does the same for asyncio's own accept loop (the
  probing process's control socket), which logs a traceback for every try.
- The soft file limit is raised to the hard one at start (`raise_file_limit`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from yarl import URL

from prober.runtime.connection import PHASES, Guard, Handler, Limits, Logs, Request, Throttled

log = logging.getLogger(__name__)

ACCEPT_BATCH = 16  # connections accepted per turn of the loop
ACCEPT_RETRY = 1.0  # seconds: accept() failed for want of descriptors or memory
FILE_LIMIT = 65536  # the soft file limit is raised to the hard one, up to this


def raise_file_limit(cap: int = FILE_LIMIT) -> int:
    """The soft RLIMIT_NOFILE raised to the hard one (at most `cap`) where allowed; returns
    the soft limit in force, logged once at debug."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.debug("could not raise the file limit from %d to %d: %s", soft, want, exc)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    log.debug("file limit soft=%d hard=%d", soft, hard)
    return soft


class AcceptErrors:
    """asyncio reports `accept()` failing for want of descriptors (EMFILE, ENFILE, ENOBUFS,
    ENOMEM) to the loop's exception handler, with a traceback, each second while it lasts
    (it retries every second). Here: counted, and one line a minute."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self) -> None:
        self.count = 0
        self._log = Throttled(log, logging.WARNING)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("message") != self.MESSAGE:
                if previous is None:
                    loop.default_exception_handler(context)
                else:
                    previous(loop, context)
                return
            self.count += 1
            exc = context.get("exception")
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self._log("cannot accept connections: %s; retrying every second", reason)

        loop.set_exception_handler(handle)


class Server(web.Server):
    def __init__(self, base: web.Server, app: web.Application, guard: Guard) -> None:
        def request(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            return app._make_request(message, payload, protocol, writer, task, _cls=Request)

        super().__init__(
            base.request_handler,
            request_factory=request,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.guard = guard

    def __call__(self) -> Handler:
        return Handler(self, guard=self.guard, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    def __init__(self, app: web.Application, guard: Guard) -> None:
        limits = guard.limits
        super().__init__(
            app,
            access_log=None,
            handler_cancellation=True,  # a visitor gone: stop working for them
            keepalive_timeout=limits.idle_timeout + limits.header_timeout + limits.body_timeout,
        )
        self.guard = guard

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()  # the app started and frozen, as aiohttp does
        return Server(base, self.app, self.guard)


class Site(web.BaseSite):
    """A listening socket served by a Runner, accepting only while its Guard has room."""

    def __init__(self, runner: Runner, sock: socket.socket, accept_errors: Throttled) -> None:
        super().__init__(runner)
        self._guard = runner.guard
        self._accept_errors = accept_errors  # shared by a process's listeners
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._connecting: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return str(URL.build(scheme="http", host=host, port=port))

    async def start(self) -> None:
        await super().start()
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._accept)

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        await super().stop()

    def _accept(self) -> None:
        server = self._runner.server
        assert server is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM: try again later
                self._guard.counters.accept_errors += 1
                self._accept_errors(
                    "listener=%s cannot accept connections: %s; retrying every second",
                    self._guard.name,
                    exc.strerror or exc,
                )
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(ACCEPT_RETRY, self._resume)
                return
            if not self._guard.admit(len(self._connecting)):
                conn.close()
                continue
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(server, conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    def _resume(self) -> None:
        self._retry = None
        self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _connect(self, server: web.Server, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(server, conn)
        except OSError as exc:  # gone before it was connected
            log.debug("connection lost while connecting: %s", exc)
            conn.close()


class Listeners(Collector):
    """A process's listeners (a Runner and a Site each) and their figures for /metrics."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.logs = Logs()  # a flood on one listener is one line a minute in all
        self.accept_errors = Throttled(log, logging.WARNING)
        self.guards: list[Guard] = []

    async def start(
        self,
        app: web.Application,
        name: str,
        sock: socket.socket,
        headers: Mapping[str, str] | None = None,
        max_connections: int | None = None,
    ) -> Runner:
        """`app` served on `sock` (bound and listening); `runner.cleanup()` stops it."""
        limits = self.limits
        if max_connections is not None:
            limits = dataclasses.replace(limits, max_connections=max_connections)
        guard = Guard(name, limits, headers or {}, self.logs)
        self.guards.append(guard)
        runner = Runner(app, guard)
        await runner.setup()
        await Site(runner, sock, self.accept_errors).start()
        return runner

    def collect(self) -> Iterator[Metric]:
        labels = ["listener"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "open": GaugeMetricFamily(
                "prober_http_connections_open", "Open connections", labels=labels
            ),
            "limit": GaugeMetricFamily(
                "prober_http_connections_max", "The cap on open connections", labels=labels
            ),
            "refused": CounterMetricFamily(
                "prober_http_connections_refused",
                "Connections closed at once: at the cap, every connection had a request",
                labels=labels,
            ),
            "evicted": CounterMetricFamily(
                "prober_http_connections_evicted",
                "Connections waiting for a request, closed at the cap to make room",
                labels=labels,
            ),
            "bad_requests": CounterMetricFamily(
                "prober_http_bad_requests",
                "Requests that could not be parsed (answered 400, connection closed)",
                labels=labels,
            ),
            "accept_errors": CounterMetricFamily(
                "prober_http_accept_errors",
                "accept() failures for want of descriptors or memory (retried a second later)",
                labels=labels,
            ),
        }
        timeouts = CounterMetricFamily(
            "prober_http_timeouts",
            "Connections closed past a deadline: headers, body, or idle between requests",
            labels=["listener", "phase"],
        )
        for guard in self.guards:
            c = guard.counters
            for field, family in families.items():
                family.add_metric([c.listener], getattr(c, field))
            for phase in PHASES:
                timeouts.add_metric([c.listener, phase], c.timeouts[phase])
        yield from families.values()
        yield timeouts
