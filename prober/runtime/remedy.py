"""`prober run`'s side of remediation: results in, attempts out (prober.remediation).

Fed every result the hub probes itself (`observe`, on the loop, in the order checks end).
For a monitor with `remediate` it counts the current run of consecutive `down` results,
starting where the ledger's incident starts (the run's first down, read back from the
database after a restart, so an incident's attempt is never made twice in a row across a
restart), and at each down asks `Remediator.decide` with the facts (maintenance, a parent
with an open incident, the verdict). On RUN the attempt runs as a task of its own. Once a
command that succeeded has ended, `verify` consecutive `up` or `degraded` results settle
it verified; the first `down` after it settles it failed. The alert dispatcher reads the
outcome from the `remediation` table (its opening waits for it) and is woken at each end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from zoneinfo import ZoneInfo

from prober import maintenance
from prober.alerts import outbox
from prober.config import Config
from prober.config.locations import verdict_location
from prober.config.monitors import Monitor, ProbingMonitor
from prober.remediation import Decision, Remediator
from prober.results import CheckResult, Outcome
from prober.store.db import connect_raw
from prober.store.tables import OUTCOME_CODES
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
        self._queue: asyncio.Queue[tuple[Monitor, int, CheckResult]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self._config = config
        self._zone = ZoneInfo(config.settings.timezone)
        hub = config.settings.location
        # a monitor probed from several locations has a combined verdict, maybe regional:
        # not remediated from here (only what this hub alone judges)
        self._monitors = {
            m.id: m
            for m in config.monitors
            if m.remediate is not None and verdict_location(m, hub) == hub
        }

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work())

    def observe(self, monitor: ProbingMonitor, at: dt.datetime, result: CheckResult) -> None:
        """One result of a check made here (on the loop; never waits)."""
        known = self._monitors.get(monitor.id)
        if self._worker is not None and known is not None:
            self._queue.put_nowait((known, to_ms(at), result))

    async def stop(self) -> None:
        """Attempts running are cancelled (their command's group killed, the row left
        without an end: interrupted at the next start)."""
        tasks = [t for t in (self._worker, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            monitor, ts_ms, result = await self._queue.get()
            try:
                await self._result(monitor, ts_ms, result)
            except Exception:  # the database busy, our bug: the next result tries again
                log.exception("remediation: judging a result of %s failed", monitor.id)

    async def _result(self, monitor: Monitor, ts_ms: int, result: CheckResult) -> None:
        slug, spec = monitor.id, monitor.remediate
        assert spec is not None
        outcome = result.outcome
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
        if run is None:
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
                self._attempt(monitor, incident, result.error or "", run.start_ms)
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


def _open_parents(config: Config, parents: tuple[str, ...], location: str) -> tuple[str, ...]:
    conn = connect_raw(config.database_path)
    try:
        return _parents_open(conn, config, parents, location)
    finally:
        conn.close()


def _parents_open(
    conn: sqlite3.Connection, config: Config, parents: tuple[str, ...], location: str
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
    conn = connect_raw(config.database_path)
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
