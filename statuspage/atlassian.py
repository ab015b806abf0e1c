"""Atlassian Statuspage's public API v2 shapes (ours, v1: statuspage.api).

Pure functions from a Snapshot to JSON-ready dicts: summary, status, components, incidents,
incidents/unresolved, scheduled-maintenances and its /upcoming and /active, so bots and
aggregators that read Statuspage pages read ours unchanged. Field names and vocabularies
exactly as Statuspage's; every time with milliseconds and an offset, as Statuspage writes
them ("2026-12-02T17:40:00.000+09:00"; v1 keeps seconds). A monitor is a component, a group
a component group (`group: true`, `components: [ids]`); ungrouped monitors have
`group_id: null`. Ids are 12 hex digits of a SHA-256 of the monitor id, group name,
incident id or maintenance id: stable across snapshots and restarts; an incident written by
people keeps its file's stem as its id, and its updates "STEM-N". A detected incident is
"<monitor> is down" with updates newest first (investigating at its start, resolved at its
end). An incident written by people is one incident with the detected one it is attached to:
its title, status, impact and updates, `started_at` the earlier of its first update and the
detected start; that one is not listed again (unless it is still open while the notice says
resolved: statuspage.api.covered). The model has no creation times: a component's
`created_at` is the start of its oldest day bar (or its last transition, if earlier),
`start_date` that day.

Scheduled maintenance: scheduled (not started) -> in_progress -> completed (ended within
history_days), with one update per step reached: "scheduled" at `created_at`,
"in_progress" at its start, "completed" at its end. The config keeps no time at which a
window was announced, so `created_at` is the earlier of its start and the snapshot's time:
an upcoming window is "known since now" (never a time in the future, never a claim that it
was announced before it was), a started one since its start.

Mapping (Statuspage has no "unknown"):
- State -> component status: up -> operational, degraded -> degraded_performance, down ->
  major_outage (an open incident: the check fails outright), maintenance ->
  under_maintenance, unknown -> degraded_performance; then the worse of that and the status
  unresolved incidents written by people declare for it (Snapshot.declared; Statuspage's
  order: operational < under_maintenance < degraded_performance < partial_outage <
  major_outage). A monitor whose state is down with no open incident was raised there by a
  declaration alone: it shows the declared status. Unknown means we cannot vouch for the
  monitor (no result, a stale one, or our own network failing). "operational" would claim a
  health we have not seen, and an outage status would claim a failure we have not seen;
  degraded_performance is the mildest status that is not green, so a bot says "look" rather
  than "fine" or "down". The v1 API and the page keep "unknown" as it is.
- Overall -> status indicator: operational -> none, degraded -> minor, partial_outage ->
  major, major_outage -> critical, maintenance -> maintenance, unknown -> minor
  ("Status Unknown"), for the same reason. Overall judges what the checks saw; what people
  say raises it: the worst status they declare for a component (degraded_performance ->
  minor, an outage -> major) and the impact of their unresolved incidents (none <
  maintenance < minor < major < critical).
- A detected incident's impact: "major" (one component fully down is, for the page, a
  partial outage; the same word as the indicator); one written by people has its own.
  Maintenance impact: "maintenance".
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any
from zoneinfo import ZoneInfo

from prober.notices import ComponentStatus, Progress
from statuspage.api import covered, duration_text, monitor_url, started
from statuspage.snapshot import (
    IncidentView,
    MaintenanceView,
    MonitorView,
    NoticeView,
    Overall,
    Snapshot,
    State,
)

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
INCIDENTS_LIMIT = 50  # as Statuspage: the 50 most recent (maintenances too)
# indicators, mildest first ("maintenance" yields to any trouble), and what they say
INDICATORS = ("none", "maintenance", "minor", "major", "critical")
RAISED = {
    "minor": "Partially Degraded Service",
    "major": "Partial System Outage",
    "critical": "Major System Outage",
}
COMPONENT_INDICATOR = {
    ComponentStatus.OPERATIONAL: "none",
    ComponentStatus.UNDER_MAINTENANCE: "maintenance",
    ComponentStatus.DEGRADED_PERFORMANCE: "minor",
    ComponentStatus.PARTIAL_OUTAGE: "major",
    ComponentStatus.MAJOR_OUTAGE: "major",  # one component: a partial outage of the page
}


def stamp(moment: dt.datetime | None) -> str | None:
    """v2's times, as Statuspage writes them: milliseconds and an offset."""
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def short_id(kind: str, key: str) -> str:
    return hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:12]


