"""The status page's words, dates, durations and numbers in English and Korean.

Every visible text of the page comes from `CATALOGUES` through a `Translator`; templates
hold no words of their own. Both catalogues have the same keys and the same {placeholders}
(a test holds them to it), so a key missing in one language is caught before it renders.
Texts are plain: the template escapes them, placeholders included.
"""

from __future__ import annotations

import datetime as dt
import decimal
import string

LANGUAGES = ("en", "ko")

CATALOGUES: dict[str, dict[str, str]] = {
    "en": {
        "lang.en": "English",
        "lang.ko": "한국어",
        "nav.skip": "Skip to content",
        "nav.language": "Language",
        "nav.back": "All systems",
        "page.monitor_title": "{name} — {title}",
        "overall.operational": "All systems operational",
        "overall.degraded": "Some systems degraded",
        "overall.partial_outage": "Partial outage",
        "overall.major_outage": "Major outage",
        "overall.maintenance": "Maintenance in progress",
        "overall.unknown": "Status unknown",
        "overall.updated": "Updated {time}",
        "state.up": "Operational",
        "state.degraded": "Degraded",
        "state.down": "Down",
        "state.maintenance": "Maintenance",
        "state.unknown": "Unknown",
        "level.up": "No downtime",
        "level.minor": "Minor downtime",
        "level.major": "Partial outage",
        "level.down": "Major outage",
        "level.maintenance": "Maintenance",
        "level.unknown": "No data",
        "legend.heading": "Legend",
        "legend.mark": "Downtime that day",
        "stale.snapshot": "This page may be out of date: the latest check ran {ago} ({time}). "
        "The prober may be stuck.",
        "stale.snapshot_never": "No check has run yet, so the states below are unknown.",
        "stale.some": "Some monitors have no recent data; their state is unknown.",
        "stale.badge": "No recent data",
        "regional.monitor": "Failing from {where} only: a regional problem, not an outage.",
        "stale.monitor": "Last check {ago}",
        "stale.monitor_never": "Never checked",
        "group.none": "Services",
        "group.other": "Other services",
        "bars.label": "Daily uptime of {name}, last {days} days",
        "bars.start": "{days} days ago",
        "bars.end": "Today",
        "bars.uptime": "{value} uptime",
        "bar.uptime": "Uptime {value}",
        "bar.downtime": "Downtime {duration}",
        "bar.maintenance": "Maintenance {duration}",
        "bar.incidents.one": "{count} incident",
        "bar.incidents.other": "{count} incidents",
        "bar.range": "{start} – {end} ({days} days)",
        "group.count.one": "{count} service",
        "group.count.other": "{count} services",
        "nav.pages": "Pages",
        "nav.page": "Page {number}",
        "nav.problems": "has problems",
        "uptime.heading": "Uptime",
        "uptime.24h": "24 h",
        "uptime.7d": "7 d",
        "uptime.30d": "30 d",
        "uptime.90d": "90 d",
        "latency.heading": "Response time",
        "latency.last": "Last response {value}",
        "sparkline.label": "Response time over the last 24 hours: average {avg}, highest {max}",
        "sparkline.empty": "No response times in the last 24 hours",
        "maintenance.active": "Maintenance in progress",
        "maintenance.upcoming": "Scheduled maintenance",
        "maintenance.completed": "Completed maintenance",
        "maintenance.done": "Completed",
        "maintenance.window": "{start} – {end}",
        "maintenance.affects": "Affects: {names}",
        "maintenance.ends": "Ends in {duration}",
        "maintenance.starts": "Starts in {duration}",
        "maintenance.length": "Expected to take {duration}",
        "incidents.heading": "Recent incidents",
        "incidents.none": "No incidents in the last {days} days.",
        "incidents.limited": "The {count} most recent are shown; each monitor's page lists all.",
        "incidents.ongoing": "Ongoing",
        "incidents.resolved": "Resolved",
        "incidents.start": "Started",
        "incidents.end": "Ended",
        "incidents.duration": "Duration",
        "incidents.cause": "Cause",
        "incidents.so_far": "{duration} so far",
        "notices.banner": "Incidents in progress",
        "notices.heading": "Incident reports",
        "notice.impact": "Impact",
        "notice.affected": "Affected",
        "notice.detected": "Detected by monitoring: {name}, from {time}",
        "notice.updated": "Updated {time}",
        "notice.status.investigating": "Investigating",
        "notice.status.identified": "Identified",
        "notice.status.monitoring": "Monitoring",
        "notice.status.resolved": "Resolved",
        "notice.impact.none": "No impact",
        "notice.impact.minor": "Minor",
        "notice.impact.major": "Major",
        "notice.impact.critical": "Critical",
        "notice.component.operational": "Operational",
        "notice.component.under_maintenance": "Under maintenance",
        "notice.component.degraded_performance": "Degraded performance",
        "notice.component.partial_outage": "Partial outage",
        "notice.component.major_outage": "Major outage",
        "monitor.heading_incidents": "Incidents",
        "monitor.heading_details": "Details",
        "monitor.heading_history": "Daily history",
        "monitor.since": "Since",
        "monitor.checked": "Last checked",
        "monitor.latency": "Last response time",
        "monitor.status_code": "HTTP status",
        "monitor.type": "Check",
        "monitor.interval": "Interval",
        "monitor.every": "Every {duration}",
        "monitor.cert": "Certificate expires",
        "monitor.cert_none": "No certificate seen",
        "monitor.period": "Expected",
        "monitor.cron": "On schedule {cron}",
        "monitor.grace": "Grace period",
        "monitor.last_ping": "Last ping",
        "monitor.run": "Last run took",
        "type.http": "HTTP",
        "type.tls": "TLS certificate",
        "type.tcp": "TCP port",
        "type.dns": "DNS",
        "type.push": "Heartbeat (push)",
        "chart.heading": "Response time, last 24 hours",
        "chart.description": "Median (p50) and 95th percentile (p95) response time per hour.",
        "chart.p50": "Median (p50)",
        "chart.p95": "95th percentile (p95)",
        "chart.axis_y": "ms",
        "chart.axis_x": "Hour ({zone})",
        "chart.empty": "No response times were recorded in the last 24 hours.",
        "chart.table": "Show as a table",
        "chart.hour": "Hour",
        "footer.updated": "Last updated {time}",
        "footer.latest": "Latest check {time}",
        "footer.timezone": "Times are in {zone}.",
        "footer.subscribe": "Subscribe",
        "footer.atom": "Atom feed",
        "footer.api": "JSON API",
        "footer.powered": "Checked from outside by prober",
        "subscribe.heading": "Get updates by email",
        "subscribe.hint": "We mail you when an incident report is updated "
        "or maintenance starts. Every mail has a one-click unsubscribe link.",
        "subscribe.label": "Email address",
        "subscribe.submit": "Subscribe",
        "subscribe.back": "Back to the status page",
        "subscribe.sent_title": "Check your inbox",
        "subscribe.sent": "If this address can receive mail, a confirmation link is "
        "on its way. Nothing else is sent until you confirm.",
        "subscribe.invalid_title": "That is not an email address",
        "subscribe.invalid": "Enter one address, like name@example.com.",
        "subscribe.busy_title": "Too many requests",
        "subscribe.busy": "Please try again in a few minutes.",
        "subscribe.confirm_title": "Confirm your subscription",
        "subscribe.confirm": "Press the button to start getting updates by email.",
        "subscribe.confirm_button": "Confirm subscription",
        "subscribe.confirmed_title": "Subscribed",
        "subscribe.confirmed": "You will get an email when an "
        "incident report is updated or maintenance starts.",
        "subscribe.expired_title": "This link has expired",
        "subscribe.expired": "It was used already or is older than "
        "48 hours. Subscribe again on the status page.",
        "subscribe.unsubscribe_title": "Unsubscribe",
        "subscribe.unsubscribe": "Press the button to stop getting updates by email.",
        "subscribe.unsubscribe_button": "Unsubscribe",
        "subscribe.unsubscribed_title": "Unsubscribed",
        "subscribe.unsubscribed": "This address gets no more mail from this status page.",
        "subscribe.unsubscribe_expired": "You may be unsubscribed already. If mail still "
        "comes, use the link in the newest one.",
        "subscribe.unavailable_title": "Not available right now",
        "subscribe.unavailable": "Please try again in a minute.",
        "fmt.datetime": "{month_name} {day}, {year}, {time} {zone}",
        "fmt.date": "{month_name} {day}, {year}",
        "fmt.time": "{time} {zone}",
        "fmt.percent": "{value} %",
        "fmt.ms": "{value} ms",
        "fmt.ago": "{duration} ago",
        "fmt.in": "in {duration}",
        "fmt.list_sep": ", ",
        "fmt.no_data": "No data",
        "fmt.none": "–",
        "unit.d": "{n}d",
        "unit.h": "{n}h",
        "unit.m": "{n}m",
        "unit.s": "{n}s",
        "month.1": "Jan",
        "month.2": "Feb",
        "month.3": "Mar",
        "month.4": "Apr",
        "month.5": "May",
        "month.6": "Jun",
        "month.7": "Jul",
        "month.8": "Aug",
        "month.9": "Sep",
        "month.10": "Oct",
        "month.11": "Nov",
        "month.12": "Dec",
    },
    "ko": {
        "lang.en": "English",
        "lang.ko": "한국어",
        "nav.skip": "본문으로 건너뛰기",
        "nav.language": "언어",
        "nav.back": "전체 상태",
        "page.monitor_title": "{name} — {title}",
        "overall.operational": "모든 시스템 정상",
        "overall.degraded": "일부 시스템 성능 저하",
        "overall.partial_outage": "일부 시스템 장애",
        "overall.major_outage": "주요 시스템 장애",
        "overall.maintenance": "점검 진행 중",
        "overall.unknown": "상태 알 수 없음",
        "overall.updated": "{time} 기준",
        "state.up": "정상",
        "state.degraded": "성능 저하",
        "state.down": "장애",
        "state.maintenance": "점검 중",
        "state.unknown": "알 수 없음",
        "level.up": "다운타임 없음",
        "level.minor": "짧은 다운타임",
        "level.major": "부분 장애",
        "level.down": "주요 장애",
        "level.maintenance": "점검",
        "level.unknown": "데이터 없음",
        "legend.heading": "범례",
        "legend.mark": "그날 다운타임 있음",
        "stale.snapshot": "이 페이지의 정보가 오래되었을 수 있습니다. 마지막 검사는 "
        "{ago}({time})에 실행되었으며, 프로버가 멈췄을 수 있습니다.",
        "stale.snapshot_never": "아직 실행된 검사가 없어 아래 상태를 알 수 없습니다.",
        "stale.some": "일부 모니터에 최근 데이터가 없어 상태를 알 수 없습니다.",
        "stale.badge": "최근 데이터 없음",
        "regional.monitor": "{where}에서만 실패하고 있습니다: "
        "일부 지역의 문제이며 장애가 아닙니다.",
        "stale.monitor": "마지막 검사 {ago}",
        "stale.monitor_never": "검사 기록 없음",
        "group.none": "서비스",
        "group.other": "기타 서비스",
        "bars.label": "{name}의 최근 {days}일 일별 가동률",
        "bars.start": "{days}일 전",
        "bars.end": "오늘",
        "bars.uptime": "가동률 {value}",
        "bar.uptime": "가동률 {value}",
        "bar.downtime": "다운타임 {duration}",
        "bar.maintenance": "점검 {duration}",
        "bar.incidents.one": "장애 {count}건",
        "bar.incidents.other": "장애 {count}건",
        "bar.range": "{start} ~ {end} ({days}일)",
        "group.count.one": "서비스 {count}개",
        "group.count.other": "서비스 {count}개",
        "nav.pages": "페이지",
        "nav.page": "{number}페이지",
        "nav.problems": "문제 있음",
        "uptime.heading": "가동률",
        "uptime.24h": "24시간",
        "uptime.7d": "7일",
        "uptime.30d": "30일",
        "uptime.90d": "90일",
        "latency.heading": "응답 시간",
        "latency.last": "마지막 응답 {value}",
        "sparkline.label": "최근 24시간 응답 시간: 평균 {avg}, 최대 {max}",
        "sparkline.empty": "최근 24시간 응답 시간 없음",
        "maintenance.active": "진행 중인 점검",
        "maintenance.upcoming": "예정된 점검",
        "maintenance.completed": "완료된 점검",
        "maintenance.done": "완료",
        "maintenance.window": "{start} – {end}",
        "maintenance.affects": "대상: {names}",
        "maintenance.ends": "{duration} 후 종료",
        "maintenance.starts": "{duration} 후 시작",
        "maintenance.length": "예상 소요 시간 {duration}",
        "incidents.heading": "최근 장애",
        "incidents.none": "최근 {days}일 동안 장애가 없었습니다.",
        "incidents.limited": "최근 {count}건만 표시합니다. "
        "전체 기록은 각 모니터 페이지에 있습니다.",
        "incidents.ongoing": "진행 중",
        "incidents.resolved": "해결됨",
        "incidents.start": "시작",
        "incidents.end": "종료",
        "incidents.duration": "지속 시간",
        "incidents.cause": "원인",
        "incidents.so_far": "{duration} 경과",
        "notices.banner": "진행 중인 장애 안내",
        "notices.heading": "장애 안내",
        "notice.impact": "영향도",
        "notice.affected": "영향받는 서비스",
        "notice.detected": "모니터링이 감지한 장애: {name}, {time}부터",
        "notice.updated": "{time} 업데이트",
        "notice.status.investigating": "조사 중",
        "notice.status.identified": "원인 파악",
        "notice.status.monitoring": "모니터링 중",
        "notice.status.resolved": "해결됨",
        "notice.impact.none": "영향 없음",
        "notice.impact.minor": "경미",
        "notice.impact.major": "심각",
        "notice.impact.critical": "매우 심각",
        "notice.component.operational": "정상 운영",
        "notice.component.under_maintenance": "점검 중",
        "notice.component.degraded_performance": "성능 저하",
        "notice.component.partial_outage": "부분 장애",
        "notice.component.major_outage": "전면 장애",
        "monitor.heading_incidents": "장애 기록",
        "monitor.heading_details": "상세 정보",
        "monitor.heading_history": "일별 기록",
        "monitor.since": "상태 시작",
        "monitor.checked": "마지막 검사",
        "monitor.latency": "마지막 응답 시간",
        "monitor.status_code": "HTTP 상태 코드",
        "monitor.type": "검사 유형",
        "monitor.interval": "검사 주기",
        "monitor.every": "{duration}마다",
        "monitor.cert": "인증서 만료",
        "monitor.cert_none": "확인된 인증서 없음",
        "monitor.period": "신호 주기",
        "monitor.cron": "{cron} 일정에 따라",
        "monitor.grace": "유예 시간",
        "monitor.last_ping": "마지막 신호",
        "monitor.run": "마지막 실행 시간",
        "type.http": "HTTP",
        "type.tls": "TLS 인증서",
        "type.tcp": "TCP 포트",
        "type.dns": "DNS",
        "type.push": "하트비트(푸시)",
        "chart.heading": "최근 24시간 응답 시간",
        "chart.description": "시간별 응답 시간의 중앙값(p50)과 95번째 백분위수(p95)입니다.",
        "chart.p50": "중앙값(p50)",
        "chart.p95": "95번째 백분위수(p95)",
        "chart.axis_y": "ms",
        "chart.axis_x": "시각({zone})",
        "chart.empty": "최근 24시간 동안 기록된 응답 시간이 없습니다.",
        "chart.table": "표로 보기",
        "chart.hour": "시각",
        "footer.updated": "마지막 업데이트 {time}",
        "footer.latest": "최신 검사 {time}",
        "footer.timezone": "시간은 {zone} 기준입니다.",
        "footer.subscribe": "구독",
        "footer.atom": "Atom 피드",
        "footer.api": "JSON API",
        "footer.powered": "prober가 외부에서 검사합니다",
        "subscribe.heading": "이메일로 소식 받기",
        "subscribe.hint": "장애 보고가 갱신되거나 점검이 시작되면 메일을 보내 드립니다. "
        "모든 메일에 한 번에 구독을 해지하는 링크가 있습니다.",
        "subscribe.label": "이메일 주소",
        "subscribe.submit": "구독하기",
        "subscribe.back": "상태 페이지로 돌아가기",
        "subscribe.sent_title": "메일함을 확인해 주세요",
        "subscribe.sent": "이 주소로 메일을 받을 수 있다면 확인 링크가 곧 도착합니다. "
        "확인하기 전에는 다른 메일을 보내지 않습니다.",
        "subscribe.invalid_title": "올바른 이메일 주소가 아닙니다",
        "subscribe.invalid": "name@example.com처럼 주소 하나를 입력해 주세요.",
        "subscribe.busy_title": "요청이 너무 많습니다",
        "subscribe.busy": "몇 분 뒤에 다시 시도해 주세요.",
        "subscribe.confirm_title": "구독 확인",
        "subscribe.confirm": "버튼을 누르면 이메일로 소식을 받기 시작합니다.",
        "subscribe.confirm_button": "구독 확인하기",
        "subscribe.confirmed_title": "구독 완료",
        "subscribe.confirmed": "장애 보고가 갱신되거나 점검이 시작되면 메일을 받게 됩니다.",
        "subscribe.expired_title": "만료된 링크입니다",
        "subscribe.expired": "이미 사용했거나 48시간이 지난 링크입니다. "
        "상태 페이지에서 다시 구독해 주세요.",
        "subscribe.unsubscribe_title": "구독 해지",
        "subscribe.unsubscribe": "버튼을 누르면 더 이상 이메일로 소식을 받지 않습니다.",
        "subscribe.unsubscribe_button": "구독 해지하기",
        "subscribe.unsubscribed_title": "구독 해지 완료",
        "subscribe.unsubscribed": "이 주소로 더 이상 이 상태 페이지의 메일을 보내지 않습니다.",
        "subscribe.unsubscribe_expired": "이미 구독이 해지되었을 수 있습니다. 메일이 계속 "
        "온다면 가장 최근 메일의 링크를 사용해 주세요.",
        "subscribe.unavailable_title": "지금은 이용할 수 없습니다",
        "subscribe.unavailable": "잠시 후 다시 시도해 주세요.",
        "fmt.datetime": "{year}년 {month_name} {day}일 {time} {zone}",
        "fmt.date": "{year}년 {month_name} {day}일",
        "fmt.time": "{time} {zone}",
        "fmt.percent": "{value}%",
        "fmt.ms": "{value} ms",
        "fmt.ago": "{duration} 전",
        "fmt.in": "{duration} 후",
        "fmt.list_sep": ", ",
        "fmt.no_data": "데이터 없음",
        "fmt.none": "–",
        "unit.d": "{n}일",
        "unit.h": "{n}시간",
        "unit.m": "{n}분",
        "unit.s": "{n}초",
        "month.1": "1월",
        "month.2": "2월",
        "month.3": "3월",
        "month.4": "4월",
        "month.5": "5월",
        "month.6": "6월",
        "month.7": "7월",
        "month.8": "8월",
        "month.9": "9월",
        "month.10": "10월",
        "month.11": "11월",
        "month.12": "12월",
    },
}

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def placeholders(text: str) -> frozenset[str]:
    """The {names} a catalogue text expects."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)


def resolve(lang: str | None, default: str) -> str:
    """A supported language: `lang` if we have it, else `default`, else English."""
    for candidate in (lang, default):
        if candidate in LANGUAGES:
            return str(candidate)
    return "en"


class Translator:
    """Texts, dates, durations and numbers in one language, for the templates.

    Datetimes are shown in the zone they carry: the snapshot's are already in
    settings.timezone, so no conversion (and no time zone database) is needed here.
    """

    def __init__(self, lang: str) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"unsupported language {lang!r}; use one of {LANGUAGES}")
        self.lang = lang
        self._texts = CATALOGUES[lang]

    def __call__(self, key: str, /, **values: object) -> str:
        return self._texts[key].format(**values)

    def __contains__(self, key: object) -> bool:
        return key in self._texts

    def plural(self, key: str, count: int) -> str:
        """`key.one` for 1, `key.other` otherwise (Korean has one form for both)."""
        return self(f"{key}.{'one' if count == 1 else 'other'}", count=count)

    def date(self, day: dt.date) -> str:
        return self("fmt.date", year=day.year, month_name=self._month(day), day=day.day)

    def datetime(self, moment: dt.datetime | None) -> str:
        if moment is None:
            return self("fmt.none")
        return self(
            "fmt.datetime",
            year=moment.year,
            month_name=self._month(moment),
            day=moment.day,
            time=f"{moment:%H:%M}",
            zone=moment.tzname() or "",
        ).strip()

    def time(self, moment: dt.datetime) -> str:
        return self("fmt.time", time=f"{moment:%H:%M}", zone=moment.tzname() or "").strip()

    def hour(self, moment: dt.datetime) -> str:
        """An hour's start, as on a chart axis: "13:00"."""
        return f"{moment:%H}:00"

    def duration(self, seconds: float | None) -> str:
        """The two largest units in words: "12m", "1h 5m", "2d 3h"; ko "12분", "1시간 5분"."""
        if seconds is None:
            return self("fmt.none")
        rest = max(0, round(seconds))
        if 0 < seconds < 1:
            rest = 1  # some downtime, however short, never reads as none
        first = next((i for i, (_, size) in enumerate(_UNITS) if rest >= size), len(_UNITS) - 1)
        parts: list[str] = []
        for unit, size in _UNITS[first : first + 2]:
            count, rest = divmod(rest, size)
            if count or not parts:
                parts.append(self(f"unit.{unit}", n=count))  # "1h 0m" reads "1h"
        return " ".join(parts)

    def ago(self, seconds: float) -> str:
        return self("fmt.ago", duration=self.duration(seconds))

    def within(self, seconds: float) -> str:
        return self("fmt.in", duration=self.duration(seconds))

    def percent(self, value: float | None, *, empty: str = "fmt.none") -> str:
        """Cut (not rounded) to 2 decimals, so any downtime reads below 100: "99.99 %"."""
        if value is None:
            return self(empty)
        if value >= 100:
            return self("fmt.percent", value="100")
        cut = decimal.Decimal(repr(value)).quantize(decimal.Decimal("0.01"), decimal.ROUND_DOWN)
        return self("fmt.percent", value=f"{cut}")

    def ms(self, value: float | None) -> str:
        if value is None:
            return self("fmt.none")
        return self("fmt.ms", value=f"{round(value):,}")

    def join(self, items: tuple[str, ...] | list[str]) -> str:
        return self("fmt.list_sep").join(items)

    def _month(self, day: dt.date) -> str:
        return self(f"month.{day.month}")
