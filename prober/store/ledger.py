"""Derived data kept in step with results: transitions, incidents, coverage, tracker state.

The writer thread calls `Ledger.apply` for every result inside the transaction that
inserts it, so a transition or incident is committed exactly when its cause is, and
kill -9 can never leave one without the other. The tracker (prober.incidents) is saved
whenever its status changes; on start the results after that point are replayed, so a
restart continues where it was without writing state for every result.

Coverage is stored as spans of time covered by known results (docs/REFERENCE.md: a result covers
until the next one, at most 2 x interval); the newest span of a monitor is open (end_ms
NULL) and reaches its last result plus the monitor's coverage, never past now. Everything
outside the spans is unknown time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable
from zoneinfo import ZoneInfo

from prober import maintenance
from prober.config.monitors import MonitorBase, ProbeMonitor, PushMonitor
from prober.config.types import DownAfter
from prober.incidents import Change, Opened, Resolved, Rule, Tracker, Transition
from prober.results import Outcome
from prober.store.tables import OUTCOMES_BY_CODE
from prober.timeline import to_ms

CRON_PUSH_COVER_S = 2 * 86_400.0  # a push monitor with neither period nor cron (never)

# meta key: a counter bumped by every write that rewrites derived history rather than
# appending to it (an import's rebuild, a prune, a replay at load that changed something).
# A reader that keeps derived state between reads (the status page) starts over when it
# moves; live results never bump it.
REWRITES_KEY = "rewrites"


def mark_rewritten(conn: sqlite3.Connection) -> None:
    """Bump `meta.rewrites`, inside the caller's transaction (or on its own)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1')"
        " ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (REWRITES_KEY,),
    )


def rewrites(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (REWRITES_KEY,)).fetchone()
    return int(row[0]) if row else 0


@dataclasses.dataclass(frozen=True, slots=True)
class TrackSpec:
    """What the ledger needs to know about one monitor."""

    slug: str
    type: str
    rule: Rule
    cover_ms: int

    @classmethod
    def of(cls, monitor: MonitorBase) -> TrackSpec:
        if isinstance(monitor, ProbeMonitor):
            cover = 2 * monitor.interval
        elif isinstance(monitor, PushMonitor) and monitor.period is not None:
            cover = monitor.period + monitor.grace
        elif isinstance(monitor, PushMonitor) and monitor.cron is not None:
            cover = cron_gap_s(monitor.cron, monitor.timezone or "UTC") + monitor.grace
        else:
            cover = CRON_PUSH_COVER_S
        rule = Rule(monitor.down_after, monitor.up_after)
        return cls(monitor.id, str(getattr(monitor, "type", "")), rule, round(cover * 1000))

    @classmethod
    def plain(cls, slug: str, kind: str = "http", interval: float = 60.0) -> TrackSpec:
        """Defaults as for a monitor with nothing set: for tests and tools."""
        return cls(slug, kind, Rule(DownAfter(seconds=120.0), 1), round(2 * interval * 1000))


# Told of every incident opened or resolved, inside the transaction that records it: the
# alert outbox writes its rows there (live results and results replayed at start alike).
OnIncident = Callable[[sqlite3.Connection, str, Opened | Resolved], None]


@functools.lru_cache(maxsize=256)
def cron_gap_s(expr: str, zone: str) -> float:
    """The longest wait between two fire times of a crontab over its next dozen fires:
    how long one ping of a cron push monitor covers (with its grace)."""
    tz = ZoneInfo(zone)
    at = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    fires = [at := maintenance.next_fire(expr, at, tz) for _ in range(13)]
    return max(b - a for a, b in itertools.pairwise(fires)) / 1000


class _Track:
    __slots__ = ("cover_ms", "last_known", "last_ts", "monitor_id", "open_span", "slug", "tracker")

    def __init__(self, slug: str, monitor_id: int, tracker: Tracker, cover_ms: int) -> None:
        self.slug = slug
        self.monitor_id = monitor_id
        self.tracker = tracker
        self.cover_ms = cover_ms
        self.last_ts: int | None = None
        self.last_known = False
        self.open_span: int | None = None  # start_ms of the open coverage span


