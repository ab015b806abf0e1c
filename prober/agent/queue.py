"""The agent's results on disk until its hub has them: SQLite (WAL) through the stdlib,
the file created 0600.

Bounded: at `max_rows` the oldest results are dropped to make room and counted; the count
is kept in the file and reported in every batch until the hub acknowledges one that
carried it. Drained in order: `peek(limit)` gives the oldest results as a `Pending` batch,
`ack(pending)` removes exactly those once the hub confirmed them. A crash between sending
and `ack` sends the same results again, which the hub stores once (they are keyed
(monitor, location, ts_ms)). WAL with synchronous=NORMAL keeps every committed result
through kill -9. `DiskQueue` is safe for one producer and one sender thread at once: each
call is one short transaction under a lock.

The probe loop never touches SQLite: it hands results to `QueueWriter.submit`, and the
writer's thread commits what arrived within `linger` in one transaction, as
prober.store.writer does for the hub. Measured at 500 results/s on a 2-core VPS: a
transaction per result (through asyncio.to_thread) cost 380 µs of CPU a result, a fifth
of a core; the writer thread 70 µs, 3 % of a core.

On disk a result takes about 46 bytes (3,000 HTTPS monitors, 5 % down): integer columns,
monitor and location as small ids, and what most results of a monitor repeat (a passed
status assertion, the certificate) as JSON kept once in `extra`, swept when unused. The
file keeps its largest size (SQLite reuses the free pages).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from prober.agent import wire
from prober.errors import UserError
from prober.filemodes import create_private
from prober.results import Outcome

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # PRAGMA user_version
# prober.store.db's pragmas, without its SQLAlchemy: WAL + NORMAL keeps commits on kill -9.
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
)
_SCHEMA = (
    "CREATE TABLE monitor (id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE)",
    "CREATE TABLE location (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    # What most results of a monitor repeat (a passed status assertion, the certificate),
    # kept once: `extra` holds a result's assertions, certificate and details as JSON.
    "CREATE TABLE extra (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta VALUES ('dropped', 0), ('seq', 0)",
    # AUTOINCREMENT: an id is never reused, so a peeked range holds only its own rows.
    "CREATE TABLE queued (id INTEGER PRIMARY KEY AUTOINCREMENT, monitor_id INTEGER NOT NULL,"
    " location_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, outcome INTEGER NOT NULL,"
    " latency_us INTEGER NOT NULL, status_code INTEGER, error TEXT, dns_us INTEGER,"
    " connect_us INTEGER, tls_us INTEGER, first_byte_us INTEGER, extra_id INTEGER)",
    f"PRAGMA user_version={SCHEMA_VERSION}",
)
_INSERT = (
    "INSERT INTO queued (monitor_id, location_id, ts_ms, outcome, latency_us, status_code,"
    " error, dns_us, connect_us, tls_us, first_byte_us, extra_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PEEK = (
    "SELECT q.id, l.name, m.slug, q.ts_ms, q.outcome, q.latency_us, q.status_code, q.error,"
    " q.dns_us, q.connect_us, q.tls_us, q.first_byte_us, e.body FROM queued q"
    " JOIN monitor m ON m.id = q.monitor_id JOIN location l ON l.id = q.location_id"
    " LEFT JOIN extra e ON e.id = q.extra_id"
    " ORDER BY q.id LIMIT ?"
)
_OUTCOMES = (Outcome.UNKNOWN, Outcome.UP, Outcome.DEGRADED, Outcome.DOWN)  # as the store
_CODES = {outcome: code for code, outcome in enumerate(_OUTCOMES)}
_ORPHANS = (
    "DELETE FROM extra WHERE id NOT IN (SELECT extra_id FROM queued WHERE extra_id IS NOT NULL)"
)
_MAX_CACHED = 10_000
_COLUMNS = {"monitor", "ts_ms", "outcome", "latency_us", "status_code", "error", "phases_us"}


class QueueError(UserError):
    """The file is not an agent's queue this prober can use."""


@dataclasses.dataclass(frozen=True, slots=True)
class Pending:
    """The oldest queued results, all of one location, as peeked: send, then `ack`."""

    seq: int  # the same until acknowledged: a resend carries it again
    location: str
    results: tuple[wire.WireResult, ...]
    first_id: int
    last_id: int
    queue_depth: int  # results queued behind these
    dropped: int  # dropped and not yet acknowledged

    def batch(self, sent_ms: int) -> wire.Batch:
        return wire.Batch(
            self.location, sent_ms, self.seq, self.queue_depth, self.dropped, self.results
        )


