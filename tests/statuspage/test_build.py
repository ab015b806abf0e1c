"""The snapshot from a real database, against figures worked out by hand."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3

import pytest

from prober.config import load_config
from prober.config.load import Config
from prober.config.monitors import HttpMonitor
from prober.results import CheckResult, Outcome
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from statuspage.build import build_snapshot
from statuspage.incremental import Incremental
from statuspage.snapshot import DayLevel, Overall, Snapshot, State

NOW = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)
START = dt.datetime(2026, 11, 18, 0, 0, tzinfo=dt.UTC)
OUTAGE = (
    dt.datetime(2026, 11, 19, 12, 0, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 19, 12, 30, tzinfo=dt.UTC),
)
CONFIG = """
[settings]
history_days = 3

[[monitors]]
id = "a"
name = "Alpha"
group = "G"
type = "http"
url = "http://127.0.0.1:9/"

[[monitors]]
id = "hidden"
type = "http"
url = "http://127.0.0.1:9/"
public = false

[[monitors]]
id = "stale"
type = "http"
url = "http://127.0.0.1:9/"

[[monitors]]
id = "maint"
type = "http"
url = "http://127.0.0.1:9/"

[[maintenance]]
title = "Swap disks"
monitors = ["maint", "hidden"]
start = "2026-11-20T05:30:00Z"
end = "2026-11-20T07:00:00Z"
"""


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    tmp = tmp_path_factory.mktemp("build")
    (tmp / "monitors.toml").write_text(CONFIG)
    config = load_config(tmp / "monitors.toml")
    _write(config)
    conn = connect_raw(config.database_path)
    try:
        return build_snapshot(conn, config, NOW)
    finally:
        conn.close()


def _write(config: Config) -> None:
    open_engine(config.database_path).dispose()
    writer = ResultWriter(
        config.database_path, "default", [TrackSpec.of(m) for m in config.monitors]
    )
    writer.start()
    at = START
    error = "connect to db.internal.example (10.0.0.7:5432) refused; see https://x.example/?t=1"
    while at < NOW:
        down = OUTAGE[0] <= at < OUTAGE[1]
        result = (
            CheckResult(Outcome.DOWN, 3.0, error=error) if down else CheckResult(Outcome.UP, 40.0)
        )
        writer.submit(Observation("a", at, result))
        writer.submit(Observation("hidden", at, CheckResult(Outcome.UP, 10.0)))
        writer.submit(Observation("maint", at, CheckResult(Outcome.UP, 10.0)))
        if at < NOW - dt.timedelta(minutes=10):
            writer.submit(Observation("stale", at, CheckResult(Outcome.UP, 10.0)))
        at += dt.timedelta(minutes=1)
    assert writer.flush(30)
    writer.close()


def test_only_public_monitors_in_config_order(snapshot: Snapshot) -> None:
    assert [m.id for m in snapshot.monitors] == ["a", "stale", "maint"]
    assert [g.name for g in snapshot.groups] == ["G", ""]


def test_day_bars_account_each_local_day(snapshot: Snapshot) -> None:
    a = snapshot.monitor("a")
    assert a is not None
    first, outage_day, today = a.days
    assert (first.date, first.level, first.uptime_percent) == (
        dt.date(2026, 11, 18),
        DayLevel.UP,
        100.0,
    )
    assert outage_day.date == dt.date(2026, 11, 19)
    assert outage_day.downtime_seconds == 1800
    assert outage_day.uptime_percent == pytest.approx(100 * (86400 - 1800) / 86400)
    assert outage_day.level is DayLevel.MAJOR  # below the 99.9 target, above 90
    assert outage_day.incidents == 1
    assert (today.level, today.uptime_percent, today.unknown_seconds) == (DayLevel.UP, 100.0, 0.0)


def test_uptime_windows(snapshot: Snapshot) -> None:
    a = snapshot.monitor("a")
    assert a is not None
    assert a.uptime["24h"] == pytest.approx(100 * (86400 - 1800) / 86400)
    monitored = 54 * 3600  # data starts on the 18th at 00:00, 54 h before NOW
    for window in ("7d", "30d", "90d"):
        assert a.uptime[window] == pytest.approx(100 * (monitored - 1800) / monitored)


def test_states(snapshot: Snapshot) -> None:
    a, stale, maint = snapshot.monitors
    assert (a.state, a.stale) == (State.UP, False)
    assert a.since == OUTAGE[1]  # the recovery was the last change
    assert a.checked_at == NOW - dt.timedelta(minutes=1)
    assert (stale.state, stale.stale) == (State.UNKNOWN, True)
    assert maint.state is State.MAINTENANCE
    assert snapshot.overall is Overall.MAINTENANCE  # none down; unknown ones do not count
    assert not snapshot.stale


def test_incidents_are_sanitised(snapshot: Snapshot) -> None:
    [incident] = snapshot.incidents
    assert (incident.monitor_id, incident.start, incident.end) == ("a", *OUTAGE)
    assert incident.duration_seconds == 1800
    for leak in ("db.internal.example", "10.0.0.7", "x.example", "t=1"):
        assert leak not in incident.cause


def test_maintenance_names_public_monitors_only(snapshot: Snapshot) -> None:
    [window] = snapshot.maintenance_active
    assert window.title == "Swap disks"
    assert window.monitor_ids == ("maint",)
    assert snapshot.maintenance_upcoming == ()


def test_latency_points_for_the_last_24_hours(snapshot: Snapshot) -> None:
    a = snapshot.monitor("a")
    assert a is not None
    assert len(a.latency) == 24
    current, last_full = a.latency[-1], a.latency[-2]
    assert current.hour == NOW  # the hour now in progress: nothing yet
    assert (current.p50_ms, current.avg_ms) == (None, None)
    assert last_full.hour == NOW - dt.timedelta(hours=1)
    assert (last_full.p50_ms, last_full.p95_ms) == (40.0, 40.0)
    assert last_full.avg_ms == pytest.approx(40.0)
    outage_hour = a.latency[5]  # 12:00 on the 19th (from 07:00): downs carry no latency
    assert outage_hour.hour == OUTAGE[0]
    assert outage_hour.avg_ms == pytest.approx(40.0)  # the 30 up results after 12:30


def test_empty_database(tmp_path: pathlib.Path) -> None:
    (tmp_path / "monitors.toml").write_text(CONFIG)
    config = load_config(tmp_path / "monitors.toml")
    open_engine(config.database_path).dispose()
    conn = connect_raw(config.database_path)
    try:
        empty = build_snapshot(conn, config, NOW)
    finally:
        conn.close()
    assert empty.overall is Overall.MAINTENANCE  # only the maintained one is known
    assert empty.stale
    assert all(
        d.level in (DayLevel.UNKNOWN, DayLevel.MAINTENANCE) for m in empty.monitors for d in m.days
    )
    assert isinstance(conn, sqlite3.Connection)


# Operator texts with characters that reorder (U+202E, U+2066..2069) or hide (U+200B)
# what the public reads, in TOML escapes; and a target whose body says BODY-LEAK-4242.
HOSTILE = r"""
[settings]
title = "Acme\u202e Status"
history_days = 3