class Ledger:
    def __init__(
        self,
        location_id: int,
        ids: dict[str, int],
        specs: Iterable[TrackSpec],
        on_incident: OnIncident | None = None,
    ) -> None:
        self._location_id = location_id
        self._on_incident = on_incident
        self._specs = {s.slug: s for s in specs if s.slug in ids}
        self._ids = ids
        self._tracks: dict[str, _Track] = {}

    def replace(self, ids: dict[str, int], specs: Iterable[TrackSpec]) -> None:
        """A reloaded config: new monitors, new rules. Call `load()` next: every tracker is
        restored from the database under its (maybe new) rule, so a pending failure run is
        judged by the new down_after at its next result, and an open incident stays open."""
        self._ids = ids
        self._specs = {s.slug: s for s in specs if s.slug in ids}
        self._tracks = {}

    def load(self, conn: sqlite3.Connection) -> int:
        """Restore every monitor's tracker and coverage; replay results newer than the
        saved state (inside one transaction). Returns the number of results replayed."""
        replayed = changed = 0
        loc = self._location_id
        conn.execute("BEGIN IMMEDIATE")
        try:
            for slug, spec in self._specs.items():
                mid = self._ids[slug]
                row = conn.execute(
                    "SELECT as_of_ms, state FROM monitor_state"
                    " WHERE monitor_id = ? AND location_id = ?",
                    (mid, loc),
                ).fetchone()
                if row is None:
                    tracker, as_of = Tracker(spec.rule), None
                else:
                    tracker, as_of = Tracker.from_dict(spec.rule, json.loads(row[1])), row[0]
                track = _Track(slug, mid, tracker, spec.cover_ms)
                span = conn.execute(
                    "SELECT start_ms FROM coverage WHERE monitor_id = ? AND location_id = ?"
                    " AND end_ms IS NULL",
                    (mid, loc),
                ).fetchone()
                track.open_span = span[0] if span else None
                self._tracks[slug] = track
                pending = conn.execute(
                    "SELECT ts_ms, outcome, error FROM result WHERE monitor_id = ?"
                    " AND location_id = ? AND ts_ms > ? ORDER BY ts_ms",
                    (mid, loc, -1 if as_of is None else as_of),
                ).fetchall()
                last = conn.execute(
                    "SELECT ts_ms, outcome FROM result WHERE monitor_id = ? AND location_id = ?"
                    " AND ts_ms <= ? ORDER BY ts_ms DESC LIMIT 1",
                    (mid, loc, -1 if as_of is None else as_of),
                ).fetchone()
                if last is not None:
                    track.last_ts = last[0]
                    track.last_known = OUTCOMES_BY_CODE[last[1]] is not Outcome.UNKNOWN
                for ts_ms, code, error in pending:
                    steps = self._step(
                        conn, track, ts_ms, OUTCOMES_BY_CODE[code], error, coverage=False
                    )
                    changed += len(steps)
                    replayed += 1
                self._save_state(conn, track)
            if changed:  # transitions or incidents written with no new result behind them
                mark_rewritten(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return replayed

    def apply(
        self, conn: sqlite3.Connection, slug: str, ts_ms: int, outcome: Outcome, error: str | None
    ) -> list[Change]:
        """One result, inside the caller's transaction, after its row was inserted."""
        track = self._tracks.get(slug)
        if track is None:
            return []
        changes = self._step(conn, track, ts_ms, outcome, error, coverage=True)
        if changes:
            self._save_state(conn, track)
        return changes

    def status(self, slug: str) -> str | None:
        track = self._tracks.get(slug)
        status = track.tracker.status if track else None
        return None if status is None else str(status)

    def _step(
        self,
        conn: sqlite3.Connection,
        track: _Track,
        ts_ms: int,
        outcome: Outcome,
        error: str | None,
        *,
        coverage: bool,
    ) -> list[Change]:
        if track.last_ts is not None and ts_ms <= track.last_ts:
            return []  # a duplicate or a late arrival: the tracker ignores it too
        if coverage:
            self._cover(conn, track, ts_ms, outcome is not Outcome.UNKNOWN)
        changes = track.tracker.step(ts_ms, outcome, error)
        track.last_ts = ts_ms
        track.last_known = outcome is not Outcome.UNKNOWN
        for change in changes:
            self._record(conn, track.monitor_id, change)
            if self._on_incident is not None and isinstance(change, Opened | Resolved):
                self._on_incident(conn, track.slug, change)
        return changes

    def _cover(self, conn: sqlite3.Connection, track: _Track, ts_ms: int, known: bool) -> None:
        loc, mid = self._location_id, track.monitor_id
        if track.open_span is not None:
            assert track.last_ts is not None
            reach = track.last_ts + track.cover_ms
            if known and ts_ms <= reach:
                return  # the span goes on
            conn.execute(
                "UPDATE coverage SET end_ms = ? WHERE monitor_id = ? AND location_id = ?"
                " AND start_ms = ?",
                (min(ts_ms, reach), mid, loc, track.open_span),
            )
            track.open_span = None
        if known:
            conn.execute(
                "INSERT OR REPLACE INTO coverage (monitor_id, location_id, start_ms, end_ms)"
                " VALUES (?, ?, ?, NULL)",
                (mid, loc, ts_ms),
            )
            track.open_span = ts_ms

    def _record(self, conn: sqlite3.Connection, mid: int, change: Change) -> None:
        loc = self._location_id
        if isinstance(change, Transition):
            conn.execute(
                "INSERT OR REPLACE INTO transition (monitor_id, location_id, ts_ms, old, new)"
                " VALUES (?, ?, ?, ?, ?)",
                (mid, loc, change.ts_ms, change.old, change.new),
            )
        elif isinstance(change, Opened | Resolved):
            i = change.incident
            conn.execute(
                "INSERT OR REPLACE INTO incident (monitor_id, location_id, start_ms,"
                " confirmed_ms, end_ms, resolved_ms, cause) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (mid, loc, i.start_ms, i.confirmed_ms, i.end_ms, i.resolved_ms, i.cause),
            )

    def _save_state(self, conn: sqlite3.Connection, track: _Track) -> None:
        if track.last_ts is None:
            return
        conn.execute(
            "INSERT OR REPLACE INTO monitor_state (monitor_id, location_id, as_of_ms, state)"
            " VALUES (?, ?, ?, ?)",
            (
                track.monitor_id,
                self._location_id,
                track.last_ts,
                json.dumps(track.tracker.to_dict(), separators=(",", ":")),
            ),
        )


def rebuild(
    conn: sqlite3.Connection,
    location_id: int,
    monitor_id: int,
    spec: TrackSpec,
    samples: Iterable[tuple[int, int, str | None]],
) -> int:
    """Re-derive one monitor's transitions, incidents, coverage and state from all of its
    results (time-ordered (ts_ms, outcome code, error)), inside the caller's transaction:
    what an import does, and exactly what live ingestion would have produced. Returns the
    number of samples (an iterator is read once, as it goes)."""
    mark_rewritten(conn)
    for table in ("transition", "incident", "coverage", "monitor_state"):
        conn.execute(
            f"DELETE FROM {table} WHERE monitor_id = ? AND location_id = ?",  # noqa: S608
            (monitor_id, location_id),
        )
    ledger = Ledger(location_id, {spec.slug: monitor_id}, [spec])
    tracker = Tracker(spec.rule)
    track = _Track(spec.slug, monitor_id, tracker, spec.cover_ms)
    ledger._tracks[spec.slug] = track
    # Most results change nothing but the time (up after up, within coverage): those skip
    # the tracker and the coverage bookkeeping, which are then told the last one's time.
    steady_code, last, cover_ms, count = -1, -1, spec.cover_ms, 0
    for count, (ts_ms, code, error) in enumerate(samples, 1):  # noqa: B007  (returned)
        if code == steady_code and last < ts_ms <= last + cover_ms:
            last = ts_ms
            continue
        if steady_code != -1:
            track.last_ts = last
            tracker.advance(last)
        outcome = OUTCOMES_BY_CODE[code]
        ledger._step(conn, track, ts_ms, outcome, error, coverage=True)
        last = track.last_ts if track.last_ts is not None else ts_ms
        steady = track.open_span is not None and tracker.steady(outcome)
        steady_code = code if steady else -1
    if steady_code != -1:
        track.last_ts = last
        tracker.advance(last)
    ledger._save_state(conn, track)
    return count
