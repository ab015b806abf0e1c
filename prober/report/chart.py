"""The HTML report's daily uptime chart as SVG geometry: one bar per day of the month that
has begun, on a linear vertical scale whose two labels (the axis and 100 %) are true.
Pure: the days in, coordinates out; render.py supplies the words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Sequence

from prober.report.model import DayBar

# Geometry in SVG user units; the SVG scales to the page width.
LEFT, TOP, PLOT, STEP, BAR = 40.0, 6.0, 90.0, 14.0, 10.0
# The worst day stands at least this share of the plot above the axis (when the axis can
# start low enough, i.e. above 0 %), so it reads as a bar and its height can be read.
HEADROOM = 0.2
# A day at exactly the axis (0 % on a 0-100 axis) is still drawn, as a sliver this high.
SLIVER = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    height: float
    kind: str  # CSS class: ok | warn | bad | none
    label: str  # the <title>: the bar's text equivalent


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    x: float  # the middle of the day's slot
    text: str  # the day of month


@dataclasses.dataclass(frozen=True, slots=True)
class Chart:
    width: float
    height: float
    left: float
    top: float
    axis_y: float
    target_y: float
    target_label: bool  # room for the target's own label beside the axis
    bar_width: float
    floor: float  # the percentage at the axis
    bars: list[Bar]  # days that have begun; later days have no bar
    ticks: list[Tick]


def axis_floor(lowest: float) -> float:
    """Where the axis starts for a worst value of `lowest` %: far enough below it that it
    keeps HEADROOM of the plot, the distance to 100 % rounded up to one significant digit
    (a 45 % day: 30 %; 99.8 %: 99.7 %), never below 0 %."""
    reach = (100 - lowest) / (1 - HEADROOM)
    if reach >= 100:
        return 0.0
    magnitude = 10.0 ** math.floor(math.log10(reach))
    # round before ceil: 0.25 / 0.1 is 2.4999999999999996 or 2.5000000000000004
    span = math.ceil(round(reach / magnitude, 9)) * magnitude
    return max(0.0, round(100 - span, 9))


def draw(
    days: Sequence[DayBar], target: float, today: dt.date, label: Callable[[DayBar], str]
) -> Chart:
    """`today` is the report's generation date (local): later days have not happened and
    get no bar; today's bar is the day so far, accounted like any other."""
    # Uptimes sit near 100 %, so a 0-100 axis would draw every bar full: the axis starts
    # below the worst day and at least twice the error budget below 100 % (so the target
    # line sits in the plot, at most half-way down, on a month without a bad day).
    begun = [day for day in days if day.date <= today]
    known = [day.uptime_percent for day in begun if day.uptime_percent is not None]
    floor = axis_floor(min([target - max(100 - target, 0.05), *known]))
    axis_y = TOP + PLOT

    def y(percent: float) -> float:
        return round(TOP + (100 - max(percent, floor)) / (100 - floor) * PLOT, 2)

    bars = []
    for index, day in enumerate(begun):
        top = TOP if day.uptime_percent is None else min(y(day.uptime_percent), axis_y - SLIVER)
        x = LEFT + index * STEP + (STEP - BAR) / 2
        bars.append(Bar(x, top, round(axis_y - top, 2), _kind(day, target), label(day)))
    ticks = [
        Tick(LEFT + index * STEP + STEP / 2, str(day.date.day))
        for index, day in enumerate(days)
        if day.date.day == 1 or day.date.day % 5 == 0
    ]
    target_y = y(target)
    return Chart(
        width=LEFT + max(len(days), 1) * STEP + 4,
        height=axis_y + 12,
        left=LEFT,
        top=TOP,
        axis_y=axis_y,
        target_y=target_y,
        target_label=TOP + 8 <= target_y <= axis_y - 8,  # clear of the 100 % and axis labels
        bar_width=BAR,
        floor=floor,
        bars=bars,
        ticks=ticks,
    )


def _kind(day: DayBar, target: float) -> str:
    if day.uptime_percent is None:
        return "none"
    if day.downtime_seconds == 0:
        return "ok"
    return "warn" if day.uptime_percent >= target else "bad"
