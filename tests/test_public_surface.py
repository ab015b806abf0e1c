"""The public surface cannot be used to make the prober lie (prober.runtime.serving).

Slow and idle connections are closed at their deadlines, open connections are capped well
below the file limit, a malformed request is a counted line (no traceback), and no
response carries a version banner or lacks the security headers. Most tests serve a small
app through the hardened runner on loopback with short deadlines; the last one runs
`prober run` with its file limit lowered and floods its web process past that limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import logging
import os
import pathlib
import re
import resource
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import prometheus_client
import pytest
from aiohttp import web

from prober.runtime.connection import Counters, Limits
from prober.runtime.serving import AcceptErrors, Listeners
from statuspage.app import SECURITY_HEADERS
from tests.support.net import free_port
from tests.support.proc import ProberRun, http_target, until

FAST = Limits(max_connections=8, header_timeout=2.0, idle_timeout=2.5, body_timeout=2.0)
SLACK = 2.0  # seconds past a deadline a busy machine may take to close a connection
EARLY = 0.1  # the loop's timers are never this early


@dataclasses.dataclass
class Served:
    port: int
    listeners: Listeners
    release: asyncio.Event  # /slow answers once set

    @property
    def counters(self) -> Counters:
        return self.listeners.guards[0].counters

    def scrape(self) -> str:
        registry = prometheus_client.CollectorRegistry()
        registry.register(self.listeners)
        return prometheus_client.generate_latest(registry).decode()


Serve = Callable[[Limits], Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """A small app behind the hardened runner, as the web process serves the page."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(limits: Limits) -> Served:
            release = asyncio.Event()

            async def ok(_: web.Request) -> web.Response:
                return web.Response(text="ok\n")

            async def slow(_: web.Request) -> web.Response:
                await release.wait()
                return web.Response(text="slow\n")

            async def push(request: web.Request) -> web.Response:
                await request.read()
                return web.Response(text="pushed\n")

            async def crash(_: web.Request) -> web.Response:
                raise RuntimeError("a bug of ours")

            app = web.Application()
            app.router.add_get("/", ok)
            app.router.add_get("/slow", slow)
            app.router.add_post("/push", push)
            app.router.add_get("/crash", crash)
            listeners = Listeners(limits)
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            port = sock.getsockname()[1]
            runner = await listeners.start(app, "page", sock, headers=SECURITY_HEADERS)
            stack.push_async_callback(runner.cleanup)
            return Served(port, listeners, release)

        yield start


