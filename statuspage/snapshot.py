"""What the public may see, computed once per change of data: the status page's model.

Every route (pages, JSON, feeds, badges, metrics, the static export) renders from one
`Snapshot`, so they agree with each other and none of them touches the database. A
snapshot holds only public monitors and an allow-list of fields: names, states, numbers,
times, sanitised causes (prober.redact.public_text: no URLs, hosts, addresses or secrets).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from enum import StrEnum


class State(StrEnum):
    """A monitor's state as the public sees it."""

    UP = "up"  # also failing but not confirmed yet (down_after), or a certificate within
    # warn_days: the operators' business (alerts, /metrics), not the public's
    DEGRADED = "degraded"  # slow (degraded_after), or failing at fewer than quorum locations
    DOWN = "down"  # an incident is open
    MAINTENANCE = "maintenance"  # inside a maintenance window (whatever the checks say)
    UNKNOWN = "unknown"  # no result yet, or the last one is stale / unknown


class Overall(StrEnum):
    """The banner, in Statuspage's vocabulary of indicators."""

    OPERATIONAL = "operational"  # every monitor up
    DEGRADED = "degraded"  # some degraded, none down
    PARTIAL_OUTAGE = "partial_outage"  # some down
    MAJOR_OUTAGE = "major_outage"  # at least half of the known monitors down
    MAINTENANCE = "maintenance"  # none down, at least one in maintenance
    UNKNOWN = "unknown"  # nothing known (no results yet, or all stale)


class DayLevel(StrEnum):
    """A day bar's colour class."""

    UP = "up"  # uptime 100 % (or above the SLA target and no incident)
    MINOR = "minor"  # below 100 % but at or above the SLA target
    MAJOR = "major"  # below the SLA target
    DOWN = "down"  # below 90 %
    MAINTENANCE = "maintenance"  # only maintained time
    UNKNOWN = "unknown"  # nothing monitored that day (grey)


@dataclasses.dataclass(frozen=True, slots=True)
class DayView:
    date: dt.date  # a local day in settings.timezone
    level: DayLevel
    uptime_percent: float | None  # None: nothing monitored
    downtime_seconds: float
    maintenance_seconds: float
    unknown_seconds: float
    incidents: int  # incidents overlapping the day


@dataclasses.dataclass(frozen=True, slots=True)
class LatencyPoint:
    """One hour of response times (from hourly rollups); None: no successful check."""

    hour: dt.datetime  # the hour's start, in settings.timezone
    p50_ms: float | None
    p95_ms: float | None
    avg_ms: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentView:
    id: str  # stable: "MONITOR-START_MS"
    monitor_id: str
    monitor_name: str
    start: dt.datetime  # in settings.timezone
    end: dt.datetime | None  # None: ongoing
    duration_seconds: float | None  # None while ongoing
    cause: str  # sanitised (public_text)


@dataclasses.dataclass(frozen=True, slots=True)
class MaintenanceView:
    id: str  # stable: hash of title and start
    title: str
    start: dt.datetime
    end: dt.datetime
    monitor_ids: tuple[str, ...]  # public ones only
    monitor_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class NoticeUpdateView:
    """One update of an incident written by people (prober.notices)."""

    id: str  # "NOTICE-N", N counting the file's updates from 1
    status: str  # investigating | identified | monitoring | resolved
    at: dt.datetime  # in settings.timezone
    body: str  # the Markdown source (APIs, feeds' text)
    html: str  # the body rendered safely: raw HTML off, links http(s) only
    notify: bool = True  # the update's `notify` (Statuspage's deliver_notifications)


@dataclasses.dataclass(frozen=True, slots=True)
class NoticeView:
    """An incident written by people, as the public sees it."""

    id: str  # the file's stem
    title: str
    impact: str  # none | minor | major | critical
    status: str  # its newest update's
    created_at: dt.datetime  # the first update's time (or the attached incident's start)
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    components: tuple[tuple[str, str, str], ...]  # (monitor id, name, status): public ones
    updates: tuple[NoticeUpdateView, ...]  # newest first
    detected: IncidentView | None  # the detected incident it is attached to, if any


