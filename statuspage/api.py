"""The JSON API: our own v1 shapes, and Atlassian Statuspage's public v2 shapes.

Pure functions from a Snapshot to JSON-ready dicts (str, int, float, bool, None, list, dict;
times as ISO 8601 with the offset of settings.timezone; a non-finite number becomes null). A
function asked for an unknown monitor returns None: the route answers 404.

v1, ours (monitors in config order, incidents newest first)
- `status_v1` GET /api/v1/status: {"title", "generated_at", "overall" (an Overall value),
  "stale" (no fresh result at all), "last_result_at", "monitors": [{"id", "name", "group"
  (null: none), "type", "state" (a State value), "since" (the last transition), "checked_at",
  "stale", "latency_ms", "status_code", "uptime": {"24h", "7d", "30d", "90d"} (percent, null:
  no data), "cert_expires", "regional" (the locations failing in a regional problem: fewer
  than the monitor's quorum, for down_after; [] when none)}]}.
- `days_v1` GET /api/v1/monitors/{id}/days?days=N: {"id", "name", "timezone", "days":
  [{"date" (local YYYY-MM-DD), "level" (a DayLevel value), "uptime_percent" (null: nothing
  monitored), "downtime_seconds", "maintenance_seconds", "unknown_seconds", "incidents"}]},
  oldest first, the last N days with N clamped to 1..history_days.
- `incidents_v1` GET /api/v1/incidents: {"incidents": [{"id", "monitor" (its id), "name" (its
  name), "start", "end" (null: ongoing), "duration_seconds" (null: ongoing), "cause",
  "ongoing"}]}.

v2, Statuspage's public API (summary, status, components, incidents, incidents/unresolved,
scheduled-maintenances/upcoming and /active), field names and vocabularies exactly. A monitor
is a component, a group a component group (`group: true`, `components: [ids]`); ungrouped
monitors have `group_id: null`. Ids are 12 hex digits of a SHA-256 of the monitor id, group
name, incident id or maintenance id: stable across snapshots and restarts. An incident is
"<monitor> is down" with updates newest first (investigating at its start, resolved at its
end). The model has no creation times: a component's `created_at` is the start of its oldest
day bar (or its last transition, if earlier), `start_date` that day; a maintenance is
"created" at its start.

Mapping (Statuspage has no "unknown"):
- State -> component status: up -> operational, degraded -> degraded_performance, down ->
  major_outage (an open incident: the check fails outright), maintenance ->
  under_maintenance, unknown -> degraded_performance. Unknown means we cannot vouch for the
  monitor (no result, a stale one, or our own network failing). "operational" would claim a
  health we have not seen, and an outage status would claim a failure we have not seen;
  degraded_performance is the mildest status that is not green, so a bot says "look" rather
  than "fine" or "down". The v1 API and the page keep "unknown" as it is.
- Overall -> status indicator: operational -> none, degraded -> minor, partial_outage ->
  major, major_outage -> critical, maintenance -> maintenance, unknown -> minor
  ("Status Unknown"), for the same reason.
- Incident impact: "major" (one component fully down is, for the page, a partial outage; the
  same word as the indicator). Maintenance impact: "maintenance".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from typing import Any
from zoneinfo import ZoneInfo

from prober.config.durations import format_duration
from statuspage.snapshot import IncidentView, MaintenanceView, MonitorView, Overall, Snapshot, State

Json = dict[str, Any]

COMPONENT_STATUS = {
    State.UP: "operational",
    State.DEGRADED: "degraded_performance",
    State.DOWN: "major_outage",
    State.MAINTENANCE: "under_maintenance",
    State.UNKNOWN: "degraded_performance",
}
INDICATOR = {
    Overall.OPERATIONAL: ("none", "All Systems Operational"),
    Overall.DEGRADED: ("minor", "Partially Degraded Service"),
    Overall.PARTIAL_OUTAGE: ("major", "Partial System Outage"),
    Overall.MAJOR_OUTAGE: ("critical", "Major System Outage"),
    Overall.MAINTENANCE: ("maintenance", "Service Under Maintenance"),
    Overall.UNKNOWN: ("minor", "Status Unknown"),
}
INCIDENT_IMPACT = "major"
INCIDENTS_LIMIT = 50  # as Statuspage: the 50 most recent


def iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def incident_title(incident: IncidentView) -> str:
    """ "API is down" while open, "API recovered after 12m" once over."""
    if incident.end is None:
        return f"{incident.monitor_name} is down"
    return f"{incident.monitor_name} recovered after {duration_text(incident)}"


def duration_text(incident: IncidentView) -> str:
    """The incident's length to the second ("12m", "1h5m30s"); "ongoing" while open."""
    if incident.end is None:
        return "ongoing"
    seconds = incident.duration_seconds
    if seconds is None:
        seconds = (incident.end - incident.start).total_seconds()
    return format_duration(max(0, round(seconds)))


