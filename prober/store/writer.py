"""One writer thread: results queue up from the event loop and commit in batches.

The event loop never touches SQLite. A batch is one `BEGIN IMMEDIATE` transaction; a
failed batch (disk full, locked) is kept and retried, never dropped, and the failure is
visible to /healthz. kill -9 loses only results not yet committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import pathlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable
from zoneinfo import ZoneInfo

from prober.config.locations import COMBINED
from prober.incidents import Change, Opened, Resolved
from prober.quorum import Verdict
from prober.results import CheckResult, Outcome
from prober.store import hubs
from prober.store.engine import Connection, Database, connect
from prober.store.hooks import EventHook
from prober.store.ledger import Ledger, TrackSpec
from prober.store.tables import OUTCOME_CODES
from prober.store.upkeep import Upkeep
from prober.timeline import from_ms, to_ms

log = logging.getLogger(__name__)

INBOX_EVERY_S = 0.2  # how often the evaluating hub of several looks at the inbox
INBOX_ROWS = 50  # inbox rows (batches) claimed per transaction

_INSERT = (
    "INSERT OR IGNORE INTO result (monitor_id, ts_ms, location_id, outcome, latency_us,"
    " status_code, error, dns_us, connect_us, tls_us, first_byte_us, cert_expiry, details)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """A result on its way to the database."""

    monitor: str
    at: dt.datetime
    result: CheckResult
    location: str | None = None  # None: the hub's own (settings.location); else an agent's


def _us(ms: float | None) -> int | None:
    return None if ms is None else round(ms * 1000)


def to_row(monitor_id: int, location_id: int, obs: Observation) -> tuple[object, ...]:
    result = obs.result
    phases = result.phases
    extra = dict(result.details)
    failed = [a for a in result.assertions if not a.ok]
    if failed:
        extra["failed"] = [{"name": a.name, "saw": a.saw, "wanted": a.wanted} for a in failed]
    cert = result.certificate
    return (
        monitor_id,
        to_ms(obs.at),
        location_id,
        OUTCOME_CODES[result.outcome],
        _us(result.latency_ms),
        result.status_code,
        result.error,
        _us(phases.dns_ms),
        _us(phases.connect_ms),
        _us(phases.tls_ms),
        _us(phases.first_byte_ms),
        int(cert.not_after.timestamp()) if cert else None,
        json.dumps(extra, separators=(",", ":"), default=str) if extra else None,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """What was committed for a watched monitor (one with `remediate`): a result where its
    verdict is judged (the hub's, one agent's, a push), or a combined verdict of a monitor
    probed from several locations. What prober.runtime.remedy reads."""

    monitor: str
    ts_ms: int
    outcome: Outcome
    error: str | None
    combined: bool = False  # a verdict of several locations (prober.quorum), not a result
    regional: bool = False  # combined: failing somewhere, but not at `quorum` locations
    lapsed: bool = False  # combined: no new result, a location's result stopped covering
    run_checks: int = 0  # combined, down: the checks at each of `quorum` locations
    start_ms: int | None = None  # combined, down: the start its incident's alerts are keyed by


# Told, on the writer thread, after each commit that recorded something for a watched
# monitor; must not block (prober run hands it to the event loop).
OnRecorded = Callable[[list[Recorded]], None]


@dataclasses.dataclass(frozen=True, slots=True)
class NetworkChange:
    """The canaries' verdict changed: the prober's own network is down, or back."""

    failing: bool
    at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Reconfigure:
    """A reloaded config, applied by the writer thread between two transactions."""

    specs: list[TrackSpec]
    then: Callable[[], None] | None  # run on the writer thread once applied (new alert routes)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


class ResultWriter:
    def __init__(
        self,
        path: pathlib.Path | Database,
        location: str,
        monitors: Iterable[TrackSpec],
        batch_max: int = 5000,
        heartbeat_every: float = 10.0,
        linger: float = 0.1,
        timezone: str = "UTC",
        retention_days: int = 90,
        outbox: EventHook | None = None,
        on_alert: Callable[[], None] | None = None,
        connect: Callable[[pathlib.Path | Database], Connection] = connect,
        max_waiting: int = 200_000,
        lease: hubs.EvaluationLock | None = None,
    ) -> None:
        self._connect = connect
        # Several hubs on one PostgreSQL: this one judges only while it holds the lease;
        # otherwise what it takes goes to the inbox for the holder (prober.store.hubs).
        self._lease = lease
        self.leading = lease is None
        self.on_lead: Callable[[bool], None] | None = None  # on the writer thread
        self._epoch = 0
        self._fenced_term = -1  # the lease's term in which another hub's epoch was seen
        self._max_waiting = max_waiting  # results held in memory while the disk is full
        self._dropping = False
        self.dropped = 0
        self._path = path
        self._location = location
        self._specs = list(monitors)
        self._batch_max = batch_max
        self._heartbeat_every = heartbeat_every
        self._linger = linger
        self._last_heartbeat = -math.inf
        self._queue: queue.SimpleQueue[
            Observation | NetworkChange | Reconfigure | threading.Event | None
        ] = queue.SimpleQueue()
        self._outbox = outbox
        self.on_alert = on_alert  # called after a commit that added alerts (any thread)
        self._thread = threading.Thread(target=self._loop, name="result-writer", daemon=True)
        self._ids: dict[str, int] = {}
        self._location_id = 0
        self._location_ids: dict[str, int] = {}
        self._ledger: Ledger | None = None
        self._ledger_stale = False
        self._upkeep: Upkeep | None = None
        self._timezone = timezone
        self._retention_days = retention_days
        self.committed = 0
        self.last_ok = time.monotonic()
        self.last_error: str | None = None
        self._watched: frozenset[str] = frozenset()
        self._on_recorded: OnRecorded | None = None
        self._home = self._homes(self._specs)
        self._recorded: list[Recorded] = []

    def watch(self, monitors: Collection[str], tell: OnRecorded | None) -> None:
        """After each commit, tell `tell` (on the writer thread) what was recorded for these
        monitors: their results where their verdict is judged, and their combined verdicts.
        Nothing is gathered while no monitor is watched."""
        self._on_recorded = tell
        self._watched = frozenset(monitors) if tell is not None else frozenset()

    def start(self) -> None:
        conn = connect(self._path)
        try:
            self._register(conn)
            self._ledger = Ledger(
                self._location_id,
                self._ids,
                self._specs,
                on_incident=self._incident_alerts,
                location_ids=self._location_ids,
                on_regional=self._regional_alerts,
            )
            self._ledger.on_verdict = self._verdict
            # An hour is final once every check started in it has reported.
            grace = max((s.cover_ms for s in self._specs), default=0) / 2000 + 60
            self._upkeep = Upkeep(
                self._location_id,
                list(self._ids.values()),
                ZoneInfo(self._timezone),
                grace_s=grace,
                retention_days=self._retention_days,
            )
            self._upkeep.set_other_locations(self._other_locations())
            if self._lease is None:
                replayed = self._ledger.load(conn)
                if replayed:
                    log.info("incident state restored, replayed_results=%d", replayed)
        finally:
            conn.close()
        self._thread.start()

    def submit(self, obs: Observation | NetworkChange) -> None:
        """Never blocks: the event loop hands over and moves on. While the database cannot
        be written, results wait here, up to `max_waiting` (then the newest are dropped,
        counted and logged, so a full disk cannot also exhaust the memory)."""
        if self._queue.qsize() >= self._max_waiting and isinstance(obs, Observation):
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.error(
                    "%d results wait for the database; dropping new ones until it recovers",
                    self._max_waiting,
                )
            return
        self._dropping = False
        self._queue.put(obs)

    def reconfigure(
        self, specs: list[TrackSpec], then: Callable[[], None] | None = None, timeout: float = 60.0
    ) -> bool:
        """New monitors and rules (a reloaded config), applied in the writer thread after
        what was submitted before, then `then()` there too (between two transactions).
        Blocks until applied; call it from a worker thread."""
        item = Reconfigure(specs, then)
        self._queue.put(item)
        return item.done.wait(timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def queue_depth(self) -> int:
        """Items waiting for the writer (results, mostly)."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def healthy(self, within: float = 30.0) -> bool:
        return self.alive and self.last_error is None and time.monotonic() - self.last_ok < within

    def _loop(self) -> None:
        self._conn = self._connect(self._path)
        try:
            while self._run_once():
                pass
        finally:
            self._conn.close()

    def _reopen(self) -> Connection:
        """A fresh connection after a failed write (a full or remounted disk, a replaced
        file): the next attempt starts clean."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        try:
            self._conn = self._connect(self._path)
        except sqlite3.Error as exc:
            log.error("reopening the database failed, retrying: %s", exc)
        return self._conn

    def _run_once(self) -> bool:
        self._follow_lease()
        conn = self._conn
        # The lease's holder looks at the inbox a few times a second.
        wait = INBOX_EVERY_S if self._lease is not None and self.leading else self._heartbeat_every
        try:
            first = self._queue.get(timeout=wait)
        except queue.Empty:
            if wait == self._heartbeat_every or self._inbox_waiting(conn) or self._beat_due():
                self._commit(conn, [], [])
            self._maintain(self._conn)
            return True
        items = [first]
        # Linger a moment so results finishing together share one transaction: at 10,000
        # monitors a commit per result was a tenth of the process's CPU. A flush or close
        # does not wait.
        until = time.monotonic() + self._linger
        while len(items) < self._batch_max and isinstance(items[-1], Observation | NetworkChange):
            wait = until - time.monotonic()
            try:
                items.append(
                    self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        observations = [i for i in items if isinstance(i, Observation | NetworkChange)]
        events = [i for i in items if isinstance(i, threading.Event)]
        self._commit(conn, observations, events)
        for item in items:
            if isinstance(item, Reconfigure):
                self._reconfigure(self._conn, item)
        self._maintain(self._conn)
        return None not in items

    def _reconfigure(self, conn: Connection, item: Reconfigure) -> None:
        assert self._ledger is not None
        assert self._upkeep is not None
        delay = 0.1
        while True:  # like a commit: retried until the database takes it
            try:
                self._specs = list(item.specs)
                self._home = self._homes(self._specs)
                self._register(conn)
                self._ledger.replace(self._ids, self._specs, self._location_ids)
                self._recorded = []
                self._ledger.load(conn)  # may judge verdicts held back: committed, told
                break
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                log.error("applying the reloaded config failed, retrying: %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._tell()
        self._upkeep.set_monitors(self._ids[s.slug] for s in self._specs)
        self._upkeep.set_other_locations(self._other_locations())
        if item.then is not None:
            item.then()
        item.done.set()

    def _beat_due(self) -> bool:
        return time.monotonic() - self._last_heartbeat >= self._heartbeat_every

    def _inbox_waiting(self, conn: Connection) -> bool:
        try:
            return conn.execute("SELECT 1 FROM inbox LIMIT 1").fetchone() is not None
        except sqlite3.Error:
            return True  # the commit retries and says why

    def _follow_lease(self) -> None:
        """Between two transactions: start judging when the lease was taken (the ledger
        read from what the last holder committed, and a new epoch that fences it off), stop
        when it was lost."""
        if self._lease is None:
            return
        if self._lease.held == self.leading or self._fenced_term == self._lease.terms:
            return  # fenced off: not again in the same term of the lease (it is given up)
        if not self._lease.held:
            self.leading = False
            log.warning("no longer evaluating: results go to the inbox of the hub that does")
            self._announce(False)
            return
        assert self._ledger is not None
        delay = 0.1
        while self._lease.held:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT value FROM meta WHERE key = 'leader_epoch'").fetchone()
                self._epoch = (int(row[0]) if row else 0) + 1
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('leader_epoch', ?)",
                    (str(self._epoch),),
                )
                conn.execute("COMMIT")
                replayed = self._ledger.load(conn)
                self._ledger_stale = False
                log.info("incident state read, replayed_results=%d epoch=%d", replayed, self._epoch)
                self.leading = True
                self._announce(True)
                return
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                log.error("taking over the evaluation failed, retrying: %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._reopen()

    def _announce(self, leading: bool) -> None:
        if self.on_lead is not None:
            try:
                self.on_lead(leading)
            except Exception:
                log.exception("telling the hub it evaluates failed")

    def _fenced(self, conn: Connection) -> bool:
        """Inside a leading transaction: whether another hub took over since (its epoch)."""
        if self._lease is None:
            return False
        row = conn.execute("SELECT value FROM meta WHERE key = 'leader_epoch'").fetchone()
        return row is None or int(row[0]) != self._epoch

    def _forward(
        self, conn: Connection, batch: list[Observation], events: list[threading.Event]
    ) -> None:
        """Not the holder: the batch goes to the inbox, for the hub that judges."""
        body = hubs.encode((o.monitor, o.at, o.result, o.location or self._location) for o in batch)
        delay = 0.1
        while batch:
            try:
                conn.execute(
                    "INSERT INTO inbox (hub, created_ms, body) VALUES (?, ?, ?)",
                    (self._location, round(time.time() * 1000), body),
                )
                break
            except sqlite3.Error as exc:
                conn, delay = self._failed(exc, len(batch), delay)
        self._recovered()
        self.committed += len(batch)
        for event in events:
            event.set()

    def _failed(self, exc: sqlite3.Error, rows: int, delay: float) -> tuple[Connection, float]:
        """A write failed: said once (with why), visible to /healthz, retried after `delay`
        on a fresh connection (the writer's own thread sleeps: the event loop is not
        blocked). The connection and the next delay."""
        if self.last_error is None:
            log.error(
                "database writes failing (%s): %s; probing goes on, %d results wait"
                " in memory and are written when it recovers",
                _why(exc),
                exc,
                rows + self._queue.qsize(),
            )
        self.last_error = str(exc)
        time.sleep(delay)
        return self._reopen(), min(delay * 2, 5.0)

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.warning(
                "database writes recovered; %d results wait to be written", self._queue.qsize()
            )
        self.last_error = None
        self.last_ok = time.monotonic()

    def _drain(self, conn: Connection) -> list[Observation]:
        """Inside a leading transaction: what other hubs took, claimed and deleted."""
        rows = conn.execute(
            "SELECT id, body FROM inbox ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
            (INBOX_ROWS,),
        ).fetchall()
        if not rows:
            return []
        ids = [int(r[0]) for r in rows]
        marks = ", ".join("?" * len(ids))
        conn.execute(f"DELETE FROM inbox WHERE id IN ({marks})", ids)  # noqa: S608  (marks only)
        found = []
        for _, body in rows:
            for monitor, at, result, location in hubs.decode(str(body)):
                where = None if location == self._location else location
                found.append(Observation(monitor, at, result, where))
        return found

    def _maintain(self, conn: Connection) -> None:
        if not self.leading or self._upkeep is None or not self._upkeep.due():
            return
        try:
            self._upkeep.run(conn)
        except sqlite3.Error as exc:  # retried at the next turn; results come first
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.error("rollups or pruning failed, will retry: %s", exc)

    def _commit(
        self,
        conn: Connection,
        items: list[Observation | NetworkChange],
        events: list[threading.Event],
    ) -> None:
        batch = [o for o in items if isinstance(o, Observation)]
        network = [o for o in items if isinstance(o, NetworkChange)]
        if not self.leading:
            if network:  # its own network's verdict: its results say unknown meanwhile
                log.info("canaries' verdict not used for alerts: another hub evaluates")
            self._forward(conn, batch, events)
            return
        places = self._location_ids
        rows = [
            to_row(
                self._ids[o.monitor],
                self._location_id if o.location is None else places[o.location],
                o,
            )
            for o in batch
            if o.monitor in self._ids and (o.location is None or o.location in places)
        ]
        alerts_before = self._outbox.added if self._outbox else 0
        assert self._ledger is not None
        delay = 0.1
        own_batch, own_rows = batch, rows
        while True:
            batch, rows = own_batch, own_rows  # a retry claims the inbox again
            try:
                if self._ledger_stale:  # a failed transaction left it ahead of the database
                    self._ledger.load(conn)
                    self._ledger_stale = False
                self._recorded = []  # what this attempt records (a retry starts over)
                conn.execute("BEGIN IMMEDIATE")
                if self._lease is not None:
                    if self._fenced(conn):
                        conn.execute("ROLLBACK")
                        log.error("another hub took over the evaluation: stepping down")
                        self.leading = False
                        self._fenced_term = self._lease.terms
                        self._lease.give_up()
                        self._ledger_stale = True
                        self._announce(False)
                        self._forward(conn, batch, events)
                        return
                    drained = self._drain(conn)
                    batch = batch + drained
                    rows = rows + [
                        to_row(
                            self._ids[o.monitor],
                            self._location_id if o.location is None else places[o.location],
                            o,
                        )
                        for o in drained
                        if o.monitor in self._ids and (o.location is None or o.location in places)
                    ]
                conn.executemany(_INSERT, rows)
                self._ledger_stale = True
                changes = self._derive(conn, batch)
                if self._lease is not None:
                    _contacts(conn, batch)
                if self._outbox is not None:
                    for flip in network:
                        self._outbox.network(conn, flip.failing, to_ms(flip.at))
                beat = time.monotonic()
                if beat - self._last_heartbeat >= self._heartbeat_every or not rows:
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('heartbeat', ?)",
                        (dt.datetime.now(dt.UTC).isoformat(),),
                    )
                    self._last_heartbeat = beat
                conn.execute("COMMIT")
                self._ledger_stale = False
                break
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                conn, delay = self._failed(exc, len(rows), delay)
        self._recovered()
        self.committed += len(rows)
        for monitor, change in changes:
            _log_change(monitor, change)
        self._tell()
        if self._outbox is not None and self._outbox.added != alerts_before and self.on_alert:
            self.on_alert()
        for event in events:
            event.set()

    def _derive(self, conn: Connection, batch: list[Observation]) -> list[tuple[str, Change]]:
        assert self._ledger is not None
        changes = []
        places = self._location_ids
        for obs in batch:
            result = obs.result
            at_ms = to_ms(obs.at)
            where = None if obs.location is None else places.get(obs.location)
            if where is None and obs.location is not None:
                continue  # a location no longer configured (the row was not kept either)
            for change in self._ledger.apply(
                conn, obs.monitor, at_ms, result.outcome, result.error, where
            ):
                changes.append((obs.monitor, change))
            if obs.monitor in self._watched and self._home.get(obs.monitor) == (
                obs.location or self._location
            ):
                self._recorded.append(Recorded(obs.monitor, at_ms, result.outcome, result.error))
            cert = result.certificate
            if cert is not None and self._outbox is not None:
                self._outbox.certificate(conn, obs.monitor, to_ms(cert.not_after), at_ms)
        changes += self._ledger.settle(conn, round(time.time() * 1000))
        return changes

    def _homes(self, specs: Iterable[TrackSpec]) -> dict[str, str]:
        """Monitor -> the one location its verdict is judged from (none for several)."""
        hub = self._location
        return {s.slug: s.locations[0] if s.locations else hub for s in specs if not s.multi}

    def _verdict(self, slug: str, verdict: Verdict, start_ms: int | None) -> None:
        """The ledger's combined verdicts (inside the transaction), kept for `_tell`."""
        if slug in self._watched:
            self._recorded.append(
                Recorded(
                    slug,
                    verdict.ts_ms,
                    verdict.outcome,
                    verdict.error,
                    combined=True,
                    regional=verdict.regional,
                    lapsed=verdict.lapsed,
                    run_checks=verdict.run_checks,
                    start_ms=start_ms,
                )
            )

    def _tell(self) -> None:
        """What the transaction just committed recorded for watched monitors, told once."""
        recorded, self._recorded = self._recorded, []
        tell = self._on_recorded
        if not recorded or tell is None:
            return
        try:
            tell(recorded)
        except Exception:  # e.g. the loop closed at shutdown: results come first
            log.exception("telling what was recorded failed")

    def _other_locations(self) -> list[int]:
        names = {n for s in self._specs for n in s.locations} - {self._location}
        return [self._location_ids[n] for n in sorted(names) if n in self._location_ids]

    def _register(self, conn: Connection) -> None:
        """Ids for the monitors and every location results may come from (the combined
        verdict's too, when a monitor has several)."""
        specs = self._specs
        names = {n for s in specs for n in s.locations}
        if any(s.multi for s in specs):
            names.add(COMBINED)
        self._ids, self._location_id = register(
            conn, self._location, [(s.slug, s.type) for s in specs], sorted(names)
        )
        self._location_ids = {
            name: lid for lid, name in conn.execute("SELECT id, name FROM location")
        }

    def _incident_alerts(self, conn: Connection, slug: str, change: Opened | Resolved) -> None:
        if self._outbox is not None:
            self._outbox.incident(conn, slug, change, round(time.time() * 1000))

    def _regional_alerts(
        self,
        conn: Connection,
        slug: str,
        locations: tuple[str, ...],
        since_ms: int,
        cause: str | None,
    ) -> None:
        log.warning(
            'regional problem monitor=%s locations=%s since=%s cause="%s"',
            slug,
            ",".join(locations),
            from_ms(since_ms, dt.UTC).isoformat(),
            cause or "",
        )
        if self._outbox is not None:
            now = round(time.time() * 1000)
            self._outbox.regional(conn, slug, locations, since_ms, cause, now)


