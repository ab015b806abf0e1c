"""Maintenance windows: one-off and cron-recurring, range edges, cron(8) reading of the
crontab, and the exact instants around DST changes."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from prober import maintenance
from prober.config.settings import Maintenance
from prober.maintenance import Window, active, applies, upcoming, windows
from prober.timeline import Spans, month_bounds, to_ms

UTC = dt.UTC
SEOUL = ZoneInfo("Asia/Seoul")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
MINUTE = 60_000


def item(title: str = "work", monitors: list[str] | None = None, **fields: Any) -> Maintenance:
    return Maintenance.model_validate({"title": title, "monitors": monitors or ["*"], **fields})


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def starts_utc(found: list[Window]) -> list[str]:
    return [w.start.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") for w in found]


# --- one-off windows ----------------------------------------------------------------------

DB_UPGRADE = item(
    "DB upgrade", ["api"], start="2026-12-01T02:00:00+09:00", end="2026-12-01T03:00:00+09:00"
)


def test_one_off_window_with_an_offset() -> None:
    start, end = month_bounds("2026-12", SEOUL)
    [window] = windows([DB_UPGRADE], "api", start, end, SEOUL)
    assert window == Window("DB upgrade", utc(2026, 11, 30, 17), utc(2026, 11, 30, 18))
    assert window.start.isoformat() == "2026-12-01T02:00:00+09:00"  # shown in settings' zone
    assert window.start.tzinfo is SEOUL
    got = maintenance.spans([DB_UPGRADE], "api", to_ms(start), to_ms(end), SEOUL)
    assert got == Spans.of([(to_ms(utc(2026, 11, 30, 17)), to_ms(utc(2026, 11, 30, 18)))])


def test_one_off_window_in_utc_shown_in_another_zone() -> None:
    upgrade = item(start="2026-12-01T00:00:00Z", end="2026-12-01T00:30:00Z")
    [window] = windows([upgrade], "web", utc(2026, 11, 1), utc(2027, 1, 1), BERLIN)
    assert (window.start.isoformat(), window.end.isoformat()) == (
        "2026-12-01T01:00:00+01:00",
        "2026-12-01T01:30:00+01:00",
    )


def test_monitors_filter() -> None:
    everyone = item("all", ["*"], start="2026-12-01T00:00:00Z", end="2026-12-01T01:00:00Z")
    assert applies(DB_UPGRADE, "api")
    assert not applies(DB_UPGRADE, "web")
    assert applies(everyone, "web")
    span = (utc(2026, 11, 1), utc(2027, 1, 1), SEOUL)
    assert [w.title for w in windows([DB_UPGRADE, everyone], "api", *span)] == ["DB upgrade", "all"]
    assert [w.title for w in windows([DB_UPGRADE, everyone], "web", *span)] == ["all"]
    assert [w.title for w in windows([DB_UPGRADE, everyone], None, *span)] == ["DB upgrade", "all"]
    assert windows([DB_UPGRADE], "web", *span) == []


@pytest.mark.parametrize(
    ("start", "end", "whole", "clipped"),
    [
        (utc(2026, 11, 30, 17, 30), utc(2026, 12, 2), True, (17, 30, 18, 0)),  # began before
        (utc(2026, 11, 30, 12), utc(2026, 11, 30, 17, 30), True, (17, 0, 17, 30)),  # ends after
        (utc(2026, 11, 30, 17, 10), utc(2026, 11, 30, 17, 20), True, (17, 10, 17, 20)),
        (utc(2026, 11, 30, 18), utc(2026, 12, 2), False, None),  # half-open: ended at start
        (utc(2026, 11, 30, 12), utc(2026, 11, 30, 17), False, None),  # starts at the end
    ],
)
def test_range_edges(
    start: dt.datetime, end: dt.datetime, whole: bool, clipped: tuple[int, int, int, int] | None
) -> None:
    found = windows([DB_UPGRADE], "api", start, end, SEOUL)
    assert found == (
        [Window("DB upgrade", utc(2026, 11, 30, 17), utc(2026, 11, 30, 18))] if whole else []
    )
    got = maintenance.spans([DB_UPGRADE], "api", to_ms(start), to_ms(end), SEOUL)
    if clipped is None:
        assert not got
    else:
        h0, m0, h1, m1 = clipped
        assert got == Spans.of(
            [(to_ms(utc(2026, 11, 30, h0, m0)), to_ms(utc(2026, 11, 30, h1, m1)))]
        )


# --- recurring windows --------------------------------------------------------------------


def test_weekly_window_across_a_month() -> None:
    """The DESIGN.md example: "0 3 * * sun" for 30m, in settings.timezone."""
    weekly = item("weekly", cron="0 3 * * sun", duration="30m")
    start, end = month_bounds("2026-03", SEOUL)
    found = windows([weekly], "api", start, end, SEOUL)
    assert [w.start.isoformat() for w in found] == [
        f"2026-03-{day:02d}T03:00:00+09:00" for day in (1, 8, 15, 22, 29)
    ]
    assert all(w.end - w.start == dt.timedelta(minutes=30) for w in found)
    assert (
        maintenance.spans([weekly], "api", to_ms(start), to_ms(end), SEOUL).total()
        == 5 * 30 * MINUTE
    )


def test_recurring_window_that_began_before_the_range() -> None:
    nightly = item(cron="0 23 * * *", duration="2h")
    start = dt.datetime(2026, 3, 10, tzinfo=SEOUL)
    found = windows([nightly], "api", start, start + dt.timedelta(hours=12), SEOUL)
    assert [(w.start.isoformat(), w.end.isoformat()) for w in found] == [
        ("2026-03-09T23:00:00+09:00", "2026-03-10T01:00:00+09:00")
    ]
    got = maintenance.spans([nightly], "api", to_ms(start), to_ms(start) + 12 * 60 * MINUTE, SEOUL)
    assert got == Spans.of([(to_ms(start), to_ms(start) + 60 * MINUTE)])


@pytest.mark.parametrize(
    ("weekday_field", "weekdays"),
    [
        ("sun", {"Sun"}),
        ("0", {"Sun"}),  # cron's 0 is Sunday (APScheduler 3's from_crontab says Monday)
        ("6", {"Sat"}),
        ("1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("mon-fri", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("6,0", {"Sat", "Sun"}),
        ("sat-sun", {"Sat", "Sun"}),
        ("*/2", {"Sun", "Tue", "Thu", "Sat"}),
        ("1-5/2", {"Mon", "Wed", "Fri"}),
        ("*", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}),
    ],
)
def test_day_of_week_reads_as_cron_does(weekday_field: str, weekdays: set[str]) -> None:
    recurring = item(cron=f"0 3 * * {weekday_field}", duration="1h")
    found = windows([recurring], "api", utc(2026, 3, 1), utc(2026, 3, 15), UTC)
    assert {w.start.strftime("%a") for w in found} == weekdays
    assert len(found) == 2 * len(weekdays)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    """cron(8): "0 3 1 * mon" runs on the 1st and on every Monday."""
    found = windows(
        [item(cron="0 3 1 * mon", duration="1h")], "api", utc(2026, 3, 1), utc(2026, 4, 1), UTC
    )
    assert [w.start.day for w in found] == [1, 2, 9, 16, 23, 30]
    # A "*"-prefixed field is not a restriction, so the two AND: odd days that are Mondays.
    found = windows(
        [item(cron="0 3 */2 * mon", duration="1h")], "api", utc(2026, 3, 1), utc(2026, 4, 1), UTC
    )
    assert [w.start.day for w in found] == [9, 23]


@pytest.mark.parametrize(
    "expr",
    [
        "*/5 * * * *",
        "15 1-3 * * *",
        "0 3 * * sun",
        "30 2 1,15 * *",
        "0 */6 * 2 *",
        "0 0 last * *",
        "59 23 * * sat",
    ],
)
def test_matches_apscheduler_where_no_dst_is_involved(expr: str) -> None:
    """The day / time-of-day split finds the very fire times APScheduler walks to, one by one."""
    start, end = utc(2026, 1, 25), utc(2026, 3, 5)
    trigger = CronTrigger.from_crontab(expr, timezone=UTC)
    expected, fire = [], trigger.get_next_fire_time(None, start)
    while fire < end:
        expected.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    found = windows([item(cron=expr, duration="1s")], "api", start, end, UTC)
    assert [w.start for w in found] == expected


def test_overlapping_windows_of_one_item_merge() -> None:
    """Also what keeps dense schedules cheap: a year of "* * * * *" for a minute is one window."""
    start, end = month_bounds("2026-01", BERLIN)
    touching = windows([item(cron="*/5 * * * *", duration="5m")], "api", start, end, BERLIN)
    assert len(touching) == 1
    assert touching[0].start <= start and touching[0].end >= end
    apart = windows([item(cron="*/5 * * * *", duration="1m")], "api", start, end, BERLIN)
    assert len(apart) == 31 * 24 * 12
    separate_items = [
        item("a", cron="0 3 * * *", duration="1h"),
        item("b", cron="30 3 * * *", duration="1h"),
    ]
    assert len(windows(separate_items, "api", start, end, BERLIN)) == 2 * 31


@pytest.mark.timeout(30)
def test_a_year_of_every_minute_is_cheap() -> None:
    start, end = dt.datetime(2026, 1, 1, tzinfo=BERLIN), dt.datetime(2027, 1, 1, tzinfo=BERLIN)
    every_minute = [item(cron="* * * * *", duration="1m")]
    assert len(windows(every_minute, "api", start, end, BERLIN)) == 1
    got = maintenance.spans(every_minute, "api", to_ms(start), to_ms(end), BERLIN)
    assert got == Spans.of([(to_ms(start), to_ms(end))])


# --- DST ------------------------------------------------------------------------------------


def berlin_starts(expr: str, duration: str, first: dt.datetime, last: dt.datetime) -> list[str]:
    return starts_utc(windows([item(cron=expr, duration=duration)], "api", first, last, BERLIN))


def test_spring_forward_moves_a_missing_start_later_by_the_gap() -> None:
    """2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:00-02:59 never happens."""
    days = (utc(2026, 3, 28), utc(2026, 3, 31))
    assert berlin_starts("30 2 * * *", "30m", *days) == [
        "2026-03-28 01:30Z",  # 02:30 CET
        "2026-03-29 01:30Z",  # 02:30 does not exist: 03:30 CEST
        "2026-03-30 00:30Z",  # 02:30 CEST
    ]
    assert berlin_starts("0 2 * * *", "30m", *days) == [
        "2026-03-28 01:00Z",
        "2026-03-29 01:00Z",  # 03:00 CEST, the instant the clocks jump
        "2026-03-30 00:00Z",
    ]
    [moved] = windows(
        [item(cron="30 2 * * *", duration="30m")],
        "api",
        utc(2026, 3, 29),
        utc(2026, 3, 29, 12),
        BERLIN,
    )
    assert (moved.start.isoformat(), moved.end.isoformat()) == (
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T04:00:00+02:00",
    )


def test_fall_back_opens_a_fixed_time_window_once() -> None:
    """2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice."""
    assert berlin_starts("30 2 * * *", "30m", utc(2026, 10, 24), utc(2026, 10, 27)) == [
        "2026-10-24 00:30Z",
        "2026-10-25 00:30Z",  # 02:30 CEST; not again at 02:30 CET (01:30Z)
        "2026-10-26 01:30Z",
    ]


def test_every_n_minutes_follows_elapsed_time_through_dst() -> None:
    fall = berlin_starts("*/30 * * * *", "10m", utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 1))
    assert fall == [  # 01:30 CEST, 02:00 and 02:30 CEST, 02:00 and 02:30 CET, 03:00 CET
        "2026-10-24 23:30Z",
        "2026-10-25 00:00Z",
        "2026-10-25 00:30Z",
        "2026-10-25 01:00Z",
        "2026-10-25 01:30Z",
        "2026-10-25 02:00Z",
    ]
    spring = berlin_starts("*/30 * * * *", "10m", utc(2026, 3, 29, 0), utc(2026, 3, 29, 2))
    assert spring == [
        "2026-03-29 00:00Z",
        "2026-03-29 00:30Z",
        "2026-03-29 01:00Z",
        "2026-03-29 01:30Z",
    ]


def test_the_midnight_after_spring_forward_is_kept() -> None:
    """APScheduler 3.11, walking fire to fire in a zone, skips 2026-03-30 00:00 in Berlin;
    expansion asks it only in UTC, so every day keeps its window."""
    assert berlin_starts("0 0 * * *", "1h", utc(2026, 3, 28), utc(2026, 3, 31)) == [
        "2026-03-28 23:00Z",
        "2026-03-29 22:00Z",
        "2026-03-30 22:00Z",
    ]


def test_lord_howe_half_hour_changes() -> None:
    """Lord Howe moves by 30 minutes: 02:00 -> 02:30 on 2026-10-04, 02:00 -> 01:30 on 2026-04-05."""
    gap = windows(
        [item(cron="0 2 * * *", duration="1h")],
        "api",
        utc(2026, 10, 3, 12),
        utc(2026, 10, 4, 12),
        LORD_HOWE,
    )
    assert [w.start.isoformat() for w in gap] == ["2026-10-04T02:30:00+11:00"]
    fold = windows(
        [item(cron="45 1 * * *", duration="5m")],
        "api",
        utc(2026, 4, 4, 12),
        utc(2026, 4, 5, 12),
        LORD_HOWE,
    )
    assert [w.start.isoformat() for w in fold] == ["2026-04-05T01:45:00+11:00"]  # not +10:30 too
    every = windows(
        [item(cron="*/15 1 * * *", duration="5m")],
        "api",
        utc(2026, 4, 4, 12),
        utc(2026, 4, 5, 12),
        LORD_HOWE,
    )
    assert [w.start.strftime("%H:%M%z") for w in every] == [
        "01:00+1100",
        "01:15+1100",
        "01:30+1100",
        "01:45+1100",
        "01:30+1030",
        "01:45+1030",
    ]


def test_dst_month_of_maintenance_is_elapsed_time() -> None:
    """A window spanning the whole of October 2026 in Berlin is 745 hours of maintenance."""
    start, end = month_bounds("2026-10", BERLIN)
    always = item(cron="0 * * * *", duration="1h")
    assert (
        maintenance.spans([always], "api", to_ms(start), to_ms(end), BERLIN).total()
        == 745 * 60 * MINUTE
    )


# --- active and upcoming --------------------------------------------------------------------

SCHEDULE = [
    item("nightly", ["api"], cron="0 3 * * *", duration="30m"),
    item("upgrade", ["web"], start="2026-06-10T12:00:00+09:00", end="2026-06-10T14:00:00+09:00"),
]


def test_active() -> None:
    at = dt.datetime(2026, 6, 10, 3, 10, tzinfo=SEOUL)
    assert [w.title for w in active(SCHEDULE, "api", at, SEOUL)] == ["nightly"]
    assert active(SCHEDULE, "web", at, SEOUL) == []
    [window] = active(SCHEDULE, None, dt.datetime(2026, 6, 10, 12, 0, tzinfo=SEOUL), SEOUL)
    assert window.title == "upgrade"  # the start is inside
    assert (
        active(SCHEDULE, None, dt.datetime(2026, 6, 10, 14, 0, tzinfo=SEOUL), SEOUL) == []
    )  # the end is not


def test_upcoming() -> None:
    at = dt.datetime(2026, 6, 8, 3, 10, tzinfo=SEOUL)  # inside "nightly": active, not upcoming
    found = upcoming(SCHEDULE, None, at, SEOUL)
    assert [(w.title, w.start.isoformat()) for w in found] == [
        ("nightly", "2026-06-09T03:00:00+09:00"),
        ("nightly", "2026-06-10T03:00:00+09:00"),
        ("upgrade", "2026-06-10T12:00:00+09:00"),
        ("nightly", "2026-06-11T03:00:00+09:00"),
        ("nightly", "2026-06-12T03:00:00+09:00"),
        ("nightly", "2026-06-13T03:00:00+09:00"),
        ("nightly", "2026-06-14T03:00:00+09:00"),
        ("nightly", "2026-06-15T03:00:00+09:00"),
    ]
    assert [w.title for w in upcoming(SCHEDULE, "web", at, SEOUL, dt.timedelta(days=1))] == []
    assert [w.title for w in upcoming(SCHEDULE, "web", at, SEOUL, dt.timedelta(days=3))] == [
        "upgrade"
    ]
