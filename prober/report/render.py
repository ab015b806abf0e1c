"""A MonthReport written out as JSON (docs/REFERENCE.md "Monthly report"), CSV or a print-ready
HTML page. Pure: the report in, text out; the CLI picks a writer from FORMATS.

The report's numbers are exact; the writers round them on the way out, and only there
(docs/REFERENCE.md): seconds to 3 decimals, percentages to 6 significant digits,
milliseconds to 3 decimals. Whatever is decided from a number (`sla_met`, the budget's
sign) was decided on the exact value before it reaches this module."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import decimal
import io
import json
import zoneinfo
from collections.abc import Callable

import jinja2

from prober.report import chart
from prober.report.model import (
    DayBar,
    LocationFigures,
    MonitorReport,
    MonthReport,
    Remediation,
    ReportIncident,
)

# MonitorReport's scalar fields in contract order; JSON puts `incidents` after these.
_SCALARS = (
    "id",
    "name",
    "group",
    "sla_target",
    "uptime_percent",
    "sla_met",
    "monitored_seconds",
    "downtime_seconds",
    "maintenance_seconds",
    "unknown_seconds",
    "error_budget_seconds",
    "error_budget_remaining_seconds",
    "incident_count",
    "mttr_seconds",
    "longest_incident_seconds",
)
_COUNTS = ("checks", "failed_checks")
_LATENCY = ("min", "avg", "p50", "p95", "p99", "max")
CSV_COLUMNS = (
    *("month", "timezone", "period_start", "period_end"),
    *_SCALARS,
    *_COUNTS,
    *(f"latency_{name}_ms" for name in _LATENCY),
)
# On a hub with agents the CSV gains a last column, `location`: each monitor's row (the
# combined verdict's figures, `location` empty) is followed by one row per location with
# that location's own figures (_LOCATION_FIELDS; the other cells empty).
LOCATION_COLUMN = "location"
_LOCATION_FIELDS = ("uptime_percent", "monitored_seconds", "downtime_seconds")
# The operator's report (`prober report`) only: each monitor's remediation attempts started
# in the month and how many were verified, last in its JSON object and in the CSV's last
# columns (after `location`; empty on the per-location rows). Each JSON incident also lists
# its attempts (REMEDIATION_FIELDS). A public report has none of them.
REMEDIATION_COLUMNS = ("remediation_attempts", "remediations_verified")
REMEDIATION_FIELDS = ("started", "ended", "result", "exit_code", "timed_out", "output_tail")


def _decimals(value: float | None) -> float | None:
    """Seconds and milliseconds as published: to 3 decimals (+ 0.0: never -0.0)."""
    return None if value is None else round(value, 3) + 0.0


def _significant(value: float | None) -> float | None:
    """Percentages as published: 6 significant digits (99.95524058 -> 99.9552)."""
    return None if value is None else float(f"{value:.6g}") + 0.0


# How each published float is rounded. `sla_target` is the config's own number, echoed as
# given; counts are ints.
_ROUNDED: dict[str, Callable[[float | None], float | None]] = {
    "uptime_percent": _significant,
    **{name: _decimals for name in _SCALARS if name.endswith("_seconds")},
}


def _scalars(monitor: MonitorReport) -> dict[str, object]:
    fields: dict[str, object] = {}
    for name in _SCALARS:
        value = getattr(monitor, name)
        fields[name] = _ROUNDED[name](value) if name in _ROUNDED else value
    return fields


def _latency(monitor: MonitorReport) -> dict[str, float | None]:
    return {name: _decimals(getattr(monitor.latency, name)) for name in _LATENCY}


def _iso(when: dt.datetime, tz: zoneinfo.ZoneInfo) -> str:
    # astimezone on an aware value only changes the offset shown; the instant stays.
    return when.astimezone(tz).isoformat()


def _monitor_json(
    monitor: MonitorReport, tz: zoneinfo.ZoneInfo, operator: bool
) -> dict[str, object]:
    fields = _scalars(monitor)
    fields["incidents"] = [_incident_json(incident, tz, operator) for incident in monitor.incidents]
    fields.update({name: getattr(monitor, name) for name in _COUNTS})
    fields["latency_ms"] = _latency(monitor)
    if monitor.locations:  # a hub with agents: each location's own figures
        fields["locations"] = {place.location: _place(place) for place in monitor.locations}
    if operator:
        fields.update({name: getattr(monitor, name) for name in REMEDIATION_COLUMNS})
    return fields


def _incident_json(
    incident: ReportIncident, tz: zoneinfo.ZoneInfo, operator: bool
) -> dict[str, object]:
    fields: dict[str, object] = {
        "start": _iso(incident.start, tz),
        "end": None if incident.end is None else _iso(incident.end, tz),
        "duration_seconds": _decimals(incident.duration_seconds),
        "cause": incident.cause,
    }
    if operator:
        fields["remediations"] = [_remediation_json(r, tz) for r in incident.remediations]
    return fields


def _remediation_json(attempt: Remediation, tz: zoneinfo.ZoneInfo) -> dict[str, object]:
    return {
        "started": _iso(attempt.started, tz),
        "ended": None if attempt.ended is None else _iso(attempt.ended, tz),
        "result": attempt.result,
        "exit_code": attempt.exit_code,
        "timed_out": attempt.timed_out,
        "output_tail": attempt.output_tail,
    }


def _place(place: LocationFigures) -> dict[str, float | None]:
    return {name: _ROUNDED[name](getattr(place, name)) for name in _LOCATION_FIELDS}


def to_json(report: MonthReport) -> str:
    """The contract's JSON: rounded numbers, local ISO 8601 times, null for "none"."""
    period = report.period
    tz = zoneinfo.ZoneInfo(period.timezone)
    document = {
        "period": {
            "month": period.month,
            "timezone": period.timezone,
            "start": _iso(period.start, tz),
            "end": _iso(period.end, tz),
            "seconds": _decimals(period.seconds),
        },
        "generated_at": _iso(report.generated_at, tz),
        "monitors": [_monitor_json(monitor, tz, report.operator) for monitor in report.monitors],
    }
    # allow_nan=False: NaN is not JSON; a NaN here is a bug in compute, so fail loudly.
    return json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


