"""The Snapshot kept between refreshes: each refresh reads only what changed.

`build.build_snapshot` reads every public monitor's 90 days on every call. `Incremental`
gives the very same Snapshot (tests compare them with ==) from state it keeps:

- per monitor, its coverage, incidents and maintenance as a `Tally` (cumulative monitored,
  down and maintained ms at each edge), so any window's accounting is a few binary
  searches giving the integers `timeline.account` gives; its closed day bars; its last
  result, last transition and 24 hourly latency points; and its last MonitorView with the
  time until which that view stays exact if no data arrives (`until`). Until then only
  its uptime windows (whose monitored and down ms grow linearly between edges: `_windows`)
  and today's bar can move, and only they are redone (`_move`);
- what changed is read in one query: every monitor's results newer than the newest one it
  has seen (json_each of (monitor, last seen) joined to the result key). Only monitors with
  new results can have new transitions, incidents or coverage (the ledger writes them with
  their result); their newest coverage span, newest incident, open incidents and last
  transition say whether they did, and only then are coverage, incidents and transitions
  read again (closed day bars are redone only from the first edge that moved). The new
  results feed each monitor's newest raw latency hour (`_Acc`): no raw hour is read again.
- a refresh re-reads the whole database (a full build) when `meta.rewrites` moved (imports,
  prune, a replay at load that changed something: `prober.store.ledger.mark_rewritten`), a
  monitor was registered, or the config changed.

Assumes, as the scheduler guarantees, that one monitor's results arrive in time order
(one check at a time): a result older than one already seen is not read until the next
full build. Hours rolled up since the last refresh keep the points read from their raw
results (the same rows give the same rollup).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import itertools
import json
from array import array
from collections.abc import Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from prober import maintenance, timeline
from prober.causes import public_cause
from prober.config import Config
from prober.config.locations import COMBINED, latency_location, verdict_location
from prober.config.monitors import Monitor, ProbeMonitor
from prober.redact import visible_text
from prober.store import rollups, upkeep
from prober.store.engine import Connection
from prober.store.ledger import TrackSpec, rewrites
from prober.timeline import Spans
from statuspage.build import (
    DAY_MS,
    HOUR_MS,
    LAST_COLUMNS,
    PING_SQL,
    SINCE_FILTER,
    UPCOMING,
    WINDOWS,
    Verdict,
    _edges,
    _inside,
    _Last,
    _level,
    _maintenance,
    _outside,
    _quiet_day,
    _unknown_day,
    cert_expires,
    completed_maintenance,
    overall_of,
    public_state,
    push_view,
    read_verdicts,
    shown_latency_ms,
    since_monitoring,
    verdict_state,
)
from statuspage.snapshot import (
    DayLevel,
    DayView,
    Group,
    IncidentView,
    LatencyPoint,
    MaintenanceView,
    MonitorView,
    Snapshot,
    State,
)

FAR = 1 << 53  # "until further notice": the end of an open span or incident
MON, DOWN, MAINT = 1, 2, 4  # a Tally segment's rate: monitored, down (and monitored), maintained
MAINT_AHEAD_MS = 8 * DAY_MS  # maintenance spans are expanded this far past now
UPCOMING_MS = UPCOMING // dt.timedelta(milliseconds=1)


class Tally:
    """A monitor's time, cut at every edge of its known, incident and maintained spans:
    monitored / down / maintained ms before each edge, summed. `window()` is then
    `timeline.account` in three binary searches, in the same integers."""

    __slots__ = ("down", "edges", "maint", "mon", "rate")

    def __init__(self, known: Spans, incidents: Spans, maintained: Spans) -> None:
        kd, idd, md = _edges(known), _edges(incidents), _edges(maintained)
        points = sorted({*kd, *idd, *md})
        rate = bytearray(len(points))
        for i, at in enumerate(points):
            if bisect.bisect_right(md, at) % 2:
                rate[i] = MAINT
            elif bisect.bisect_right(kd, at) % 2:
                rate[i] = MON | (DOWN if bisect.bisect_right(idd, at) % 2 else 0)
        mon, down, maint = array("q", [0]), array("q", [0]), array("q", [0])
        for i in range(1, len(points)):
            width, r = points[i] - points[i - 1], rate[i - 1]
            mon.append(mon[-1] + (width if r & MON else 0))
            down.append(down[-1] + (width if r & DOWN else 0))
            maint.append(maint[-1] + (width if r & MAINT else 0))
        self.edges = array("q", points)
        self.rate = bytes(rate)
        self.mon, self.down, self.maint = mon, down, maint

    def sums(self, t: int, reach: int) -> tuple[int, int, int]:
        """(monitored, down, maintained) ms before t, nothing known from `reach` on: one
        binary search for the monitored and down sums (cut at reach), one for maintained."""
        edges, rate = self.edges, self.rate
        cut = min(t, reach)
        i = bisect.bisect_right(edges, cut) - 1
        if i < 0:
            mon = down = 0
        else:
            r, width = rate[i], cut - edges[i]
            mon = self.mon[i] + (width if r & MON else 0)
            down = self.down[i] + (width if r & DOWN else 0)
        if cut != t:
            i = bisect.bisect_right(edges, t) - 1
        if i < 0:
            return mon, down, 0
        return mon, down, self.maint[i] + (t - edges[i] if rate[i] & MAINT else 0)

    def window(self, lo: int, hi: int, reach: int) -> tuple[int, int, int]:
        """(monitored, down, maintained) ms in [lo, hi); nothing is known from `reach` on
        (the open coverage span's end)."""
        m0, d0, t0 = self.sums(lo, reach)
        m1, d1, t1 = self.sums(hi, reach)
        return max(0, m1 - m0), max(0, d1 - d0), t1 - t0

    def rate_at(self, t: int, reach: int) -> int:
        i = bisect.bisect_right(self.edges, t) - 1
        r = self.rate[i] if i >= 0 else 0
        return r & MAINT if t >= reach else r

    def next_change(self, t: int, reach: int) -> int:
        """The first time after t where rate_at may differ."""
        i = bisect.bisect_right(self.edges, t)
        found = self.edges[i] if i < len(self.edges) else FAR
        return min(found, reach) if t < reach else found


class _Kept:
    """One public monitor's kept state."""

    __slots__ = (
        "acc",
        "began",
        "closed",
        "closed_basis",
        "closed_key",
        "combined",
        "cover_ms",
        "inc_made",
        "inc_views",
        "incidents",
        "kedges",
        "known",
        "last",
        "latency",
        "lloc",
        "maint_edges",
        "maint_key",
        "mark",
        "mid",
        "monitor",
        "moving",
        "newest",
        "oedges",
        "open_start",
        "ping",
        "seen",
        "since_ms",
        "stamp",
        "tally",
        "target",
        "today_until",
        "until",
        "uptime_until",
        "verdict",
        "view",
        "vloc",
        "windows",
        "windows_at",
    )

    def __init__(
        self,
        monitor: Monitor,
        mid: int | None,
        target: float,
        key: tuple[int, ...],
        locations: tuple[int | None, int | None, bool],
    ):
        self.monitor = monitor
        self.mid = mid
        # where its verdict is kept, where its latency is measured (location ids, None:
        # nothing stored there yet), and whether the verdict is the combined one (`*`)
        self.vloc, self.lloc, self.combined = locations
        self.newest: int | None = None  # combined: the newest result at any location
        self.verdict: Verdict | None = None  # combined: its saved state's status, regional
        self.cover_ms = TrackSpec.of(monitor).cover_ms
        self.target = target
        self.maint_key = key
        self.last: _Last | None = None
        self.seen = -1  # the newest result's ts_ms read so far
        self.mark: tuple[object, ...] | None = None  # see Incremental._read_derived
        self.since_ms: int | None = None
        self.began: int | None = None  # its first result: maintenance counts from there
        self.maint_edges: list[int] = []  # its maintenance, from before it began too (state)
        self.ping: tuple[int, int | None] | None = None  # push: the newest ping (PING_SQL)
        self.known = Spans.empty()  # the open span reaches FAR here; see reach()
        self.open_start: int | None = None
        self.incidents: list[tuple[int, int | None]] = []
        self.inc_views: list[tuple[int, int | None, IncidentView]] = []  # newest first
        self.inc_made: dict[tuple[int, int | None, str], IncidentView] = {}  # by row, oldest first
        self.tally = Tally(Spans.empty(), Spans.empty(), Spans.empty())
        self.kedges: list[int] = []
        self.oedges: list[int] = []
        self.stamp = 0  # bumps with every new tally
        self.closed: tuple[DayView, ...] = ()
        self.closed_key: tuple[object, ...] | None = None
        # the edges and incidents the closed bars were computed from
        self.closed_basis: tuple[Sequence[int], Sequence[int], Sequence[tuple[int, int | None]]]
        self.closed_basis = ((), (), ())
        self.latency: dict[int, LatencyPoint] = {}
        self.acc = _Acc(-1)
        self.view: MonitorView | None = None
        self.until = 0  # the view is exact before this time unless data arrives
        # per uptime window: (monitored ms, down ms, their rates of change, valid until) at
        # windows_at; the view's uptime is exact from them before uptime_until
        self.windows = array("q")  # _Window after _Window, packed
        self.windows_at = 0
        self.uptime_until = 0
        self.today_until = 0  # today's bar stays exact before this time
        self.moving = False  # some window's sums grow: its uptime may move at every refresh

    def reach(self) -> int:
        """Where the open coverage span ends (FAR: no open span), as Reader.stored says."""
        if self.open_start is None:
            return FAR
        if self.combined:  # the newest result of any of its locations (Reader._newest)
            base = self.newest or self.open_start
        else:
            base = self.last.ts_ms if self.last is not None and self.last.ts_ms else self.open_start
        return base + self.cover_ms

    def set_windows(self, now: int, reach: int, lead: int, lead_next: int) -> None:
        self.windows = _windows(self.tally, now, reach, lead, lead_next)
        self.windows_at = now
        self.uptime_until = min(self.windows[4::5])
        self.moving = any(self.windows[2::5]) or any(self.windows[3::5])


@dataclasses.dataclass(frozen=True, slots=True)
class _Now:
    """What every monitor's view shares at one refresh."""

    ms: int
    tz: ZoneInfo
    days: list[tuple[dt.date, int, int]]  # (day, start_ms, end_ms), today ending now
    today_end: int  # the next local midnight
    hours: list[int]  # the 24 latency hours, oldest first
    points: dict[int, LatencyPoint]  # an empty point per hour
    until: int  # next hour or local midnight, whichever first
    ends: list[int]  # each day's end_ms


class Incremental:
    """Keeps the status page's Snapshot; `refresh` reads what changed since the last call."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._kept: list[_Kept] = []
        self._rewrites = -1
        self._max_ids: tuple[int | None, int | None] = (None, None)  # monitor, location
        self._combined: list[int] = []  # kept indices of monitors with a combined verdict
        self._rolled = 0
        self._maint: dict[tuple[int, ...], tuple[Spans, int]] = {}
        self._incidents: tuple[IncidentView, ...] = ()
        self._incident_lists: list[tuple[IncidentView, ...]] = []
        self.full = False  # whether the last refresh read everything
        self.full_builds = 0
        # the completed maintenance windows, for as long as none ends: the key they were
        # listed for (first day shown, each monitor's first result) and until when
        self._completed: tuple[MaintenanceView, ...] = ()
        self._completed_key: tuple[object, ...] | None = None
        self._completed_at = self._completed_until = 0

    def refresh(self, conn: Connection, config: Config, now: dt.datetime) -> Snapshot:
        """The Snapshot `build_snapshot(conn, config, now)` gives, in one read transaction."""
        conn.execute("BEGIN")
        try:
            return self._refresh(conn, config, now)
        finally:
            conn.execute("ROLLBACK")

    # -- what changed ---------------------------------------------------------------------

    def _refresh(self, conn: Connection, config: Config, now: dt.datetime) -> Snapshot:
        tz = ZoneInfo(config.settings.timezone)
        at = self._now(config, now, tz)
        counter = rewrites(conn)
        max_ids = conn.execute(
            "SELECT (SELECT max(id) FROM monitor), (SELECT max(id) FROM location)"
        ).fetchone()
        self.full = (
            config is not self._config or counter != self._rewrites or max_ids != self._max_ids
        )
        if self.full:
            self._start_over(conn, config, tz)
            self._rewrites, self._max_ids = counter, max_ids
            self.full_builds += 1
        horizon = min(at.days[0][1], at.ms - WINDOWS["90d"])
        self._expand_maintenance(config, tz, horizon, at.ms)
        rolled = upkeep.rolled_until(conn)
        changed = self._read_results(conn, at.ms)  # kept index -> its new results
        # a combined verdict moves with any of its locations' results, not only the ones
        # read above: those monitors' derived data is looked at on every refresh
        self._read_newest(conn)
        self._read_derived(conn, [*changed, *self._combined], horizon, tz)
        self._read_latency(conn, changed, at, rolled)
        self._rolled = rolled
        return self._snapshot(config, now, at, tz)

    def _now(self, config: Config, now: dt.datetime, tz: ZoneInfo) -> _Now:
        now_ms = timeline.to_ms(now)
        today = timeline.from_ms(now_ms, tz).date()
        first = today - dt.timedelta(days=config.settings.history_days - 1)
        days = []
        for day in timeline.days_between(first, today + dt.timedelta(days=1)):
            lo, hi = (timeline.to_ms(t) for t in timeline.day_bounds(day, tz))
            days.append((day, lo, min(hi, now_ms)))
        today_end = timeline.to_ms(timeline.day_bounds(today, tz)[1])
        end = now_ms // HOUR_MS * HOUR_MS + HOUR_MS
        hours = list(range(end - 24 * HOUR_MS, end, HOUR_MS))
        points = {
            h: LatencyPoint(hour=timeline.from_ms(h, tz), p50_ms=None, p95_ms=None, avg_ms=None)
            for h in hours
        }
        ends = [hi for _, _, hi in days]
        return _Now(now_ms, tz, days, today_end, hours, points, min(end, today_end), ends)

    def _start_over(self, conn: Connection, config: Config, tz: ZoneInfo) -> None:
        self._config = config
        hub = config.settings.location
        places = {name: lid for lid, name in conn.execute("SELECT id, name FROM location")}
        ids = {slug: mid for mid, slug in conn.execute("SELECT id, slug FROM monitor")}
        self._maint = {}
        self._kept = []
        for m in config.monitors:
            if not m.public:
                continue
            key = tuple(
                i for i, item in enumerate(config.maintenance) if maintenance.applies(item, m.id)
            )
            target = m.sla_target or config.settings.sla_target
            verdict = verdict_location(m, hub)
            where = (places.get(verdict), places.get(latency_location(m, hub)), verdict == COMBINED)
            self._kept.append(_Kept(m, ids.get(m.id), target, key, where))
        self._combined = [i for i, k in enumerate(self._kept) if k.combined and k.mid is not None]
        self._incident_lists = [() for _ in self._kept]
        self._incidents = ()
        self._rolled = 0
        self._completed_key = None

    def _expand_maintenance(self, config: Config, tz: ZoneInfo, horizon: int, now_ms: int) -> None:
        """Maintenance spans per set of items, from horizon to MAINT_AHEAD_MS past now;
        expanded again (and those monitors' tallies redone) a day before they run out."""
        stale = set()
        for k in self._kept:
            if not k.maint_key:
                continue
            found = self._maint.get(k.maint_key)
            if found is None or found[1] - DAY_MS <= now_ms:
                items = [config.maintenance[i] for i in k.maint_key]
                end = now_ms + MAINT_AHEAD_MS
                self._maint[k.maint_key] = (
                    maintenance.spans(items, None, horizon, end, tz),
                    end,
                )
                stale.add(k.maint_key)
        if stale:
            for k in self._kept:
                if k.maint_key in stale:
                    self._retally(k)

    def _maintained(self, k: _Kept) -> Spans:
        return self._maint[k.maint_key][0] if k.maint_key else Spans.empty()

    def _read_results(self, conn: Connection, now_ms: int) -> dict[int, list[_Row]]:
        """Every monitor's results newer than the newest seen, (ts_ms, outcome, latency_us)
        by kept index, in time order; the last one kept. After a start over, every monitor
        with a result, with no rows (all its hours are read). A monitor's results are those
        at its latency location: one query per location (one with no agents)."""
        changed: dict[int, list[_Row]] = {}
        if self.full:  # only the last result of each: the rest is read as rollups
            for i, k in enumerate(self._kept):
                if k.mid is None or k.lloc is None:
                    continue
                row = conn.execute(
                    f"SELECT {LAST_COLUMNS} FROM result AS r"  # noqa: S608  (constants)
                    " WHERE r.monitor_id = ? AND r.location_id = ? ORDER BY r.ts_ms DESC LIMIT 1",
                    (k.mid, k.lloc),
                ).fetchone()
                k.last = None if row is None else _Last(*row)
                k.seen = -1 if row is None else row[0]
                changed[i] = []  # every hour of its latency is read
            self._read_pings(conn, changed)
            return changed
        for loc, members in self._grouped(range(len(self._kept)), lambda k: k.lloc).items():
            by_mid = {self._kept[i].mid: i for i in members}
            seen = json.dumps([[self._kept[i].mid, self._kept[i].seen] for i in members])
            rows = conn.execute(
                f"SELECT r.monitor_id, {LAST_COLUMNS} FROM json_each(?) AS j JOIN result AS r"  # noqa: S608  (constants)
                " ON r.monitor_id = j.value ->> 0 AND r.ts_ms > j.value ->> 1"
                " WHERE r.location_id = ? ORDER BY r.monitor_id, r.ts_ms",
                (seen, loc),
            ).fetchall()
            for mid, group in itertools.groupby(rows, lambda r: r[0]):
                found = list(group)
                i = by_mid[mid]
                k = self._kept[i]
                changed[i] = [(r[1], r[2], r[3]) for r in found]
                k.last = _Last(*found[-1][1:])
                k.seen = found[-1][1]
                k.view = None
        self._read_pings(conn, changed)
        return changed

    def _read_pings(self, conn: Connection, changed: Iterable[int]) -> None:
        """The newest ping of each push monitor with new results."""
        for i in changed:
            k = self._kept[i]
            if k.monitor.type == "push":
                k.ping = conn.execute(PING_SQL, (k.mid, k.lloc)).fetchone()

    def _grouped(
        self, indices: Iterable[int], where: Callable[[_Kept], int | None]
    ) -> dict[int, list[int]]:
        """Kept indices (of monitors with an id) by a location id, in their order."""
        groups: dict[int, list[int]] = {}
        for i in indices:
            k = self._kept[i]
            loc = where(k)
            if k.mid is not None and loc is not None:
                groups.setdefault(loc, []).append(i)
        return groups

    def _read_newest(self, conn: Connection) -> None:
        """Each combined verdict's newest result at any location: where its open coverage
        span reaches (`_Kept.reach`)."""
        if not self._combined:
            return
        mids = json.dumps([self._kept[i].mid for i in self._combined])
        newest = dict(
            conn.execute(
                "SELECT j.value, (SELECT max(ts_ms) FROM result WHERE monitor_id = j.value)"
                " FROM json_each(?) AS j",
                (mids,),
            ).fetchall()
        )
        verdicts: dict[int, Verdict] = {}
        for loc, members in self._grouped(self._combined, lambda k: k.vloc).items():
            mids_at = [m for i in members if (m := self._kept[i].mid) is not None]
            verdicts.update(read_verdicts(conn, loc, mids_at))
        for i in self._combined:
            k = self._kept[i]
            ts = newest.get(k.mid)
            verdict = None if k.mid is None else verdicts.get(k.mid)
            if ts != k.newest or verdict != k.verdict:
                k.newest = ts
                k.verdict = verdict
                k.view = None

    def _read_derived(
        self, conn: Connection, indices: Sequence[int], horizon: int, tz: ZoneInfo
    ) -> None:
        """Coverage, incidents and the last transition of the monitors (kept indices) whose
        saved tracker state or newest coverage span moved (all of them after a start over),
        where each keeps its verdict: one set of queries per location (one with no agents)."""
        groups = self._grouped(dict.fromkeys(indices), lambda k: k.vloc)
        for loc, members in groups.items():
            self._read_derived_at(conn, loc, members, horizon, tz)

    def _read_derived_at(
        self, conn: Connection, loc: int, changed: list[int], horizon: int, tz: ZoneInfo
    ) -> None:
        mids = json.dumps([self._kept[i].mid for i in changed])
        # what moves with derived data, not with every result: the newest coverage span,
        # the newest incident and its end, the open incidents, the last transition
        marks = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT j.value, c.start_ms, c.end_ms,"
                " (SELECT max(ts_ms) FROM transition WHERE monitor_id = j.value"
                " AND location_id = ?1),"
                " (SELECT start_ms || ':' || ifnull(end_ms, '') FROM incident"
                " WHERE monitor_id = j.value AND location_id = ?1"
                " ORDER BY start_ms DESC LIMIT 1),"
                " (SELECT count(*) FROM incident WHERE monitor_id = j.value"
                " AND location_id = ?1 AND end_ms IS NULL)"
                " FROM json_each(?2) AS j"
                " LEFT JOIN coverage AS c ON c.monitor_id = j.value AND c.location_id = ?1"
                " AND c.start_ms = (SELECT max(start_ms) FROM coverage WHERE monitor_id ="
                " j.value AND location_id = ?1)",
                (loc, mids),
            )
        }
        moved = []
        for i in changed:
            k = self._kept[i]
            mark = marks.get(k.mid)
            if self.full or mark != k.mark:
                k.mark = mark
                moved.append(k)
        if not moved:
            return
        by_mid = {k.mid: k for k in moved if k.mid is not None}
        for k in moved:
            k.known, k.open_start, k.incidents, k.since_ms = Spans.empty(), None, [], None
        mids = json.dumps(list(by_mid))
        spans: dict[int, list[tuple[int, int]]] = {}
        for mid, start, end in conn.execute(
            "SELECT c.monitor_id, c.start_ms, c.end_ms FROM json_each(?) AS j"
            " JOIN coverage AS c ON c.monitor_id = j.value AND c.location_id = ?"
            " WHERE c.end_ms IS NULL OR c.end_ms > ?",
            (mids, loc, horizon),
        ):
            if end is None:
                by_mid[mid].open_start = start
            spans.setdefault(mid, []).append((start, FAR if end is None else end))
        causes: dict[int, list[str]] = {}
        for mid, start, end, cause in conn.execute(
            "SELECT i.monitor_id, i.start_ms, i.end_ms, i.cause FROM json_each(?) AS j"
            " JOIN incident AS i ON i.monitor_id = j.value AND i.location_id = ?"
            " WHERE i.end_ms IS NULL OR i.end_ms > ? ORDER BY i.monitor_id, i.start_ms",
            (mids, loc, horizon),
        ):
            by_mid[mid].incidents.append((start, end))
            causes.setdefault(mid, []).append(cause)
        for mid, ts, first in conn.execute(
            f"SELECT j.value, (SELECT ts_ms FROM transition WHERE {SINCE_FILTER}"  # noqa: S608  (constants)
            " AND monitor_id = j.value AND location_id = ?1 ORDER BY ts_ms DESC LIMIT 1),"
            " (SELECT min(ts_ms) FROM transition WHERE monitor_id = j.value AND location_id = ?1)"
            " FROM json_each(?2) AS j",
            (loc, mids),
        ):
            by_mid[mid].since_ms = ts
            by_mid[mid].began = first
        for mid, k in by_mid.items():
            k.known = Spans.of(spans.get(mid, []))
            why = causes.get(mid, [])
            m = k.monitor
            made = k.inc_made
            k.inc_made = {}
            for (start, end), cause in zip(k.incidents, why, strict=True):
                view = made.get((start, end, cause))
                if view is None:
                    view = IncidentView(
                        id=f"{m.id}-{start}",
                        monitor_id=m.id,
                        monitor_name=visible_text(m.display_name),
                        start=timeline.from_ms(start, tz),
                        end=None if end is None else timeline.from_ms(end, tz),
                        duration_seconds=None if end is None else (end - start) / 1000,
                        cause=public_cause(cause, m),
                    )
                k.inc_made[start, end, cause] = view
            k.inc_views = [(s, e, v) for (s, e, _), v in reversed(k.inc_made.items())]
            self._retally(k)

    def _retally(self, k: _Kept) -> None:
        incidents = Spans.of((s, FAR if e is None else e) for s, e in k.incidents)
        everything = self._maintained(k)
        k.maint_edges = _edges(everything)
        maintained = since_monitoring(everything, k.began)
        k.tally = Tally(k.known, incidents, maintained)
        k.kedges = _edges(k.known)
        k.oedges = _edges(incidents | maintained)
        k.stamp += 1
        k.view = None

    def _read_latency(
        self, conn: Connection, changed: dict[int, list[_Row]], at: _Now, rolled: int
    ) -> None:
        """The latency hours of monitors with new results (as build._latency): rollups for
        hours rolled up, raw results after. After a start over every hour is read; then
        the new results feed each monitor's newest raw hour (`_Kept.acc`), and only a
        result in an hour rolled up already has its hours read again, from rollups. Read
        where each monitor's latency is measured: one set of queries per location."""
        for loc, members in self._grouped(changed, lambda k: k.lloc).items():
            self._read_latency_at(conn, loc, {i: changed[i] for i in members}, at, rolled)

    def _read_latency_at(
        self,
        conn: Connection,
        loc: int,
        changed: dict[int, list[_Row]],
        at: _Now,
        rolled: int,
    ) -> None:
        start, end = at.hours[0], at.hours[-1] + HOUR_MS
        split = max(start, min(end, rolled))
        rolled_mids: dict[int, int] = {}
        raw: dict[int, int] = {}
        by_mid: dict[int, _Kept] = {}
        for i, rows in changed.items():
            k = self._kept[i]
            assert k.mid is not None
            by_mid[k.mid] = k
            first = rows[0][0] if rows else -FAR
            begin = max(start, first - first % HOUR_MS)
            for h in [h for h in k.latency if h < start]:
                del k.latency[h]
            if not rows:
                k.latency.clear()
                raw[k.mid] = split
            if begin < split:
                rolled_mids[k.mid] = begin
            for ts, outcome, latency_us in rows:
                hour = ts - ts % HOUR_MS
                if hour != k.acc.hour:
                    if start <= k.acc.hour and k.acc.hour >= split:  # rows past its end
                        k.latency[k.acc.hour] = k.acc.point(at)
                    k.acc = _Acc(hour)
                if outcome in _TIMED and latency_us is not None:
                    k.acc.add(latency_us)
            if rows and k.acc.hour >= split:
                k.latency[k.acc.hour] = k.acc.point(at)
        if rolled_mids:
            lo = min(rolled_mids.values())
            for r in rollups.read_hours(conn, list(rolled_mids), lo, split):
                if r.location_id == loc and r.hour_ms >= rolled_mids[r.monitor_id]:
                    by_mid[r.monitor_id].latency[r.hour_ms] = _point(r, at.points[r.hour_ms])
        # every hour from split on, with no end: a result already seen past `end` counts
        for mid, hours in rollups.from_raw_hours(conn, raw, loc, FAR).items():
            kept = by_mid[mid]
            for hour_ms, raw_hour in hours.items():
                if hour_ms < end:
                    kept.latency[hour_ms] = _point(raw_hour, at.points[hour_ms])
            newest = max(hours)
            kept.acc = _Acc.of(newest, hours[newest])
            if newest >= end:
                kept.latency[newest] = kept.acc.point(at)

    # -- the snapshot ---------------------------------------------------------------------

    def _snapshot(self, config: Config, now: dt.datetime, at: _Now, tz: ZoneInfo) -> Snapshot:
        settings = config.settings
        groups: dict[str, list[MonitorView]] = {}
        states = []
        newest = None
        incidents_moved = False
        for i, k in enumerate(self._kept):
            if k.view is None or at.ms >= k.until or k.view.days[-1].date != at.days[-1][0]:
                k.view, k.until = self._view(k, at)
                if k.view.incidents is not self._incident_lists[i]:
                    incidents_moved = incidents_moved or (
                        k.view.incidents != self._incident_lists[i]
                    )
                    self._incident_lists[i] = k.view.incidents
            else:
                self._move(k, at)
            view = k.view
            groups.setdefault(view.group, []).append(view)
            states.append(view.state)
            if k.last is not None and (newest is None or k.last.ts_ms > newest):
                newest = k.last.ts_ms
        if incidents_moved or self.full:
            # as build.py: newest first, ties in config order (a stable sort)
            starts = [(-s, v) for k in self._kept for s, _, v in k.inc_views]
            shown = {id(v) for lst in self._incident_lists for v in lst}
            starts = [p for p in starts if id(p[1]) in shown]
            starts.sort(key=lambda p: p[0])
            self._incidents = tuple(v for _, v in starts)
        public = [k.monitor for k in self._kept]
        freshest = min((k.cover_ms for k in self._kept), default=0)
        stale = bool(public) and (newest is None or at.ms - newest > freshest)
        names = {m.id: visible_text(m.display_name) for m in public}
        active = _maintenance(config, names, now, now, tz, running=True)
        upcoming = _maintenance(config, names, now, now + UPCOMING, tz, running=False)
        return Snapshot(
            title=visible_text(settings.title),
            public_url=settings.public_url,
            language=settings.language,
            timezone=settings.timezone,
            generated_at=now.astimezone(tz),
            last_result_at=None if newest is None else timeline.from_ms(newest, tz),
            stale=stale,
            overall=overall_of(states),
            groups=tuple(Group(name, tuple(members)) for name, members in groups.items()),
            incidents=self._incidents,
            maintenance_active=active,
            maintenance_upcoming=upcoming,
            history_days=settings.history_days,
            maintenance_completed=self._completed_windows(
                config, names, now, at, active + upcoming
            ),
        )

    def _completed_windows(
        self,
        config: Config,
        names: dict[str, str],
        now: dt.datetime,
        at: _Now,
        coming: tuple[MaintenanceView, ...],
    ) -> tuple[MaintenanceView, ...]:
        """build.completed_maintenance, listed again only when a window may have ended
        (the earliest end of those running or starting within UPCOMING), a day began, or a
        monitor got its first result."""
        key = (at.days[0][1], *(k.began for k in self._kept))
        valid = self._completed_at <= at.ms < self._completed_until
        if key != self._completed_key or not valid:
            began = {k.monitor.id: k.began for k in self._kept}
            first = at.days[0][1]
            self._completed = completed_maintenance(config, names, began, first, now, at.tz)
            self._completed_key = key
            self._completed_at = at.ms
            ends = [timeline.to_ms(w.end) for w in coming]
            self._completed_until = min(ends, default=at.ms + UPCOMING_MS)
        return self._completed

    def _move(self, k: _Kept, at: _Now) -> None:
        """The kept view with only its uptime windows and today's bar moved on: the rest
        stands until k.until."""
        view = k.view
        assert view is not None
        now = at.ms
        uptime, days = view.uptime, view.days
        if now >= k.uptime_until or (now > k.windows_at and k.moving):
            if now >= k.uptime_until:
                reach = k.reach()
                lead = k.tally.rate_at(now, reach)
                k.set_windows(now, reach, lead, k.tally.next_change(now, reach))
            uptime = _uptime(k.windows, now - k.windows_at)
            if uptime == view.uptime:
                uptime = view.uptime
        if now >= k.today_until:
            reach = k.reach()
            kedges = k.kedges if reach >= FAR else [*k.kedges[:-1], reach]
            today = self._today(k, at, reach, kedges, k.tally.next_change(now, reach))
            if today != days[-1]:
                days = (*days[:-1], today)
        if uptime is not view.uptime or days is not view.days:
            k.view = _moved(view, uptime, days)

    def _view(self, k: _Kept, at: _Now) -> tuple[MonitorView, int]:
        """The monitor's view at `at`, and the time before which it stays exact."""
        now = at.ms
        until = at.until
        reach = k.reach()
        tally = k.tally
        lead = tally.rate_at(now, reach)
        lead_next = tally.next_change(now, reach)
        k.set_windows(now, reach, lead, lead_next)
        uptime = _uptime(k.windows, 0)
        kedges = k.kedges
        if reach < FAR:  # the open span ends at reach, not at FAR
            kedges = [*kedges[:-1], reach]
        days = self._closed(k, at, reach, kedges)
        today = self._today(k, at, reach, kedges, lead_next)
        until = min(until, lead_next)
        last = k.last
        stale = last is not None and now - last.ts_ms > k.cover_ms
        if last is not None and not stale:
            until = min(until, last.ts_ms + k.cover_ms + 1)
        if k.combined:  # fresh while any of its locations reports
            stale = k.newest is not None and now - k.newest > k.cover_ms
            if k.newest is not None and not stale:
                until = min(until, k.newest + k.cover_ms + 1)
        for start, _ in k.incidents:
            if start >= now:
                until = min(until, start + 1)
        first_ms = at.days[0][1]
        open_start = next((s for s, e in k.incidents if e is None and s < now), None)
        # maintenance as the state reads it: from before the monitor's first result too
        i = bisect.bisect_right(k.maint_edges, now)
        maintained = i % 2 == 1
        if i < len(k.maint_edges):
            until = min(until, k.maint_edges[i])
        m = k.monitor
        if maintained:
            state = State.MAINTENANCE
        elif (last is None and k.verdict is None) or stale:
            state = State.UNKNOWN
        elif open_start is not None:
            state = State.DOWN
        elif k.combined:
            state = verdict_state(k.verdict, last)
        else:
            assert last is not None
            state = public_state(last)
        tz = at.tz
        since = k.since_ms
        if state is State.DOWN and open_start is not None:
            since = open_start
        view = MonitorView(
            id=m.id,
            name=visible_text(m.display_name),
            group=visible_text(m.group),
            description=visible_text(m.description),
            type=str(getattr(m, "type", "")),
            state=state,
            since=None if since is None else timeline.from_ms(since, tz),
            checked_at=None if last is None else timeline.from_ms(last.ts_ms, tz),
            stale=stale,
            interval_seconds=m.interval if isinstance(m, ProbeMonitor) else k.cover_ms / 1000,
            latency_ms=shown_latency_ms(last),
            status_code=None if last is None else last.status_code,
            cert_expires=cert_expires(last, tz),
            uptime=uptime,
            days=(*days, today),
            latency=()
            if k.mid is None or k.lloc is None
            else tuple(k.latency.get(h) or at.points[h] for h in at.hours),
            incidents=tuple(
                v for s, e, v in k.inc_views if s < now and (e is None or e > first_ms)
            ),
            regional=() if k.verdict is None or maintained else k.verdict.regional,
            push=push_view(m, k.ping, tz),
        )
        return view, max(until, now + 1)

    def _today(self, k: _Kept, at: _Now, reach: int, kedges: list[int], lead_next: int) -> DayView:
        """Today's bar, and (in k.today_until) the time before which it stays exact: a quiet
        day stays quiet until the rate at now changes; any other moves with now."""
        now = at.ms
        day, lo, hi = at.days[-1]
        if hi <= lo:  # now is local midnight: the edges as the full build clips them, at now
            k.today_until = now + 1
            return _bar(k, day, lo, hi, reach, _clip(kedges, now), _clip(k.oedges, now))
        today = _bar(k, day, lo, hi, reach, kedges, k.oedges)
        if today is _quiet_day(day):
            k.today_until = lead_next
        elif (
            today.downtime_seconds == 0
            and today.uptime_percent is not None
            and k.tally.rate_at(now, reach) == MON
        ):
            # monitored and up now, no downtime today: as now moves on, the monitored ms
            # grow as the day does; uptime stays 100, the unknown and maintained stay
            k.today_until = lead_next
        else:
            k.today_until = now + 1
        return today

    def _closed(self, k: _Kept, at: _Now, reach: int, kedges: list[int]) -> tuple[DayView, ...]:
        """Every day bar but today's: kept while the tally stays, shifted at midnight."""
        days = at.days[:-1]
        if not days:
            return ()
        today_lo = at.days[-1][1]
        key = (k.stamp, reach if reach < today_lo else None)
        prev = k.closed_key
        if prev is not None and prev[1:] == key and prev[0] == days[0][0]:
            return k.closed
        basis = (kedges, k.oedges, k.incidents)
        kept: tuple[DayView, ...] = ()
        if prev is not None and prev[0] == days[0][0]:
            kept = k.closed
        elif prev is not None and prev[0] == days[0][0] - dt.timedelta(days=1):
            kept = k.closed[1:]  # shifted at midnight
        if kept:
            # a bar depends on the tally's edges inside its day only: the days ending before
            # the first edge (or incident) that moved keep their bars
            old = k.closed_basis
            since = min(
                _first_change(old[0], kedges),
                _first_change(old[1], k.oedges),
                _first_incident_change(old[2], k.incidents),
            )
            n = min(len(kept), bisect.bisect_right(at.ends, since))
            kept = kept[:n]
        k.closed = kept + tuple(
            _bar(k, day, lo, hi, reach, kedges, k.oedges) for day, lo, hi in days[len(kept) :]
        )
        k.closed_key = (days[0][0], *key)
        k.closed_basis = basis
        return k.closed


