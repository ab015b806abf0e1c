"""Run every probing monitor on its interval, spread over the interval by a stable phase.

APScheduler 3.x owns the timetable (one interval job per monitor, misfires coalesced,
never two runs of one monitor at once). The hard deadline lives inside the job, so a hung
target can never freeze a monitor; a watchdog above it catches our own bugs too.

A check that fails or slows while the prober itself was late (a late start, the event loop
stalled, no file descriptors) is recorded `unknown`, "prober overloaded" (prober.overload).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import zlib
from collections import deque
from collections.abc import Callable, Sequence

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from prober.canaries import Canaries
from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.config.monitors import ProbingMonitor
from prober.overload import Overload, Stalls, excuse
from prober.results import CheckResult, Outcome

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


def _nearest_rank(ordered: Sequence[float], ps: Sequence[float]) -> list[float]:
    if not ordered:
        return [0.0 for _ in ps]
    n = len(ordered)
    return [ordered[min(n, max(math.ceil(p / 100 * n), 1)) - 1] for p in ps]


class LagStats:
    """Recent start lags, for the periodic log line and the benchmark."""

    def __init__(self, keep: int = 100_000) -> None:
        self._recent: deque[float] = deque(maxlen=keep)
        self._period: list[float] = []  # since the last take_period()
        self.runs = 0

    def add(self, seconds: float) -> None:
        self._recent.append(seconds)
        self._period.append(seconds)
        self.runs += 1

    def take_period(self, *ps: float) -> list[float]:
        """Percentiles of the starts since the last call (the stats line's minute)."""
        period, self._period = self._period, []
        return _nearest_rank(sorted(period), ps)

    def percentiles(self, *ps: float) -> list[float]:
        """Nearest rank over the recent window, one sort for all of them."""
        return _nearest_rank(sorted(self._recent), ps)

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
        overload_threshold: float = 0.5,
        stalls: Stalls | None = None,
    ) -> None:
        self._monitors = list(monitors)
        self._shared = shared
        self._sink = sink
        self._canaries = canaries
        self._slots = asyncio.Semaphore(max_concurrency)
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self._scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        self._due: dict[str, dt.datetime] = {}  # job id -> the run time just submitted
        self._in_flight: set[asyncio.Task[None]] = set()
        self.lag = LagStats()
        self.running = False
        # seconds of the prober's own unavailability past which a failure is not judged
        self.overload_threshold = overload_threshold
        self.stalls = stalls if stalls is not None else Stalls()
        self.overload = Overload()

    def start(self) -> None:
        now = self._shared.clock.now()
        for monitor in self._monitors:
            self._add(monitor, now)
        self.stalls.start()
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

    def _submitted(self, event: JobSubmissionEvent) -> None:
        """APScheduler handed a run to the loop; its task starts after this returns."""
        if event.scheduled_run_times:
            self._due[event.job_id] = event.scheduled_run_times[-1]

    def reconfigure(
        self, monitors: Sequence[ProbingMonitor], overload_threshold: float | None = None
    ) -> tuple[int, int, int]:
        """A reloaded config: new monitors start, removed ones stop, changed ones take their
        new settings at their next run (on the same stable phase). A check in flight
        finishes as it began. Returns (added, removed, changed)."""
        if overload_threshold is not None:
            self.overload_threshold = overload_threshold
        old = {m.id: m for m in self._monitors}
        new = {m.id: m for m in monitors}
        now = self._shared.clock.now()
        added = [m for mid, m in new.items() if mid not in old]
        changed = [m for mid, m in new.items() if mid in old and old[mid] != m]
        removed = [mid for mid in old if mid not in new]
        for mid in removed:
            self._due.pop(mid, None)
            if self.running:
                self._scheduler.remove_job(mid)
        for monitor in (*added, *changed):
            if self.running:
                self._add(monitor, now)
        self._monitors = list(monitors)
        return len(added), len(removed), len(changed)

    async def stop(self, grace: float) -> None:
        """No new runs; let in-flight checks finish within `grace`, then cancel the rest.

        APScheduler is paused first and shut down last: its executor's shutdown cancels
        the checks it is still running, which must be allowed to finish and be recorded."""
        was_running = self.running
        if was_running:
            self._scheduler.pause()
            self.running = False
            for _ in range(3):  # runs submitted just before the pause get to start
                await asyncio.sleep(0)
        pending = set(self._in_flight)
        if pending:
            log.info("waiting for %d in-flight checks (up to %.0fs)", len(pending), grace)
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        if was_running:
            self._scheduler.shutdown(wait=False)
        self.stalls.stop()
        self.overload.end_if_quiet(asyncio.get_running_loop().time(), force=True)

    async def _run(self, monitor: ProbingMonitor) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        loop = asyncio.get_running_loop()
        due = self._due.pop(monitor.id, None)
        try:
            async with self._slots:
                started = self._shared.clock.now()
                t0 = loop.time()
                grid_late = lateness(monitor.id, monitor.interval, started)
                self.lag.add(grid_late)
                # Late against the run APScheduler submitted (the grid time in production;
                # waiting for a slot counts): a run moved by hand is not late.
                late = grid_late if due is None else (started - due).total_seconds()
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
                result = self._judge_overload(monitor, result, late, t0, started)
            # Outside the slot: waiting on the canaries must not hold back other checks.
            if self._canaries is not None:
                result = await self._canaries.judge(result)
            self._sink(monitor, started, result)
        finally:
            self._in_flight.discard(task)

    def _judge_overload(
        self,
        monitor: ProbingMonitor,
        result: CheckResult,
        late: float,
        t0: float,
        started: dt.datetime,
    ) -> CheckResult:
        """`unknown` for a failure the prober's own lateness explains (docs/REFERENCE.md)."""
        now = asyncio.get_running_loop().time()
        self.overload.end_if_quiet(now)
        if result.outcome not in (Outcome.DOWN, Outcome.DEGRADED):
            return result
        stalled = self.stalls.unavailable(t0, now, now)
        reason = excuse(result, late, stalled, self.overload_threshold)
        if reason is None:
            return result
        self.overload.record(monitor.id, reason, now, started)
        details = {
            **result.details,
            "prober_late_ms": round(max(0.0, late) * 1000),
            "prober_stalled_ms": round(stalled * 1000),
        }
        return dataclasses.replace(result, outcome=Outcome.UNKNOWN, error=reason, details=details)


Sink = Callable[[ProbingMonitor, dt.datetime, CheckResult], None]


class ResultLog:
    """Hands results to `submit` (the writer; an agent's queue); logs a monitor when its
    outcome changes.

    A first result that is up is not news: 10,000 monitors starting must not mean
    10,000 log lines. A first result that is anything else is logged.
    """

    def __init__(self, submit: Sink) -> None:
        self._submit = submit
        self._last: dict[str, Outcome] = {}
        self.count = 0
        self.last_at: float | None = None  # epoch seconds of the newest result handed over

    def __call__(self, monitor: ProbingMonitor, at: dt.datetime, result: CheckResult) -> None:
        self._submit(monitor, at, result)
        self.count += 1
        self.last_at = at.timestamp()
        previous = self._last.get(monitor.id)
        self._last[monitor.id] = result.outcome
        news = (
            result.outcome is not Outcome.UP if previous is None else previous is not result.outcome
        )
        level = logging.INFO if news else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(
                level,
                'monitor=%s type=%s outcome=%s latency_ms=%.0f error="%s"',
                monitor.id,
                monitor.type,
                result.outcome.value,
                result.latency_ms,
                result.error or "",
            )