async def _closed_within(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closed the connection (reading whatever it sent)."""
    began = time.monotonic()
    async with asyncio.timeout(within):
        while await reader.read(65536):
            pass
    return time.monotonic() - began


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def _parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body)


async def _exchange(port: int, raw: bytes) -> Answer:
    """`raw` bytes sent; the answer read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            return _parse(await reader.read(-1))
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    """One answer with a Content-Length, on a connection kept alive."""
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        answer = _parse(head)
        answer.body = await reader.readexactly(int(answer.headers["content-length"]))
    return answer


async def _until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll `predicate` (readiness), failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, predicate
        await asyncio.sleep(0.02)


# Deadlines


async def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
    serve: Serve,
) -> None:
    served = await serve(FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    took = await _closed_within(reader, FAST.header_timeout + SLACK)
    writer.close()
    assert FAST.header_timeout - EARLY <= took <= FAST.header_timeout + SLACK
    await _until(lambda: served.counters.open == 0)
    assert served.counters.timeouts["headers"] == 1


async def test_a_header_line_every_second_does_not_move_the_deadline(serve: Serve) -> None:
    served = await serve(FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    began = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for i in range(30):
                await asyncio.sleep(1.0)
                writer.write(f"X-Slow-{i}: 1\r\n".encode())
                await writer.drain()

    feeding = asyncio.create_task(trickle())
    try:
        await _closed_within(reader, FAST.header_timeout + SLACK)
    finally:
        feeding.cancel()
        writer.close()
    took = time.monotonic() - began
    assert FAST.header_timeout - EARLY <= took <= FAST.header_timeout + SLACK
    assert served.counters.timeouts["headers"] == 1


async def test_kept_alive_connections_serve_requests_and_close_when_idle(serve: Serve) -> None:
    """A proxy keeping connections alive (nginx, Caddy) reuses one within the idle time;
    it is closed after `idle_timeout` without a request."""
    served = await serve(FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):  # past the header deadline from the connection's start, in all
        writer.write(request)
        answer = await _read_answer(reader)
        assert (answer.status, answer.body) == (200, b"ok\n")
        await asyncio.sleep(FAST.header_timeout * 0.6)
    took = await _closed_within(reader, FAST.idle_timeout + SLACK)
    writer.close()
    idle = took + FAST.header_timeout * 0.6
    assert FAST.idle_timeout - EARLY <= idle <= FAST.idle_timeout + SLACK
    assert dict(served.counters.timeouts) == {"idle": 1}


async def test_a_request_begun_on_an_idle_connection_has_the_header_deadline(
    serve: Serve,
) -> None:
    served = await serve(FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await _read_answer(reader)).status == 200
    await asyncio.sleep(FAST.idle_timeout / 2)
    writer.write(b"GET / HTTP/1.1\r\n")  # and no more: from here, headers are due
    began = time.monotonic()
    await _closed_within(reader, FAST.header_timeout + SLACK)
    took = time.monotonic() - began
    writer.close()
    assert FAST.header_timeout - EARLY <= took <= FAST.header_timeout + SLACK
    assert dict(served.counters.timeouts) == {"headers": 1}


async def test_a_body_that_does_not_come_is_closed_at_the_body_deadline(serve: Serve) -> None:
    served = await serve(FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    took = await _closed_within(reader, FAST.body_timeout + SLACK)
    writer.close()
    assert FAST.body_timeout - EARLY <= took <= FAST.body_timeout + SLACK
    assert dict(served.counters.timeouts) == {"body": 1}


# The cap


async def test_at_the_cap_the_longest_waiting_connection_makes_room(serve: Serve) -> None:
    limits = dataclasses.replace(FAST, max_connections=4, header_timeout=60.0)
    served = await serve(limits)
    idle = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(4)]
    await _until(lambda: served.counters.open == 4)
    answer = await _exchange(served.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.status == 200
    oldest_reader = idle[0][0]
    assert await _closed_within(oldest_reader, 5) < 5  # the first connected: closed
    assert served.counters.evicted == 1
    for _, writer in idle:
        writer.close()


async def test_at_the_cap_with_every_connection_busy_a_newcomer_is_closed(serve: Serve) -> None:
    limits = dataclasses.replace(FAST, max_connections=4)
    served = await serve(limits)
    busy = []
    for _ in range(4):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        busy.append((reader, writer))
    guard = served.listeners.guards[0]
    await _until(lambda: served.counters.open == 4 and not guard.waiting)  # all in hand
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    assert await _closed_within(reader, 5) < 5
    writer.close()
    assert (served.counters.refused, served.counters.evicted) == (1, 0)
    served.release.set()
    for reader, writer in busy:
        assert _parse(await asyncio.wait_for(reader.read(-1), 10)).status == 200
        writer.close()


def test_the_cap_is_well_below_the_file_limit() -> None:
    assert Limits.for_file_limit(256).max_connections == 128
    assert Limits.for_file_limit(1024).max_connections == 512
    assert Limits.for_file_limit(65536).max_connections == 1024


def test_the_soft_file_limit_is_raised_at_start_where_allowed() -> None:
    code = "from prober.runtime.serving import raise_file_limit; print(raise_file_limit())"

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 512))

    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lower,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["512"]


# What every response carries, and what a malformed request costs


async def test_no_banner_and_security_headers_on_every_response(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(FAST)
    answers = {
        "200": await _exchange(
            served.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        "404": await _exchange(
            served.port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        "400": await _exchange(served.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
        "500": await _exchange(
            served.port, b"GET /crash HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
    }
    for status, answer in answers.items():
        assert str(answer.status) == status
        assert "server" not in answer.headers, status
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name.lower()) == value, (status, name)
    # A bug of ours is still logged with its traceback; the client's error is not.
    bugs = [r for r in caplog.records if r.exc_info is not None]
    assert len(bugs) == 1
    assert "a bug of ours" in str(bugs[0].exc_info[1])  # type: ignore[index]


GARBAGE = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",  # a request line past 8190 bytes
    b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


async def test_a_hundred_malformed_requests_are_a_line_and_a_counter(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(FAST)
    with caplog.at_level(logging.DEBUG):
        for i in range(100):
            answer = await _exchange(served.port, GARBAGE[i % len(GARBAGE)])
            assert answer.status == 400, GARBAGE[i % len(GARBAGE)]
            assert "server" not in answer.headers
            assert answer.headers["x-content-type-options"] == "nosniff"
    logged = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(logged) <= 2, [r.getMessage() for r in logged]
    assert all(r.exc_info is None for r in caplog.records)
    assert re.fullmatch(r'bad request peer=127\.0\.0\.1 error=".+"', logged[0].getMessage())
    assert served.counters.bad_requests == 100
    assert 'prober_http_bad_requests_total{listener="page"} 100.0' in served.scrape()


@contextlib.contextmanager
def _no_new_descriptors() -> Iterator[None]:
    """This process's file limit lowered to its lowest free descriptor for a moment."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _connect_later(port: int, count: int) -> Callable[[], list[socket.socket]]:
    """Sockets made now, connected when called (connecting needs no new descriptor)."""
    socks = [socket.socket() for _ in range(count)]

    def connect() -> list[socket.socket]:
        for sock in socks:
            sock.setblocking(False)
            assert sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS)
        return socks

    return connect


async def test_accept_failing_for_want_of_descriptors_is_one_line_and_retried(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A real EMFILE on accept(): this process's own file limit lowered for a moment."""
    served = await serve(FAST)
    connect = _connect_later(served.port, 3)
    with caplog.at_level(logging.DEBUG), _no_new_descriptors():
        socks = connect()
        await _until(lambda: served.counters.accept_errors >= 1)
    await _until(lambda: served.counters.open == 3)  # retried a second later: all in
    for sock in socks:
        sock.close()
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        (
            "WARNING",
            "listener=page cannot accept connections: Too many open files; retrying every second",
            None,
        )
    ]
    assert 'prober_http_accept_errors_total{listener="page"} 1.0' in served.scrape()


async def test_asyncios_accept_errors_are_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """The probing process's control socket is served by asyncio's own accept loop, which
    reports EMFILE to the loop's exception handler once per connection it tries, with a
    traceback."""
    loop = asyncio.get_running_loop()
    errors = AcceptErrors()
    errors.install(loop)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    connect = _connect_later(server.sockets[0].getsockname()[1], 3)
    socks: list[socket.socket] = []
    try:
        with caplog.at_level(logging.DEBUG), _no_new_descriptors():
            socks = connect()
            await _until(lambda: errors.count >= 2)
    finally:
        for sock in socks:
            sock.close()
        server.close()
        await server.wait_closed()
        loop.set_exception_handler(None)
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        (
            "WARNING",
            "cannot accept connections: Too many open files; retrying every second",
            None,
        )
    ]


# `prober run` with its file limit lowered, flooded past it


FILE_LIMIT = 256  # the prober's, soft and hard: it cannot raise it
FLOOD = 400  # slow connections held open at the web process, more than its file limit
FLOOD_S = 16.0


@pytest.fixture
def target(tmp_path: pathlib.Path) -> Iterator[int]:
    """A healthy HTTP target on loopback, in its own process."""
    with http_target(tmp_path / "www") as port:
        yield port


class Flood:
    """`count` connections that each send a header line every second and never finish
    their request; one closed by the server is opened again at the next round."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.socks: list[socket.socket | None] = [None] * count
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in self.socks:
            if sock is not None:
                sock.close()

    def _run(self) -> None:
        begun = [False] * len(self.socks)  # the request line sent
        while not self._stop.is_set():
            for i, sock in enumerate(self.socks):
                if sock is not None:
                    line = b"X-Slow: 1\r\n" if begun[i] else b"GET / HTTP/1.1\r\n"
                    sent = self._send(sock, line)
                    if sent is None:
                        sock.close()
                        sock = self.socks[i] = None
                    elif sent:
                        begun[i] = True
                if sock is None:
                    sock = socket.socket()
                    sock.setblocking(False)
                    sock.connect_ex(("127.0.0.1", self.port))
                    self.socks[i] = sock
                    begun[i] = False
                    self.opened += 1
            self._stop.wait(1.0)

    @staticmethod
    def _send(sock: socket.socket, line: bytes) -> bool | None:
        """Whether `line` went out (not yet connected: False); None once the server closed."""
        try:
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                return None
        except BlockingIOError:
            pass
        except OSError:
            return None
        try:
            sock.send(line)
        except BlockingIOError:
            return False
        except OSError as exc:
            return False if exc.errno == errno.ENOTCONN else None
        return True


OUTCOMES = {0: "unknown", 1: "up", 2: "degraded", 3: "down"}


def _answer(url: str, timeout: float = 5.0) -> str:
    """The status code, or what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return str(response.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return type(reason).__name__


def _db_rows(db: pathlib.Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def test_a_flood_past_the_file_limit_makes_no_monitor_lie(
    tmp_path: pathlib.Path, target: int
) -> None:
    """Before: the web process ran out of descriptors, the monitor of the prober's own page
    went down (an incident, alerts), /healthz stalled, and every failed accept() logged a
    traceback. Now: the flood is capped, evicted and timed out; nothing else notices."""
    listen = free_port()
    (tmp_path / "monitors.toml").write_text(
        textwrap.dedent(
            f"""
            [settings]
            listen = "127.0.0.1:{listen}"
            metrics = {{ listen = "" }}
            database = "sqlite:///data/prober.db"

            [[monitors]]
            id = "own-page"
            type = "http"
            url = "http://127.0.0.1:{listen}/api/v1/status"
            interval = "2s"
            timeout = "1900ms"
            down_after = 1

            [[monitors]]
            id = "elsewhere"
            type = "http"
            url = "http://127.0.0.1:{target}/ok"
            interval = "2s"
            timeout = "1900ms"
            down_after = 1
            """
        )
    )
    db = tmp_path / "data" / "prober.db"
    run = ProberRun(["run"], tmp_path, rlimits={resource.RLIMIT_NOFILE: (FILE_LIMIT, FILE_LIMIT)})
    try:
        line = run.wait_for("status page ready pid=")
        found = re.search(r"status page ready pid=(\d+)", run.log.splitlines()[line])
        assert found is not None
        web_pid = int(found.group(1))
        run.wait_for("prober running")
        until(lambda: len(_db_rows(db, "SELECT 1 FROM result WHERE outcome = 1")) >= 2, within=30)

        mark, began = run.lines(), time.time()
        healthz: collections.Counter[str] = collections.Counter()
        most_files = 0
        with Flood(listen, FLOOD) as flood:
            end = time.monotonic() + FLOOD_S
            while time.monotonic() < end:
                healthz[_answer(f"http://127.0.0.1:{listen}/healthz")] += 1
                most_files = max(most_files, _open_files(web_pid))
                time.sleep(0.5)
        flood_log = run.log.splitlines()[mark:]
        ended = time.time()
        assert run.stop() == 0, run.log
    finally:
        run.stop()

    rows = _db_rows(
        db,
        "SELECT m.slug, r.outcome, r.error FROM result r JOIN monitor m ON m.id = r.monitor_id"
        f" WHERE r.ts_ms BETWEEN {int(began * 1000)} AND {int(ended * 1000)}",
    )
    seen = {
        "healthz": dict(healthz),
        "results": dict(collections.Counter(f"{slug} {OUTCOMES[o]}" for slug, o, _ in rows)),
        "errors": sorted({f"{slug}: {error}" for slug, _, error in rows if error}),
        "incidents": len(_db_rows(db, "SELECT * FROM incident")),
        "log_lines": len(flood_log),
        "tracebacks": sum("Traceback" in line for line in flood_log),
        "most_files": most_files,
        "flood_opened": flood.opened,
    }
    why = f"{seen}\n" + "\n".join(flood_log[:40])
    assert set(seen["healthz"]) == {"200"}, why  # type: ignore[call-overload]
    assert {r.split()[1] for r in seen["results"]} == {"up"}, why  # type: ignore[attr-defined]
    for slug in ("own-page", "elsewhere"):  # checks every 2 s went on: 16 s, minus slack
        assert seen["results"].get(f"{slug} up", 0) >= FLOOD_S / 2 - 3, why  # type: ignore[attr-defined]
    assert seen["incidents"] == 0, why
    assert (seen["log_lines"], seen["tracebacks"]) <= (10, 0), why
    assert most_files < FILE_LIMIT - 32, why  # the cap: half the limit, and the rest
    assert flood.opened > FLOOD, why  # the server closed some and they came back


async def test_no_subscriber_address_or_token_on_any_public_route(
    tmp_path: pathlib.Path,
) -> None:
    """Email subscriptions (statuspage.subscribe): a confirmed and a pending subscriber,
    then every public route: no address, no token, no digest of one, in any body."""
    from statuspage.app import FEEDS, JSON_ROUTES
    from tests.statuspage.test_subscribe import links, rig_for

    async with rig_for(tmp_path) as rig:
        await rig.subscribe("Leak.Check@Example.com")
        await rig.subscribe("pending.leak@example.org")
        mails = await rig.mails(2)
        found = [path for mail in mails for path in links(mail).values()]
        await rig.post(links(mails[0])["subscribe"])
        secrets = {"leak.check", "pending.leak", "example.org"}
        secrets |= {path.rsplit("/", 1)[1].lower() for path in found}
        secrets |= {digest for (digest,) in rig.rows("SELECT digest FROM subscriber_token")}
        assert len(secrets) > 6
        routes = ["/", "/?lang=ko", "/monitors/api", "/api/v1/monitors/api/days", "/healthz"]
        routes += [*JSON_ROUTES, *FEEDS, "/monitors/api/feed.atom", "/badge/api/status.svg"]
        for route in routes:
            response = await rig.client.get(route)
            body = (await response.text()).lower()
            assert response.status == 200, route
            assert not [s for s in secrets if s in body], route
        # The answers to subscribing visitors say nothing of the addresses either.
        for path in found:
            for page in (await rig.client.get(path), await rig.client.post(path)):
                assert not [s for s in secrets if s in (await page.text()).lower()], path
