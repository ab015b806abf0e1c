"""Time as sets of half-open millisecond intervals, local calendar bounds, and the uptime
accounting of docs/REFERENCE.md. Pure: windows and `now` are passed in.

Instants are UTC epoch milliseconds (ints), so the set algebra is exact; datetimes appear
only at the edges. Time trap: subtracting two aware datetimes that share a tzinfo gives the
*wall-clock* difference (a Berlin October is 744 h on the wall, 745 h elapsed), so lengths
are always taken in milliseconds.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import heapq
import operator
import re
from collections.abc import Iterable, Iterator

Pair = tuple[int, int]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


class Spans:
    """An immutable set of [start_ms, end_ms) intervals, kept normalised: sorted, disjoint,
    non-adjacent (touching intervals merge) and without empty ones, so equal sets compare
    equal. Operations walk both operands once: reports combine thousands of spans."""

    __slots__ = ("_pairs",)
    _pairs: tuple[Pair, ...]

    def __init__(self, pairs: Iterable[Pair] = ()) -> None:
        """Any pairs, in any order; a pair with end <= start is empty and dropped."""
        self._pairs = _coalesce(sorted(pairs))

    @classmethod
    def of(cls, pairs: Iterable[Pair]) -> Spans:
        return cls(pairs)

    @classmethod
    def empty(cls) -> Spans:
        return _EMPTY

    @classmethod
    def _normal(cls, pairs: tuple[Pair, ...]) -> Spans:
        """Wraps pairs that are already normalised, skipping the sort."""
        spans = object.__new__(cls)
        spans._pairs = pairs
        return spans

    def __or__(self, other: Spans) -> Spans:
        return Spans._normal(_coalesce(heapq.merge(self._pairs, other._pairs)))

    def __and__(self, other: Spans) -> Spans:
        a, b = self._pairs, other._pairs
        out: list[Pair] = []
        i = j = 0
        while i < len(a) and j < len(b):
            start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if start < end:
                out.append((start, end))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return Spans._normal(tuple(out))

    def __sub__(self, other: Spans) -> Spans:
        cuts = other._pairs
        out: list[Pair] = []
        j = 0
        for start, end in self._pairs:
            while j < len(cuts) and cuts[j][1] <= start:
                j += 1
            # cuts[j] may reach into the next interval too, so it stays for the next round.
            k = j
            while k < len(cuts) and cuts[k][0] < end:
                if cuts[k][0] > start:
                    out.append((start, cuts[k][0]))
                start = max(start, cuts[k][1])
                k += 1
            if start < end:
                out.append((start, end))
        return Spans._normal(tuple(out))

    def clip(self, start: int, end: int) -> Spans:
        """The part inside [start, end); binary search, so a day of a long history is cheap."""
        if end <= start:
            return _EMPTY
        pairs = self._pairs
        i = bisect.bisect_right(pairs, start, key=operator.itemgetter(1))
        out: list[Pair] = []
        while i < len(pairs) and pairs[i][0] < end:
            out.append((max(pairs[i][0], start), min(pairs[i][1], end)))
            i += 1
        return Spans._normal(tuple(out))

    def total(self) -> int:
        """Milliseconds covered."""
        return sum(end - start for start, end in self._pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spans):
            return NotImplemented
        return self._pairs == other._pairs

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __repr__(self) -> str:
        return f"Spans({list(self._pairs)!r})"


def _coalesce(pairs: Iterable[Pair]) -> tuple[Pair, ...]:
    """Pairs sorted by start -> normalised: overlapping or touching ones merged, empty dropped."""
    out: list[Pair] = []
    for start, end in pairs:
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return tuple(out)


_EMPTY = Spans._normal(())


def coverage(
    samples: Iterable[tuple[int, bool]], max_cover_ms: int, until_ms: int | None = None
) -> Spans:
    """The time known results cover: (ts_ms, known) samples in time order, each covering
    [ts, min(next ts, ts + max_cover_ms)); the last one stops at until_ms too ("now").
    An unknown result covers nothing but still ends the coverage of the one before it."""
    out: list[Pair] = []
    previous: tuple[int, bool] | None = None
    for ts, known in samples:
        if previous is not None and previous[1]:
            out.append((previous[0], min(ts, previous[0] + max_cover_ms)))
        previous = (ts, known)
    if previous is not None and previous[1]:
        end = previous[0] + max_cover_ms
        out.append((previous[0], end if until_ms is None else min(end, until_ms)))
    return Spans.of(out)


@dataclasses.dataclass(frozen=True, slots=True)
class Accounting:
    """One window's uptime figures, in the report's units: seconds, unrounded."""

    window_seconds: float
    maintenance_seconds: float
    unknown_seconds: float
    monitored_seconds: float
    downtime_seconds: float
    uptime_percent: float | None  # None when nothing was monitored
    error_budget_seconds: float
    error_budget_remaining_seconds: float
    sla_met: bool | None  # None when uptime_percent is None


def account(
    window: Pair, known: Spans, incidents: Spans, maintenance: Spans, sla_target: float
) -> Accounting:
    """docs/REFERENCE.md "Accounting a window". `known` is the time covered by up, degraded or
    down results (the rest is unknown), `incidents` the union of [start, end or now).
    Maintenance wins over unknown, and downtime counts only known, unmaintained time."""
    start, end = window
    whole = Spans.of([window])
    maintained = maintenance.clip(start, end)
    seen = known.clip(start, end)
    unknown_ms = (whole - seen - maintained).total()
    maintenance_ms = maintained.total()
    monitored_ms = whole.total() - maintenance_ms - unknown_ms
    down_ms = (incidents.clip(start, end) & (seen - maintained)).total()
    # Percent from integers, one division: exactly 99.9 when 0.1 % was down, so a target
    # of 99.9 is met rather than missed by a rounding error.
    uptime = 100 * (monitored_ms - down_ms) / monitored_ms if monitored_ms else None
    budget = (1 - sla_target / 100) * monitored_ms / 1000
    return Accounting(
        window_seconds=whole.total() / 1000,
        maintenance_seconds=maintenance_ms / 1000,
        unknown_seconds=unknown_ms / 1000,
        monitored_seconds=monitored_ms / 1000,
        downtime_seconds=down_ms / 1000,
        uptime_percent=uptime,
        error_budget_seconds=budget,
        error_budget_remaining_seconds=budget - down_ms / 1000,
        sla_met=None if uptime is None else uptime >= sla_target,
    )


def to_ms(moment: dt.datetime) -> int:
    """UTC epoch milliseconds (floored), in integer arithmetic so microseconds never round."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; instants must be aware")
    return (moment - _EPOCH) // _MS


