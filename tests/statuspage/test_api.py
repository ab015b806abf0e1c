"""The JSON API: exact v1 shapes, and Statuspage's v2 field lists and vocabularies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import feedparser
import pytest

from statuspage import api, atlassian, feeds
from statuspage.snapshot import (
    Group,
    IncidentView,
    MaintenanceView,
    NoticeUpdateView,
    NoticeView,
    Overall,
    Snapshot,
    State,
)
from tests.statuspage.factory import HOSTILE, NOW, ONGOING, calm, monitor, sample

# Statuspage's public API v2, field by field.
PAGE = {"id", "name", "url", "time_zone", "updated_at"}
STATUS = {"indicator", "description"}
COMPONENT = {
    *("id", "name", "status", "created_at", "updated_at", "position", "description"),
    *("showcase", "start_date", "group_id", "page_id", "group", "only_show_if_degraded"),
}
INCIDENT = {
    *("id", "name", "status", "created_at", "updated_at", "monitoring_at", "resolved_at"),
    *("impact", "shortlink", "started_at", "page_id", "incident_updates", "components"),
}
MAINTENANCE = INCIDENT | {"scheduled_for", "scheduled_until"}
UPDATE = {
    *("id", "status", "body", "incident_id", "created_at", "updated_at", "display_at"),
    *("affected_components", "deliver_notifications", "custom_tweet", "tweet_id"),
}
AFFECTED = {"code", "name", "old_status", "new_status"}

INDICATORS = {"none", "minor", "major", "critical", "maintenance"}
COMPONENT_STATUSES = {
    *("operational", "degraded_performance", "partial_outage", "major_outage"),
    "under_maintenance",
}
INCIDENT_STATUSES = {"investigating", "identified", "monitoring", "resolved", "postmortem"}
IMPACTS = {"none", "minor", "major", "critical"}
MAINTENANCE_STATUSES = {"scheduled", "in_progress", "verifying", "completed"}

V2: list[Callable[[Snapshot], dict[str, Any]]] = [
    atlassian.summary_v2,
    atlassian.status_v2,
    atlassian.components_v2,
    atlassian.incidents_v2,
    atlassian.unresolved_v2,
    atlassian.maintenances_v2,
    atlassian.maintenances_upcoming_v2,
    atlassian.maintenances_active_v2,
]
ALL = [api.status_v1, api.incidents_v1, lambda s: api.days_v1(s, "api", 90), *V2]


def day(date: str) -> dict[str, Any]:
    return {
        "date": date,
        "level": "up",
        "uptime_percent": 100.0,
        "downtime_seconds": 0.0,
        "maintenance_seconds": 0.0,
        "unknown_seconds": 0.0,
        "incidents": 0,
    }


def test_status_v1_calm_exact() -> None:
    assert api.status_v1(calm()) == {
        "title": "Acme <Status>",
        "generated_at": "2026-11-23T13:05:00+09:00",
        "overall": "operational",
        "stale": False,
        "last_result_at": "2026-11-23T13:04:40+09:00",
        "monitors": [
            {
                "id": "api",
                "name": "API",
                "group": None,
                "type": "http",
                "state": "up",
                "since": "2026-11-21T13:05:00+09:00",
                "checked_at": "2026-11-23T13:04:40+09:00",
                "stale": False,
                "latency_ms": 42.0,
                "status_code": 200,
                "uptime": {"24h": 100.0, "7d": 99.99, "30d": 99.95, "90d": 99.9},
                "cert_expires": None,
                "regional": [],
            }
        ],
    }


def test_days_v1_calm_exact() -> None:
    assert api.days_v1(calm(), "api", 3) == {
        "id": "api",
        "name": "API",
        "timezone": "Asia/Seoul",
        "days": [day("2026-11-21"), day("2026-11-22"), day("2026-11-23")],
    }


def test_incidents_v1_exact() -> None:
    assert api.incidents_v1(calm()) == {"incidents": [], "notices": []}
    assert api.incidents_v1(sample()) == {
        "incidents": [
            {
                "id": "api-1795400000000",
                "monitor": "api",
                "name": "API",
                "start": "2026-11-23T12:40:00+09:00",
                "end": None,
                "duration_seconds": None,
                "cause": "status: saw 503, wanted [200]",
                "ongoing": True,
            },
            {
                "id": "web-1795000000000",
                "monitor": "web",
                "name": HOSTILE,
                "start": "2026-11-20T11:05:00+09:00",
                "end": "2026-11-20T11:17:00+09:00",
                "duration_seconds": 720.0,
                "cause": f"body: {HOSTILE}",
                "ongoing": False,
            },
        ],
        "notices": [],
    }


def test_status_v1_sample_groups_and_stale() -> None:
    monitors = {m["id"]: m for m in api.status_v1(sample())["monitors"]}
    assert list(monitors) == ["api", "db", "web", "cron"]
    assert monitors["api"]["group"] == "Backend"
    assert monitors["web"]["group"] == "Frontend <&>"
    assert monitors["cron"]["group"] is None
    assert monitors["cron"]["stale"] is True
    assert monitors["cron"]["state"] == "unknown"
    assert monitors["cron"]["uptime"]["24h"] is None
    assert monitors["api"]["cert_expires"] == "2027-01-02T13:05:00+09:00"


@pytest.mark.parametrize(
    ("asked", "got"), [(-5, 1), (0, 1), (1, 1), (30, 30), (90, 90), (1000, 90)]
)
def test_days_v1_clamps(asked: int, got: int) -> None:
    result = api.days_v1(sample(), "api", asked)
    assert result is not None
    assert len(result["days"]) == got
    assert result["days"][-1]["date"] == NOW.date().isoformat()
    assert result["days"][-1]["level"] == "down"


def test_days_v1_clamps_to_history_days() -> None:
    result = api.days_v1(dataclasses.replace(sample(), history_days=30), "api", 90)
    assert result is not None
    assert len(result["days"]) == 30


def test_unknown_monitor_is_none() -> None:
    assert api.days_v1(sample(), "nope", 90) is None
    assert api.days_v1(sample(), "", 90) is None


@pytest.mark.parametrize("build", [sample, calm])
@pytest.mark.parametrize("render", ALL)
def test_json_serialisable(build: Callable[[], Snapshot], render: Callable[..., Any]) -> None:
    json.dumps(render(build()), allow_nan=False)


def test_non_finite_numbers_become_null() -> None:
    m = monitor("api", latency_ms=float("nan"), uptime={"24h": float("inf"), "7d": None})
    s = dataclasses.replace(calm(), groups=(Group("", (m,)),))
    out = api.status_v1(s)["monitors"][0]
    assert out["latency_ms"] is None
    assert out["uptime"] == {"24h": None, "7d": None, "30d": None, "90d": None}
    json.dumps(out, allow_nan=False)


# --- v2 ---------------------------------------------------------------------------------


def check_component(c: dict[str, Any]) -> None:
    assert set(c) == (COMPONENT | {"components"} if c["group"] else COMPONENT)
    assert c["status"] in COMPONENT_STATUSES
    assert isinstance(c["position"], int) and c["position"] >= 1


def check_event(e: dict[str, Any], *, maintenance: bool) -> None:
    assert set(e) == (MAINTENANCE if maintenance else INCIDENT)
    statuses = MAINTENANCE_STATUSES if maintenance else INCIDENT_STATUSES
    assert e["status"] in statuses
    assert e["impact"] in (IMPACTS | {"maintenance"} if maintenance else IMPACTS)
    assert e["incident_updates"]
    for update in e["incident_updates"]:
        assert set(update) == UPDATE
        assert update["status"] in statuses
        assert update["incident_id"] == e["id"]
        for change in update["affected_components"]:
            assert set(change) == AFFECTED
            assert {change["old_status"], change["new_status"]} <= COMPONENT_STATUSES
    for c in e["components"]:
        check_component(c)


@pytest.mark.parametrize("build", [sample, calm])
def test_summary_v2_field_lists_and_vocabularies(build: Callable[[], Snapshot]) -> None:
    summary = atlassian.summary_v2(build())
    assert set(summary) == {"page", "components", "incidents", "scheduled_maintenances", "status"}
    assert set(summary["page"]) == PAGE
    assert set(summary["status"]) == STATUS
    assert summary["status"]["indicator"] in INDICATORS
    for c in summary["components"]:
        check_component(c)
        assert c["page_id"] == summary["page"]["id"]
    for e in summary["incidents"]:
        check_event(e, maintenance=False)
    for e in summary["scheduled_maintenances"]:
        check_event(e, maintenance=True)


def test_v2_endpoints_shapes() -> None:
    s = sample()
    assert set(atlassian.status_v2(s)) == {"page", "status"}
    assert set(atlassian.components_v2(s)) == {"page", "components"}
    for render in (atlassian.incidents_v2, atlassian.unresolved_v2):
        out = render(s)
        assert set(out) == {"page", "incidents"}
        for e in out["incidents"]:
            check_event(e, maintenance=False)
    for render in (
        atlassian.maintenances_v2,
        atlassian.maintenances_upcoming_v2,
        atlassian.maintenances_active_v2,
    ):
        out = render(s)
        assert set(out) == {"page", "scheduled_maintenances"}
        for e in out["scheduled_maintenances"]:
            check_event(e, maintenance=True)


def test_v2_groups_are_components_with_members() -> None:
    components = atlassian.components_v2(sample())["components"]
    by_name = {c["name"]: c for c in components}
    backend, frontend = by_name["Backend"], by_name["Frontend <&>"]
    assert backend["group"] is True and frontend["group"] is True
    assert backend["components"] == [by_name["API"]["id"], by_name["Database"]["id"]]
    assert frontend["components"] == [by_name[HOSTILE]["id"]]
    assert by_name["API"]["group_id"] == backend["id"]
    assert by_name["Nightly backup"]["group_id"] is None
    assert by_name["Nightly backup"]["group"] is False
    top = [c["position"] for c in components if c["group_id"] is None]
    assert top == [1, 2, 3]
    assert [by_name["API"]["position"], by_name["Database"]["position"]] == [1, 2]
    assert backend["status"] == "major_outage"  # the worst of its members
    assert [c["name"] for c in components] == [
        *("Backend", "API", "Database", "Frontend <&>", HOSTILE, "Nightly backup"),
    ]


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (State.UP, "operational"),
        (State.DEGRADED, "degraded_performance"),
        (State.DOWN, "major_outage"),
        (State.MAINTENANCE, "under_maintenance"),
        (State.UNKNOWN, "degraded_performance"),
    ],
)
def test_v2_component_status_mapping(state: State, status: str) -> None:
    s = dataclasses.replace(calm(), groups=(Group("", (monitor("api", state=state),)),))
    assert atlassian.components_v2(s)["components"][0]["status"] == status


@pytest.mark.parametrize("overall", list(Overall))
def test_v2_indicator_for_every_overall(overall: Overall) -> None:
    status = atlassian.status_v2(dataclasses.replace(sample(), overall=overall))["status"]
    assert status["indicator"] in INDICATORS
    assert status["description"]
    if overall is Overall.UNKNOWN:
        assert status["indicator"] != "none"  # never "all operational" when we do not know


def test_v2_incidents() -> None:
    ongoing, resolved = atlassian.incidents_v2(sample())["incidents"]
    assert ongoing["name"] == "API is down"
    assert ongoing["status"] == "investigating"
    assert ongoing["resolved_at"] is None
    assert ongoing["shortlink"] == "https://status.example.com/monitors/api"
    assert [c["name"] for c in ongoing["components"]] == ["API"]
    assert resolved["name"] == f"{HOSTILE} is down"
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] == "2026-11-20T11:17:00.000+09:00"
    assert resolved["started_at"] == "2026-11-20T11:05:00.000+09:00"
    assert [u["status"] for u in resolved["incident_updates"]] == ["resolved", "investigating"]
    assert resolved["incident_updates"][0]["body"].endswith("recovered after 12m.")
    assert atlassian.unresolved_v2(sample())["incidents"] == [ongoing]


def test_v2_incidents_at_most_50() -> None:
    start = NOW - dt.timedelta(days=1)
    many = tuple(IncidentView(f"api-{n}", "api", "API", start, start, 0.0, "x") for n in range(60))
    assert (
        len(atlassian.incidents_v2(dataclasses.replace(sample(), incidents=many))["incidents"])
        == 50
    )


def test_v2_maintenances() -> None:
    s = sample()
    (active,) = atlassian.maintenances_active_v2(s)["scheduled_maintenances"]
    (upcoming,) = atlassian.maintenances_upcoming_v2(s)["scheduled_maintenances"]
    assert (active["status"], upcoming["status"]) == ("in_progress", "scheduled")
    assert active["scheduled_for"] == "2026-11-23T12:55:00.000+09:00"
    assert active["scheduled_until"] == "2026-11-23T13:55:00.000+09:00"
    assert [c["name"] for c in upcoming["components"]] == ["API", "Database"]
    assert atlassian.summary_v2(s)["scheduled_maintenances"] == [active, upcoming]


def ids(s: Snapshot) -> list[str]:
    summary = atlassian.summary_v2(s)
    found = [summary["page"]["id"]]
    found += [c["id"] for c in summary["components"]]
    for e in atlassian.incidents_v2(s)["incidents"] + summary["scheduled_maintenances"]:
        found += [e["id"], *(u["id"] for u in e["incident_updates"])]
    return found


def test_v2_ids_stable_across_snapshots_and_unique() -> None:
    first = ids(sample())
    later = dataclasses.replace(
        sample(), generated_at=NOW + dt.timedelta(minutes=5), overall=Overall.OPERATIONAL
    )
    assert ids(later) == first == ids(sample())
    assert len(set(first)) == len(first)
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in first)


def test_v2_relative_links_without_public_url() -> None:
    s = dataclasses.replace(sample(), public_url="")
    assert atlassian.status_v2(s)["page"]["url"] == "/"
    assert atlassian.incidents_v2(s)["incidents"][0]["shortlink"] == "/monitors/api"


# --- incidents written by people, maintenance lifecycle, Statuspage clients' needs -------

STAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}[+-][0-9]{2}:[0-9]{2}"
)
TIMES = {"created_at", "updated_at", "monitoring_at", "resolved_at", "started_at", "display_at"}
TIMES |= {"scheduled_for", "scheduled_until"}


def notice(
    *updates: tuple[str, dt.datetime, str],
    nid: str = "2026-11-23-api-errors",
    impact: str = "major",
    components: tuple[tuple[str, str, str], ...] = (("api", "API", "partial_outage"),),
    detected: IncidentView | None = ONGOING,
    notify: bool = True,
) -> NoticeView:
    """A notice as statuspage.notices.attach makes it; `updates` oldest first."""
    views = tuple(
        NoticeUpdateView(f"{nid}-{n}", status, at, body, f"<p>{body}</p>", notify)
        for n, (status, at, body) in enumerate(updates, 1)
    )
    first, last = views[0], views[-1]
    return NoticeView(
        id=nid,
        title="Elevated API errors <b>",
        impact=impact,
        status=last.status,
        created_at=first.at if detected is None else min(first.at, detected.start),
        updated_at=last.at,
        resolved_at=last.at if last.status == "resolved" else None,
        components=components,
        updates=tuple(reversed(views)),
        detected=detected,
    )


INVESTIGATING = ("investigating", NOW - dt.timedelta(minutes=20), "We are *looking* into it.")
MONITORING = ("monitoring", NOW - dt.timedelta(minutes=10), "A fix is out.")
RESOLVED_UPDATE = ("resolved", NOW - dt.timedelta(minutes=5), "All good.")


def with_notices(*notices: NoticeView, declared: tuple[tuple[str, str], ...] = ()) -> Snapshot:
    return dataclasses.replace(sample(), notices=notices, declared=declared)


def test_incidents_v1_keeps_detected_ones_and_adds_notices() -> None:
    s = with_notices(notice(INVESTIGATING, MONITORING))
    out = api.incidents_v1(s)
    assert out["incidents"] == api.incidents_v1(sample())["incidents"]  # unchanged
    assert out["notices"] == [
        {
            "id": "2026-11-23-api-errors",
            "title": "Elevated API errors <b>",
            "impact": "major",
            "status": "monitoring",
            "started_at": "2026-11-23T12:40:00+09:00",  # the detected incident's start
            "updated_at": "2026-11-23T12:55:00+09:00",
            "resolved_at": None,
            "components": [{"id": "api", "name": "API", "status": "partial_outage"}],
            "detected": "api-1795400000000",
            "updates": [
                {
                    "id": "2026-11-23-api-errors-2",
                    "status": "monitoring",
                    "at": "2026-11-23T12:55:00+09:00",
                    "body": "A fix is out.",
                    "html": "<p>A fix is out.</p>",
                },
                {
                    "id": "2026-11-23-api-errors-1",
                    "status": "investigating",
                    "at": "2026-11-23T12:45:00+09:00",
                    "body": "We are *looking* into it.",
                    "html": "<p>We are *looking* into it.</p>",
                },
            ],
        }
    ]


def test_v2_notice_with_detected_is_one_incident() -> None:
    s = with_notices(notice(INVESTIGATING, MONITORING), declared=(("api", "partial_outage"),))
    incidents = atlassian.incidents_v2(s)["incidents"]
    assert [i["name"] for i in incidents] == ["Elevated API errors <b>", f"{HOSTILE} is down"]
    person = incidents[0]
    check_event(person, maintenance=False)
    assert person["id"] == "2026-11-23-api-errors"
    assert (person["status"], person["impact"]) == ("monitoring", "major")
    assert person["started_at"] == person["created_at"] == "2026-11-23T12:40:00.000+09:00"
    assert person["updated_at"] == "2026-11-23T12:55:00.000+09:00"
    assert person["monitoring_at"] == "2026-11-23T12:55:00.000+09:00"
    assert person["resolved_at"] is None
    assert [c["name"] for c in person["components"]] == ["API"]
    updates = person["incident_updates"]
    assert [u["status"] for u in updates] == ["monitoring", "investigating"]  # newest first
    assert [u["id"] for u in updates] == ["2026-11-23-api-errors-2", "2026-11-23-api-errors-1"]
    assert updates[1]["body"] == "We are *looking* into it."
    assert updates[1]["display_at"] == "2026-11-23T12:45:00.000+09:00"
    api_id = person["components"][0]["id"]
    assert updates[1]["affected_components"] == [
        {"code": api_id, "name": "API", "old_status": "operational", "new_status": "partial_outage"}
    ]
    assert updates[0]["affected_components"][0]["old_status"] == "partial_outage"
    for u in updates:
        assert (u["custom_tweet"], u["tweet_id"], u["deliver_notifications"]) == (None, None, True)
    assert atlassian.unresolved_v2(s)["incidents"] == [person]
    assert atlassian.summary_v2(s)["incidents"] == [person]


def test_v2_resolved_notice_and_one_without_detected_are_listed_by_start() -> None:
    old = notice(
        ("investigating", NOW - dt.timedelta(days=5), "Slow logins."),
        ("resolved", NOW - dt.timedelta(days=4), "Fixed."),
        nid="old",
        impact="minor",
        detected=None,
        components=(("db", "Database", "degraded_performance"),),
        notify=False,
    )
    ended = dataclasses.replace(ONGOING, end=NOW - dt.timedelta(minutes=6), duration_seconds=1140.0)
    s = dataclasses.replace(
        with_notices(notice(INVESTIGATING, RESOLVED_UPDATE, detected=ended), old),
        incidents=(ended, sample().incidents[1]),
    )
    names = [i["name"] for i in atlassian.incidents_v2(s)["incidents"]]
    assert names == ["Elevated API errors <b>", f"{HOSTILE} is down", "Elevated API errors <b>"]
    resolved = atlassian.incidents_v2(s)["incidents"][2]
    assert resolved["id"] == "old"
    assert (resolved["status"], resolved["impact"]) == ("resolved", "minor")
    assert resolved["resolved_at"] == "2026-11-19T13:05:00.000+09:00"
    assert [u["deliver_notifications"] for u in resolved["incident_updates"]] == [False, False]
    back = resolved["incident_updates"][0]["affected_components"]
    assert [(c["old_status"], c["new_status"]) for c in back] == [
        ("degraded_performance", "operational")
    ]
    assert atlassian.unresolved_v2(s)["incidents"] == []


def test_v2_detected_incident_still_open_after_its_notice_resolved_shows_again() -> None:
    s = with_notices(notice(INVESTIGATING, RESOLVED_UPDATE))  # ONGOING: API still fails
    names = [i["name"] for i in atlassian.incidents_v2(s)["incidents"]]
    assert names == ["Elevated API errors <b>", "API is down", f"{HOSTILE} is down"]
    assert [i["name"] for i in atlassian.unresolved_v2(s)["incidents"]] == ["API is down"]
    assert [e["title"] for e in feedparser.parse(feeds.atom(s)).entries][:2] == [
        "Resolved: Elevated API errors <b>",
        "API is down",
    ]


@pytest.mark.parametrize(
    ("state", "incidents", "declared", "status"),
    [
        (State.UP, (), "partial_outage", "partial_outage"),
        (State.UP, (), "under_maintenance", "under_maintenance"),
        (State.DOWN, (ONGOING,), "degraded_performance", "major_outage"),  # derived is worse
        (State.DOWN, (), "partial_outage", "partial_outage"),  # down only by the declaration
        (State.DEGRADED, (), "under_maintenance", "degraded_performance"),
        (State.MAINTENANCE, (), "major_outage", "major_outage"),
        (State.UNKNOWN, (), "operational", "degraded_performance"),
    ],
)
def test_v2_component_status_is_the_worse_of_derived_and_declared(
    state: State, incidents: tuple[IncidentView, ...], declared: str, status: str
) -> None:
    m = monitor("api", state=state, incidents=incidents, group="G")
    s = dataclasses.replace(calm(), groups=(Group("G", (m,)),), declared=(("api", declared),))
    group, member = atlassian.components_v2(s)["components"]
    assert member["status"] == status
    assert group["status"] == status  # the worst of its members


@pytest.mark.parametrize(
    ("impact", "resolved", "indicator"),
    [("critical", False, "critical"), ("minor", False, "minor"), ("critical", True, "none")],
)
def test_v2_indicator_counts_unresolved_notices_impact(
    impact: str, resolved: bool, indicator: str
) -> None:
    updates = (INVESTIGATING, RESOLVED_UPDATE) if resolved else (INVESTIGATING,)
    n = notice(*updates, impact=impact, detected=None, components=())
    status = atlassian.status_v2(dataclasses.replace(calm(), notices=(n,)))["status"]
    assert status["indicator"] == indicator
    assert status["description"] != "All Systems Operational" or indicator == "none"


def test_v2_indicator_counts_declared_component_status() -> None:
    s = dataclasses.replace(calm(), declared=(("api", "degraded_performance"),))
    assert atlassian.status_v2(s)["status"]["indicator"] == "minor"
    s = dataclasses.replace(
        calm(), overall=Overall.MAINTENANCE, declared=(("api", "partial_outage"),)
    )
    assert atlassian.status_v2(s)["status"] == {
        "indicator": "major",
        "description": "Partial System Outage",
    }


WINDOW = MaintenanceView(
    id="w-1",
    title="DB upgrade",
    start=NOW + dt.timedelta(hours=2),
    end=NOW + dt.timedelta(hours=3),
    monitor_ids=("db",),
    monitor_names=("Database",),
)


def at(moment: dt.datetime, where: str) -> Snapshot:
    """The sample page at `moment`, WINDOW being upcoming, active or completed."""
    lists = {"upcoming": (), "active": (), "completed": ()} | {where: (WINDOW,)}
    return dataclasses.replace(
        calm(),
        groups=sample().groups,
        generated_at=moment,
        maintenance_upcoming=lists["upcoming"],
        maintenance_active=lists["active"],
        maintenance_completed=lists["completed"],
    )


def test_v2_maintenance_lifecycle_across_its_window() -> None:
    before = at(NOW, "upcoming")
    during = at(WINDOW.start + dt.timedelta(minutes=5), "active")
    after = at(WINDOW.end + dt.timedelta(days=1), "completed")
    (scheduled,) = atlassian.maintenances_upcoming_v2(before)["scheduled_maintenances"]
    (progress,) = atlassian.maintenances_active_v2(during)["scheduled_maintenances"]
    (completed,) = atlassian.maintenances_v2(after)["scheduled_maintenances"]
    assert [scheduled["status"], progress["status"], completed["status"]] == [
        *("scheduled", "in_progress", "completed"),
    ]
    assert [u["status"] for u in completed["incident_updates"]] == [
        *("completed", "in_progress", "scheduled"),
    ]
    assert [u["status"] for u in progress["incident_updates"]] == ["in_progress", "scheduled"]
    assert [u["status"] for u in scheduled["incident_updates"]] == ["scheduled"]
    assert scheduled["id"] == progress["id"] == completed["id"]
    # announced "now" while upcoming (never in the future), at its start once it began
    assert scheduled["created_at"] == "2026-11-23T13:05:00.000+09:00"
    assert progress["created_at"] == completed["created_at"] == "2026-11-23T15:05:00.000+09:00"
    assert completed["resolved_at"] == completed["scheduled_until"]
    assert completed["updated_at"] == "2026-11-23T16:05:00.000+09:00"
    assert progress["resolved_at"] is None and scheduled["resolved_at"] is None
    changes = [
        (c["name"], c["old_status"], c["new_status"])
        for u in completed["incident_updates"]
        for c in u["affected_components"]
    ]
    assert changes == [
        ("Database", "under_maintenance", "operational"),
        ("Database", "operational", "under_maintenance"),
        ("Database", "operational", "operational"),
    ]
    for s in (before, during, after):
        for m in atlassian.maintenances_v2(s)["scheduled_maintenances"]:
            check_event(m, maintenance=True)
            assert m["created_at"] <= atlassian.stamp(s.generated_at)
            for u in m["incident_updates"]:
                assert u["created_at"] <= atlassian.stamp(s.generated_at)
    assert atlassian.maintenances_upcoming_v2(after)["scheduled_maintenances"] == []
    assert atlassian.maintenances_active_v2(after)["scheduled_maintenances"] == []


def test_v2_all_maintenances_newest_first() -> None:
    done = dataclasses.replace(
        WINDOW, id="w-0", start=NOW - dt.timedelta(days=3), end=NOW - dt.timedelta(days=3, hours=-1)
    )
    s = dataclasses.replace(sample(), maintenance_completed=(done,))
    listed = atlassian.maintenances_v2(s)["scheduled_maintenances"]
    assert [(m["name"], m["status"]) for m in listed] == [
        ("Network <maintenance>", "scheduled"),
        ("DB upgrade", "in_progress"),
        ("DB upgrade", "completed"),
    ]
    assert atlassian.summary_v2(s)["scheduled_maintenances"] == listed[:2][::-1]


def walk(value: object) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in [(k, v), *walk(v)]]
    if isinstance(value, list):
        return [pair for v in value for pair in walk(v)]
    return []


def test_v2_every_time_has_milliseconds_and_offset() -> None:
    done = dataclasses.replace(
        WINDOW, start=NOW - dt.timedelta(days=1), end=NOW - dt.timedelta(hours=23)
    )
    s = dataclasses.replace(
        with_notices(notice(INVESTIGATING, MONITORING, RESOLVED_UPDATE)),
        maintenance_completed=(done,),
        timezone="UTC",
        generated_at=NOW.astimezone(dt.UTC),
    )
    seen = 0
    for render in V2:
        for key, value in walk(render(s)):
            if key in TIMES and value is not None:
                assert isinstance(value, str) and STAMP.fullmatch(value), (key, value)
                seen += 1
    assert seen > 100
    assert atlassian.status_v2(s)["page"]["updated_at"] == "2026-11-23T04:05:00.000+00:00"
