"""Rollups and retention, run by the writer thread between batches of results.

Every minute, hours that can no longer receive results (ended more than `grace` ago:
results are stamped when a check starts and arrive up to a timeout later) are rolled up
into `rollup_hour`, and the local days they touch into `rollup_day`; `meta.rollup_until_ms`
says how far. Once a day raw results older than `retention_days` are pruned; rollups,
transitions, incidents and coverage are kept forever. After an upgrade to schema version
3, the hours whose raw results still exist are rolled up again, a few seconds' worth per
pass (`reroll_converted`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from prober import timeline
from prober.store import rollups
from prober.store.engine import Connection
from prober.store.ledger import mark_rewritten

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
ROLLED_UNTIL_KEY = "rollup_until_ms"
PRUNED_BEFORE_KEY = "pruned_before_ms"
REROLL_UNTIL_KEY = "rollup_reroll_until_ms"  # set by migrations.step_2_to_3
REROLL_FROM_KEY = "rollup_reroll_from_ms"  # the span reroll_converted is in
REROLL_MONITOR_KEY = "rollup_reroll_monitor"  # the last monitor it did in that span
REROLL_SPAN_MS = 24 * HOUR_MS  # hours rolled up again for a monitor per transaction
REROLL_BUDGET_S = 5.0  # per upkeep pass
CHUNK = 200  # monitors per transaction: the writer's results wait at most that long


def pruned_before(conn: Connection) -> int:
    """Raw results before this time (epoch ms) may have been pruned; their hours live on
    only as rollups."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_BEFORE_KEY,)).fetchone()
    return int(row[0]) if row else 0


def rolled_until(conn: Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (ROLLED_UNTIL_KEY,)).fetchone()
    return int(row[0]) if row else 0