def _why(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "full" in text:
        return "the disk is full"
    if "readonly" in text or "read-only" in text:
        return "the database is read-only"
    if "locked" in text or "busy" in text:
        return "the database is locked by another process"
    return "a database error"


def _log_change(monitor: str, change: Change) -> None:
    """Incidents in the log once they are committed."""
    incident = getattr(change, "incident", None)
    if isinstance(change, Opened) and incident is not None:
        log.warning(
            'incident opened monitor=%s since=%s cause="%s"',
            monitor,
            from_ms(incident.start_ms, dt.UTC).isoformat(),
            incident.cause,
        )
    elif isinstance(change, Resolved) and incident is not None and incident.end_ms is not None:
        log.info(
            "incident resolved monitor=%s since=%s duration_s=%.0f",
            monitor,
            from_ms(incident.start_ms, dt.UTC).isoformat(),
            (incident.end_ms - incident.start_ms) / 1000,
        )


CONTACT_KEY = "agent_contact/"


def _contacts(conn: Connection, batch: list[Observation]) -> None:
    """Several hubs: when each agent's results last reached the database, whichever hub
    took them (`meta.agent_contact/LOCATION`, ms), for every hub's /healthz."""
    now_ms = round(time.time() * 1000)
    for location in {o.location for o in batch if o.location is not None}:
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (CONTACT_KEY + location, str(now_ms)),
        )


