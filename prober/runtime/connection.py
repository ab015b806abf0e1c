"""One connection of a public listener (prober.runtime.serving): the deadlines it must
keep, what every response it writes carries, what a request it cannot parse costs.

- Deadlines, on the loop's clock: a request's headers within `header_timeout` of the
  connection's start, or of its first byte after a kept-alive connection went idle; its
  body within `body_timeout` of the headers; a kept-alive connection waits `idle_timeout`
  for the next request. Past one, the connection is closed and counted by phase. aiohttp
  (3.14) has one keep-alive timer, 3,630 s by default, from a connection's start and the
  end of each response; it stays as a backstop behind these.
- No `Server` banner, and the listener's headers (the page's security headers) on every
  response: the app's, and those aiohttp writes itself (a request it cannot parse, a
  handler's crash), which pass neither middlewares nor `on_response_prepare`.
- A request that cannot be parsed is the client's error: 400, a counter, one log line a
  minute at most, no traceback. A handler's crash stays ours, logged with its traceback.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpProcessingError
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # seconds: connection start (or a request's first byte) to its last header
IDLE_TIMEOUT = 15.0  # seconds a kept-alive connection waits for the next request's first byte
BODY_TIMEOUT = 10.0  # seconds from the headers to the body's last byte
MAX_CONNECTIONS = 1024  # per listener, and never more than half the file limit
LOG_EVERY = 60.0  # seconds: client errors and the cap are logged at most this often
PHASES = ("headers", "body", "idle")


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int
    header_timeout: float = HEADER_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    body_timeout: float = BODY_TIMEOUT

    @classmethod
    def for_file_limit(cls, soft: int) -> Limits:
        """The default deadlines and a cap of half the descriptors, at most
        MAX_CONNECTIONS: the rest are the database's, the control channel's, the reports'
        and the interpreter's."""
        return cls(max_connections=max(1, min(MAX_CONNECTIONS, soft // 2)))


class Throttled:
    """A log line at most every `every` seconds; the lines held back are counted in the
    next one."""

    def __init__(self, logger: logging.Logger, level: int, every: float = LOG_EVERY) -> None:
        self.logger = logger
        self.level = level
        self.every = every
        self._next = 0.0
        self._held = 0

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        if self._held:
            message += f" ({self._held} more in the last {self.every:.0f} s not logged)"
        self.logger.log(self.level, message, *args)
        self._held = 0
        self._next = now + self.every


@dataclasses.dataclass(slots=True)
class Counters:
    """One listener's figures for /metrics."""

    listener: str
    limit: int
    open: int = 0
    refused: int = 0  # closed at once: every connection had a request in hand
    evicted: int = 0  # closed to make room: it had waited longest for a request
    bad_requests: int = 0
    accept_errors: int = 0
    timeouts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


class Guard:
    """One listener's limits, counters, headers, and its connections waiting for a
    request (oldest first: the first to go at the cap)."""

    def __init__(self, name: str, limits: Limits, headers: Mapping[str, str], logs: Logs) -> None:
        self.name = name
        self.limits = limits
        self.headers = dict(headers)
        self.counters = Counters(name, limits.max_connections)
        self.logs = logs
        self.waiting: dict[Handler, None] = {}  # oldest first (dicts keep insertion order)

    def admit(self, accepting: int) -> bool:
        """Room for one more connection (`accepting`: accepted, not yet connected), made if
        need be; False: turn it away."""
        c = self.counters
        if c.open + accepting < self.limits.max_connections:
            return True
        oldest = next(iter(self.waiting), None)
        if oldest is not None:
            c.evicted += 1
            oldest.evict()
        else:
            c.refused += 1
        self.logs.at_cap(
            "listener=%s at its connection limit (%d): closing connections that wait"
            " for a request, or new ones (evicted=%d refused=%d since start)",
            self.name,
            self.limits.max_connections,
            c.evicted,
            c.refused,
        )
        return oldest is not None


@dataclasses.dataclass(slots=True)
class Logs:
    """Shared by a process's listeners: a flood on one is one line a minute in all."""

    bad_request: Throttled = dataclasses.field(default_factory=lambda: Throttled(log, logging.INFO))
    at_cap: Throttled = dataclasses.field(default_factory=lambda: Throttled(log, logging.WARNING))


class Handler(RequestHandler):
    """aiohttp's connection protocol, with the deadlines, the cap and the client errors."""

    def __init__(self, manager: web.Server, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self._counted = False  # in guard.counters.open
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._counted = True
        self.guard.counters.open += 1
        super().connection_made(transport)
        self._wait("headers", self.guard.limits.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self.guard.waiting.pop(self, None)
        if self._counted:
            self._counted = False
            self.guard.counters.open -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle" and data:  # the next request began: its headers are due
            self._wait("headers", self.guard.limits.header_timeout)
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:  # a request's headers are in
            self._in_hand()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        answered = await super().finish_response(request, resp, start_time)
        if not self._messages and self.transport is not None:  # none pipelined behind it
            self._body = None
            self._wait("idle", self.guard.limits.idle_timeout)
        return answered

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 and not isinstance(exc, HttpProcessingError | RequestPayloadError):
            return super().handle_error(request, status, exc, message)  # ours: its traceback
        self.guard.counters.bad_requests += 1
        reason = " ".join(str(message or exc or "").split())[:200]
        self.guard.logs.bad_request(
            'bad request peer=%s error="%s"',
            request.remote,
            reason.encode("ascii", "backslashreplace").decode(),
        )
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent; closing")
        status = status if 400 <= status < 500 else 400
        phrase = HTTPStatus(status).phrase
        resp = web.Response(status=status, text=f"{status} {phrase}\n")
        resp.force_close()
        return resp

    def evict(self) -> None:
        """Closed to make room for a newer connection (see Guard.admit)."""
        self.guard.waiting.pop(self, None)
        if self._counted:
            self._counted = False
            self.guard.counters.open -= 1
        self._disarm()
        self.force_close()

    def _wait(self, phase: str, delay: float) -> None:
        """No request in hand: `phase` ends in `delay` seconds."""
        self._arm(phase, delay)
        self.guard.waiting.pop(self, None)
        self.guard.waiting[self] = None  # newest last

    def _in_hand(self) -> None:
        self.guard.waiting.pop(self, None)
        payload = self._messages[-1][1]
        if payload.is_eof():
            self._disarm()
        else:
            self._body = payload
            self._arm("body", self.guard.limits.body_timeout)

    def _arm(self, phase: str, delay: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self._loop.call_later(delay, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._phase = None

    def _expire(self) -> None:
        phase = self._phase
        self._deadline = None
        if phase is None or (phase == "body" and (self._body is None or self._body.is_eof())):
            return
        self.guard.counters.timeouts[phase] += 1
        self.guard.waiting.pop(self, None)
        self.force_close()


class Request(web.Request):
    """Every response of the listener passes here just before its headers are written."""

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        await super()._prepare_hook(response)
        headers = response.headers
        headers.popall(hdrs.SERVER, None)
        protocol = self.protocol
        if isinstance(protocol, Handler):
            for name, value in protocol.guard.headers.items():
                headers.setdefault(name, value)
