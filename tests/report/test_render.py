"""The report writers: JSON pinned to the contract text, CSV read back, HTML parsed and
searched for what a reader (and an attacker) would see. Reports are built by hand."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import zoneinfo
from html.parser import HTMLParser

import pytest

from prober.report.model import (
    DayBar,
    LatencyStats,
    MonitorReport,
    MonthReport,
    Period,
    ReportIncident,
)
from prober.report.render import CSV_COLUMNS, FORMATS, to_csv, to_html, to_json

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_CAUSE = '"><img src=x onerror=alert(1)>'


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


# October 2026 in Berlin: DST ends on the 25th, so the month has 745 hours.
OCTOBER = Period(
    month="2026-10",
    timezone="Europe/Berlin",
    start=local(2026, 10, 1),
    end=local(2026, 11, 1),
    seconds=2682000.0,
)
# Began before the month: 30 minutes long, 20 of them in October.
CROSSING = ReportIncident(local(2026, 9, 30, 23, 50), local(2026, 10, 1, 0, 20), 1800.0, "HTTP 503")
OPEN = ReportIncident(local(2026, 10, 31, 23), None, None, "timeout after 10s")


def days(**changes: tuple[float | None, float]) -> list[DayBar]:
    """31 clean days of October; `d5=(99.93, 60.0)` sets day 5's uptime and downtime."""
    bars = [DayBar(dt.date(2026, 10, day), 100.0, 0.0, 0.0, 0.0) for day in range(1, 32)]
    for key, (uptime, downtime) in changes.items():
        index = int(key.removeprefix("d")) - 1
        bars[index] = dataclasses.replace(
            bars[index], uptime_percent=uptime, downtime_seconds=downtime
        )
    return bars


def api(**changes: object) -> MonitorReport:
    monitor = MonitorReport(
        id="api",
        name="API — Zürich",
        group="Backend",
        sla_target=99.9,
        uptime_percent=99.95524058,
        sla_met=True,
        monitored_seconds=2681000.0,
        downtime_seconds=1200.0,
        maintenance_seconds=1000.0,
        unknown_seconds=0.0,
        error_budget_seconds=2681.0,
        error_budget_remaining_seconds=1481.0,
        incident_count=2,
        mttr_seconds=1800.0,
        longest_incident_seconds=1800.0,
        incidents=[CROSSING, OPEN],
        checks=44640,
        failed_checks=31,
        latency=LatencyStats(min=12.0, avg=15.25, p50=14.0, p95=30.0, p99=45.0, max=80.5),
        days=days(d1=(98.61111111111111, 1200.0), d31=(95.83333333333333, 3600.0)),
    )
    return dataclasses.replace(monitor, **changes)  # type: ignore[arg-type]


def web() -> MonitorReport:
    """In another group, below its target."""
    return api(
        id="web",
        name="Website",
        group="Frontend",
        uptime_percent=99.5,
        sla_met=False,
        downtime_seconds=13410.0,
        maintenance_seconds=0.0,
        monitored_seconds=2682000.0,
        error_budget_seconds=2682.0,
        error_budget_remaining_seconds=-10728.0,
        incident_count=1,
        mttr_seconds=13410.0,
        longest_incident_seconds=13410.0,
        incidents=[
            ReportIncident(
                local(2026, 10, 5, 9), local(2026, 10, 5, 12, 43, 30), 13410.0, "HTTP 500"
            )
        ],
        days=days(d3=(99.93055555555556, 60.0), d5=(84.47916666666667, 13350.0)),
    )


def idle() -> MonitorReport:
    """Nothing monitored: the prober never ran for it this month."""
    return MonitorReport(
        id="idle",
        name="Idle",
        group="",
        sla_target=99.0,
        uptime_percent=None,
        sla_met=None,
        monitored_seconds=0.0,
        downtime_seconds=0.0,
        maintenance_seconds=0.0,
        unknown_seconds=2682000.0,
        error_budget_seconds=0.0,
        error_budget_remaining_seconds=0.0,
        incident_count=0,
        mttr_seconds=None,
        longest_incident_seconds=None,
        incidents=[],
        checks=0,
        failed_checks=0,
        latency=LatencyStats(),
        days=[DayBar(bar.date, None, 0.0, 0.0, 86400.0) for bar in days()],
    )