def agent_contacts(conn: Connection) -> dict[str, int]:
    """Location -> ms of `_contacts`."""
    rows = conn.execute(
        "SELECT key, value FROM meta WHERE key LIKE ?", (CONTACT_KEY + "%",)
    ).fetchall()
    return {str(key).removeprefix(CONTACT_KEY): int(value) for key, value in rows}


def register(
    conn: Connection,
    location: str,
    monitors: Iterable[tuple[str, str]],
    others: Iterable[str] = (),
) -> tuple[dict[str, int], int]:
    """Ids for monitor slugs and the location, creating rows for new ones (and for the
    `others` locations, whose ids the caller reads from the table)."""
    conn.execute("BEGIN IMMEDIATE")
    for name in others:
        conn.execute("INSERT OR IGNORE INTO location (name) VALUES (?)", (name,))
    for slug, kind in monitors:
        conn.execute(
            "INSERT INTO monitor (slug, type) VALUES (?, ?)"
            " ON CONFLICT(slug) DO UPDATE SET type = excluded.type",
            (slug, kind),
        )
    conn.execute("INSERT OR IGNORE INTO location (name) VALUES (?)", (location,))
    conn.execute("COMMIT")
    ids = {slug: mid for mid, slug in conn.execute("SELECT id, slug FROM monitor")}
    (location_id,) = conn.execute("SELECT id FROM location WHERE name = ?", (location,)).fetchone()
    return ids, int(location_id)