def _moved(
    v: MonitorView, uptime: dict[str, float | None], days: tuple[DayView, ...]
) -> MonitorView:
    """dataclasses.replace(v, uptime=uptime, days=days), in a third of its time."""
    return MonitorView(
        v.id,
        v.name,
        v.group,
        v.description,
        v.type,
        v.state,
        v.since,
        v.checked_at,
        v.stale,
        v.interval_seconds,
        v.latency_ms,
        v.status_code,
        v.cert_expires,
        uptime,
        days,
        v.latency,
        v.incidents,
        v.regional,
        v.push,
    )


def _first_change(old: Sequence[int], new: Sequence[int]) -> int:
    """The first time where two lists of edges differ (FAR: nowhere)."""
    for a, b in zip(old, new, strict=False):
        if a != b:
            return min(a, b)
    if len(old) != len(new):
        return old[len(new)] if len(old) > len(new) else new[len(old)]
    return FAR


def _first_incident_change(
    old: Sequence[tuple[int, int | None]], new: Sequence[tuple[int, int | None]]
) -> int:
    """The earliest start of an incident found in one list and not the other."""
    return min((start for start, _ in set(old) ^ set(new)), default=FAR)


_Window = tuple[int, int, int, int, int]


def _windows(tally: Tally, now: int, reach: int, lead: int, lead_next: int) -> array[int]:
    """Each uptime window's monitored and down ms at now, how much each grows per ms (the
    rate at now less the rate at the window's start) and until when that holds."""
    found = []
    m1, d1, _ = tally.sums(now, reach)
    now_mon, now_down = 1 if lead & MON else 0, 1 if lead & DOWN else 0
    for length in WINDOWS.values():
        lo = now - length
        m0, d0, _ = tally.sums(lo, reach)
        r = tally.rate_at(lo, reach)
        found.append(
            (
                max(0, m1 - m0),
                max(0, d1 - d0),
                now_mon - (1 if r & MON else 0),
                now_down - (1 if r & DOWN else 0),
                min(lead_next, tally.next_change(lo, reach) + length),
            )
        )
    return array("q", itertools.chain.from_iterable(found))


