"""Connect-time policy for outbound checks: no redirect from public to internal addresses.

aiohttp hands every connection attempt's resolved address to `socket_factory`, for IP
literals and names alike, so the policy is applied to the address actually connected,
on every redirect hop (a resolver-only filter is bypassed by IP-literal redirects).
The factory also marks the end of the TCP connect, which splits "connect" from "tls".
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

from prober.checks.context import PhaseTimer

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_internal(ip: IpAddress) -> bool:
    """Loopback, private, link-local (cloud metadata), unspecified or otherwise not global."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


@dataclasses.dataclass
class Guard:
    """One check run's connection state; lives in a contextvar while the check runs."""

    timer: PhaseTimer
    classify: Callable[[IpAddress], bool] = is_internal
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
