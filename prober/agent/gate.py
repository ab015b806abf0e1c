"""The agents' API on the hub's public listener, in the web process:

- `GET /api/agent/v1/monitors`: the agent's assignment (prober.agent.assign), built
  from this process's config once per config and location, with an ETag; 304 on a
  matching `If-None-Match`.
- `POST /api/agent/v1/results`: a batch (prober.agent.wire), gzip allowed, bounded by
  `wire.MAX_BODY_BYTES` before and after decompression, parsed here (off the loop when
  large) and handed to the probing process (prober.agent.hub.AgentHub), which answers.

Both need `Authorization: Bearer <token>` of an `[[agents]]` entry; an unknown token is
401 here and costs the probing process nothing (as prober.runtime.web.PushGate does for
pushes), logged one line a minute at most, never with the token. Every answer is JSON,
`Cache-Control: no-store`: an assignment carries the monitors' secrets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from prober.agent import wire
from prober.agent.assign import Skipped, assigned, encode_assignment, etag
from prober.agent.hub import AgentTokens, Arrival
from prober.config import Config
from prober.runtime.connection import Throttled

log = logging.getLogger(__name__)

PARSE_INLINE = 64 * 1024  # bytes: a larger batch is parsed in a worker thread
CONTACT_EVERY = 10.0  # seconds: a GET tells the probing process of contact at most this often
CHUNK = 64 * 1024

# The probing process's answer to an arrival: (status, JSON body).
Forward = Callable[[Arrival], Awaitable[tuple[int, dict[str, object]]]]


@dataclasses.dataclass(frozen=True, slots=True)
class _Assignment:
    body: bytes
    etag: str


class AgentGate:
    def __init__(self, forward: Forward, config: Config) -> None:
        self._forward = forward
        self._unknown = Throttled(log, logging.WARNING)
        self._malformed = Throttled(log, logging.WARNING)
        self._told: dict[str, float] = {}  # location -> monotonic time contact was forwarded
        self._pending: set[asyncio.Task[None]] = set()
        self._posting: set[str] = set()  # locations with a batch in hand
        self._skips_logged: set[tuple[str, str, str]] = set()
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self._config = config
        self._tokens = AgentTokens(config.agents)
        self._assignments: dict[str, _Assignment] = {}

    async def monitors(self, request: web.Request) -> web.Response:
        location = self._who(request)
        if location is None:
            return _unauthorized()
        self._contact(location)
        found = self._assignments.get(location)
        if found is None:
            config = self._config
            body, skipped = await asyncio.to_thread(_build, config, location)
            found = _Assignment(body, etag(body))
            if config is self._config:  # not replaced by a reload meanwhile
                self._assignments[location] = found
            self._log_skipped(location, skipped)
        headers = {"ETag": found.etag, "Cache-Control": "no-store"}
        if found.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=found.body, content_type="application/json", headers=headers)

    async def results(self, request: web.Request) -> web.Response:
        arrived_ms = time.time_ns() // 1_000_000  # before the body: transit counts
        location = self._who(request)
        if location is None:
            return _unauthorized()
        if location in self._posting:  # an agent sends one batch at a time
            return _json(429, {"error": "a batch from this agent is being taken; retry after"})
        self._posting.add(location)
        try:
            return await self._results(request, location, arrived_ms)
        finally:
            self._posting.discard(location)

    async def _results(self, request: web.Request, location: str, arrived_ms: int) -> web.Response:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            return _json(415, {"error": f"Content-Encoding {encoding!r}: send identity or gzip"})
        declared = request.content_length
        if declared is not None and declared > wire.MAX_BODY_BYTES:
            return _too_large()
        try:
            body = await _read(request.content, wire.MAX_BODY_BYTES)
        except (RequestPayloadError, HttpProcessingError):  # aiohttp could not inflate it
            return self._refuse(location, arrived_ms, "body is not valid gzip")
        if body is None:
            return _too_large()
        try:
            if len(body) > PARSE_INLINE:
                batch = await asyncio.to_thread(wire.parse, body)
            else:
                batch = wire.parse(body)
        except wire.WireError as exc:
            return self._refuse(location, arrived_ms, str(exc))
        try:
            status, answer = await self._forward(Arrival(location, arrived_ms, batch))
        except (aiohttp.ClientError, OSError, TimeoutError):
            log.warning("agent location=%s: the probing process did not take a batch", location)
            return _json(503, {"error": "the hub cannot take results now; retry later"})
        return _json(status, answer)

    def _who(self, request: web.Request) -> str | None:
        location = self._tokens.location(request.headers.get("Authorization", ""))
        if location is None:
            self._unknown("agent API: refused an unknown token from %s", request.remote)
        return location

    def _refuse(self, location: str, arrived_ms: int, error: str) -> web.Response:
        self._malformed("agent location=%s: refused a malformed batch: %s", location, error)
        self._tell(Arrival(location, arrived_ms, malformed=error))
        return _json(400, {"error": error})

    def _contact(self, location: str) -> None:
        now = time.monotonic()
        if now - self._told.get(location, -CONTACT_EVERY) >= CONTACT_EVERY:
            self._told[location] = now
            self._tell(Arrival(location, time.time_ns() // 1_000_000))

    def _tell(self, arrival: Arrival) -> None:
        """Forward in the background; the answer does not matter."""

        async def send() -> None:
            try:
                await self._forward(arrival)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.debug("agent contact not forwarded: %s", exc)

        task = asyncio.ensure_future(send())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _log_skipped(self, location: str, skipped: list[Skipped]) -> None:
        """Once per monitor and reason (the hub's operator can act on it; the agent cannot)."""
        for item in skipped:
            key = (location, item.monitor, item.why)
            if key not in self._skips_logged:
                self._skips_logged.add(key)
                log.warning("agent location=%s: monitor=%s not sent: %s", location, key[1], key[2])


def _build(config: Config, location: str) -> tuple[bytes, list[Skipped]]:
    return encode_assignment(config, location), assigned(config, location)[1]


async def _read(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The body, or None past `limit` bytes (decompressed: aiohttp inflates as it reads,
    a bounded chunk at a time)."""
    chunks, size = [], 0
    async for chunk in stream.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json(status: int, body: dict[str, object]) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _unauthorized() -> web.Response:
    response = _json(401, {"error": "unknown agent token"})
    response.headers["WWW-Authenticate"] = 'Bearer realm="prober agents"'
    return response


def _too_large() -> web.Response:
    return _json(413, {"error": f"body over {wire.MAX_BODY_BYTES} bytes: send fewer results"})
