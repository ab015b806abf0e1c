"""Connect-time policy for outbound checks, applied to the address actually connected.

Two rules. Link-local and cloud-metadata addresses (169.254.169.254 and its mapped,
NAT64 and 6to4 spellings, see `prober.addresses`) are never connected to, on any hop of
any check type, unless the monitor sets `allow_link_local = true`. And a public target
may not redirect to a loopback, private or link-local address.

aiohttp hands every connection attempt's resolved address to `socket_factory`, for IP
literals and names alike, so the http check applies both rules there, before the socket
exists, on every redirect hop (a resolver-only filter is bypassed by IP-literal
redirects). The tcp, tls and dns checks ask `refusal` about each address they are about
to connect to. The factory also marks the end of the TCP connect, which splits
"connect" from "tls".
"""

from __future__ import annotations

import contextvars
import dataclasses
import errno
import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Any

from prober.addresses import IpAddress, embedded_ipv4, is_internal, is_link_local
from prober.checks.context import PhaseTimer


def refusal(ip: IpAddress, allow_link_local: bool) -> str | None:
    """The guard's refusal of a link-local or cloud-metadata address, or None to go ahead."""
    if allow_link_local or not is_link_local(ip):
        return None
    inside = [str(v4) for v4 in embedded_ipv4(ip) if is_link_local(v4)]
    shown = f"{ip} ({inside[0]})" if inside else str(ip)
    return (
        f"refused to connect to {shown}: link-local and cloud-metadata addresses are not "
        "probed (allow_link_local = true on this monitor allows it)"
    )


@dataclasses.dataclass
class Guard:
    """One check run's connection state; lives in a contextvar while the check runs."""

    timer: PhaseTimer
    classify: Callable[[IpAddress], bool] = is_internal  # for the redirect rule only
    allow_link_local: bool = False
    tls: bool = False
    hop: int = 0
    origin_internal: bool | None = None
    blocked: str | None = None
    peer: str | None = None
    ssl_object: ssl.SSLObject | None = None  # the last completed handshake of this check


current_guard: contextvars.ContextVar[Guard | None] = contextvars.ContextVar(
    "prober_guard", default=None
)


class _TimedSocket(socket.socket):
    """A socket that notes when the TCP connect finished (asyncio calls setblocking again)."""

    _calls = 0
    _guard: Guard | None = None

    def setblocking(self, flag: bool) -> None:
        self._calls += 1
        guard = self._guard
        if self._calls == 2 and guard is not None and guard.tls:
            guard.timer.enter("tls")
        super().setblocking(flag)


def socket_factory(addr_info: Any) -> socket.socket:
    family, type_, proto, _, address = addr_info
    guard = current_guard.get()
    if guard is not None:
        ip = ipaddress.ip_address(address[0].split("%")[0])
        refused = refusal(ip, guard.allow_link_local)
        if refused is not None:
            guard.blocked = refused
            raise OSError(errno.EACCES, refused)
        internal = guard.classify(ip)
        if guard.hop == 0 and guard.origin_internal is None:
            guard.origin_internal = internal
        elif guard.hop > 0 and internal and guard.origin_internal is False:
            guard.blocked = (
                f"redirect to {ip} blocked: a public target may not redirect to a loopback, "
                "private or link-local address"
            )
            raise OSError(errno.EACCES, guard.blocked)
        guard.peer = str(ip)
    sock = _TimedSocket(family, type_, proto)
    sock._guard = guard
    return sock


class RecordingSSLObject(ssl.SSLObject):
    """Keeps the handshake's SSL object on the guard, to read the peer's certificates.

    aiohttp releases a connection as soon as a small body has arrived, so by the time the
    response is returned its transport (and certificate) may be gone. Installed with the
    documented `SSLContext.sslobject_class`; asyncio calls it from callbacks that run in a
    copy of the check's context, so the guard is visible.
    """

    def do_handshake(self) -> None:
        super().do_handshake()
        guard = current_guard.get()
        if guard is not None:
            guard.ssl_object = self
