"""The Snapshot from the database: one read transaction, public monitors only.

Reads what reports read (prober.report.compute.Reader: coverage, incidents, maintenance,
rollups), plus each monitor's last result and last transition. Numbers follow the
accounting of docs/REFERENCE.md exactly as the monthly report does: a day bar is that
local day's accounting.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Sequence

from prober import maintenance, timeline
from prober.causes import public_cause
from prober.config import Config
from prober.config.monitors import Monitor, ProbeMonitor, PushMonitor
from prober.redact import visible_text
from prober.report.compute import Reader, Stored
from prober.store import rollups
from prober.store.engine import Connection
from prober.store.ledger import TrackSpec
from prober.timeline import Spans
from statuspage.snapshot import (
    DayLevel,
    DayView,
    Group,
    IncidentView,
    LatencyPoint,
    MaintenanceView,
    MonitorView,
    Overall,
    PushView,
    Snapshot,
    State,
)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WINDOWS = {"24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS, "90d": 90 * DAY_MS}
UPCOMING = dt.timedelta(days=7)
FAR_MS = 1 << 53
# The public state of a monitor's last result when no incident is open: a `down` one is a
# failure not confirmed yet (down_after), a blip until it is: operational to the public.
_OUTCOME_STATE = {0: State.UNKNOWN, 1: State.UP, 2: State.DEGRADED, 3: State.UP}
# The last result's columns (_Last), the result table named `r`. A result degraded only by
# a certificate within warn_days is the operators' business (alerts, /metrics): up here.
LAST_COLUMNS = (
    "r.ts_ms, r.outcome, r.latency_us, r.status_code, r.cert_expiry,"
    " r.outcome = 2 AND r.error LIKE 'certificate expires in %'"
)
# The transitions that change what the public reads: up and pending (not confirmed yet)
# are both operational, so a blip moves no "Since".
SINCE_FILTER = "NOT (ifnull(old, '') IN ('up', 'pending') AND new IN ('up', 'pending'))"
# A push monitor's newest ping: a result that is not a missed deadline (prober.push).
PING_SQL = (
    "SELECT ts_ms, latency_us FROM result WHERE monitor_id = ? AND location_id = ?"
    " AND ifnull(details ->> '$.push', '') != 'missed' ORDER BY ts_ms DESC LIMIT 1"
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Last:
    ts_ms: int
    outcome: int
    latency_us: int | None
    status_code: int | None
    cert_expiry: int | None
    cert_warning: int  # 1: degraded only by a certificate within warn_days


def public_state(last: _Last) -> State:
    """The state the public reads from a last result (no maintenance, not stale, no open
    incident): a pending failure and a certificate warning are operational."""
    return State.UP if last.cert_warning else _OUTCOME_STATE[last.outcome]


def since_monitoring(maintained: Spans, first_ms: int | None) -> Spans:
    """Maintenance as the page accounts and draws it: only from the monitor's first result
    on (a weekly window is no blue bar on the days before the prober watched it)."""
    return Spans.empty() if first_ms is None else maintained.clip(first_ms, FAR_MS)


def push_view(
    monitor: Monitor, ping: tuple[int, int | None] | None, tz: dt.tzinfo
) -> PushView | None:
    """A push monitor's schedule, last ping and that run's duration (None: not a push)."""
    if not isinstance(monitor, PushMonitor):
        return None
    ran = None if ping is None or not ping[1] else ping[1] / 1_000_000
    return PushView(
        period_seconds=monitor.period,
        cron=monitor.cron or "",
        grace_seconds=monitor.grace,
        last_ping=None if ping is None else timeline.from_ms(ping[0], tz),
        run_seconds=ran,
    )


def build_snapshot(conn: Connection, config: Config, now: dt.datetime) -> Snapshot:
    """Everything the public routes show, as of `now` (aware)."""
    conn.execute("BEGIN")  # one consistent read while the writer goes on
    try:
        return _build(conn, config, now)
    finally:
        conn.execute("ROLLBACK")


def _build(conn: Connection, config: Config, now: dt.datetime) -> Snapshot:
    settings = config.settings
    reader = Reader(conn, config, now)
    tz = reader.tz
    now_ms = reader.now_ms
    public = [m for m in config.monitors if m.public]
    in_maintenance = {m.id for m in public if maintenance.active(config.maintenance, m.id, now, tz)}
    today = timeline.from_ms(reader.now_ms, tz).date()
    days = _day_bounds(reader, today - dt.timedelta(days=settings.history_days - 1), today)
    began = {m.id: _first_result(reader, m) for m in public}
    views = [_monitor(reader, m, m.id in in_maintenance, days, began[m.id]) for m in public]
    groups: dict[str, list[MonitorView]] = {}
    for view in views:
        groups.setdefault(view.group, []).append(view)
    incidents = sorted((i for v in views for i in v.incidents), key=lambda i: i.start, reverse=True)
    checked = [v.checked_at for v in views if v.checked_at is not None]
    last = max(checked, default=None)
    freshest = min((TrackSpec.of(m).cover_ms for m in public), default=0)
    stale = bool(public) and (last is None or now_ms - timeline.to_ms(last) > freshest)
    names = {m.id: visible_text(m.display_name) for m in public}
    return Snapshot(
        title=visible_text(settings.title),
        public_url=settings.public_url,
        language=settings.language,
        timezone=settings.timezone,
        generated_at=now.astimezone(tz),
        last_result_at=last,
        stale=stale,
        overall=overall_of([v.state for v in views]),
        groups=tuple(Group(name, tuple(members)) for name, members in groups.items()),
        incidents=tuple(incidents),
        maintenance_active=_maintenance(config, names, now, now, tz, running=True),
        maintenance_upcoming=_maintenance(config, names, now, now + UPCOMING, tz, running=False),
        history_days=settings.history_days,
        maintenance_completed=completed_maintenance(config, names, began, days[0][1], now, tz),
    )


def _monitor(
    reader: Reader,
    monitor: Monitor,
    maintained: bool,
    day_bounds: list[tuple[dt.date, int, int]],
    began: int | None,
) -> MonitorView:
    tz, now_ms = reader.tz, reader.now_ms
    settings = reader.config.settings
    first_ms = day_bounds[0][1]
    start_ms = min(first_ms, now_ms - WINDOWS["90d"])
    stored = reader.stored(monitor, start_ms, now_ms)
    stored = dataclasses.replace(stored, maintenance=since_monitoring(stored.maintenance, began))
    incident_spans = reader.incident_spans(stored)
    target = monitor.sla_target or settings.sla_target
    uptime = {
        name: timeline.account(
            (now_ms - length, now_ms), stored.known, incident_spans, stored.maintenance, target
        ).uptime_percent
        for name, length in WINDOWS.items()
    }
    # Most days need no account: wholly covered (or wholly uncovered) with no incident and
    # no maintenance. A binary search in each set's edges tells, for 90 days x every monitor.
    known = _edges(stored.known)
    other = _edges(incident_spans | stored.maintenance)
    days = tuple(
        _day(day, lo, hi, stored, incident_spans, target)
        if not _outside(other, lo, hi)
        else _quiet_day(day)
        if _inside(known, lo, hi)
        else _unknown_day(day, (hi - lo) / 1000)
        if _outside(known, lo, hi) and hi > lo
        else _day(day, lo, hi, stored, incident_spans, target)
        for day, lo, hi in day_bounds
    )
    mid = reader.ids.get(monitor.id)
    last = _last_result(reader, mid, reader.latency_id(monitor))
    cover_ms = TrackSpec.of(monitor).cover_ms
    stale = last is not None and now_ms - last.ts_ms > cover_ms
    open_start = next((start for start, end, _ in stored.incidents if end is None), None)
    verdict: Verdict | None = None
    vloc = reader.verdict_id(monitor)
    combined = len(monitor.locations) > 1
    if combined and mid is not None and vloc is not None:
        verdict = read_verdicts(reader.conn, vloc, [mid]).get(mid)
    if combined:  # fresh while any of its locations reports
        newest = _newest_anywhere(reader, mid)
        stale = newest is not None and now_ms - newest > cover_ms
    if maintained:
        state = State.MAINTENANCE
    elif (last is None and verdict is None) or stale:
        state = State.UNKNOWN
    elif open_start is not None:
        state = State.DOWN
    elif combined:
        state = verdict_state(verdict, last)
    else:
        assert last is not None
        state = public_state(last)
    # when the public state began: an outage at its incident's back-dated start
    since = _since(reader, mid, vloc)
    if state is State.DOWN and open_start is not None:
        since = timeline.from_ms(open_start, tz)
    loc = reader.latency_id(monitor)
    ping = None
    if isinstance(monitor, PushMonitor) and mid is not None and loc is not None:
        ping = reader.conn.execute(PING_SQL, (mid, loc)).fetchone()
    name = visible_text(monitor.display_name)
    incidents = tuple(
        IncidentView(
            id=f"{monitor.id}-{start}",
            monitor_id=monitor.id,
            monitor_name=name,
            start=timeline.from_ms(start, tz),
            end=None if end is None else timeline.from_ms(end, tz),
            duration_seconds=None if end is None else (end - start) / 1000,
            cause=public_cause(cause, monitor),
        )
        for start, end, cause in reversed(stored.incidents)
        if end is None or end > first_ms
    )
    return MonitorView(
        id=monitor.id,
        name=name,
        group=visible_text(monitor.group),
        description=visible_text(monitor.description),
        type=str(getattr(monitor, "type", "")),
        state=state,
        since=since,
        checked_at=None if last is None else timeline.from_ms(last.ts_ms, tz),
        stale=stale,
        interval_seconds=monitor.interval if isinstance(monitor, ProbeMonitor) else cover_ms / 1000,
        latency_ms=shown_latency_ms(last),
        status_code=None if last is None else last.status_code,
        cert_expires=cert_expires(last, tz),
        uptime=uptime,
        days=days,
        latency=_latency(reader, mid, reader.latency_id(monitor)),
        regional=() if verdict is None or maintained else verdict.regional,
        incidents=incidents,
        push=push_view(monitor, ping, tz),
    )


def shown_latency_ms(last: _Last | None) -> float | None:
    """The last check's latency as the page shows it: none for an unknown result, whose
    time is the prober's, not the target's."""
    if last is None or last.latency_us is None or last.outcome == 0:
        return None
    return last.latency_us / 1000


def cert_expires(last: _Last | None, tz: dt.tzinfo) -> dt.datetime | None:
    if last is None or last.cert_expiry is None:
        return None
    return dt.datetime.fromtimestamp(last.cert_expiry, tz)


def _day_bounds(reader: Reader, first: dt.date, today: dt.date) -> list[tuple[dt.date, int, int]]:
    """(day, start_ms, end_ms) of each local day shown, today ending now."""
    found = []
    for day in timeline.days_between(first, today + dt.timedelta(days=1)):
        lo, hi = (timeline.to_ms(t) for t in timeline.day_bounds(day, reader.tz))
        found.append((day, lo, min(hi, reader.now_ms)))
    return found


def _edges(spans: Spans) -> list[int]:
    return [edge for pair in spans for edge in pair]


def _inside(edges: list[int], lo: int, hi: int) -> bool:
    """Whether [lo, hi) lies wholly inside one of the spans (given by their edges)."""
    i = bisect.bisect_right(edges, lo)
    return i % 2 == 1 and edges[i] >= hi


def _outside(edges: list[int], lo: int, hi: int) -> bool:
    """Whether [lo, hi) meets none of the spans."""
    i = bisect.bisect_right(edges, lo)
    return i % 2 == 0 and (i == len(edges) or edges[i] >= hi)


@functools.lru_cache(maxsize=1024)
def _quiet_day(day: dt.date) -> DayView:
    """One shared instance per date: at 10,000 monitors most of 900,000 bars are these."""
    return DayView(day, DayLevel.UP, 100.0, 0.0, 0.0, 0.0, 0)


@functools.lru_cache(maxsize=4096)
def _unknown_day(day: dt.date, seconds: float) -> DayView:
    return DayView(day, DayLevel.UNKNOWN, None, 0.0, 0.0, seconds, 0)


def _day(
    day: dt.date, lo: int, hi: int, stored: Stored, incidents: Spans, target: float
) -> DayView:
    if hi <= lo:
        return DayView(day, DayLevel.UNKNOWN, None, 0.0, 0.0, 0.0, 0)
    acc = timeline.account((lo, hi), stored.known, incidents, stored.maintenance, target)
    count = sum(1 for start, end, _ in stored.incidents if start < hi and (end is None or end > lo))
    return DayView(
        date=day,
        level=_level(acc.uptime_percent, acc.maintenance_seconds, target),
        uptime_percent=acc.uptime_percent,
        downtime_seconds=acc.downtime_seconds,
        maintenance_seconds=acc.maintenance_seconds,
        unknown_seconds=acc.unknown_seconds,
        incidents=count,
    )


def _level(uptime: float | None, maintained_s: float, target: float) -> DayLevel:
    if uptime is None:
        return DayLevel.MAINTENANCE if maintained_s > 0 else DayLevel.UNKNOWN
    if uptime >= 100.0:
        return DayLevel.UP
    if uptime >= target:
        return DayLevel.MINOR
    if uptime >= 90.0:
        return DayLevel.MAJOR
    return DayLevel.DOWN


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """A combined verdict as its saved state says (prober.store.ledger, location `*`)."""

    status: str  # the tracker's: up | degraded | pending | down | unknown
    regional: tuple[str, ...]  # failing locations of a regional problem that lasted down_after


def read_verdicts(conn: Connection, loc: int, mids: Sequence[int]) -> dict[int, Verdict]:
    """The combined verdicts of these monitors, kept at location `loc` (`*`)."""
    out = {}
    for mid, status, regional in conn.execute(
        "SELECT s.monitor_id, json_extract(s.state, '$.tracker.status'),"
        " json_extract(s.state, '$.regional') FROM json_each(?) AS j"
        " JOIN monitor_state AS s ON s.monitor_id = j.value AND s.location_id = ?",
        (json.dumps(list(mids)), loc),
    ):
        problem = json.loads(regional) if regional else None
        told = tuple(problem["locations"]) if problem and problem.get("told") else ()
        out[mid] = Verdict(str(status or "unknown"), told)
    return out


_VERDICT_STATE = {
    "up": State.UP,
    "degraded": State.DEGRADED,
    "pending": State.UP,  # failing, not confirmed yet: operational, as a single location's
    "down": State.DOWN,
    "unknown": State.UNKNOWN,
}


def verdict_state(verdict: Verdict | None, last: _Last | None) -> State:
    """What the page shows for a combined verdict (no maintenance, not stale, no open
    incident): a regional problem that lasted down_after shows degraded, never down; a
    certificate warning (seen at its latency location) is the operators' business."""
    if verdict is None:
        return State.UNKNOWN
    state = _VERDICT_STATE.get(verdict.status, State.UNKNOWN)
    if verdict.regional and state is State.UP:
        return State.DEGRADED
    if verdict.status == "degraded" and last is not None and last.cert_warning:
        return State.UP
    return state


