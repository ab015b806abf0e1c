"""Run one check under its hard deadline; turn our own bugs into `unknown`, never a crash."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from prober.checks import CHECKS
from prober.checks.context import PHASE_WORDS, CheckContext, PhaseTimer, Shared
from prober.config.durations import format_duration
from prober.config.monitors import ProbingMonitor
from prober.results import CheckResult, Outcome

log = logging.getLogger(__name__)

MAX_ERROR = 500  # characters of error text kept: target-controlled text is bounded too


async def run_check(monitor: ProbingMonitor, shared: Shared) -> CheckResult:
    timer = PhaseTimer(shared.clock)
    ctx = CheckContext(shared, timer, deadline=timer.started + monitor.timeout)
    check = CHECKS[monitor.type]
    try:
        async with asyncio.timeout(monitor.timeout):
            result = await check(monitor, ctx)
    except TimeoutError:
        phase = PHASE_WORDS.get(timer.phase, timer.phase)
        result = CheckResult(
            Outcome.DOWN,
            timer.elapsed_ms(),
            error=f"timed out after {format_duration(monitor.timeout)} {phase}",
            phases=timer.phases(),
        )
    except Exception as exc:
        log.exception("monitor=%s check raised (a prober bug)", monitor.id)
        result = CheckResult(
            Outcome.UNKNOWN,
            timer.elapsed_ms(),
            error=f"internal error: {type(exc).__name__}",
            phases=timer.phases(),
        )
    return _finish(monitor, result, shared)


def _finish(monitor: ProbingMonitor, result: CheckResult, shared: Shared) -> CheckResult:
    error = result.error
    if error is not None:
        error = shared.redact(error)
        if len(error) > MAX_ERROR:
            error = error[: MAX_ERROR - 1] + "…"
    outcome = result.outcome
    slow = monitor.degraded_after
    if outcome is Outcome.UP and slow is not None and result.latency_ms > slow * 1000:
        outcome = Outcome.DEGRADED
        error = error or (
            f"slow: {result.latency_ms:.0f} ms, degraded_after {format_duration(slow)}"
        )
    if outcome is result.outcome and error == result.error:
        return result
    return dataclasses.replace(result, outcome=outcome, error=error)
