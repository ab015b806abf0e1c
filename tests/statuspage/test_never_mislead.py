"""Issue 14, item 4: the page never misleads a visitor. One test per point, each from a real
database written by the real writer (the ledger derives incidents, coverage and
transitions), and each snapshot built in full and kept (Incremental) alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
from collections.abc import Iterable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from markupsafe import Markup

from prober.config import load_config
from prober.config.load import Config
from prober.results import Certificate, CheckResult, Outcome
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from statuspage.app import create_app
from statuspage.build import build_snapshot
from statuspage.health import Health
from statuspage.incremental import Incremental
from statuspage.pages import make_environment, render_monitor
from statuspage.snapshot import (
    DayLevel,
    NoticeUpdateView,
    NoticeView,
    Overall,
    Snapshot,
    State,
)

NOW = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)  # a Thursday
MINUTE = dt.timedelta(minutes=1)
UP = CheckResult(Outcome.UP, 40.0)
SUNDAYS = 'cron = "0 2 * * 0"\nduration = "2h"'  # every Sunday 02:00-04:00 UTC


def _config(tmp: pathlib.Path, text: str) -> Config:
    (tmp / "monitors.toml").write_text('[settings]\ntimezone = "UTC"\n' + text)
    config = load_config(tmp / "monitors.toml")
    open_engine(config.database_path).dispose()
    return config


def _write(config: Config, observations: Iterable[Observation]) -> None:
    writer = ResultWriter(
        config.database_path, "default", [TrackSpec.of(m) for m in config.monitors]
    )
    writer.start()
    for obs in sorted(observations, key=lambda o: o.at):
        writer.submit(obs)
    assert writer.flush(60)
    writer.close()


def _every(
    monitor: str,
    start: dt.datetime,
    end: dt.datetime,
    step: dt.timedelta,
    result: CheckResult = UP,
) -> list[Observation]:
    found, at = [], start
    while at < end:
        found.append(Observation(monitor, at, result))
        at += step
    return found


def _snapshot(config: Config, now: dt.datetime = NOW) -> Snapshot:
    """The full build, checked against the kept (incremental) one."""
    conn = connect_raw(config.database_path)
    try:
        full = build_snapshot(conn, config, now)
        assert Incremental().refresh(conn, config, now) == full
    finally:
        conn.close()
    return full


# 1 ----------------------------------------------------------------------------------------


def test_recurring_maintenance_is_drawn_only_from_when_monitoring_began(
    tmp_path: pathlib.Path,
) -> None:
    config = _config(
        tmp_path,
        '[[monitors]]\nid = "a"\ntype = "http"\nurl = "http://127.0.0.1:9/"\ninterval = "10m"\n'
        f'[[maintenance]]\ntitle = "Weekly patching"\nmonitors = ["a"]\n{SUNDAYS}\n',
    )
    began = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)  # a Wednesday
    _write(config, _every("a", began, NOW, 10 * MINUTE))
    snapshot = _snapshot(config)
    a = snapshot.monitor("a")
    assert a is not None
    before = [d for d in a.days if d.date < began.date()]
    assert len(before) == 90 - 9
    # no blue bar on the Sundays before the prober watched: nothing is known there
    assert {(d.level, d.maintenance_seconds, d.uptime_percent) for d in before} == {
        (DayLevel.UNKNOWN, 0.0, None)
    }
    [sunday] = [d for d in a.days if d.date == dt.date(2026, 11, 29)]
    assert (sunday.level, sunday.maintenance_seconds) == (DayLevel.UP, 7200.0)
    assert a.uptime["90d"] == 100.0
    # the completed windows (H2's scheduled-maintenance lifecycle): only the watched one
    [done] = snapshot.maintenance_completed
    assert (done.title, done.monitor_ids) == ("Weekly patching", ("a",))
    assert (done.start, done.end) == (
        dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 29, 4, 0, tzinfo=dt.UTC),
    )


# 2 ----------------------------------------------------------------------------------------


def test_a_failure_not_confirmed_yet_is_operational(tmp_path: pathlib.Path) -> None:
    config = _config(
        tmp_path,
        '[[monitors]]\nid = "p"\ntype = "http"\nurl = "http://127.0.0.1:9/"\ndown_after = "5m"\n',
    )
    first = NOW - dt.timedelta(hours=1)
    down = CheckResult(Outcome.DOWN, 3.0, error="HTTP 503")
    _write(
        config,
        [
            *_every("p", first, NOW - 2 * MINUTE, MINUTE),
            *_every("p", NOW - 2 * MINUTE, NOW, MINUTE, down),  # failing for a minute
        ],
    )
    snapshot = _snapshot(config)
    p = snapshot.monitor("p")
    assert p is not None
    assert (p.state, p.incidents) == (State.UP, ())
    assert p.since == first  # a blip moves no "Since"
    assert snapshot.overall is Overall.OPERATIONAL
    assert snapshot.groups[0].state is State.UP


# 3 ----------------------------------------------------------------------------------------


def test_a_certificate_warning_is_private(tmp_path: pathlib.Path) -> None:
    config = _config(
        tmp_path,
        '[[monitors]]\nid = "t"\nname = "Shop TLS"\ntype = "tls"\nhost = "127.0.0.1"\n'
        "port = 9\nwarn_days = 14\n",
    )
    expiry = dt.datetime(2026, 12, 13, 10, 0, tzinfo=dt.UTC)
    warned = CheckResult(
        Outcome.DEGRADED,
        12.0,
        error="certificate expires in 10.0 days (2026-12-13 10:00 UTC), warn_days 14",
        certificate=Certificate(expiry, "CN=shop", "CN=ca"),
    )
    _write(config, _every("t", NOW - dt.timedelta(hours=1), NOW, MINUTE, warned))
    snapshot = _snapshot(config)
    t = snapshot.monitor("t")
    assert t is not None
    assert t.state is State.UP
    assert snapshot.overall is Overall.OPERATIONAL  # not "Some systems degraded" for weeks
    assert t.cert_expires == expiry  # the expiry stays on the monitor's page
    html = render_monitor(snapshot, "t", "en", make_environment())
    assert html is not None
    assert 'class="cert"' in html and "Dec 13, 2026" in html


# 4 ----------------------------------------------------------------------------------------


def test_since_and_started_of_one_outage_agree(tmp_path: pathlib.Path) -> None:
    config = _config(
        tmp_path,
        '[[monitors]]\nid = "s"\ntype = "http"\nurl = "http://127.0.0.1:9/"\ndown_after = "3m"\n',
    )
    failed = NOW - dt.timedelta(minutes=30)
    down = CheckResult(Outcome.DOWN, 3.0, error="HTTP 503")
    _write(
        config,
        [
            *_every("s", NOW - dt.timedelta(hours=2), failed, MINUTE),
            *_every("s", failed, NOW, MINUTE, down),
        ],
    )
    snapshot = _snapshot(config)
    s = snapshot.monitor("s")
    assert s is not None
    [incident] = s.incidents
    assert (s.state, incident.start, incident.end) == (State.DOWN, failed, None)
    assert s.since == incident.start  # back-dated to the first failure, not its confirmation


# 5 ----------------------------------------------------------------------------------------

CAUSES = """
public_reports = true

