"""Run every probing monitor on its interval, spread over the interval by a stable phase.

APScheduler 3.x owns the timetable (one interval job per monitor, misfires coalesced,
never two runs of one monitor at once). The hard deadline lives inside the job, so a hung
target can never freeze a monitor; a watchdog above it catches our own bugs too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import zlib
from collections import deque
from collections.abc import Callable, Sequence

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from prober.canaries import Canaries
from prober.checks.context import Shared
from prober.checks.result import CheckResult, Outcome
from prober.checks.runner import run_check
from prober.config.monitors import ProbingMonitor

log = logging.getLogger(__name__)

WATCHDOG_SLACK = 5.0  # seconds past a check's own deadline before we call it our bug
ResultSink = Callable[[ProbingMonitor, dt.datetime, CheckResult], None]


def phase_offset(monitor_id: str, interval: float) -> float:
    """A stable offset in [0, interval): the same second of the minute after every restart."""
    return zlib.crc32(monitor_id.encode()) / 2**32 * interval


def next_due(monitor_id: str, interval: float, now: dt.datetime) -> dt.datetime:
    """The first due time at or after `now` on the monitor's grid (epoch + phase + k*interval)."""
    phase = phase_offset(monitor_id, interval)
    elapsed = now.timestamp() - phase
    k = -(-elapsed // interval)  # ceil
    return dt.datetime.fromtimestamp(k * interval + phase, dt.UTC)


def lateness(monitor_id: str, interval: float, started: dt.datetime) -> float:
    """Seconds between the most recent due time and `started` (slightly negative if early)."""
    phase = phase_offset(monitor_id, interval)
    rest = (started.timestamp() - phase) % interval
    return rest - interval if rest > interval - 0.5 else rest


class LagStats:
    """Recent start lags, for the periodic log line and the benchmark."""

    def __init__(self, keep: int = 100_000) -> None:
        self._recent: deque[float] = deque(maxlen=keep)
        self.runs = 0

    def add(self, seconds: float) -> None:
        self._recent.append(seconds)
        self.runs += 1

    def percentiles(self, *ps: float) -> list[float]:
        """Nearest rank over the recent window, one sort for all of them."""
        ordered = sorted(self._recent)
        if not ordered:
            return [0.0 for _ in ps]
        n = len(ordered)
        return [ordered[min(n, max(math.ceil(p / 100 * n), 1)) - 1] for p in ps]

    def percentile(self, p: float) -> float:
        return self.percentiles(p)[0]


class ProbeScheduler:
    def __init__(
        self,
        monitors: Sequence[ProbingMonitor],
        shared: Shared,
        sink: ResultSink,
        max_concurrency: int = 500,
        canaries: Canaries | None = None,
    ) -> None:
        self._monitors = list(monitors)
        self._shared = shared
        self._sink = sink
        self._canaries = canaries
        self._slots = asyncio.Semaphore(max_concurrency)
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self._in_flight: set[asyncio.Task[None]] = set()
        self.lag = LagStats()
        self.running = False

    def start(self) -> None:
        now = self._shared.clock.now()
        for monitor in self._monitors:
            self._add(monitor, now)
        self._scheduler.start()
        self.running = True
        log.info("scheduler started monitors=%d", len(self._monitors))

    def _add(self, monitor: ProbingMonitor, now: dt.datetime) -> None:
        self._scheduler.add_job(
            self._run,
            IntervalTrigger(
                seconds=monitor.interval,
                start_date=next_due(monitor.id, monitor.interval, now),
                timezone=dt.UTC,
            ),
            args=[monitor],
            id=monitor.id,
            name=monitor.id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(monitor.interval)),
            replace_existing=True,
        )

    def reconfigure(self, monitors: Sequence[ProbingMonitor]) -> tuple[int, int, int]:
        """A reloaded config: new monitors start, removed ones stop, changed ones take their
        new settings at their next run (on the same stable phase). A check in flight
        finishes as it began. Returns (added, removed, changed)."""
        old = {m.id: m for m in self._monitors}
        new = {m.id: m for m in monitors}
        now = self._shared.clock.now()
        added = [m for mid, m in new.items() if mid not in old]
        changed = [m for mid, m in new.items() if mid in old and old[mid] != m]
        removed = [mid for mid in old if mid not in new]
        for mid in removed:
            if self.running:
                self._scheduler.remove_job(mid)
        for monitor in (*added, *changed):
            if self.running:
                self._add(monitor, now)
        self._monitors = list(monitors)
        return len(added), len(removed), len(changed)

    async def stop(self, grace: float) -> None:
        """No new runs; let in-flight checks finish within `grace`, then cancel the rest."""
        if self.running:
            self._scheduler.shutdown(wait=False)
            self.running = False
        pending = set(self._in_flight)
        if pending:
            log.info("waiting for %d in-flight checks (up to %.0fs)", len(pending), grace)
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)

    async def _run(self, monitor: ProbingMonitor) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            async with self._slots:
                started = self._shared.clock.now()
                self.lag.add(lateness(monitor.id, monitor.interval, started))
                try:
                    async with asyncio.timeout(monitor.timeout + WATCHDOG_SLACK):
                        result = await run_check(monitor, self._shared)
                except TimeoutError:
                    log.error(
                        "monitor=%s watchdog fired: the check ignored its deadline", monitor.id
                    )
                    result = CheckResult(
                        Outcome.UNKNOWN, monitor.timeout * 1000, error="internal error: watchdog"
                    )
            # Outside the slot: waiting on the canaries must not hold back other checks.
            if self._canaries is not None:
                result = await self._canaries.judge(result)
            self._sink(monitor, started, result)
        finally:
            self._in_flight.discard(task)
