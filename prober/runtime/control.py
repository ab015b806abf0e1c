"""The private channel between the probing process and its web process.

HTTP over a Unix socket in a directory only our user can enter (0700), so nothing on the
network can reach it and no token is needed. The probing process serves it; the web
process asks:

| route | answers |
|---|---|
| `GET /state` | the running config and the push token digests (pickled `WebState`) |
| `POST /push` | a heartbeat the web process let through -> `{status, text}` |
| `GET /health` | the probing process's /healthz report (JSON) |
| `GET /metrics` | the probing process's own Prometheus families (text format) |
| `POST /ready` | the web process is serving |
| `POST /agent/results` | an agent's request let through (pickled `agent.hub.Arrival`) -> answer |
| `POST /subscriptions` | a visitor's sign-up, confirm or unsubscribe (JSON) -> `{answer}` |

The web process pre-checks pushes (unknown tokens, malformed actions, floods) so only
plausible heartbeats cost the probing loop anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from prober.agent.hub import Answer, Arrival
from prober.agent.wire import MAX_BODY_BYTES
from prober.config import Config

HOST = "http://prober"  # any name: the Unix connector ignores it
TIMEOUT = aiohttp.ClientTimeout(total=5.0)


@dataclasses.dataclass(frozen=True, slots=True)
class WebState:
    """What the web process needs from the probing one; sent again after a reload."""

    config: Config
    push_digests: frozenset[bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class Handlers:
    """The probing process's side: plain callables, read when asked."""

    state: Callable[[], WebState]
    push: Callable[[str, str, Mapping[str, str]], tuple[int, str]]
    health: Callable[[], dict[str, object]]
    metrics: Callable[[], bytes]
    ready: Callable[[int], None]  # the web process's pid
    # prober.agent.hub.AgentHub.receive (called in a worker thread); None: no agents (503)
    agent: Callable[[Arrival], Answer] | None = None
    # prober.alerts.subscribers.Subscribers.handle (called in a worker thread; it writes)
    subscriptions: Callable[[Mapping[str, str]], str] | None = None


def server(handlers: Handlers) -> web.Application:
    async def state(_: web.Request) -> web.Response:
        return web.Response(body=pickle.dumps(handlers.state()))

    async def push(request: web.Request) -> web.Response:
        asked = await request.json()
        status, text = handlers.push(
            str(asked["token"]), str(asked["action"]), dict(asked["query"])
        )
        return web.json_response({"status": status, "text": text})

    async def health(_: web.Request) -> web.Response:
        return web.json_response(handlers.health())

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=handlers.metrics())

    async def ready(request: web.Request) -> web.Response:
        handlers.ready(int((await request.json())["pid"]))
        return web.Response(text="ok")

    def receive(body: bytes) -> Answer:
        arrival = pickle.loads(body)  # noqa: S301 (our web process, 0700 socket)
        assert isinstance(arrival, Arrival)
        if handlers.agent is None:
            return Answer(503, {"error": "this hub takes no agents"})
        return handlers.agent(arrival)

    async def agent(request: web.Request) -> web.Response:
        # in a thread: a batch of 2,000 results costs ~0.1 s of CPU, the loop keeps its turns
        answer = await asyncio.to_thread(receive, await request.read())
        return web.json_response({"status": answer.status, "body": answer.body})

    async def subscriptions(request: web.Request) -> web.Response:
        asked = await request.json()
        if handlers.subscriptions is None or not isinstance(asked, dict):
            return web.json_response({"answer": "off"})
        wanted = {str(k): str(v) for k, v in asked.items()}
        answer = await asyncio.to_thread(handlers.subscriptions, wanted)
        return web.json_response({"answer": answer})

    # a pickled batch is about the size of its JSON (wire.MAX_BODY_BYTES); the rest is small
    app = web.Application(client_max_size=2 * MAX_BODY_BYTES)
    app.router.add_get("/state", state)
    app.router.add_post("/push", push)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/ready", ready)
    app.router.add_post("/agent/results", agent)
    app.router.add_post("/subscriptions", subscriptions)
    return app


class Client:
    """The web process's side."""

    def __init__(self, path: pathlib.Path) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(path), limit=32), timeout=TIMEOUT
        )

    async def close(self) -> None:
        await self._session.close()

    async def state(self) -> WebState:
        found = pickle.loads(await self._get("/state"))  # noqa: S301 (our parent, 0700 socket)
        assert isinstance(found, WebState)
        return found

    async def push(self, token: str, action: str, query: Mapping[str, str]) -> tuple[int, str]:
        body = {"token": token, "action": action, "query": dict(query)}
        async with self._session.post(HOST + "/push", json=body) as response:
            response.raise_for_status()
            answer = await response.json()
        return int(answer["status"]), str(answer["text"])

    async def health(self) -> dict[str, Any]:
        found = json.loads(await self._get("/health"))
        assert isinstance(found, dict)
        return found

    async def metrics(self) -> bytes:
        return await self._get("/metrics")

    async def agent(self, arrival: Arrival) -> tuple[int, dict[str, object]]:
        async with self._session.post(
            HOST + "/agent/results", data=pickle.dumps(arrival)
        ) as response:
            response.raise_for_status()
            answer = await response.json()
        return int(answer["status"]), dict(answer["body"])

    async def subscriptions(self, asked: Mapping[str, str]) -> str:
        async with self._session.post(HOST + "/subscriptions", json=dict(asked)) as response:
            response.raise_for_status()
            answer = await response.json()
        return str(answer["answer"])

    async def ready(self, pid: int) -> None:
        async with self._session.post(HOST + "/ready", json={"pid": pid}) as response:
            response.raise_for_status()

    async def _get(self, path: str) -> bytes:
        async with self._session.get(HOST + path) as response:
            response.raise_for_status()
            return await response.read()