def from_ms(ms: int, tz: dt.tzinfo) -> dt.datetime:
    """The aware local time of an instant; going through UTC sets `fold` right in a repeat."""
    return (_EPOCH + ms * _MS).astimezone(tz)


def local_midnight(day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    """The instant `day` starts in tz. A midnight skipped by a DST change (America/Santiago
    springs from 24:00 to 01:00) reads with the offset from before the gap (fold=0), which
    is the instant the day really starts; the round trip writes it as that instant's wall
    time (01:00-03:00)."""
    wall = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    return wall.astimezone(dt.UTC).astimezone(tz)


def month_bounds(month: str, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    """ "YYYY-MM" -> local midnight on the 1st .. local midnight on the 1st of the next month.
    DST months are an hour short or long (743 / 745 h; Lord Howe moves by 30 minutes)."""
    match = _MONTH.fullmatch(month)
    try:
        if match is None:
            raise ValueError
        year, number = int(match[1]), int(match[2])
        first = dt.date(year, number, 1)
        following = dt.date(year + number // 12, number % 12 + 1, 1)
    except ValueError:
        raise ValueError(f"{month!r} is not a month: use YYYY-MM, e.g. 2026-03") from None
    return local_midnight(first, tz), local_midnight(following, tz)


def day_bounds(day: dt.date, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    """Local midnight .. the next local midnight: 23, 24 or 25 hours (23.5 on Lord Howe)."""
    return local_midnight(day, tz), local_midnight(day + dt.timedelta(days=1), tz)


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """The dates in [start, end), half-open like every other range here."""
    return [start + dt.timedelta(days=n) for n in range((end - start).days)]
