"""The dns check against a real dnspython server on 127.0.0.1; never the system resolver."""

from __future__ import annotations

import time
from typing import Any

import pytest

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.results import CheckResult, Outcome
from tests.support.dnsserver import Behaviour, DnsServer
from tests.support.monitors import monitor


def dns_monitor(server: DnsServer, query: str, **fields: Any) -> Any:
    fields.setdefault("nameservers", [server.address])
    fields.setdefault("timeout", "2s")
    fields.setdefault("interval", "5s")
    return monitor("dns", query=query, **fields)


async def run(shared: Shared, spec: Any) -> tuple[CheckResult, float]:
    started = time.monotonic()
    result = await run_check(spec, shared)
    return result, time.monotonic() - started


async def test_a_record_up(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("www.example.test", "A", "127.0.0.1", "127.0.0.2")
    spec = dns_monitor(dns_server, "www.example.test", expect=["127.0.0.2"])
    result, _ = await run(shared, spec)
    assert result.outcome is Outcome.UP, result.error
    assert result.error is None
    assert sorted(result.details["answers"]) == ["127.0.0.1", "127.0.0.2"]
    assert result.details["nameserver"] == dns_server.address
    assert result.details["transport"] == "udp"
    assert result.phases.dns_ms is not None
    assert result.latency_ms > 0
    assert [(a.name, a.ok) for a in result.assertions] == [("rcode", True), ("A records", True)]


async def test_wrong_answer_shows_saw_and_wanted(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("www.example.test", "A", "1.2.3.4")
    spec = dns_monitor(dns_server, "www.example.test", expect="127.0.0.1")
    result, _ = await run(shared, spec)
    assert result.outcome is Outcome.DOWN
    assert result.error == "saw [1.2.3.4], wanted 127.0.0.1 (missing 127.0.0.1)"
    records = result.assertions[1]
    assert (records.name, records.ok, records.saw, records.wanted) == (
        "A records",
        False,
        "[1.2.3.4]",
        "127.0.0.1",
    )


async def test_all_expected_values_must_be_present(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("www.example.test", "A", "127.0.0.1")
    spec = dns_monitor(dns_server, "www.example.test", expect=["127.0.0.1", "127.0.0.9"])
    result, _ = await run(shared, spec)
    assert result.outcome is Outcome.DOWN
    assert result.error == "saw [127.0.0.1], wanted 127.0.0.1, 127.0.0.9 (missing 127.0.0.9)"


async def test_no_expect_only_judges_rcode(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("www.example.test", "A", "1.2.3.4")
    result, _ = await run(shared, dns_monitor(dns_server, "www.example.test"))
    assert result.outcome is Outcome.UP
    assert result.details["answers"] == ["1.2.3.4"]


# record, zone values, a matching expect, a missing expect, the text shown for the answer
RECORDS = [
    ("AAAA", ["::1"], "0:0::1", "2001:db8::1", "::1"),
    (
        "CNAME",
        ["target.example.test."],
        "TARGET.example.test.",
        "other.example.test",
        "target.example.test",
    ),
    (
        "MX",
        ["10 mail.example.test."],
        "10 mail.example.test",
        "20 mail.example.test",
        "10 mail.example.test",
    ),
    ("NS", ["ns1.example.test."], "NS1.Example.Test", "ns9.example.test", "ns1.example.test"),
    (
        "SOA",
        ["ns1.example.test. hostmaster.example.test. 2024010101 7200 3600 1209600 300"],
        "ns1.example.test. hostmaster.example.test. 2024010101 7200 3600 1209600 300",
        "ns1.example.test hostmaster.example.test 2024010102 7200 3600 1209600 300",
        "ns1.example.test hostmaster.example.test 2024010101 7200 3600 1209600 300",
    ),
    (
        "CAA",
        ['0 issue "letsencrypt.org"'],
        "0 issue letsencrypt.org",
        '0 issue "pki.goog"',
        '0 issue "letsencrypt.org"',
    ),
    (
        "SRV",
        ["10 5 5060 sip.example.test."],
        "10 5 5060 sip.example.test",
        "10 5 5061 sip.example.test",
        "10 5 5060 sip.example.test",
    ),
    ("TXT", ['"v=spf1 " "-all"'], '"v=spf1 -all"', "v=spf1 ~all", "v=spf1 -all"),
]


@pytest.mark.parametrize(
    ("record", "zone", "good", "bad", "shown"), RECORDS, ids=[r[0] for r in RECORDS]
)
async def test_record_types(
    dns_server: DnsServer,
    shared: Shared,
    record: str,
    zone: list[str],
    good: str,
    bad: str,
    shown: str,
) -> None:
    dns_server.add("rr.example.test", record, *zone)
    result, _ = await run(
        shared, dns_monitor(dns_server, "rr.example.test", record=record, expect=good)
    )
    assert result.outcome is Outcome.UP, result.error
    assert result.details["answers"] == [shown]
    assert result.assertions[1].name == f"{record} records"

    result, _ = await run(
        shared, dns_monitor(dns_server, "rr.example.test", record=record, expect=bad)
    )
    assert result.outcome is Outcome.DOWN
    assert result.error == f"saw [{shown}], wanted {bad} (missing {bad})"


async def test_mx_matches_the_exchange_alone(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("example.test", "MX", "10 mx1.example.test.", "20 mx2.example.test.")
    spec = dns_monitor(
        dns_server, "example.test", record="MX", expect=["mx2.example.test", "10 mx1.example.test"]
    )
    result, _ = await run(shared, spec)
    assert result.outcome is Outcome.UP, result.error


async def test_ptr_by_name_and_by_address(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("1.0.0.127.in-addr.arpa", "PTR", "host.example.test.")
    for query in ("1.0.0.127.in-addr.arpa", "127.0.0.1"):
        spec = dns_monitor(dns_server, query, record="PTR", expect="host.example.test")
        result, _ = await run(shared, spec)
        assert result.outcome is Outcome.UP, result.error
        assert result.details["answers"] == ["host.example.test"]
    spec = dns_monitor(dns_server, "127.0.0.1", record="PTR", expect="other.example.test")
    result, _ = await run(shared, spec)
    assert (
        result.error
        == "saw [host.example.test], wanted other.example.test (missing other.example.test)"
    )


async def test_a_query_follows_a_cname_chain(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("www.example.test", "CNAME", "edge.example.test.")
    dns_server.add("edge.example.test", "CNAME", "pop1.cdn.test.")
    dns_server.add("pop1.cdn.test", "A", "127.0.0.7")
    result, _ = await run(shared, dns_monitor(dns_server, "www.example.test", expect="127.0.0.7"))
    assert result.outcome is Outcome.UP, result.error
    assert result.details["answers"] == ["127.0.0.7"]
    assert result.details["cnames"] == ["edge.example.test", "pop1.cdn.test"]

    spec = dns_monitor(dns_server, "www.example.test", expect="127.0.0.1")
    result, _ = await run(shared, spec)
    assert result.error == "saw [127.0.0.7], wanted 127.0.0.1 (missing 127.0.0.1)"


async def test_cname_to_nowhere(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("www.example.test", "CNAME", "gone.example.test.")
    spec = dns_monitor(dns_server, "www.example.test", expect="127.0.0.1", expect_rcode="NXDOMAIN")
    result, _ = await run(shared, spec)
    assert result.outcome is Outcome.DOWN
    assert result.error == "no A records in the answer (CNAME to gone.example.test)"


async def test_nxdomain_is_down(dns_server: DnsServer, shared: Shared) -> None:
    result, _ = await run(
        shared, dns_monitor(dns_server, "missing.example.test", expect="127.0.0.1")
    )
    assert result.outcome is Outcome.DOWN
    assert result.error == "rcode NXDOMAIN, wanted NOERROR"
    assert (result.assertions[0].saw, result.assertions[0].wanted) == ("NXDOMAIN", "NOERROR")


async def test_nxdomain_expected_is_up(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.behave("retired.example.test", Behaviour.NXDOMAIN)
    spec = dns_monitor(dns_server, "retired.example.test", expect_rcode="NXDOMAIN")
    result, _ = await run(shared, spec)
    assert result.outcome is Outcome.UP, result.error
    assert result.details["answers"] == []


async def test_noerror_expected_but_name_exists_when_nxdomain_wanted(
    dns_server: DnsServer, shared: Shared
) -> None:
    dns_server.add("retired.example.test", "A", "127.0.0.1")
    result, _ = await run(
        shared, dns_monitor(dns_server, "retired.example.test", expect_rcode="NXDOMAIN")
    )
    assert result.outcome is Outcome.DOWN
    assert result.error == "rcode NOERROR, wanted NXDOMAIN"


@pytest.mark.parametrize("behaviour", [Behaviour.SERVFAIL, Behaviour.REFUSED])
async def test_server_errors(dns_server: DnsServer, shared: Shared, behaviour: Behaviour) -> None:
    dns_server.add("www.example.test", "A", "127.0.0.1")
    dns_server.behave("www.example.test", behaviour)
    result, _ = await run(shared, dns_monitor(dns_server, "www.example.test", expect="127.0.0.1"))
    assert result.outcome is Outcome.DOWN
    assert result.error == f"rcode {behaviour.name}, wanted NOERROR"
    assert dns_server.transports() == ["udp"]  # it answered: no other nameserver, no retry


async def test_noerror_no_data(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("www.example.test", "A", "127.0.0.1")
    dns_server.behave("www.example.test", Behaviour.NODATA)
    result, _ = await run(shared, dns_monitor(dns_server, "www.example.test", expect="127.0.0.1"))
    assert result.outcome is Outcome.DOWN
    assert result.error == "no A records in the answer"
    assert result.assertions[1].saw == "[]"


async def test_name_with_other_types_only_is_no_data(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("www.example.test", "A", "127.0.0.1")
    spec = dns_monitor(dns_server, "www.example.test", record="AAAA", expect="::1")
    result, _ = await run(shared, spec)
    assert result.error == "no AAAA records in the answer"


async def test_no_answer_at_all_is_down_within_the_deadline(
    dns_server: DnsServer, shared: Shared
) -> None:
    dns_server.behave("www.example.test", Behaviour.DROP)
    spec = dns_monitor(dns_server, "www.example.test", timeout="1s", expect="127.0.0.1")
    result, elapsed = await run(shared, spec)
    assert result.outcome is Outcome.DOWN
    assert elapsed < 1 + 1
    # dnspython's own timeout and the runner's deadline end together; either words are fine
    assert result.error in (
        "timed out after 1s resolving the name",
        f"no nameserver answered ({dns_server.address}: no reply within 1s)",
    )
    assert dns_server.transports() == ["udp"]


async def test_second_nameserver_when_the_first_never_answers(
    dns_server: DnsServer, shared: Shared
) -> None:
    dns_server.add("www.example.test", "A", "127.0.0.1")
    async with DnsServer() as silent:
        silent.behave("www.example.test", Behaviour.DROP)
        spec = dns_monitor(
            dns_server,
            "www.example.test",
            nameservers=[silent.address, dns_server.address],
            timeout="2s",
            expect="127.0.0.1",
        )
        result, elapsed = await run(shared, spec)
    assert result.outcome is Outcome.UP, result.error
    assert result.details["nameserver"] == dns_server.address
    assert 0.9 < elapsed < 2 + 1  # the first got half of the 2s budget
    assert silent.transports() == ["udp"]
    assert dns_server.transports() == ["udp"]


async def test_ip_port_nameserver(dns_server: DnsServer, shared: Shared) -> None:
    assert dns_server.port != 53
    dns_server.add("www.example.test", "A", "127.0.0.1")
    spec = dns_monitor(dns_server, "www.example.test", nameservers=[f"127.0.0.1:{dns_server.port}"])
    result, _ = await run(shared, spec)
    assert result.outcome is Outcome.UP, result.error
    assert result.details["nameserver"] == f"127.0.0.1:{dns_server.port}"


async def test_truncated_reply_falls_back_to_tcp(dns_server: DnsServer, shared: Shared) -> None:
    dns_server.add("big.example.test", "TXT", *(f'"record {i:03d} {"x" * 60}"' for i in range(40)))
    dns_server.behave("big.example.test", Behaviour.TRUNCATE)
    spec = dns_monitor(
        dns_server, "big.example.test", record="TXT", expect="record 039 " + "x" * 60
    )
    result, _ = await run(shared, spec)
    assert result.outcome is Outcome.UP, result.error
    assert result.details["transport"] == "tcp"
    assert len(result.details["answers"]) == 40
    assert dns_server.transports() == ["udp", "tcp"]