[[monitors]]
id = "pay"
name = "Pay\u202egnp.exe\u200b"
group = "Back\u200bend"
description = "\u2066Cards\u2069 and \u202bwallets 👩\u200d💻"
type = "http"
url = "http://127.0.0.1:9/"
json = ['status == "ok"']

[[monitors]]
id = "told"
name = "Told"
type = "http"
url = "http://127.0.0.1:9/"
contains = ["WANTED-KW-7731"]
public_cause = "Upstream\u200b maintenance"

[[maintenance]]
title = "Swap\u202e disks\u200b"
monitors = ["pay"]
start = "2026-11-20T05:30:00Z"
end = "2026-11-20T07:00:00Z"
"""


def test_public_text_is_the_failure_class_and_names_are_visible(tmp_path: pathlib.Path) -> None:
    (tmp_path / "monitors.toml").write_text(HOSTILE)
    config = load_config(tmp_path / "monitors.toml")
    pay, told = config.monitors
    assert isinstance(pay, HttpMonitor) and isinstance(told, HttpMonitor)
    # the checks' own words: a JSON assertion judged on the target's body, a keyword missing
    json_error = pay.json_[0].judge({"status": "BODY-LEAK-4242"}).describe()
    keyword_error = "contains 'WANTED-KW-7731': saw absent, wanted present"
    assert "BODY-LEAK-4242" in json_error
    open_engine(config.database_path).dispose()
    writer = ResultWriter(
        config.database_path, "default", [TrackSpec.of(m) for m in config.monitors]
    )
    writer.start()
    at = START
    while at < NOW:
        down = OUTAGE[0] <= at < OUTAGE[1]
        for mid, error in (("pay", json_error), ("told", keyword_error)):
            result = (
                CheckResult(Outcome.DOWN, 3.0, error=error)
                if down
                else CheckResult(Outcome.UP, 40.0)
            )
            writer.submit(Observation(mid, at, result))
        at += dt.timedelta(minutes=1)
    assert writer.flush(30)
    writer.close()
    conn = connect_raw(config.database_path)
    try:
        full = build_snapshot(conn, config, NOW)
        assert Incremental().refresh(conn, config, NOW) == full
        stored = {cause for (cause,) in conn.execute("SELECT cause FROM incident")}
    finally:
        conn.close()
    assert stored == {json_error, keyword_error}  # alerts and logs keep the whole story

    assert full.title == "Acme Status"
    shown_pay, _ = full.monitors
    assert (shown_pay.name, shown_pay.group) == ("Paygnp.exe", "Backend")
    assert shown_pay.description == "Cards and wallets 👩\u200d💻"  # the emoji keeps its ZWJ
    assert [g.name for g in full.groups] == ["Backend", ""]
    causes = {i.monitor_id: (i.monitor_name, i.cause) for i in full.incidents}
    assert causes == {
        "pay": ("Paygnp.exe", "JSON assertion failed"),
        "told": ("Told", "Upstream maintenance"),
    }
    [window] = full.maintenance_active
    assert (window.title, window.monitor_names) == ("Swap disks", ("Paygnp.exe",))
    shown = repr(full)  # repr escapes every invisible character it holds
    for hidden in ("\\u202e", "\\u202b", "\\u2066", "\\u2069", "\\u200b"):
        assert hidden not in shown
    assert "BODY-LEAK-4242" not in shown
    assert "WANTED-KW-7731" not in shown
