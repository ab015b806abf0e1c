"""Rollups: buckets in Python and SQL, histograms, hour and day rollups, reads, pruning."""

from __future__ import annotations

import datetime as dt
import math
import pathlib
import random
import sqlite3
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prober.results import Outcome
from prober.store.db import connect_raw, open_engine
from prober.store.rollups import (
    BUCKET_SQL,
    HOUR_MS,
    Histogram,
    Rollup,
    bucket,
    bucket_bounds,
    bucket_value_ms,
    combine,
    from_raw,
    prune,
    read_days,
    read_hours,
    rollup_days,
    rollup_hours,
)
from prober.store.tables import OUTCOME_CODES

UP, DEGRADED, DOWN, UNKNOWN = (
    OUTCOME_CODES[o] for o in (Outcome.UP, Outcome.DEGRADED, Outcome.DOWN, Outcome.UNKNOWN)
)
T0 = int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()) * 1000  # an hour's start
DAY_MS = 24 * HOUR_MS
BERLIN = ZoneInfo("Europe/Berlin")

Row = tuple[int, int, int, int, int | None]  # monitor, ts_ms, location, outcome, latency_us


@pytest.fixture
def conn(tmp_path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "p.db"
    open_engine(path).dispose()
    connection = connect_raw(path)
    yield connection
    connection.close()


def _insert(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO result (monitor_id, ts_ms, location_id, outcome, latency_us)"
        " VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")


def _table(conn: sqlite3.Connection, name: str) -> list[tuple[object, ...]]:
    return sorted(conn.execute(f"SELECT * FROM {name}"), key=repr)


def _hours(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """rollup_hour, key first."""
    return conn.execute(
        "SELECT monitor_id, location_id, hour_ms, up, degraded, down, unknown, lat_count,"
        " lat_sum_us, lat_min_us, lat_max_us, hist FROM rollup_hour"
        " ORDER BY monitor_id, location_id, hour_ms"
    ).fetchall()


def _random_rows(
    rng: random.Random, monitors: Iterable[int], locations: Iterable[int], start: int, end: int
) -> list[Row]:
    """One result a minute (with jitter) per monitor and location, mixed outcomes."""
    rows: list[Row] = []
    for monitor in monitors:
        for location in locations:
            for ts in range(start, end, 60_000):
                outcome = rng.choices([UP, DEGRADED, DOWN, UNKNOWN], [90, 5, 4, 1])[0]
                latency = None if outcome == UNKNOWN else int(rng.lognormvariate(11, 1.2))
                rows.append((monitor, ts + rng.randrange(1000), location, outcome, latency))
    return rows


def _expected(rows: Iterable[Row]) -> Rollup:
    """What a rollup of these results must be, computed the slow, obvious way."""
    rows = list(rows)
    latencies = [r[4] for r in rows if r[3] in (UP, DEGRADED) and r[4] is not None]
    hist = Histogram()
    for latency in latencies:
        hist.add(bucket(latency))
    return Rollup(
        up=sum(r[3] == UP for r in rows),
        degraded=sum(r[3] == DEGRADED for r in rows),
        down=sum(r[3] == DOWN for r in rows),
        unknown=sum(r[3] == UNKNOWN for r in rows),
        lat_count=len(latencies),
        lat_sum_us=sum(latencies),
        lat_min_us=min(latencies, default=None),
        lat_max_us=max(latencies, default=None),
        hist=hist,
    )


def _measures(rollup: Rollup) -> Rollup:
    """A stored hour or day without its key."""
    return combine([rollup])


def _nearest_rank(values: list[int], p: float) -> int:
    rank = max(1, math.ceil(Fraction(str(p)) * len(values) / 100))
    return sorted(values)[rank - 1]


# Buckets


@pytest.mark.parametrize(
    ("latency_us", "index", "bounds"),
    [
        (0, 0, (0, 0)),
        (1, 1, (1, 1)),
        (255, 255, (255, 255)),  # 8 bits: each microsecond its own bucket
        (256, 256, (256, 257)),  # 9 bits: 2 us wide
        (257, 256, (256, 257)),
        (258, 257, (258, 259)),
        (999, 505, (996, 999)),  # 10 bits: 4 us wide
        (1_000, 506, (1_000, 1_003)),
        (10_400, 930, (10_368, 10_431)),
        (100_000, 1347, (99_840, 100_351)),
        (123_456, 1393, (123_392, 123_903)),
        (1_000_000, 1780, (999_424, 1_003_519)),
        (30_000_000, 2404, (29_884_416, 30_015_487)),
        (2**63 - 1, 7295, (2**63 - 2**55, 2**63 - 1)),
    ],
)
def test_bucket(latency_us: int, index: int, bounds: tuple[int, int]) -> None:
    assert bucket(latency_us) == index
    assert bucket_bounds(index) == bounds
    assert bucket_value_ms(index) == sum(bounds) / 2000


def test_buckets_are_numbered_in_order_without_gaps() -> None:
    high = -1
    for index in range(bucket(2**63 - 1) + 1):
        low, next_high = bucket_bounds(index)
        assert low == high + 1
        assert bucket(low) == index == bucket(next_high)
        # narrower than 1/128 of its values: its middle is within 1/256 of each of them
        assert next_high - low < max(1, low / 128)
        high = next_high
    assert high == 2**63 - 1


def _sql_buckets(values: list[int | None]) -> list[int | None]:
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, latency_us INTEGER)")
        db.executemany("INSERT INTO t (latency_us) VALUES (?)", [(v,) for v in values])
        return [row[0] for row in db.execute(f"SELECT {BUCKET_SQL} FROM t ORDER BY i")]
    finally:
        db.close()


@given(st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=300))
def test_bucket_sql_agrees_with_python(values: list[int]) -> None:
    assert _sql_buckets(list(values)) == [bucket(v) for v in values]


