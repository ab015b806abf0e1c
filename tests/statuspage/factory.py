"""Hand-built snapshots for the renderers' tests: every state, level and edge on the page.

`sample()` has two groups and an ungrouped monitor, an ongoing and a resolved incident,
active and upcoming maintenance, a stale monitor, unknown days, a certificate, and names
and causes holding markup and quotes (the renderers must escape them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from statuspage.snapshot import (
    DayLevel,
    DayView,
    Group,
    IncidentView,
    LatencyPoint,
    MaintenanceView,
    MonitorView,
    Overall,
    Snapshot,
    State,
)

SEOUL = ZoneInfo("Asia/Seoul")
NOW = dt.datetime(2026, 11, 23, 13, 5, tzinfo=SEOUL)
HOSTILE = "<script>alert('x')</script> \"quoted\" & <b>bold</b>"


def days(n: int = 90, *, bad: dict[int, DayLevel] | None = None) -> tuple[DayView, ...]:
    """n days ending today; `bad` maps days-ago to a level (0 = today)."""
    bad = bad or {}
    out = []
    for ago in range(n - 1, -1, -1):
        level = bad.get(ago, DayLevel.UP)
        uptime = {
            DayLevel.UP: 100.0,
            DayLevel.MINOR: 99.95,
            DayLevel.MAJOR: 99.0,
            DayLevel.DOWN: 80.0,
            DayLevel.MAINTENANCE: None,
            DayLevel.UNKNOWN: None,
        }[level]
        out.append(
            DayView(
                date=NOW.date() - dt.timedelta(days=ago),
                level=level,
                uptime_percent=uptime,
                downtime_seconds=0.0 if uptime in (None, 100.0) else (100 - uptime) * 864,
                maintenance_seconds=3600.0 if level is DayLevel.MAINTENANCE else 0.0,
                unknown_seconds=86400.0 if level is DayLevel.UNKNOWN else 0.0,
                incidents=1 if level in (DayLevel.MAJOR, DayLevel.DOWN) else 0,
            )
        )
    return tuple(out)


def latency(base: float = 40.0) -> tuple[LatencyPoint, ...]:
    start = NOW.replace(minute=0) - dt.timedelta(hours=23)
    return tuple(
        LatencyPoint(start + dt.timedelta(hours=h), base + h, base * 2 + h, base + h + 1)
        if h != 5
        else LatencyPoint(start + dt.timedelta(hours=h), None, None, None)
        for h in range(24)
    )


ONGOING = IncidentView(
    id="api-1795400000000",
    monitor_id="api",
    monitor_name="API",
    start=NOW - dt.timedelta(minutes=25),
    end=None,
    duration_seconds=None,
    cause="status: saw 503, wanted [200]",
)
RESOLVED = IncidentView(
    id="web-1795000000000",
    monitor_id="web",
    monitor_name=HOSTILE,
    start=NOW - dt.timedelta(days=3, hours=2),
    end=NOW - dt.timedelta(days=3, hours=1, minutes=48),
    duration_seconds=720.0,
    cause=f"body: {HOSTILE}",
)


def monitor(monitor_id: str, **changes: object) -> MonitorView:
    base = MonitorView(
        id=monitor_id,
        name=monitor_id.upper(),
        group="",
        description="",
        type="http",
        state=State.UP,
        since=NOW - dt.timedelta(days=2),
        checked_at=NOW - dt.timedelta(seconds=20),
        stale=False,
        interval_seconds=60.0,
        latency_ms=42.0,
        status_code=200,
        cert_expires=None,
        uptime={"24h": 100.0, "7d": 99.99, "30d": 99.95, "90d": 99.9},
        days=days(),
        latency=latency(),
        incidents=(),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def sample() -> Snapshot:
    api = monitor(
        "api",
        name="API",
        group="Backend",
        state=State.DOWN,
        since=ONGOING.start,
        status_code=503,
        uptime={"24h": 98.26, "7d": 99.75, "30d": 99.94, "90d": 99.98},
        days=days(bad={0: DayLevel.DOWN, 12: DayLevel.MAJOR}),
        incidents=(ONGOING,),
        cert_expires=NOW + dt.timedelta(days=40),
    )
    db = monitor("db", name="Database", group="Backend", type="tcp", status_code=None)
    web = monitor(
        "web",
        name=HOSTILE,
        group="Frontend <&>",
        description="The public site",
        state=State.DEGRADED,
        latency_ms=812.0,
        days=days(bad={3: DayLevel.MINOR, 40: DayLevel.MAINTENANCE}),
        incidents=(RESOLVED,),
    )
    old = monitor(
        "cron",
        name="Nightly backup",
        type="push",
        state=State.UNKNOWN,
        stale=True,
        checked_at=NOW - dt.timedelta(hours=30),
        latency_ms=None,
        status_code=None,
        uptime={"24h": None, "7d": 85.0, "30d": 96.0, "90d": 98.5},
        days=days(bad={ago: DayLevel.UNKNOWN for ago in range(60, 90)} | {0: DayLevel.UNKNOWN}),
        latency=(),
    )
    window = MaintenanceView(
        id="m-1",
        title="DB upgrade",
        start=NOW - dt.timedelta(minutes=10),
        end=NOW + dt.timedelta(minutes=50),
        monitor_ids=("db",),
        monitor_names=("Database",),
    )
    later = MaintenanceView(
        id="m-2",
        title="Network <maintenance>",
        start=NOW + dt.timedelta(days=2),
        end=NOW + dt.timedelta(days=2, hours=1),
        monitor_ids=("api", "db"),
        monitor_names=("API", "Database"),
    )
    db = dataclasses.replace(db, state=State.MAINTENANCE)
    return Snapshot(
        title="Acme <Status>",
        public_url="https://status.example.com",
        language="en",
        timezone="Asia/Seoul",
        generated_at=NOW,
        last_result_at=NOW - dt.timedelta(seconds=20),
        stale=False,
        overall=Overall.PARTIAL_OUTAGE,
        groups=(
            Group("Backend", (api, db)),
            Group("Frontend <&>", (web,)),
            Group("", (old,)),
        ),
        incidents=(ONGOING, RESOLVED),
        maintenance_active=(window,),
        maintenance_upcoming=(later,),
        history_days=90,
    )


def calm() -> Snapshot:
    """Everything up, nothing going on."""
    m = monitor("api", name="API")
    return dataclasses.replace(
        sample(),
        overall=Overall.OPERATIONAL,
        groups=(Group("", (m,)),),
        incidents=(),
        maintenance_active=(),
        maintenance_upcoming=(),
    )