def _last_result(reader: Reader, mid: int | None, loc: int | None) -> _Last | None:
    """The newest result at the monitor's latency location (prober.config.locations)."""
    if mid is None or loc is None:
        return None
    row = reader.conn.execute(
        f"SELECT {LAST_COLUMNS} FROM result AS r"  # noqa: S608  (constants)
        " WHERE r.monitor_id = ? AND r.location_id = ? ORDER BY r.ts_ms DESC LIMIT 1",
        (mid, loc),
    ).fetchone()
    return None if row is None else _Last(*row)


def _newest_anywhere(reader: Reader, mid: int | None) -> int | None:
    if mid is None:
        return None
    (ts,) = reader.conn.execute(
        "SELECT max(ts_ms) FROM result WHERE monitor_id = ?", (mid,)
    ).fetchone()
    return None if ts is None else int(ts)


def _since(reader: Reader, mid: int | None, loc: int | None) -> dt.datetime | None:
    """The last transition of the monitor's verdict that the public reads as a change."""
    if mid is None or loc is None:
        return None
    (ts,) = reader.conn.execute(
        f"SELECT ts_ms FROM transition WHERE {SINCE_FILTER}"  # noqa: S608  (constants)
        " AND monitor_id = ? AND location_id = ? ORDER BY ts_ms DESC LIMIT 1",
        (mid, loc),
    ).fetchone() or (None,)
    return None if ts is None else timeline.from_ms(ts, reader.tz)


