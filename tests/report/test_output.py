"""The report as a customer reads it (issue 17): numbers rounded at output only, whatever
is decided from them decided on the exact values; an exhausted error budget said as such;
a daily chart whose scale is true and whose future is empty; `prober report` without
--month reporting last month.

Real databases: two months of results (the real last month and the one before, relative
to today) imported through the real import path, read by the real CLI as a subprocess and
by the public /reports/ routes. Hand-built reports only where a value must be exactly so.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import decimal
import io
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from prober import history, timeline
from prober.config import Config, load_config
from prober.report import compute, monthly
from prober.report.model import DayBar, LatencyStats, MonitorReport, MonthReport, Period
from prober.report.render import CSV_COLUMNS, to_html, to_json
from statuspage.app import create_app
from statuspage.health import Health

TZ = ZoneInfo("Asia/Seoul")
NOW = dt.datetime.now(dt.UTC)


def _month_before(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


_HERE = NOW.astimezone(TZ)
LAST = _month_before(f"{_HERE.year:04d}-{_HERE.month:02d}")  # the month an SLA is billed for
BEFORE = _month_before(LAST)
LAST_START, LAST_END = timeline.month_bounds(LAST, TZ)
BEFORE_START, _ = timeline.month_bounds(BEFORE, TZ)
TEN_MINUTES = dt.timedelta(minutes=10)
# api: a 40-minute incident on the 3rd of last month (confirmed after 20 minutes), and in
# the month before a 3-hour one, so the two months' figures cannot be mistaken.
API_DOWN_LAST = {LAST_START + dt.timedelta(days=2, hours=10) + i * TEN_MINUTES for i in range(4)}
API_DOWN_BEFORE = {BEFORE_START + dt.timedelta(days=5) + i * TEN_MINUTES for i in range(18)}
# fresh: a new install, six checks before the month ended, three of them down: 3 minutes of
# downtime out of 6 monitored, against a budget of 0.36 s (the "54996.1 %").
FRESH = [LAST_END - dt.timedelta(minutes=6 - i) for i in range(6)]
FRESH_DOWN = set(FRESH[1:4])

CONFIG = """
[settings]
title = "Acme"
timezone = "Asia/Seoul"
database = "sqlite:///data/prober.db"
public_reports = true

[[monitors]]
id = "api"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "10m"
down_after = "20m"

[[monitors]]
id = "web"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "10m"
sla_target = 99.5