def monitor_url(s: Snapshot, monitor_id: str) -> str:
    """The monitor's page, absolute when settings.public_url is set."""
    return f"{s.public_url.rstrip('/')}/monitors/{monitor_id}"


def _number(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


# --- v1 ---------------------------------------------------------------------------------


def status_v1(s: Snapshot) -> Json:
    return {
        "title": s.title,
        "generated_at": iso(s.generated_at),
        "overall": s.overall.value,
        "stale": s.stale,
        "last_result_at": iso(s.last_result_at),
        "monitors": [_monitor_v1(m) for m in s.monitors],
    }


def _monitor_v1(m: MonitorView) -> Json:
    return {
        "id": m.id,
        "name": m.name,
        "group": m.group or None,
        "type": m.type,
        "state": m.state.value,
        "since": iso(m.since),
        "checked_at": iso(m.checked_at),
        "stale": m.stale,
        "latency_ms": _number(m.latency_ms),
        "status_code": m.status_code,
        "uptime": {w: _number(m.uptime.get(w)) for w in ("24h", "7d", "30d", "90d")},
        "cert_expires": iso(m.cert_expires),
        "regional": list(m.regional),
    }


def days_count(s: Snapshot, days: int) -> int:
    """The days asked for, clamped to 1..history_days (`days=-5`: one; `days=100000`: all)."""
    return min(max(days, 1), max(s.history_days, 1))


def days_v1(s: Snapshot, monitor_id: str, days: int) -> Json | None:
    m = s.monitor(monitor_id)
    if m is None:
        return None
    count = days_count(s, days)
    return {
        "id": m.id,
        "name": m.name,
        "timezone": s.timezone,
        "days": [
            {
                "date": d.date.isoformat(),
                "level": d.level.value,
                "uptime_percent": _number(d.uptime_percent),
                "downtime_seconds": _number(d.downtime_seconds),
                "maintenance_seconds": _number(d.maintenance_seconds),
                "unknown_seconds": _number(d.unknown_seconds),
                "incidents": d.incidents,
            }
            for d in m.days[-count:]
        ],
    }


def incidents_v1(s: Snapshot) -> Json:
    return {
        "incidents": [
            {
                "id": i.id,
                "monitor": i.monitor_id,
                "name": i.monitor_name,
                "start": iso(i.start),
                "end": iso(i.end),
                "duration_seconds": _number(i.duration_seconds),
                "cause": i.cause,
                "ongoing": i.end is None,
            }
            for i in s.incidents
        ]
    }


# --- v2: Statuspage ---------------------------------------------------------------------


def short_id(kind: str, key: str) -> str:
    return hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:12]


