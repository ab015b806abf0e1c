"""Watching the watcher: event-loop lag, and the dead-man's-switch heartbeat.

`LoopLag` is a task that sleeps in short steps and records how late it woke: a blocked
event loop delays every check and the status page, and shows up here first.

`heartbeat` pings `settings.heartbeat_url` while the prober is healthy, so an external
switch (Healthchecks-style, or a second prober's push monitor) alerts when this one dies,
hangs or stops recording. When /healthz has problems the ping is withheld: silence is
the alarm. The URL is a secret (its path is the switch's credential) and is never logged.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator

import aiohttp
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from prober.checks.session import USER_AGENT
from statuspage.health import Health

log = logging.getLogger(__name__)

PING_BODY_LIMIT = 1024  # bytes of a ping's response read at most


class LoopLag:
    """How late the event loop runs a timer, over a sliding window.

    A stall of S seconds shows as a lag between S - every and S (the stall may start
    part-way through a sleep). `worst()` also counts the sleep in progress, so a stall
    that just ended is seen even before this task has run again.
    """

    def __init__(self, every: float = 0.5, keep_s: float = 60.0) -> None:
        self.every = every
        self.keep_s = keep_s
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._due: float | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._due = loop.time() + self.every
            await asyncio.sleep(self.every)
            woke = loop.time()
            self._samples.append((woke, max(0.0, woke - self._due)))
            while self._samples and self._samples[0][0] < woke - self.keep_s:
                self._samples.popleft()

    def worst(self, window_s: float = 60.0) -> float:
        """The largest lag, in seconds, of the wake-ups in the last `window_s`."""
        now = asyncio.get_running_loop().time()
        since = now - window_s
        pending = 0.0 if self._due is None else max(0.0, now - self._due)
        recent = [lag for at, lag in self._samples if at >= since]
        return max([pending, *recent])


@dataclasses.dataclass(slots=True)
class HeartbeatStats:
    """Counts for /metrics: pings sent (and of those, failed), and turns withheld."""

    sent: int = 0
    failed: int = 0
    withheld: int = 0


class HeartbeatCollector(Collector):
    def __init__(self, stats: HeartbeatStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        for name, value, text in (
            ("prober_heartbeat_sent", s.sent, "Heartbeat pings sent to settings.heartbeat_url"),
            ("prober_heartbeat_failed", s.failed, "Heartbeat pings that failed (no 2xx)"),
            ("prober_heartbeat_withheld", s.withheld, "Heartbeats withheld: prober unhealthy"),
        ):
            yield CounterMetricFamily(name, text, value=value)


async def heartbeat(
    url: str,
    session: aiohttp.ClientSession,
    health: Health,
    every: float = 60.0,
    ping_timeout: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    stats: HeartbeatStats | None = None,
) -> None:
    """Ping `url` at once and then every `every` seconds while `health` has no problems;
    one GET per turn, given up after `ping_timeout`, any 2xx is a success.

    Runs until cancelled. Each failure streak and each withheld streak is logged once,
    and the end of it once.
    """
    if not url:
        return
    stats = stats if stats is not None else HeartbeatStats()
    state = "ok"  # ok | failing | withheld
    next_at = clock()
    while True:
        problems = health.problems()
        if problems:
            stats.withheld += 1
            if state != "withheld":
                log.warning("heartbeat withheld: %s", "; ".join(problems))
            state = "withheld"
        else:
            stats.sent += 1
            error = await _ping(url, session, ping_timeout)
            if error is not None:
                stats.failed += 1
                if state != "failing":
                    log.warning("heartbeat ping failed: %s", error)
                state = "failing"
            else:
                if state == "failing":
                    log.info("heartbeat ping recovered")
                elif state == "withheld":
                    log.info("heartbeat resumed: prober healthy again")
                state = "ok"
        next_at += every
        now = clock()
        if next_at < now:  # a slow ping or a stall: the next turn is `every` from now
            next_at = now + every
        await asyncio.sleep(next_at - now)


async def _ping(url: str, session: aiohttp.ClientSession, within: float) -> str | None:
    """One GET; None when it answered 2xx, else what went wrong, without the URL."""
    try:
        async with asyncio.timeout(within):
            async with session.get(url, headers={"User-Agent": USER_AGENT}) as response:
                await response.content.read(PING_BODY_LIMIT)
                status = response.status
    except TimeoutError:
        return f"no answer within {within:g} s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return _without_url(f"{type(exc).__name__}: {exc}", url)
    return None if 200 <= status < 300 else f"status {status}"


_ANY_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _without_url(text: str, url: str) -> str:
    """An error message with the heartbeat URL (and anything URL-shaped) taken out."""
    text = text.replace(url, "[url]")
    tail = url.split("://", 1)[-1].partition("/")[2]  # path and query: the secret part
    if tail:
        text = text.replace(tail, "[url]")
    return _ANY_URL.sub("[url]", text)
