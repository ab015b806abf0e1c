"""DNS check: one query to the configured nameservers in order, judged on rcode and records.

UDP first, TCP when the reply is truncated. The next nameserver is asked only when one did
not answer at all; each attempt gets an equal share of the time left before the deadline.
Without configured nameservers, the ones in /etc/resolv.conf are asked directly (never
through the system resolver or aiohttp's cache).
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any, NamedTuple

import dns.asyncquery
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

from prober.checks import netguard
from prober.checks.context import CheckContext
from prober.checks.dnsanswer import missing, read_answer
from prober.config.durations import format_duration
from prober.config.monitors import DnsMonitor
from prober.config.types import parse_host_port
from prober.results import AssertionResult, CheckResult, Outcome, down

EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: no IP fragmentation; bigger -> TC -> TCP


class Nameserver(NamedTuple):
    host: str
    port: int

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


async def check(spec: DnsMonitor, ctx: CheckContext) -> CheckResult:
    ctx.timer.enter("dns")
    servers = [Nameserver(*parse_host_port(ns, default_port=53)) for ns in spec.nameservers]
    if not servers and not (servers := _system_nameservers()):
        return CheckResult(
            Outcome.UNKNOWN,
            ctx.timer.elapsed_ms(),
            error="no nameservers configured and none found in /etc/resolv.conf",
        )
    try:
        query = _make_query(spec)
    except dns.exception.DNSException as exc:
        return down(f"cannot query {spec.query!r}: {exc}", ctx.timer.elapsed_ms())
    failures: list[str] = []
    if spec.nameservers:  # the system's own resolvers (GCP's is 169.254.169.254) are trusted
        servers, failures = _guarded(servers, spec.allow_link_local)
        if not servers:
            return down("; ".join(failures), ctx.timer.elapsed_ms(), details={"answers": []})
    for i, server in enumerate(servers):
        budget = ctx.remaining() / (len(servers) - i)
        try:
            response, transport = await _exchange(query, server, budget, ctx)
        except dns.exception.Timeout:
            failures.append(f"{server.label}: no reply within {format_duration(round(budget, 2))}")
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            failures.append(f"{server.label}: {_reason(exc)}")
        else:
            ctx.timer.done()  # an answer came: the dns phase ended
            details = {"nameserver": server.label, "transport": transport}
            return _judge(spec, query, response, details, ctx)
    return down(
        f"no nameserver answered ({'; '.join(failures)})",
        ctx.timer.elapsed_ms(),
        phases=ctx.timer.phases(),
        details={"answers": []},
    )


def _guarded(
    servers: list[Nameserver], allow_link_local: bool
) -> tuple[list[Nameserver], list[str]]:
    """The configured nameservers the guard lets through, and its refusals of the others."""
    allowed: list[Nameserver] = []
    refused: list[str] = []
    for server in servers:
        ip = ipaddress.ip_address(server.host.split("%")[0])
        if (why := netguard.refusal(ip, allow_link_local)) is not None:
            refused.append(why)
        else:
            allowed.append(server)
    return allowed, refused


def _system_nameservers() -> list[Nameserver]:
    try:
        resolver = dns.resolver.Resolver()  # reads /etc/resolv.conf; queries go out below
    except dns.resolver.NoResolverConfiguration:
        return []
    return [
        Nameserver(ns, resolver.nameserver_ports.get(ns, resolver.port))
        for ns in resolver.nameservers
        if isinstance(ns, str) and dns.inet.is_address(ns)
    ]


def _make_query(spec: DnsMonitor) -> dns.message.QueryMessage:
    qname = dns.name.from_text(spec.query)
    if spec.record == "PTR":  # "PTR 192.0.2.1" means its in-addr.arpa name
        with contextlib.suppress(ValueError):
            qname = dns.reversename.from_address(str(ipaddress.ip_address(spec.query)))
    return dns.message.make_query(qname, spec.record, use_edns=0, payload=EDNS_PAYLOAD)


async def _exchange(
    query: dns.message.Message, server: Nameserver, budget: float, ctx: CheckContext
) -> tuple[dns.message.Message, str]:
    """One nameserver's reply: over UDP, or over TCP when the UDP reply was truncated."""
    until = ctx.clock.monotonic() + budget
    response = await dns.asyncquery.udp(
        query, server.host, timeout=budget, port=server.port, ignore_unexpected=True
    )
    if not response.flags & dns.flags.TC:
        return response, "udp"
    left = max(0.0, until - ctx.clock.monotonic())
    return await dns.asyncquery.tcp(query, server.host, timeout=left, port=server.port), "tcp"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, EOFError):
        return "closed the connection without a reply"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"unreadable reply: {exc}"


def _judge(
    spec: DnsMonitor,
    query: dns.message.Message,
    response: dns.message.Message,
    details: dict[str, str],
    ctx: CheckContext,
) -> CheckResult:
    rcode = dns.rcode.to_text(response.rcode())
    rdtype = dns.rdatatype.from_text(spec.record)
    answer = read_answer(response, query.question[0].name, rdtype)
    assertions = [AssertionResult("rcode", rcode == spec.expect_rcode, rcode, spec.expect_rcode)]
    error = None if rcode == spec.expect_rcode else f"rcode {rcode}, wanted {spec.expect_rcode}"
    if spec.expect:
        absent = missing(spec.record, spec.expect, answer.values)
        saw, wanted = f"[{', '.join(answer.values)}]", ", ".join(spec.expect)
        assertions.append(AssertionResult(f"{spec.record} records", not absent, saw, wanted))
        if absent and error is None:
            if not answer.values:
                via = f" (CNAME to {answer.cnames[-1]})" if answer.cnames else ""
                error = f"no {spec.record} records in the answer{via}"
            else:
                error = f"saw {saw}, wanted {wanted} (missing {', '.join(absent)})"
    seen: dict[str, Any] = {"answers": answer.values, **details}
    if answer.cnames:
        seen["cnames"] = answer.cnames
    return CheckResult(
        Outcome.DOWN if error else Outcome.UP,
        ctx.timer.elapsed_ms(),
        error=error,
        phases=ctx.timer.phases(),
        assertions=tuple(assertions),
        details=seen,
    )
