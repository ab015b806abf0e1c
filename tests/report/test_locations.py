"""Reports on a hub with agents: the combined verdict's figures, each location's own, and a
config without agents reporting exactly what it always did (a golden file).

November 2026 in Asia/Seoul: 2026-10-31T15:00Z to 2026-11-30T15:00Z, 720 hours. One result
every 5 minutes (interval 300 s, coverage 600 s), down_after "2m" (confirmed at the second
down result, back-dated to the first).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

from prober.config import Config, load_config
from prober.report import compute, render
from prober.results import Outcome
from prober.store.db import connect_raw, open_engine
from tests.support.history import Row, every, write

UTC = dt.UTC
START = dt.datetime(2026, 10, 31, 15, tzinfo=UTC)
END = dt.datetime(2026, 11, 30, 15, tzinfo=UTC)
NOW = dt.datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
MONTH_S = 720 * 3600.0
STEP = dt.timedelta(minutes=5)
GOLDEN = pathlib.Path(__file__).with_name("golden") / "no_agents_2026-11.json"
TOKENS = ("9f1c2b7a4e6d8c0b1a3f5e7d9c2b4a6f", "1b3d5f7a9c0e2d4f6a8c1e3b5d7f9a0c")

MONITORS = """
[[monitors]]
id = "api"
name = "API"
group = "Backend"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "5m"

[[monitors]]
id = "web"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "5m"
sla_target = 99.5
"""
PLAIN = '[settings]\ntimezone = "Asia/Seoul"\n' + MONITORS
AGENTS = f"""
[settings]
timezone = "Asia/Seoul"
location = "seoul"

[[agents]]
location = "frankfurt"
token = "{TOKENS[0]}"

[[agents]]
location = "virginia"
token = "{TOKENS[1]}"

[[monitors]]
id = "api"
name = "API"
group = "Backend"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "5m"

[[monitors]]
id = "web"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "5m"
sla_target = 99.5
locations = ["frankfurt"]
"""


def _at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def _config(tmp: pathlib.Path, text: str) -> Config:
    (tmp / "monitors.toml").write_text(text)
    config = load_config(tmp / "monitors.toml")
    open_engine(config.database_path).dispose()
    return config


@pytest.fixture
def plain(tmp_path: pathlib.Path) -> Iterator[tuple[Config, sqlite3.Connection]]:
    config = _config(tmp_path, PLAIN)
    conn = connect_raw(config.database_path)
    write(conn, config, plain_rows(), roll_until=_at(30, 15))
    yield config, conn
    conn.close()


def plain_rows() -> list[Row]:
    """The golden month's results (test_remediations adds attempts to them)."""
    gap = (_at(15, 0), _at(15, 2))
    return [
        *every("api", "default", START, END, STEP, down=[(_at(10, 3), _at(10, 3, 30))]),
        *(
            r
            for r in every("web", "default", START, END, STEP, down=[(_at(20, 8), _at(20, 8, 15))])
            if not gap[0] <= r.at < gap[1]
        ),
        Row("web", "default", _at(25, 1, 2), Outcome.UNKNOWN, 0.0, "canaries failing"),
    ]


def test_a_config_without_agents_reports_what_it_always_did(
    plain: tuple[Config, sqlite3.Connection],
) -> None:
    config, conn = plain
    report = compute.build(conn, config, "2026-11", now=NOW)
    text = render.to_json(report)
    assert "locations" not in json.loads(text)["monitors"][0]
    assert text == GOLDEN.read_text()


