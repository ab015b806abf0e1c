"""`prober run`'s side of remediation: results in, attempts out (prober.remediation).

Fed what the hub records for a monitor with `remediate` (`recorded`, on the loop, told by
the result writer after each commit, prober.store.writer.Recorded): the results its
verdict is judged from (the hub's checks, one agent's, a push monitor's pings and missed
deadlines) or, for a monitor probed from several locations, its combined verdicts. For a
result it counts the current run of consecutive `down` results, starting where the
ledger's incident starts (the run's first down, read back from the database after a
restart, so an incident's attempt is never made twice in a row across a restart); a
combined verdict carries its own run (`run_checks`: K checks at each of `quorum`
locations) and its incident's start, restored by the ledger after a restart; a regional
or unknown verdict, or a lapse, is neither a down nor a recovery. At each down it asks
`Remediator.decide` with the facts (maintenance, a parent with an open incident, the
verdict). On RUN the attempt runs as a task of its own. Once a command that succeeded has
ended, `verify` consecutive `up` or `degraded` results (or verdicts) settle it verified;
the first `down` after it settles it failed. The alert dispatcher reads the
outcome from the `remediation` table (its opening waits for it) and is woken at each end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

from prober import maintenance
from prober.alerts import outbox
from prober.config import Config
from prober.config.locations import verdict_location
from prober.config.monitors import Monitor, ProbeMonitor
from prober.remediation import Decision, Remediator
from prober.results import Outcome
from prober.store.engine import Connection, connect
from prober.store.remediations import Attempt
from prober.store.tables import OUTCOME_CODES
from prober.store.writer import Recorded
from prober.timeline import to_ms

log = logging.getLogger(__name__)

_DOWN = OUTCOME_CODES[Outcome.DOWN]
_FINE = (OUTCOME_CODES[Outcome.UP], OUTCOME_CODES[Outcome.DEGRADED])


@dataclasses.dataclass(slots=True)
class _Run:
    start_ms: int  # the run's first down: the incident's start
    downs: int


@dataclasses.dataclass(slots=True)
class _Pending:
    """An attempt whose command succeeded: waiting for `verify` results after its end."""

    attempt: int
    ended_ms: int
    ups: int = 0


class Remedies:
    def __init__(self, config: Config, remediator: Remediator, wake: Callable[[], None]) -> None:
        self.remediator = remediator
        self._wake = wake
        self._runs: dict[str, _Run] = {}
        self._running: dict[str, asyncio.Task[None]] = {}  # monitor -> its attempt
        self._pending: dict[str, _Pending] = {}
        self._queue: asyncio.Queue[tuple[Monitor, Recorded]] = asyncio.Queue()
        self._newest_ms: dict[str, int] = {}  # monitor -> its newest result or verdict judged
        self._worker: asyncio.Task[None] | None = None
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self._config = config
        self._zone = ZoneInfo(config.settings.timezone)
        # every monitor's verdict is judged here, the hub: its own checks', one agent's,
        # a push monitor's, or the combined verdict of several locations
        self._monitors = {m.id: m for m in config.monitors if m.remediate is not None}

    @property
    def watched(self) -> frozenset[str]:
        """The monitors whose recorded results and verdicts `recorded` wants."""
        return frozenset(self._monitors)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._resume_then_work())

    async def _resume_then_work(self) -> None:
        """Verifications a stopped prober left unsettled are taken up before any new
        result (which waits in the queue meanwhile)."""
        for row in self.remediator.unsettled():
            try:
                await self._resume(row)
            except Exception:  # the database busy, our bug: the opening's deadline decides
                log.exception("remediation: resuming the verification of %s failed", row.monitor)
        await self._work()

    async def _resume(self, row: Attempt) -> None:
        """An attempt whose command succeeded and whose verification a restart cut (found
        by Remediator.recover, which stamped `resumed_ms` before any check or alert ran):
        judged by the results stored after the command's end, as `_result` would have;
        undecided, it waits for the results that come next, like any other. Too late to
        matter (ended more than `timeout` + `verify` intervals before the restart), or its
        monitor no longer remediated: settled failed."""
        assert row.ended_ms is not None
        assert row.resumed_ms is not None
        monitor = self._monitors.get(row.monitor)
        spec = None if monitor is None else monitor.remediate
        pending = _Pending(row.id, row.resumed_ms)  # results after the restart come through
        if monitor is None or spec is None:
            await self._settle_cut(row, "its monitor is no longer remediated")
            return
        place = verdict_location(monitor, self._config.settings.location)
        stored = await asyncio.to_thread(
            _outcomes_between, self._config, row.monitor, place, row.ended_ms, row.resumed_ms
        )
        for code in stored:
            if code == _DOWN:
                await self._settle(row.monitor, pending, verified=False)
                return
            if code in _FINE:
                pending.ups += 1
                if pending.ups >= spec.verify:
                    await self._settle(row.monitor, pending, verified=True)
                    return
        every = monitor.interval if isinstance(monitor, ProbeMonitor) else monitor.expected_every
        if row.resumed_ms - row.ended_ms > round((spec.timeout + spec.verify * every) * 1000):
            await self._settle_cut(row, "too long ago to judge")
            return
        self._pending[row.monitor] = pending
        log.info(
            "remediation verification resumed after a restart monitor=%s ups=%d verify=%d",
            row.monitor,
            pending.ups,
            spec.verify,
        )

    async def _settle_cut(self, row: Attempt, why: str) -> None:
        await self.remediator.settle(row.monitor, row.id, verified=False)
        log.warning(
            "remediation verification cut by a restart, settled failed monitor=%s: %s",
            row.monitor,
            why,
        )
        self._wake()

    def recorded(self, items: Sequence[Recorded]) -> None:
        """What one commit recorded (on the loop; never waits)."""
        if self._worker is None:
            return
        for item in items:
            known = self._monitors.get(item.monitor)
            if known is not None:
                self._queue.put_nowait((known, item))

    async def stop(self) -> None:
        """Attempts running are cancelled (their command's group killed, the row left
        without an end: interrupted at the next start)."""
        tasks = [t for t in (self._worker, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            monitor, item = await self._queue.get()
            try:
                await self._result(monitor, item)
            except Exception:  # the database busy, our bug: the next result tries again
                log.exception("remediation: judging a result of %s failed", monitor.id)

    async def _result(self, monitor: Monitor, item: Recorded) -> None:
        slug, spec, ts_ms = monitor.id, monitor.remediate, item.ts_ms
        assert spec is not None
        outcome = item.outcome
        if ts_ms <= self._newest_ms.get(slug, -1):
            return  # as the ledger: a late or repeated result (an agent's), or a verdict
            # told again by a rebuild of the combined verdict
        self._newest_ms[slug] = ts_ms
        if item.regional or item.lapsed:
            return  # not a quorum's down, nor a recovery; a lapse is no new check
        if outcome is Outcome.UNKNOWN:
            return  # says nothing of the service: neither a down nor a recovery
        pending = self._pending.get(slug)
        if outcome is not Outcome.DOWN:
            self._runs.pop(slug, None)
            if pending is not None and ts_ms > pending.ended_ms:
                pending.ups += 1
                if pending.ups >= spec.verify:
                    await self._settle(slug, pending, verified=True)
            return
        if pending is not None and ts_ms > pending.ended_ms:
            await self._settle(slug, pending, verified=False)
        run = self._runs.get(slug)
        parents = tuple(monitor.depends_on)
        location = self._config.settings.location
        if item.combined:  # the verdict carries its run (the ledger restores it)
            start = ts_ms if item.start_ms is None else item.start_ms
            run = self._runs[slug] = _Run(start, item.run_checks)
            open_parents = (
                await asyncio.to_thread(_open_parents, self._config, parents, location)
                if parents
                else ()
            )
        elif run is None:
            start, downs, open_parents = await asyncio.to_thread(
                _facts, self._config, slug, ts_ms, parents, location
            )
            run = self._runs[slug] = _Run(start, downs)
        else:
            run.downs += 1
            open_parents = (
                await asyncio.to_thread(_open_parents, self._config, parents, location)
                if parents
                else ()
            )
        if slug in self._running:
            return
        now = dt.datetime.now(self._zone)
        windows = maintenance.active(self._config.maintenance, slug, now, self._zone)
        incident = outbox.incident_key(location, slug, run.start_ms)
        decision = await self.remediator.decide(
            monitor,
            incident,
            down_streak=run.downs,
            verdict=outcome,
            in_maintenance=bool(windows),
            parent_down=bool(open_parents),
        )
        if decision is Decision.RUN:
            task = asyncio.create_task(
                self._attempt(monitor, incident, item.error or "", run.start_ms)
            )
            self._running[slug] = task
        elif decision is not Decision.WAIT and run.downs == spec.after:
            log.info("remediation not run monitor=%s reason=%s", slug, decision.value)

    async def _attempt(self, monitor: Monitor, incident: str, cause: str, start_ms: int) -> None:
        try:
            done = await self.remediator.attempt(monitor, incident, cause, start_ms)
            if done.outcome.succeeded:
                ended = to_ms(dt.datetime.now(dt.UTC))
                self._pending[monitor.id] = _Pending(done.attempt, ended)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("remediation of %s failed to run", monitor.id)
        finally:
            self._running.pop(monitor.id, None)
            self._wake()

    async def _settle(self, slug: str, pending: _Pending, *, verified: bool) -> None:
        self._pending.pop(slug, None)
        await self.remediator.settle(slug, pending.attempt, verified)
        log.log(
            logging.INFO if verified else logging.WARNING,
            "remediation %s monitor=%s",
            "verified: the checks after it succeed" if verified else "did not bring it back",
            slug,
        )
        self._wake()


def _outcomes_between(
    config: Config, slug: str, location: str, after_ms: int, before_ms: int
) -> list[int]:
    """A monitor's stored outcome codes at `location` strictly between two times, in order
    (a monitor probed from several locations has none at `*`: its verdicts are not rows)."""
    conn = connect(config.database)
    try:
        found = conn.execute(
            "SELECT r.outcome FROM result r JOIN monitor m ON m.id = r.monitor_id"
            " JOIN location l ON l.id = r.location_id WHERE m.slug = ? AND l.name = ?"
            " AND r.ts_ms > ? AND r.ts_ms < ? ORDER BY r.ts_ms",
            (slug, location, after_ms, before_ms),
        )
        return [int(code) for (code,) in found]
    finally:
        conn.close()


def _open_parents(config: Config, parents: tuple[str, ...], location: str) -> tuple[str, ...]:
    conn = connect(config.database)
    try:
        return _parents_open(conn, config, parents, location)
    finally:
        conn.close()


def _parents_open(
    conn: Connection, config: Config, parents: tuple[str, ...], location: str
) -> tuple[str, ...]:
    if not parents:
        return ()
    places = {m.id: verdict_location(m, location) for m in config.monitors}
    found = outbox.open_incidents(conn, location, places)
    return tuple(p for p in parents if p in found)


def _facts(
    config: Config, slug: str, ts_ms: int, parents: tuple[str, ...], location: str
) -> tuple[int, int, tuple[str, ...]]:
    """A new run of downs as the database has it (a restart may have cut it): its first
    down and how many downs, this one included; and the parents with an open incident."""
    conn = connect(config.database)
    try:
        row = conn.execute(
            "SELECT max(r.ts_ms) FROM result r JOIN monitor m ON m.id = r.monitor_id"
            " WHERE m.slug = ? AND r.ts_ms < ? AND r.outcome IN (?, ?)",
            (slug, ts_ms, *_FINE),
        ).fetchone()
        since = -1 if row[0] is None else int(row[0])
        first, count = conn.execute(
            "SELECT min(r.ts_ms), count(*) FROM result r JOIN monitor m ON m.id = r.monitor_id"
            " WHERE m.slug = ? AND r.ts_ms > ? AND r.ts_ms < ? AND r.outcome = ?",
            (slug, since, ts_ms, _DOWN),
        ).fetchone()
        start = ts_ms if first is None else int(first)
        return start, int(count) + 1, _parents_open(conn, config, parents, location)
    finally:
        conn.close()
