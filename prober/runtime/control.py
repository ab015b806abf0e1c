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

The web process pre-checks pushes (unknown tokens, malformed actions, floods) so only
plausible heartbeats cost the probing loop anything.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

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

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/state", state)
    app.router.add_post("/push", push)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/ready", ready)
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

    async def ready(self, pid: int) -> None:
        async with self._session.post(HOST + "/ready", json={"pid": pid}) as response:
            response.raise_for_status()

    async def _get(self, path: str) -> bytes:
        async with self._session.get(HOST + path) as response:
            response.raise_for_status()
            return await response.read()
