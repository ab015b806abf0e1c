"""The prober's own lateness is not the target's fault (docs/REFERENCE.md, Results).

`Stalls` is a ticker on the event loop: a timer every 50 ms that notes each wake-up more
than a few milliseconds late as an interval during which the loop could not run (a
blocking call, a CPU-bound burst, a paused process). `unavailable(t0, t1)` is the stall
time overlapping a check's run, on the loop's clock.

`excuse` says why a `down` or `degraded` result is the prober's fault, or None: the prober
started the check late and / or its loop stalled during it by more than the threshold
("prober overloaded"), or the check failed for want of file descriptors ("prober out of
file descriptors"). `Overload` counts the results recorded `unknown` for it, logs each
streak once, and keeps the recent descriptor failures for /healthz.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import errno
import logging
import os
import time
from collections.abc import Iterator

from prober.results import CheckResult, Outcome

log = logging.getLogger(__name__)

TICK_S = 0.05  # the ticker's period: a stall is measured to within this
SLACK_S = 0.005  # a wake-up later than this is a stall (timer granularity is ~1 ms)
KEEP = 4096  # stalls remembered: ~100 s of a loop that is late at every tick
STREAK_GAP_S = 60.0  # a streak ends after this long without a result recorded unknown
MAX_ERROR = 500  # as the runner's bound on error text
OVERLOADED = "prober overloaded"
NO_FILES = "prober out of file descriptors"

# How EMFILE / ENFILE read once a check has turned them into words ("connect failed: ...").
_NO_DESCRIPTORS = (os.strerror(errno.EMFILE), os.strerror(errno.ENFILE))


class Stalls:
    """Recent intervals, on `loop.time()`, when the event loop could not run a timer.

    A stall of S seconds is recorded as the time from the tick's due time to its wake-up:
    between S - every and S (it may have begun part-way through a sleep), so the count
    errs towards the target's fault, never the prober's.
    """

    def __init__(self, every: float = TICK_S, slack: float = SLACK_S, keep: int = KEEP) -> None:
        self.every = every
        self.slack = slack
        self._stalls: collections.deque[tuple[float, float]] = collections.deque(maxlen=keep)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due: float | None = None

    def start(self) -> None:
        """Tick on the running loop until `stop()`; a plain timer, no task."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.every
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._due = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def _tick(self) -> None:
        assert self._loop is not None
        assert self._due is not None
        woke = self._loop.time()
        self.observe(self._due, woke)
        self._due = woke + self.every  # after a stall, no catching up
        self._handle = self._loop.call_at(self._due, self._tick)

    def observe(self, due: float, woke: float) -> None:
        """A timer due at `due` ran at `woke`: a stall if it was more than `slack` late."""
        if woke - due > self.slack:
            self._stalls.append((due, woke))

    def _newest_first(self, now: float | None) -> Iterator[tuple[float, float]]:
        """The stall in progress (the ticker is late right now: the loop is busy with
        something else, possibly the caller), then the recorded ones, newest first."""
        if self._due is not None and self._loop is not None:
            now = self._loop.time() if now is None else now
            if now - self._due > self.slack:
                yield self._due, now
        yield from reversed(self._stalls)

    def unavailable(self, t0: float, t1: float, now: float | None = None) -> float:
        """Seconds of [t0, t1] during which the loop could not run, the stall in progress
        included. Stalls are disjoint (each ends before the next tick is due)."""
        total = 0.0
        for start, end in self._newest_first(now):
            if end <= t0:
                break
            total += max(0.0, min(end, t1) - max(start, t0))
        return total

    def worst(self, window_s: float = 60.0, now: float | None = None) -> float:
        """The longest stall that ended (or is going on) in the last `window_s`: the same
        figure as `watchdog.LoopLag.worst`, measured to within `every`."""
        if now is None:
            now = self._loop.time() if self._loop is not None else time.monotonic()
        since = now - window_s
        longest = 0.0
        for start, end in self._newest_first(now):
            if end < since:
                break
            longest = max(longest, end - start)
        return longest


def out_of_descriptors(error: str | None) -> bool:
    return error is not None and any(words in error for words in _NO_DESCRIPTORS)


def excuse(result: CheckResult, late_s: float, stalled_s: float, threshold: float) -> str | None:
    """Why `result` is the prober's fault ("prober overloaded: ...", "prober out of file
    descriptors"), or None when it is not (an `up` result is evidence the target works,
    whatever the prober's state)."""
    if result.outcome not in (Outcome.DOWN, Outcome.DEGRADED):
        return None
    late_s = max(0.0, late_s)
    if out_of_descriptors(result.error):
        why = NO_FILES
    elif late_s + stalled_s > threshold:
        parts = []
        if late_s >= 0.05 or stalled_s < 0.05:
            parts.append(f"started {late_s:.1f} s late")
        if stalled_s >= 0.05:
            parts.append(f"event loop stalled {stalled_s:.1f} s during the check")
        why = f"{OVERLOADED}: " + ", ".join(parts)
    else:
        return None
    text = f"{why}; the check saw: {result.error or result.outcome}"
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


class Overload:
    """Results recorded `unknown` because the prober was overloaded or out of file
    descriptors; each streak (ended by `gap_s` without one) logged once when it begins and
    once when it ends. Descriptor failures are also kept for `gap_s`: /healthz reports them
    as a problem while they last."""

    def __init__(self, gap_s: float = STREAK_GAP_S) -> None:
        self.gap_s = gap_s
        self._no_files: collections.deque[float] = collections.deque(maxlen=KEEP)  # monotonic
        self.total = 0  # since start: prober_checks_overloaded_total
        self.streak = 0  # in the current streak
        self.in_streak = False
        self.last_at: dt.datetime | None = None  # wall time of the newest one
        self._began = 0.0  # monotonic, of the streak's first and newest
        self._newest = 0.0

    def record(self, monitor_id: str, reason: str, now: float, at: dt.datetime) -> None:
        """`monitor_id`'s result was recorded unknown for `reason`; `now` is monotonic."""
        self.end_if_quiet(now)
        self.total += 1
        self.streak += 1
        self.last_at = at
        self._newest = now
        if reason.startswith(NO_FILES):
            self._no_files.append(now)
        if not self.in_streak:
            self.in_streak = True
            self._began = now
            why = reason.partition(";")[0].removeprefix(f"{OVERLOADED}: ").removeprefix("prober ")
            log.warning(
                "prober overloaded: 1 check recorded unknown, not down or degraded"
                " (monitor=%s: %s); the streak's count is logged when it ends",
                monitor_id,
                why,
            )

    def end_if_quiet(self, now: float, force: bool = False) -> None:
        """Close the streak once nothing was recorded unknown for `gap_s` (at once: `force`)."""
        if not self.in_streak or (not force and now - self._newest < self.gap_s):
            return
        log.info(
            "prober no longer overloaded: %d checks recorded unknown in %.0f s",
            self.streak,
            self._newest - self._began,
        )
        self.in_streak = False
        self.streak = 0

    def out_of_files(self, now: float | None = None) -> int:
        """Checks recorded unknown for want of file descriptors in the last `gap_s` (`now`:
        monotonic, as `record`'s)."""
        since = (time.monotonic() if now is None else now) - self.gap_s
        count = 0
        for at in reversed(self._no_files):
            if at < since:
                break
            count += 1
        return count