[[monitors]]
id = "shop"
name = "Shop"
type = "http"
url = "http://127.0.0.1:9/"
contains = ["Welcome to Acme Shop"]
down_after = 1

[[monitors]]
id = "resolver"
name = "Resolver"
type = "dns"
query = "acme.example"
down_after = 1

[[monitors]]
id = "v6"
name = "IPv6 site"
type = "http"
url = "http://127.0.0.1:9/"
ip_version = 6
down_after = 1
"""
ERRORS = {
    "shop": "contains 'Welcome to Acme Shop': saw absent, wanted present",
    "resolver": "no nameservers configured and none found in /etc/resolv.conf",
    "v6": "ip_version is 6 but intranet-7.acme.example is an IPv4 address",
}


async def test_public_causes_are_failure_classes_on_every_route(tmp_path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    config = _config(tmp_path, CAUSES)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)  # the app builds at the clock's now
    start = now - dt.timedelta(minutes=30)
    _write(
        config,
        [
            obs
            for mid, error in ERRORS.items()
            for obs in (
                *_every(mid, start, start + 10 * MINUTE, MINUTE),
                *_every(
                    mid,
                    start + 10 * MINUTE,
                    now,
                    MINUTE,
                    CheckResult(Outcome.DOWN, 1.0, error=error),
                ),
            )
        ],
    )
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(config, Health(lambda: True, lambda: True))
    )
    routes = [
        "/",
        "/?lang=ko",
        *(f"/monitors/{m}" for m in ERRORS),
        *(f"/monitors/{m}/feed.atom" for m in ERRORS),
        *(f"/badge/{m}/status.svg" for m in ERRORS),
        "/api/v1/status",
        "/api/v1/incidents",
        "/api/v2/summary.json",
        "/api/v2/incidents.json",
        "/api/v2/incidents/unresolved.json",
        "/feed.atom",
        "/feed.rss",
        f"/reports/{now:%Y-%m}.json",
        f"/reports/{now:%Y-%m}.html",
    ]
    for route in routes:
        response = await client.get(route)
        body = await response.text()
        assert response.status == 200, (route, body[:300])
        for words in ("Welcome to Acme Shop", "resolv.conf", "intranet-7", "ip_version"):
            assert words not in body, (route, words)
    incidents = json.loads(await (await client.get("/api/v1/incidents")).text())["incidents"]
    assert {i["monitor"]: i["cause"] for i in incidents} == {
        "shop": "keyword check failed",
        "resolver": "DNS lookup failed",
        "v6": "connection failed",
    }


# 6 ----------------------------------------------------------------------------------------


def test_push_monitor_shows_its_schedule_last_ping_and_run(tmp_path: pathlib.Path) -> None:
    config = _config(
        tmp_path,
        '[[monitors]]\nid = "job"\nname = "Nightly export"\ntype = "push"\nperiod = "1h"\n'
        'grace = "5m"\n',
    )
    pinged = NOW - dt.timedelta(hours=2, minutes=5)
    ping = CheckResult(Outcome.UP, 30_000.0, details={"push": "ping"})
    missed = CheckResult(
        Outcome.DOWN, 0.0, error="no ping within 1h + 5m grace", details={"push": "missed"}
    )
    _write(
        config,
        [
            Observation("job", pinged - dt.timedelta(hours=1), ping),
            Observation("job", pinged, ping),
            Observation("job", pinged + dt.timedelta(hours=1, minutes=5), missed),
        ],
    )
    snapshot = _snapshot(config)
    job = snapshot.monitor("job")
    assert job is not None and job.push is not None
    assert (job.push.period_seconds, job.push.cron, job.push.grace_seconds) == (3600, "", 300)
    assert (job.push.last_ping, job.push.run_seconds) == (pinged, 30.0)
    html = render_monitor(snapshot, "job", "en", make_environment())
    assert html is not None
    assert 'id="chart-heading"' not in html  # no response-time chart: a job has runs
    assert 'class="cert"' not in html  # nor a certificate
    for words in ("Last ping", "Grace period", "Every 1h", "Last run took", "30s"):
        assert words in html, words


# 7 ----------------------------------------------------------------------------------------


def test_a_group_header_shows_the_worst_state_not_one_members_maintenance(
    tmp_path: pathlib.Path,
) -> None:
    monitors = "".join(
        f'[[monitors]]\nid = "{mid}"\ngroup = "{group}"\ntype = "http"\n'
        'url = "http://127.0.0.1:9/"\n'
        for mid, group in (("x", "G"), ("y", "G"), ("z", "G"), ("u", "H"), ("v", "H"))
    )
    config = _config(
        tmp_path,
        monitors + '[[maintenance]]\ntitle = "Swap disks"\nmonitors = ["z", "u", "v"]\n'
        'start = "2026-12-03T09:30:00Z"\nend = "2026-12-03T11:00:00Z"\n',
    )
    _write(
        config,
        [obs for mid in "xyzuv" for obs in _every(mid, NOW - dt.timedelta(hours=1), NOW, MINUTE)],
    )
    snapshot = _snapshot(config)
    states = {g.name: g.state for g in snapshot.groups}
    assert states == {"G": State.UP, "H": State.MAINTENANCE}  # one of three is not the group
    assert [m.state for m in snapshot.groups[0].monitors] == [
        State.UP,
        State.UP,
        State.MAINTENANCE,
    ]


# 8 ----------------------------------------------------------------------------------------


def test_days_before_the_first_result_are_no_data_and_do_not_pull_uptime_down(
    tmp_path: pathlib.Path,
) -> None:
    config = _config(
        tmp_path,
        '[[monitors]]\nid = "n"\ntype = "http"\nurl = "http://127.0.0.1:9/"\ninterval = "10m"\n'
        "down_after = 1\n"
        f'[[maintenance]]\ntitle = "Weekly patching"\nmonitors = ["n"]\n{SUNDAYS}\n',
    )
    began = NOW - dt.timedelta(days=10)  # Monday 2026-11-23 10:00
    outage = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    down = CheckResult(Outcome.DOWN, 3.0, error="HTTP 503")
    _write(
        config,
        [
            *_every("n", began, outage, 10 * MINUTE),
            *_every("n", outage, outage + dt.timedelta(hours=1), 10 * MINUTE, down),
            *_every("n", outage + dt.timedelta(hours=1), NOW, 10 * MINUTE),
        ],
    )
    n = _snapshot(config).monitor("n")
    assert n is not None
    before = [d for d in n.days if d.date < began.date()]
    assert len(before) == 79
    assert all(d.level is DayLevel.UNKNOWN and d.uptime_percent is None for d in before)
    assert sum(d.maintenance_seconds for d in before) == 0
    monitored = 10 * 86400 - 7200  # ten days watched, less Sunday 29th's two hours
    expected = 100 * (monitored - 3600) / monitored
    for window in ("30d", "90d"):
        assert n.uptime[window] == pytest.approx(expected), window


# the monitor's page lists the incidents written by people that name it ------------------


def test_monitor_page_lists_the_notices_naming_it(tmp_path: pathlib.Path) -> None:
    config = _config(
        tmp_path,
        "".join(
            f'[[monitors]]\nid = "{mid}"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n'
            for mid in ("api", "web")
        ),
    )
    _write(config, [o for m in ("api", "web") for o in _every(m, NOW - MINUTE * 30, NOW, MINUTE)])
    at = NOW - MINUTE * 10
    update = NoticeUpdateView("db-1", "identified", at, "Disk full", Markup("<p>Disk full</p>"))
    notice = NoticeView(
        id="db",
        title="Database writes failing",
        impact="major",
        status="identified",
        created_at=at,
        updated_at=at,
        resolved_at=None,
        components=(("api", "api", "major_outage"),),
        updates=(update,),
        detected=None,
    )
    snapshot = dataclasses.replace(_snapshot(config), notices=(notice,))
    env = make_environment()
    named, other = (render_monitor(snapshot, m, "en", env) for m in ("api", "web"))
    assert named is not None and other is not None
    assert "Database writes failing" in named and "<p>Disk full</p>" in named
    assert "Database writes failing" not in other


# the kept snapshot follows all of the above as results arrive ----------------------------


def test_kept_snapshot_follows_a_first_result_pings_and_a_confirmation(
    tmp_path: pathlib.Path,
) -> None:
    config = _config(
        tmp_path,
        '[[monitors]]\nid = "a"\ntype = "http"\nurl = "http://127.0.0.1:9/"\ninterval = "10m"\n'
        'down_after = "15m"\n'
        '[[monitors]]\nid = "job"\ntype = "push"\nperiod = "1h"\n'
        f'[[maintenance]]\ntitle = "Weekly patching"\nmonitors = ["a", "job"]\n{SUNDAYS}\n'
        '[[maintenance]]\ntitle = "Quick fix"\nmonitors = ["a"]\n'
        'start = "2026-12-03T09:45:00Z"\nend = "2026-12-03T09:50:00Z"\n',
    )
    kept = Incremental()
    ping = CheckResult(Outcome.UP, 12_000.0, details={"push": "ping"})
    down = CheckResult(Outcome.DOWN, 3.0, error="HTTP 503")
    sunday = dt.datetime(2026, 11, 29, 2, 30, tzinfo=dt.UTC)  # inside a window
    steps = [
        (sunday, []),  # nothing yet: no maintenance accounted, the state says maintenance
        (
            sunday + dt.timedelta(hours=2),
            _every("a", sunday, sunday + dt.timedelta(hours=2), 10 * MINUTE),
        ),
        (
            NOW - 40 * MINUTE,
            _every("a", sunday + dt.timedelta(hours=2), NOW - 40 * MINUTE, 10 * MINUTE),
        ),
        (
            NOW - 20 * MINUTE,
            [
                Observation("job", NOW - 30 * MINUTE, ping),
                *_every("a", NOW - 40 * MINUTE, NOW - 20 * MINUTE, 10 * MINUTE, down),
            ],
        ),
        (NOW, _every("a", NOW - 20 * MINUTE, NOW, 10 * MINUTE, down)),  # confirmed at -20m + 15m
    ]
    seen = []
    for now, observations in steps:
        _write(config, observations)
        conn = connect_raw(config.database_path)
        try:
            full = build_snapshot(conn, config, now)
            assert kept.refresh(conn, config, now) == full, now
        finally:
            conn.close()
        a, job = full.monitors
        seen.append((a.state, a.since, job.push and job.push.last_ping))
    assert seen == [
        (State.MAINTENANCE, None, None),
        (State.UP, sunday, None),
        (State.UP, sunday, None),
        (State.UP, sunday, NOW - 30 * MINUTE),  # failing, not confirmed yet
        (State.DOWN, NOW - 40 * MINUTE, NOW - 30 * MINUTE),
    ]
    assert kept.full_builds == 1
    assert [w.title for w in full.maintenance_completed] == ["Quick fix", "Weekly patching"]
