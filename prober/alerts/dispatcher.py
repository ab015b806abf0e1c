"""Sends what the outbox holds: claim, send, record; retries with backoff; reminders.

One task on the event loop. Its SQLite work runs on one thread of its own (a connection
is used by one thread at a time), each pass in one short `BEGIN IMMEDIATE` transaction:
read the unfinished rows, add due reminders, decide (prober.alerts.plan), claim the
batches to send with a conditional update. Sends run as tasks; each records its outcome:
sent, failed for good (a 4xx other than 408/429, a refused address), or pending again
with a later due time: exponential backoff from `backoff_s`, at most `backoff_max_s`, at
least what Retry-After asked, for up to `give_up_s` after the first attempt.

Escalation (a monitor's `escalate` steps) is scheduled as reminders are: each pass, for
every open incident, a step whose delay has passed since the first of its openings was
sent writes an opening to each of its notifiers not told yet (the monitor's own are
not), keyed per (incident, notifier), so a restart or a second pass repeats nothing. When
none was sent but one was tried (failed for good, or still retrying: the monitor's own
channel is down), the delay counts from the first attempt, so the pager still wakes. An
opening never tried (held) or dropped (a verified remediation, maintenance) starts nothing.

An opening dropped because its remediation was verified writes, in the same transaction,
one "recovered automatically" row (Kind.REMEDIATED) per notifier of the monitor's `notify`
asking for `remediated`, keyed per (incident, notifier): told once, across restarts.

The writer calls `wake()` when it adds rows; otherwise a pass runs when the next row is
due, a reminder or an escalation step is due, or every `idle_s`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import logging
import pathlib
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar
from zoneinfo import ZoneInfo

import aiohttp

from prober import maintenance
from prober.alerts import channels, outbox, remedies, subscribers
from prober.alerts.channels import NotifyError, SendContext
from prober.alerts.message import Event, Kind, Message
from prober.alerts.outbox import FAILED, PENDING, SENDING, SENT, SUPPRESSED, Row
from prober.alerts.plan import Recovery, Situation, plan
from prober.config import Config
from prober.config.locations import verdict_location
from prober.config.monitors import Monitor, PushMonitor
from prober.config.settings import AlertmanagerNotifier, EmailNotifier, Notifier
from prober.redact import Redactor
from prober.store.engine import Connection, Database, connect
from prober.store.remediations import Attempt
from prober.timeline import from_ms, to_ms

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class Delivery:
    """Counters for logs and /metrics, per notifier."""

    sent: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    failed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    retried: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    suppressed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    queue_depth: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Outgoing:
    rows: list[Row]
    notifier: Notifier
    message: Message


class Dispatcher:
    def __init__(
        self,
        config: Config,
        path: pathlib.Path | Database,
        session: aiohttp.ClientSession,
        *,
        redact: Redactor | None = None,
        backoff_s: float = 10.0,
        backoff_max_s: float = 3600.0,
        give_up_s: float = 86_400.0,
        idle_s: float = 30.0,
        send_timeout: float = 15.0,
        max_parallel: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reconfigure(config)
        self._path = path
        self._ctx = SendContext(session, send_timeout)
        self._redact = redact or Redactor(config.secret_values())
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._give_up_ms = round(give_up_s * 1000)
        self._idle_s = idle_s
        self._clock = clock
        self._parallel = asyncio.Semaphore(max_parallel)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alerts-db")
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self.delivery = Delivery()
        self._attempts: dict[str, Attempt] = {}  # this pass's remediations, by incident

    def reconfigure(self, config: Config) -> None:
        """Notifiers, monitors, dependencies and maintenance from a (reloaded) config. Rows
        already in the outbox stay; one whose notifier is gone is dropped at the next pass."""
        self._config = config
        self._settings = config.settings
        hub = config.settings.location
        self._places = {m.id: verdict_location(m, hub) for m in config.monitors}
        self._zone = ZoneInfo(config.settings.timezone)
        self._notifiers = {n.id: n for n in config.notifiers}
        # Alertmanager notifiers that turn maintenance windows into silences
        self._silencers = [
            n.id for n in config.notifiers if isinstance(n, AlertmanagerNotifier) and n.silences
        ]
        self._monitors = {m.id: m for m in config.monitors}
        self._parents = {m.id: tuple(m.depends_on) for m in config.monitors if m.depends_on}
        self._children: dict[str, list[str]] = collections.defaultdict(list)
        for child, parents in self._parents.items():
            for parent in parents:
                self._children[parent].append(child)

    # -- the loop ---------------------------------------------------------------------

    def wake(self) -> None:
        """Run a pass soon. Safe from any thread (the writer calls it)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._woken.set)

    async def run(self, stop: asyncio.Event, active: Callable[[], bool] = lambda: True) -> None:
        """Send from the outbox until `stop`; passes only while `active()` (the hub holds the
        evaluation lock of several: prober.store.hubs). Claims left by an interrupted
        sender are released each time it becomes active."""
        self._loop = asyncio.get_running_loop()
        releasing = True
        try:
            while not stop.is_set():
                self._woken.clear()
                if not active():
                    releasing = True
                    await _either(self._woken, stop, self._idle_s)
                    continue
                if releasing:
                    released = await self._db(self._release)
                    if released:
                        log.warning(
                            "alerts interrupted while sending will be sent again count=%d", released
                        )
                    releasing = False
                try:
                    outgoing, next_ms = await self._db(self._pass)
                except sqlite3.Error as exc:
                    log.error("alert dispatcher could not read the outbox, retrying: %s", exc)
                    outgoing, next_ms = [], self._now_ms() + 5000
                except Exception:  # our bug: keep the dispatcher alive, say so loudly
                    log.exception("alert dispatcher pass failed, retrying in 5 s")
                    outgoing, next_ms = [], self._now_ms() + 5000
                for item in outgoing:
                    task = asyncio.create_task(self._deliver(item))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)
                wait = min(max((next_ms - self._now_ms()) / 1000, 0.01), self._idle_s)
                await _either(self._woken, stop, wait)
        finally:
            await self.drain()
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
            self._executor.shutdown(wait=True)

    async def drain(self, within: float = 10.0) -> None:
        """Let sends in flight finish (and record) before stopping."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=within)

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    async def _db(self, fn: Callable[[Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                self._conn = connect(self._path)
            return fn(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- a pass (on the database thread) ---------------------------------------------

    def _release(self, conn: Connection) -> int:
        return outbox.release_claims(conn)

    def _pass(self, conn: Connection) -> tuple[list[_Outgoing], int]:
        now = self._now_ms()
        conn.execute("BEGIN IMMEDIATE")
        try:
            open_incidents = outbox.open_incidents(conn, self._settings.location, self._places)
            next_reminder = min(
                self._remind(conn, open_incidents, now), self._escalate(conn, open_incidents, now)
            )
            next_window = self._silence(conn, now)
            rows = outbox.unfinished(conn)
            unknown = [r for r in rows if r.notifier not in self._notifiers]
            if unknown:
                outbox.set_state(conn, [r.id for r in unknown], SUPPRESSED,
                                 error="the notifier is no longer configured")  # fmt: skip
                rows = [r for r in rows if r.notifier in self._notifiers]
            decided = plan(rows, self._situation(conn, rows, open_incidents, now))
            for row, until in decided.hold:
                outbox.set_state(conn, [row.id], PENDING, due_ms=until, silenced=True)
            for row, why in decided.drop:
                outbox.set_state(conn, [row.id], SUPPRESSED, error=why)
                self.delivery.suppressed[row.notifier] += 1
                log.info(
                    "alert not sent notifier=%s kind=%s monitor=%s reason=%s",
                    row.notifier, row.kind, row.monitor or "-", why,
                )  # fmt: skip
            self._tell_remediated(conn, decided.remediated, now)
            outgoing = []
            for batch in decided.send:
                batch_id = batch[0].batch or batch[0].id
                ids = [r.id for r in batch]
                notifier = self._notifiers[batch[0].notifier]
                message = self._message(conn, batch, notifier, open_incidents, now)
                if message is None:  # a subscriber's mail, and no subscriber to send it to
                    why = "the subscriber left, or the notifier is not an email one"
                    outbox.set_state(conn, ids, SUPPRESSED, error=why)
                    continue
                outbox.set_state(
                    conn, ids, SENDING, batch=batch_id, only_from=PENDING, claim_ms=now
                )
                outgoing.append(_Outgoing(batch, notifier, message))
            self.delivery.queue_depth = len(rows) - len(decided.drop)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        claimed = {r.id for item in outgoing for r in item.rows}
        held = {r.id: until for r, until in decided.hold}
        dues = [
            held.get(r.id, r.due_ms) for r in rows if r.state == PENDING and r.id not in claimed
        ]
        return outgoing, min([*dues, next_reminder, next_window, now + round(self._idle_s * 1000)])

    def _situation(
        self,
        conn: Connection,
        rows: Sequence[Row],
        open_incidents: Mapping[str, str],
        now: int,
    ) -> Situation:
        waiting = {r.incident for r in rows if r.kind in (Kind.RESOLVED, Kind.PROBER_NETWORK)}
        openings: dict[tuple[str, str], str] = {}
        for kind in (Kind.OPENED, Kind.PROBER_NETWORK):
            for row in outbox.by_incident(conn, waiting, kind):
                if kind is Kind.OPENED or "until_ms" not in row.data:
                    openings[(row.incident, row.notifier)] = row.state
        self._attempts = remedies.attempts(conn, rows, self._monitors)
        return Situation(
            now,
            open_incidents,
            self._parents,
            self._in_maintenance,
            openings,
            frozenset(self._silencers),
            self._recoveries(conn, rows, open_incidents, now),
            remedies.situation(rows, self._attempts, self._monitors),
        )

    def _recoveries(
        self,
        conn: Connection,
        rows: Sequence[Row],
        open_incidents: Mapping[str, str],
        now: int,
    ) -> dict[str, Recovery]:
        """For the dependents whose opening is judged this pass and whose parents are all up:
        when the parents recovered and what the dependent's own checks said since."""
        judged = {
            r.monitor
            for r in rows
            if r.kind is Kind.OPENED
            and r.state == PENDING
            and r.monitor in self._parents
            and not (r.silenced and r.due_ms > now)
            and not any(p in open_incidents for p in self._parents[r.monitor])
        }
        location = self._settings.location
        found: dict[str, Recovery] = {}
        for slug in sorted(judged):
            ups = outbox.recovered(conn, self._parents[slug], location, self._places).values()
            monitor = self._monitors.get(slug)
            if not ups or monitor is None:
                continue
            newest = outbox.newest_result(conn, slug)
            found[slug] = Recovery(
                parents_up_ms=max(ups),
                checked_ms=None if newest is None else newest[0],
                checked_down=newest is not None and newest[1],
                interval_ms=_interval_ms(monitor),
                up_after=monitor.up_after,
            )
        return found

    def _in_maintenance(self, monitor: str, now_ms: int) -> int | None:
        if not monitor or not self._config.maintenance:
            return None
        found = maintenance.active(
            self._config.maintenance, monitor, from_ms(now_ms, self._zone), self._zone
        )
        return max(to_ms(w.end) for w in found) if found else None

    def _remind(self, conn: Connection, open_incidents: Mapping[str, str], now: int) -> int:
        """Add the reminders that are due; the time of the next one."""
        repeats = {n.id: round(n.repeat * 1000) for n in self._config.notifiers if n.repeat}
        next_ms = now + 86_400_000
        if not repeats or not open_incidents:
            return next_ms
        for opened in outbox.by_incident(conn, open_incidents.values(), Kind.OPENED):
            every = repeats.get(opened.notifier)
            if every is None or opened.state != SENT or opened.sent_ms is None:
                continue
            n = (now - opened.sent_ms) // every
            added = n >= 1 and outbox.add_reminder(conn, opened, n, now)
            if added and isinstance(self._notifiers.get(opened.notifier), AlertmanagerNotifier):
                outbox.forget_reminders(conn, opened, keep=outbox.reminder_key(opened, n))
            next_ms = min(next_ms, opened.sent_ms + (n + 1) * every)
        return next_ms

    def _escalate(self, conn: Connection, open_incidents: Mapping[str, str], now: int) -> int:
        """Add the escalations that are due; the time of the next step."""
        next_ms = now + 86_400_000
        steps = {m.id: m.escalate for m in self._config.monitors if m.escalate}
        wanted = [key for slug, key in open_incidents.items() if slug in steps]
        if not wanted:
            return next_ms
        for opened, since in _first_openings(outbox.by_incident(conn, wanted, Kind.OPENED)):
            monitor = self._monitors.get(opened.monitor)
            if monitor is None:
                continue
            told = set(monitor.notify)
            for step in steps.get(opened.monitor, []):
                after = round(step.after * 1000)
                if since + after > now:
                    next_ms = min(next_ms, since + after)
                    break
                for nid in step.notify:
                    notifier = self._notifiers.get(nid)
                    if nid in told or notifier is None or Kind.OPENED.value not in notifier.events:
                        continue
                    told.add(nid)
                    if outbox.add_escalation(conn, opened, nid, after, now):
                        log.info(
                            "alert escalated notifier=%s monitor=%s after_s=%g",
                            nid, opened.monitor, step.after,
                        )  # fmt: skip
        return next_ms

    def _tell_remediated(self, conn: Connection, dropped: Sequence[Row], now: int) -> None:
        """A "recovered automatically" row for each incident whose opening was dropped as
        remediated, to the monitor's notifiers asking for it (due now; a later pass sends)."""
        for opened in dropped:
            monitor = self._monitors.get(opened.monitor)
            attempt = self._attempts.get(opened.incident)
            if monitor is None or attempt is None:
                continue
            data = {"until_ms": now, "remediation": remedies.recorded(attempt, monitor)}
            for nid in monitor.notify:
                notifier = self._notifiers.get(nid)
                if notifier is None or Kind.REMEDIATED.value not in notifier.events:
                    continue
                if outbox.add_remediated(conn, opened, nid, data, now):
                    log.info("recovered automatically notifier=%s monitor=%s", nid, monitor.id)

    def _silence(self, conn: Connection, now: int) -> int:
        """Silences for the maintenance windows running now (`silences = true`); the start
        of the next window, when a pass is due again."""
        later = now + 86_400_000
        if not self._silencers or not self._config.maintenance:
            return later
        at = from_ms(now, self._zone)
        location = self._settings.location
        for item in self._config.maintenance:
            scope = sorted(item.monitors)
            digest = hashlib.sha256(f"{item.title}\0{chr(0).join(scope)}".encode()).hexdigest()
            for window in maintenance.active([item], None, at, self._zone):
                start, end = to_ms(window.start), to_ms(window.end)
                key = f"{location}/maintenance/{digest[:16]}/{start}"
                data = {"since_ms": start, "until_ms": end, "title": item.title, "scope": scope}
                for notifier in self._silencers:
                    outbox.add_silence(conn, notifier, key, data, now)
        upcoming = maintenance.upcoming(
            self._config.maintenance, None, at, self._zone, dt.timedelta(days=1)
        )
        return min([later, *(to_ms(w.start) for w in upcoming)])

    # -- messages ---------------------------------------------------------------------

    def _message(
        self,
        conn: Connection,
        rows: Sequence[Row],
        notifier: Notifier,
        open_incidents: Mapping[str, str],
        now: int,
    ) -> Message | None:
        key = rows[0].key if len(rows) == 1 else f"{rows[0].key}+{len(rows) - 1}"
        if rows[0].kind is Kind.SUBSCRIBER:  # one row, one visitor: fresh tokens in it
            mail = None
            if isinstance(notifier, EmailNotifier):
                mail = subscribers.compose(conn, rows[0], self._config, now)
            if mail is None:
                return None
            event = Event(Kind.SUBSCRIBER, "", "", from_ms(rows[0].created_ms, self._zone))
            return Message(Kind.SUBSCRIBER, (event,), key, zone=self._zone, mail=mail)
        events = tuple(self._event(r, open_incidents, now) for r in rows)
        return Message(
            rows[0].kind, events, key, title_prefix=self._settings.title, zone=self._zone
        )

    def _event(self, row: Row, open_incidents: Mapping[str, str], now: int) -> Event:
        data = row.data
        monitor = self._monitors.get(row.monitor)
        name = monitor.display_name if monitor else (row.monitor or self._settings.location)
        if row.kind is Kind.SILENCE:
            name = str(data.get("title") or "")
        until = data.get("until_ms")
        if row.kind is Kind.REMINDER:
            until = now
        dependents: tuple[str, ...] = ()
        if row.kind in (Kind.OPENED, Kind.REMINDER):
            dependents = tuple(
                self._name(child)
                for child in self._children.get(row.monitor, ())
                if child in open_incidents
            )
        expires = data.get("cert_expires_ms")
        after = row.escalated_after_ms
        attempt = self._attempts.get(row.incident) if row.kind is Kind.OPENED else None
        described = remedies.told(data.get("remediation"), self._zone)  # REMEDIATED: as kept
        if attempt is not None:
            described = remedies.told(remedies.recorded(attempt, monitor), self._zone)
        return Event(
            kind=row.kind,
            monitor_id=row.monitor,
            monitor_name=name,
            since=from_ms(_int(data.get("since_ms", row.created_ms)), self._zone),
            cause=str(data.get("cause") or ""),
            until=None if until is None else from_ms(_int(until), self._zone),
            link=self._link(row.monitor),
            dependents=dependents,
            cert_expires=None if expires is None else from_ms(_int(expires), self._zone),
            incident_key=row.incident,
            location=self._settings.location,
            parents=self._parents.get(row.monitor, ()),
            scope=tuple(str(m) for m in _list(data.get("scope"))),
            locations=tuple(str(p) for p in _list(data.get("locations"))),
            of_locations=len(monitor.locations) if monitor else 0,
            escalated_after=None if after is None else dt.timedelta(milliseconds=after),
            remediation=remedies.words(attempt) if row.kind is Kind.OPENED else "",
            attempt=described,
        )

    def _name(self, slug: str) -> str:
        monitor = self._monitors.get(slug)
        return monitor.display_name if monitor else slug

    def _link(self, slug: str) -> str:
        base = self._settings.public_url
        monitor = self._monitors.get(slug)
        if not base:
            return ""
        if monitor is None or not monitor.public:
            return base + "/"
        return f"{base}/monitors/{slug}"

    # -- delivery ---------------------------------------------------------------------

    async def _deliver(self, item: _Outgoing) -> None:
        rows, notifier, message = item.rows, item.notifier, item.message
        error: NotifyError | None = None
        async with self._parallel:
            started = time.monotonic()
            try:
                answer = await channels.send(message, notifier, self._ctx)
            except NotifyError as exc:
                error = exc
            except Exception as exc:  # a channel bug must not stop the others
                log.exception("alert channel crashed notifier=%s", notifier.id)
                error = NotifyError(f"{type(exc).__name__}: {exc}", permanent=False)
        took = time.monotonic() - started
        try:
            await self._db(lambda conn: self._record(rows, notifier, message, error))
        except sqlite3.Error as exc:  # sent, but not recorded: the claim is released at start
            log.error("could not record an alert's outcome notifier=%s: %s", notifier.id, exc)
            return
        if error is None:
            log.info(
                "alert sent notifier=%s kind=%s events=%d attempt=%d seconds=%.2f answer=%s",
                notifier.id, message.kind, len(rows), rows[0].attempts + 1, took,
                self._redact(answer)[:200],
            )  # fmt: skip
        self.wake()  # a resolution may have been waiting for this opening

    def _record(
        self, rows: Sequence[Row], notifier: Notifier, message: Message, error: NotifyError | None
    ) -> None:
        conn = self._conn
        assert conn is not None
        now = self._now_ms()
        ids = [r.id for r in rows]
        nid = notifier.id
        if error is None:
            outbox.set_state(conn, ids, SENT, sent_ms=now, only_from=SENDING)
            self.delivery.sent[nid] += 1
            return
        reason = self._redact(str(error))[:500]
        first_try = min(r.first_try_ms or now for r in rows)
        attempts = rows[0].attempts + 1
        if error.permanent or now - first_try >= self._give_up_ms:
            why = reason if error.permanent else f"gave up after {attempts} attempts: {reason}"
            outbox.set_state(conn, ids, FAILED, error=why, only_from=SENDING)
            self.delivery.failed[nid] += 1
            log.error(
                "alert failed for good notifier=%s kind=%s events=%d attempts=%d error=\"%s\"",
                nid, message.kind, len(rows), attempts, why,
            )  # fmt: skip
            return
        delay = min(self._backoff_s * 2 ** (attempts - 1), self._backoff_max_s)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self._backoff_max_s))
        outbox.set_state(
            conn, ids, PENDING, due_ms=now + round(delay * 1000), error=reason, only_from=SENDING
        )
        self.delivery.retried[nid] += 1
        log.warning(
            "alert failed, retrying in %.0fs notifier=%s kind=%s events=%d attempt=%d error=\"%s\"",
            delay, nid, message.kind, len(rows), attempts, reason,
        )  # fmt: skip


