"""Hourly and daily rollups of results: counts per outcome, latency and its histogram.

Reports and the status page read these instead of raw results, which `prune` deletes
after settings.retention_days; rollups are kept for ever (a year of one monitor is 8,760
small rows). An hour's rollup is always recomputed from all of its raw results, never
patched, so recomputing is idempotent; `prune` therefore deletes whole hours only and
rolls them up in the transaction that deletes them.

Latency (up and degraded results only) is kept as count, sum, min, max and a histogram
of `bucket` buckets (below): a percentile read from it is within 0.4 % (1/256) of the
exact nearest rank, and the same before and after prune.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import math
import operator
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from prober import timeline
from prober.results import Outcome
from prober.store.engine import Connection
from prober.store.tables import OUTCOME_CODES

HOUR_MS = 3_600_000

# Latency buckets: HdrHistogram's log-linear layout over integer microseconds. A latency
# of up to 8 bits (< 256 us) is its own bucket, exactly. A longer one keeps its top 8 bits:
# with s = bit_length - 8 low bits dropped, the bucket holds the 2^s values from m * 2^s,
# m in [128, 256), so it is less than 1/128 of its values wide, and its middle (the value
# a percentile reports) is within 1/256 (0.39 %) of each of them. The index s * 128 + m
# numbers the buckets 0, 1, 2, ... in order of value (0..7295 for any 64-bit latency),
# 128 per doubling, about 425 per decade: 100 ms is bucket 1347, 30 s is 2404.
SUB_BITS = 7
_MAX_SHIFT = 63 - SUB_BITS - 1  # a 63-bit value drops 55 bits


def _bucket_case(lo: int, hi: int) -> str:
    """`bucket` in SQL for a latency whose shift s is in [lo, hi]: a binary search over the
    powers of two (6 comparisons, not up to 56 in a row), integer operators only: no math
    functions (ln and pow are a compile-time option many SQLite builds lack), no text
    conversion. NULL falls through every comparison and stays NULL."""
    if lo == hi:
        return f"({lo << SUB_BITS} + (latency_us >> {lo}))" if lo else "latency_us"
    mid = (lo + hi) // 2
    below = 1 << (mid + SUB_BITS + 1)  # latency_us < below: a shift of at most mid
    return (
        f"CASE WHEN latency_us < {below} THEN {_bucket_case(lo, mid)}"
        f" ELSE {_bucket_case(mid + 1, hi)} END"
    )


BUCKET_SQL = f"({_bucket_case(0, _MAX_SHIFT)})"

_UP, _DEGRADED, _DOWN, _UNKNOWN = (
    OUTCOME_CODES[o] for o in (Outcome.UP, Outcome.DEGRADED, Outcome.DOWN, Outcome.UNKNOWN)
)
TIMED_CODES = (_UP, _DEGRADED)  # the outcomes whose latency counts
_COLUMNS = "up, degraded, down, unknown, lat_count, lat_sum_us, lat_min_us, lat_max_us, hist"
_FIELDS = _COLUMNS.split(", ")[:-1]  # Rollup's fields but hist

# One row per (hour, outcome), the hour's buckets as "12,15,120,12" for Python to count.
# Measured on 4.32 M results: GROUP BY hour, bucket (one row per bucket) took twice as long.
_HOUR_GROUPS = f"""
SELECT ts_ms - ts_ms % {HOUR_MS} AS hour_ms, outcome, count(*), count(latency_us),
  sum(latency_us), min(latency_us), max(latency_us), group_concat({BUCKET_SQL})
