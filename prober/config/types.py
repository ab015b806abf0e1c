"""Annotated field types shared by the config models; each parses once, at load."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import string
import zoneinfo
from typing import Annotated, Any

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, BeforeValidator, SecretStr

from prober.config.conditions import JsonAssertion, StatusSet, parse_json_assertion
from prober.config.conditions import parse_status_set as _parse_status_set
from prober.config.durations import parse_duration, parse_size


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


def _duration_at_least_1s(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < 1:
        raise ValueError(f"{value!r} is too short; the shortest interval is 1s")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
Interval = Annotated[float, BeforeValidator(_duration_at_least_1s)]
Size = Annotated[int, BeforeValidator(parse_size)]


@dataclasses.dataclass(frozen=True, slots=True)
class DownAfter:
    """Confirmation rule: a count of failed checks, or a duration since the first failure."""

    count: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        return f"{self.count} checks" if self.count is not None else f"{self.seconds}s"


def _down_after(value: object) -> DownAfter:
    if isinstance(value, DownAfter):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a count of failed checks cannot be negative")
        return DownAfter(count=value)
    return DownAfter(seconds=parse_duration(value))


DownAfterRule = Annotated[DownAfter, BeforeValidator(_down_after)]
StatusCodes = Annotated[StatusSet, BeforeValidator(_parse_status_set)]


def _json_assertion(value: object) -> JsonAssertion:
    if isinstance(value, JsonAssertion):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an assertion string, got {value!r}")
    return parse_json_assertion(value)


JsonCheck = Annotated[JsonAssertion, BeforeValidator(_json_assertion)]

SLUG = re.compile(r"[a-z0-9_-]+")


def _slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a slug: use lowercase letters, digits, '_' and '-'")
    return value


Slug = Annotated[str, AfterValidator(_slug)]


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'{value!r} is not an IANA time zone such as "Asia/Seoul"') from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_timezone)]


def _host(value: str) -> str:
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


Host = Annotated[str, AfterValidator(_host)]


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port (1-65535)")
    return value


Port = Annotated[int, AfterValidator(_port)]


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """ "127.0.0.1:53", "[::1]:53", "::1" or "10.0.0.1" -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if sep else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f'{text!r} needs a port, as in "127.0.0.1:8080"')
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: {port_text!r} is not a port (1-65535)")
    return host, int(port_text)


def _cron(value: str) -> str:
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a cron expression: {exc}") from None
    return value


CronExpr = Annotated[str, AfterValidator(_cron)]


def _nameserver(value: str) -> str:
    host, _ = parse_host_port(value, default_port=53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f'{value!r}: a nameserver is an IP address, "IP" or "IP:PORT"') from None
    return value


Nameserver = Annotated[str, AfterValidator(_nameserver)]


def _string_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


StringList = Annotated[list[str], BeforeValidator(_string_list)]
SecretMap = dict[str, SecretStr]


def _location_list(value: Any) -> Any:
    """`locations = ["seoul", "frankfurt"]`: a non-empty array of distinct names, kept as a
    tuple (an absent key is `()`, which the loader resolves to every declared location)."""
    if not isinstance(value, list | tuple):
        raise ValueError('expected an array of location names, as in ["seoul", "frankfurt"]')
    if not value:
        raise ValueError("needs at least one location (leave the key out for all of them)")
    repeated = sorted({v for v in value if isinstance(v, str) and value.count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once")
    return tuple(value)


LocationList = Annotated[tuple[Slug, ...], BeforeValidator(_location_list)]

# Character classes a token may draw from, and how many symbols each adds to its alphabet.
_CLASSES = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
    (frozenset("-_"), 2),  # base64url
    (frozenset("+/="), 3),  # base64
    (frozenset(string.punctuation) - frozenset("-_+/="), 27),
)
TOKEN_BITS = 128


def token_bits(text: str) -> float:
    """An upper bound on a token's randomness: its length times log2 of the alphabet its
    character classes span (only hex digits: 16; only digits: 10; any other character
    adds 100). 22 characters of base64url or 32 hex digits reach 128 bits; so does any
    text of 20+ characters mixing cases, digits and punctuation. Fewer than 8 distinct
    characters ("aaaa...", "changemechangeme...") count as 0: a random token of this length
    practically never has so few. A long phrase still passes: no formula can tell, so the
    docs say to make tokens with `openssl rand -hex 16`."""
    chars = set(text)
    if len(chars) < 8:
        return 0.0
    if chars <= set(string.digits):
        alphabet = 10
    elif chars <= set(string.hexdigits) and not (
        chars & set(string.ascii_lowercase) and chars & set(string.ascii_uppercase)
    ):
        alphabet = 16
    else:
        alphabet = sum(size for members, size in _CLASSES if chars & members)
        if chars - set().union(*(members for members, _ in _CLASSES)):
            alphabet += 100
    return len(text) * math.log2(alphabet)


def _strong(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    bits = token_bits(text)
    if bits >= TOKEN_BITS:
        return value
    # never the token itself: its length and the estimate say what is wrong
    how = "make one with `openssl rand -hex 16` (32 hex digits; or 22+ characters of base64url)"
    if text and len(set(text)) < 8:
        raise ValueError(f"too weak for a token: fewer than 8 distinct characters; {how}")
    raise ValueError(
        f"too weak for a token: {len(text)} characters give at most {bits:.0f} of the "
        f"{TOKEN_BITS} random bits it needs; {how}"
    )


StrongSecret = Annotated[SecretStr, AfterValidator(_strong)]