@pytest.fixture
def agents(tmp_path: pathlib.Path) -> Iterator[tuple[Config, sqlite3.Connection]]:
    """api, probed from seoul (the hub), frankfurt and virginia, quorum 2:
    - seoul: down 11-10 03:00-03:30Z (its own incident: 1,800 s), latency 40 ms;
    - frankfurt: the same outage, and down 11-12 06:00-07:00Z alone (3,600 s more of its
      own), latency 90 ms;
    - virginia: always up, silent 11-15 00:00-02:00Z (its 23:55 result covers to 00:05:
      6,900 s unknown);
    - combined (`*`): down 11-10 03:00-03:30Z only (the regional outage is not downtime).
    web, probed from frankfurt only: down 11-20 08:00-08:15Z (900 s), latency 70 ms."""
    config = _config(tmp_path, AGENTS)
    conn = connect_raw(config.database_path)
    outage = (_at(10, 3), _at(10, 3, 30))
    silent = (_at(15, 0), _at(15, 2))
    frankfurt_down = [outage, (_at(12, 6), _at(12, 7))]
    rows = [
        *every("api", "seoul", START, END, STEP, down=[outage]),
        *every("api", "frankfurt", START, END, STEP, down=frankfurt_down, latency_ms=90.0),
        *(
            r
            for r in every("api", "virginia", START, END, STEP)
            if not silent[0] <= r.at < silent[1]
        ),
        *every(
            "web",
            "frankfurt",
            START,
            END,
            STEP,
            down=[(_at(20, 8), _at(20, 8, 15))],
            latency_ms=70.0,
        ),
    ]
    combined = [(r.at, r.outcome) for r in rows if r.monitor == "api" and r.location == "seoul"]
    write(conn, config, rows, combined={"api": combined}, roll_until=_at(30, 15))
    yield config, conn
    conn.close()


def _uptime(monitored: float, down: float) -> float:
    return float(f"{100 * (monitored - down) / monitored:.6g}")


def test_each_location_has_its_own_figures(agents: tuple[Config, sqlite3.Connection]) -> None:
    config, conn = agents
    document = json.loads(render.to_json(compute.build(conn, config, "2026-11", now=NOW)))
    api, web = document["monitors"]
    # the combined verdict: the regional outage at frankfurt is no downtime
    assert (api["monitored_seconds"], api["downtime_seconds"]) == (MONTH_S, 1800.0)
    assert api["uptime_percent"] == _uptime(MONTH_S, 1800)
    assert [i["start"] for i in api["incidents"]] == ["2026-11-10T12:00:00+09:00"]
    assert api["locations"] == {
        "seoul": {
            "uptime_percent": _uptime(MONTH_S, 1800),
            "monitored_seconds": MONTH_S,
            "downtime_seconds": 1800.0,
        },
        "frankfurt": {
            "uptime_percent": _uptime(MONTH_S, 5400),
            "monitored_seconds": MONTH_S,
            "downtime_seconds": 5400.0,
        },
        "virginia": {
            "uptime_percent": 100.0,
            "monitored_seconds": MONTH_S - 6900,
            "downtime_seconds": 0.0,
        },
    }
    # checks and latency where the hub probes it: seoul's 8,640 results at 40 ms
    assert (api["checks"], api["failed_checks"]) == (8640, 6)
    assert api["latency_ms"]["max"] == 40.0
    # probed from frankfurt alone: its verdict and latency are frankfurt's
    assert (web["downtime_seconds"], web["checks"], web["latency_ms"]["max"]) == (900.0, 8640, 70.0)
    assert web["locations"] == {
        "frankfurt": {
            "uptime_percent": _uptime(MONTH_S, 900),
            "monitored_seconds": MONTH_S,
            "downtime_seconds": 900.0,
        }
    }


def test_csv_and_html_show_each_location(agents: tuple[Config, sqlite3.Connection]) -> None:
    config, conn = agents
    report = compute.build(conn, config, "2026-11", now=NOW)
    rows = list(csv.DictReader(io.StringIO(render.to_csv(report))))
    assert [(r["id"], r["location"]) for r in rows] == [
        ("api", ""),
        ("api", "seoul"),
        ("api", "frankfurt"),
        ("api", "virginia"),
        ("web", ""),
        ("web", "frankfurt"),
    ]
    frankfurt = rows[2]
    assert (frankfurt["downtime_seconds"], frankfurt["monitored_seconds"]) == (
        "5400.0",
        "2592000.0",
    )
    assert frankfurt["uptime_percent"] == repr(_uptime(MONTH_S, 5400))
    assert frankfurt["checks"] == frankfurt["incident_count"] == ""  # the monitor's row says
    assert rows[0]["downtime_seconds"] == "1800.0" and rows[0]["checks"] == "8640"
    page = render.to_html(report)
    table = page[page.index('<table class="locations">') :]
    table = table[: table.index("</table>")]
    assert [name in table for name in ("seoul", "frankfurt", "virginia")] == [True] * 3
    assert "99.791%" in table and "1h 30m 00s" in table  # frankfurt's, cut to 3 decimals