def roll_up(
    conn: Connection,
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
        self._others: list[int] = []  # agents' locations (issue 13): rolled up alike
        self._monitor_ids = list(monitor_ids)
        self._tz = tz
        self._grace_ms = round(grace_s * 1000)
        self._retention_ms = retention_days * 86_400_000
        self._every = every_s
        self._next = time.monotonic() + every_s
        self._next_prune = time.monotonic() + 600.0  # not in the start-up rush

    def set_monitors(self, monitor_ids: Iterable[int]) -> None:
        self._monitor_ids = list(monitor_ids)

    def set_other_locations(self, location_ids: Iterable[int]) -> None:
        """Agents' locations whose results are rolled up and pruned with the hub's own."""
        self._others = sorted(set(location_ids) - {self._location_id})

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def run(self, conn: Connection, now_ms: int | None = None) -> None:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self._next = time.monotonic() + self._every
        target = (now_ms - self._grace_ms) // HOUR_MS * HOUR_MS
        done = rolled_until(conn)
        if target > done:
            start = done or oldest_hour(conn, self._monitor_ids)
            begun = time.monotonic()
            rows = sum(
                roll_up(conn, location, self._monitor_ids, start, target, self._tz)
                for location in (self._location_id, *self._others)
            )
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
        reroll_converted(conn, self._tz)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + 86_400.0
            self.prune(conn, now_ms)

    def prune(self, conn: Connection, now_ms: int) -> int:
        begun = time.monotonic()
        cutoff = now_ms - self._retention_ms
        every = None if self._others else self._location_id  # None: every location
        deleted = rollups.prune(conn, every, cutoff, self._monitor_ids)
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


def oldest_hour(conn: Connection, monitor_ids: Sequence[int]) -> int:
    """The start of the hour of the oldest raw result of any of the monitors (0: none)."""
    oldest = None
    for mid in monitor_ids:
        (ts,) = conn.execute(
            "SELECT min(ts_ms) FROM result WHERE monitor_id = ?", (mid,)
        ).fetchone()
        if ts is not None and (oldest is None or ts < oldest):
            oldest = ts
    return 0 if oldest is None else oldest // HOUR_MS * HOUR_MS


def _meta_ms(conn: Connection, key: str) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else None


def reroll_converted(conn: Connection, tz: ZoneInfo) -> bool:
    """One pass of rolling up again, from their raw results, the hours that the upgrade to
    schema version 3 converted (migrations.step_2_to_3: old buckets moved to their middles,
    the old ~5 % resolution kept), then the local days they touch. Returns whether any is
    left.

    The migration records in `meta.rollup_reroll_until_ms` the end of the converted hours.
    From the oldest raw result on, a span of REROLL_SPAN_MS is done for every monitor and
    location in transactions of CHUNK monitors, then the next span; a pass stops after the
    transaction that reaches REROLL_BUDGET_S (the writer's results wait meanwhile).
    `meta.rollup_reroll_from_ms` and `rollup_reroll_monitor` record how far (the span, the
    last monitor done in it); the last pass deletes the three keys. Only hours from a
    (monitor, location)'s first raw result in the span on, and none before
    `pruned_before`, are rolled up again: hours whose raw results were pruned keep their
    converted histograms for good (rolling them up would empty them).

    Until the last pass, reports (`prober report` too) read what is stored: hours done at
    version 3's precision (within 0.4 %), the others and their days at the converted one.
    Here and not in the migration: a local day needs settings.timezone, which the file
    does not record, and reading every kept raw result would hold the upgrade's
    transaction, and the start-up, for minutes.
    """
    until = _meta_ms(conn, REROLL_UNTIL_KEY)
    if until is None:
        return False
    start = _meta_ms(conn, REROLL_FROM_KEY)
    if start is None:  # the first pass; no raw results at all: nothing to roll up again
        oldest = oldest_hour(conn, [m for (m,) in conn.execute("SELECT id FROM monitor")])
        start = max(oldest, pruned_before(conn)) if oldest else until
    after = _meta_ms(conn, REROLL_MONITOR_KEY) or 0
    floor = max(start, pruned_before(conn))
    begun = time.monotonic()
    hours = 0
    while start < until:
        end = min(start + REROLL_SPAN_MS, until)
        chunk = [
            m
            for (m,) in conn.execute(
                "SELECT id FROM monitor WHERE id > ? ORDER BY id LIMIT ?", (after, CHUNK)
            )
        ]
        if not chunk:  # the span is done for every monitor
            start, after = end, 0
            floor = max(start, floor)
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            hours += sum(_reroll_monitor(conn, mid, floor, end, tz) for mid in chunk)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        after = chunk[-1]
        if time.monotonic() - begun >= REROLL_BUDGET_S:
            break
    left = start < until
    if left:
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(REROLL_FROM_KEY, str(start)), (REROLL_MONITOR_KEY, str(after))],
        )
    else:
        conn.execute(
            "DELETE FROM meta WHERE key IN (?, ?, ?)",
            (REROLL_FROM_KEY, REROLL_MONITOR_KEY, REROLL_UNTIL_KEY),
        )
    log.info(
        "rolling up again after the upgrade: at=%s monitor_after=%d hours=%d seconds=%.2f%s",
        timeline.from_ms(start, tz).isoformat(),
        after,
        hours,
        time.monotonic() - begun,
        "" if left else " (done)",
    )
    return left


def _reroll_monitor(
    conn: Connection, monitor_id: int, start_ms: int, end_ms: int, tz: ZoneInfo
) -> int:
    """rollup_span of each location's hours in [start_ms, end_ms) from its first raw result
    there on: pruning removes whole hours, oldest first, so every later hour is complete."""
    if end_ms <= start_ms:
        return 0
    firsts = conn.execute(
        "SELECT location_id, min(ts_ms) FROM result"
        " WHERE monitor_id = ? AND ts_ms >= ? AND ts_ms < ? GROUP BY location_id",
        (monitor_id, start_ms, end_ms),
    ).fetchall()
    return sum(
        rollups.rollup_span(conn, monitor_id, loc, first, end_ms, tz) for loc, first in firsts
    )
