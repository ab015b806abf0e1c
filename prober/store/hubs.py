"""Several hubs on one PostgreSQL database: one evaluates at a time, the others hand over.

Every hub probes its own location, takes agents' batches and pushes, and serves the page
from the shared database. Exactly one, the holder of the **evaluation lock** (a
session-level advisory lock on a connection of its own), derives verdicts and incidents,
writes the outbox and sends it, remediates, judges push deadlines and rolls up. Another hub
writes what it takes into the `inbox` table; the holder's writer claims those rows
(`FOR UPDATE SKIP LOCKED`), stores and judges them, and deletes them in the same
transaction: each is judged once, whoever holds the lock when it is claimed.

Take-over. PostgreSQL releases a session's advisory locks when the session ends: at once
when the holder's process dies (its socket closes), within about 11 s when its machine
or network does (server-side TCP keepalives: 5 s idle, then 3 probes 2 s apart), and 10 s
after its process stops talking while its machine still answers (a frozen process:
`idle_session_timeout`, PostgreSQL 14 and newer; the holder checks its lock every poll). Every
other hub tries the lock every `PROBER_TAKEOVER_POLL` seconds (default 3): a new holder
within 15 s. The holder checks its lock connection as often; when it is gone, it stops
evaluating at once (its writer sends to the inbox again) and competes like the others.
Alerts are neither lost nor repeated across a take-over: the outbox rows are in the
database with their idempotency keys, and the new holder's ledger starts from the state
the old one committed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prober.agent import wire
from prober.results import CheckResult
from prober.store.engine import LOCK_TIMEOUT_MS, Database
from prober.timeline import from_ms, to_ms

log = logging.getLogger(__name__)

EVALUATION_LOCK = 0x70726F63  # pg_advisory_lock key ("proc"); the writer's is 0x70726F62
TAKEOVER_POLL_S = 3.0
# A holder that stops talking (its process frozen: its machine still answers TCP) loses its
# session, and the lock, after this long without a statement (PostgreSQL 14 and newer).
IDLE_LIMIT_MS = 10_000
# Server-side keepalives of the lock's session: a vanished holder's lock is freed in ~11 s.
KEEPALIVES = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"


def takeover_poll() -> float:
    """PROBER_TAKEOVER_POLL (seconds, at most 5; tests shorten it), else TAKEOVER_POLL_S."""
    raw = os.environ.get("PROBER_TAKEOVER_POLL", "")
    try:
        value = float(raw) if raw else TAKEOVER_POLL_S
    except ValueError:
        return TAKEOVER_POLL_S
    return value if 0.05 <= value <= 5 else TAKEOVER_POLL_S  # well within IDLE_LIMIT_MS


class EvaluationLock:
    """The advisory lock on a connection of its own, tried, held and watched by a thread.
    `held` is what the writer reads before each transaction; `on_change(held)` is called on
    that thread when it moves."""

    def __init__(
        self,
        db: Database,
        location: str,
        poll_s: float | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._db = db
        self._location = location
        self._poll_s = takeover_poll() if poll_s is None else poll_s
        self.on_change = on_change
        self._held = threading.Event()
        self._stop = threading.Event()
        self._give_up = threading.Event()
        self.terms = 0  # how many times this hub took the lock
        self._thread = threading.Thread(target=self._run, name="evaluation-lock", daemon=True)
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._held.is_set()

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Whether the lock is held within `timeout` seconds (tests, start-up)."""
        return self._held.wait(timeout)

    def give_up(self) -> None:
        """Let go of the lock at the thread's next turn (the writer found another hub's
        epoch in the database: ours is stale, whatever this connection says)."""
        self._give_up.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._close()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            if self._give_up.is_set():
                self._give_up.clear()
                self._close()
                if self.held:
                    self._move(False)
            try:
                if self._conn is None:
                    self._conn = self._connect()
                if self.held:
                    self._conn.execute("SELECT 1")
                elif self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (EVALUATION_LOCK,)
                ).fetchone()[0]:
                    log.warning("this hub evaluates now location=%s", self._location)
                    self._move(True)
                failing = False
            except Exception as exc:  # the connection, the server: the lock is gone with it
                if self.held:
                    log.error(
                        "lost the evaluation lock (%s); another hub takes over location=%s",
                        _said(exc),
                        self._location,
                    )
                    self._move(False)
                elif not failing:
                    log.error("cannot reach the database for the evaluation lock: %s", _said(exc))
                failing = True
                self._close()
            self._stop.wait(self._poll_s)
        if self.held:
            self._move(False)

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(
            self._db.url,
            autocommit=True,
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=10_000,  # a send unanswered for 10 s: the connection is gone
            options=f"{KEEPALIVES} -c lock_timeout={LOCK_TIMEOUT_MS}",
        )
        if conn.info.server_version >= 140000:  # a frozen holder (SIGSTOP, a VM paused)
            conn.execute(f"SET idle_session_timeout = {IDLE_LIMIT_MS}")
        return conn

    def _move(self, held: bool) -> None:
        if held:
            self.terms += 1
            self._held.set()
        else:
            self._held.clear()
        if self.on_change is not None:
            try:
                self.on_change(held)
            except Exception:
                log.exception("evaluation lock: on_change failed")

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("closing the lock connection: %s", exc)


def _said(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- what travels through the inbox --------------------------------------------------


def encode(items: Iterable[tuple[str, dt.datetime, CheckResult, str]]) -> str:
    """(monitor, time, result, location) as the inbox's body: the agents' wire format of a
    result (prober.agent.wire), with its location."""
    out = []
    for monitor, at, result, location in items:
        item = wire.result_json(wire.from_check(monitor, to_ms(at), result))
        item["location"] = location
        out.append(item)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def decode(body: str) -> list[tuple[str, dt.datetime, CheckResult, str]]:
    """The observations of an inbox row; a malformed item is logged and skipped."""
    out = []
    for item in json.loads(body):
        try:
            location = item.pop("location")
            found = wire.parse_result(item)
        except (KeyError, wire.WireError) as exc:
            log.error("inbox: a result that cannot be read was skipped: %s", exc)
            continue
        out.append((found.monitor, from_ms(found.ts_ms, dt.UTC), found.to_check(), str(location)))
    return out