def _uptime(windows: array[int], later: int) -> dict[str, float | None]:
    """The uptime percent of each window `later` ms after they were taken (before their
    valid until): the sums grow linearly meanwhile."""
    uptime: dict[str, float | None] = {}
    for i, name in enumerate(WINDOWS):
        mon, down, dm, dd = windows[5 * i : 5 * i + 4]
        mon += dm * later
        down += dd * later
        uptime[name] = 100 * (mon - down) / mon if mon else None
    return uptime


_Row = tuple[int, int, int | None]  # a new result: ts_ms, outcome, latency_us
_TIMED = frozenset(rollups.TIMED_CODES)


class _Acc:
    """A monitor's newest raw hour, as its rollup will be (latency count, sum, min, max and
    histogram, bucketed as BUCKET_SQL does), fed by the results read."""

    __slots__ = ("hist", "hour", "max_us", "min_us", "sum_us")

    def __init__(self, hour: int) -> None:
        self.hour = hour
        self.sum_us = 0
        self.min_us: int | None = None
        self.max_us: int | None = None
        self.hist = rollups.Histogram()

    @classmethod
    def of(cls, hour: int, r: rollups.Rollup) -> _Acc:
        acc = cls(hour)
        acc.sum_us, acc.min_us, acc.max_us = r.lat_sum_us, r.lat_min_us, r.lat_max_us
        acc.hist.merge(r.hist)
        return acc

    def add(self, latency_us: int) -> None:
        self.sum_us += latency_us
        self.min_us = latency_us if self.min_us is None else min(self.min_us, latency_us)
        self.max_us = latency_us if self.max_us is None else max(self.max_us, latency_us)
        self.hist.add(rollups.bucket(latency_us))

    def point(self, at: _Now) -> LatencyPoint:
        """_point of the hour's rollup."""
        empty = at.points.get(self.hour)
        if empty is None:
            hour = timeline.from_ms(self.hour, at.tz)
            empty = LatencyPoint(hour=hour, p50_ms=None, p95_ms=None, avg_ms=None)
        n = self.hist.total
        if not n:
            return empty
        r = rollups.Rollup(
            lat_count=n,
            lat_sum_us=self.sum_us,
            lat_min_us=self.min_us,
            lat_max_us=self.max_us,
            hist=self.hist,
        )
        return _point(r, empty)


