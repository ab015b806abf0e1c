"""A webhook sink on loopback: records every request and answers from a script.

`answers` is consumed one per request ((status, headers)); when it runs out the sink
answers 200. `hold` makes every request wait (a receiver that hangs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # loop.time()

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


class Sink:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.hold: asyncio.Event | None = None
        self.arrived = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            Received(request.path, dict(request.headers), body, asyncio.get_running_loop().time())
        )
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


@asynccontextmanager
async def running_sink(port: int = 0) -> AsyncIterator[Sink]:
    sink = Sink()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", sink._handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert server is not None
    sink.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield sink
    finally:
        if sink.hold is not None:
            sink.hold.set()
        await runner.cleanup()