def _first_result(reader: Reader, monitor: Monitor) -> int | None:
    """When monitoring began: the first result of the monitor's verdict (its first
    transition, kept when raw results are pruned). None: no result yet."""
    mid, loc = reader.ids.get(monitor.id), reader.verdict_id(monitor)
    if mid is None or loc is None:
        return None
    (ts,) = reader.conn.execute(
        "SELECT min(ts_ms) FROM transition WHERE monitor_id = ? AND location_id = ?", (mid, loc)
    ).fetchone()
    return None if ts is None else int(ts)


def _latency(reader: Reader, mid: int | None, loc: int | None) -> tuple[LatencyPoint, ...]:
    """The last 24 hours, hour by hour: rollups where they exist, raw results after."""
    if mid is None or loc is None:
        return ()
    end = reader.now_ms // HOUR_MS * HOUR_MS + HOUR_MS
    start = end - 24 * HOUR_MS
    split = max(start, min(end, reader.rolled_until))
    by_hour: dict[int, rollups.Rollup] = {
        h.hour_ms: h
        for h in rollups.read_hours(reader.conn, [mid], start, split)
        if h.location_id == loc
    }
    for hour in range(split, end, HOUR_MS):
        by_hour[hour] = rollups.from_raw(reader.conn, mid, loc, hour, hour + HOUR_MS)
    points = []
    for hour in range(start, end, HOUR_MS):
        r = by_hour.get(hour)
        p50, p95 = r.percentiles(50, 95) if r is not None and r.lat_count else (None, None)
        points.append(
            LatencyPoint(
                hour=timeline.from_ms(hour, reader.tz),
                p50_ms=p50,
                p95_ms=p95,
                avg_ms=None if r is None else r.mean_latency_ms,
            )
        )
    return tuple(points)


