"""The child test_link_local.py runs inside a network namespace that has only its own
loopback: the metadata addresses below are put on that loopback, each with a sentinel
that counts every connection and datagram it receives. A check the guard should refuse
but did not shows up as a hit here, and nothing it sends can leave the namespace.

`python -m tests.checks.linklocal_child` reads the cases as JSON on stdin,
{name: {"monitor": {...fields}}}, and writes one JSON line per case: its outcome, error,
redirects and the sentinel hits while it ran (after a first line naming the namespace's
interfaces). `{internal}` in a case's fields is the
base URL of a redirector on 127.0.0.1 (`/go?to=URL` answers 302 Location: URL).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

import dns.message
from aiohttp import web

from prober.checks.runner import run_check
from prober.checks.session import open_shared
from tests.support.monitors import monitor

# Put on the namespace's loopback (the IPv6 ones with nodad, so they bind at once).
SENTINELS = ("169.254.169.254", "100.100.100.200", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1")
# What /etc/hosts says inside the namespace (bind-mounted over the real one).
HOSTS = """\
127.0.0.1 localhost
::1 localhost
169.254.169.254 metadata.test mixed.test
127.0.0.1 mixed.test
"""
HTTP_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nmetadata"


class Sentinel:
    """Counts every TCP connection (ports 80, 443) and UDP datagram (port 53) it gets;
    answers HTTP on 80 and DNS on 53, so an allowed check gets as far as it can."""

    def __init__(self) -> None:
        self.hits = 0

    async def http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(HTTP_REPLY)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def closer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        writer.close()


class DnsSentinel(asyncio.DatagramProtocol):
    """One UDP socket of the sentinel: counts and answers NOERROR (no records)."""

    def __init__(self, sentinel: Sentinel) -> None:
        self.sentinel = sentinel
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.sentinel.hits += 1
        response = dns.message.make_response(dns.message.from_wire(data))
        self.transport.sendto(response.to_wire(), addr)


async def redirector() -> tuple[web.AppRunner, str]:
    async def go(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    app = web.Application()
    app.router.add_get("/go", go)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def main() -> None:
    cases: dict[str, dict[str, Any]] = json.load(sys.stdin)
    print(json.dumps({"interfaces": socket.if_nameindex()}), flush=True)
    loop = asyncio.get_running_loop()
    sentinel = Sentinel()
    servers = []
    datagrams = []
    for address in SENTINELS:
        servers.append(await asyncio.start_server(sentinel.http, address, 80))
        servers.append(await asyncio.start_server(sentinel.closer, address, 443))
        udp, _ = await loop.create_datagram_endpoint(
            lambda: DnsSentinel(sentinel), local_addr=(address, 53)
        )
        datagrams.append(udp)
    runner, internal = await redirector()
    try:
        async with open_shared() as shared:
            for name, case in cases.items():
                fields = json.loads(json.dumps(case["monitor"]).replace("{internal}", internal))
                spec = monitor(fields.pop("type"), timeout="5s", interval="10s", **fields)
                before = sentinel.hits
                result = await run_check(spec, shared)
                line = {
                    "name": name,
                    "outcome": str(result.outcome),
                    "error": result.error,
                    "redirects": result.details.get("redirects", []),
                    "hits": sentinel.hits - before,
                }
                print(json.dumps(line), flush=True)
    finally:
        await runner.cleanup()
        for server in servers:
            server.close()
        for udp in datagrams:
            udp.close()


if __name__ == "__main__":
    asyncio.run(main())