def report(
    *monitors: MonitorReport, language: str = "en", title: str = "Acme Status"
) -> MonthReport:
    return MonthReport(
        title=title,
        language=language,
        period=OCTOBER,
        generated_at=dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC),
        monitors=list(monitors) if monitors else [api(), web(), idle()],
    )


GOLDEN_JSON = """\
{
  "period": {
    "month": "2026-10",
    "timezone": "Europe/Berlin",
    "start": "2026-10-01T00:00:00+02:00",
    "end": "2026-11-01T00:00:00+01:00",
    "seconds": 2682000.0
  },
  "generated_at": "2026-11-01T09:00:00+01:00",
  "monitors": [
    {
      "id": "api",
      "name": "API — Zürich",
      "group": "Backend",
      "sla_target": 99.9,
      "uptime_percent": 99.9552,
      "sla_met": true,
      "monitored_seconds": 2681000.0,
      "downtime_seconds": 1200.0,
      "maintenance_seconds": 1000.0,
      "unknown_seconds": 0.0,
      "error_budget_seconds": 2681.0,
      "error_budget_remaining_seconds": 1481.0,
      "incident_count": 2,
      "mttr_seconds": 1800.0,
      "longest_incident_seconds": 1800.0,
      "incidents": [
        {
          "start": "2026-09-30T23:50:00+02:00",
          "end": "2026-10-01T00:20:00+02:00",
          "duration_seconds": 1800.0,
          "cause": "HTTP 503"
        },
        {
          "start": "2026-10-31T23:00:00+01:00",
          "end": null,
          "duration_seconds": null,
          "cause": "timeout after 10s"
        }
      ],
      "checks": 44640,
      "failed_checks": 31,
      "latency_ms": {
        "min": 12.0,
        "avg": 15.25,
        "p50": 14.0,
        "p95": 30.0,
        "p99": 45.0,
        "max": 80.5
      }
    },
    {
      "id": "idle",
      "name": "Idle",
      "group": "",
      "sla_target": 99.0,
      "uptime_percent": null,
      "sla_met": null,
      "monitored_seconds": 0.0,
      "downtime_seconds": 0.0,
      "maintenance_seconds": 0.0,
      "unknown_seconds": 2682000.0,
      "error_budget_seconds": 0.0,
      "error_budget_remaining_seconds": 0.0,
      "incident_count": 0,
      "mttr_seconds": null,
      "longest_incident_seconds": null,
      "incidents": [],
      "checks": 0,
      "failed_checks": 0,
      "latency_ms": {
        "min": null,
        "avg": null,
        "p50": null,
        "p95": null,
        "p99": null,
        "max": null
      }
    }
  ]
}
"""


def test_json_is_the_contract_text() -> None:
    # DST month (745 h, +02:00 at the start, +01:00 at the end), an incident from September,
    # an open one, a monitor with nothing monitored; generated_at given in UTC, shown local.
    assert to_json(report(api(), idle())) == GOLDEN_JSON


def test_json_key_order_and_what_stays_out() -> None:
    document = json.loads(to_json(report()))
    assert list(document) == ["period", "generated_at", "monitors"]
    assert list(document["period"]) == ["month", "timezone", "start", "end", "seconds"]
    assert list(document["monitors"][0]) == [
        "id", "name", "group", "sla_target", "uptime_percent", "sla_met",
        "monitored_seconds", "downtime_seconds", "maintenance_seconds", "unknown_seconds",
        "error_budget_seconds", "error_budget_remaining_seconds", "incident_count",
        "mttr_seconds", "longest_incident_seconds", "incidents", "checks", "failed_checks",
        "latency_ms",
    ]  # fmt: skip
    assert list(document["monitors"][0]["incidents"][0]) == [
        "start", "end", "duration_seconds", "cause"
    ]  # fmt: skip
    text = to_json(report())
    assert '"days"' not in text and '"title"' not in text and '"language"' not in text