class DiskQueue:
    def __init__(self, path: pathlib.Path, location: str, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self._path = path
        self._location = location
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}  # (table, name or body) -> id
        self._removed = 0  # results removed since extras were last swept
        self._dropping = False
        create_private(path)  # 0600 from the first byte; -wal and -shm take its mode
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in _PRAGMAS:
                self._conn.execute(pragma)
            self._prepare()
            self._transaction(self._sweep, everything=False)
            (self._depth,) = self._conn.execute("SELECT count(*) FROM queued").fetchone()
            self._dropped = self._meta("dropped")
        except BaseException:
            self._conn.close()
            raise

    @property
    def depth(self) -> int:
        """Results queued."""
        return int(self._depth)

    @property
    def dropped(self) -> int:
        """Results dropped (the queue full) and not yet acknowledged by a hub."""
        return self._dropped

    def put(self, results: Sequence[wire.WireResult], dropped: int = 0) -> None:
        """Queue `results` (taken at this queue's location) in one transaction, dropping the
        oldest beyond `max_rows`; `dropped`: results lost before they got here, counted."""
        keep = list(results[-self._max_rows :])
        if not keep and not dropped:
            return
        with self._lock:
            lost = dropped + len(results) - len(keep)
            excess = max(self._depth + len(keep) - self._max_rows, 0)
            learned: dict[tuple[str, str], int] = {}
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if excess:
                    self._conn.execute(
                        "DELETE FROM queued WHERE id IN"
                        " (SELECT id FROM queued ORDER BY id LIMIT ?)",
                        (excess,),
                    )
                location = self._id("location", self._location, learned)
                rows = [self._row(r, location, learned) for r in keep]
                self._conn.executemany(_INSERT, rows)
                self._removed += excess
                if self._removed >= self._max_rows:  # the queue turned over: drops left orphans
                    self._sweep(everything=False)
                if lost + excess:
                    self._conn.execute(
                        "UPDATE meta SET value = value + ? WHERE key = 'dropped'",
                        (lost + excess,),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._ids |= learned
            if len(self._ids) > _MAX_CACHED:
                self._forget_extras()
            self._depth += len(keep) - excess
            self._dropped += lost + excess
            self._log_drops(lost + excess)

    def peek(self, limit: int) -> Pending:
        """The oldest results, at most `limit` (and wire.MAX_RESULTS), stopping where the
        location changes (the agent's location was renamed with results queued). Empty when
        nothing is queued: a batch that only reports the agent's health."""
        with self._lock:
            seq = self._meta("seq")
            rows = self._conn.execute(_PEEK, (min(max(limit, 0), wire.MAX_RESULTS),)).fetchall()
            dropped, depth = self._dropped, self._depth
        location = rows[0][1] if rows else self._location
        rows = _while_location(rows, location)
        extras: dict[str, wire.WireResult] = {}
        results = tuple(_result(row, extras) for row in rows)
        first, last = (rows[0][0], rows[-1][0]) if rows else (0, -1)
        return Pending(seq, location, results, first, last, depth - len(results), dropped)

    def ack(self, pending: Pending) -> bool:
        """The hub stored `pending`: remove exactly its results, count its drops as heard.
        False when it was acknowledged already (nothing changes)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if self._meta("seq") != pending.seq:
                    self._conn.execute("ROLLBACK")
                    return False
                removed = self._conn.execute(
                    "DELETE FROM queued WHERE id BETWEEN ? AND ?",
                    (pending.first_id, pending.last_id),
                ).rowcount
                # Results dropped after the peek reached the hub all the same.
                heard = pending.dropped + len(pending.results) - removed
                dropped = max(self._dropped - heard, 0)
                self._removed += removed
                if removed == self._depth or self._removed >= self._max_rows:
                    self._sweep(everything=removed == self._depth)
                self._conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'seq'")
                self._conn.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (dropped,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._depth -= removed
            self._dropped = dropped
            return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _prepare(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise QueueError(
                f"{self._path} is a queue of a newer prober (version {version}); upgrade"
                " this agent or give it a new file"
            )
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            (tables,) = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if tables:
                raise QueueError(
                    f"{self._path} is not an agent's queue (it holds other tables);"
                    " give the agent a file of its own"
                )
            for statement in _SCHEMA:
                self._conn.execute(statement)
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _transaction(self, step: Callable[..., None], **kwargs: Any) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            step(**kwargs)
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _sweep(self, *, everything: bool) -> None:
        """Drop the extras no queued result uses (in the caller's transaction); `everything`
        when the queue is empty. Cached ids are forgotten, so none points at a swept row."""
        self._conn.execute("DELETE FROM extra" if everything else _ORPHANS)
        self._removed = 0
        self._forget_extras()

    def _forget_extras(self) -> None:
        self._ids = {key: found for key, found in self._ids.items() if key[0] != "extra"}

    def _meta(self, key: str) -> int:
        (value,) = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(value)

    def _id(self, table: str, name: str, learned: dict[tuple[str, str], int]) -> int:
        key = (table, name)
        found = self._ids.get(key, learned.get(key))
        if found is None:
            column = {"monitor": "slug", "location": "name", "extra": "body"}[table]
            self._conn.execute(f"INSERT OR IGNORE INTO {table} ({column}) VALUES (?)", (name,))  # noqa: S608
            (found,) = self._conn.execute(
                f"SELECT id FROM {table} WHERE {column} = ?",  # noqa: S608
                (name,),
            ).fetchone()
            learned[key] = found
        return found

    def _row(
        self, r: wire.WireResult, location: int, learned: dict[tuple[str, str], int]
    ) -> tuple[object, ...]:
        doc = wire.result_json(r)
        extra = {k: v for k, v in doc.items() if k not in _COLUMNS}
        return (
            self._id("monitor", r.monitor, learned),
            location,
            r.ts_ms,
            _CODES[r.outcome],
            r.latency_us,
            r.status_code,
            r.error,
            r.dns_us,
            r.connect_us,
            r.tls_us,
            r.first_byte_us,
            self._id("extra", _dumps(extra), learned) if extra else None,
        )

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    def _log_drops(self, count: int) -> None:
        if count and not self._dropping:
            log.error(
                "agent queue full at %d results: dropping the oldest (dropped=%d so far)",
                self._max_rows,
                self._dropped,
            )
        self._dropping = bool(count)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _while_location(rows: list[Any], location: str) -> list[Any]:
    for i, row in enumerate(rows):
        if row[1] != location:
            return rows[:i]
    return rows


def _result(row: Any, extras: dict[str, wire.WireResult]) -> wire.WireResult:
    """A stored row back as the WireResult it was, checked again on the way out (a damaged
    file fails here, not at the hub). `extras`: each extra's parts, decoded once a peek."""
    _, _, monitor, ts_ms, code, latency, status, error, dns, connect, tls, first, extra = row
    parts = extras.get(extra) if extra else _NO_EXTRA
    if parts is None:
        doc = {"monitor": "x", "ts_ms": 0, "outcome": "up", "latency_us": 0}
        parts = extras[extra] = wire.parse_result(doc | json.loads(extra))
    return wire.WireResult(
        monitor,
        ts_ms,
        _OUTCOMES[code],
        latency,
        status,
        error,
        dns,
        connect,
        tls,
        first,
        assertions=parts.assertions,
        certificate=parts.certificate,
        details=dict(parts.details),
    )


_NO_EXTRA = wire.WireResult("x", 0, Outcome.UP, 0)


class QueueWriter:
    """The probe loop's side of the queue: `submit` never blocks; one thread commits what
    arrived within `linger` in one transaction. While the disk cannot be written, results
    wait in memory up to `max_waiting` (then the newest are dropped, and counted with the
    queue's drops at the next commit); the failing batch is retried, never dropped."""

    def __init__(
        self,
        disk: DiskQueue,
        linger: float = 0.1,
        batch_max: int = 2000,
        max_waiting: int = 100_000,
    ) -> None:
        self._disk = disk
        self._linger = linger
        self._batch_max = batch_max
        self._max_waiting = max_waiting
        self._lost = 0  # dropped here, not yet counted on disk
        self._lost_lock = threading.Lock()
        self._items: queue.SimpleQueue[wire.WireResult | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name="agent-queue", daemon=True)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, result: wire.WireResult) -> None:
        if self._items.qsize() >= self._max_waiting:
            with self._lost_lock:
                self._lost += 1
            return
        self._items.put(result)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed."""
        done = threading.Event()
        self._items.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what was submitted (waiting at most `timeout` for a failing disk), then
        stop the thread; the DiskQueue stays open."""
        if self._thread.is_alive():
            self._items.put(None)
            self._thread.join(timeout)

    def _loop(self) -> None:
        running = True
        while running:
            items = [self._items.get()]
            until = time.monotonic() + self._linger
            while len(items) < self._batch_max and isinstance(items[-1], wire.WireResult):
                try:
                    items.append(self._items.get(timeout=max(until - time.monotonic(), 0)))
                except queue.Empty:
                    break
            self._commit([i for i in items if isinstance(i, wire.WireResult)])
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
            running = None not in items

    def _commit(self, results: list[wire.WireResult]) -> None:
        delay = 0.1
        while True:
            with self._lost_lock:
                lost = self._lost
            try:
                self._disk.put(results, dropped=lost)
            except sqlite3.Error as exc:
                if self.last_error is None:
                    log.error("agent queue writes failing, retrying: %s", exc)
                self.last_error = str(exc)
                time.sleep(delay)  # this thread's own: the probe loop goes on
                delay = min(delay * 2, 5.0)
                continue
            with self._lost_lock:
                self._lost -= lost
            if self.last_error is not None:
                log.warning("agent queue writes recovered")
            self.last_error = None
            return
