"""A month of history, written by this test, imported and reported through the real CLI,
against figures computed by hand from DESIGN.md's Semantics; then pruned and reported again.

Europe/Berlin, October 2026: 745 hours (DST ends on the 25th), from 2026-09-30T22:00Z to
2026-10-31T23:00Z. One result a minute for each monitor, except where noted.

api (down_after = "2m", up_after = 1, target 99.9 from settings):
- 10-05 10:00Z-10:29Z down (30 results), up at 10:30: incident of 1,800 s.
- 10-06 08:00Z down once: a blip, never downtime.
- maintenance 10-10 02:00-03:00 +02:00 (00:00Z-01:00Z): down 00:30Z-01:09Z, up at 01:10:
  an incident of 2,400 s, of which 1,800 s inside maintenance: 600 s of downtime.
- 10-15 12:00Z-12:59Z: no results (prober stopped). 11:59's result covers until 12:01
  (2 x interval), so 12:01-13:00 is unknown: 3,540 s.
- 10-20 05:00Z-05:09Z unknown results (canaries failing): 600 s unknown.
- 10-25 03:00Z-03:04Z degraded at 600 ms: up for availability, in the latency figures.
- 10-31 22:50Z down until 11-01 23:20Z... (to 23:19Z), up at 23:20Z: an incident of 1,800 s
  crossing the month's end, 600 s of it in October.
web (down_after = 3 checks, sla_target = 99.5):
- 10-03 09:00Z, 09:01Z down, up at 09:02: two failures, a blip.
- 10-04 09:00Z-09:02Z down, up at 09:03: confirmed at the third, 180 s.
- the same stopped-prober gap.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

UTC = dt.UTC
START = dt.datetime(2026, 9, 30, 22, tzinfo=UTC)
END = dt.datetime(2026, 10, 31, 23, tzinfo=UTC)
DATA_END = dt.datetime(2026, 11, 1, 0, tzinfo=UTC)
MONTH_SECONDS = 2_682_000.0


def _at(day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, minute, tzinfo=UTC)


def _minutes(first: dt.datetime, count: int) -> set[dt.datetime]:
    return {first + dt.timedelta(minutes=i) for i in range(count)}


STOPPED = _minutes(_at(15, 12, 0), 60)
API_DOWN = (
    _minutes(_at(5, 10, 0), 30)
    | {_at(6, 8, 0)}
    | _minutes(_at(10, 0, 30), 40)
    | _minutes(_at(31, 22, 50), 30)
)
API_UNKNOWN = _minutes(_at(20, 5, 0), 10)
API_DEGRADED = _minutes(_at(25, 3, 0), 5)
WEB_DOWN = _minutes(_at(3, 9, 0), 2) | _minutes(_at(4, 9, 0), 3)


def _up_latency(at: dt.datetime) -> int:
    return 20 + at.minute % 10


def _rows() -> list[tuple[str, dt.datetime, str, str, str]]:
    rows = []
    at = START
    while at < DATA_END:
        if at not in STOPPED:
            for monitor in ("api", "web"):
                down = API_DOWN if monitor == "api" else WEB_DOWN
                if at in down:
                    rows.append((monitor, at, "down", "5000", "HTTP 503 from 10.0.0.7:8080"))
                elif monitor == "api" and at in API_UNKNOWN:
                    rows.append((monitor, at, "unknown", "", "canaries failing"))
                elif monitor == "api" and at in API_DEGRADED:
                    rows.append((monitor, at, "degraded", "600", ""))
                else:
                    rows.append((monitor, at, "up", str(_up_latency(at)), ""))
        at += dt.timedelta(minutes=1)
    return rows


def _nearest_rank(values: list[int], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return float(ordered[int(rank) - 1])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("history")
    (root / "monitors.toml").write_text(
        textwrap.dedent(
            """
            [settings]
            title = "Acme"
            timezone = "Europe/Berlin"
            database = "sqlite:///data/prober.db"
            retention_days = 7

            [[monitors]]
            id = "api"
            name = "API"
            group = "Backend"
            type = "tcp"
            host = "127.0.0.1"
            port = 9
            down_after = "2m"

            [[monitors]]
            id = "web"
            type = "tcp"
            host = "127.0.0.1"
            port = 9
            down_after = 3
            sla_target = 99.5

            [[maintenance]]
            title = "DB upgrade"
            monitors = ["api"]
            start = "2026-10-10T02:00:00+02:00"
            end = "2026-10-10T03:00:00+02:00"
            """
        )
    )
    with (root / "history.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["monitor", "timestamp", "outcome", "latency_ms", "error"])
        for monitor, at, outcome, latency, error in _rows():
            writer.writerow(
                [monitor, at.isoformat().replace("+00:00", "Z"), outcome, latency, error]
            )
    return root


def _prober(root: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBER_")}
    return subprocess.run(
        [sys.executable, "-m", "prober", *args, "-c", str(root / "monitors.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _report(root: pathlib.Path) -> dict[str, dict[str, object]]:
    done = _prober(root, "report", "--month", "2026-10", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["period"] == {
        "month": "2026-10",
        "timezone": "Europe/Berlin",
        "start": "2026-10-01T00:00:00+02:00",
        "end": "2026-11-01T00:00:00+01:00",
        "seconds": MONTH_SECONDS,
    }
    return {m["id"]: m for m in data["monitors"]}


@pytest.fixture(scope="module")
def imported(project: pathlib.Path) -> pathlib.Path:
    done = _prober(project, "import-results", str(project / "history.csv"))
    assert done.returncode == 0, done.stderr
    assert "imported 89,400 new results of 89,400 rows for 2 monitors" in done.stdout
    return project


def test_import_then_report_matches_the_hand_computed_month(imported: pathlib.Path) -> None:
    report = _report(imported)
    api, web = report["api"], report["web"]

    maintenance, unknown = 3600.0, 3540.0 + 600.0
    monitored = MONTH_SECONDS - maintenance - unknown
    downtime = 1800.0 + 600.0 + 600.0
    assert api["maintenance_seconds"] == maintenance
    assert api["unknown_seconds"] == unknown
    assert api["monitored_seconds"] == monitored
    assert api["downtime_seconds"] == downtime
    assert api["uptime_percent"] == pytest.approx(100 * (monitored - downtime) / monitored)
    assert api["sla_target"] == 99.9
    assert api["sla_met"] is False  # 99.888 %
    assert api["error_budget_seconds"] == pytest.approx(0.001 * monitored)
    assert api["error_budget_remaining_seconds"] == pytest.approx(0.001 * monitored - downtime)
    assert api["incident_count"] == 3
    assert [(i["start"], i["end"], i["duration_seconds"]) for i in api["incidents"]] == [
        ("2026-10-05T12:00:00+02:00", "2026-10-05T12:30:00+02:00", 1800.0),
        ("2026-10-10T02:30:00+02:00", "2026-10-10T03:10:00+02:00", 2400.0),
        ("2026-10-31T23:50:00+01:00", "2026-11-01T00:20:00+01:00", 1800.0),
    ]
    assert {i["cause"] for i in api["incidents"]} == {"HTTP 503"}
    assert api["mttr_seconds"] == 2000.0
    assert api["longest_incident_seconds"] == 2400.0

    in_month = [r for r in _rows() if r[0] == "api" and START <= r[1] < END]
    assert api["checks"] == len(in_month) == 44_700 - 60
    assert api["failed_checks"] == 30 + 1 + 40 + 10
    latencies = [int(r[3]) for r in in_month if r[2] in ("up", "degraded")]
    assert api["latency_ms"] == {
        "min": 20.0,
        "avg": round(sum(latencies) / len(latencies), 3),  # ms to 3 decimals
        # from the rollups' histograms: within 1/256 (DESIGN.md: within 0.5 %)
        "p50": pytest.approx(_nearest_rank(latencies, 50), rel=1 / 256),
        "p95": pytest.approx(_nearest_rank(latencies, 95), rel=1 / 256),
        "p99": pytest.approx(_nearest_rank(latencies, 99), rel=1 / 256),
        "max": 600.0,
    }

    web_monitored = MONTH_SECONDS - 3540.0
    assert web["sla_target"] == 99.5
    assert web["maintenance_seconds"] == 0.0
    assert web["downtime_seconds"] == 180.0
    assert web["uptime_percent"] == pytest.approx(100 * (web_monitored - 180) / web_monitored)
    assert web["sla_met"] is True
    assert web["incident_count"] == 1
    assert web["failed_checks"] == 5


def test_importing_the_same_file_twice_adds_nothing(imported: pathlib.Path) -> None:
    before = _report(imported)
    done = _prober(imported, "import-results", str(imported / "history.csv"))
    assert done.returncode == 0, done.stderr
    assert "imported 0 new results of 89,400 rows" in done.stdout
    assert _report(imported) == before


def test_csv_and_html_reports(imported: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "oct.csv"
    done = _prober(imported, "report", "--month", "2026-10", "--format", "csv", "-o", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert rows["api"]["downtime_seconds"] == "3000.0"
    done = _prober(imported, "report", "--month", "2026-10", "--format", "html", "--monitor", "web")
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout
    assert "API" not in done.stdout.split("<body", 1)[1].split("How these numbers", 1)[0]


def test_a_pruned_month_reports_the_same(imported: pathlib.Path) -> None:
    before = _report(imported)
    done = _prober(imported, "prune")
    assert done.returncode == 0, done.stderr
    # retention 7 days: all of October, but each monitor's newest hour (60 results) stays
    assert "pruned 89,280 raw results" in done.stdout
    after = _report(imported)
    for monitor in ("api", "web"):
        for key in ("uptime_percent", "downtime_seconds", "unknown_seconds", "incidents", "checks"):
            assert after[monitor][key] == before[monitor][key], (monitor, key)
        assert after[monitor]["latency_ms"] == before[monitor]["latency_ms"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--month", "2026-13"], "--month: '2026-13' is not a month"),
        (["report", "--month", "2026-10", "--monitor", "apj"], "did you mean 'api'?"),
    ],
)
def test_report_usage_errors(project: pathlib.Path, args: list[str], message: str) -> None:
    done = _prober(project, *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_a_bad_file_imports_nothing_and_names_each_line(project: pathlib.Path) -> None:
    bad = project / "bad.csv"
    bad.write_text(
        "monitor,timestamp,outcome,latency_ms,error\n"
        "api,2026-11-02T00:00:00Z,up,12,\n"
        "apj,2026-11-02T00:01:00Z,up,12,\n"
        "api,2026-11-02T00:02:00,up,12,\n"
        "api,2026-11-02T00:03:00Z,UP,12,\n"
    )
    fresh = project / "fresh"
    fresh.mkdir(exist_ok=True)
    (fresh / "monitors.toml").write_text((project / "monitors.toml").read_text())
    done = _prober(fresh, "import-results", str(bad))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert lines[0].startswith(f"{bad}:3: monitor: no monitor has id 'apj'")
    assert lines[1].startswith(f"{bad}:4: timestamp:")
    assert lines[2].startswith(f"{bad}:5: outcome:")
    assert lines[-1] == "nothing imported: 3 rows have errors"
    assert not (fresh / "data" / "prober.db").exists()


def test_last_months_report_is_written_once_beside_the_database(imported: pathlib.Path) -> None:
    from prober.config import load_config
    from prober.report import monthly

    config = load_config(str(imported / "monitors.toml"))
    first_of_november = dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    written = monthly.write_monthly(config, now=first_of_november)
    reports = imported / "data" / "reports"
    assert sorted(p.name for p in written) == ["2026-10.csv", "2026-10.html", "2026-10.json"]
    assert json.loads((reports / "2026-10.json").read_text())["period"]["month"] == "2026-10"
    assert monthly.write_monthly(config, now=first_of_november) == []  # already there
    # a month before the first result: nothing to report
    assert monthly.write_monthly(config, now=dt.datetime(2026, 9, 15, tzinfo=UTC)) == []


def test_history_older_than_the_prune_line_is_refused(imported: pathlib.Path) -> None:
    """Runs after the prune test: October's hours are rollups only now."""
    done = _prober(imported, "import-results", str(imported / "history.csv"))
    assert done.returncode == 1
    assert "where this database's raw results were pruned" in done.stderr