def test_json_keeps_whole_incident_duration_and_refuses_nan() -> None:
    document = json.loads(to_json(report()))
    first = document["monitors"][0]
    # the incident from September lasted 1800 s; only 1200 s of it fall in October
    assert first["incidents"][0]["duration_seconds"] == 1800.0
    assert first["downtime_seconds"] == 1200.0
    with pytest.raises(ValueError, match="not JSON compliant"):
        to_json(report(api(uptime_percent=float("nan"))))


def read_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return list(reader)


def test_csv_reads_back_to_the_same_values() -> None:
    rows = read_csv(to_csv(report()))
    assert [row["id"] for row in rows] == ["api", "web", "idle"]
    first, second, third = rows
    assert first["month"] == "2026-10" and first["timezone"] == "Europe/Berlin"
    assert first["period_start"] == "2026-10-01T00:00:00+02:00"
    assert first["period_end"] == "2026-11-01T00:00:00+01:00"
    assert first["name"] == "API — Zürich"
    assert first["uptime_percent"] == "99.9552"  # 6 significant digits
    assert first["sla_met"] == "true" and second["sla_met"] == "false"
    assert first["checks"] == "44640" and first["incident_count"] == "2"
    assert first["latency_p95_ms"] == "30.0" and first["latency_max_ms"] == "80.5"
    assert second["error_budget_remaining_seconds"] == "-10728.0"  # numbers are not guarded
    # None is an empty cell
    assert third["uptime_percent"] == "" and third["sla_met"] == ""
    assert third["mttr_seconds"] == "" and third["latency_avg_ms"] == ""
    assert third["group"] == ""
    assert set(first) == set(CSV_COLUMNS)  # no incidents, latency or days columns


def test_csv_quotes_awkward_text_and_defuses_formulas() -> None:
    monitors = [
        api(id="a", name='API, "main"\nsecond line'),
        api(id="b", name="=HYPERLINK(1)", group="+SUM(A1)"),
        api(id="c", name="@cmd", group="-2+3"),
        api(id="d", name="\tTab", group="\rReturn"),
        api(id="e", name="safe = name", group="a-b"),
    ]
    rows = read_csv(to_csv(report(*monitors)))
    cells = [(row["name"], row["group"]) for row in rows]
    assert cells == [
        ('API, "main"\nsecond line', "Backend"),
        ("'=HYPERLINK(1)", "'+SUM(A1)"),
        ("'@cmd", "'-2+3"),
        ("'\tTab", "'\rReturn"),
        ("safe = name", "a-b"),
    ]