# Spreadsheets run a cell that starts with one of these as a formula (=HYPERLINK(...),
# =cmd|...), so a monitor named "=1+1" or "@SUM(A1)" would execute on the reader's machine.
# OWASP's advice: prefix such text with an apostrophe, which makes it plain text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    return repr(value)  # int or float, rounded already; never guarded (-881.0 stays)


def to_csv(report: MonthReport) -> str:
    """A header row, then one row per monitor with the JSON's scalar fields (RFC 4180); on
    a hub with agents, each followed by a row per location (LOCATION_COLUMN); the
    operator's report ends each row with REMEDIATION_COLUMNS."""
    period = report.period
    tz = zoneinfo.ZoneInfo(period.timezone)
    out = io.StringIO()
    writer = csv.writer(out)
    places = any(monitor.locations for monitor in report.monitors)
    extra = REMEDIATION_COLUMNS if report.operator else ()
    writer.writerow((*CSV_COLUMNS, *([LOCATION_COLUMN] if places else ()), *extra))
    lead = (period.month, period.timezone, _iso(period.start, tz), _iso(period.end, tz))
    for monitor in report.monitors:
        fields = {
            **_scalars(monitor),
            **{name: getattr(monitor, name) for name in _COUNTS},
            **{f"latency_{name}_ms": value for name, value in _latency(monitor).items()},
        }
        values = [*fields.values(), ""] if places else list(fields.values())
        counts = [getattr(monitor, name) for name in extra]
        writer.writerow([_csv_cell(value) for value in (*lead, *values, *counts)])
        for place in monitor.locations:
            own = {"id": monitor.id, "name": monitor.name, "group": monitor.group, **_place(place)}
            cells = [own.get(name) for name in fields]
            row = (*lead, *cells, place.location, *(None for _ in extra))
            writer.writerow([_csv_cell(value) for value in row])
    return out.getvalue()


MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "subtitle": "Monthly availability report",
        "period": "Period",
        "generated": "Generated",
        "summary": "Summary",
        "monitor": "Monitor",
        "group": "Group",
        "ungrouped": "Ungrouped",
        "uptime": "Uptime",
        "target": "Target",
        "sla": "SLA",
        "met": "met",
        "breached": "breached",
        "no_data": "no data",
        "monitored": "Monitored time",
        "downtime": "Downtime",
        "maintenance": "Maintenance",
        "unknown": "Unknown",
        "budget": "Error budget",
        "budget_used": "Error budget used",
        "budget_remaining": "Error budget remaining",
        "exceeded": "exceeded by {duration}",
        "checks": "Checks",
        "failed_checks": "Failed checks",
        "no_monitors": "No monitors.",
        "incidents": "Incidents",
        "mttr": "Mean time to recovery",
        "longest": "Longest incident",
        "no_incidents": "No incidents this month.",
        "start": "Start",
        "end": "End",
        "duration": "Duration",
        "cause": "Cause",
        "ongoing": "ongoing",
        "daily": "Daily uptime",
        "bar": "{date}: uptime {uptime}, downtime {downtime}",
        "bar_no_data": "{date}: nothing monitored",
        "so_far": "{date} (so far)",
        "legend": (
            "One bar per day. Green: no downtime; amber: some downtime, the day still at or "
            "above the target; red: below the target; grey: nothing monitored. Dashed line: "
            "SLA target {target}. Vertical scale from {floor} to 100%."
        ),
        "legend_partial": (
            "The month is not over: days to come have no bar, and today's bar is the day "
            "until the report was generated."
        ),
        "latency": "Latency (ms)",
        "min": "min",
        "avg": "avg",
        "max": "max",
        "policy": "How these numbers are computed",
        "by_location": "By location (each location's own results)",
        "location": "Location",
        "remediation_attempts": "Remediation attempts",
        "remediations_verified": "Remediations verified",
        "remediation": "Remediation",
        "exit_code": "exit code {code}",
        "verified": "verified",
        "failed": "failed",
        "timed_out": "timed out",
        "interrupted": "interrupted by a restart",
        "running": "running",
        "verifying": "being verified",
    },
    "ko": {
        "subtitle": "월간 가동률 보고서",
        "period": "기간",
        "generated": "생성 시각",
        "summary": "요약",
        "monitor": "모니터",
        "group": "그룹",
        "ungrouped": "그룹 없음",
        "uptime": "가동률",
        "target": "목표",
        "sla": "SLA",
        "met": "충족",
        "breached": "미달",
        "no_data": "데이터 없음",
        "monitored": "모니터링 시간",
        "downtime": "다운타임",
        "maintenance": "점검",
        "unknown": "알 수 없음",
        "budget": "오류 예산",
        "budget_used": "오류 예산 사용률",
        "budget_remaining": "남은 오류 예산",
        "exceeded": "{duration} 초과",
        "checks": "검사 수",
        "failed_checks": "실패한 검사 수",
        "no_monitors": "모니터가 없습니다.",
        "incidents": "장애",
        "mttr": "평균 복구 시간",
        "longest": "최장 장애",
        "no_incidents": "이번 달에는 장애가 없습니다.",
        "start": "시작",
        "end": "종료",
        "duration": "지속 시간",
        "cause": "원인",
        "ongoing": "진행 중",
        "daily": "일별 가동률",
        "bar": "{date}: 가동률 {uptime}, 다운타임 {downtime}",
        "bar_no_data": "{date}: 모니터링 없음",
        "so_far": "{date}(현재까지)",
        "legend": (
            "막대 하나가 하루입니다. 녹색: 다운타임 없음, 주황색: 다운타임이 있으나 그날 "
            "가동률이 목표 이상, 빨간색: 목표 미만, 회색: 모니터링 없음. 점선: SLA 목표 "
            "{target}. 세로축 범위는 {floor}부터 100%까지입니다."
        ),
        "legend_partial": (
            "아직 끝나지 않은 달입니다. 남은 날에는 막대가 없고, 오늘 막대는 보고서를 만든 "
            "시각까지의 값입니다."
        ),
        "latency": "지연 시간(ms)",
        "min": "최소",
        "avg": "평균",
        "max": "최대",
        "policy": "수치 계산 방법",
        "by_location": "위치별 (각 위치 자체의 결과)",
        "location": "위치",
        "remediation_attempts": "자동 복구 시도",
        "remediations_verified": "검증된 자동 복구",
        "remediation": "자동 복구",
        "exit_code": "종료 코드 {code}",
        "verified": "검증됨",
        "failed": "실패",
        "timed_out": "시간 초과",
        "interrupted": "재시작으로 중단됨",
        "running": "실행 중",
        "verifying": "검증 중",
    },
}