FROM result
WHERE monitor_id = ? AND ts_ms >= ? AND ts_ms < ? AND location_id = ?
GROUP BY hour_ms, outcome
ORDER BY hour_ms
"""  # noqa: S608  (constants only; values are bound)
_INSERT_HOUR = (
    f"INSERT OR REPLACE INTO rollup_hour (monitor_id, location_id, hour_ms, {_COLUMNS})"  # noqa: S608
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DAY = (
    f"INSERT OR REPLACE INTO rollup_day (monitor_id, location_id, day, {_COLUMNS})"  # noqa: S608
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def bucket(latency_us: int) -> int:
    """The histogram bucket of a latency in microseconds (>= 0); BUCKET_SQL in Python."""
    shift = max(0, latency_us.bit_length() - SUB_BITS - 1)
    return (shift << SUB_BITS) + (latency_us >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest latency (us) of a bucket: `bucket` undone."""
    shift = max(0, (index >> SUB_BITS) - 1)
    low = (index - (shift << SUB_BITS)) << shift
    return low, low + (1 << shift) - 1


def bucket_value_ms(index: int) -> float:
    """What a percentile falling in the bucket reports (ms): the bucket's middle."""
    low, high = bucket_bounds(index)
    return (low + high) / 2000


def nearest_ranks(total: int, ps: Sequence[float]) -> list[int]:
    """The nearest rank of each percentile among `total` values: ceil(p/100 x total), at
    least 1. The rank is computed from p's decimal text, so 99.9 % of 1000 is rank 999."""
    ranks = []
    for p in ps:
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} is not in 0..100")
        if float(p).is_integer():  # the common case, in integers: no Fraction needed
            ranks.append(max(1, -(-int(p) * total // 100)))
        else:
            ranks.append(max(1, math.ceil(Fraction(str(p)) * total / 100)))
    return ranks


@dataclasses.dataclass(slots=True)
class Histogram:
    """Counts per latency bucket (`bucket` indexes)."""

    counts: dict[int, int] = dataclasses.field(default_factory=dict)

    def add(self, bucket: int, n: int = 1) -> None:
        if n:
            self.counts[bucket] = self.counts.get(bucket, 0) + n

    def merge(self, other: Histogram) -> None:
        counts = self.counts  # inline, no add(): a month merges some 10,000 buckets
        for index, n in other.counts.items():
            counts[index] = counts.get(index, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float) -> float | None:
        """Nearest rank: the middle (ms) of the bucket of the ceil(p/100 x N)-th smallest
        latency, within 0.4 % of that latency; None if empty."""
        return self.percentiles(p)[0]

    def percentiles(self, *ps: float) -> list[float | None]:
        """Several percentiles in one pass over the buckets."""
        if not self.counts:
            nearest_ranks(0, ps)  # the range check
            return [None] * len(ps)
        return [bucket_value_ms(b) for b, _ in self.locate(nearest_ranks(self.total, ps))]

    def locate(self, ranks: Sequence[int]) -> list[tuple[int, int]]:
        """For each rank (1..total), its bucket and how many latencies lie below that
        bucket."""
        found: list[tuple[int, int] | None] = [None] * len(ranks)
        seen = 0
        for index in sorted(self.counts):
            below, seen = seen, seen + self.counts[index]
            for i, rank in enumerate(ranks):
                if found[i] is None and seen >= rank:
                    found[i] = (index, below)
        if None in found:
            raise ValueError(f"ranks {list(ranks)} are not all in 1..{seen}")
        return [f for f in found if f is not None]

    def to_json(self) -> str:
        """A JSON array in bucket order: the first bucket, its count, then the gap to each
        next bucket and its count: {930: 1, 1052: 2} is [930,1,122,2]. Half the bytes of
        an object keyed by bucket, and a day row reads 5 times faster (no text keys)."""
        indexes = sorted(self.counts)
        gaps = map(operator.sub, indexes, [0, *indexes[:-1]])
        counts = map(self.counts.__getitem__, indexes)
        flat = itertools.chain.from_iterable(zip(gaps, counts, strict=True))
        return "[" + ",".join(map(str, flat)) + "]"  # iterated in C: rollups write many

    @classmethod
    def from_json(cls, text: str) -> Histogram:
        flat = json.loads(text)
        return cls(dict(zip(itertools.accumulate(flat[0::2]), flat[1::2], strict=True)))


@dataclasses.dataclass(frozen=True, slots=True)
class Rollup:
    """Results of a span of time. Latency covers up and degraded results only."""

    up: int = 0
    degraded: int = 0
    down: int = 0
    unknown: int = 0
    lat_count: int = 0
    lat_sum_us: int = 0
    lat_min_us: int | None = None
    lat_max_us: int | None = None
    hist: Histogram = dataclasses.field(default_factory=Histogram)

    @property
    def total(self) -> int:
        return self.up + self.degraded + self.down + self.unknown

    @property
    def mean_latency_ms(self) -> float | None:
        return self.lat_sum_us / self.lat_count / 1000 if self.lat_count else None

    def columns(self) -> tuple[object, ...]:
        """The values of _COLUMNS, in order."""
        return (*(getattr(self, name) for name in _FIELDS), self.hist.to_json())

    def percentiles(self, *ps: float) -> list[float | None]:
        """The histogram's percentiles (ms), kept within min..max (a bucket's middle may lie
        past every latency in it), the first and last rank exactly min and max."""
        low, high = self.lat_min_us, self.lat_max_us
        if low is None or high is None or not self.hist.counts:
            return self.hist.percentiles(*ps)
        total = self.hist.total
        ranks = nearest_ranks(total, ps)
        found: list[float | None] = []
        for rank, (b, _) in zip(ranks, self.hist.locate(ranks), strict=True):
            if rank == 1:
                found.append(low / 1000)
            elif rank == total:
                found.append(high / 1000)
            else:
                found.append(min(max(bucket_value_ms(b), low / 1000), high / 1000))
        return found


def combine(rollups: Iterable[Rollup]) -> Rollup:
    parts = list(rollups)
    hist = Histogram()
    for part in parts:
        hist.merge(part.hist)
    mins = [r.lat_min_us for r in parts if r.lat_min_us is not None]
    maxes = [r.lat_max_us for r in parts if r.lat_max_us is not None]
    return Rollup(
        up=sum(r.up for r in parts),
        degraded=sum(r.degraded for r in parts),
        down=sum(r.down for r in parts),
        unknown=sum(r.unknown for r in parts),
        lat_count=sum(r.lat_count for r in parts),
        lat_sum_us=sum(r.lat_sum_us for r in parts),
        lat_min_us=min(mins, default=None),
        lat_max_us=max(maxes, default=None),
        hist=hist,
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HourRollup(Rollup):
    """One stored hour of one monitor at one location."""

    monitor_id: int
    location_id: int
    hour_ms: int  # UTC epoch ms of the hour's start


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DayRollup(Rollup):
    """One stored local day of one monitor at one location."""

    monitor_id: int
    location_id: int
    day: dt.date  # local date in settings.timezone


@contextlib.contextmanager
def _atomic(conn: Connection) -> Iterator[None]:
    """The caller's transaction if one is open, else one of our own."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _floor_hour(ms: int) -> int:
    return ms - ms % HOUR_MS


def _hour_of(group: tuple[Any, ...]) -> int:
    return int(group[0])


def _hour_rollup(groups: Iterable[tuple[Any, ...]]) -> Rollup:
    """One hour's rows of _HOUR_GROUPS (one per outcome) as a rollup."""
    counts: dict[int, int] = {}
    lat_count, lat_sum_us, mins, maxes = 0, 0, [], []
    buckets: collections.Counter[str] = collections.Counter()
    for _hour, outcome, n, timed, sum_us, min_us, max_us, concat in groups:
        counts[outcome] = n
        if outcome in (_UP, _DEGRADED) and timed:
            lat_count += timed
            lat_sum_us += sum_us
            mins.append(min_us)
            maxes.append(max_us)
            buckets.update(concat.split(","))  # counted in C: a Python loop took twice as long
    return Rollup(
        up=counts.get(_UP, 0),
        degraded=counts.get(_DEGRADED, 0),
        down=counts.get(_DOWN, 0),
        unknown=counts.get(_UNKNOWN, 0),
        lat_count=lat_count,
        lat_sum_us=lat_sum_us,
        lat_min_us=min(mins, default=None),
        lat_max_us=max(maxes, default=None),
        hist=Histogram({int(bucket): n for bucket, n in buckets.items()}),
    )


def rollup_hours(
    conn: Connection, monitor_id: int, location_id: int, start_ms: int, end_ms: int
) -> int:
    """Recompute the rollup_hour rows of every UTC hour touching [start_ms, end_ms) from the
    raw results; hours without results lose their row. Returns the rows written.

    Runs in the caller's transaction if one is open. Only for hours whose raw results are
    all still there: an hour already pruned would be rolled up as empty (see `prune`).
    """
    return len(_write_hours(conn, monitor_id, location_id, start_ms, end_ms))


def _write_hours(
    conn: Connection, monitor_id: int, location_id: int, start_ms: int, end_ms: int
) -> dict[int, Rollup]:
    """rollup_hours, returning the hours it wrote by hour_ms."""
    if end_ms <= start_ms:
        return {}
    first, end = _floor_hour(start_ms), _floor_hour(end_ms - 1) + HOUR_MS
    with _atomic(conn):
        groups = conn.execute(_HOUR_GROUPS, (monitor_id, first, end, location_id))
        hours = {
            hour_ms: _hour_rollup(hour) for hour_ms, hour in itertools.groupby(groups, _hour_of)
        }
        conn.execute(
            "DELETE FROM rollup_hour"
            " WHERE monitor_id = ? AND location_id = ? AND hour_ms >= ? AND hour_ms < ?",
            (monitor_id, location_id, first, end),
        )
        conn.executemany(
            _INSERT_HOUR,
            [(monitor_id, location_id, h, *r.columns()) for h, r in hours.items()],
        )
    return hours


def rollup_span(
    conn: Connection,
    monitor_id: int,
    location_id: int,
    start_ms: int,
    end_ms: int,
    tz: ZoneInfo,
) -> int:
    """rollup_hours over [start_ms, end_ms), then rollup_days for every local day it
    touched, the inner days from the hours just computed (no read-back): what upkeep and
    imports run. Returns the hour rows written."""
    if end_ms <= start_ms:
        return 0
    first, end = _floor_hour(start_ms), _floor_hour(end_ms - 1) + HOUR_MS
    with _atomic(conn):
        hours = _write_hours(conn, monitor_id, location_id, first, end)
        day = dt.datetime.fromtimestamp(first / 1000, tz).date()
        last = dt.datetime.fromtimestamp((end - 1) / 1000, tz).date()
        while day <= last:
            lo = _local_midnight_ms(day, tz)
            hi = _local_midnight_ms(day + dt.timedelta(days=1), tz)
            if lo < first or hi > end:  # an edge day: its other hours are stored ones
                rollup_days(conn, monitor_id, location_id, [day], tz)
            else:
                parts = [r for h, r in hours.items() if lo <= h < hi]
                key = (monitor_id, location_id, day.isoformat())
                if parts:
                    conn.execute(_INSERT_DAY, (*key, *combine(parts).columns()))
                else:
                    conn.execute(
                        "DELETE FROM rollup_day"
                        " WHERE monitor_id = ? AND location_id = ? AND day = ?",
                        key,
                    )
            day += dt.timedelta(days=1)
    return len(hours)


def from_raw(
    conn: Connection, monitor_id: int, location_id: int, start_ms: int, end_ms: int
) -> Rollup:
    """The raw results in [start_ms, end_ms), exactly (no whole hours), stored nowhere: for
    the part of a window not rolled up yet."""
    groups = conn.execute(_HOUR_GROUPS, (monitor_id, start_ms, end_ms, location_id))
    return combine(_hour_rollup(hour) for _, hour in itertools.groupby(groups, _hour_of))


# _HOUR_GROUPS for many monitors at once, each from its own start: the key (monitor_id,
# ts_ms, location_id) serves each monitor's range (one SEARCH per json_each row).
_MANY_HOUR_GROUPS = f"""
SELECT r.monitor_id, r.ts_ms - r.ts_ms % {HOUR_MS} AS hour_ms, r.outcome, count(*),
  count(r.latency_us), sum(r.latency_us), min(r.latency_us), max(r.latency_us),
  group_concat({BUCKET_SQL.replace("latency_us", "r.latency_us")})
FROM json_each(?) AS j
JOIN result AS r ON r.monitor_id = j.value ->> 0 AND r.ts_ms >= j.value ->> 1
WHERE r.ts_ms < ? AND r.location_id = ?
GROUP BY r.monitor_id, hour_ms, r.outcome
ORDER BY r.monitor_id, hour_ms
"""  # noqa: S608  (constants only; values are bound)


def from_raw_hours(
    conn: Connection, starts: dict[int, int], location_id: int, end_ms: int
) -> dict[int, dict[int, Rollup]]:
    """`from_raw` of every UTC hour with results in [starts[monitor], end_ms), for many
    monitors in one query: {monitor_id: {hour_ms: rollup}}. Each start is an hour's."""
    found: dict[int, dict[int, Rollup]] = {}
    if not starts:
        return found
    groups = conn.execute(
        _MANY_HOUR_GROUPS, (json.dumps(list(starts.items())), end_ms, location_id)
    )
    for (mid, hour_ms), rows in itertools.groupby(groups, lambda g: (g[0], g[1])):
        found.setdefault(mid, {})[hour_ms] = _hour_rollup(g[1:] for g in rows)
    return found


def _local_midnight_ms(day: dt.date, tz: ZoneInfo) -> int:
    return timeline.to_ms(timeline.local_midnight(day, tz))


def rollup_days(
    conn: Connection,
    monitor_id: int,
    location_id: int,
    days: Iterable[dt.date],
    tz: ZoneInfo,
) -> int:
    """Recompute the rollup_day rows of local `days` from the rollup_hour rows whose hour
    starts in [local midnight, next local midnight); days without any lose their row.
    Returns the rows written.

    DST days have 23 or 25 hours. In a zone whose offset is not whole hours (Asia/Kolkata,
    +05:30) a UTC hour straddles local midnight; it counts wholly in the local day of its
    start (18:00-19:00 UTC, 23:30-00:30 IST, belongs to the day that ends at 00:00 IST).
    """
    written = 0
    with _atomic(conn):
        for day in sorted(set(days)):
            start = _local_midnight_ms(day, tz)
            end = _local_midnight_ms(day + dt.timedelta(days=1), tz)
            hours = conn.execute(
                f"SELECT {_COLUMNS} FROM rollup_hour"  # noqa: S608
                " WHERE monitor_id = ? AND location_id = ? AND hour_ms >= ? AND hour_ms < ?",
                (monitor_id, location_id, start, end),
            ).fetchall()
            key = (monitor_id, location_id, day.isoformat())
            if not hours:
                conn.execute(
                    "DELETE FROM rollup_day WHERE monitor_id = ? AND location_id = ? AND day = ?",
                    key,
                )
                continue
            total = combine(Rollup(**_measures(row)) for row in hours)
            conn.execute(_INSERT_DAY, (*key, *total.columns()))
            written += 1
    return written


def _measures(row: Sequence[Any]) -> dict[str, Any]:
    """A row of _COLUMNS as Rollup's keyword arguments."""
    *counts, hist = row
    return dict(zip(_FIELDS, counts, strict=True), hist=Histogram.from_json(hist))


def read_hours(
    conn: Connection, monitor_ids: Iterable[int], start_ms: int, end_ms: int
) -> list[HourRollup]:
    """Hour rollups with start_ms <= hour_ms < end_ms, every location, by monitor, location
    and hour."""
    found: list[HourRollup] = []
    for monitor_id in sorted(set(monitor_ids)):
        rows = conn.execute(
            f"SELECT location_id, hour_ms, {_COLUMNS} FROM rollup_hour"  # noqa: S608
            " WHERE monitor_id = ? AND hour_ms >= ? AND hour_ms < ?"
            " ORDER BY location_id, hour_ms",
            (monitor_id, start_ms, end_ms),
        )
        found += [
            HourRollup(monitor_id=monitor_id, location_id=loc, hour_ms=hour, **_measures(rest))
            for loc, hour, *rest in rows
        ]
    return found


def read_days(
    conn: Connection, monitor_ids: Iterable[int], first_day: dt.date, last_day: dt.date
) -> list[DayRollup]:
    """Day rollups from first_day to last_day inclusive, every location, by monitor,
    location and day."""
    found: list[DayRollup] = []
    for monitor_id in sorted(set(monitor_ids)):
        rows = conn.execute(
            f"SELECT location_id, day, {_COLUMNS} FROM rollup_day"  # noqa: S608
            " WHERE monitor_id = ? AND day >= ? AND day <= ? ORDER BY location_id, day",
            (monitor_id, first_day.isoformat(), last_day.isoformat()),
        )
        found += [
            DayRollup(
                monitor_id=monitor_id,
                location_id=loc,
                day=dt.date.fromisoformat(day),
                **_measures(rest),
            )
            for loc, day, *rest in rows
        ]
    return found


def prune(
    conn: Connection,
    location_id: int | None,
    before_ms: int,
    monitor_ids: Iterable[int],
    batch: int = 50_000,
) -> int:
    """Delete raw results older than before_ms (of one location, or of all with None),
    rounded down to a whole hour, and return how many were deleted.

    Each transaction deletes about `batch` results of one monitor (whole hours: more when
    one hour holds more), so the live writer waits at most that long, and first rolls up
    the hours it deletes, from the oldest remaining result of each location on: no count
    is ever lost. An hour is never left half pruned, because a later recompute of it would
    count only its remaining half. Rollups, transitions, incidents and coverage are kept,
    and so is each monitor's newest hour of results: its last result is where the monitor's
    open coverage span ends (prober.store.ledger).
    """
    deleted = 0
    for monitor_id in sorted(set(monitor_ids)):
        (newest,) = conn.execute(
            "SELECT max(ts_ms) FROM result WHERE monitor_id = ?", (monitor_id,)
        ).fetchone()
        if newest is None:
            continue
        cutoff = _floor_hour(min(before_ms, newest))
        while True:
            with _atomic(conn):
                n = _prune_chunk(conn, monitor_id, location_id, cutoff, batch)
            if not n:
                break
            deleted += n
    return deleted


def _prune_chunk(
    conn: Connection, monitor_id: int, location_id: int | None, cutoff: int, batch: int
) -> int:
    """Roll up and delete the oldest whole hours of about `batch` results before cutoff."""
    # The primary key (monitor_id, ts_ms, location_id) serves every statement here.
    where = "monitor_id = ? AND ts_ms < ?" + ("" if location_id is None else " AND location_id = ?")
    located = () if location_id is None else (location_id,)
    first = conn.execute(
        f"SELECT ts_ms FROM result WHERE {where} ORDER BY ts_ms LIMIT 1 OFFSET ?",  # noqa: S608
        (monitor_id, cutoff, *located, 0),
    ).fetchone()
    if first is None:
        return 0
    past_batch = conn.execute(
        f"SELECT ts_ms FROM result WHERE {where} ORDER BY ts_ms LIMIT 1 OFFSET ?",  # noqa: S608
        (monitor_id, cutoff, *located, batch),
    ).fetchone()
    end = cutoff
    if past_batch is not None:  # up to the hour of the first result past the batch
        end = max(_floor_hour(past_batch[0]), _floor_hour(first[0]) + HOUR_MS)
    oldest = conn.execute(
        f"SELECT location_id, min(ts_ms) FROM result WHERE {where} GROUP BY location_id",  # noqa: S608
        (monitor_id, end, *located),
    ).fetchall()
    for loc, oldest_ms in oldest:
        rollup_hours(conn, monitor_id, loc, oldest_ms, end)
    cursor = conn.execute(f"DELETE FROM result WHERE {where}", (monitor_id, end, *located))  # noqa: S608
    return cursor.rowcount
