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
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple
from zoneinfo import ZoneInfo

from prober import maintenance
from prober.config.locations import COMBINED
from prober.config.monitors import MonitorBase, ProbeMonitor, PushMonitor
from prober.config.types import DownAfter
from prober.incidents import Change, Opened, Resolved, Rule, Tracker, Transition
from prober.quorum import Gate, Quorum, Rewind, Verdict
from prober.results import Outcome
from prober.store.engine import Connection
from prober.store.tables import OUTCOMES_BY_CODE
from prober.timeline import to_ms

CRON_PUSH_COVER_S = 2 * 86_400.0  # a push monitor with neither period nor cron (never)

# meta key: a counter bumped by every write that rewrites derived history rather than
# appending to it (an import's rebuild, a prune, a replay at load that changed something).
# A reader that keeps derived state between reads (the status page) starts over when it
# moves; live results never bump it.
REWRITES_KEY = "rewrites"


def wall_ms() -> int:
    return round(time.time() * 1000)


def mark_rewritten(conn: Connection) -> None:
    """Bump `meta.rewrites`, inside the caller's transaction (or on its own)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1')"
        " ON CONFLICT (key) DO UPDATE SET value = CAST(meta.value AS INTEGER) + 1",
        (REWRITES_KEY,),
    )


def rewrites(conn: Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (REWRITES_KEY,)).fetchone()
    return int(row[0]) if row else 0


@dataclasses.dataclass(frozen=True, slots=True)
class TrackSpec:
    """What the ledger needs to know about one monitor."""

    slug: str
    type: str
    rule: Rule
    cover_ms: int
    locations: tuple[str, ...] = ()  # where it is probed; () the hub's own location
    quorum: int = 1

    @property
    def multi(self) -> bool:
        """Probed from several locations: a combined verdict decides (prober.quorum)."""
        return len(self.locations) > 1

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
        kind = str(getattr(monitor, "type", ""))
        locations = tuple(monitor.locations)
        return cls(monitor.id, kind, rule, round(cover * 1000), locations, monitor.quorum or 1)

    @classmethod
    def plain(cls, slug: str, kind: str = "http", interval: float = 60.0) -> TrackSpec:
        """Defaults as for a monitor with nothing set: for tests and tools."""
        return cls(slug, kind, Rule(DownAfter(seconds=120.0), 1), round(2 * interval * 1000))


# Told of every incident opened or resolved, inside the transaction that records it: the
# alert outbox writes its rows there (live results and results replayed at start alike).
OnIncident = Callable[[Connection, str, Opened | Resolved], None]
# Told once per regional problem (failing locations, since_ms, cause) that lasted down_after.
OnRegional = Callable[[Connection, str, tuple[str, ...], int, str | None], None]
# Told of every combined verdict fed to a tracker (monitor, verdict, the start its open or
# coming incident's alerts are keyed by: the alias, the open incident's start, or since_ms),
# inside the transaction; a rebuild tells the verdicts it re-derives again.
OnVerdict = Callable[[str, Verdict, int | None], None]


@functools.lru_cache(maxsize=256)
def cron_gap_s(expr: str, zone: str) -> float:
    """The longest wait between two fire times of a crontab over its next dozen fires:
    how long one ping of a cron push monitor covers (with its grace)."""
    tz = ZoneInfo(zone)
    at = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    fires = [at := maintenance.next_fire(expr, at, tz) for _ in range(13)]
    return max(b - a for a, b in itertools.pairwise(fires)) / 1000


class _Track:
    __slots__ = (
        "cover_ms",
        "last_known",
        "last_ts",
        "location_id",
        "monitor_id",
        "open_span",
        "slug",
        "tracker",
    )

    def __init__(
        self, slug: str, monitor_id: int, tracker: Tracker, cover_ms: int, location_id: int
    ) -> None:
        self.slug = slug
        self.monitor_id = monitor_id
        self.tracker = tracker
        self.cover_ms = cover_ms
        self.location_id = location_id
        self.last_ts: int | None = None
        self.last_known = False
        self.open_span: int | None = None  # start_ms of the open coverage span


class _Known(NamedTuple):
    """An incident as it was before a rebuild of the combined verdict: its start, the
    start its alerts were keyed by, and whether its resolution was already told."""

    start_ms: int
    end_ms: int | None
    key_ms: int


class _Multi:
    """A monitor probed from several locations: each location's own track (figures for
    reports, no alerts), and the combined verdict's (prober.quorum; incidents and alerts)."""

    __slots__ = ("alias_ms", "combined", "gate", "known", "places", "quorum", "regional", "spec")

    def __init__(self, spec: TrackSpec, places: dict[str, _Track], combined: _Track) -> None:
        self.spec = spec
        self.places = places  # location name -> its own track
        self.combined = combined
        self.quorum = Quorum(spec.quorum, spec.cover_ms)
        self.gate = Gate(spec.cover_ms, spec.cover_ms // 4)  # half an interval
        # The start the open incident's alerts are keyed by, when a rebuild moved its start
        # (late results): the incident keeps its identity, no alert is sent twice.
        self.alias_ms: int | None = None
        # a regional problem: (failing locations, since_ms, told: it lasted down_after)
        self.regional: tuple[tuple[str, ...], int, bool] | None = None
        self.known: list[_Known] | None = None  # only while a rebuild replays


class Ledger:
    def __init__(
        self,
        location_id: int,
        ids: dict[str, int],
        specs: Iterable[TrackSpec],
        on_incident: OnIncident | None = None,
        location_ids: Mapping[str, int] | None = None,
        on_regional: OnRegional | None = None,
    ) -> None:
        self._location_id = location_id  # the hub's own location
        self._on_regional = on_regional
        self._location_ids = dict(location_ids or {})  # name -> id, COMBINED included
        self._on_incident = on_incident
        self._specs = {s.slug: s for s in specs if s.slug in ids}
        self._ids = ids
        self._tracks: dict[str, _Track] = {}  # monitors with one location
        self._multi: dict[str, _Multi] = {}  # monitors with several
        self._touched: set[str] = set()  # multi monitors offered results since settle()
        self._swept_ms = -1  # when settle() last looked at every multi monitor for lapses
        self.on_verdict: OnVerdict | None = None

    def replace(
        self,
        ids: dict[str, int],
        specs: Iterable[TrackSpec],
        location_ids: Mapping[str, int] | None = None,
    ) -> None:
        """A reloaded config: new monitors, new rules. Call `load()` next: every tracker is
        restored from the database under its (maybe new) rule, so a pending failure run is
        judged by the new down_after at its next result, and an open incident stays open."""
        self._ids = ids
        self._specs = {s.slug: s for s in specs if s.slug in ids}
        if location_ids is not None:
            self._location_ids = dict(location_ids)
        self._tracks = {}
        self._multi = {}
        self._touched = set()

    def load(self, conn: Connection, now_ms: int | None = None) -> int:
        """Restore every monitor's tracker and coverage; replay results newer than the
        saved state (inside one transaction). Returns the number of results replayed."""
        now = wall_ms() if now_ms is None else now_ms
        replayed = changed = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for slug, spec in self._specs.items():
                mid = self._ids[slug]
                if not spec.multi:
                    loc = self._place_id(spec.locations[0]) if spec.locations else None
                    track = self._load_track(conn, spec, mid, loc or self._location_id)
                    self._tracks[slug] = track
                    count, steps = self._replay(conn, track)
                    replayed, changed = replayed + count, changed + steps
                    continue
                places = {}
                for name in spec.locations:
                    track = self._load_track(conn, spec, mid, self._place_id(name))
                    places[name] = track
                    count, steps = self._replay(conn, track)
                    replayed, changed = replayed + count, changed + steps
                combined = _Track(
                    slug, mid, Tracker(spec.rule), spec.cover_ms, self._place_id(COMBINED)
                )
                multi = _Multi(spec, places, combined)
                self._multi[slug] = multi
                if self._restore_combined(conn, multi):
                    self._catch_up(conn, multi, now)
                else:
                    self._rebuild_combined(conn, multi, now)
            if changed:  # transitions or incidents written with no new result behind them
                mark_rewritten(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return replayed

    def apply(
        self,
        conn: Connection,
        slug: str,
        ts_ms: int,
        outcome: Outcome,
        error: str | None,
        location_id: int | None = None,
    ) -> list[Change]:
        """One result, inside the caller's transaction, after its row was inserted;
        `location_id` None: the hub's own. A monitor probed from several locations gives
        its combined verdict's changes from `settle()`, once the batch is in."""
        loc = self._location_id if location_id is None else location_id
        track = self._tracks.get(slug)
        if track is not None:
            if track.location_id != loc:
                return []  # not where this monitor is probed (the row is kept all the same)
            changes = self._step(conn, track, ts_ms, outcome, error, coverage=True)
            if changes:
                self._save_state(conn, track)
            return changes
        multi = self._multi.get(slug)
        if multi is None:
            return []
        for name, place in multi.places.items():
            if place.location_id == loc:
                fresh = place.last_ts is None or ts_ms > place.last_ts
                if self._step(conn, place, ts_ms, outcome, error, coverage=True):
                    self._save_state(conn, place)
                if fresh:
                    multi.gate.offer(name, ts_ms, outcome, error)
                    self._touched.add(slug)
                break
        return []

    def settle(self, conn: Connection, now_ms: int) -> list[tuple[str, Change]]:
        """The combined verdicts the results applied since the last call let through, and
        lapses (a location that stopped reporting) due by now; inside the caller's
        transaction. Looks at every monitor with several locations at most once a second,
        at the others only when they had results."""
        if not self._multi:
            return []
        slugs: Iterable[str] = self._touched
        if now_ms - self._swept_ms >= 1000:
            slugs, self._swept_ms = self._multi.keys(), now_ms
        changes: list[tuple[str, Change]] = []
        for slug in slugs:
            changes.extend((slug, c) for c in self._catch_up(conn, self._multi[slug], now_ms))
        self._touched = set()
        return changes

    def status(self, slug: str) -> str | None:
        track = self._tracks.get(slug)
        if track is None and slug in self._multi:
            track = self._multi[slug].combined
        status = track.tracker.status if track else None
        return None if status is None else str(status)

    def _place_id(self, name: str) -> int:
        return self._location_ids[name]

    def _load_track(self, conn: Connection, spec: TrackSpec, mid: int, loc: int) -> _Track:
        row = conn.execute(
            "SELECT as_of_ms, state FROM monitor_state WHERE monitor_id = ? AND location_id = ?",
            (mid, loc),
        ).fetchone()
        if row is None:
            tracker, as_of = Tracker(spec.rule), None
        else:
            tracker, as_of = Tracker.from_dict(spec.rule, json.loads(row[1])), row[0]
        track = _Track(spec.slug, mid, tracker, spec.cover_ms, loc)
        track.open_span = self._open_span(conn, mid, loc)
        last = conn.execute(
            "SELECT ts_ms, outcome FROM result WHERE monitor_id = ? AND location_id = ?"
            " AND ts_ms <= ? ORDER BY ts_ms DESC LIMIT 1",
            (mid, loc, -1 if as_of is None else as_of),
        ).fetchone()
        if last is not None:
            track.last_ts = last[0]
            track.last_known = OUTCOMES_BY_CODE[last[1]] is not Outcome.UNKNOWN
        return track

    @staticmethod
    def _open_span(conn: Connection, mid: int, loc: int) -> int | None:
        span = conn.execute(
            "SELECT start_ms FROM coverage WHERE monitor_id = ? AND location_id = ?"
            " AND end_ms IS NULL",
            (mid, loc),
        ).fetchone()
        return span[0] if span else None

    def _replay(self, conn: Connection, track: _Track) -> tuple[int, int]:
        """The results stored after the track's saved state: (results, changes)."""
        pending = conn.execute(
            "SELECT ts_ms, outcome, error FROM result WHERE monitor_id = ?"
            " AND location_id = ? AND ts_ms > ? ORDER BY ts_ms",
            (track.monitor_id, track.location_id, -1 if track.last_ts is None else track.last_ts),
        ).fetchall()
        changed = 0
        for ts_ms, code, error in pending:
            steps = self._step(conn, track, ts_ms, OUTCOMES_BY_CODE[code], error, coverage=False)
            changed += len(steps)
        self._save_state(conn, track)
        return len(pending), changed

    def _step(
        self,
        conn: Connection,
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
            self._record(conn, track, change)
            if not isinstance(change, Opened | Resolved) or self._on_incident is None:
                continue
            if self._tracks.get(track.slug) is track:  # not one place of several
                self._on_incident(conn, track.slug, change)
        return changes

    # -- several locations: the combined verdict -------------------------------------------

    def _restore_combined(self, conn: Connection, multi: _Multi) -> bool:
        """The combined verdict's saved state, if it was saved under the same locations and
        quorum (else it is rebuilt: a config edit changed what the verdict means)."""
        track = multi.combined
        row = conn.execute(
            "SELECT state FROM monitor_state WHERE monitor_id = ? AND location_id = ?",
            (track.monitor_id, track.location_id),
        ).fetchone()
        if row is None:
            return False
        state = json.loads(row[0])
        spec = multi.spec
        if state.get("locations") != list(spec.locations) or state.get("quorum") != spec.quorum:
            return False
        if state.get("cover_ms") != spec.cover_ms:
            return False
        track.tracker = Tracker.from_dict(spec.rule, state["tracker"])
        multi.quorum = Quorum.from_dict(spec.quorum, spec.cover_ms, state["verdicts"])
        multi.alias_ms = state.get("alias_ms")
        regional = state.get("regional")
        if regional:
            multi.regional = (tuple(regional["locations"]), regional["since_ms"], regional["told"])
        track.last_ts = multi.quorum.horizon_ms
        track.last_known = state.get("known", False)
        track.open_span = self._open_span(conn, track.monitor_id, track.location_id)
        for name, ts_ms in multi.quorum.newest().items():
            multi.gate.seen(name, ts_ms)
        horizon = -1 if track.last_ts is None else track.last_ts
        for name, place in multi.places.items():
            for ts_ms, code, error in conn.execute(
                "SELECT ts_ms, outcome, error FROM result WHERE monitor_id = ?"
                " AND location_id = ? AND ts_ms > ? ORDER BY ts_ms",
                (place.monitor_id, place.location_id, horizon),
            ):
                multi.gate.offer(name, ts_ms, OUTCOMES_BY_CODE[code], error)
        return True

    def _catch_up(self, conn: Connection, multi: _Multi, now_ms: int) -> list[Change]:
        """Feed the gate's released moments to the quorum and its verdicts to the combined
        track; lapses up to the watermark; a late result rebuilds the combined verdict."""
        changes: list[Change] = []
        moved = False
        for ts_ms, items in multi.gate.release(now_ms):
            out = multi.quorum.add_moment(ts_ms, items)
            if isinstance(out, Rewind):
                return self._rebuild_combined(conn, multi, now_ms)
            changes += self._verdicts(conn, multi, out)
            moved = True
        lapses = multi.quorum.tick(multi.gate.watermark(now_ms))
        if lapses:
            changes += self._verdicts(conn, multi, lapses)
        if moved or lapses:
            self._save_combined(conn, multi)
        return changes

    def _verdicts(
        self, conn: Connection, multi: _Multi, verdicts: Iterable[Verdict]
    ) -> list[Change]:
        track = multi.combined
        changes: list[Change] = []
        for v in verdicts:
            if track.last_ts is not None and v.ts_ms <= track.last_ts:
                continue
            known = v.outcome is not Outcome.UNKNOWN
            self._cover(conn, track, v.ts_ms, known)
            steps = track.tracker.step_run(v.ts_ms, v.outcome, v.error, v.since_ms, v.run_checks)
            track.last_ts = v.ts_ms
            track.last_known = known
            if v.regional:
                self._regional(conn, multi, v)
            else:
                multi.regional = None
            for change in steps:
                self._record(conn, track, change)
                if isinstance(change, Opened | Resolved):
                    self._announce(conn, multi, change)
            changes += steps
            if self.on_verdict is not None:
                key = multi.alias_ms
                if key is None:
                    opened = track.tracker.open_incident
                    key = v.since_ms if opened is None else opened.start_ms
                self.on_verdict(multi.spec.slug, v, key)
        return changes

    def _regional(self, conn: Connection, multi: _Multi, v: Verdict) -> None:
        """A regional problem goes on; once it has lasted down_after (a duration, or N
        checks' worth of intervals) it is told, once (not while a rebuild replays: what it
        finds late was either told already or is history)."""
        held = multi.regional
        since, told = (held[1], held[2]) if held else (v.ts_ms, False)
        rule = multi.spec.rule
        need = max(rule.need_ms, (rule.need_downs - 1) * (multi.spec.cover_ms // 2))
        if not told and v.ts_ms - since >= need:
            told = True
            if self._on_regional is not None and multi.known is None:
                self._on_regional(conn, multi.spec.slug, v.failing, since, v.error)
        multi.regional = (v.failing, since, told)

    def _announce(self, conn: Connection, multi: _Multi, change: Opened | Resolved) -> None:
        """Tell the outbox, once per incident and event, under the start its first alert
        was keyed by. During a rebuild, an incident that overlaps one known before it is
        the same incident: its opening (and a resolution already told) is not told again."""
        incident = change.incident
        if multi.known is not None:
            end = math.inf if incident.end_ms is None else incident.end_ms
            same = next(
                (
                    k
                    for k in multi.known
                    if k.start_ms <= end and (k.end_ms is None or k.end_ms >= incident.start_ms)
                ),
                None,
            )
            if same is not None:
                if isinstance(change, Opened):
                    multi.alias_ms = same.key_ms if same.key_ms != incident.start_ms else None
                    return
                if same.end_ms is not None:
                    multi.alias_ms = None
                    return
        if isinstance(change, Opened):
            multi.alias_ms = None
        elif multi.alias_ms is not None:
            change = Resolved(dataclasses.replace(incident, start_ms=multi.alias_ms))
            multi.alias_ms = None
        if self._on_incident is not None:
            self._on_incident(conn, multi.spec.slug, change)

    def _rebuild_combined(self, conn: Connection, multi: _Multi, now_ms: int) -> list[Change]:
        """Re-derive the combined verdict from every stored result up to the watermark:
        at the first start, after a config edit, and when a late result (an agent back
        from an outage) changed the past. Incidents keep their identity (see _announce)."""
        track = multi.combined
        mid, cid = track.monitor_id, track.location_id
        open_key = multi.alias_ms
        known = [
            _Known(start, end, open_key if end is None and open_key is not None else start)
            for start, end in conn.execute(
                "SELECT start_ms, end_ms FROM incident WHERE monitor_id = ? AND location_id = ?"
                " ORDER BY start_ms",
                (mid, cid),
            )
        ]
        deleted = 0
        for table in ("transition", "incident", "coverage", "monitor_state"):
            deleted += conn.execute(
                f"DELETE FROM {table} WHERE monitor_id = ? AND location_id = ?",  # noqa: S608
                (mid, cid),
            ).rowcount
        gate = multi.gate
        for name, place in multi.places.items():
            if place.last_ts is not None:
                gate.seen(name, place.last_ts)
        until = gate.watermark(now_ms)
        gate.drop_until(until)
        spec = multi.spec
        streams = {
            name: [
                (ts_ms, OUTCOMES_BY_CODE[code], error)
                for ts_ms, code, error in conn.execute(
                    "SELECT ts_ms, outcome, error FROM result WHERE monitor_id = ?"
                    " AND location_id = ? AND ts_ms <= ? ORDER BY ts_ms",
                    (mid, place.location_id, until),
                )
            ]
            for name, place in multi.places.items()
        }
        multi.quorum, verdicts = Quorum.rebuild(streams, spec.quorum, spec.cover_ms, until)
        multi.combined = _Track(spec.slug, mid, Tracker(spec.rule), spec.cover_ms, cid)
        multi.alias_ms, multi.regional, multi.known = None, None, known
        try:
            changes = self._verdicts(conn, multi, verdicts)
        finally:
            multi.known = None
        self._save_combined(conn, multi)
        if deleted > 1 or changes:  # more than the state: history was rewritten
            mark_rewritten(conn)
        return changes

    def _save_combined(self, conn: Connection, multi: _Multi) -> None:
        track, spec = multi.combined, multi.spec
        regional = multi.regional
        state = {
            "locations": list(spec.locations),
            "quorum": spec.quorum,
            "cover_ms": spec.cover_ms,
            "tracker": track.tracker.to_dict(),
            "verdicts": multi.quorum.to_dict(),
            "known": track.last_known,
            "alias_ms": multi.alias_ms,
            "regional": None
            if regional is None
            else {"locations": list(regional[0]), "since_ms": regional[1], "told": regional[2]},
        }
        conn.execute(
            "INSERT OR REPLACE INTO monitor_state (monitor_id, location_id, as_of_ms, state)"
            " VALUES (?, ?, ?, ?)",
            (
                track.monitor_id,
                track.location_id,
                -1 if track.last_ts is None else track.last_ts,
                json.dumps(state, separators=(",", ":")),
            ),
        )

    # -- rows ---------------------------------------------------------------------------

    def _cover(self, conn: Connection, track: _Track, ts_ms: int, known: bool) -> None:
        loc, mid = track.location_id, track.monitor_id
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

    def _record(self, conn: Connection, track: _Track, change: Change) -> None:
        mid, loc = track.monitor_id, track.location_id
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

    def _save_state(self, conn: Connection, track: _Track) -> None:
        if track.last_ts is None:
            return
        conn.execute(
            "INSERT OR REPLACE INTO monitor_state (monitor_id, location_id, as_of_ms, state)"
            " VALUES (?, ?, ?, ?)",
            (
                track.monitor_id,
                track.location_id,
                track.last_ts,
                json.dumps(track.tracker.to_dict(), separators=(",", ":")),
            ),
        )


def rebuild_combined(
    conn: Connection,
    spec: TrackSpec,
    monitor_id: int,
    location_ids: Mapping[str, int],
    now_ms: int,
) -> None:
    """Re-derive a monitor's combined verdict (it has several locations) from every stored
    result of its locations up to now, inside the caller's transaction, telling no one:
    what an import does after rebuilding each location it touched with `rebuild`."""
    ledger = Ledger(location_ids[spec.locations[0]], {spec.slug: monitor_id}, [spec], None,
                    location_ids)  # fmt: skip
    places = {}
    for name in spec.locations:
        place = _Track(spec.slug, monitor_id, Tracker(spec.rule), spec.cover_ms,
                       location_ids[name])  # fmt: skip
        (place.last_ts,) = conn.execute(
            "SELECT max(ts_ms) FROM result WHERE monitor_id = ? AND location_id = ?",
            (monitor_id, place.location_id),
        ).fetchone()
        places[name] = place
    combined = _Track(spec.slug, monitor_id, Tracker(spec.rule), spec.cover_ms,
                      location_ids[COMBINED])  # fmt: skip
    multi = _Multi(spec, places, combined)
    for name, place in places.items():
        if place.last_ts is not None:
            multi.gate.seen(name, place.last_ts)
    ledger._rebuild_combined(conn, multi, now_ms)


def rebuild(
    conn: Connection,
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
    track = _Track(spec.slug, monitor_id, tracker, spec.cover_ms, location_id)
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
