"""Reading a DNS reply: follow CNAMEs in the answer, render records as text, match values.

Pure functions over a parsed `dns.message.Message`; no I/O. Matching rules:
names compare case-insensitively without the trailing dot; TXT strings are joined and
compared exactly (a quoted expected value is unquoted); an MX matches as "10 mail.x" or
as the exchange "mail.x"; SRV / CAA / SOA compare against the record's text form.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TXT
import dns.rrset

MAX_CNAME_HOPS = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    values: list[str]  # the records of the asked type, as text
    cnames: list[str]  # the CNAME chain followed to reach them (targets, in order)


def read_answer(
    response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> Answer:
    """The records of `rdtype` for `qname`, following CNAMEs within the answer section."""
    name, seen = qname, {qname}
    chain: list[str] = []
    for _ in range(MAX_CNAME_HOPS):
        rrset = _find(response, name, rdtype)
        if rrset is not None:
            return Answer([render(rdata) for rdata in rrset], chain)
        cname = (
            None if rdtype == dns.rdatatype.CNAME else _find(response, name, dns.rdatatype.CNAME)
        )
        if cname is None:
            break
        target = next(iter(cname))
        assert isinstance(target, dns.rdtypes.ANY.CNAME.CNAME)
        name = target.target
        chain.append(_strip_dot(name.to_text()))
        if name in seen:  # a loop: report what we followed, judge as no records
            break
        seen.add(name)
    return Answer([], chain)


def _find(
    response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    return response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)


def render(rdata: dns.rdata.Rdata) -> str:
    """Text for people and for matching: TXT joined and unquoted, names without the dot."""
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return b"".join(rdata.strings).decode("utf-8", "backslashreplace")
    return " ".join(_strip_dot(token) for token in rdata.to_text().split())


def missing(record: str, expect: list[str], values: list[str]) -> list[str]:
    """The expected values not present among the answer's values."""
    have: set[str] = set()
    for value in values:
        have.add(_key(record, value))
        if record == "MX":  # "10 mail.x" also matches as just "mail.x"
            have.add(_key(record, value.split()[-1]))
    return [
        want
        for want in expect
        if _key(record, _unquote(want) if record == "TXT" else want) not in have
    ]


def _key(record: str, text: str) -> str:
    if record == "TXT":
        return text
    if record in ("A", "AAAA"):
        try:
            return ipaddress.ip_address(text.strip()).compressed
        except ValueError:
            return text.strip().lower()
    return " ".join(_strip_dot(token.strip('"')).lower() for token in text.split())


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _strip_dot(text: str) -> str:
    return text[:-1] if text.endswith(".") and text != "." else text
