"""Loopback parts for tests of several locations, served from one asyncio loop on a thread
of their own (the test itself blocks on subprocesses and polls):

- `Target`: an HTTP target whose answer depends on who asks: 500 to a prober whose
  User-Agent names a location in `broken` (`prober/VERSION (location=NAME)`), 200 to the
  rest; so one location's view of it breaks while the others' does not.
- `Proxy`: a TCP relay between an agent and its hub that the test can cut (every
  connection closed, new ones closed at once) and restore: a network cut, not a dead agent.
- `Hook`: a webhook receiver recording every alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web

_LOCATION = re.compile(r"\(location=([a-z0-9_-]+)\)")


class Loop:
    """An asyncio loop on a daemon thread; `call(coro)` runs a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Any, within: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(within)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Target:
    def __init__(self) -> None:
        self.broken: set[str] = set()
        self.seen: set[str] = set()  # locations that asked
        self.port = 0
        self._lock = threading.Lock()

    def break_for(self, *locations: str) -> None:
        with self._lock:
            self.broken |= set(locations)

    def mend(self, *locations: str) -> None:
        with self._lock:
            self.broken -= set(locations) if locations else set(self.broken)

    async def _handle(self, request: web.Request) -> web.Response:
        match = _LOCATION.search(request.headers.get("User-Agent", ""))
        where = match.group(1) if match else ""
        with self._lock:
            self.seen.add(where)
            broken = where in self.broken
        return web.Response(status=500 if broken else 200, text="no\n" if broken else "ok\n")


class Hook:
    """Alerts by the path they were posted to (one path per notifier)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.port = 0
        self._lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def alerts(self, path: str = "/hook") -> list[dict[str, Any]]:
        with self._lock:
            return [body for at, body in self.received if at == path]

    def kinds(self, path: str = "/hook") -> list[str]:
        return [str(a.get("kind")) for a in self.alerts(path)]

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        with self._lock:
            self.received.append((request.path, body))
        return web.Response(text="ok")


class Proxy:
    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.cut = False
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:
            for writer in list(self._open):
                writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self._open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    if self.cut:
                        break
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open -= {writer, up_writer}


async def _serve(handler: Any) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]


@contextlib.contextmanager
def running(*parts: Target | Hook) -> Iterator[Loop]:
    """Serve each part on loopback (their `port` set) until the block ends."""
    loop = Loop()
    runners = []
    try:
        for part in parts:
            runner, part.port = loop.call(_serve(part._handle))
            runners.append(runner)
        yield loop
    finally:
        for runner in runners:
            loop.call(runner.cleanup())
        loop.close()
