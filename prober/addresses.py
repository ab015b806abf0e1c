"""What an IP address really is: the IPv4 addresses hidden in IPv6 forms, and which
addresses reach the machine's own link or a cloud's metadata service.

Pure (standard library only): the config's warnings and the checks' connect-time guard
share it, so `validate` and a running check agree on what is refused.
"""

from __future__ import annotations

import ipaddress

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPAT = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible ::a.b.c.d
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
# Metadata services outside the link-local ranges: Alibaba Cloud, Azure's wireserver,
# AWS's IPv6 instance metadata endpoint.
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("100.100.100.200", "168.63.129.16", "fd00:ec2::254")
)
# Names that resolve to a metadata service from inside a cloud; a warning in `validate`.
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "metadata.tencentyun.com",
    }
)


def embedded_ipv4(ip: IpAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries: mapped (::ffff:a.b.c.d), compatible
    (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d), 6to4 (2002:AABB:CCDD::) and Teredo's client."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ()
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in _NAT64) or (ip in _COMPAT and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return tuple(found)


def is_link_local(ip: IpAddress) -> bool:
    """A link-local or cloud-metadata address, in any of its IPv4 or IPv6 spellings."""
    for candidate in (ip, *embedded_ipv4(ip)):
        if candidate in _METADATA or any(candidate in net for net in _LINK_LOCAL):
            return True
    return False


def is_internal(ip: IpAddress) -> bool:
    """Loopback, private, link-local, unspecified or otherwise not global, in any spelling
    (a NAT64 or 6to4 form of 10.0.0.1 is as internal as 10.0.0.1)."""
    return any(not candidate.is_global for candidate in (ip, *embedded_ipv4(ip))) or (
        is_link_local(ip)
    )


def parse(host: str) -> IpAddress | None:
    """An IP literal (brackets and a zone id allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None
