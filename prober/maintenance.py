"""Maintenance windows from `[[maintenance]]`, one-off or recurring, laid out over a range.
Maintenance never hides results or incidents: it only takes time out of reports and
silences notifications. Pure: ranges and `at` are passed in.

A recurring window is a crontab read as cron(8) reads it, in settings.timezone, each fire
time t opening [t, t + duration) in elapsed time:
- Day of week 0 is Sunday. (APScheduler 3's `from_crontab` counts 0 as Monday, so numbers
  are rewritten as day names before it sees them.)
- When both day of month and day of week are restricted, a day matching either fires.
- DST gap: a start time that does not exist is read with the offset from before the change,
  so it moves later by the gap. In Europe/Berlin on 2026-03-29, "30 2 * * *" opens at 03:30
  CEST (01:30Z) and "0 2 * * *" at 03:00 CEST (01:00Z), where APScheduler fires them too.
- DST fold: a start time that happens twice opens one window, at its first occurrence
  ("30 2 * * *" on 2026-10-25 in Berlin: 02:30 CEST, 00:30Z, only), as cron(8) runs a
  fixed-time job once; APScheduler would fire it twice. Expressions with "*" in the minute
  or hour field ("*/5 * * * *") follow elapsed time and open windows on both passes.
Windows of one item that overlap or touch are reported as one window, which is also what
keeps a dense schedule ("* * * * *" for a minute) from becoming a list of every minute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Iterator, Sequence

from apscheduler.triggers.cron import CronTrigger

from prober.config.settings import Maintenance
from prober.timeline import Spans, from_ms, to_ms

_DAY = dt.timedelta(days=1)
_HOUR = dt.timedelta(hours=1)
_DAY_MS = 86_400_000
_MS = dt.timedelta(milliseconds=1)
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's numbering
_WEEKDAY_PART = re.compile(r"(\*|[0-9]+|[a-z]{3})(?:-([0-9]+|[a-z]{3}))?(?:/([0-9]+))?", re.I)


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """One maintenance window, aware, in the settings time zone."""

    title: str
    start: dt.datetime
    end: dt.datetime


def applies(item: Maintenance, monitor_id: str) -> bool:
    return "*" in item.monitors or monitor_id in item.monitors


def windows(
    items: Sequence[Maintenance],
    monitor_id: str | None,
    start: dt.datetime,
    end: dt.datetime,
    tz: dt.tzinfo,
) -> list[Window]:
    """Every window overlapping [start, end), whole (one that began earlier is included),
    in order of start; monitor_id None means windows for any monitor."""
    start_ms, end_ms = to_ms(start), to_ms(end)
    # Ordered as instants: two aware datetimes in one zone compare by wall clock, so the
    # second 02:30 of a fall-back night would sort level with the first.
    found = sorted(
        (a, b, item.title)
        for item in items
        if monitor_id is None or applies(item, monitor_id)
        for a, b in _occurrences(item, start_ms, end_ms, tz)
        if b > start_ms and a < end_ms
    )
    return [Window(title, from_ms(a, tz), from_ms(b, tz)) for a, b, title in found]


def spans(
    items: Sequence[Maintenance], monitor_id: str | None, start_ms: int, end_ms: int, tz: dt.tzinfo
) -> Spans:
    """The maintained time inside [start_ms, end_ms), for accounting."""
    found = Spans.empty()
    for item in items:
        if monitor_id is None or applies(item, monitor_id):
            found |= _occurrences(item, start_ms, end_ms, tz).clip(start_ms, end_ms)
    return found


def active(
    items: Sequence[Maintenance], monitor_id: str | None, at: dt.datetime, tz: dt.tzinfo
) -> list[Window]:
    """Windows running at `at` (start <= at < end, to the millisecond)."""
    return windows(items, monitor_id, at, at + _MS, tz)


def upcoming(
    items: Sequence[Maintenance],
    monitor_id: str | None,
    at: dt.datetime,
    tz: dt.tzinfo,
    horizon: dt.timedelta = dt.timedelta(days=7),
) -> list[Window]:
    """Windows starting after `at` and before `at + horizon`; running ones are `active`."""
    at_ms = to_ms(at)
    found = windows(items, monitor_id, at, at + horizon, tz)
    return [w for w in found if to_ms(w.start) > at_ms]


def next_fire(expr: str, after_ms: int, tz: dt.tzinfo) -> int:
    """The first fire time of crontab `expr` (read as cron(8) reads it, in `tz`) strictly
    after `after_ms`, in UTC ms. Push monitors with `cron` expect a ping there."""
    schedule = _schedule(expr)
    first = from_ms(after_ms, tz).date() - _DAY
    for span in (8, 40, 400, 3000):  # a yearly job (or Feb 29) needs a longer look
        found = [t for t in schedule.starts(first, first + span * _DAY, tz) if t > after_ms]
        if found:
            return min(found)
    raise ValueError(f"cron {expr!r} never fires")


def _occurrences(item: Maintenance, start_ms: int, end_ms: int, tz: dt.tzinfo) -> Spans:
    """The item's windows, merged where they overlap or touch: every one overlapping
    [start_ms, end_ms), whole, and perhaps a few more nearby."""
    if item.cron is None or item.duration is None:  # one-off: the model requires start and end
        assert item.start is not None
        assert item.end is not None
        return Spans.of([(to_ms(item.start), to_ms(item.end))])
    duration_ms = round(item.duration * 1000)
    # A day of margin each side: a start moved by a DST gap can cross local midnight.
    first = from_ms(start_ms - duration_ms, tz).date() - _DAY
    last = from_ms(end_ms, tz).date() + _DAY
    return Spans.of((t, t + duration_ms) for t in _schedule(item.cron).starts(first, last, tz))


@dataclasses.dataclass(frozen=True, slots=True)
class _Schedule:
    """A crontab split into the days it fires on and the times of day it fires at. Cron
    ANDs the two, so a month costs one APScheduler call per firing day rather than one per
    firing (a month of "*/5 * * * *" is 8,928 firings). APScheduler is only asked in UTC,
    where no DST change can trip it: 3.11, walking from fire to fire in Europe/Berlin,
    skips the midnight after the spring-forward day."""

    days: tuple[CronTrigger, ...]  # a date matching any of them is a firing day
    times: tuple[tuple[int, int], ...]  # (hour, minute)
    offsets: tuple[int, ...]  # the same times as ms after midnight, on days without a change
    elapsed: bool  # "*" in minute or hour: fires on both passes of a repeated hour

    def starts(self, first: dt.date, last: dt.date, tz: dt.tzinfo) -> list[int]:
        """Fire times (UTC ms) on local dates first..last."""
        out: list[int] = []
        for day in self._dates(first, last):
            midnight = _midnight_ms(day, tz)
            if _midnight_ms(day + _DAY, tz) - midnight == _DAY_MS:  # no DST change that day
                out.extend(midnight + offset for offset in self.offsets)
            else:
                out.extend(self._changing_day(day, tz))
        return out

    def _changing_day(self, day: dt.date, tz: dt.tzinfo) -> Iterator[int]:
        for hour, minute in self.times:
            wall = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
            # fold=0 is the first pass of a repeated time and, inside a gap, the offset
            # from before the change (later by the gap); fold=1 the other reading.
            first_pass, other = to_ms(wall), to_ms(wall.replace(fold=1))
            yield first_pass
            if self.elapsed and other > first_pass:
                yield other

    def _dates(self, first: dt.date, last: dt.date) -> list[dt.date]:
        start = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC)
        end = start + _DAY * ((last - first).days + 1)
        return sorted({fire.date() for days in self.days for fire in _fires(days, start, end)})


@functools.lru_cache(maxsize=128)
def _schedule(expr: str) -> _Schedule:
    minute, hour, day, month, weekday = expr.split()
    weekdays = _cron_weekdays(weekday)
    if day.startswith("*") or weekday.startswith("*"):
        rules = [{"day": day, "day_of_week": weekdays}]
    else:  # both restricted: cron fires on a day matching either
        rules = [{"day": day}, {"day_of_week": weekdays}]
    days = tuple(
        CronTrigger(month=month, **rule, hour=0, minute=0, timezone=dt.UTC) for rule in rules
    )
    # Wall-clock arithmetic in UTC, so no DST change is in the way of listing the values.
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    hourly = CronTrigger(hour=hour, minute=0, timezone=dt.UTC)
    hours = [fire.hour for fire in _fires(hourly, epoch, epoch + _DAY)]
    every_minute = CronTrigger(minute=minute, timezone=dt.UTC)
    minutes = [fire.minute for fire in _fires(every_minute, epoch, epoch + _HOUR)]
    times = tuple((h, m) for h in hours for m in minutes)
    return _Schedule(
        days=days,
        times=times,
        offsets=tuple((h * 60 + m) * 60_000 for h, m in times),
        elapsed=minute.startswith("*") or hour.startswith("*"),
    )


def _midnight_ms(day: dt.date, tz: dt.tzinfo) -> int:
    return to_ms(dt.datetime(day.year, day.month, day.day, tzinfo=tz))


def _fires(trigger: CronTrigger, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < end:
        yield fire
        fire = trigger.get_next_fire_time(fire, fire)


def _cron_weekdays(field: str) -> str:
    """A crontab day-of-week field with cron's numbers (0 and 7 are Sunday) as day names,
    which APScheduler reads the same way. A part it does not recognise is left as written
    for APScheduler to judge (config validation already accepted the whole expression)."""
    days: set[int] = set()
    for part in field.split(","):
        match = _WEEKDAY_PART.fullmatch(part)
        if match is None:
            return field
        first, last, step = match.groups()
        try:
            low = 0 if first == "*" else _cron_weekday(first)
            high = 6 if first == "*" or (step and not last) else _cron_weekday(last or first)
            run = range(low, high + 1) if low <= high else [*range(low, 7), *range(high + 1)]
            days.update(d % 7 for d in list(run)[:: int(step or 1)])
        except ValueError:  # includes a step of 0
            return field
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _cron_weekday(token: str) -> int:
    if token.isdigit():
        if int(token) > 7:
            raise ValueError(token)
        return int(token)
    return _WEEKDAYS.index(token.lower())
