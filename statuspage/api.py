"""The JSON API: our own v1 shapes (Atlassian Statuspage's v2 shapes: statuspage.atlassian).

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
  "ongoing"}], "notices": [{"id" (the file's stem), "title", "impact", "status", "started_at"
  (the earlier of its first update and its detected incident's start), "updated_at",
  "resolved_at" (null: unresolved), "components": [{"id", "name", "status"}], "detected"
  (the id of the detected incident it is attached to, in "incidents"; null: none),
  "updates": [{"id", "status", "at", "body" (Markdown), "html" (rendered safely)}] (newest
  first)}]}: detected incidents as before, and incidents written by people (unresolved
  first, then newest first).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from prober.config.durations import format_duration
from statuspage.snapshot import IncidentView, MonitorView, NoticeView, Snapshot

Json = dict[str, Any]


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
        ],
        "notices": [_notice_v1(n) for n in s.notices],
    }


def _notice_v1(n: NoticeView) -> Json:
    return {
        "id": n.id,
        "title": n.title,
        "impact": n.impact,
        "status": n.status,
        "started_at": iso(started(n)),
        "updated_at": iso(n.updated_at),
        "resolved_at": iso(n.resolved_at),
        "components": [
            {"id": mid, "name": name, "status": status} for mid, name, status in n.components
        ],
        "detected": None if n.detected is None else n.detected.id,
        "updates": [
            {"id": u.id, "status": u.status, "at": iso(u.at), "body": u.body, "html": u.html}
            for u in n.updates
        ],
    }


def covered(s: Snapshot) -> set[str]:
    """The detected incidents that incidents written by people stand for (the APIs and feeds
    list them as one). Not one still open whose notice was resolved: the checks still see
    it fail, and no one's words cover it any more."""
    return {
        n.detected.id
        for n in s.notices
        if n.detected is not None and (n.resolved_at is None or n.detected.end is not None)
    }


def started(n: NoticeView) -> dt.datetime:
    """When an incident written by people began: its first update, or the detected
    incident's start if that came first."""
    return n.created_at if n.detected is None else min(n.created_at, n.detected.start)
