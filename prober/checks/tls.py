"""TLS check: connect, handshake with chain and hostname verified, judge the expiry.

The TCP connect (name resolution included) and the handshake are timed as separate
phases. The expiry judged is the earliest in the verified chain: an intermediate that
lapses first breaks the site as surely as the leaf. The helpers here (connect, handshake,
closing) are shared with the tcp check.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

from prober.checks import netguard
from prober.checks.certs import describe_verify_error, earliest_expiry, peer_chain
from prober.checks.context import CheckContext
from prober.config.monitors import TlsMonitor
from prober.results import Certificate, CheckResult, Outcome, down

CLOSE_GRACE = 0.5  # seconds a peer gets to finish a polite close before it is dropped
DEADLINE_MARGIN = 0.05  # our own waits end this much before the caller's deadline

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def check(spec: TlsMonitor, ctx: CheckContext) -> CheckResult:
    ctx.timer.enter("connect")
    streams = await connect(spec.host, spec.port, allow_link_local=spec.allow_link_local)
    if isinstance(streams, str):
        return down(streams, ctx.timer.elapsed_ms(), phases=ctx.timer.phases())
    _, writer = streams
    async with closing(writer, ctx):
        ctx.timer.enter("tls")
        ssl_ctx = ctx.shared.tls.get(True, spec.ca_file)  # a tls check always verifies
        failure = await handshake(writer, ssl_ctx, spec.server_name or spec.host)
        if failure is None:
            ctx.timer.done()
        latency, phases = ctx.timer.elapsed_ms(), ctx.timer.phases()
        if failure is not None:
            return down(failure, latency, phases=phases)
        certificate = certificate_of(writer)
        if certificate is None:
            return down("the server's certificate could not be read", latency, phases=phases)
        days = certificate.days_left(ctx.clock.now())
        outcome, error = _judge_expiry(spec, certificate, days)
        return CheckResult(
            outcome,
            latency,
            error=error,
            phases=phases,
            certificate=certificate,
            details={
                "issuer": certificate.issuer,
                "days_left": round(days, 2),
                "tls_version": writer.get_extra_info("ssl_object").version(),
            },
        )


def _judge_expiry(
    spec: TlsMonitor, certificate: Certificate, days: float
) -> tuple[Outcome, str | None]:
    when = certificate.not_after.strftime("%Y-%m-%d %H:%M UTC")
    if days < 0:  # verified a moment ago, so our clock and the handshake's disagree
        return Outcome.DOWN, f"certificate expired {-days:.1f} days ago ({when})"
    if days < spec.down_days:
        return (
            Outcome.DOWN,
            f"certificate expires in {days:.1f} days ({when}), down_days {spec.down_days}",
        )
    if days < spec.warn_days:
        return (
            Outcome.DEGRADED,
            f"certificate expires in {days:.1f} days ({when}), warn_days {spec.warn_days}",
        )
    return Outcome.UP, None


async def connect(host: str, port: int, *, allow_link_local: bool) -> Streams | str:
    """Open a plain TCP connection to the first of the host's addresses that accepts, or
    say in words why not. Each resolved address is put to the guard (netguard.refusal)
    before a socket exists for it, so a name cannot lead where a literal may not."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"DNS lookup failed: {exc.strerror or exc}"
    failures: list[str] = []
    for family, type_, proto, _, address in found:
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
        refused = netguard.refusal(ip, allow_link_local)
        if refused is not None:
            failures.append(refused)
            continue
        try:
            return await _open(loop, socket.socket(family, type_, proto), address)
        except OSError as exc:
            failures.append(_connect_failure(exc))
    # one line per distinct reason: ::1 and 127.0.0.1 both refusing is "connection refused"
    return "; ".join(dict.fromkeys(failures)) or f"DNS lookup failed: no address for {host}"


async def _open(loop: asyncio.AbstractEventLoop, sock: socket.socket, address: Any) -> Streams:
    """Connect one address (sequentially, as asyncio.open_connection does) and wrap it."""
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


def _connect_failure(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    return f"connect failed: {exc.strerror or exc}"


async def handshake(
    writer: asyncio.StreamWriter, ssl_ctx: ssl.SSLContext, server_name: str
) -> str | None:
    """Upgrade the connection to TLS (SNI and verified name: server_name); None when it worked."""
    try:
        await writer.start_tls(ssl_ctx, server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        return describe_verify_error(exc)
    except ssl.SSLError as exc:
        reason = (exc.reason or str(exc)).replace("_", " ").lower()
        return f"TLS handshake failed: {reason}"
    except (ConnectionError, EOFError):
        return "TLS handshake failed: the server closed the connection"
    except OSError as exc:
        return f"TLS handshake failed: {exc.strerror or exc}"
    return None


def certificate_of(writer: asyncio.StreamWriter) -> Certificate | None:
    ssl_object: Any = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    try:
        return earliest_expiry(peer_chain(ssl_object))
    except ValueError:  # a certificate cryptography cannot parse
        return None


@contextlib.asynccontextmanager
async def closing(writer: asyncio.StreamWriter, ctx: CheckContext) -> AsyncIterator[None]:
    """Close politely when the check is done; drop the connection when it is cut short."""
    try:
        yield
    except BaseException:  # the deadline (CancelledError) or a bug: no time to be polite
        writer.transport.abort()
        raise
    grace = min(CLOSE_GRACE, ctx.remaining() - DEADLINE_MARGIN)
    if grace <= 0:
        writer.transport.abort()
        return
    writer.close()  # TLS: sends close_notify and waits for the peer's answer
    try:
        async with asyncio.timeout(grace):
            await writer.wait_closed()
    except (TimeoutError, OSError):  # a peer that will not let go, or a rude reset
        writer.transport.abort()