# The accounting of docs/REFERENCE.md in plain words, so a reader can redo the sums.
POLICY: dict[str, tuple[str, ...]] = {
    "en": (
        "The month runs from local midnight on the 1st to local midnight on the 1st of the "
        "next month in the report's time zone; a month with a daylight-saving change has 743 "
        "or 745 hours.",
        "Downtime counts confirmed incidents only. A run of failed checks becomes an incident "
        "once it is confirmed (it lasted the monitor's down_after time or number of checks). "
        "The incident counts from its first failed check, not from the moment it was "
        "confirmed, to the first successful check of the recovery streak that ended it. "
        "Shorter runs of failures are blips: they are counted as failed checks but never as "
        "downtime.",
        "Maintenance windows are subtracted from the month: time in maintenance is neither "
        "up nor down, even while an incident is open.",
        "Unknown time is neither up nor down and is left out of the monitored time: time with "
        "no data (the prober was stopped, or no result came within twice the check interval, "
        "or within a push monitor's period plus grace) and time when the prober's own network "
        "was down (the check failed and every independent canary target failed too).",
        "Monitored time = month − maintenance − unknown. Uptime % = 100 × (monitored time − "
        "downtime) ÷ monitored time; with no monitored time there is no uptime figure. The "
        "SLA is met when uptime % is at least the target.",
        "Error budget = (1 − target ÷ 100) × monitored time. Remaining = error budget − "
        "downtime. Budget used = downtime ÷ error budget. Once downtime passes the budget, "
        'this page shows the budget used as "> 100%" and by how much it was exceeded; the '
        "JSON and CSV give the remaining budget as a negative number.",
        "Latency is taken over the successful (up or degraded) checks of the month. "
        "Percentiles are by nearest rank, read from hourly latency histograms: within 0.4 % "
        "(1/256) of the exact value, and the same before and after the raw results are "
        "pruned (each bucket is less than 1/128 of its values wide, and its middle is "
        "reported).",
        "This page rounds for display: uptime is cut (not rounded) to 3 decimals, so any "
        "downtime shows below 100.000%, and durations are shown to the second. The JSON and "
        "CSV exports round only as they are written: seconds to 3 decimals, percentages to "
        "6 significant digits, milliseconds to 3 decimals; whether the SLA is met and the "
        "error budget are worked out from the exact numbers. An incident's duration is the "
        "whole incident, including any part outside the month.",
    ),
    "ko": (
        "보고 기간은 보고서 시간대 기준으로 1일 자정부터 다음 달 1일 자정까지입니다. 일광 "
        "절약 시간이 바뀌는 달은 743시간 또는 745시간입니다.",
        "다운타임에는 확인된 장애만 포함됩니다. 연속된 실패 검사가 모니터의 down_after 기준"
        "(시간 또는 횟수)을 채워 확인되면 장애가 됩니다. 장애는 확인된 시점이 아니라 첫 실패 "
        "검사부터, 장애를 끝낸 연속 성공의 첫 성공 검사까지로 계산합니다. 그보다 짧은 실패는 "
        "일시적 실패로, 실패한 검사 수에는 들어가지만 다운타임에는 절대 포함되지 않습니다.",
        "점검 시간은 기간에서 뺍니다. 점검 중인 시간은 장애가 진행 중이더라도 가동도 중단도 "
        "아닙니다.",
        "알 수 없음 시간은 가동도 중단도 아니며 모니터링 시간에서 제외됩니다. "
        "데이터가 없는 시간(프로버가 멈췄거나, 검사 간격의 두 배 또는 푸시 모니터의 "
        "주기와 유예 시간 안에 결과가 없던 경우)과 프로버 자체의 네트워크가 끊긴 "
        "시간(검사가 실패하고 독립된 카나리 대상도 모두 실패한 경우)이 여기에 "
        "해당합니다.",
        "모니터링 시간 = 기간 − 점검 − 알 수 없음. 가동률(%) = 100 × (모니터링 시간 − "
        "다운타임) ÷ 모니터링 시간이며, 모니터링 시간이 없으면 가동률도 없습니다. 가동률이 "
        "목표 이상이면 SLA를 충족한 것입니다.",
        "오류 예산 = (1 − 목표 ÷ 100) × 모니터링 시간. 남은 오류 예산 = 오류 예산 − "
        "다운타임. 오류 예산 사용률 = 다운타임 ÷ 오류 예산. 다운타임이 예산을 넘으면 이 "
        '페이지는 사용률을 "> 100%"로, 남은 예산을 초과한 시간으로 표시하며, JSON과 '
        "CSV에서는 남은 오류 예산이 음수입니다.",
        "지연 시간은 이번 달의 성공한 검사(정상 또는 성능 저하)만으로 계산합니다. 백분위수는 "
        "최근접 순위 방식으로 시간별 지연 시간 히스토그램에서 구하므로 정확한 값과의 차이가 "
        "0.4 %(1/256) 이내이며, 원시 결과가 삭제되기 전과 후에 같습니다(각 구간의 폭은 그 "
        "값의 1/128 미만이며, 구간의 가운데 값을 보고합니다).",
        "이 페이지의 수치는 표시용으로 줄인 값입니다. 가동률은 소수점 셋째 자리까지 "
        "남기고 버리므로(반올림하지 않음) 다운타임이 조금이라도 있으면 100.000% "
        "미만으로 표시되고, 시간은 초 단위로 표시합니다. JSON과 CSV 내보내기는 쓸 때만 "
        "반올림합니다. 초는 소수점 셋째 자리, 백분율은 유효숫자 6자리, 밀리초는 소수점 "
        "셋째 자리까지이며, SLA 충족 여부와 오류 예산은 정확한 값으로 계산합니다. 장애의 "
        "지속 시간은 이번 달 밖의 부분까지 포함한 장애 전체의 길이입니다.",
    ),
}