[[monitors]]
id = "fresh"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "1m"
"""


def _rows() -> list[tuple[str, dt.datetime, str, str]]:
    rows = []
    at, index = BEFORE_START, 0
    while at < LAST_END:
        down = at in API_DOWN_LAST or at in API_DOWN_BEFORE
        rows.append(("api", at, "down" if down else "up", "" if down else "31"))
        # latencies with hundredths: their average carries float noise
        rows.append(("web", at, "up", f"{20 + (index % 7) * 1.37:.2f}"))
        at, index = at + TEN_MINUTES, index + 1
    rows += [("fresh", t, "down" if t in FRESH_DOWN else "up", "12.5") for t in FRESH]
    return rows


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("output")
    (root / "monitors.toml").write_text(textwrap.dedent(CONFIG))
    with (root / "history.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["monitor", "timestamp", "outcome", "latency_ms", "error"])
        for monitor, at, outcome, latency in _rows():
            error = "HTTP 503" if outcome == "down" else ""
            writer.writerow([monitor, at.isoformat(), outcome, latency, error])
    config = load_config(root / "monitors.toml")
    history.import_results(config, root / "history.csv")
    return config


# What DESIGN.md allows each published float: seconds and milliseconds to 3 decimals,
# percentages to 6 significant digits; sla_target is the config's own number.
def _decimals(value: float) -> int:
    exponent = decimal.Decimal(repr(value)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _significant(value: float) -> int:
    return len(decimal.Decimal(repr(value)).normalize().as_tuple().digits)


def _allowed(key: str, value: float) -> bool:
    if key == "uptime_percent":
        return _significant(value) <= 6
    if key == "sla_target":
        return True
    assert key.endswith(("seconds", "_ms")), f"a published float nobody rounds: {key}"
    return _decimals(value) <= 3


def _published_floats(node: object, key: str = "") -> list[tuple[str, float]]:
    """Every float in a JSON document, with the key it is under (latency_ms's: "p95_ms")."""
    if isinstance(node, float):
        return [(key, node)]
    if isinstance(node, dict):
        inner = {k: f"{k}_ms" if key == "latency_ms" else k for k in node}
        return [f for k, v in node.items() for f in _published_floats(v, inner[k])]
    if isinstance(node, list):
        return [f for v in node for f in _published_floats(v, key)]
    return []


def _assert_rounded_json(text: str) -> dict[str, dict[str, Any]]:
    document = json.loads(text)
    floats = _published_floats(document)
    assert len(floats) > 40
    assert [(k, v) for k, v in floats if not _allowed(k, v)] == []
    return {m["id"]: m for m in document["monitors"]}


def _assert_rounded_csv(text: str) -> dict[str, dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    for row in rows:
        for column, cell in row.items():
            if cell and column.endswith(("_seconds", "_percent", "_ms")):
                assert _allowed(column, float(cell)), (row["id"], column, cell)
    return {row["id"]: row for row in rows}


def _exact(config: Config) -> dict[str, MonitorReport]:
    conn = monthly.open_existing(config)
    try:
        report = compute.build(conn, config, LAST, now=NOW)
    finally:
        conn.close()
    return {m.id: m for m in report.monitors}


def test_json_and_csv_round_every_published_number(project: Config) -> None:
    exact = _exact(project)
    api, web = exact["api"], exact["web"]
    # the exact figures carry what the issue saw (else this test would prove nothing)
    assert _significant(api.uptime_percent or 0) > 6
    assert _decimals(api.error_budget_seconds) > 3
    assert _decimals(web.latency.avg or 0) > 3

    published = _assert_rounded_json(monthly.report(project, LAST, "json", now=NOW))
    rows = _assert_rounded_csv(monthly.report(project, LAST, "csv", now=NOW))
    for monitor_id, monitor in exact.items():
        document, row = published[monitor_id], rows[monitor_id]
        for name in ("uptime_percent", "error_budget_seconds", "error_budget_remaining_seconds"):
            value = getattr(monitor, name)
            wanted = float(f"{value:.6g}") if name.endswith("percent") else round(value, 3)
            assert document[name] == wanted, (monitor_id, name)
            assert float(row[name]) == wanted, (monitor_id, name)
        assert document["sla_met"] is monitor.sla_met
    assert published["api"]["downtime_seconds"] == 2400.0
    assert published["api"]["incidents"][0]["duration_seconds"] == 2400.0
    latency = published["web"]["latency_ms"]
    assert latency["avg"] == round(web.latency.avg or 0, 3)
    assert rows["web"]["latency_avg_ms"] == repr(latency["avg"])


async def test_the_public_report_routes_round_the_same(project: Config, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = await aiohttp_client(
        create_app(project, Health(lambda: True, lambda: True))
    )
    answer = await client.get(f"/reports/{LAST}.json")
    assert answer.status == 200
    published = _assert_rounded_json(await answer.text())
    answer = await client.get(f"/reports/{LAST}.csv")
    assert answer.status == 200
    rows = _assert_rounded_csv(await answer.text())
    assert published["api"]["uptime_percent"] == float(rows["api"]["uptime_percent"])
    assert _significant(float(rows["api"]["uptime_percent"])) <= 6


def _hand_built(**changes: object) -> MonitorReport:
    start = dt.datetime(2026, 10, 1, tzinfo=TZ)
    monitor = MonitorReport(
        id="api",
        name="API",
        group="",
        sla_target=99.9999,
        # below the target (99.99989898...); to 6 significant digits 99.9999: on it
        uptime_percent=100 * (2678400.0 - 2.7056) / 2678400.0,
        sla_met=False,
        monitored_seconds=2678400.0,
        downtime_seconds=2.7056,
        maintenance_seconds=0.0,
        unknown_seconds=0.0,
        error_budget_seconds=2.6784000000000003,
        error_budget_remaining_seconds=2.6784000000000003 - 2.7056,
        incident_count=0,
        mttr_seconds=None,
        longest_incident_seconds=None,
        incidents=[],
        checks=44640,
        failed_checks=0,
        latency=LatencyStats(12.0, 22.409599999999998, 20.0, 30.0, 40.0, 50.0),
        days=[DayBar(start.date() + dt.timedelta(days=i), 100.0, 0.0, 0.0, 0.0) for i in range(31)],
    )
    return dataclasses.replace(monitor, **changes)  # type: ignore[arg-type]


def _month(*monitors: MonitorReport, generated: dt.datetime, language: str = "en") -> MonthReport:
    start, end = timeline.month_bounds("2026-10", TZ)
    return MonthReport(
        title="Acme",
        language=language,
        period=Period("2026-10", "Asia/Seoul", start, end, (end - start).total_seconds()),
        generated_at=generated,
        monitors=list(monitors),
    )


def test_sla_met_and_the_budget_come_from_the_exact_numbers() -> None:
    report = _month(_hand_built(), generated=dt.datetime(2026, 11, 1, tzinfo=TZ))
    (api,) = json.loads(to_json(report))["monitors"]
    # rounded, the uptime equals the target; the exact uptime is below it, and that decides
    assert api["uptime_percent"] == 99.9999 == api["sla_target"]
    assert api["sla_met"] is False
    # the remaining budget is the exact difference (-0.0272) rounded, not the difference
    # of the rounded budget and downtime (2.678 - 2.706 = -0.028)
    assert api["error_budget_seconds"] == 2.678 and api["downtime_seconds"] == 2.706
    assert api["error_budget_remaining_seconds"] == -0.027
    assert api["latency_ms"]["avg"] == 22.41
    # the page says the budget is exceeded, by a second at least (not "by 0h 00m 00s")
    figures = _figures(_parse(to_html(report)), "api")
    assert figures["Error budget used"] == "> 100%"
    assert figures["Error budget remaining"] == "exceeded by 0h 00m 01s"


class Node:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Node | str] = []

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def find(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and (cls is None or cls in child.attrs.get("class", "")):
                    found.append(child)
                found.extend(child.find(tag, cls))
        return found


class Tree(HTMLParser):
    VOID = frozenset({"meta", "link", "br", "hr", "img", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def _parse(html: str) -> Node:
    tree = Tree()
    tree.feed(html)
    tree.close()
    assert tree.stack == [tree.root]
    return tree.root


def _figures(page: Node, monitor_id: str) -> dict[str, str]:
    """A monitor's section: its figures list as {term: value}."""
    (section,) = [
        s
        for s in page.find("section", "monitor")
        if s.find("span", "id")[0].text.strip() == monitor_id
    ]
    return {
        pair.find("dt")[0].text.strip(): pair.find("dd")[0].text.strip()
        for pair in section.find("dl", "figures")[0].find("div")
    }


def test_an_exhausted_budget_reads_as_exhausted(project: Config) -> None:
    page = _parse(monthly.report(project, LAST, "html", now=NOW))
    fresh = _figures(page, "fresh")
    assert fresh["Monitored time"] == "0h 06m 00s"
    assert fresh["Downtime"] == "0h 03m 00s"
    assert fresh["Error budget"] == "0h 00m 00s"  # 0.36 s
    assert fresh["Error budget used"] == "> 100%"
    assert fresh["Error budget remaining"] == "exceeded by 0h 03m 00s"
    summary = {
        row.find("td")[0].text: [td.text for td in row.find("td")]
        for row in page.find("section", "summary")[0].find("tbody")[0].find("tr")
    }
    assert summary["fresh"][6] == "> 100%"
    # a budget not spent reads as before
    api = _figures(page, "api")
    assert api["Error budget used"].endswith("%") and float(api["Error budget used"][:-1]) < 100
    assert not api["Error budget remaining"].startswith(("-", "exceeded"))
    # the exact figures behind it
    exact = _exact(project)["fresh"]
    assert exact.error_budget_remaining_seconds == pytest.approx(0.36 - 180)


def test_an_exhausted_budget_in_korean() -> None:
    spent = _hand_built(downtime_seconds=180.0, error_budget_remaining_seconds=-179.64)
    report = _month(spent, generated=dt.datetime(2026, 11, 1, tzinfo=TZ), language="ko")
    figures = _figures(_parse(to_html(report)), "api")
    assert figures["오류 예산 사용률"] == "> 100%"
    assert figures["남은 오류 예산"] == "0h 03m 00s 초과"


@dataclasses.dataclass
class Drawn:
    floor: float  # the axis label, as printed
    top: float  # the plot's top (100 %) and its height, from the vertical axis line
    plot: float
    bars: dict[str, tuple[str, float]]  # date -> (class, height)
    titles: dict[str, str]
    ticks: list[str]


def _charts(html: str) -> list[Drawn]:
    drawn = []
    for svg in _parse(html).find("svg"):
        vertical = next(
            line for line in svg.find("line", "axis") if line.attrs["x1"] == line.attrs["x2"]
        )
        top, axis = float(vertical.attrs["y1"]), float(vertical.attrs["y2"])
        labels = {float(t.attrs["y"]): t.text for t in svg.find("text", "scale")}
        assert labels[axis].endswith("%") and labels[min(labels)] == "100%"
        bars, titles = {}, {}
        for rect in svg.find("rect"):
            title = rect.find("title")[0].text
            date = title[:10]
            y, height = float(rect.attrs["y"]), float(rect.attrs["height"])
            assert y + height == pytest.approx(axis)  # every bar stands on the axis
            bars[date] = (rect.attrs["class"], height)
            titles[date] = title
        ticks = [t.text for t in svg.find("text", "tick")]
        drawn.append(Drawn(float(labels[axis][:-1]), top, axis - top, bars, titles, ticks))
    return drawn


def _day(date: int, uptime: float) -> DayBar:
    return DayBar(dt.date(2026, 10, date), uptime, 86400 * (100 - uptime) / 100, 0.0, 0.0)


def test_the_chart_shows_a_bad_day_on_a_true_scale_and_leaves_the_future_empty() -> None:
    days = _hand_built().days
    bad = _hand_built(
        id="bad", sla_target=99.9, days=[*days[:4], _day(5, 45.0), _day(6, 99.95), *days[6:]]
    )
    down = _hand_built(id="down", sla_target=99.9, days=[*days[:8], _day(9, 0.0), *days[9:]])
    # generated at noon on the 15th: the 16th to the 31st have not happened yet
    html = to_html(_month(bad, down, generated=dt.datetime(2026, 10, 15, 12, tzinfo=TZ)))
    first, second = _charts(html)

    dates = [f"2026-10-{day:02d}" for day in range(1, 16)]
    for chart in (first, second):
        assert list(chart.bars) == dates  # no bar after today, not even a grey one
        assert chart.ticks == ["1", "5", "10", "15", "20", "25", "30"]  # the axis runs on
        assert chart.titles["2026-10-15"].startswith("2026-10-15 (so far): uptime 100.000%")
    # the axis is true: each bar's height is its uptime on the printed scale
    uptimes = {day.date.isoformat(): day.uptime_percent for day in bad.days}
    for date, (_, height) in first.bars.items():
        share = ((uptimes[date] or 0) - first.floor) / (100 - first.floor)
        assert height == pytest.approx(share * first.plot, abs=0.02), date
    # the 45 % day is a bar a reader sees and can read off the axis: a fifth of the plot
    kind, height = first.bars["2026-10-05"]
    assert kind == "bad" and first.floor < 45 and height >= 0.2 * first.plot
    assert first.bars["2026-10-06"][0] == "warn" and first.bars["2026-10-01"][0] == "ok"
    # a day at 0 % on a 0-100 axis is still drawn, as a sliver
    assert second.floor == 0
    kind, height = second.bars["2026-10-09"]
    assert kind == "bad" and 1.5 <= height <= 3
    assert "days to come have no bar" in html


def test_a_finished_months_chart_draws_every_day() -> None:
    html = to_html(_month(_hand_built(), generated=dt.datetime(2026, 11, 1, 0, 5, tzinfo=TZ)))
    (chart,) = _charts(html)
    assert len(chart.bars) == 31
    assert not any("so far" in title for title in chart.titles.values())
    assert "days to come" not in html


def _prober(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBER_")}
    return subprocess.run(
        [sys.executable, "-m", "prober", *args, "-c", str(config.path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_report_without_month_is_last_month(project: Config, tmp_path: pathlib.Path) -> None:
    done = _prober(project, "report")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["period"]["month"] == LAST
    assert document["period"]["start"] == LAST_START.isoformat()
    api = {m["id"]: m for m in document["monitors"]}["api"]
    assert api["downtime_seconds"] == 2400.0  # last month's incident, not the one before
    assert api["checks"] == sum(1 for r in _rows() if r[0] == "api" and r[1] >= LAST_START)

    out = tmp_path / "last.csv"
    done = _prober(project, "report", "--format", "csv", "-o", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as f:
        assert [row["month"] for row in csv.DictReader(f)] == [LAST] * 3

    # --month still picks any month
    done = _prober(project, "report", "--month", BEFORE)
    assert done.returncode == 0, done.stderr
    before = {m["id"]: m for m in json.loads(done.stdout)["monitors"]}["api"]
    assert before["downtime_seconds"] == 18 * 600.0
