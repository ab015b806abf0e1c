"""The JSON API: exact v1 shapes, and Statuspage's v2 field lists and vocabularies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from statuspage import api
from statuspage.snapshot import Group, IncidentView, Overall, Snapshot, State
from tests.statuspage.factory import HOSTILE, NOW, calm, monitor, sample

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
    *("affected_components", "deliver_notifications"),
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
    api.summary_v2,
    api.status_v2,
    api.components_v2,
    api.incidents_v2,
    api.unresolved_v2,
    api.maintenances_upcoming_v2,
    api.maintenances_active_v2,
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
    assert api.incidents_v1(calm()) == {"incidents": []}
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
        ]
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
    summary = api.summary_v2(build())
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
    assert set(api.status_v2(s)) == {"page", "status"}
    assert set(api.components_v2(s)) == {"page", "components"}
    for render in (api.incidents_v2, api.unresolved_v2):
        out = render(s)
        assert set(out) == {"page", "incidents"}
        for e in out["incidents"]:
            check_event(e, maintenance=False)
    for render in (api.maintenances_upcoming_v2, api.maintenances_active_v2):
        out = render(s)
        assert set(out) == {"page", "scheduled_maintenances"}
        for e in out["scheduled_maintenances"]:
            check_event(e, maintenance=True)


def test_v2_groups_are_components_with_members() -> None:
    components = api.components_v2(sample())["components"]
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
    assert api.components_v2(s)["components"][0]["status"] == status


@pytest.mark.parametrize("overall", list(Overall))
def test_v2_indicator_for_every_overall(overall: Overall) -> None:
    status = api.status_v2(dataclasses.replace(sample(), overall=overall))["status"]
    assert status["indicator"] in INDICATORS
    assert status["description"]
    if overall is Overall.UNKNOWN:
        assert status["indicator"] != "none"  # never "all operational" when we do not know


def test_v2_incidents() -> None:
    ongoing, resolved = api.incidents_v2(sample())["incidents"]
    assert ongoing["name"] == "API is down"
    assert ongoing["status"] == "investigating"
    assert ongoing["resolved_at"] is None
    assert ongoing["shortlink"] == "https://status.example.com/monitors/api"
    assert [c["name"] for c in ongoing["components"]] == ["API"]
    assert resolved["name"] == f"{HOSTILE} is down"
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] == "2026-11-20T11:17:00+09:00"
    assert resolved["started_at"] == "2026-11-20T11:05:00+09:00"
    assert [u["status"] for u in resolved["incident_updates"]] == ["resolved", "investigating"]
    assert resolved["incident_updates"][0]["body"].endswith("recovered after 12m.")
    assert api.unresolved_v2(sample())["incidents"] == [ongoing]


def test_v2_incidents_at_most_50() -> None:
    start = NOW - dt.timedelta(days=1)
    many = tuple(IncidentView(f"api-{n}", "api", "API", start, start, 0.0, "x") for n in range(60))
    assert len(api.incidents_v2(dataclasses.replace(sample(), incidents=many))["incidents"]) == 50


def test_v2_maintenances() -> None:
    s = sample()
    (active,) = api.maintenances_active_v2(s)["scheduled_maintenances"]
    (upcoming,) = api.maintenances_upcoming_v2(s)["scheduled_maintenances"]
    assert (active["status"], upcoming["status"]) == ("in_progress", "scheduled")
    assert active["scheduled_for"] == "2026-11-23T12:55:00+09:00"
    assert active["scheduled_until"] == "2026-11-23T13:55:00+09:00"
    assert [c["name"] for c in upcoming["components"]] == ["API", "Database"]
    assert api.summary_v2(s)["scheduled_maintenances"] == [active, upcoming]


def ids(s: Snapshot) -> list[str]:
    summary = api.summary_v2(s)
    found = [summary["page"]["id"]]
    found += [c["id"] for c in summary["components"]]
    for e in api.incidents_v2(s)["incidents"] + summary["scheduled_maintenances"]:
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
    assert api.status_v2(s)["page"]["url"] == "/"
    assert api.incidents_v2(s)["incidents"][0]["shortlink"] == "/monitors/api"
