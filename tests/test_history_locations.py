"""`import-results` with the optional `location` column: rows stored where they were
measured, each location's own derived data and the combined verdict rebuilt, a location no
one declares refused with its line (nothing imported)."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3

import pytest

from prober import history
from prober.config import Config, load_config
from prober.report import compute

NOW = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)
START = dt.datetime(2026, 11, 10, 0, 0, tzinfo=dt.UTC)
HEADER = "monitor,timestamp,outcome,latency_ms,error"
CONFIG = """
[settings]
timezone = "UTC"
location = "seoul"
database = "sqlite:///data/prober.db"
retention_days = 365

[[agents]]
location = "frankfurt"
token = "9f1c2b7a4e6d8c0b1a3f5e7d9c2b4a6f"

[[agents]]
location = "virginia"
token = "1b3d5f7a9c0e2d4f6a8c1e3b5d7f9a0c"

[[monitors]]
id = "api"
type = "tcp"
host = "127.0.0.1"
port = 9

[[monitors]]
id = "web"
type = "tcp"
host = "127.0.0.1"
port = 9
locations = ["frankfurt"]
"""


@pytest.fixture
def config(tmp_path: pathlib.Path) -> Config:
    (tmp_path / "monitors.toml").write_text(CONFIG)
    return load_config(tmp_path / "monitors.toml")


def _stamp(minute: int) -> str:
    return (START + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows(monitor: str, location: str, down: range = range(0)) -> list[str]:
    """An hour, a result a minute; down (HTTP 503) at the minutes in `down`."""
    return [
        f"{monitor},{_stamp(i)},down,,HTTP 503,{location}"
        if i in down
        else f"{monitor},{_stamp(i)},up,40,,{location}"
        for i in range(60)
    ]


def _stored(config: Config, query: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(config.database_path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _incidents(config: Config) -> list[tuple[object, ...]]:
    return _stored(
        config,
        "SELECT m.slug, l.name, i.start_ms, i.end_ms FROM incident i"
        " JOIN monitor m ON m.id = i.monitor_id JOIN location l ON l.id = i.location_id"
        " ORDER BY 1, 2",
    )


def _ms(minute: int) -> int:
    return round((START + dt.timedelta(minutes=minute)).timestamp() * 1000)


def test_rows_go_where_they_were_measured(config: Config, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "history.csv"
    rows = [
        *_rows("api", "", down=range(10, 20)),  # empty: settings.location (seoul)
        *_rows("api", "frankfurt", down=range(10, 20)),
        *_rows("api", "virginia", down=range(30, 40)),  # alone: regional
        *_rows("web", "frankfurt"),
    ]
    path.write_text(f"{HEADER},location\n" + "\n".join(rows) + "\n")
    summary = history.import_results(config, path, now=NOW)
    assert (summary.rows, summary.added, summary.monitors) == (240, 240, 2)
    counts = _stored(
        config,
        "SELECT m.slug, l.name, count(*) FROM result r JOIN monitor m ON m.id = r.monitor_id"
        " JOIN location l ON l.id = r.location_id GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert counts == [
        ("api", "frankfurt", 60),
        ("api", "seoul", 60),
        ("api", "virginia", 60),
        ("web", "frankfurt", 60),
    ]
    # each location's own incident, and the combined verdict's (2 of 3 agree) under `*`
    assert _incidents(config) == [
        ("api", "*", _ms(10), _ms(20)),
        ("api", "frankfurt", _ms(10), _ms(20)),
        ("api", "seoul", _ms(10), _ms(20)),
        ("api", "virginia", _ms(30), _ms(40)),
    ]
    conn = sqlite3.connect(config.database_path)
    try:
        report = compute.build(conn, config, "2026-11", now=NOW)
    finally:
        conn.close()
    api = report.monitors[0]
    assert api.downtime_seconds == 600.0
    assert {p.location: p.downtime_seconds for p in api.locations} == {
        "seoul": 600.0,
        "frankfurt": 600.0,
        "virginia": 600.0,
    }
    assert api.checks == 60  # the hub's own results
    web = report.monitors[1]  # probed from frankfurt only: its rows rolled up there; the
    # last result (minute 59) covers two minutes more
    assert (web.checks, web.latency.max, web.monitored_seconds) == (60, 40.0, 3660.0)


def test_without_the_column_rows_are_the_hubs(config: Config, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "history.csv"
    rows = [f"api,{_stamp(i)},up,40," for i in range(5)]
    path.write_text(f"{HEADER}\n" + "\n".join(rows) + "\n")
    history.import_results(config, path, now=NOW)
    located = _stored(
        config,
        "SELECT DISTINCT l.name FROM result r JOIN location l ON l.id = r.location_id",
    )
    assert located == [("seoul",)]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            f"api,{_stamp(3)},up,40,,frankfrut",
            "location: no hub or [[agents]] entry declares 'frankfrut' (did you mean "
            "'frankfurt'?); declared: seoul, frankfurt, virginia",
        ),
        (
            f"web,{_stamp(3)},up,40,,seoul",
            "location: monitor 'web' is not probed from 'seoul' (its locations: frankfurt)",
        ),
        (
            f"web,{_stamp(3)},up,40,,",
            "location: monitor 'web' is not probed from 'seoul' (its locations: frankfurt)",
        ),
    ],
)
def test_a_wrong_location_is_a_line_error_and_nothing_is_imported(
    config: Config, tmp_path: pathlib.Path, row: str, message: str
) -> None:
    path = tmp_path / "history.csv"
    good = [f"api,{_stamp(i)},up,40,,virginia" for i in range(3)]
    path.write_text(f"{HEADER},location\n" + "\n".join([*good, row]) + "\n")
    with pytest.raises(history.ImportFailed) as failed:
        history.import_results(config, path, now=NOW)
    assert [(e.line, e.message) for e in failed.value.parsed.errors] == [(5, message)]
    assert not config.database_path.exists() or _stored(config, "SELECT * FROM result") == []
