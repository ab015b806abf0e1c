"""Remediation attempts in the operator's report (`prober report`) and nowhere public (issue
16: "every attempt is written on the incident's timeline for operators ... never on public
routes, public reports included").

The golden month of test_locations (November 2026 in Asia/Seoul, api down 10 Nov 03:00-03:30
UTC, web down 20 Nov 08:00-08:15 UTC), results written through the store's own functions,
attempts through prober.store.remediations as the Remediator records them. The public side
(/reports/ with `public_reports = true`, the monthly files the web process writes) must be
byte for byte what it was before attempts existed; the operator's report lists each attempt
under its incident and counts the month's per monitor.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest
from aiohttp.test_utils import TestClient

from prober.config import Config
from prober.report import compute, monthly, render
from prober.report.model import LocationFigures
from prober.report.render import CSV_COLUMNS, REMEDIATION_COLUMNS
from prober.store import remediations
from prober.store.db import connect_raw
from prober.timeline import to_ms
from statuspage.app import create_app
from statuspage.health import Health
from tests.report.test_locations import GOLDEN, MONITORS, NOW, _at, _config, plain_rows
from tests.report.test_output import Node, _hand_built, _month, _parse
from tests.support.history import write

MARKER = "TAIL-MARKER-7f3a"  # in every output tail: never in a public byte

CONFIG = (
    '[settings]\ntimezone = "Asia/Seoul"\npublic_reports = true\nallow_commands = true\n'
    + MONITORS.replace(
        'interval = "5m"\n',
        'interval = "5m"\nremediate = { command = ["/bin/true"], verify = 1 }\n',
        1,  # api's
    )
)


def _attempt(
    conn: sqlite3.Connection,
    monitor: str,
    incident: str,
    started: dt.datetime,
    ended: dt.datetime | None,
    *,
    result: str,
    exit_code: int | None = None,
    timed_out: bool = False,
    tail: str = "",
) -> None:
    """One attempt recorded as the Remediator records it: started, finished, settled."""
    attempt = remediations.start(conn, monitor, incident, to_ms(started))
    if ended is None:
        return
    finished = result if result in ("failed", "timed_out") else remediations.RUNNING
    remediations.finish(
        conn,
        attempt,
        to_ms(ended),
        result=finished,
        exit_code=exit_code,
        timed_out=timed_out,
        output_tail=tail,
    )
    if result != finished:
        remediations.settle(conn, attempt, result)


@pytest.fixture
def project(tmp_path: pathlib.Path) -> Config:
    config = _config(tmp_path, CONFIG)
    conn = connect_raw(config.database_path)
    write(conn, config, plain_rows(), roll_until=_at(30, 15))
    starts = dict(
        conn.execute(
            "SELECT m.slug, i.start_ms FROM incident i JOIN monitor m ON m.id = i.monitor_id"
        ).fetchall()
    )
    api, web = starts["api"], starts["web"]
    assert (api, web) == (to_ms(_at(10, 3)), to_ms(_at(20, 8)))
    # api's incident: a restart that hung, then one that worked
    _attempt(
        conn, "api", f"default/api/{api}", _at(10, 3, 10), _at(10, 3, 11),
        result="timed_out", timed_out=True, tail=f"{MARKER} <b>hung</b> & stuck\n",
    )  # fmt: skip
    _attempt(
        conn, "api", f"default/api/{api}", _at(10, 3, 20), _at(10, 3, 20) + dt.timedelta(seconds=2),
        result="verified", exit_code=0, tail=f"restarted {MARKER}\n",
    )  # fmt: skip
    # a run of downs that never became an incident: counted, listed under none
    blip = to_ms(_at(25, 12))
    _attempt(
        conn, "api", f"default/api/{blip}", _at(25, 12, 5), _at(25, 12, 6),
        result="verified", exit_code=0, tail=MARKER,
    )  # fmt: skip
    # October's: neither listed nor counted in November
    october = dt.datetime(2026, 10, 20, 1, tzinfo=dt.UTC)
    _attempt(
        conn, "api", f"default/api/{to_ms(october)}", october, october + dt.timedelta(minutes=1),
        result="failed", exit_code=1, tail=MARKER,
    )  # fmt: skip
    # web's incident: a failed command, and one still running whose key names a start the
    # incident no longer has (a verdict re-derived since): it is the incident it was made in
    _attempt(
        conn, "web", f"default/web/{web}", _at(20, 8, 5), _at(20, 8, 5) + dt.timedelta(seconds=1),
        result="failed", exit_code=3, tail=f"{MARKER}: permission denied\n",
    )  # fmt: skip
    _attempt(conn, "web", f"default/web/{web - 300_000}", _at(20, 8, 10), None, result="running")
    conn.close()
    return config


def _prober(config: Config, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBER_")}
    done = subprocess.run(
        [sys.executable, "-m", "prober", *args, "-c", str(config.path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_prober_report_json_lists_each_attempt_under_its_incident(project: Config) -> None:
    document = json.loads(_prober(project, "report", "--month", "2026-11"))
    api, web = document["monitors"]
    (incident,) = api["incidents"]
    assert incident["start"] == "2026-11-10T12:00:00+09:00"
    assert incident["remediations"] == [
        {
            "started": "2026-11-10T12:10:00+09:00",
            "ended": "2026-11-10T12:11:00+09:00",
            "result": "timed_out",
            "exit_code": None,
            "timed_out": True,
            "output_tail": f"{MARKER} <b>hung</b> & stuck\n",
        },
        {
            "started": "2026-11-10T12:20:00+09:00",
            "ended": "2026-11-10T12:20:02+09:00",
            "result": "verified",
            "exit_code": 0,
            "timed_out": False,
            "output_tail": f"restarted {MARKER}\n",
        },
    ]
    # the blip's attempt counts; October's does not
    assert (api["remediation_attempts"], api["remediations_verified"]) == (3, 2)
    (incident,) = web["incidents"]
    assert [(r["started"], r["ended"], r["result"], r["exit_code"]) for r in incident["remediations"]] == [
        ("2026-11-20T17:05:00+09:00", "2026-11-20T17:05:01+09:00", "failed", 3),
        ("2026-11-20T17:10:00+09:00", None, "running", None),
    ]  # fmt: skip
    assert (web["remediation_attempts"], web["remediations_verified"]) == (2, 0)
    # the counts come last; the rest is the public report's, key for key
    assert list(api)[-2:] == list(REMEDIATION_COLUMNS)
    public = json.loads(GOLDEN.read_text())["monitors"][0]
    assert list(api)[:-2] == list(public)


def test_a_monitor_without_attempts_has_empty_lists_and_zero_counts(project: Config) -> None:
    conn = connect_raw(project.database_path)
    conn.execute("DELETE FROM remediation WHERE monitor = 'web'")
    conn.close()
    document = json.loads(_prober(project, "report", "--month", "2026-11"))
    web = document["monitors"][1]
    assert [i["remediations"] for i in web["incidents"]] == [[]]
    assert (web["remediation_attempts"], web["remediations_verified"]) == (0, 0)


def test_prober_report_csv_ends_with_the_counts(project: Config) -> None:
    text = _prober(project, "report", "--month", "2026-11", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == (*CSV_COLUMNS, *REMEDIATION_COLUMNS)
    assert [(r["id"], r["remediation_attempts"], r["remediations_verified"]) for r in rows] == [
        ("api", "3", "2"),
        ("web", "2", "0"),
    ]
    assert MARKER not in text  # no output in a spreadsheet's cells


def _remediation_rows(page: Node, monitor_id: str) -> list[tuple[str, str]]:
    (section,) = [
        s for s in page.find("section", "monitor") if s.find("span", "id")[0].text == monitor_id
    ]
    rows = section.find("tr", "remediation")
    return [
        (
            "".join(c for c in row.find("td")[0].children if isinstance(c, str)),
            "".join(pre.text for pre in row.find("pre")),
        )
        for row in rows
    ]


def test_prober_report_html_writes_a_line_per_attempt(project: Config) -> None:
    html = _prober(project, "report", "--month", "2026-11", "--format", "html")
    page = _parse(html)
    assert _remediation_rows(page, "api") == [
        ("Remediation 12:10:00–12:11:00: timed out", f"{MARKER} <b>hung</b> & stuck\n"),
        ("Remediation 12:20:00–12:20:02: exit code 0, verified", f"restarted {MARKER}\n"),
    ]
    assert _remediation_rows(page, "web") == [
        ("Remediation 17:05:00–17:05:01: exit code 3, failed", f"{MARKER}: permission denied\n"),
        ("Remediation 17:10:00–: running", ""),
    ]
    assert "<b>hung" not in html and "&lt;b&gt;hung&lt;/b&gt; &amp; stuck" in html  # escaped
    figures = {
        div.find("dt")[0].text: div.find("dd")[0].text
        for div in page.find("section", "monitor")[0].find("dl", "figures")[0].find("div")
    }
    assert (figures["Remediation attempts"], figures["Remediations verified"]) == ("3", "2")


def test_the_html_report_in_korean(project: Config) -> None:
    conn = connect_raw(project.database_path)
    try:
        report = compute.build(conn, project, "2026-11", now=NOW, operator=True)
    finally:
        conn.close()
    page = _parse(render.to_html(dataclasses.replace(report, language="ko")))
    assert [line for line, _ in _remediation_rows(page, "api")] == [
        "자동 복구 12:10:00–12:11:00: 시간 초과",
        "자동 복구 12:20:00–12:20:02: 종료 코드 0, 검증됨",
    ]


def _public(text: str) -> None:
    assert MARKER not in text
    assert "remediation" not in text.lower()


@pytest.mark.parametrize("form", ["json", "csv", "html"])
def test_prober_report_public_is_the_one_to_send_a_customer(project: Config, form: str) -> None:
    text = _prober(project, "report", "--month", "2026-11", "--format", form, "--public")
    _public(text)
    if form == "json":
        document = json.loads(text)
        golden = json.loads(GOLDEN.read_text())
        assert {**document, "generated_at": None} == {**golden, "generated_at": None}


def test_the_monthly_files_are_what_they_were(project: Config) -> None:
    written = monthly.write_monthly(project, now=NOW)
    assert sorted(p.name for p in written) == ["2026-11.csv", "2026-11.html", "2026-11.json"]
    for path in written:
        _public(path.read_text())
    # byte for byte the report of before attempts existed
    assert (monthly.reports_dir(project) / "2026-11.json").read_text() == GOLDEN.read_text()


async def test_the_public_report_routes_show_no_attempt(project: Config, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = await aiohttp_client(
        create_app(project, Health(lambda: True, lambda: True))
    )
    for fmt in ("json", "csv", "html"):
        answer = await client.get(f"/reports/2026-11.{fmt}")
        assert answer.status == 200, fmt
        text = await answer.text()
        _public(text)
        if fmt == "json":  # the golden month, but for when it was generated
            document, golden = json.loads(text), json.loads(GOLDEN.read_text())
            del document["generated_at"], golden["generated_at"]
            assert document == golden
        if fmt == "csv":
            assert tuple(next(csv.reader(io.StringIO(text)))) == CSV_COLUMNS


def test_with_agents_the_counts_follow_the_location_column() -> None:
    places = (
        LocationFigures("seoul", 100.0, 60.0, 0.0),
        LocationFigures("tokyo", 50.0, 60.0, 30.0),
    )
    api = _hand_built(locations=places, remediation_attempts=4, remediations_verified=1)
    report = dataclasses.replace(_month(api, generated=NOW), operator=True)
    header, *rows = csv.reader(io.StringIO(render.to_csv(report), newline=""))
    assert header == [*CSV_COLUMNS, "location", *REMEDIATION_COLUMNS]
    assert [row[-3:] for row in rows] == [["", "4", "1"], ["seoul", "", ""], ["tokyo", "", ""]]
    # the public one: as before
    header, *_ = csv.reader(io.StringIO(render.to_csv(dataclasses.replace(report, operator=False))))
    assert header == [*CSV_COLUMNS, "location"]
