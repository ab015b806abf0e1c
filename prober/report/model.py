"""What a monthly report holds: docs/REFERENCE.md "Monthly report", plus the daily bars the
HTML report draws. Plain data; compute.py fills it, render.py writes it out."""

from __future__ import annotations

import dataclasses
import datetime as dt


@dataclasses.dataclass(frozen=True, slots=True)
class Period:
    month: str  # "YYYY-MM"
    timezone: str  # IANA name
    start: dt.datetime  # local midnight on the 1st, aware
    end: dt.datetime  # local midnight on the 1st of the next month, aware
    seconds: float  # (end - start) in real elapsed seconds: 743 or 745 hours in DST months


@dataclasses.dataclass(frozen=True, slots=True)
class Remediation:
    """One remediation attempt (the `remediation` table), in the operator's report only."""

    started: dt.datetime  # aware, settings.timezone
    ended: dt.datetime | None  # None while the command runs (or a crash cut it)
    result: str  # verified, failed, timed_out, interrupted, or running (ended: being verified)
    exit_code: int | None
    timed_out: bool
    output_tail: str  # the output's last 4 KiB, redacted when it was recorded


@dataclasses.dataclass(frozen=True, slots=True)
class ReportIncident:
    start: dt.datetime  # the first down result (aware, settings.timezone)
    end: dt.datetime | None  # the first success of the streak that ended it; None while open
    duration_seconds: float | None  # the whole incident, also outside the month; None while open
    cause: str  # sanitised: no URLs, hosts or secrets
    remediations: tuple[Remediation, ...] = ()  # the operator's report only: every attempt


@dataclasses.dataclass(frozen=True, slots=True)
class LatencyStats:
    """Milliseconds over up/degraded results; all None when there were none."""

    min: float | None = None
    avg: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DayBar:
    """One local day of the month, accounted like the month (for the HTML bar chart)."""

    date: dt.date
    uptime_percent: float | None  # None: nothing monitored that day
    downtime_seconds: float
    maintenance_seconds: float
    unknown_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class LocationFigures:
    """One location's own figures for a monitor probed from several (docs/REFERENCE.md
    "Several locations"), from that location's coverage and incidents."""

    location: str
    uptime_percent: float | None
    monitored_seconds: float
    downtime_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class MonitorReport:
    id: str
    name: str
    group: str
    sla_target: float
    uptime_percent: float | None
    sla_met: bool | None
    monitored_seconds: float
    downtime_seconds: float
    maintenance_seconds: float
    unknown_seconds: float
    error_budget_seconds: float
    error_budget_remaining_seconds: float
    incident_count: int
    mttr_seconds: float | None  # mean duration of the listed incidents that ended
    longest_incident_seconds: float | None
    incidents: list[ReportIncident]
    checks: int
    failed_checks: int
    latency: LatencyStats
    days: list[DayBar]  # not in JSON/CSV: the HTML chart
    # on a hub with [[agents]]: each of the monitor's locations, in its `locations` order
    # (one entry, the figures above, for a monitor probed from one place); with no agents
    # none, and the JSON and CSV are what they were before agents existed
    locations: tuple[LocationFigures, ...] = ()
    # the operator's report only: attempts started in the month (an incident listed or
    # not), and how many of them were verified
    remediation_attempts: int = 0
    remediations_verified: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class MonthReport:
    title: str  # settings.title: the HTML heading
    language: str  # "en" | "ko": the HTML report's language
    period: Period
    generated_at: dt.datetime
    monitors: list[MonitorReport]
    # `prober report`, read by the operator: remediation attempts written out. A public one
    # (/reports/, the monthly files) never holds them: its bytes are what they always were.
    operator: bool = False
