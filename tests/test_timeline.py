"""Spans against a set-of-milliseconds model, local calendar bounds across DST changes, and
the uptime accounting of DESIGN.md "Semantics"."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prober.timeline import (
    Spans,
    account,
    coverage,
    day_bounds,
    days_between,
    from_ms,
    month_bounds,
    to_ms,
)

H = 3_600_000  # ms in an hour
BERLIN = ZoneInfo("Europe/Berlin")

# --- Spans --------------------------------------------------------------------------------

pairs = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 40)),
    max_size=8,
)


def model(spans_pairs: list[tuple[int, int]] | Spans) -> set[int]:
    """The milliseconds a list of pairs covers, one by one."""
    return {ms for start, end in spans_pairs for ms in range(start, end)}


def assert_normal(spans: Spans) -> None:
    items = list(spans)
    assert all(start < end for start, end in items)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(items))


@settings(max_examples=300)
@given(pairs)
def test_normalisation_keeps_the_set(raw: list[tuple[int, int]]) -> None:
    spans = Spans.of(raw)
    assert_normal(spans)
    assert model(spans) == model(raw)
    assert spans.total() == len(model(raw))
    assert bool(spans) == bool(model(raw))
    assert Spans.of(reversed(raw)) == spans


@settings(max_examples=300)
@given(pairs, pairs)
def test_set_algebra_matches_the_model(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    x, y = Spans.of(a), Spans.of(b)
    for result, expected in [
        (x | y, model(a) | model(b)),
        (x & y, model(a) & model(b)),
        (x - y, model(a) - model(b)),
        (y - x, model(b) - model(a)),
    ]:
        assert_normal(result)
        assert model(result) == expected
        assert result.total() == len(expected)


@settings(max_examples=300)
@given(pairs, st.integers(-5, 45), st.integers(-5, 45))
def test_clip_matches_the_model(raw: list[tuple[int, int]], start: int, end: int) -> None:
    clipped = Spans.of(raw).clip(start, end)
    assert_normal(clipped)
    assert model(clipped) == model(raw) & set(range(start, end))
    assert clipped == Spans.of(raw) & Spans.of([(start, end)])


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ([], []),
        ([(5, 5), (7, 3)], []),
        ([(10, 20), (0, 5)], [(0, 5), (10, 20)]),
        ([(0, 5), (5, 9)], [(0, 9)]),  # touching ones merge
        ([(0, 10), (2, 3), (9, 12)], [(0, 12)]),
        ([[1, 2], [3, 4]], [(1, 2), (3, 4)]),  # any pairs, not only tuples
    ],
)
def test_normal_form(raw: list[tuple[int, int]], normal: list[tuple[int, int]]) -> None:
    assert list(Spans.of(raw)) == normal


def test_value_behaviour() -> None:
    spans = Spans.of([(3, 4), (0, 1)])
    assert repr(spans) == "Spans([(0, 1), (3, 4)])"
    assert spans == Spans.of([(0, 1), (3, 4)])
    assert spans != Spans.of([(0, 1)])
    assert spans != [(0, 1), (3, 4)]
    assert hash(spans) == hash(Spans.of([(0, 1), (3, 4)]))
    assert len(spans) == 2
    assert not Spans.empty()
    assert Spans.empty() == Spans.of([])
    assert Spans.empty().total() == 0


def test_operations_stay_linear_on_thousands_of_spans() -> None:
    a = Spans.of((n * 10, n * 10 + 6) for n in range(50_000))
    b = Spans.of((n * 10 + 4, n * 10 + 8) for n in range(50_000))
    assert (a | b).total() == 50_000 * 8
    assert (a & b).total() == 50_000 * 2
    assert (a - b).total() == 50_000 * 4
    assert a.clip(100, 120) == Spans.of([(100, 106), (110, 116)])


# --- coverage -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "until", "expected"),
    [
        ([], None, []),
        ([(0, True), (60, True), (120, True)], None, [(0, 220)]),
        ([(0, True), (60, True), (120, True)], 150, [(0, 150)]),
        ([(0, True), (300, True)], 350, [(0, 100), (300, 350)]),  # gap > max: unknown
        ([(0, True), (50, False), (100, True)], None, [(0, 50), (100, 200)]),
        ([(0, False), (50, False)], None, []),
        ([(0, True), (0, True), (10, True)], 20, [(0, 20)]),
        ([(0, True)], -5, []),  # "now" before the result
    ],
)
def test_coverage(
    samples: list[tuple[int, bool]], until: int | None, expected: list[tuple[int, int]]
) -> None:
    assert coverage(samples, 100, until) == Spans.of(expected)


# --- calendar bounds ----------------------------------------------------------------------


def hours(bounds: tuple[dt.datetime, dt.datetime]) -> float:
    # Not bounds[1] - bounds[0]: with one tzinfo that is the wall-clock difference.
    return (to_ms(bounds[1]) - to_ms(bounds[0])) / H


@pytest.mark.parametrize(
    ("zone", "month", "expected"),
    [
        ("Europe/Berlin", "2026-03", 743),
        ("Europe/Berlin", "2026-10", 745),
        ("Europe/Berlin", "2026-07", 744),
        ("America/New_York", "2026-03", 743),
        ("America/New_York", "2026-11", 721),  # 30 days and a repeated hour
        ("Asia/Seoul", "2026-03", 744),
        ("Asia/Seoul", "2026-10", 744),
        ("Asia/Seoul", "2028-02", 696),
        ("Australia/Lord_Howe", "2026-10", 743.5),  # DST moves by 30 minutes there
        ("Australia/Lord_Howe", "2026-04", 720.5),
        ("UTC", "2026-12", 744),
    ],
)
def test_month_length(zone: str, month: str, expected: float) -> None:
    assert hours(month_bounds(month, ZoneInfo(zone))) == expected


def test_month_bounds_are_local_midnights() -> None:
    start, end = month_bounds("2026-10", BERLIN)
    assert start.isoformat() == "2026-10-01T00:00:00+02:00"
    assert end.isoformat() == "2026-11-01T00:00:00+01:00"
    start, end = month_bounds("2026-12", ZoneInfo("Asia/Seoul"))
    assert (start.isoformat(), end.isoformat()) == (
        "2026-12-01T00:00:00+09:00",
        "2027-01-01T00:00:00+09:00",
    )


@pytest.mark.parametrize(
    "text",
    ["2026-13", "2026-00", "2026-3", "26-03", "", "2026-03-01", "march", "0000-01", "２０２６-03"],
)
def test_month_parse_errors(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a month: use YYYY-MM, e\.g\. 2026-03"):
        month_bounds(text, BERLIN)


@pytest.mark.parametrize(
    ("zone", "day", "expected_hours", "start"),
    [
        ("Europe/Berlin", dt.date(2026, 3, 29), 23, "2026-03-29T00:00:00+01:00"),
        ("Europe/Berlin", dt.date(2026, 10, 25), 25, "2026-10-25T00:00:00+02:00"),
        ("Europe/Berlin", dt.date(2026, 10, 26), 24, "2026-10-26T00:00:00+01:00"),
        ("Australia/Lord_Howe", dt.date(2026, 10, 4), 23.5, "2026-10-04T00:00:00+10:30"),
        ("Australia/Lord_Howe", dt.date(2026, 4, 5), 24.5, "2026-04-05T00:00:00+11:00"),
        # Santiago springs from 24:00 to 01:00: that day starts at 01:00.
        ("America/Santiago", dt.date(2026, 9, 6), 23, "2026-09-06T01:00:00-03:00"),
    ],
)
def test_day_bounds(zone: str, day: dt.date, expected_hours: float, start: str) -> None:
    bounds = day_bounds(day, ZoneInfo(zone))
    assert hours(bounds) == expected_hours
    assert bounds[0].isoformat() == start


def test_days_between_is_half_open() -> None:
    assert days_between(dt.date(2026, 2, 27), dt.date(2026, 3, 2)) == [
        dt.date(2026, 2, 27),
        dt.date(2026, 2, 28),
        dt.date(2026, 3, 1),
    ]
    assert days_between(dt.date(2026, 3, 1), dt.date(2026, 3, 1)) == []


def test_ms_round_trip() -> None:
    moment = dt.datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1)  # the second 02:30
    assert to_ms(moment) == to_ms(dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC))
    back = from_ms(to_ms(moment), BERLIN)
    assert (back.isoformat(), back.fold) == ("2026-10-25T02:30:00+01:00", 1)
    assert to_ms(dt.datetime(1970, 1, 1, 0, 0, 0, 999, tzinfo=dt.UTC)) == 0  # floored
    assert to_ms(dt.datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=dt.UTC)) == -1
    with pytest.raises(ValueError, match="has no time zone"):
        to_ms(dt.datetime(2026, 1, 1))


# --- accounting ---------------------------------------------------------------------------

S = 1000  # ms in a second


def test_the_design_example() -> None:
    """DESIGN.md "Monthly report JSON": Berlin October, 1000 s maintenance, 1800 s down."""
    start, end = (to_ms(b) for b in month_bounds("2026-10", BERLIN))
    got = account(
        (start, end),
        known=Spans.of([(start, end)]),
        incidents=Spans.of([(start + 100 * S, start + 1900 * S)]),
        maintenance=Spans.of([(end - 1000 * S, end + 5000 * S)]),
        sla_target=99.9,
    )
    assert got.window_seconds == 2_682_000.0
    assert got.maintenance_seconds == 1000.0
    assert got.unknown_seconds == 0.0
    assert got.monitored_seconds == 2_681_000.0
    assert got.downtime_seconds == 1800.0
    assert got.uptime_percent == pytest.approx(99.93286087280865)
    assert got.error_budget_seconds == pytest.approx(2681.0)
    assert got.error_budget_remaining_seconds == pytest.approx(881.0)
    assert got.sla_met is True


@pytest.mark.parametrize(
    ("known", "incidents", "maintenance", "expected"),
    [
        # (maintenance, unknown, monitored, downtime) in seconds over a 100 s window
        ([(0, 100)], [], [], (0, 0, 100, 0)),
        ([(0, 100)], [(10, 20)], [], (0, 0, 100, 10)),
        ([(0, 100)], [(10, 20)], [(15, 30)], (15, 0, 85, 5)),  # outage partly in maintenance
        ([(0, 100)], [(40, 50)], [(30, 60)], (30, 0, 70, 0)),  # outage wholly in maintenance
        ([(0, 50)], [(40, 60)], [], (0, 50, 50, 10)),  # downtime only in known time
        ([(0, 50)], [], [(40, 70)], (30, 30, 40, 0)),  # maintenance wins over unknown
        ([(-50, 150)], [(-20, 5), (95, 200)], [], (0, 0, 100, 10)),  # clipped to W
        ([], [(0, 100)], [], (0, 100, 0, 0)),  # nothing known: no uptime
        ([(0, 100)], [(0, 100)], [(0, 100)], (100, 0, 0, 0)),
    ],
)
def test_accounting(
    known: list[tuple[int, int]],
    incidents: list[tuple[int, int]],
    maintenance: list[tuple[int, int]],
    expected: tuple[float, float, float, float],
) -> None:
    def spans(raw: list[tuple[int, int]]) -> Spans:
        return Spans.of((a * S, b * S) for a, b in raw)

    got = account((0, 100 * S), spans(known), spans(incidents), spans(maintenance), 99.0)
    assert got.window_seconds == 100.0
    parts = (got.maintenance_seconds, got.unknown_seconds, got.monitored_seconds)
    assert (*parts, got.downtime_seconds) == expected
    monitored, down = expected[2], expected[3]
    if monitored:
        assert got.uptime_percent == 100 * (monitored - down) / monitored
        assert got.sla_met is (got.uptime_percent >= 99.0)
    else:
        assert got.uptime_percent is None
        assert got.sla_met is None
    assert got.error_budget_seconds == pytest.approx(0.01 * monitored)
    assert got.error_budget_remaining_seconds == pytest.approx(0.01 * monitored - down)


def test_exactly_on_target_is_met() -> None:
    """0.1 % down of 1000 s is 99.9 % and meets 99.9, despite binary floating point."""
    got = account((0, 1000 * S), Spans.of([(0, 1000 * S)]), Spans.of([(0, S)]), Spans.empty(), 99.9)
    assert got.uptime_percent == 99.9
    assert got.sla_met is True
    over = account(
        (0, 1000 * S), Spans.of([(0, 1000 * S)]), Spans.of([(0, S + 1)]), Spans.empty(), 99.9
    )
    assert over.sla_met is False
    assert over.error_budget_remaining_seconds < 0


@settings(max_examples=300)
@given(pairs, pairs, pairs)
def test_accounting_adds_up(
    known: list[tuple[int, int]],
    incidents: list[tuple[int, int]],
    maintenance: list[tuple[int, int]],
) -> None:
    """The window splits into maintenance, unknown and monitored; downtime fits in monitored."""
    got = account((5, 35), Spans.of(known), Spans.of(incidents), Spans.of(maintenance), 99.9)
    window = set(range(5, 35))
    maintained = window & model(maintenance)
    unknown = window - model(known) - maintained
    assert got.maintenance_seconds == len(maintained) / S
    assert got.unknown_seconds == len(unknown) / S
    assert got.monitored_seconds == (len(window) - len(maintained) - len(unknown)) / S
    assert got.downtime_seconds == len(window & model(incidents) & model(known) - maintained) / S
    assert got.downtime_seconds <= got.monitored_seconds