class _Page:
    """One snapshot in Statuspage's shapes; its components are built once and shared."""

    def __init__(self, s: Snapshot) -> None:
        self.s = s
        self.id = short_id("page", s.public_url or s.title)
        self.page: Json = {
            "id": self.id,
            "name": s.title,
            "url": s.public_url or "/",
            "time_zone": s.timezone,
            "updated_at": iso(s.generated_at),
        }
        indicator, description = INDICATOR[s.overall]
        self.status: Json = {"indicator": indicator, "description": description}
        # Groups followed by their members, ungrouped monitors in place, in config order;
        # positions count top-level entries, and members within their group.
        self.by_monitor: dict[str, Json] = {}
        self.components: list[Json] = []
        top = 0
        for g in s.groups:
            if not g.name:
                for m in g.monitors:
                    top += 1
                    self.components.append(self._monitor(m, top, None))
                continue
            top += 1
            gid = short_id("group", g.name)
            members = [self._monitor(m, i, gid) for i, m in enumerate(g.monitors, 1)]
            group = self._component(gid, g.name, g.state, top, g.monitors)
            group.update(group=True, components=[c["id"] for c in members])
            self.components += [group, *members]

    def _component(
        self, cid: str, name: str, state: State, position: int, monitors: tuple[MonitorView, ...]
    ) -> Json:
        """The model keeps no creation times: created_at is the oldest day bar's start (or
        the last transition, if earlier); updated_at is the last transition."""
        s = self.s
        created = min((_created(s, m) for m in monitors), default=s.generated_at)
        updated = max((m.since or s.generated_at for m in monitors), default=s.generated_at)
        return {
            "id": cid,
            "name": name,
            "status": COMPONENT_STATUS[state],
            "created_at": iso(created),
            "updated_at": iso(updated),
            "position": position,
            "description": None,
            "showcase": False,
            "start_date": None,
            "group_id": None,
            "page_id": self.id,
            "group": False,
            "only_show_if_degraded": False,
        }

    def _monitor(self, m: MonitorView, position: int, group_id: str | None) -> Json:
        component = self._component(short_id("component", m.id), m.name, m.state, position, (m,))
        start = m.days[0].date.isoformat() if m.days else None
        description = m.description
        if m.regional:  # degraded_performance, and why
            note = f"Regional problem: failing from {', '.join(m.regional)}"
            description = f"{description} ({note})" if description else note
        component.update(description=description or None, start_date=start, group_id=group_id)
        component["showcase"] = True  # its day bars are on the page
        self.by_monitor[m.id] = component
        return component

    def _event(self, eid: str, name: str, status: str, start: dt.datetime) -> Json:
        """An incident; a scheduled maintenance is one with two more fields."""
        return {
            "id": eid,
            "name": name,
            "status": status,
            "created_at": iso(start),
            "updated_at": iso(start),
            "monitoring_at": None,
            "resolved_at": None,
            "impact": INCIDENT_IMPACT,
            "shortlink": self.s.public_url or "/",
            "started_at": iso(start),
            "page_id": self.id,
            "incident_updates": [],
            "components": [],
        }

    def incidents(self, *, unresolved: bool) -> list[Json]:
        if unresolved:
            return [self._incident(i) for i in self.s.incidents if i.end is None]
        return [self._incident(i) for i in self.s.incidents[:INCIDENTS_LIMIT]]

    def _incident(self, i: IncidentView) -> Json:
        iid = short_id("incident", i.id)
        affected = [self.by_monitor[i.monitor_id]] if i.monitor_id in self.by_monitor else []
        body = f"{i.monitor_name} is down: {i.cause}" if i.cause else f"{i.monitor_name} is down."
        down = _changes(affected, "operational", "major_outage")
        updates = [_update(iid, "investigating", body, i.start, down)]
        if i.end is not None:
            body = f"{i.monitor_name} recovered after {duration_text(i)}."
            up = _changes(affected, "major_outage", "operational")
            updates.insert(0, _update(iid, "resolved", body, i.end, up))
        status = "investigating" if i.end is None else "resolved"
        incident = self._event(iid, f"{i.monitor_name} is down", status, i.start)
        incident.update(updated_at=iso(i.end or i.start), resolved_at=iso(i.end))
        incident.update(shortlink=monitor_url(self.s, i.monitor_id))
        incident.update(incident_updates=updates, components=affected)
        return incident

    def maintenances(self, *, active: bool) -> list[Json]:
        windows = self.s.maintenance_active if active else self.s.maintenance_upcoming
        return [self._maintenance(w, active) for w in windows]

    def _maintenance(self, w: MaintenanceView, active: bool) -> Json:
        """Created at its start: the model keeps no creation time."""
        mid, status = short_id("maintenance", w.id), "in_progress" if active else "scheduled"
        affected = [self.by_monitor[m] for m in w.monitor_ids if m in self.by_monitor]
        body = f"{w.title}: {', '.join(w.monitor_names)}" if w.monitor_names else w.title
        changes = _changes(affected, "operational", "under_maintenance") if active else []
        maintenance = self._event(mid, w.title, status, w.start)
        maintenance.update(impact="maintenance", components=affected)
        maintenance["incident_updates"] = [_update(mid, status, body, w.start, changes)]
        return maintenance | {"scheduled_for": iso(w.start), "scheduled_until": iso(w.end)}


def _created(s: Snapshot, m: MonitorView) -> dt.datetime:
    if not m.days:
        return m.since or s.generated_at
    first = dt.datetime.combine(m.days[0].date, dt.time(), ZoneInfo(s.timezone))
    return min(first, m.since) if m.since is not None else first


def _update(parent: str, status: str, body: str, at: dt.datetime, changes: list[Json]) -> Json:
    return {
        "id": short_id(f"update:{status}", parent),
        "status": status,
        "body": body,
        "incident_id": parent,
        "created_at": iso(at),
        "updated_at": iso(at),
        "display_at": iso(at),
        "affected_components": changes,
        "deliver_notifications": True,
    }


def _changes(components: list[Json], old: str, new: str) -> list[Json]:
    return [
        {"code": c["id"], "name": c["name"], "old_status": old, "new_status": new}
        for c in components
    ]


def summary_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {
        "page": p.page,
        "components": p.components,
        "incidents": p.incidents(unresolved=True),
        "scheduled_maintenances": p.maintenances(active=True) + p.maintenances(active=False),
        "status": p.status,
    }


def status_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "status": p.status}


def components_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "components": p.components}


def incidents_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "incidents": p.incidents(unresolved=False)}


def unresolved_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "incidents": p.incidents(unresolved=True)}


def maintenances_upcoming_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "scheduled_maintenances": p.maintenances(active=False)}


def maintenances_active_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "scheduled_maintenances": p.maintenances(active=True)}