def _first_openings(openings: Sequence[Row]) -> list[tuple[Row, int]]:
    """Per incident, the opening its escalation counts from, and since when: the first one
    sent; when none was, the first one tried (failed for good, or retrying). Escalations'
    own openings, and openings dropped or never tried, count for nothing."""
    sent: dict[str, tuple[Row, int]] = {}
    tried: dict[str, tuple[Row, int]] = {}
    for opened in openings:
        if opened.escalated_after_ms is not None:
            continue
        if opened.state == SENT and opened.sent_ms is not None:
            found, at = sent, opened.sent_ms
        elif opened.state in (FAILED, PENDING, SENDING) and opened.first_try_ms is not None:
            found, at = tried, opened.first_try_ms
        else:
            continue
        earlier = found.get(opened.incident)
        if earlier is None or at < earlier[1]:
            found[opened.incident] = (opened, at)
    return [*sent.values(), *(v for k, v in tried.items() if k not in sent)]


def _interval_ms(monitor: Monitor) -> int:
    """How often a monitor gets a result: a push monitor's is due within period + grace."""
    if isinstance(monitor, PushMonitor):
        return round(((monitor.period or 0.0) + monitor.grace) * 1000)
    return round(monitor.interval * 1000)


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return int(value)


async def _either(woken: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Until either event is set, or `seconds`."""
    waits = {asyncio.create_task(woken.wait()), asyncio.create_task(stop.wait())}
    await asyncio.wait(waits, timeout=seconds, return_when="FIRST_COMPLETED")
    for task in waits:
        task.cancel()