def worse(a: str, b: str) -> str:
    """The worse of two component statuses, in Statuspage's order."""
    return max(a, b, key=lambda status: ComponentStatus(status).severity)


def component_status(m: MonitorView, declared: str | None) -> str:
    """The monitor's status from its state, or the worse declared one. A state of down
    with no open incident was raised by the declaration alone (statuspage.notices.attach):
    the declaration says how bad (partial_outage is not major_outage)."""
    derived = COMPONENT_STATUS[m.state]
    if declared is None:
        return derived
    if m.state is State.DOWN and all(i.end is not None for i in m.incidents):
        derived = ComponentStatus.OPERATIONAL.value
    return worse(derived, declared)


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
            "updated_at": stamp(s.generated_at),
        }
        self.declared = dict(s.declared)
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
            status = ComponentStatus.OPERATIONAL.value
            for member in members:
                status = worse(status, member["status"])
            group = self._component(gid, g.name, status, top, g.monitors)
            group.update(group=True, components=[c["id"] for c in members])
            self.components += [group, *members]
        self.status: Json = self._indicator()

    def _indicator(self) -> Json:
        """The banner's indicator, raised to the worst declared component status and to
        the impact of unresolved incidents written by people."""
        indicator, description = INDICATOR[self.s.overall]
        wanted = [COMPONENT_INDICATOR[ComponentStatus(status)] for status in self.declared.values()]
        wanted += [n.impact for n in self.s.notices if n.resolved_at is None]
        for other in wanted:
            if other in RAISED and INDICATORS.index(other) > INDICATORS.index(indicator):
                indicator, description = other, RAISED[other]
        return {"indicator": indicator, "description": description}

    def _component(
        self, cid: str, name: str, status: str, position: int, monitors: tuple[MonitorView, ...]
    ) -> Json:
        """The model keeps no creation times: created_at is the oldest day bar's start (or
        the last transition, if earlier); updated_at is the last transition."""
        s = self.s
        created = min((_created(s, m) for m in monitors), default=s.generated_at)
        updated = max((m.since or s.generated_at for m in monitors), default=s.generated_at)
        return {
            "id": cid,
            "name": name,
            "status": status,
            "created_at": stamp(created),
            "updated_at": stamp(updated),
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
        status = component_status(m, self.declared.get(m.id))
        component = self._component(short_id("component", m.id), m.name, status, position, (m,))
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
            "created_at": stamp(start),
            "updated_at": stamp(start),
            "monitoring_at": None,
            "resolved_at": None,
            "impact": INCIDENT_IMPACT,
            "shortlink": self.s.public_url or "/",
            "started_at": stamp(start),
            "page_id": self.id,
            "incident_updates": [],
            "components": [],
        }

    def incidents(self, *, unresolved: bool) -> list[Json]:
        """Incidents written by people and detected ones (those attached to one written by
        people are part of it), newest first by start; unresolved ones only, or the 50
        newest."""
        attached = covered(self.s)
        found: list[tuple[dt.datetime, bool, NoticeView | IncidentView]] = [
            (started(n), n.resolved_at is None, n) for n in self.s.notices
        ]
        found += [(i.start, i.end is None, i) for i in self.s.incidents if i.id not in attached]
        found.sort(key=lambda event: event[0], reverse=True)  # stable: ties keep their order
        chosen = [e for _, open_, e in found if open_] if unresolved else [e for *_, e in found]
        return [
            self._notice(e) if isinstance(e, NoticeView) else self._incident(e)
            for e in chosen[: None if unresolved else INCIDENTS_LIMIT]
        ]

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
        incident.update(updated_at=stamp(i.end or i.start), resolved_at=stamp(i.end))
        incident.update(shortlink=monitor_url(self.s, i.monitor_id))
        incident.update(incident_updates=updates, components=affected)
        return incident

    def _notice(self, n: NoticeView) -> Json:
        """One incident written by people. Its components' statuses as declared (the
        detected monitor's, when it names none: major_outage, as a detected incident's):
        set by its first update, kept by the next ones, back to operational by a resolving
        one."""
        declared = {mid: status for mid, _, status in n.components}
        if n.detected is not None:
            declared.setdefault(n.detected.monitor_id, ComponentStatus.MAJOR_OUTAGE.value)
        public = [(mid, status) for mid, status in declared.items() if mid in self.by_monitor]
        affected = [self.by_monitor[mid] for mid, _ in public]
        updates: list[Json] = []
        previous: dict[str, str] = {}
        for u in reversed(n.updates):  # oldest first: each changes what the last one set
            current = dict(public)
            if u.status == Progress.RESOLVED:
                current = dict.fromkeys(current, ComponentStatus.OPERATIONAL.value)
            changes = [
                {
                    "code": self.by_monitor[mid]["id"],
                    "name": self.by_monitor[mid]["name"],
                    "old_status": previous.get(mid, ComponentStatus.OPERATIONAL.value),
                    "new_status": status,
                }
                for mid, status in current.items()
            ]
            previous = current
            update = _update(n.id, u.status, u.body, u.at, changes)
            update.update(id=u.id, deliver_notifications=u.notify)
            updates.insert(0, update)
        monitoring = [u.at for u in n.updates if u.status == Progress.MONITORING]
        incident = self._event(n.id, n.title, n.status, started(n))
        incident.update(updated_at=stamp(n.updated_at), resolved_at=stamp(n.resolved_at))
        incident.update(monitoring_at=stamp(min(monitoring, default=None)))
        incident.update(impact=n.impact, components=affected)
        incident["incident_updates"] = updates
        return incident

    def maintenances(self, *, active: bool) -> list[Json]:
        if active:
            return [self._maintenance(w, "in_progress") for w in self.s.maintenance_active]
        return [self._maintenance(w, "scheduled") for w in self.s.maintenance_upcoming]

    def all_maintenances(self) -> list[Json]:
        """Upcoming, active and completed, newest first by start; the 50 newest."""
        found = [(w, "scheduled") for w in self.s.maintenance_upcoming]
        found += [(w, "in_progress") for w in self.s.maintenance_active]
        found += [(w, "completed") for w in self.s.maintenance_completed]
        found.sort(key=lambda event: event[0].start, reverse=True)
        return [self._maintenance(w, status) for w, status in found[:INCIDENTS_LIMIT]]

    def _maintenance(self, w: MaintenanceView, status: str) -> Json:
        """One update per step reached; created (announced) at the earlier of its start
        and the snapshot's time (the module's docstring says why)."""
        mid = short_id("maintenance", w.id)
        affected = [self.by_monitor[m] for m in w.monitor_ids if m in self.by_monitor]
        what = f"{w.title}: {', '.join(w.monitor_names)}" if w.monitor_names else w.title
        created = min(w.start, self.s.generated_at)
        steps = [
            ("scheduled", created, f"Scheduled: {what}", ("operational", "operational")),
            ("in_progress", w.start, f"In progress: {what}", ("operational", "under_maintenance")),
            ("completed", w.end, f"Completed: {what}", ("under_maintenance", "operational")),
        ]
        reached = steps[: 1 + ["scheduled", "in_progress", "completed"].index(status)]
        updates = [
            _update(mid, step, body, at, _changes(affected, *change))
            for step, at, body, change in reversed(reached)
        ]
        maintenance = self._event(mid, w.title, status, w.start)
        maintenance.update(impact="maintenance", components=affected, incident_updates=updates)
        maintenance.update(created_at=stamp(created), updated_at=stamp(reached[-1][1]))
        if status == "completed":
            maintenance["resolved_at"] = stamp(w.end)
        return maintenance | {"scheduled_for": stamp(w.start), "scheduled_until": stamp(w.end)}


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
        "created_at": stamp(at),
        "updated_at": stamp(at),
        "display_at": stamp(at),
        "affected_components": changes,
        "deliver_notifications": True,
        "custom_tweet": None,
        "tweet_id": None,
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


def maintenances_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "scheduled_maintenances": p.all_maintenances()}


def maintenances_upcoming_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "scheduled_maintenances": p.maintenances(active=False)}


def maintenances_active_v2(s: Snapshot) -> Json:
    p = _Page(s)
    return {"page": p.page, "scheduled_maintenances": p.maintenances(active=True)}
