"""What /healthz asks of the running prober, without importing the scheduler or store.

Every input is a callable read at request time, so a report costs a few attribute reads
(no database query). The same problems withhold the dead-man's-switch heartbeat
(prober.watchdog), so /healthz and the heartbeat never disagree.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

MAX_LOOP_LAG_S = 2.0
MAX_WRITER_QUEUE = 50_000


@dataclasses.dataclass(frozen=True)
class Figures:
    """One reading of every input; problems are judged from these, not from a re-read."""

    scheduler_running: bool
    database_writable: bool
    loop_lag_s: float
    last_result_age_s: float | None
    writer_queue: int
    alert_queue: int
    up_s: float  # since the Health was made: "no result yet" is only a problem after a while
    overloaded_checks: int = 0  # recorded unknown: the prober itself was late (reported only)
    out_of_files: int = 0  # checks that failed for want of file descriptors, last minute


@dataclasses.dataclass(frozen=True)
class Health:
    scheduler_running: Callable[[], bool]
    database_writable: Callable[[], bool]
    # the worst event-loop lag over the last minute, seconds
    loop_lag: Callable[[], float] | None = None
    # epoch seconds of the newest committed result; None before the first
    last_result_at: Callable[[], float | None] | None = None
    writer_queue: Callable[[], int] | None = None
    alert_queue: Callable[[], int] | None = None
    # checks recorded unknown since start because the prober itself was late (not a problem:
    # the results say so; a stalled loop is judged by loop_lag)
    overloaded_checks: Callable[[], int] | None = None
    # checks recorded unknown for want of file descriptors in the last minute: a problem
    # (the prober cannot judge while it lasts; the results say unknown, not down)
    out_of_files: Callable[[], int] | None = None
    # results older than this are a problem; None: nothing is probed, freshness not judged
    max_result_age: float | None = None
    max_loop_lag: float = MAX_LOOP_LAG_S
    max_writer_queue: int = MAX_WRITER_QUEUE
    clock: Callable[[], float] = time.time  # epoch seconds, as last_result_at
    started_at: float | None = None  # None: clock() when made

    def __post_init__(self) -> None:
        if self.started_at is None:
            object.__setattr__(self, "started_at", self.clock())

    def read(self) -> Figures:
        now = self.clock()
        last = self.last_result_at() if self.last_result_at is not None else None
        started = self.started_at if self.started_at is not None else now
        return Figures(
            scheduler_running=self.scheduler_running(),
            database_writable=self.database_writable(),
            loop_lag_s=self.loop_lag() if self.loop_lag is not None else 0.0,
            last_result_age_s=None if last is None else max(0.0, now - last),
            writer_queue=self.writer_queue() if self.writer_queue is not None else 0,
            alert_queue=self.alert_queue() if self.alert_queue is not None else 0,
            up_s=max(0.0, now - started),
            overloaded_checks=self.overloaded_checks() if self.overloaded_checks is not None else 0,
            out_of_files=self.out_of_files() if self.out_of_files is not None else 0,
        )

    def judge(self, f: Figures) -> list[str]:
        out = []
        if not f.scheduler_running:
            out.append("scheduler not running")
        if not f.database_writable:
            out.append("database not taking writes")
        if f.loop_lag_s > self.max_loop_lag:
            out.append(
                f"event loop stalled {f.loop_lag_s:.1f} s in the last minute"
                f" (limit {self.max_loop_lag:g} s)"
            )
        limit = self.max_result_age
        if limit is not None:
            if f.last_result_age_s is None and f.up_s > limit:
                out.append(f"no result yet after {f.up_s:.0f} s (limit {limit:.0f} s)")
            elif f.last_result_age_s is not None and f.last_result_age_s > limit:
                out.append(
                    f"newest result is {f.last_result_age_s:.0f} s old (limit {limit:.0f} s)"
                )
        if f.out_of_files:
            out.append(
                f"out of file descriptors: {f.out_of_files} checks recorded unknown"
                " in the last minute"
            )
        if f.writer_queue > self.max_writer_queue:
            out.append(
                f"{f.writer_queue} results waiting for the database (limit {self.max_writer_queue})"
            )
        return out

    def problems(self) -> list[str]:
        return self.judge(self.read())

    def report(self) -> dict[str, object]:
        """The /healthz body: every figure and the problems judged from them."""
        f = self.read()
        problems = self.judge(f)
        age = f.last_result_age_s
        return {
            "status": "unhealthy" if problems else "ok",
            "problems": problems,
            "scheduler_running": f.scheduler_running,
            "database_writable": f.database_writable,
            "loop_lag_ms": round(f.loop_lag_s * 1000, 1),
            "last_result_age_s": None if age is None else round(age, 1),
            "writer_queue": f.writer_queue,
            "alert_queue": f.alert_queue,
            "overloaded_checks": f.overloaded_checks,
        }
