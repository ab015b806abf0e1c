"""Rollups and retention, run by the writer thread between batches of results.

Every minute, hours that can no longer receive results (ended more than `grace` ago:
results are stamped when a check starts and arrive up to a timeout later) are rolled up
into `rollup_hour`, and the local days they touch into `rollup_day`; `meta.rollup_until_ms`
says how far. Once a day raw results older than `retention_days` are pruned; rollups,
transitions, incidents and coverage are kept forever.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from prober import timeline
from prober.store import rollups
from prober.store.ledger import mark_rewritten

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
ROLLED_UNTIL_KEY = "rollup_until_ms"
PRUNED_BEFORE_KEY = "pruned_before_ms"
CHUNK = 200  # monitors per transaction: the writer's results wait at most that long


def pruned_before(conn: sqlite3.Connection) -> int:
    """Raw results before this time (epoch ms) may have been pruned; their hours live on
    only as rollups."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_BEFORE_KEY,)).fetchone()
    return int(row[0]) if row else 0


def rolled_until(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (ROLLED_UNTIL_KEY,)).fetchone()
    return int(row[0]) if row else 0


def roll_up(
    conn: sqlite3.Connection,
    location_id: int,
    monitor_ids: Sequence[int],
    start_ms: int,
    end_ms: int,
    tz: ZoneInfo,
) -> int:
    """(Re)build hourly and daily rollups of [start, end) for the monitors, in chunks of
    transactions. Returns hourly rows written."""
    if end_ms <= start_ms:
        return 0
    written = 0
    for i in range(0, len(monitor_ids), CHUNK):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for mid in monitor_ids[i : i + CHUNK]:
                written += rollups.rollup_span(conn, mid, location_id, start_ms, end_ms, tz)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return written


class Upkeep:
    def __init__(
        self,
        location_id: int,
        monitor_ids: Sequence[int],
        tz: ZoneInfo,
        grace_s: float,
        retention_days: int,
        every_s: float = 60.0,
    ) -> None:
        self._location_id = location_id
        self._monitor_ids = list(monitor_ids)
        self._tz = tz
        self._grace_ms = round(grace_s * 1000)
        self._retention_ms = retention_days * 86_400_000
        self._every = every_s
        self._next = time.monotonic() + every_s
        self._next_prune = time.monotonic() + 600.0  # not in the start-up rush

    def set_monitors(self, monitor_ids: Iterable[int]) -> None:
        self._monitor_ids = list(monitor_ids)

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def run(self, conn: sqlite3.Connection, now_ms: int | None = None) -> None:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self._next = time.monotonic() + self._every
        target = (now_ms - self._grace_ms) // HOUR_MS * HOUR_MS
        done = rolled_until(conn)
        if target > done:
            start = done or oldest_hour(conn, self._monitor_ids)
            begun = time.monotonic()
            rows = roll_up(conn, self._location_id, self._monitor_ids, start, target, self._tz)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (ROLLED_UNTIL_KEY, str(target)),
            )
            log.debug(
                "rolled up until=%s hours=%d seconds=%.2f",
                timeline.from_ms(target, self._tz).isoformat(),
                rows,
                time.monotonic() - begun,
            )
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + 86_400.0
            self.prune(conn, now_ms)

    def prune(self, conn: sqlite3.Connection, now_ms: int) -> int:
        begun = time.monotonic()
        cutoff = now_ms - self._retention_ms
        deleted = rollups.prune(conn, self._location_id, cutoff, self._monitor_ids)
        # The outbox's finished rows (sent, given up) go with the results of their time.
        conn.execute(
            "DELETE FROM alert WHERE state IN ('sent', 'failed', 'suppressed') AND created_ms < ?",
            (cutoff,),
        )
        if deleted:
            mark_rewritten(conn)  # readers keeping state start over (statuspage.incremental)
        if deleted and cutoff // HOUR_MS * HOUR_MS > pruned_before(conn):
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (PRUNED_BEFORE_KEY, str(cutoff // HOUR_MS * HOUR_MS)),
            )
        if deleted:
            log.info(
                "pruned raw results older than %s rows=%d seconds=%.1f",
                timeline.from_ms(cutoff, self._tz).date().isoformat(),
                deleted,
                time.monotonic() - begun,
            )
        return deleted


def oldest_hour(conn: sqlite3.Connection, monitor_ids: Sequence[int]) -> int:
    """The start of the hour of the oldest raw result of any of the monitors (0: none)."""
    oldest = None
    for mid in monitor_ids:
        (ts,) = conn.execute(
            "SELECT min(ts_ms) FROM result WHERE monitor_id = ?", (mid,)
        ).fetchone()
        if ts is not None and (oldest is None or ts < oldest):
            oldest = ts
    return 0 if oldest is None else oldest // HOUR_MS * HOUR_MS