# Number formats, the same in every language.
def _uptime(percent: float | None) -> str:
    if percent is None:
        return "—"
    # Cut, not rounded: 99.9996 must not read as a perfect 100.000%.
    cut = decimal.Decimal(repr(percent)).quantize(decimal.Decimal("0.001"), decimal.ROUND_DOWN)
    return f"{cut}%"


def _target(percent: float) -> str:
    return f"{percent:g}%"


def _duration(seconds: float | None) -> str:
    """1h 02m 03s, always in hours (a month is 745h 00m 00s), to the nearest second."""
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    minutes, secs = divmod(round(abs(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours}h {minutes:02d}m {secs:02d}s"


def _budget_used(monitor: MonitorReport) -> str:
    # Spent past the budget (remaining < 0, the exact figure): the ratio says little more
    # (54996.1% for 3 minutes down out of a new install's first 5 minutes); "exceeded by"
    # under the remaining budget says by how much.
    if monitor.error_budget_remaining_seconds < 0:
        return "> 100%"
    if monitor.error_budget_seconds <= 0:  # a 100% target or nothing monitored: no budget
        return "—"
    return f"{100 * monitor.downtime_seconds / monitor.error_budget_seconds:.1f}%"


def _budget_left(monitor: MonitorReport, text: dict[str, str]) -> str:
    remaining = monitor.error_budget_remaining_seconds
    if remaining < 0:  # by at least a second as shown: "exceeded by 0h 00m 00s" would not do
        return text["exceeded"].format(duration=_duration(max(1, round(-remaining))))
    return _duration(remaining)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}".removesuffix(".0")


def _chart(monitor: MonitorReport, today: dt.date, text: dict[str, str]) -> chart.Chart:
    def label(day: DayBar) -> str:
        date = day.date.isoformat()
        if day.date == today:  # drawn as it is: the part of the day before the report
            date = text["so_far"].format(date=date)
        if day.uptime_percent is None:
            return text["bar_no_data"].format(date=date)
        return text["bar"].format(
            date=date, uptime=_uptime(day.uptime_percent), downtime=_duration(day.downtime_seconds)
        )

    return chart.draw(monitor.days, monitor.sla_target, today, label)


_RESULTS = ("verified", "failed", "timed_out", "interrupted")  # the table's, in MESSAGES


def _remediation_line(attempt: Remediation, incident: ReportIncident, text: dict[str, str]) -> str:
    """An attempt in the words of the HTML report, e.g. `Remediation 14:02:10–14:02:12: exit
    code 0, verified`: times of day in the report's zone, dated when the attempt starts on
    another day than its incident (or ends on another day than it started)."""
    tz = incident.start.tzinfo

    def clock(moment: dt.datetime, day: dt.date) -> str:
        moment = moment.astimezone(tz)
        return moment.strftime("%H:%M:%S" if moment.date() == day else "%Y-%m-%d %H:%M:%S")

    started = attempt.started.astimezone(tz)
    span = clock(started, incident.start.date()) + "–"
    if attempt.ended is not None:
        span += clock(attempt.ended, started.date())
    if attempt.timed_out:
        how = [text["timed_out"]]
    else:
        code = attempt.exit_code
        how = [] if code is None else [text["exit_code"].format(code=code)]
        if attempt.result in _RESULTS:
            how.append(text[attempt.result])
        elif attempt.result == "running":  # the command runs, or ended and awaits its verdict
            how.append(text["running" if attempt.ended is None else "verifying"])
        else:
            how.append(attempt.result)
    return f"{text['remediation']} {span}: {', '.join(how)}"


@dataclasses.dataclass(frozen=True, slots=True)
class Section:
    monitor: MonitorReport
    chart: chart.Chart


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("prober.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(
    uptime=_uptime,
    target=_target,
    duration=_duration,
    budget_used=_budget_used,
    budget_left=_budget_left,
    ms=_ms,
)


def to_html(report: MonthReport) -> str:
    """One self-contained, print-ready page (A4): no scripts, no external resources."""
    text = MESSAGES[report.language]
    tz = zoneinfo.ZoneInfo(report.period.timezone)
    today = report.generated_at.astimezone(tz).date()  # later days get no bar
    groups: dict[str, list[Section]] = {}  # in order of first appearance
    for monitor in report.monitors:
        section = Section(monitor, _chart(monitor, today, text))
        groups.setdefault(monitor.group, []).append(section)

    def when(moment: dt.datetime) -> str:
        return moment.astimezone(tz).isoformat(sep=" ", timespec="seconds")

    return _ENV.get_template("report.html").render(
        report=report,
        groups=groups,
        t=text,
        policy=POLICY[report.language],
        latency_names=_LATENCY,
        when=when,
        remediation=lambda attempt, incident: _remediation_line(attempt, incident, text),
        month_over=today >= report.period.end.date(),
    )


FORMATS: dict[str, Callable[[MonthReport], str]] = {
    "json": to_json,
    "csv": to_csv,
    "html": to_html,
}
