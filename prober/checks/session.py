"""The one outbound HTTP session: fresh connection per check, tracing, guarded sockets."""

from __future__ import annotations

import contextlib
import socket
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from prober import __version__
from prober.addresses import IpAddress, is_internal
from prober.checks.context import PhaseTimer, Shared, TlsContexts
from prober.checks.netguard import RecordingSSLObject, socket_factory
from prober.clock import Clock, SystemClock
from prober.redact import Redactor

USER_AGENT = f"prober/{__version__} (+uptime check)"  # the watchdog's heartbeat pings


def user_agent(location: str) -> str:
    """What HTTP checks send unless a monitor's `headers` set their own: the location lets
    a target's operator tell the probers apart (and test a regional failure by it)."""
    return f"prober/{__version__} (location={location})"


def _timer(ctx: types.SimpleNamespace) -> PhaseTimer | None:
    timer = ctx.trace_request_ctx
    return timer if isinstance(timer, PhaseTimer) else None


async def _dns_end(session: Any, ctx: types.SimpleNamespace, params: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer.enter("connect")


async def _connected(session: Any, ctx: types.SimpleNamespace, params: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer.enter("first_byte")


def tracing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_dns_resolvehost_end.append(_dns_end)
    trace.on_connection_create_end.append(_connected)
    trace.freeze()
    return trace


def create_session(
    max_field_size: int = 8190, family: socket.AddressFamily = socket.AF_UNSPEC
) -> aiohttp.ClientSession:
    """A fresh connection (and TLS handshake) per check, as a new visitor sees the target.

    The deadline is the caller's (asyncio.timeout over the whole check); the session has
    no timeout of its own, and no cookie jar: monitors never share cookies.
    """
    connector = aiohttp.TCPConnector(
        force_close=True,
        family=family,
        limit=0,
        use_dns_cache=False,
        socket_factory=socket_factory,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        trace_configs=[tracing()],
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        max_field_size=max_field_size,
        max_line_size=max_field_size,
        raise_for_status=False,
    )
    # One attempt per check: aiohttp silently resends an idempotent request once after a
    # reset or an empty reply, which hits the target twice and doubles the latency. There
    # is no public switch; aiohttp's own TestClient turns it off the same way.
    session._retry_connection = False
    return session


@contextlib.asynccontextmanager
async def open_shared(
    redact: Redactor | None = None,
    clock: Clock | None = None,
    classify_address: Callable[[IpAddress], bool] = is_internal,
    location: str = "default",
) -> AsyncIterator[Shared]:
    """Everything checks share, for the lifetime of a `run` or a `check` command;
    `location` is where they probe from (settings.location), named in the User-Agent."""
    session = create_session()
    by_family = {
        4: create_session(family=socket.AF_INET),
        6: create_session(family=socket.AF_INET6),
    }
    try:
        yield Shared(
            session=session,
            tls=TlsContexts(sslobject_class=RecordingSSLObject),
            clock=clock or SystemClock(),
            redact=redact or Redactor(),
            user_agent=user_agent(location),
            classify_address=classify_address,
            family_sessions=by_family,
        )
    finally:
        for each in (session, *by_family.values()):
            await each.close()