def test_bucket_sql_agrees_at_every_power_of_two_and_ten_and_null() -> None:
    edges = [v for e in range(63) for v in (2**e - 1, 2**e, 2**e + 1)]
    edges += [v for e in range(19) for v in (10**e - 1, 10**e, 10**e + 1)] + [2**63 - 1]
    assert _sql_buckets(list(edges)) == [bucket(v) for v in edges]
    assert _sql_buckets([None]) == [None]


# Histograms


def _hist(values: Iterable[int]) -> Histogram:
    hist = Histogram()
    for value in values:
        hist.add(bucket(value))
    return hist


def test_percentile_by_nearest_rank() -> None:
    hist = _hist([15, 20, 35, 40, 50])  # microseconds: below 256 every bucket is exact
    assert [hist.percentile(p) for p in (0, 5, 30, 40, 50, 100)] == [
        0.015,
        0.015,
        0.02,
        0.02,
        0.035,
        0.05,
    ]
    thousand = Histogram(dict.fromkeys(range(1, 1001), 1))
    assert thousand.percentile(99.9) == bucket_value_ms(999)  # not 1000: the rank is exact
    assert thousand.percentile(50) == bucket_value_ms(500)
    # A bucket's middle, not its lower edge (issue 17: 270 ms for 279, 450 for 459).
    assert _hist([279_000]).percentile(50) == pytest.approx(279, rel=1 / 256)
    assert _hist([459_000]).percentile(95) == pytest.approx(459, rel=1 / 256)


def test_percentile_of_nothing_and_out_of_range() -> None:
    assert Histogram().percentile(50) is None
    assert Rollup().percentiles(50, 99) == [None, None]
    with pytest.raises(ValueError, match=r"not in 0\.\.100"):
        Histogram({1: 1}).percentile(101)
    with pytest.raises(ValueError, match=r"not in 0\.\.100"):
        Histogram().percentile(-1)


# Latency sets as the issue lists them: below 1 ms, 100 ms to 30 s, heavy tails, repeats.
_SUB_MS = st.integers(0, 999)
_WEB = st.integers(100_000, 30_000_000)
_ANY = st.integers(0, 10**11)  # up to a day
_TAIL = st.floats(0, 12).map(lambda e: int(1_000 * 10 ** (e / 3)))  # 1 ms .. 10,000 s, log
_LATENCIES = st.one_of(
    st.lists(_SUB_MS, min_size=1, max_size=400),
    st.lists(_WEB, min_size=1, max_size=400),
    st.lists(st.one_of(_SUB_MS, _WEB, _ANY, _TAIL), min_size=1, max_size=400),
    st.lists(st.sampled_from([999, 1_000, 99_999, 279_000, 459_000, 30_000_000]), min_size=1),
    st.lists(_WEB, min_size=1, max_size=20).flatmap(  # few values, each many times
        lambda few: st.lists(st.sampled_from(few), min_size=1, max_size=2_000)
    ),
)
_PS = st.lists(
    st.one_of(st.sampled_from([0, 1, 50, 90, 95, 99, 99.9, 100]), st.floats(0, 100)),
    min_size=1,
    max_size=5,
)