class Page(HTMLParser):
    """Checks that tags nest, and records what the tests look for."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "area", "base", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.svgs: list[dict[str, list[str]]] = []  # per svg: rect titles
        self.text: list[str] = []
        self._title: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "svg":
            self.svgs.append({"rects": [], "titles": []})
        if tag == "rect":
            self.svgs[-1]["rects"].append(dict(attrs).get("class") or "")
        if tag == "title" and self.stack[-1:] == ["rect"]:
            self._title = []
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)  # <line .../> in the SVG: opens and closes

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag == "title" and self._title is not None:
            self.svgs[-1]["titles"].append("".join(self._title))
            self._title = None

    def handle_data(self, data: str) -> None:
        if self.stack[-1:] != ["style"]:
            self.text.append(data)
        if self._title is not None:
            self._title.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert page.stack == [], f"unclosed: {page.stack}"
    return page


def test_html_parses_and_draws_one_chart_per_monitor() -> None:
    page = parse(to_html(report()))
    assert len(page.svgs) == 3
    for svg in page.svgs:
        assert len(svg["rects"]) == 31  # one bar per October day
        assert len(svg["titles"]) == 31  # each with its text equivalent
    api_chart, web_chart, idle_chart = page.svgs
    assert api_chart["titles"][0] == "2026-10-01: uptime 98.611%, downtime 0h 20m 00s"
    assert api_chart["titles"][1] == "2026-10-02: uptime 100.000%, downtime 0h 00m 00s"
    assert api_chart["rects"][0] == "bad" and api_chart["rects"][1] == "ok"
    assert web_chart["rects"][2] == "warn"  # downtime, but the day stayed above target
    assert set(idle_chart["rects"]) == {"none"}
    assert idle_chart["titles"][0] == "2026-10-01: nothing monitored"


def test_html_figures_and_words() -> None:
    html = to_html(report())
    text = " ".join(parse(html).text)
    assert "Acme Status" in text and "2026-10" in text and "Europe/Berlin" in text
    assert "2026-11-01 09:00:00+01:00" in text  # generated, in the report's zone
    assert "745h 00m 00s" in text  # the DST month's length
    assert "99.955%" in text and "99.500%" in text and "99.9%" in text
    assert "✓ met" in text and "✗ breached" in text and "no data" in text
    assert "44.8%" in text  # 1200 s of a 2681 s budget
    assert "exceeded by 2h 58m 48s" in text and "> 100%" in text  # web's budget, overspent
    # the September incident: shown from its real start, whole duration 30 min, 20 min down
    assert "2026-09-30 23:50:00+02:00" in text and "0h 30m 00s" in text
    assert "0h 20m 00s" in text
    assert "ongoing" in text  # the open incident's end and duration
    assert "min 12 · avg 15.2 · p50 14 · p95 30 · p99 45 · max 80.5" in text
    assert "How these numbers are computed" in text
    for phrase in ("confirmed incidents only", "blips", "Maintenance windows are subtracted",
                   "prober's own network", "nearest rank", "Error budget = "):  # fmt: skip
        assert phrase in text
    assert html.index(">Backend</h2>") < html.index(">Frontend</h2>") < html.index(">Ungrouped<")


def test_html_cuts_uptime_instead_of_rounding_to_100() -> None:
    html = to_html(report(api(uptime_percent=99.99996)))
    assert "99.999%" in html and "100.000%" not in html.split("<svg")[0]


def test_html_is_self_contained_and_print_ready() -> None:
    html = to_html(report())
    page = parse(html)
    assert "http://" not in html and "https://" not in html
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert "@import" not in html and "url(" not in html
    assert "@page { size: A4; margin: 15mm }" in html
    assert "break-inside: avoid" in html and "break-before: page" in html


def test_html_escapes_hostile_text() -> None:
    hostile = api(
        name=HOSTILE_NAME,
        group=HOSTILE_NAME,
        incidents=[dataclasses.replace(CROSSING, cause=HOSTILE_CAUSE)],
    )
    html = to_html(report(hostile, title=HOSTILE_NAME))
    page = parse(html)
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "script" not in page.tags and "img" not in page.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert HOSTILE_CAUSE in " ".join(page.text)  # shown to the reader as text


def test_html_in_korean() -> None:
    html = to_html(report(language="ko"))
    text = " ".join(parse(html).text)
    assert '<html lang="ko">' in html
    for word in ("가동률", "목표", "충족", "미달", "다운타임", "오류 예산", "장애", "점검",
                 "알 수 없음", "진행 중", "수치 계산 방법", "최근접 순위"):  # fmt: skip
        assert word in text, word
    for english in ("Summary", "Uptime", "Downtime", "Incidents", "Target", "Maintenance",
                    "Unknown", "Error budget", "How these numbers", "ongoing", "Generated",
                    "Latency", "breached", "Ungrouped", "nothing monitored"):  # fmt: skip
        assert english not in text, english
    # numbers are formatted the same way in both languages
    assert "99.955%" in text and "745h 00m 00s" in text and "2026-09-30 23:50:00+02:00" in text


def test_html_with_no_monitors() -> None:
    empty = dataclasses.replace(report(), monitors=[])
    page = parse(to_html(empty))
    assert page.svgs == []
    assert "No monitors." in page.text


def test_formats_registry() -> None:
    assert {"json": to_json, "csv": to_csv, "html": to_html} == FORMATS
