"""Who is asking: the address per-client limits count against.

Behind the reverse proxy of docs/DEPLOY.md every visitor arrives from 127.0.0.1, so the
peer address alone would put the whole internet in one bucket, and "comes from loopback"
says nothing about who is asking. The visitor's address is read from `X-Forwarded-For`,
and only when the peer is one of `settings.trusted_proxies`: walking the header from the
right (each proxy appends the address it saw), the first address that is not a trusted
proxy is the client. Everything to its left was written by the client and is ignored.
Nothing is trusted implicitly, loopback included.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from aiohttp import web

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.Request, trusted_proxies: Iterable[str]) -> Address | None:
    """The client's address (None when the peer has none, e.g. a Unix socket)."""
    forwarded = request.headers.getall("X-Forwarded-For", [])
    return from_chain(request.remote, forwarded, networks(tuple(trusted_proxies)))


@functools.lru_cache(maxsize=8)
def networks(trusted_proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """`settings.trusted_proxies` parsed (validated at load), once per distinct list."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted_proxies)


def from_chain(
    peer: str | None, forwarded: Sequence[str], trusted: Sequence[Network]
) -> Address | None:
    """The first untrusted address walking `peer` then the X-Forwarded-For values from the
    right (empty list elements skipped, as HTTP lists allow them). A value that is not an
    address stops the walk: nothing left of it can be believed, so the nearest trusted hop
    answers for it."""
    current = parse(peer or "")
    if current is None:
        return None
    hops = [hop for value in forwarded for hop in value.split(",") if hop.strip()]
    while _trusted(current, trusted) and hops:
        previous = parse(hops.pop())
        if previous is None:
            break
        current = previous
    return current


def parse(text: str) -> Address | None:
    """An address as proxies write it: `203.0.113.7`, `2001:db8::1`, and the forms with a
    port some add (`203.0.113.7:5678`, `[2001:db8::1]:443`); IPv4-mapped IPv6 as IPv4."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)