def _rollup(values: list[int]) -> Rollup:
    return Rollup(
        up=len(values),
        lat_count=len(values),
        lat_sum_us=sum(values),
        lat_min_us=min(values),
        lat_max_us=max(values),
        hist=_hist(values),
    )


@settings(deadline=None)  # a busy machine: no timing in unit tests
@given(_LATENCIES, _PS)
def test_percentiles_are_within_half_a_percent_of_the_exact_nearest_rank(
    values: list[int], ps: list[float]
) -> None:
    hist, rollup = _hist(values), _rollup(values)
    for p, got, clamped in zip(ps, hist.percentiles(*ps), rollup.percentiles(*ps), strict=True):
        exact_ms = _nearest_rank(values, p) / 1000
        assert got is not None and clamped is not None
        assert abs(got - exact_ms) <= exact_ms / 256  # 0.39 %: DESIGN.md says within 0.5 %
        assert abs(clamped - exact_ms) <= abs(got - exact_ms)  # never worse for the clamp
        assert min(values) / 1000 <= clamped <= max(values) / 1000
        if max(values) < 256:  # one microsecond per bucket: exact
            assert got == clamped == exact_ms
    ranks_of_ends = [p for p in ps if math.ceil(Fraction(str(p)) * len(values) / 100) <= 1]
    assert rollup.percentiles(*ranks_of_ends) == [min(values) / 1000] * len(ranks_of_ends)
    assert rollup.percentiles(100) == [max(values) / 1000]


def test_histogram_json_is_compact_sorted_and_round_trips() -> None:
    hist = Histogram({1347: 1, 12: 3, 5: 2})
    assert hist.to_json() == "[5,2,7,3,1335,1]"  # bucket 5, then gaps: 12, 1347
    assert Histogram.from_json(hist.to_json()) == hist
    assert Histogram().to_json() == "[]"
    assert Histogram.from_json("[]") == Histogram()


@given(st.dictionaries(st.integers(0, 7295), st.integers(1, 10**9)))
def test_histogram_json_round_trips(counts: dict[int, int]) -> None:
    assert Histogram.from_json(Histogram(counts).to_json()) == Histogram(counts)


def test_histogram_merge_and_add() -> None:
    hist = Histogram({1: 1, 2: 2})
    hist.merge(Histogram({2: 3, 7: 1}))
    hist.add(9, 0)
    assert hist == Histogram({1: 1, 2: 5, 7: 1})
    assert hist.total == 7


def test_combine() -> None:
    assert combine([]) == Rollup()
    a = Rollup(up=2, lat_count=2, lat_sum_us=30, lat_min_us=10, lat_max_us=20)
    b = Rollup(down=1, unknown=1)
    c = Rollup(degraded=1, lat_count=1, lat_sum_us=5, lat_min_us=5, lat_max_us=5)
    total = combine([a, b, c])
    assert (total.up, total.degraded, total.down, total.unknown) == (2, 1, 1, 1)
    assert (total.lat_count, total.lat_sum_us, total.lat_min_us, total.lat_max_us) == (
        3,
        35,
        5,
        20,
    )
    assert total.total == 5
    assert total.mean_latency_ms == pytest.approx(35 / 3 / 1000)


# Hours


def test_counts_and_latency_of_an_hour(conn: sqlite3.Connection) -> None:
    _insert(
        conn,
        [
            (1, T0 + 1, 1, UP, 10_400),
            (1, T0 + 2, 1, UP, 20_000),
            (1, T0 + 3, 1, DEGRADED, 612_000),  # latency counts: degraded is up
            (1, T0 + 4, 1, DOWN, 5_000_000),  # a timeout: not latency
            (1, T0 + 5, 1, UNKNOWN, 7_000),
            (1, T0 + 6, 1, UP, None),
        ],
    )
    assert rollup_hours(conn, 1, 1, T0, T0 + HOUR_MS) == 1
    (hour,) = read_hours(conn, [1], T0, T0 + HOUR_MS)
    assert (hour.monitor_id, hour.location_id, hour.hour_ms) == (1, 1, T0)
    assert _measures(hour) == Rollup(
        up=3,
        degraded=1,
        down=1,
        unknown=1,
        lat_count=3,
        lat_sum_us=642_400,
        lat_min_us=10_400,
        lat_max_us=612_000,
        hist=Histogram({930: 1, 1052: 1, 1685: 1}),
    )
    stored = conn.execute("SELECT hist FROM rollup_hour").fetchone()[0]
    assert stored == "[930,1,122,1,633,1]"


