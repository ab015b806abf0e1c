"""Raw TCP servers on loopback that misbehave on purpose, for the HTTP check's hostile tests.

`serve(handler)` runs `asyncio.start_server` on 127.0.0.1:0 and yields the port; the
handler factories below write raw bytes, so every protocol violation is exactly what the
test says it is. On exit every connection is aborted and every handler task cancelled,
so nothing leaks into the next test (pytest runs with warnings as errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

FOREVER = 3600.0


@contextlib.asynccontextmanager
async def serve(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A raw TCP server on `host`, port chosen by the kernel; yields the port."""
    tasks: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gave up first: that is the point of most of these servers
        except asyncio.CancelledError:
            pass  # our own shutdown; asyncio would log a cancelled connection task
        finally:
            writer.close()
            writers.discard(writer)
            tasks.discard(task)

    server = await asyncio.start_server(connected, host, 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for writer in list(writers):
            writer.transport.abort()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then closed): connecting is refused."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PeakMemory:
    """Python heap allocated at the worst moment of a block, in bytes (tracemalloc)."""

    peak: int = 0


@contextlib.contextmanager
def peak_memory() -> Iterator[PeakMemory]:
    """Trace allocations in the block; `.peak` is the high-water mark above the start."""
    result = PeakMemory()
    tracemalloc.start()
    try:
        yield result
    finally:
        _, result.peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()


@contextlib.contextmanager
def finishes_within(seconds: float) -> Iterator[None]:
    """Assert the block's wall time stayed under `seconds` (the check's deadline + slack)."""
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f}s, the deadline allows {seconds:.2f}s"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The request head (through the blank line); bodies are not needed here."""
    return await reader.readuntil(b"\r\n\r\n")


def recording(seen: list[bytes], then: Handler) -> Handler:
    """Note every request head in `seen`, then behave like `then`."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        seen.append(head)
        replay = asyncio.StreamReader()
        replay.feed_data(head)
        await then(replay, writer)

    return handler


# --- the behaviours -------------------------------------------------------------------


def accepts_never_speaks() -> Handler:
    """Accepts the connection and never reads or writes a byte."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(FOREVER)

    return handler


def silent() -> Handler:
    """Reads the request, never answers: the headers never come."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(FOREVER)

    return handler


def respond(raw: bytes, *, close: bool = True) -> Handler:
    """Reads the request, writes `raw` verbatim, then closes (or holds the line open)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        if not close:
            await asyncio.sleep(FOREVER)

    return handler


def stall_after_headers() -> Handler:
    """Sends a complete head promising 100 bytes, then a few of them, then nothing."""
    return respond(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok", close=False)


def drip(every: float = 0.5) -> Handler:
    """One byte of body every `every` seconds, forever: each read succeeds, none finishes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        while True:
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(every)

    return handler


def endless_chunked(chunk_size: int = 64 * 1024) -> Handler:
    """A chunked body that never ends, as fast as the client reads it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % chunk_size + b"a" * chunk_size + b"\r\n"
        while True:
            writer.write(chunk)
            await writer.drain()

    return handler


def gzip_bomb_bytes(mib: int = 256) -> bytes:
    """`mib` MiB of zeros, gzipped: about 1 KB on the wire per MiB inflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join(compressor.compress(block) for _ in range(mib)) + compressor.flush()


def gzip_bomb(payload: bytes) -> Handler:
    """A small gzip body (`payload`) that inflates far beyond any sane max_body."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(payload)
    )
    return respond(head + payload, close=False)


def redirect_loop() -> Handler:
    """Every request is redirected back to itself."""
    return respond(
        b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )


def ssh_banner() -> Handler:
    """Not HTTP at all: an SSH server's greeting."""
    return respond(b"SSH-2.0-OpenSSH_9.6\r\n")


def reset_after_request() -> Handler:
    """Reads the request, then closes with SO_LINGER 0: the client gets a TCP RST."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return handler


def close_before_response() -> Handler:
    """Reads the request, then closes cleanly without a byte of response."""
    return respond(b"")


def short_body() -> Handler:
    """Declares 1000 bytes of body, sends 5, closes."""
    return respond(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello")


def http10_until_close(body: bytes) -> Handler:
    """An HTTP/1.0 response with no Content-Length: the body ends when the connection does."""
    return respond(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)


def huge_header(size: int = 200 * 1024) -> Handler:
    """A single header line of `size` bytes."""
    return respond(
        b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * size + b"\r\nContent-Length: 2\r\n\r\nok"
    )