def overall_of(states: Sequence[State]) -> Overall:
    known = [s for s in states if s is not State.UNKNOWN]
    if not known:
        return Overall.UNKNOWN
    down = sum(s is State.DOWN for s in known)
    if down and down * 2 >= len(known):
        return Overall.MAJOR_OUTAGE
    if down:
        return Overall.PARTIAL_OUTAGE
    if State.DEGRADED in known:
        return Overall.DEGRADED
    if State.MAINTENANCE in known:
        return Overall.MAINTENANCE
    return Overall.OPERATIONAL


def _maintenance(
    config: Config,
    names: dict[str, str],
    start: dt.datetime,
    end: dt.datetime,
    tz: dt.tzinfo,
    *,
    running: bool,
) -> tuple[MaintenanceView, ...]:
    found: list[MaintenanceView] = []
    for item in config.maintenance:
        ids = (
            tuple(names) if "*" in item.monitors else tuple(i for i in item.monitors if i in names)
        )
        if not ids:
            continue  # only private monitors: not the public's business
        if running:
            windows = maintenance.active([item], None, start, tz)
        else:
            windows = maintenance.upcoming([item], None, start, tz, end - start)
        named = tuple(names[i] for i in ids)
        found.extend(_window_view(w, ids, named) for w in windows)
    return tuple(sorted(found, key=lambda v: v.start))


