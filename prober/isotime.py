"""ISO 8601 date-times with an offset as UTC epoch ms, for prober.importcsv.

The common shape `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)` splits at fixed places into three
pieces (text[:13] the hour, text[13:19] the clock within it, text[19:] the fraction minus the
offset) whose sum is the time: the importer caches each piece. Each piece is checked whole,
so any cached pieces put together make a valid time. Other shapes go through
datetime.fromisoformat.
"""

from __future__ import annotations

import datetime as dt
import re

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EPOCH_DAY = EPOCH.toordinal()
DAY_MS = 86_400_000
MIN_MS = (dt.date.min.toordinal() - EPOCH_DAY) * DAY_MS  # 0001-01-01T00:00:00Z
MAX_MS = (dt.date.max.toordinal() + 1 - EPOCH_DAY) * DAY_MS - 1  # 9999-12-31T23:59:59.999Z

_HOUR_CLOCK = re.compile(  # text[:13] is the hour, text[13:19] the clock within it
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])"
)
_REST = re.compile(r"(?:\.([0-9]{1,6}))?(?:Z|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))")


def common_pieces(text: str) -> tuple[int, int, int] | None:
    """The common shape in three pieces of ms: the hour as if it were UTC (text[:13]), the
    clock within it (text[13:19]), the fraction minus the offset (text[19:]). Their sum is
    UTC epoch ms; None for other shapes. Fractions are floored to the ms, as fromisoformat
    then // 1 ms: .0009 -> 0, and 1969-12-31T23:59:59.9995Z -> -1."""
    match = _HOUR_CLOCK.match(text)
    rest = None if match is None else _rest_ms(text[19:])
    if match is None or rest is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    try:  # days from the civil date; date() refuses February 30th
        days = dt.date(year, month, day).toordinal() - EPOCH_DAY
    except ValueError:
        return None
    return days * DAY_MS + hour * 3_600_000, minute * 60_000 + second * 1000, rest


def _rest_ms(text: str) -> int | None:
    """The fraction minus the offset in ms (".250+09:00" -> 250 - 32_400_000); None unless
    the text is an optional fraction of 1 to 6 digits, then Z or ±HH:MM."""
    match = _REST.fullmatch(text)
    if match is None:
        return None
    fraction, sign, offset_h, offset_m = match.groups()
    offset_ms = 0
    if sign is not None:
        offset_ms = (int(offset_h) * 60 + int(offset_m)) * 60_000 * (-1 if sign == "-" else 1)
    return int((fraction or "0").ljust(6, "0")) // 1000 - offset_ms


def isoformat_ms(text: str) -> int:
    """UTC epoch ms through datetime.fromisoformat: every ISO 8601 shape it reads. Raises
    ValueError whose message completes "timestamp: '<text>' ..." for the user."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is not an ISO 8601 date-time with an offset") from None
    if moment.tzinfo is None:
        raise ValueError("has no UTC offset; add Z or +HH:MM")
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)