def test_an_hour_of_only_failures_has_no_latency(conn: sqlite3.Connection) -> None:
    _insert(conn, [(1, T0, 1, DOWN, 3_000), (1, T0 + 1, 1, UNKNOWN, None)])
    rollup_hours(conn, 1, 1, T0, T0 + 1)
    (hour,) = read_hours(conn, [1], T0, T0 + HOUR_MS)
    assert _measures(hour) == Rollup(down=1, unknown=1)
    assert hour.mean_latency_ms is None


def test_hour_boundaries(conn: sqlite3.Connection) -> None:
    _insert(conn, [(1, T0 + HOUR_MS - 1, 1, UP, 1_000), (1, T0 + HOUR_MS, 1, DOWN, None)])
    # A range touching one millisecond of an hour recomputes that whole hour, no other.
    assert rollup_hours(conn, 1, 1, T0 + HOUR_MS - 1, T0 + HOUR_MS) == 1
    assert [h.hour_ms for h in read_hours(conn, [1], 0, 2 * T0)] == [T0]
    assert rollup_hours(conn, 1, 1, T0 + HOUR_MS, T0 + HOUR_MS + 1) == 1
    assert rollup_hours(conn, 1, 1, T0, T0) == 0
    first, second = read_hours(conn, [1], 0, 2 * T0)
    assert (first.hour_ms, first.up, first.down) == (T0, 1, 0)
    assert (second.hour_ms, second.up, second.down) == (T0 + HOUR_MS, 0, 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hours_match_the_raw_results(conn: sqlite3.Connection, seed: int) -> None:
    rows = _random_rows(random.Random(seed), [1, 2], [1, 2], T0, T0 + 5 * HOUR_MS)
    _insert(conn, rows)
    for monitor in (1, 2):
        for location in (1, 2):
            assert rollup_hours(conn, monitor, location, T0, T0 + 5 * HOUR_MS) == 5
    hours = read_hours(conn, [2, 1], T0, T0 + 5 * HOUR_MS)
    assert [(h.monitor_id, h.location_id) for h in hours] == sorted(
        (m, loc) for m in (1, 2) for loc in (1, 2) for _ in range(5)
    )
    for hour in hours:
        mine = [
            r
            for r in rows
            if (r[0], r[2]) == (hour.monitor_id, hour.location_id)
            and hour.hour_ms <= r[1] < hour.hour_ms + HOUR_MS
        ]
        assert _measures(hour) == _expected(mine)
        latencies = [r[4] for r in mine if r[3] in (UP, DEGRADED) and r[4] is not None]
        for p in (50, 95, 99):
            assert hour.hist.percentile(p) == bucket_value_ms(bucket(_nearest_rank(latencies, p)))


def test_recompute_is_idempotent_and_picks_up_late_results(conn: sqlite3.Connection) -> None:
    _insert(conn, _random_rows(random.Random(4), [1], [1], T0, T0 + 3 * HOUR_MS))
    assert rollup_hours(conn, 1, 1, T0, T0 + 3 * HOUR_MS) == 3
    before = _hours(conn)
    assert rollup_hours(conn, 1, 1, T0, T0 + 3 * HOUR_MS) == 3
    assert _hours(conn) == before
    _insert(conn, [(1, T0 + HOUR_MS + 5, 1, DOWN, None)])
    rollup_hours(conn, 1, 1, T0 + HOUR_MS, T0 + HOUR_MS + 1)
    after = _hours(conn)
    assert after[1][5] == before[1][5] + 1  # the down count
    assert [after[0], after[2]] == [before[0], before[2]]


def test_hours_without_results_lose_stale_rows(conn: sqlite3.Connection) -> None:
    _insert(conn, _random_rows(random.Random(5), [1, 2], [1, 2], T0, T0 + 4 * HOUR_MS))
    for monitor in (1, 2):
        for location in (1, 2):
            rollup_hours(conn, monitor, location, T0, T0 + 4 * HOUR_MS)
    conn.execute(  # outside the range recomputed below: kept
        "INSERT INTO rollup_hour (monitor_id, location_id, hour_ms, up, degraded, down, unknown,"
        " lat_count, lat_sum_us, hist) VALUES (1, 1, ?, 9, 0, 0, 0, 0, 0, '[]')",
        (T0 + 10 * HOUR_MS,),
    )
    conn.execute(
        "DELETE FROM result WHERE monitor_id = 1 AND location_id = 1 AND ts_ms >= ? AND ts_ms < ?",
        (T0 + HOUR_MS, T0 + 2 * HOUR_MS),
    )
    before = _hours(conn)
    assert rollup_hours(conn, 1, 1, T0, T0 + 3 * HOUR_MS) == 2
    gone = (1, 1, T0 + HOUR_MS)
    assert _hours(conn) == [row for row in before if row[:3] != gone]


def test_from_raw_counts_an_exact_range_and_adds_up_with_stored_hours(
    conn: sqlite3.Connection,
) -> None:
    rows = _random_rows(random.Random(8), [1], [1, 2], T0, T0 + 4 * HOUR_MS)
    _insert(conn, rows)
    start, split, end = T0 + 7 * 60_000, T0 + 2 * HOUR_MS, T0 + 3 * HOUR_MS + 42 * 60_000
    mine = [r for r in rows if r[2] == 1]
    assert from_raw(conn, 1, 1, start, end) == _expected(r for r in mine if start <= r[1] < end)
    assert from_raw(conn, 1, 1, end, end) == Rollup()
    rollup_hours(conn, 1, 1, T0, split)
    parts = [*read_hours(conn, [1], T0, split), from_raw(conn, 1, 1, split, end)]
    assert combine(parts) == _expected(r for r in mine if r[1] < end)
    assert [h[:3] for h in _hours(conn)] == [
        (1, 1, T0),
        (1, 1, T0 + HOUR_MS),
    ]  # from_raw stores nothing


def test_rollup_joins_the_callers_transaction(conn: sqlite3.Connection) -> None:
    _insert(conn, [(1, T0, 1, UP, 1_000)])
    conn.execute("BEGIN IMMEDIATE")
    rollup_hours(conn, 1, 1, T0, T0 + HOUR_MS)
    assert conn.in_transaction
    conn.execute("ROLLBACK")
    assert _hours(conn) == []


# Days


def _minutes(conn: sqlite3.Connection, tz: ZoneInfo, first: dt.date, last: dt.date) -> None:
    """One up result a minute, 1 ms latency, local midnight of first to the end of last."""
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    start_ms, end_ms = int(start.timestamp()) * 1000, int(end.timestamp()) * 1000
    _insert(conn, [(1, ts, 1, UP, 1_000) for ts in range(start_ms, end_ms, 60_000)])
    rollup_hours(conn, 1, 1, start_ms, end_ms)


@pytest.mark.parametrize(
    ("first", "hours"),
    [
        (dt.date(2026, 3, 28), [24, 23, 24]),  # clocks go forward on Sunday 29 March
        (dt.date(2026, 10, 24), [24, 25, 24]),  # and back on Sunday 25 October
    ],
)
def test_days_across_dst_in_berlin(
    conn: sqlite3.Connection, first: dt.date, hours: list[int]
) -> None:
    days = [first + dt.timedelta(days=i) for i in range(3)]
    _minutes(conn, BERLIN, days[0], days[-1])
    assert rollup_days(conn, 1, 1, days, BERLIN) == 3
    stored = read_days(conn, [1], days[0], days[-1])
    assert [d.day for d in stored] == days
    assert [d.up for d in stored] == [h * 60 for h in hours]
    assert [d.hist for d in stored] == [Histogram({bucket(1_000): h * 60}) for h in hours]
    assert [len(read_days(conn, [1], day, day)) for day in days] == [1, 1, 1]


def test_a_half_hour_zone_counts_each_utc_hour_in_the_day_it_starts(
    conn: sqlite3.Connection,
) -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # +05:30: 18:30 UTC is local midnight
    at = T0 + 18 * HOUR_MS  # 2026-11-01 18:00 UTC = 23:30 IST
    _insert(
        conn,
        [
            (1, at + 10 * 60_000, 1, UP, 1_000),  # 23:40 IST on the 1st
            (1, at + 45 * 60_000, 1, UP, 1_000),  # 00:15 IST on the 2nd, same UTC hour
            (1, at + HOUR_MS, 1, DOWN, None),  # 00:30 IST on the 2nd, next UTC hour
        ],
    )
    rollup_hours(conn, 1, 1, at, at + 2 * HOUR_MS)
    nov1, nov2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    assert rollup_days(conn, 1, 1, [nov2, nov1, nov1], kolkata) == 2
    first, second = read_days(conn, [1], nov1, nov2)
    assert (first.day, first.up, first.down) == (nov1, 2, 0)
    assert (second.day, second.up, second.down) == (nov2, 0, 1)


def test_days_without_hours_lose_stale_rows(conn: sqlite3.Connection) -> None:
    day = dt.date(2026, 11, 1)
    _minutes(conn, BERLIN, day, day)
    rollup_days(conn, 1, 1, [day], BERLIN)
    conn.execute("DELETE FROM rollup_hour")
    assert rollup_days(conn, 1, 1, [day], BERLIN) == 0
    assert read_days(conn, [1], day, day) == []


def test_reads_filter_by_monitor_and_range(conn: sqlite3.Connection) -> None:
    rows = _random_rows(random.Random(6), [1, 2, 3], [1, 2], T0, T0 + 3 * HOUR_MS)
    _insert(conn, rows)
    for monitor in (1, 2, 3):
        for location in (1, 2):
            rollup_hours(conn, monitor, location, T0, T0 + 3 * HOUR_MS)
            rollup_days(conn, monitor, location, [dt.date(2026, 11, 1)], ZoneInfo("UTC"))
    hours = read_hours(conn, [3, 1], T0 + HOUR_MS, T0 + 3 * HOUR_MS)
    assert {(h.monitor_id, h.hour_ms) for h in hours} == {
        (m, T0 + i * HOUR_MS) for m in (1, 3) for i in (1, 2)
    }
    assert read_hours(conn, [], T0, T0 + DAY_MS) == []
    assert read_hours(conn, [9], T0, T0 + DAY_MS) == []
    day = dt.date(2026, 11, 1)
    days = read_days(conn, [2], day, day)
    assert [(d.monitor_id, d.location_id) for d in days] == [(2, 1), (2, 2)]
    hours_of_2 = read_hours(conn, [2], T0, T0 + DAY_MS)
    assert combine(days) == combine(hours_of_2)
    assert combine(days) == _expected(r for r in rows if r[0] == 2)
    assert read_days(conn, [2], day + dt.timedelta(days=1), day + dt.timedelta(days=9)) == []


# Pruning


def _roll_everything(conn: sqlite3.Connection) -> None:
    """Roll up every hour that still has raw results (pruned hours must not be touched)."""
    pairs = conn.execute(
        "SELECT monitor_id, location_id, min(ts_ms) FROM result GROUP BY monitor_id, location_id"
    ).fetchall()
    for monitor, location, oldest in pairs:
        rollup_hours(conn, monitor, location, oldest, 2 * T0)


def _count_transactions(conn: sqlite3.Connection) -> list[str]:
    begun: list[str] = []
    conn.set_trace_callback(lambda sql: begun.append(sql) if sql == "BEGIN IMMEDIATE" else None)
    return begun


@pytest.fixture
def three_days(conn: sqlite3.Connection) -> tuple[list[Row], list[tuple[object, ...]]]:
    """Two monitors at two locations plus an outsider (monitor 3), and all their rollups."""
    rows = _random_rows(random.Random(7), [1, 2, 3], [1, 2], T0, T0 + 3 * DAY_MS)
    _insert(conn, rows)
    _roll_everything(conn)
    return rows, _hours(conn)


def test_prune_deletes_only_whole_old_hours_and_keeps_rollups(
    conn: sqlite3.Connection, three_days: tuple[list[Row], list[tuple[object, ...]]]
) -> None:
    rows, rollups = three_days
    before = T0 + DAY_MS + 7 * HOUR_MS + 17 * 60_000  # mid-hour: pruned up to 07:00
    cutoff = T0 + DAY_MS + 7 * HOUR_MS
    begun = _count_transactions(conn)
    deleted = prune(conn, None, before, [1, 2], batch=500)
    old = [r for r in rows if r[0] in (1, 2) and r[1] < cutoff]
    assert deleted == len(old)
    assert len(begun) >= len(old) / (500 + 2 * 60)  # bounded transactions, one per chunk
    assert conn.execute("SELECT count(*) FROM result").fetchone()[0] == len(rows) - len(old)
    oldest = conn.execute("SELECT min(ts_ms) FROM result WHERE monitor_id < 3").fetchone()[0]
    assert oldest >= cutoff
    assert _hours(conn) == rollups
    _roll_everything(conn)  # what remains raw still rolls up to the same
    assert _hours(conn) == rollups


def test_prune_rolls_up_hours_nobody_rolled_up(
    conn: sqlite3.Connection, three_days: tuple[list[Row], list[tuple[object, ...]]]
) -> None:
    _, rollups = three_days
    conn.execute("DELETE FROM rollup_hour")
    prune(conn, None, T0 + 2 * DAY_MS, [1, 2, 3], batch=1_000)
    _roll_everything(conn)
    assert _hours(conn) == rollups


def test_prune_one_location_then_all(
    conn: sqlite3.Connection, three_days: tuple[list[Row], list[tuple[object, ...]]]
) -> None:
    rows, rollups = three_days
    conn.execute("DELETE FROM rollup_hour")
    first = prune(conn, 2, T0 + DAY_MS, [1, 2, 3], batch=300)
    assert first == sum(1 for r in rows if r[2] == 2 and r[1] < T0 + DAY_MS)
    location_1 = conn.execute("SELECT count(*) FROM result WHERE location_id = 1").fetchone()
    assert location_1[0] == sum(1 for r in rows if r[2] == 1)
    # Location 2's pruned hours must survive pruning everything later.
    second = prune(conn, None, T0 + 2 * DAY_MS, [1, 2, 3], batch=300)
    assert first + second == sum(1 for r in rows if r[1] < T0 + 2 * DAY_MS)
    _roll_everything(conn)
    assert _hours(conn) == rollups


def test_prune_with_a_batch_smaller_than_an_hour(
    conn: sqlite3.Connection, three_days: tuple[list[Row], list[tuple[object, ...]]]
) -> None:
    _, rollups = three_days
    conn.execute("DELETE FROM rollup_hour")
    assert prune(conn, 1, T0 + 4 * HOUR_MS, [1], batch=7) == 4 * 60
    _roll_everything(conn)
    assert _hours(conn) == rollups


def test_prune_keeps_derived_tables(
    conn: sqlite3.Connection, three_days: tuple[list[Row], list[tuple[object, ...]]]
) -> None:
    day = dt.date(2026, 11, 1)
    rollup_days(conn, 1, 1, [day], ZoneInfo("UTC"))
    conn.execute("INSERT INTO transition VALUES (1, 1, ?, NULL, 'up')", (T0,))
    conn.execute("INSERT INTO incident VALUES (1, 1, ?, ?, ?, ?, 'timeout')", (T0, T0, T0, T0))
    conn.execute("INSERT INTO coverage VALUES (1, 1, ?, ?)", (T0, T0 + 60_000))
    derived = {t: _table(conn, t) for t in ("transition", "incident", "coverage", "rollup_day")}
    prune(conn, None, T0 + 3 * DAY_MS, [1, 2, 3])
    rows = three_days[0]
    newest = {m: max(r[1] for r in rows if r[0] == m) // HOUR_MS * HOUR_MS for m in (1, 2, 3)}
    kept = sum(1 for r in rows if r[1] >= newest[r[0]])
    # every result is old enough, but each monitor's newest hour anchors its coverage
    assert conn.execute("SELECT count(*) FROM result").fetchone()[0] == kept > 0
    assert {t: _table(conn, t) for t in derived} == derived
    assert _hours(conn) == three_days[1]


def test_prune_an_empty_database(conn: sqlite3.Connection) -> None:
    assert prune(conn, None, T0, [1, 2, 3]) == 0
    assert prune(conn, 1, T0, []) == 0
    assert _hours(conn) == []


def test_prune_with_nothing_old_enough(
    conn: sqlite3.Connection, three_days: tuple[list[Row], list[tuple[object, ...]]]
) -> None:
    assert prune(conn, None, T0 + 30 * 60_000, [1, 2, 3]) == 0  # rounds down to T0
    assert conn.execute("SELECT count(*) FROM result").fetchone()[0] == len(three_days[0])
    assert _hours(conn) == three_days[1]
