"""Geometry for the page's pictures, computed here so templates only place numbers.

Day bars, the per-monitor sparkline and the monitor page's p50/p95 chart. Hours without a
value are gaps in a line (a new "M" in the path), never zeros: a line drawn down to 0 ms
would claim the target answered instantly while it did not answer at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Sequence

from statuspage.snapshot import DayLevel, DayView, LatencyPoint

# A line breaks where two consecutive points are more than this far apart.
_MAX_STEP = dt.timedelta(minutes=90)


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    day: DayView
    tip: str  # where the tooltip anchors so it stays on screen: start | mid | end
    marked: bool  # the day had downtime: a mark under the bar, not only a colour


def day_bars(days: Sequence[DayView], count: int, today: dt.date) -> tuple[Bar, ...]:
    """Exactly `count` bars, oldest first; days before the history began are unknown."""
    shown = list(days[-count:]) if count else []
    if len(shown) < count:
        first = shown[0].date if shown else today + dt.timedelta(days=1)
        missing = count - len(shown)
        shown[:0] = [_unknown(first - dt.timedelta(days=missing - i)) for i in range(missing)]
    third = max(1, count // 3)
    return tuple(
        Bar(
            day=day,
            tip="start" if i < third else "end" if i >= count - third else "mid",
            marked=day.downtime_seconds > 0 or day.incidents > 0,
        )
        for i, day in enumerate(shown)
    )


def _unknown(date: dt.date) -> DayView:
    return DayView(date, DayLevel.UNKNOWN, None, 0.0, 0.0, 86400.0, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class Line:
    """One series as an SVG path with gaps, plus dots for points that stand alone."""

    path: str  # "" when no point has a value
    dots: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Sparkline:
    width: int
    height: int
    line: Line
    average_ms: float | None
    highest_ms: float | None

    @property
    def empty(self) -> bool:
        return self.average_ms is None


def sparkline(points: Sequence[LatencyPoint], *, width: int = 120, height: int = 28) -> Sparkline:
    """The hourly average response time, scaled between its own lowest and highest hour."""
    values = [p.avg_ms for p in points if p.avg_ms is not None]
    if not values:
        return Sparkline(width, height, Line("", ()), None, None)
    pad = 3.0
    low, high = min(values), max(values)
    x = _time_scale(points, pad, width - pad)

    def y(value: float) -> float:
        if high == low:
            return height / 2
        return pad + (high - value) / (high - low) * (height - 2 * pad)

    return Sparkline(
        width,
        height,
        _line(points, lambda p: p.avg_ms, x, y, digits=0),  # whole pixels: 100 per page
        sum(values) / len(values),
        high,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    at: float  # x or y in the chart's coordinates
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class Chart:
    """The monitor page's response-time chart; plot area from (left, top) to (right, bottom)."""

    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    p50: Line
    p95: Line
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]

    @property
    def empty(self) -> bool:
        return not (self.p50.path or self.p95.path or self.p50.dots or self.p95.dots)

    @property
    def middle(self) -> float:
        return (self.left + self.right) / 2


def latency_chart(
    points: Sequence[LatencyPoint], hour_label: Callable[[dt.datetime], str]
) -> Chart:
    """p50 and p95 per hour against a 0-based axis with round ticks; x ticks every 6 hours."""
    width, height = 720, 300
    left, top, right, bottom = 72.0, 36.0, width - 20.0, height - 64.0
    values = [v for p in points for v in (p.p50_ms, p.p95_ms) if v is not None]
    step = _nice_step(max(values, default=0.0) / 4)
    ceiling = step * max(1, math.ceil(max(values, default=0.0) / step))
    x = _time_scale(points, left, right)

    def y(value: float) -> float:
        return bottom - value / ceiling * (bottom - top)

    y_ticks = tuple(
        Tick(round(y(step * i), 1), _number(step * i)) for i in range(round(ceiling / step) + 1)
    )
    x_ticks = tuple(
        Tick(round(x(p), 1), hour_label(p.hour)) for p in points if p.hour.hour % 6 == 0
    )
    return Chart(
        width,
        height,
        left,
        top,
        right,
        bottom,
        _line(points, lambda p: p.p50_ms, x, y),
        _line(points, lambda p: p.p95_ms, x, y),
        y_ticks,
        x_ticks,
    )


def _time_scale(
    points: Sequence[LatencyPoint], start: float, end: float
) -> Callable[[LatencyPoint], float]:
    """x by time, so a missing hour leaves its space instead of squeezing the line."""
    if not points:
        return lambda _p: start
    first, last = points[0].hour, points[-1].hour
    span = (last - first).total_seconds()
    if span <= 0:
        return lambda _p: (start + end) / 2
    return lambda p: start + (p.hour - first).total_seconds() / span * (end - start)


def _line(
    points: Sequence[LatencyPoint],
    value: Callable[[LatencyPoint], float | None],
    x: Callable[[LatencyPoint], float],
    y: Callable[[float], float],
    digits: int = 1,
) -> Line:
    runs: list[list[tuple[float, float]]] = []
    previous: LatencyPoint | None = None
    for point in points:
        v = value(point)
        if v is None:
            previous = None
            continue
        xy = (round(x(point), digits), round(y(v), digits))
        if previous is None or point.hour - previous.hour > _MAX_STEP:
            runs.append([xy])
        else:
            runs[-1].append(xy)
        previous = point
    path = " ".join(
        "M" + " L".join(f"{px:g},{py:g}" for px, py in run) for run in runs if len(run) > 1
    )
    return Line(path, tuple(run[0] for run in runs if len(run) == 1))


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw` (and at least 1 ms)."""
    if raw <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _number(value: float) -> str:
    return f"{value:,.0f}"
