"""The one place that reads the clock, so tests can move time without patching."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Aware UTC wall time: for timestamps that are stored."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: for durations and deadlines."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()