@dataclasses.dataclass(frozen=True, slots=True)
class PushView:
    """What a push monitor's page tells instead of response times: its schedule, the last
    ping it received and how long that run took."""

    period_seconds: float | None  # None: on a cron schedule
    cron: str  # "" with a period
    grace_seconds: float
    last_ping: dt.datetime | None  # the newest result that was a ping (not a missed deadline)
    run_seconds: float | None  # that run's duration (a start paired with its end, or latency_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class MonitorView:
    id: str
    name: str
    group: str  # "" for none
    description: str
    type: str  # http | tls | tcp | dns | push
    state: State
    # when the current state began: the last transition the public reads as a change (a
    # blip is none); while down, the open incident's (back-dated) start
    since: dt.datetime | None
    checked_at: dt.datetime | None  # the last result's time
    stale: bool  # the last result is older than twice the interval: state is UNKNOWN
    interval_seconds: float
    latency_ms: float | None  # the last result's latency
    status_code: int | None  # the last result's HTTP status
    cert_expires: dt.datetime | None  # earliest certificate expiry seen lately
    uptime: dict[str, float | None]  # "24h" "7d" "30d" "90d" -> percent; None: no data
    days: tuple[DayView, ...]  # oldest first, settings.history_days of them, today last
    latency: tuple[LatencyPoint, ...]  # the last 24 hours, hourly, oldest first
    incidents: tuple[IncidentView, ...]  # within history_days, newest first
    # probed from several locations: those failing in a regional problem that lasted
    # down_after (fewer than quorum: never downtime; the state shows degraded)
    regional: tuple[str, ...] = ()
    push: PushView | None = None  # push monitors only


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    name: str  # "" for monitors without a group
    monitors: tuple[MonitorView, ...]

    @property
    def state(self) -> State:
        """The worst state of its monitors; maintenance only when all of them are in it (one
        maintained monitor of three does not make the others' header read "Maintenance")."""
        working = [m.state for m in self.monitors if m.state is not State.MAINTENANCE]
        if not working and self.monitors:
            return State.MAINTENANCE
        return worst(working)


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    title: str
    public_url: str  # "" when not set: links are then relative
    language: str  # settings.language: en | ko
    timezone: str
    generated_at: dt.datetime  # in settings.timezone
    last_result_at: dt.datetime | None  # the newest result of any public monitor
    stale: bool  # no fresh result at all: the prober may be stuck; the page says so
    overall: Overall
    groups: tuple[Group, ...]  # in config order; monitors in config order
    incidents: tuple[IncidentView, ...]  # all public monitors', newest first
    maintenance_active: tuple[MaintenanceView, ...]
    maintenance_upcoming: tuple[MaintenanceView, ...]  # the next 7 days
    history_days: int
    notices: tuple[NoticeView, ...] = ()  # unresolved first, then newest first
    # monitor id -> the worst component status unresolved notices declare for it
    declared: tuple[tuple[str, str], ...] = ()
    # windows that ended within history_days (public monitors'), newest first
    maintenance_completed: tuple[MaintenanceView, ...] = ()
    # settings.subscriptions is set: `/` shows the subscribe form (never in an export)
    subscribe: bool = False

    @property
    def monitors(self) -> tuple[MonitorView, ...]:
        return tuple(m for g in self.groups for m in g.monitors)

    def monitor(self, monitor_id: str) -> MonitorView | None:
        return next((m for m in self.monitors if m.id == monitor_id), None)


_SEVERITY = {
    State.UP: 0,
    State.MAINTENANCE: 1,
    State.UNKNOWN: 2,
    State.DEGRADED: 3,
    State.DOWN: 4,
}


def worst(states: Iterable[State]) -> State:
    return max(states, key=_SEVERITY.__getitem__, default=State.UNKNOWN)
