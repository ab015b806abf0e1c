"""HTTP(S) check: one request (plus redirects), a capped body, then the assertions.

Phases come from aiohttp tracing and the guarded socket factory; the caller owns the
deadline, which covers DNS, connect, TLS, headers, body and the assertions.
"""

from __future__ import annotations

import asyncio
import re
import ssl

import aiohttp
from aiohttp.http_exceptions import LineTooLong
from yarl import URL

from prober.checks import body as body_mod
from prober.checks.certs import describe_verify_error, earliest_expiry, peer_chain
from prober.checks.context import CheckContext
from prober.checks.netguard import Guard, current_guard
from prober.checks.result import Certificate, CheckResult, Outcome, down
from prober.config.monitors import HttpMonitor

REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def check(spec: HttpMonitor, ctx: CheckContext) -> CheckResult:
    url = URL(spec.url, encoded=False)
    guard = Guard(timer=ctx.timer, classify=ctx.shared.classify_address)
    token = current_guard.set(guard)
    try:
        return await _run(spec, ctx, guard, url)
    finally:
        current_guard.reset(token)


async def _run(spec: HttpMonitor, ctx: CheckContext, guard: Guard, url: URL) -> CheckResult:
    method = spec.method
    data = spec.body.get_secret_value().encode() if spec.body is not None else None
    headers = {"User-Agent": ctx.shared.user_agent, "Accept-Encoding": "gzip, deflate"}
    headers.update({k: v.get_secret_value() for k, v in spec.headers.items()})
    auth = (
        aiohttp.BasicAuth(spec.basic_auth.username, spec.basic_auth.password.get_secret_value())
        if spec.basic_auth
        else None
    )
    ssl_ctx: ssl.SSLContext = ctx.shared.tls.get(spec.verify_tls, spec.ca_file)
    hops: list[str] = []
    while True:
        guard.tls = url.scheme == "https"
        ctx.timer.enter("dns" if not _is_ip(url.host) else "connect")
        try:
            response = await ctx.shared.session.request(
                method,
                url,
                headers=headers,
                data=data,
                auth=auth if not hops else None,  # credentials never follow a redirect
                ssl=ssl_ctx if url.scheme == "https" else False,
                allow_redirects=False,
                trace_request_ctx=ctx.timer,
            )
        except Exception as exc:  # noqa: BLE001 - every failure of the target is a result
            return _connect_failure(exc, ctx, guard, hops)
        async with response:
            if spec.follow_redirects and response.status in REDIRECTS:
                target = _next_hop(url, response)
                if isinstance(target, str):
                    return down(target, ctx.timer.elapsed_ms(), status_code=response.status)
                hops.append(f"{response.status} -> {ctx.shared.redact(str(target))}")
                if len(hops) > spec.max_redirects:
                    return down(
                        f"too many redirects: more than {spec.max_redirects}",
                        ctx.timer.elapsed_ms(),
                        status_code=response.status,
                        phases=ctx.timer.phases(),
                        details={"redirects": hops},
                    )
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, data = "GET", None
                url = target
                guard.hop += 1
                continue
            certificate = _certificate(response, ctx)
            ctx.timer.enter("body")
            return await _judge(spec, ctx, response, certificate, hops)


def _is_ip(host: str | None) -> bool:
    return bool(host) and (host.replace(".", "").isdigit() or ":" in (host or ""))


def _next_hop(url: URL, response: aiohttp.ClientResponse) -> URL | str:
    location = response.headers.get("Location")
    if not location:
        return f"HTTP {response.status} redirect without a Location header"
    try:
        target = url.join(URL(location))
    except ValueError:
        return f"HTTP {response.status} redirect to an unreadable Location"
    if target.scheme not in ("http", "https"):
        return f"redirect to a {target.scheme}: URL refused (only http and https are followed)"
    return target


def _certificate(response: aiohttp.ClientResponse, ctx: CheckContext) -> Certificate | None:
    connection = response.connection
    transport = connection.transport if connection is not None else None
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    try:
        return earliest_expiry(peer_chain(ssl_object))
    except ValueError:
        return None


async def _judge(
    spec: HttpMonitor,
    ctx: CheckContext,
    response: aiohttp.ClientResponse,
    certificate: Certificate | None,
    hops: list[str],
) -> CheckResult:
    try:
        content, truncated = await body_mod.read_capped(response, spec.max_body)
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return down(
            f"reading the body failed: {_reason(exc, ctx)}",
            ctx.timer.elapsed_ms(),
            status_code=response.status,
            phases=ctx.timer.phases(),
        )
    latency = ctx.timer.elapsed_ms()
    details = {"redirects": hops} if hops else {}
    if truncated:
        return down(
            f"body larger than max_body ({spec.max_body} bytes after decompression)",
            latency,
            status_code=response.status,
            phases=ctx.timer.phases(),
            certificate=certificate,
            details=details,
        )
    assertions = body_mod.judge_response(
        spec, response.status, content, response.charset, ctx.remaining()
    )
    failed = [a for a in assertions if not a.ok]
    return CheckResult(
        outcome=Outcome.DOWN if failed else Outcome.UP,
        latency_ms=latency,
        error="; ".join(ctx.shared.redact(a.describe()) for a in failed) or None,
        status_code=response.status,
        phases=ctx.timer.phases(),
        assertions=tuple(assertions),
        certificate=certificate,
        details=details,
    )


def _connect_failure(
    exc: BaseException, ctx: CheckContext, guard: Guard, hops: list[str]
) -> CheckResult:
    if guard.blocked:
        error = guard.blocked
    else:
        error = _reason(exc, ctx)
    return down(
        error,
        ctx.timer.elapsed_ms(),
        phases=ctx.timer.phases(),
        details={"redirects": hops} if hops else {},
    )


def _reason(exc: BaseException, ctx: CheckContext) -> str:
    """A readable, redacted cause: what failed, in words an operator can act on."""
    cause = exc
    while cause.__cause__ is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        if isinstance(cause, aiohttp.ClientConnectorCertificateError):
            break
        cause = cause.__cause__
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        inner = exc.certificate_error
        if isinstance(inner, ssl.SSLCertVerificationError):
            return describe_verify_error(inner)
        return f"TLS certificate rejected: {inner}"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return describe_verify_error(cause)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(os_error, ssl.SSLError):
            return f"TLS handshake failed: {os_error.reason or os_error}"
        return f"connect failed: {os_error.strerror or os_error}"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without a response"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid HTTP response: {_protocol_error(exc)}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"invalid body: {exc}"
    if isinstance(exc, ConnectionResetError | aiohttp.ClientOSError):
        return "connection reset by peer" if "reset" in str(exc).lower() else f"connection error: {exc}"
    if isinstance(exc, TimeoutError):
        return f"timed out ({type(exc).__name__})"
    return ctx.shared.redact(f"{type(exc).__name__}: {exc}")


_QUOTED = re.compile(r"""\s*:?\s*b?['"]""")


def _protocol_error(exc: aiohttp.ClientResponseError) -> str:
    """aiohttp's parser errors quote the offending bytes over several lines (a 200 KB header,
    an SSH banner): keep the words, never the target's bytes."""
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, LineTooLong):
            return f"a header or status line longer than {link.args[1]} bytes"
        link = link.__cause__
    first = exc.message.splitlines()[0] if exc.message else ""
    return _QUOTED.split(first, maxsplit=1)[0].rstrip(" :.") or f"status {exc.status}"
