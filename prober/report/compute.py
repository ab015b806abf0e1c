"""A month's numbers from stored coverage, incidents, rollups and the config's maintenance.

Never scans raw results except for the hours not rolled up yet (at most the last hour or
two), so a month of 100 monitors is read in well under a second, and a month whose raw
rows were pruned gives the same figures as before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from prober import maintenance, timeline
from prober.causes import public_cause
from prober.config import Config
from prober.config.locations import COMBINED, latency_location, verdict_location
from prober.config.monitors import Monitor
from prober.redact import visible_text
from prober.report.model import (
    DayBar,
    LatencyStats,
    LocationFigures,
    MonitorReport,
    MonthReport,
    Period,
    Remediation,
    ReportIncident,
)
from prober.store import remediations, rollups, upkeep
from prober.store.engine import Connection
from prober.store.ledger import TrackSpec
from prober.timeline import Spans

PERCENTILES = (50, 95, 99)  # LatencyStats' p50, p95, p99


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    known: Spans
    incidents: list[tuple[int, int | None, str]]  # start_ms, end_ms, cause
    maintenance: Spans


class Reader:
    """Reads what reports and the status page need. Each monitor's verdict (coverage,
    incidents, transitions) is read where it is kept and its latency and checks where they
    are measured (prober.config.locations: with no agents, both at settings.location)."""

    def __init__(self, conn: Connection, config: Config, now: dt.datetime) -> None:
        self.conn = conn
        self.config = config
        self.hub = config.settings.location
        self.tz = ZoneInfo(config.settings.timezone)
        self.now_ms = timeline.to_ms(now)
        self.location_ids = {
            name: lid for lid, name in conn.execute("SELECT id, name FROM location")
        }
        self.ids = {slug: mid for mid, slug in conn.execute("SELECT id, slug FROM monitor")}
        self.rolled_until = upkeep.rolled_until(conn)

    def verdict_id(self, monitor: Monitor) -> int | None:
        """The location id of the monitor's verdict (None: nothing stored there yet)."""
        return self.location_ids.get(verdict_location(monitor, self.hub))

    def latency_id(self, monitor: Monitor) -> int | None:
        """The location id of the monitor's results shown as its latency and checks."""
        return self.location_ids.get(latency_location(monitor, self.hub))

    def stored(
        self, monitor: Monitor, start_ms: int, end_ms: int, location: str | None = None
    ) -> Stored:
        """Coverage and incidents in [start, end) of the monitor's verdict, or of one of its
        locations' own (`location`), with its maintenance."""
        maint = maintenance.spans(self.config.maintenance, monitor.id, start_ms, end_ms, self.tz)
        name = location or verdict_location(monitor, self.hub)
        mid, loc = self.ids.get(monitor.id), self.location_ids.get(name)
        if mid is None or loc is None:
            return Stored(Spans.empty(), [], maint)
        key = (mid, loc)
        cover_ms = TrackSpec.of(monitor).cover_ms
        spans: list[tuple[int, int]] = []
        for span_start, span_end in self.conn.execute(
            "SELECT start_ms, end_ms FROM coverage WHERE monitor_id = ? AND location_id = ?"
            " AND start_ms < ? AND (end_ms IS NULL OR end_ms > ?)",
            (*key, end_ms, start_ms),
        ):
            if span_end is None:
                last = self._newest(mid, None if name == COMBINED else loc)
                span_end = min(self.now_ms, (last or span_start) + cover_ms)
            spans.append((span_start, min(span_end, self.now_ms)))
        incidents = self.conn.execute(
            "SELECT start_ms, end_ms, cause FROM incident WHERE monitor_id = ?"
            " AND location_id = ? AND start_ms < ? AND (end_ms IS NULL OR end_ms > ?)"
            " ORDER BY start_ms",
            (*key, end_ms, start_ms),
        ).fetchall()
        return Stored(Spans.of(spans), incidents, maint)

    def _newest(self, mid: int, loc: int | None) -> int | None:
        """The newest result's time at one location; at any (None: the combined verdict's
        open span reaches the newest result of any of its locations)."""
        if loc is None:
            row = self.conn.execute(
                "SELECT max(ts_ms) FROM result WHERE monitor_id = ?", (mid,)
            ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT max(ts_ms) FROM result WHERE monitor_id = ? AND location_id = ?",
                (mid, loc),
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def incident_spans(self, stored: Stored) -> Spans:
        return Spans.of(
            (start, self.now_ms if end is None else end) for start, end, _ in stored.incidents
        )

    def usage(self, monitor: Monitor, start_ms: int, end_ms: int) -> rollups.Rollup:
        """Check counts and latency in [start, end): daily rollups for the whole local days
        already rolled up, hourly ones for the hours after, raw results for the rest."""
        mid, loc = self.ids.get(monitor.id), self.latency_id(monitor)
        if mid is None or loc is None:
            return rollups.Rollup()
        parts: list[rollups.Rollup] = []
        at = start_ms
        first = last = None
        for day in timeline.days_between(
            timeline.from_ms(start_ms, self.tz).date(),
            timeline.from_ms(end_ms - 1, self.tz).date() + dt.timedelta(days=1),
        ):
            lo, hi = (timeline.to_ms(t) for t in timeline.day_bounds(day, self.tz))
            if lo != at or hi > min(end_ms, self.rolled_until):
                break
            first, last, at = first or day, day, hi
        if first is not None and last is not None:
            days = rollups.read_days(self.conn, [mid], first, last)
            parts.extend(d for d in days if d.location_id == loc)
        split = max(at, min(end_ms, self.rolled_until))
        if split > at:
            hours = rollups.read_hours(self.conn, [mid], at, split)
            parts.extend(h for h in hours if h.location_id == loc)
        if end_ms > split:
            parts.append(rollups.from_raw(self.conn, mid, loc, split, end_ms))
        return rollups.combine(parts)


def build(
    conn: Connection,
    config: Config,
    month: str,
    *,
    monitors: Sequence[str] = (),
    now: dt.datetime,
    operator: bool = False,
) -> MonthReport:
    """The month's report; `operator` (prober report): with the remediation attempts, which
    a public report never holds."""
    reader = Reader(conn, config, now)
    start, end = timeline.month_bounds(month, reader.tz)
    chosen = [m for m in config.monitors if not monitors or m.id in monitors]
    return MonthReport(
        title=visible_text(config.settings.title),
        language=config.settings.language,
        period=Period(
            month=month,
            timezone=config.settings.timezone,
            start=start,
            end=end,
            # elapsed time: aware datetimes in one zone subtract by the wall clock
            seconds=(timeline.to_ms(end) - timeline.to_ms(start)) / 1000,
        ),
        generated_at=now.astimezone(reader.tz),
        monitors=[_monitor(reader, m, start, end, operator) for m in chosen],
        operator=operator,
    )


def _monitor(
    reader: Reader, monitor: Monitor, start: dt.datetime, end: dt.datetime, operator: bool
) -> MonitorReport:
    tz = reader.tz
    w = (timeline.to_ms(start), timeline.to_ms(end))
    stored = reader.stored(monitor, *w)
    target = monitor.sla_target or reader.config.settings.sla_target
    incident_spans = reader.incident_spans(stored)
    acc = timeline.account(w, stored.known, incident_spans, stored.maintenance, target)
    incidents = [
        ReportIncident(
            start=timeline.from_ms(s, tz),
            end=None if e is None else timeline.from_ms(e, tz),
            duration_seconds=None if e is None else (e - s) / 1000,
            cause=public_cause(cause, monitor),
        )
        for s, e, cause in stored.incidents
    ]
    durations = [i.duration_seconds for i in incidents if i.duration_seconds is not None]
    usage = reader.usage(monitor, *w)
    locations = _locations(reader, monitor, w, acc, target) if reader.config.agents else ()
    found = _remediations(reader, monitor, w, stored) if operator else None
    if found is not None:
        incidents = [
            dataclasses.replace(incident, remediations=found.by_incident.get(s, ()))
            for incident, (s, _, _) in zip(incidents, stored.incidents, strict=True)
        ]
    return MonitorReport(
        id=monitor.id,
        name=visible_text(monitor.display_name),
        group=visible_text(monitor.group),
        sla_target=target,
        uptime_percent=acc.uptime_percent,
        sla_met=acc.sla_met,
        monitored_seconds=acc.monitored_seconds,
        downtime_seconds=acc.downtime_seconds,
        maintenance_seconds=acc.maintenance_seconds,
        unknown_seconds=acc.unknown_seconds,
        error_budget_seconds=acc.error_budget_seconds,
        error_budget_remaining_seconds=acc.error_budget_remaining_seconds,
        incident_count=len(incidents),
        mttr_seconds=sum(durations) / len(durations) if durations else None,
        longest_incident_seconds=max(durations) if durations else None,
        incidents=incidents,
        checks=usage.total,
        failed_checks=usage.down,
        latency=latency(usage),
        days=_days(reader, stored, incident_spans, start, end, target),
        locations=locations,
        remediation_attempts=0 if found is None else found.attempts,
        remediations_verified=0 if found is None else found.verified,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Attempts:
    """A monitor's remediation attempts as the operator's report shows them."""

    by_incident: dict[int, tuple[Remediation, ...]]  # a listed incident's start_ms: its
    attempts: int  # started in the month
    verified: int


def _remediations(reader: Reader, monitor: Monitor, w: tuple[int, int], stored: Stored) -> Attempts:
    """The monitor's remediation attempts: each listed incident's (whenever made), and the
    month's count. An attempt names its incident `LOCATION/MONITOR/START_MS` (the incident
    key alerts use); it belongs to the listed incident starting at START_MS, or, when none
    does (a combined verdict re-derived since, its start moved), to the one it was made
    during. One started in a run of downs that never became an incident is only counted."""
    starts = [s for s, _, _ in stored.incidents]
    found = remediations.started_from(reader.conn, monitor.id, min([w[0], *starts]))
    by_incident: dict[int, list[Remediation]] = {}
    for attempt in found:
        owner = _owner(attempt, stored.incidents)
        if owner is not None:
            by_incident.setdefault(owner, []).append(_remediation(attempt, reader.tz))
    month = [a for a in found if w[0] <= a.started_ms < w[1]]
    return Attempts(
        {start: tuple(attempts) for start, attempts in by_incident.items()},
        attempts=len(month),
        verified=sum(1 for a in month if a.result == "verified"),
    )


def _owner(
    attempt: remediations.Recorded, incidents: list[tuple[int, int | None, str]]
) -> int | None:
    """The start_ms of the listed incident the attempt was made for, if any."""
    keyed = attempt.incident.rpartition("/")[2]
    for start, _, _ in incidents:
        if keyed == str(start):
            return start
    at = attempt.started_ms
    for start, end, _ in incidents:
        if start <= at and (end is None or at < end):
            return start
    return None


def _remediation(attempt: remediations.Recorded, tz: ZoneInfo) -> Remediation:
    return Remediation(
        started=timeline.from_ms(attempt.started_ms, tz),
        ended=None if attempt.ended_ms is None else timeline.from_ms(attempt.ended_ms, tz),
        result=attempt.result,
        exit_code=attempt.exit_code,
        timed_out=attempt.timed_out,
        output_tail=attempt.output_tail,
    )


def _locations(
    reader: Reader,
    monitor: Monitor,
    w: tuple[int, int],
    acc: timeline.Accounting,
    target: float,
) -> tuple[LocationFigures, ...]:
    """Each location's own figures (on a hub with agents): from that location's own
    coverage and incidents; a monitor probed from one place has its verdict's."""
    names = monitor.locations or (reader.hub,)
    if len(names) == 1:
        return (LocationFigures(names[0], *_figures(acc)),)
    found = []
    for name in names:
        stored = reader.stored(monitor, *w, location=name)
        own = timeline.account(
            w, stored.known, reader.incident_spans(stored), stored.maintenance, target
        )
        found.append(LocationFigures(name, *_figures(own)))
    return tuple(found)


def _figures(acc: timeline.Accounting) -> tuple[float | None, float, float]:
    return acc.uptime_percent, acc.monitored_seconds, acc.downtime_seconds


def latency(usage: rollups.Rollup) -> LatencyStats:
    """The usage's latency figures (ms), its PERCENTILES from the rollups' histogram
    (within 1/256 of the nearest rank, the same before and after prune)."""
    if usage.lat_count == 0 or usage.lat_min_us is None or usage.lat_max_us is None:
        return LatencyStats()
    p50, p95, p99 = usage.percentiles(*PERCENTILES)
    return LatencyStats(
        min=usage.lat_min_us / 1000,
        avg=usage.lat_sum_us / usage.lat_count / 1000,
        p50=p50,
        p95=p95,
        p99=p99,
        max=usage.lat_max_us / 1000,
    )


def _days(
    reader: Reader,
    stored: Stored,
    incidents: Spans,
    start: dt.datetime,
    end: dt.datetime,
    target: float,
) -> list[DayBar]:
    bars = []
    for day in timeline.days_between(start.date(), end.date()):
        lo, hi = timeline.day_bounds(day, reader.tz)
        w = (timeline.to_ms(lo), timeline.to_ms(hi))
        acc = timeline.account(w, stored.known, incidents, stored.maintenance, target)
        bars.append(
            DayBar(
                date=day,
                uptime_percent=acc.uptime_percent,
                downtime_seconds=acc.downtime_seconds,
                maintenance_seconds=acc.maintenance_seconds,
                unknown_seconds=acc.unknown_seconds,
            )
        )
    return bars
