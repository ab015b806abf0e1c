"""TCP check: connect, optionally TLS, optionally send bytes and wait for an expected reply.

A port that accepts is up (a port that accepts and then closes too, unless `expect` says
otherwise). The reply is read up to MAX_EXPECT bytes; a peer that trickles bytes costs
one timeout and at most that much memory.
"""

from __future__ import annotations

import asyncio

from prober.checks import tls
from prober.checks.context import CheckContext
from prober.config.durations import format_duration
from prober.config.monitors import TcpMonitor
from prober.results import Certificate, CheckResult, Outcome, down

MAX_EXPECT = 64 * 1024
PREVIEW = 60  # characters of the reply quoted in an error


async def check(spec: TcpMonitor, ctx: CheckContext) -> CheckResult:
    ctx.timer.enter("connect")
    streams = await tls.connect(spec.host, spec.port, allow_link_local=spec.allow_link_local)
    if isinstance(streams, str):
        return down(streams, ctx.timer.elapsed_ms(), phases=ctx.timer.phases())
    reader, writer = streams
    async with tls.closing(writer, ctx):
        return await _converse(spec, ctx, reader, writer)


async def _converse(
    spec: TcpMonitor, ctx: CheckContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> CheckResult:
    certificate: Certificate | None = None
    if spec.tls:
        ctx.timer.enter("tls")
        ssl_ctx = ctx.shared.tls.get(spec.verify_tls, spec.ca_file)
        failure = await tls.handshake(writer, ssl_ctx, spec.server_name or spec.host)
        if failure is not None:
            return down(failure, ctx.timer.elapsed_ms(), phases=ctx.timer.phases())
        certificate = tls.certificate_of(writer)
    if spec.send is not None:
        ctx.timer.enter("send")
        try:
            writer.write(spec.send.encode())
            await writer.drain()
        except OSError as exc:
            return down(
                f"sending failed: {exc.strerror or exc}",
                ctx.timer.elapsed_ms(),
                phases=ctx.timer.phases(),
                certificate=certificate,
            )
    if spec.expect is not None:
        ctx.timer.enter("expect")
        failure = await _expect(reader, spec.expect, format_duration(spec.timeout), ctx)
        if failure is not None:
            return down(
                failure, ctx.timer.elapsed_ms(), phases=ctx.timer.phases(), certificate=certificate
            )
    ctx.timer.done()  # a plain connect or a handshake was the last timed phase
    return CheckResult(
        Outcome.UP, ctx.timer.elapsed_ms(), phases=ctx.timer.phases(), certificate=certificate
    )


async def _expect(
    reader: asyncio.StreamReader, expect: str, limit: str, ctx: CheckContext
) -> str | None:
    """Read until `expect` appears; None when it did, else what went wrong and what we saw.

    The wait ends just before the caller's deadline so the error can quote the reply.
    """
    needle = expect.encode()
    if not needle:
        return None
    seen = bytearray()
    try:
        async with asyncio.timeout(max(0.0, ctx.remaining() - tls.DEADLINE_MARGIN)):
            while True:
                # Search only the new bytes (plus an overlap): a trickling peer stays linear.
                start = max(0, len(seen) - len(needle) + 1)
                chunk = await reader.read(MAX_EXPECT - len(seen))
                if not chunk:
                    return f"connection closed before {expect!r} arrived (saw {_preview(seen)})"
                seen += chunk
                if seen.find(needle, start) >= 0:
                    return None
                if len(seen) >= MAX_EXPECT:
                    kib = MAX_EXPECT // 1024
                    return f"{expect!r} not in the first {kib} KiB (saw {_preview(seen)})"
    except TimeoutError:
        return f"timed out after {limit} waiting for {expect!r} (saw {_preview(seen)})"
    except OSError as exc:
        return f"reading the reply failed: {exc.strerror or exc} (saw {_preview(seen)})"


def _preview(data: bytearray) -> str:
    if not data:
        return "nothing"
    text = bytes(data[: PREVIEW * 4]).decode("utf-8", "replace")
    return repr(text[:PREVIEW] + ("…" if len(text) > PREVIEW or len(data) > PREVIEW * 4 else ""))