def _point(r: rollups.Rollup, empty: LatencyPoint) -> LatencyPoint:
    if r.lat_count:
        p50, p95 = r.percentiles(50, 95)
    else:
        p50 = p95 = None
    avg = r.mean_latency_ms
    if p50 is None and p95 is None and avg is None:
        return empty
    return LatencyPoint(hour=empty.hour, p50_ms=p50, p95_ms=p95, avg_ms=avg)


def _clip(edges: Sequence[int], end: int) -> list[int]:
    pairs = [(a, min(b, end)) for a, b in zip(edges[::2], edges[1::2], strict=True) if a < end]
    return [e for pair in pairs for e in pair]


def _bar(
    k: _Kept,
    day: dt.date,
    lo: int,
    hi: int,
    reach: int,
    kedges: list[int],
    oedges: list[int],
) -> DayView:
    """build._monitor's day bar, with the tally for the accounting."""
    if _outside(oedges, lo, hi):
        if _inside(kedges, lo, hi):
            return _quiet_day(day)
        if _outside(kedges, lo, hi) and hi > lo:
            return _unknown_day(day, (hi - lo) / 1000)
    if hi <= lo:
        return DayView(day, DayLevel.UNKNOWN, None, 0.0, 0.0, 0.0, 0)
    mon, down, maint = k.tally.window(lo, hi, reach)
    uptime = 100 * (mon - down) / mon if mon else None
    count = sum(1 for start, end in k.incidents if start < hi and (end is None or end > lo))
    return DayView(
        date=day,
        level=_level(uptime, maint / 1000, k.target),
        uptime_percent=uptime,
        downtime_seconds=down / 1000,
        maintenance_seconds=maint / 1000,
        unknown_seconds=(hi - lo - mon - maint) / 1000,
        incidents=count,
    )
