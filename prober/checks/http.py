"""HTTP(S) check: one request (plus redirects), a capped body, then the assertions.

Phases come from aiohttp tracing and the guarded socket factory; the caller owns the
deadline, which covers DNS, connect, TLS, headers, body and the assertions.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl

import aiohttp
from aiohttp.http_exceptions import LineTooLong
from yarl import URL

from prober.checks import body as body_mod
from prober.checks.certs import describe_verify_error, earliest_expiry, peer_chain
from prober.checks.context import CheckContext
from prober.checks.netguard import Guard, current_guard
from prober.config.monitors import HttpMonitor
from prober.results import Certificate, CheckResult, Outcome, down

REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def check(spec: HttpMonitor, ctx: CheckContext) -> CheckResult:
    url = URL(spec.url, encoded=False)
    guard = Guard(
        timer=ctx.timer,
        classify=ctx.shared.classify_address,
        allow_link_local=spec.allow_link_local,
    )
    token = current_guard.set(guard)
    try:
        return await _run(spec, ctx, guard, url)
    finally:
        current_guard.reset(token)


async def _run(spec: HttpMonitor, ctx: CheckContext, guard: Guard, url: URL) -> CheckResult:
    method = spec.method
    data = spec.body.get_secret_value().encode() if spec.body is not None else None
    anonymous = {"User-Agent": ctx.shared.user_agent, "Accept-Encoding": "gzip, deflate"}
    # Configured headers are secrets (API keys, tokens): they go to the monitor's own origin.
    headers = anonymous | {k: v.get_secret_value() for k, v in spec.headers.items()}
    if spec.basic_auth:  # aiohttp.BasicAuth is deprecated (a DeprecationWarning) in 3.14
        headers["Authorization"] = aiohttp.encode_basic_auth(
            spec.basic_auth.username, spec.basic_auth.password.get_secret_value()
        )
    ssl_ctx: ssl.SSLContext = ctx.shared.tls.get(spec.verify_tls, spec.ca_file)
    hops: list[str] = []
    while True:
        guard.tls = url.scheme == "https"
        guard.ssl_object = None
        guard.blocked = None  # a refused address of a hop that then connected elsewhere
        mismatch = _family_mismatch(url.host, spec.ip_version)
        if mismatch:
            return down(mismatch, ctx.timer.elapsed_ms())
        ctx.timer.enter("dns" if not _is_ip(url.host) else "connect")
        try:
            response = await ctx.shared.session_for(spec.ip_version).request(
                method,
                url,
                headers=headers,
                data=data,
                ssl=ssl_ctx if url.scheme == "https" else False,
                allow_redirects=False,
                trace_request_ctx=ctx.timer,
            )
        except Exception as exc:
            return _connect_failure(exc, ctx, guard, hops)
        ctx.timer.enter("body")  # the headers came: first_byte ended (a redirect's too)
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
                if target.origin() != url.origin():  # neither credentials nor headers cross
                    headers = anonymous
                url = target
                guard.hop += 1
                continue
            certificate = _certificate(url, guard)
            return await _judge(
                spec, ctx, response, certificate, hops, _protocol(url, guard, response)
            )


def _family_mismatch(host: str | None, ip_version: int | None) -> str | None:
    """An IP-literal URL of the other family can never connect under `ip_version`."""
    if ip_version is None or not host or not _is_ip(host):
        return None
    version = ipaddress.ip_address(host.strip("[]")).version
    if version != ip_version:
        return f"ip_version is {ip_version} but {host} is an IPv{version} address"
    return None


def _is_ip(host: str | None) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


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


def _protocol(url: URL, guard: Guard, response: aiohttp.ClientResponse) -> dict[str, object]:
    """What /metrics tells of the final response (`probe_http_version`, `probe_http_ssl`,
    `probe_tls_version_info`): its TLS version, and its HTTP version unless 1.1 (almost
    every response's: not worth bytes in every stored result)."""
    found: dict[str, object] = {}
    if url.scheme == "https" and guard.ssl_object is not None:
        found["tls_version"] = guard.ssl_object.version()
    version = response.version
    if version is not None and (version.major, version.minor) != (1, 1):
        found["http_version"] = f"{version.major}.{version.minor}"
    return found


def _certificate(url: URL, guard: Guard) -> Certificate | None:
    """The final hop's certificates, captured at handshake time (see RecordingSSLObject)."""
    ssl_object = guard.ssl_object
    if url.scheme != "https" or ssl_object is None:
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
    protocol: dict[str, object],
) -> CheckResult:
    try:
        content, truncated = await body_mod.read_capped(response, spec.max_body)
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return down(
            f"reading the body failed: {_reason(exc, ctx)}",
            ctx.timer.elapsed_ms(),
            status_code=response.status,
            phases=ctx.timer.phases(),
            details=protocol | ({"redirects": hops} if hops else {}),
        )
    latency = ctx.timer.elapsed_ms()
    details: dict[str, object] = protocol | ({"redirects": hops} if hops else {})
    if truncated:
        # A big page is not an outage: judge its first max_body bytes and say so.
        details["body_truncated"] = True
    ctx.timer.enter("judge")
    # A regex gets 80% of the time left: it ends before the deadline, so its verdict is the error.
    args = (spec, response.status, content, response.charset, ctx.remaining() * 0.8)
    if spec.regex or spec.json_:
        # Off the event loop: a catastrophic regex is bounded by the deadline, but on the
        # loop it would stall every other check for that long.
        assertions = await asyncio.to_thread(body_mod.judge_response, *args)
    else:
        assertions = body_mod.judge_response(*args)
    failed = [a for a in assertions if not a.ok]
    error = "; ".join(ctx.shared.redact(a.describe()) for a in failed) or None
    if error and truncated:
        error += f" (judged on the first {spec.max_body} bytes: the body is larger than max_body)"
    return CheckResult(
        outcome=Outcome.DOWN if failed else Outcome.UP,
        latency_ms=latency,
        error=error,
        status_code=response.status,
        phases=ctx.timer.phases(),
        assertions=tuple(assertions),
        certificate=certificate,
        details=details,
    )


def _connect_failure(
    exc: BaseException, ctx: CheckContext, guard: Guard, hops: list[str]
) -> CheckResult:
    if guard.blocked and isinstance(exc, aiohttp.ClientConnectorError):
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
        return (
            "connection reset by peer"
            if "reset" in str(exc).lower()
            else f"connection error: {exc}"
        )
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