def _window_view(
    w: maintenance.Window, ids: tuple[str, ...], named: tuple[str, ...]
) -> MaintenanceView:
    title = visible_text(w.title)
    key = json.dumps([title, timeline.to_ms(w.start)]).encode()
    return MaintenanceView(
        id="m-" + hashlib.sha256(key).hexdigest()[:12],  # stable per occurrence
        title=title,
        start=w.start,
        end=w.end,
        monitor_ids=ids,
        monitor_names=named,
    )


def completed_maintenance(
    config: Config,
    names: dict[str, str],
    began: dict[str, int | None],
    since_ms: int,
    now: dt.datetime,
    tz: dt.tzinfo,
) -> tuple[MaintenanceView, ...]:
    """Windows that ended after since_ms and by now, newest (end) first, each naming its
    public monitors; none that ended before any of them was monitored (point 1 of
    "never mislead": no maintenance before the prober watched)."""
    now_ms = timeline.to_ms(now)
    found: list[MaintenanceView] = []
    for item in config.maintenance:
        ids = (
            tuple(names) if "*" in item.monitors else tuple(i for i in item.monitors if i in names)
        )
        watched = [ms for i in ids if (ms := began.get(i)) is not None]
        if not watched:
            continue
        after = max(since_ms, min(watched))
        named = tuple(names[i] for i in ids)
        for w in maintenance.windows([item], None, timeline.from_ms(after, tz), now, tz):
            if after < timeline.to_ms(w.end) <= now_ms:
                found.append(_window_view(w, ids, named))
    return tuple(sorted(found, key=lambda v: timeline.to_ms(v.end), reverse=True))
