"""`prober agent`: probe what the hub assigns to this location, and send it the results.

One asyncio process: the hub's probe engine (prober.scheduler.ProbeScheduler with the same
checks, overload excuse and canaries) runs the monitors of the latest assignment; each
result goes, as the wire format's WireResult, to the disk queue (prober.agent.queue) through
its writer thread; a sender drains the queue in order, in batches of at most
wire.MAX_RESULTS, as fast as the hub takes them, and acknowledges a batch only once the hub
answered 200. While the hub is unreachable, busy (5xx), refuses this agent's clock (409) or
its token (401), results stay queued and the sender retries with backoff; each kind of
trouble is logged when it starts and when it ends. The assignment is fetched with
If-None-Match every `refetch` seconds (sooner while none is held); a new one adds, removes
and replaces jobs as a hub's reload does. Monitors and their secrets stay in memory: the
queue holds results only.

Start-up: a refused config, a queue file that is not an agent's, or a hub refusing the
token before it ever accepted it is one line and exit 1; an unreachable hub is not (the
agent keeps trying and says so). SIGTERM: stop the scheduler (in-flight checks finish),
commit the queue, try for a few seconds to deliver what is queued, exit 0.

Timings, for tests and unusual networks (environment variables, durations as in the config):
PROBER_AGENT_REFETCH (default 60s), PROBER_AGENT_RETRY (first retry, 1s; doubling up to)
PROBER_AGENT_RETRY_MAX (60s), and PROBER_AGENT_QUEUE_MAX (results kept on disk, 1000000).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
from collections.abc import Mapping

from prober.agent import wire
from prober.agent.assign import (
    Assignment,
    AssignmentError,
    Skipped,
    decode_assignment,
    secret_values,
)
from prober.agent.link import Answer, HubClient, Link
from prober.agent.queue import DiskQueue, QueueWriter
from prober.agent.send import Sender, wait_any
from prober.canaries import Canaries
from prober.checks.session import open_shared
from prober.config.agent import AgentConfig
from prober.config.durations import parse_duration
from prober.config.monitors import ProbingMonitor
from prober.errors import UserError
from prober.redact import Redactor
from prober.results import CheckResult
from prober.runtime.lock import RunLock
from prober.runtime.signals import EarlyStop
from prober.scheduler import ProbeScheduler, ResultLog, Sink
from prober.timeline import to_ms
from prober.watchdog import heartbeat
from statuspage.health import Health

log = logging.getLogger(__name__)

STATS_EVERY = 60.0
DRAIN_WITHIN = 5.0  # seconds at SIGTERM to deliver what is queued


@dataclasses.dataclass(frozen=True)
class Timings:
    refetch: float = 60.0
    retry: float = 1.0
    retry_max: float = 60.0
    queue_max: int = 1_000_000  # about 46 MB of results

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Timings:
        found: dict[str, float] = {}
        for name, text in (
            ("refetch", env.get("PROBER_AGENT_REFETCH")),
            ("retry", env.get("PROBER_AGENT_RETRY")),
            ("retry_max", env.get("PROBER_AGENT_RETRY_MAX")),
        ):
            if text:
                try:
                    found[name] = parse_duration(text)
                except ValueError as exc:
                    raise UserError(f"PROBER_AGENT_{name.upper()}: {exc}") from None
                if found[name] <= 0:
                    raise UserError(f"PROBER_AGENT_{name.upper()}: must be longer than 0s")
        rows = env.get("PROBER_AGENT_QUEUE_MAX") or str(cls.queue_max)
        if not rows.isdigit() or int(rows) < 1:
            raise UserError(f"PROBER_AGENT_QUEUE_MAX: {rows!r} is not a count of results")
        return cls(**found, queue_max=int(rows))


def queueing(writer: QueueWriter, wake: asyncio.Event) -> Sink:
    """The scheduler's sink: each result queued for the hub (never blocking), the sender
    woken (logged on change by `ResultLog`, as `prober run` does)."""

    def submit(monitor: ProbingMonitor, at: dt.datetime, result: CheckResult) -> None:
        writer.submit(wire.from_check(monitor.id, to_ms(at), result))
        wake.set()

    return submit


def run(
    config: AgentConfig,
    redact: Redactor,
    *,
    early: EarlyStop | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """`prober agent` until SIGTERM / SIGINT. Raises UserError when it cannot start."""
    timings = Timings.from_env(os.environ if env is None else env)
    if early is not None and early.requested.is_set():
        return
    path = config.database_path
    lock = RunLock(path.with_suffix(".pid"))
    lock.acquire(path)
    try:
        disk = DiskQueue(path, config.settings.location, timings.queue_max)
        try:
            refused = asyncio.run(Agent(config, disk, redact, timings).serve(early))
        finally:
            disk.close()
    finally:
        lock.release()
    if refused:
        raise UserError(refused)


class Agent:
    def __init__(
        self, config: AgentConfig, disk: DiskQueue, redact: Redactor, timings: Timings
    ) -> None:
        self.config = config
        self.location = config.settings.location
        self.disk = disk
        self.redact = redact
        self.timings = timings
        self.link = Link(config.hub.url, self.location)
        self.refused: str | None = None  # why the agent cannot go on (exit 1)
        self.monitors: tuple[ProbingMonitor, ...] = ()  # the assignment being probed
        self._skipped: tuple[Skipped, ...] = ()
        self._problem = ""  # the assignment problem logged last

    async def serve(self, early: EarlyStop | None = None) -> str | None:
        self.stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        if early is not None and early.requested.is_set():
            return None
        settings = self.config.settings
        self.writer = QueueWriter(self.disk)
        self.writer.start()
        async with (
            open_shared(redact=self.redact, location=self.location) as shared,
            HubClient(self.config) as self.hub,
        ):
            retry = (self.timings.retry, self.timings.retry_max)
            sending = Sender(self.disk, self.writer, self.hub, self.link, retry, self.refuse)
            results = ResultLog(queueing(self.writer, sending.wake))
            self.scheduler = ProbeScheduler(
                [],
                shared,
                results,
                settings.max_concurrency,
                canaries=Canaries(settings.canaries, shared),
                overload_threshold=settings.overload_threshold,
            )
            self.scheduler.start()
            log.info(
                "prober agent running location=%s hub=%s queue=%s queued=%d",
                self.location,
                self.config.hub.url,
                self.config.database_path,
                self.disk.depth,
            )
            health = Health(
                scheduler_running=lambda: self.scheduler.running,
                database_writable=lambda: self.writer.last_error is None,
                loop_lag=self.scheduler.stalls.worst,
            )
            url = settings.heartbeat_url.get_secret_value()
            tasks = [
                asyncio.create_task(self.assignments()),
                asyncio.create_task(heartbeat(url, shared.session, health)),
                asyncio.create_task(self.report_stats(results, sending)),
            ]
            sender = asyncio.create_task(sending.run())
            try:
                await self.stop.wait()
            finally:
                log.info("stopping: finishing in-flight checks")
                for task in tasks:
                    task.cancel()
                sending.stopping.set()
                grace = max((m.timeout for m in self.monitors), default=1.0)
                await self.scheduler.stop(grace)
                async with sending.writing:  # not while the sender waits on a flush
                    await asyncio.to_thread(self.writer.close)
                sending.draining.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sender), DRAIN_WITHIN)
                sender.cancel()
                await asyncio.gather(sender, *tasks, return_exceptions=True)
        log.info(
            "stopped checks=%d sent=%d queued=%d dropped=%d",
            results.count,
            sending.sent,
            self.disk.depth,
            self.disk.dropped,
        )
        return self.refused

    # The assignment

    async def assignments(self) -> None:
        etag: str | None = None
        held = False  # an assignment was taken
        delay = self.timings.retry
        while True:
            answer = await self.hub.monitors(etag)
            if answer.status == 200:
                if self.take(answer):
                    etag, held = answer.etag, True
            elif answer.status == 304:
                self.link.fine()
            elif self.refuse(answer):
                return
            else:
                self.link.failed(answer, self.disk.depth)
            # Until the hub sent an assignment, ask again as often as a batch is retried.
            wait = self.timings.refetch if held else delay
            delay = min(delay * 2, self.timings.retry_max, self.timings.refetch)
            await wait_any(wait, self.stop)

    def take(self, answer: Answer) -> bool:
        """Run the assignment in `answer`; False when it cannot be."""
        try:
            assignment = decode_assignment(answer.body)
        except AssignmentError as exc:
            self.problem(f"hub sent an assignment this agent cannot run: {exc}")
            return False
        if assignment.location != self.location:
            line = (
                f"the hub at {self.config.hub.url} knows hub.token as location"
                f" {assignment.location!r}, not settings.location {self.location!r}"
            )
            if not self.link.contacted:
                self.give_up(line)
            else:
                self.problem(line + "; keeping the monitors held")
            return False
        self.link.fine()
        self.problem("")
        self.apply(assignment)
        return True

    def apply(self, assignment: Assignment) -> None:
        self.redact.update(secret_values(assignment.monitors))
        added, removed, changed = self.scheduler.reconfigure(list(assignment.monitors))
        log.info(
            "assignment monitors=%d added=%d removed=%d changed=%d skipped=%d",
            len(assignment.monitors),
            added,
            removed,
            changed,
            len(assignment.skipped),
        )
        for skipped in assignment.skipped:
            if skipped not in self._skipped:
                log.warning("monitor=%s not probed here: %s", skipped.monitor, skipped.why)
        self._skipped = assignment.skipped
        self.monitors = assignment.monitors

    def problem(self, line: str) -> None:
        if line and line != self._problem:
            log.error("%s", line)
        self._problem = line

    def refuse(self, answer: Answer) -> bool:
        """A 401 before the hub ever accepted this token ends the agent (exit 1)."""
        if answer.trouble == "token" and not self.link.contacted:
            self.give_up(self.link.describe(answer).removesuffix("; results kept queued"))
            return True
        return False

    def give_up(self, line: str) -> None:
        self.refused = line
        self.stop.set()

    async def report_stats(self, results: ResultLog, sending: Sender) -> None:
        last = 0
        while True:
            await asyncio.sleep(STATS_EVERY)
            p50, p99, worst = self.scheduler.lag.take_period(50, 99, 100)
            log.info(
                "stats checks=%d rate=%.1f/s lag_p50_ms=%.1f lag_p99_ms=%.1f lag_max_ms=%.1f"
                " sent=%d batches=%d queued=%d dropped=%d",
                results.count,
                (results.count - last) / STATS_EVERY,
                p50 * 1000,
                p99 * 1000,
                worst * 1000,
                sending.sent,
                sending.batches,
                self.disk.depth,
                self.disk.dropped,
            )
            last = results.count
