"""The store on PostgreSQL gives the same answers as on SQLite: the same results through the
real code (the writer, upkeep, the outbox, subscriptions, remediations) into a SQLite file
and into a PostgreSQL database, then every table, the page (full and incremental builds,
the v1 and v2 JSON), /metrics' readings and the monthly reports compared.

The scenario (`feed`), 2026-11-30 10:00Z on, one check a minute (Asia/Seoul: local midnight
is 15:00Z, so the page and the reports cross a day and a month):
- api (hub): an outage that confirms and recovers, a blip, degraded, unknown, a gap (the
  prober stopped), an outage still open at the end (in maintenance from 16:00Z);
- web (hub, a, b; quorum 2): down at a and b (an incident of the combined verdict `*`),
  down at a alone (regional), b cut off for 35 minutes (it lapses; its queue arrives
  after the others' newer results: the combined verdict is re-derived), a batch of a's
  sent twice;
- tls (hub): certificates within warn_days (an alert), then a renewed one;
- cron (push, period 5m): pings, a missed deadline, pings again.
Ids differ between the engines (PostgreSQL's sequences move on a conflict), so rows are
compared by monitor slug and location name. The writer runs on the scenario's clock
(`Clock`), so the outbox's times are the same on both too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import pathlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from prober import subscriptions
from prober.alerts import outbox, subscribers
from prober.alerts.outbox import Outbox, Routes
from prober.config import Config, load_config
from prober.config.locations import COMBINED
from prober.report import compute, monthly, render
from prober.results import Certificate, CheckResult, Outcome
from prober.store import ledger as ledger_module
from prober.store import remediations, rollups, upkeep, verdicts
from prober.store import writer as writer_module
from prober.store.db import open_database
from prober.store.engine import Connection, connect
from prober.store.ledger import TrackSpec, rebuild
from prober.store.tables import TABLES
from prober.store.upkeep import Upkeep
from prober.store.writer import NetworkChange, Observation, ResultWriter
from prober.timeline import to_ms
from statuspage import api, atlassian
from statuspage.build import build_snapshot
from statuspage.incremental import Incremental
from statuspage.metrics import exposition
from statuspage.notices import attach
from statuspage.publisher import Publisher
from statuspage.readings import Readings
from statuspage.scrapes import Keeper
from statuspage.snapshot import Snapshot

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
MINUTE = dt.timedelta(minutes=1)
HOURS = 6
NOW = T0 + dt.timedelta(hours=HOURS, minutes=5)
TOKENS = ("9f1c2b7a4e6d8c0b1a3f5e7d9c2b4a6f", "1b3d5f7a9c0e2d4f6a8c1e3b5d7f9a0c")

CONFIG = f"""
[settings]
title = "Differential"
public_url = "https://status.example.test"
timezone = "Asia/Seoul"
location = "hub"
database = "{{database}}"
history_days = 7
alert_group_wait = "30s"
subscriptions = {{{{ email = "mail" }}}}

[defaults]
locations = ["hub"]
notify = ["hook"]

[[agents]]
location = "a"
token = "{TOKENS[0]}"

[[agents]]
location = "b"
token = "{TOKENS[1]}"

[[notifiers]]
id = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
events = ["opened", "resolved", "regional", "cert_expiring", "prober_network", "reminder"]

[[notifiers]]
id = "mail"
type = "email"
host = "127.0.0.1"
port = 9
from = "status@example.test"
to = ["ops@example.test"]

[[maintenance]]
title = "Swap disks"
monitors = ["web"]
start = "2026-11-30T14:00:00Z"
end = "2026-11-30T14:20:00Z"

[[maintenance]]
title = "Upgrade"
monitors = ["api"]
start = "2026-11-30T16:00:00Z"
end = "2026-11-30T16:30:00Z"

[[monitors]]
id = "api"
name = "API"
group = "Backend"
type = "http"
url = "http://127.0.0.1:9/api"
down_after = "2m"
degraded_after = "500ms"

[[monitors]]
id = "web"
name = "Web"
group = "Frontend"
type = "http"
url = "http://127.0.0.1:9/web"
locations = ["hub", "a", "b"]
quorum = 2
down_after = 2

[[monitors]]
id = "tls"
type = "tls"
host = "127.0.0.1"
port = 9
interval = "5m"
timeout = "10s"
warn_days = 30

[[monitors]]
id = "cron"
name = "Nightly"
type = "push"
period = "5m"
grace = "1m"
"""

NOTICE = """
title = "Elevated API errors"
impact = "major"
components = { api = "partial_outage" }
detected = "api"
[[updates]]
at = "2026-11-30T10:35:00Z"
status = "investigating"
body = "We are looking into it."
[[updates]]
at = "2026-11-30T16:04:00Z"
status = "resolved"
body = "Fixed."
"""


def _down(why: str = "status: saw 503, wanted [200]") -> CheckResult:
    return CheckResult(Outcome.DOWN, 5.0, error=why, status_code=503)


class Clock:
    """The writer's `time` module with a wall clock of the scenario's (its monotonic clock
    the real one): results arrive as they would live (the quorum's gate waits for a
    location still reporting; one that stopped lapses), and the outbox's rows get times of
    the scenario's too."""

    def __init__(self) -> None:
        self.now = 0

    def time(self) -> float:
        return self.now / 1000

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


CLOCK = Clock()


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    CLOCK.now = 0
    monkeypatch.setattr(writer_module, "time", CLOCK)
    monkeypatch.setattr(ledger_module, "time", CLOCK)
    monkeypatch.setattr(upkeep, "time", CLOCK)  # should a slow run reach the writer's own


@dataclasses.dataclass
class Side:
    """One engine: its config (the same but for `database`), writer and connections."""

    name: str
    config: Config
    writer: ResultWriter | None = None
    now_ms: int = 0  # its writer's clock

    def connect(self) -> Connection:
        return connect(self.config.database)

    def start(self) -> None:
        config = self.config
        self.writer = ResultWriter(
            config.database,
            config.settings.location,
            [TrackSpec.of(m) for m in config.monitors],
            timezone=config.settings.timezone,
            retention_days=config.settings.retention_days,
            outbox=Outbox(config.settings.location, Routes.of(config)),
            heartbeat_every=3600,  # never idle between two steps (its clock stands still)
        )
        self.writer.start()

    def submit(self, *items: Observation | NetworkChange) -> None:
        """Hand `items` over as checks finishing now would be (the writer's clock a few
        seconds past the newest), and wait until they are committed."""
        assert self.writer is not None
        self.now_ms = max(self.now_ms, max(to_ms(i.at) for i in items) + 5_000)
        CLOCK.now = self.now_ms
        for item in items:
            self.writer.submit(item)
        assert self.writer.flush(60)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _side(tmp: pathlib.Path, name: str, database: str) -> Side:
    folder = tmp / name
    folder.mkdir()
    (folder / "monitors.toml").write_text(CONFIG.format(database=database))
    (folder / "incidents").mkdir()
    (folder / "incidents" / "2026-11-30-api.toml").write_text(NOTICE)
    config = load_config(folder / "monitors.toml")
    open_database(config.database)
    return Side(name, config)


@pytest.fixture
def sides(tmp_path: pathlib.Path, pg_url: str) -> Iterator[tuple[Side, Side]]:
    lite = _side(tmp_path, "sqlite", "sqlite:///prober.db")
    pg = _side(tmp_path, "postgresql", pg_url)
    assert (lite.config.database.kind, pg.config.database.kind) == ("sqlite", "postgresql")
    yield lite, pg
    lite.close()
    pg.close()


def both(lite: Side, pg: Side, step: Callable[[Side], None]) -> None:
    for side in (lite, pg):
        step(side)


# --- the scenario ----------------------------------------------------------------------


def _at(minute: int) -> dt.datetime:
    return T0 + minute * MINUTE


def _api(minute: int) -> CheckResult | None:
    if 30 <= minute < 40:
        return _down()
    if minute == 60:
        return _down("timed out after 10.0 s (connect)")  # a blip: one down, not confirmed
    if 90 <= minute < 95:
        return CheckResult(Outcome.DEGRADED, 812.0, status_code=200)
    if 120 <= minute < 125:
        return CheckResult(Outcome.UNKNOWN, 0.0, error="prober overloaded")
    if 200 <= minute < 230:
        return None  # the prober was stopped
    if minute >= 350:
        return _down("status: saw 500, wanted [200]")  # still down at NOW
    return CheckResult(Outcome.UP, 40.0 + minute % 7, status_code=200)


def _web(location: str, minute: int) -> CheckResult:
    if 50 <= minute < 60 and location in ("a", "b"):
        return _down("status: saw 502, wanted [200]")
    if 150 <= minute < 170 and location == "a":
        return _down("connect: connection refused")
    return CheckResult(Outcome.UP, {"hub": 30.0, "a": 90.0, "b": 120.0}[location] + minute % 3)


def _tls(minute: int) -> CheckResult:
    days = 20 if minute < 180 else 100  # within warn_days, then renewed
    not_after = dt.datetime(2026, 12, 1, tzinfo=UTC) + dt.timedelta(days=days)
    outcome = Outcome.DEGRADED if days < 30 else Outcome.UP
    return CheckResult(
        outcome,
        12.5,
        certificate=Certificate(not_after, "tls.test", "Test CA"),
        error="certificate expires in 20 days" if days < 30 else None,
    )


def _cron(minute: int) -> CheckResult | None:
    if 100 <= minute < 112:
        if minute in (101, 107):  # 5 minutes + 1 minute of grace after the ping at 95
            return CheckResult(
                Outcome.DOWN, 0.0, error="no ping within 6m", details={"push": "missed"}
            )
        return None
    if minute % 5 == 0 or minute == 112:
        return CheckResult(Outcome.UP, 1500.0, details={"push": "ping"})
    return None


def observations(first: int, last: int, *, late_b: range = range(0)) -> list[Observation]:
    """Every check of minutes [first, last), in time order; b's results of `late_b` held
    back (the caller sends them later)."""
    out: list[Observation] = []
    for minute in range(first, last):
        at = _at(minute)
        result = _api(minute)
        if result is not None:
            out.append(Observation("api", at, result))
        out.append(Observation("web", at, _web("hub", minute)))
        out.append(Observation("web", at + dt.timedelta(seconds=2), _web("a", minute), "a"))
        if minute not in late_b:
            out.append(Observation("web", at + dt.timedelta(seconds=3), _web("b", minute), "b"))
        if minute % 5 == 0:
            out.append(Observation("tls", at, _tls(minute)))
        push = _cron(minute)
        if push is not None:
            out.append(Observation("cron", at + dt.timedelta(seconds=7), push))
    return out


B_CUT = range(250, 285)  # b's link to the hub is down: its results wait in its queue


def feed(side: Side, first: int, last: int) -> None:
    """The scenario's minutes [first, last), in the steps a hub would commit them."""
    edges = {first, last, *range(first - first % 30 + 30, last, 30)}
    if first < B_CUT.stop < last:
        edges.add(B_CUT.stop)
    steps = sorted(edges)
    for start, end in itertools.pairwise(steps):
        side.submit(*observations(start, end, late_b=B_CUT))
        if end == B_CUT.stop:  # b is back: its queue, oldest first, before anything newer
            queued = observations(B_CUT.start, B_CUT.stop)
            side.submit(*[o for o in queued if o.location == "b"])
        if start <= 100 < end:  # a's batch sent twice
            again = [o for o in observations(95, 105) if o.location == "a"]
            side.submit(*again)
            side.submit(*again)
        if start <= 130 < end:  # the canaries fail, then recover
            side.submit(NetworkChange(True, _at(130)))
            side.submit(NetworkChange(True, _at(131)))  # a repeat changes nothing
            side.submit(NetworkChange(False, _at(134)))


# --- reading a database back -----------------------------------------------------------

Rows = list[tuple[Any, ...]]


def _sorted(rows: Rows) -> Rows:
    return sorted(rows, key=repr)


def _named(conn: Connection, table: str) -> Rows:
    """A table keyed by (monitor_id, location_id) with the monitor's slug and the location's
    name instead (ids are each engine's own), every other column as stored."""
    (model,) = (m for m in TABLES if m.__table__.name == table)  # type: ignore[attr-defined]
    columns = [c.name for c in model.__table__.columns]  # type: ignore[attr-defined]
    rest = ", ".join(f"t.{c}" for c in columns if c not in ("monitor_id", "location_id"))
    return conn.execute(
        f"SELECT m.slug, l.name, {rest} FROM {table} t"
        " JOIN monitor m ON m.id = t.monitor_id JOIN location l ON l.id = t.location_id"
    ).fetchall()


def tables(conn: Connection) -> dict[str, Rows]:
    """Every table, by names instead of ids, in a stable order; states and alert data
    parsed as JSON; meta without the writer's heartbeat."""
    out: dict[str, Rows] = {}
    for table in ("result", "transition", "incident", "coverage", "rollup_hour", "rollup_day"):
        out[table] = _sorted([tuple(r) for r in _named(conn, table)])
    out["monitor_state"] = _sorted(
        [(*r[:-1], json.loads(r[-1])) for r in _named(conn, "monitor_state")]  # as_of, state
    )
    out["alert"] = _sorted(
        [
            (*r[:-1], json.loads(r[-1]))
            for r in conn.execute(
                "SELECT key, notifier, kind, monitor, incident, created_ms, due_ms, state,"
                " attempts, first_try_ms, batch, silenced, sent_ms, last_error, data FROM alert"
            )
        ]
    )
    out["meta"] = _sorted(
        conn.execute("SELECT key, value FROM meta WHERE key <> 'heartbeat'").fetchall()
    )
    out["monitor"] = _sorted(conn.execute("SELECT slug, type FROM monitor").fetchall())
    out["location"] = _sorted(conn.execute("SELECT name FROM location").fetchall())
    out["push_token"] = _sorted(conn.execute("SELECT monitor FROM push_token").fetchall())
    return out


def assert_same(lite: Any, pg: Any, what: str) -> None:
    if isinstance(lite, dict) and isinstance(pg, dict):
        assert lite.keys() == pg.keys(), what
        for key in lite:
            assert_same(lite[key], pg[key], f"{what}.{key}")
        return
    if isinstance(lite, list | tuple) and type(lite) is type(pg) and len(lite) == len(pg):
        for i, (a, b) in enumerate(zip(lite, pg, strict=True)):
            assert_same(a, b, f"{what}[{i}]")
        return
    slots = getattr(type(lite), "__slots__", None)
    if type(lite) is type(pg) and slots and "__eq__" not in vars(type(lite)):
        for name in slots:  # e.g. statuspage.incremental.Tally: no __eq__ of its own
            assert_same(getattr(lite, name), getattr(pg, name), f"{what}.{name}")
        return
    assert lite == pg, what
    assert repr(lite) == repr(pg), f"{what}: the same values, of different types"


def _upkeep(side: Side, conn: Connection, now: dt.datetime) -> Upkeep:
    """The writer's upkeep (rollups of every finished hour), as it runs every minute."""
    ids = [m for (m,) in conn.execute("SELECT id FROM monitor")]
    places = dict(conn.execute("SELECT name, id FROM location").fetchall())
    settings = side.config.settings
    upkeep = Upkeep(
        places[settings.location],
        ids,
        ZoneInfo(settings.timezone),
        grace_s=60 + 600 / 2,
        retention_days=settings.retention_days,
    )
    upkeep.set_other_locations(places[n] for n in ("a", "b"))
    upkeep.run(conn, to_ms(now))
    return upkeep


# --- the tests -------------------------------------------------------------------------


def test_the_writer_stores_the_same_on_both(sides: tuple[Side, Side]) -> None:
    lite, pg = sides
    both(lite, pg, Side.start)
    both(lite, pg, lambda side: feed(side, 0, 195))
    both(lite, pg, Side.close)  # a restart: the ledger loads its state and goes on
    both(lite, pg, Side.start)
    both(lite, pg, lambda side: feed(side, 195, HOURS * 60))
    both(lite, pg, Side.close)
    found = {}
    for side in (lite, pg):
        conn = side.connect()
        try:
            _upkeep(side, conn, NOW)
            found[side.name] = tables(conn)
        finally:
            conn.close()
    got, want = found["postgresql"], found["sqlite"]
    # the scenario did what it says
    incidents = {(r[0], r[1]) for r in want["incident"]}
    assert {("api", "hub"), ("web", COMBINED), ("web", "a"), ("web", "b"), ("cron", "hub")} <= (
        incidents
    )
    kinds = {r[2] for r in want["alert"]}
    assert {"opened", "resolved", "regional", "cert_expiring", "prober_network"} <= kinds
    assert want["rollup_hour"] and want["rollup_day"]
    assert_same(want, got, "tables")


def _fed(lite: Side, pg: Side, minutes: int = HOURS * 60) -> None:
    both(lite, pg, Side.start)
    both(lite, pg, lambda side: feed(side, 0, minutes))


def _snapshot_json(s: Snapshot) -> dict[str, Any]:
    return {
        "status_v1": api.status_v1(s),
        "days_v1": {m.id: api.days_v1(s, m.id, 90) for m in s.monitors},
        "incidents_v1": api.incidents_v1(s),
        "summary_v2": atlassian.summary_v2(s),
        "incidents_v2": atlassian.incidents_v2(s),
    }


def test_the_page_and_metrics_are_the_same_on_both(sides: tuple[Side, Side]) -> None:
    lite, pg = sides
    _fed(lite, pg, 165)
    conns = {side.name: side.connect() for side in (lite, pg)}
    kept = {side.name: Incremental() for side in (lite, pg)}
    readings = {side.name: Readings() for side in (lite, pg)}
    rounds = ((165, _at(165) + dt.timedelta(seconds=30)), (200, _at(201)), (HOURS * 60, NOW))
    try:
        for rnd, (until, now) in enumerate(rounds):
            if rnd:
                since = rounds[rnd - 1][0]
                both(lite, pg, lambda side: feed(side, since, until))  # noqa: B023
                for side in (lite, pg):
                    _upkeep(side, conns[side.name], now)
            built = {s.name: build_snapshot(conns[s.name], s.config, now) for s in (lite, pg)}
            inc = {s.name: kept[s.name].refresh(conns[s.name], s.config, now) for s in (lite, pg)}
            frames = {
                s.name: readings[s.name].refresh(conns[s.name], s.config, now) for s in (lite, pg)
            }
            if rnd < 2:  # the last round's re-derived verdict (b's queue) may start over
                assert kept["postgresql"].full is (rnd == 0)
            web = next(m for m in built["sqlite"].monitors if m.id == "web")
            assert web.regional == (("a",) if rnd == 0 else ()), rnd  # a regional problem
            assert built["sqlite"] == built["postgresql"], rnd
            assert inc["postgresql"] == built["postgresql"], rnd
            assert inc["sqlite"] == built["sqlite"], rnd
            shown = {  # with the incident written by people, as the page shows it
                s.name: _snapshot_json(attach(built[s.name], s.config.notices, s.config))
                for s in (lite, pg)
            }
            assert_same(shown["sqlite"], shown["postgresql"], f"json {rnd}")
            texts = {name: exposition(frames[name], built[name], to_ms(now)) for name in frames}
            assert texts["sqlite"] == texts["postgresql"], rnd
            for side in (lite, pg):  # kept readings = a fresh read (an open incident's too)
                fresh = _read(side, now)
                assert fresh == exposition(frames[side.name], None, to_ms(now)), rnd
            assert "prober_" in texts["sqlite"]
            assert_same(
                dataclasses.asdict(frames["sqlite"]),
                dataclasses.asdict(frames["postgresql"]),
                f"frame {rnd}",
            )
    finally:
        for conn in conns.values():
            conn.close()
        both(lite, pg, Side.close)


def test_reports_are_the_same_on_both(sides: tuple[Side, Side]) -> None:
    lite, pg = sides
    _fed(lite, pg)
    both(lite, pg, Side.close)
    texts: dict[str, list[str]] = {}
    for side in (lite, pg):
        conn = side.connect()
        try:
            _upkeep(side, conn, NOW)
            attempt = remediations.start(conn, "api", "hub/api/1", to_ms(_at(33)))
            remediations.finish(
                conn,
                attempt,
                to_ms(_at(34)),
                result="running",
                exit_code=0,
                timed_out=False,
                output_tail="restarted\n",
            )
            remediations.note(conn, attempt, "verified by 2 checks")
            remediations.settle(conn, attempt, "verified")
            texts[side.name] = [
                render.to_json(compute.build(conn, side.config, month, now=NOW, operator=op))
                for month in ("2026-11", "2026-12")
                for op in (False, True)
            ]
        finally:
            conn.close()
        texts[side.name] += [  # what `prober report` and the monthly files write
            monthly.report(side.config, "2026-11", fmt, now=NOW, operator=True)
            for fmt in render.FORMATS
        ]
    assert texts["sqlite"] == texts["postgresql"]
    assert "verified" in texts["sqlite"][1]  # the operator's report lists the attempt


def test_outbox_and_subscriber_reads_are_the_same_on_both(sides: tuple[Side, Side]) -> None:
    lite, pg = sides
    _fed(lite, pg, 55)  # web's combined incident and api's are open
    both(lite, pg, Side.close)
    found: dict[str, dict[str, Any]] = {}
    now_ms = to_ms(NOW)
    for side in (lite, pg):
        conn = side.connect()
        try:
            got: dict[str, Any] = {}
            places = {"web": COMBINED}
            got["open"] = outbox.open_incidents(conn, "hub", places)
            got["recovered"] = outbox.recovered(conn, ["api", "web", "tls"], "hub", places)
            got["newest"] = [outbox.newest_result(conn, m) for m in ("api", "web", "cron", "x")]
            pending = outbox.unfinished(conn)
            got["unfinished"] = [_row(r) for r in pending]
            opened = next(r for r in pending if r.kind == "opened" and r.monitor == "api")
            conn.execute("BEGIN IMMEDIATE")
            got["escalation"] = [
                outbox.add_escalation(conn, opened, "mail", 300_000, now_ms),
                outbox.add_escalation(conn, opened, "mail", 300_000, now_ms),
                outbox.add_reminder(conn, opened, 1, now_ms),
                outbox.add_silence(conn, "hook", "maintenance/x/1", {"until_ms": 5}, now_ms),
            ]
            got["escalated"] = outbox.escalated(conn, opened.incident)
            outbox.add_reminder(conn, opened, 2, now_ms)
            reminders = [r.id for r in outbox.unfinished(conn) if r.kind == "reminder"]
            got["reminded"] = outbox.set_state(conn, reminders, outbox.SENT, sent_ms=now_ms)
            keep = outbox.reminder_key(opened, 2)
            got["forgotten"] = outbox.forget_reminders(conn, opened, keep)
            ids = [r.id for r in outbox.unfinished(conn)]
            got["claimed"] = outbox.set_state(
                conn, ids, outbox.SENDING, batch=ids[0], claim_ms=now_ms, only_from="pending"
            )
            got["released"] = outbox.release_claims(conn)
            got["by_incident"] = sorted(
                _row(r) for r in outbox.by_incident(conn, [opened.incident], opened.kind)
            )
            got["depth"] = outbox.queue_depth(conn)
            conn.execute("COMMIT")
            found[side.name] = got
        finally:
            conn.close()
    assert_same(found["sqlite"], found["postgresql"], "outbox")
    # web's combined incident, from the moment a second location failed (b's result)
    assert found["sqlite"]["open"] == {"web": f"hub/web/{to_ms(_at(50)) + 3000}"}
    assert found["sqlite"]["recovered"] == {"api": to_ms(_at(40))}
    assert (found["sqlite"]["reminded"], found["sqlite"]["forgotten"]) == (2, 1)


def _row(row: outbox.Row) -> tuple[Any, ...]:
    """An outbox row without what is each engine's own (ids) or the wall clock's."""
    return (
        row.key,
        row.notifier,
        row.kind,
        row.monitor,
        row.incident,
        row.state,
        row.attempts,
        row.silenced,
        dict(row.data),
    )


def test_subscribers_are_the_same_on_both(sides: tuple[Side, Side]) -> None:
    lite, pg = sides
    found: dict[str, list[Any]] = {}
    now_ms = to_ms(NOW)
    for side in (lite, pg):
        subs = subscribers.Subscribers(side.config.database, side.config)
        ann = {"action": "subscribe", "address": "Ann@Example.TEST", "lang": "ko"}
        said: list[object] = [
            subs.handle(ann, now_ms),
            subs.handle(ann, now_ms + 1),  # within the gap between two mails: nothing
            subs.handle({"action": "subscribe", "address": "bob@example.test"}, now_ms),
            subs.handle({"action": "confirm", "digest": "0" * 64}, now_ms),
        ]
        conn = side.connect()
        try:
            rows = outbox.unfinished(conn)
            conn.execute("BEGIN IMMEDIATE")
            mails = [subscribers.compose(conn, r, side.config, now_ms) for r in rows]
            conn.execute("COMMIT")
        finally:
            conn.close()
        assert [m.to for m in mails if m is not None] == ["Ann@example.test", "bob@example.test"]
        confirm = re.search(
            r"/subscribe/confirm/([A-Za-z0-9_-]+)", mails[0].text if mails[0] else ""
        )
        assert confirm is not None
        digest = subscriptions.digest(confirm.group(1))
        said.append(subs.handle({"action": "confirm", "digest": digest}, now_ms + 1000))
        said.append(subs.handle({"action": "confirm", "digest": digest}, now_ms + 1000))
        said.append(subs.announce(now_ms + 2000))
        subs.close()
        conn = side.connect()
        try:
            state = conn.execute(
                "SELECT address, lang, state, created_ms, confirmed_ms, mailed_ms,"
                " mailed_since_ms, mailed_count FROM subscriber ORDER BY address"
            ).fetchall()
            purposes = conn.execute(
                "SELECT purpose, count(*) FROM subscriber_token GROUP BY purpose ORDER BY purpose"
            ).fetchall()
            told = conn.execute("SELECT key, at_ms, mailed FROM announced ORDER BY key").fetchall()
            news = [r for r in outbox.unfinished(conn) if r.key.startswith("subscriber/notice")
                    or r.key.startswith("subscriber/maintenance")]  # fmt: skip
            conn.execute("BEGIN IMMEDIATE")
            sent = [subscribers.compose(conn, r, side.config, now_ms + 3000) for r in news]
            conn.execute("COMMIT")
        finally:
            conn.close()
        words = [(m.to, m.subject, m.text.split("http")[0]) for m in sent if m is not None]
        leave = sent[0].unsubscribe.split("?")[0].rsplit("/", 1)[1] if sent[0] else ""
        subs = subscribers.Subscribers(side.config.database, side.config)
        for _ in range(2):  # then the token is gone with its subscriber
            asked = {"action": "unsubscribe", "digest": subscriptions.digest(leave)}
            said.append(subs.handle(asked, now_ms + 4000))
        subs.close()
        conn = side.connect()
        try:
            left = conn.execute("SELECT address, state FROM subscriber ORDER BY address").fetchall()
        finally:
            conn.close()
        found[side.name] = [said, state, purposes, [_row(r) for r in rows], told, words, left]
    assert_same(found["sqlite"], found["postgresql"], "subscribers")
    assert found["sqlite"][0][4:7] == ["confirmed", "invalid", 2]  # the update, the window
    assert len(found["sqlite"][5]) == 2
    assert found["sqlite"][0][7:] == ["ok", "invalid"]
    assert found["sqlite"][6] == [("bob@example.test", "pending")]
    assert [row[2] for row in found["sqlite"][1]] == ["confirmed", "pending"]


def test_rewriting_history_gives_the_same_on_both(sides: tuple[Side, Side]) -> None:
    """What prune, an import's rebuild and the re-rollup after an upgrade rewrite."""
    lite, pg = sides
    _fed(lite, pg)
    both(lite, pg, Side.close)
    found: dict[str, dict[str, Any]] = {}
    cutoff = to_ms(_at(185))  # pruned up to 13:00Z: whole hours, rolled up first
    for side in (lite, pg):
        conn = side.connect()
        try:
            every = _upkeep(side, conn, NOW)
            ids = dict(conn.execute("SELECT slug, id FROM monitor").fetchall())
            places = dict(conn.execute("SELECT name, id FROM location").fetchall())
            deleted = rollups.prune(conn, None, cutoff - 3_600_000, ids.values(), batch=100)
            sent = [r.id for r in outbox.unfinished(conn) if r.created_ms < cutoff]
            outbox.set_state(conn, sent, outbox.SENT, sent_ms=cutoff)
            retention_ms = side.config.settings.retention_days * 86_400_000
            deleted += every.prune(conn, cutoff + retention_ms)  # and the outbox's finished
            conn.execute("BEGIN IMMEDIATE")
            samples = conn.execute(
                "SELECT ts_ms, outcome, error FROM result WHERE monitor_id = ?"
                " AND location_id = ? ORDER BY ts_ms",
                (ids["api"], places["hub"]),
            ).fetchall()
            rebuilt = rebuild(
                conn, places["hub"], ids["api"], TrackSpec.of(side.config.monitors[0]), samples
            )
            combined = verdicts.rebuild_combined(conn, side.config, "web", to_ms(NOW))
            conn.execute("COMMIT")
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (upkeep.REROLL_UNTIL_KEY, str(to_ms(NOW))),
            )
            passes = 1
            while upkeep.reroll_converted(conn, ZoneInfo(side.config.settings.timezone)):
                passes += 1
            found[side.name] = {
                "did": [deleted, rebuilt, combined, passes, upkeep.pruned_before(conn), len(sent)],
                **tables(conn),
            }
        finally:
            conn.close()
    want = found["sqlite"]
    assert want["did"][0] > 0 and want["did"][1] > 0 and want["did"][2] and want["did"][5] > 0
    hour = cutoff // 3_600_000 * 3_600_000  # whole hours go
    assert not any(r[0] in {"api", "web"} and r[2] < hour for r in want["result"])
    assert all(r[7] == "pending" for r in want["alert"])  # the sent ones went
    assert_same(want, found["postgresql"], "rewritten")


def test_remediation_attempts_read_the_same_on_both(sides: tuple[Side, Side]) -> None:
    lite, pg = sides
    found = {}
    for side in (lite, pg):
        conn = side.connect()
        try:
            first = remediations.start(conn, "api", "hub/api/1", 1_000)
            remediations.record_process(conn, first, 4242, 987654321)
            remediations.finish(
                conn,
                first,
                2_000,
                result="running",
                exit_code=0,
                timed_out=False,
                output_tail="ok\n",
            )
            second = remediations.start(conn, "api", "hub/api/1", 3_000)
            third = remediations.start(conn, "web", "*/web/5", 3_500)
            remediations.finish(
                conn,
                third,
                4_000,
                result="timed_out",
                exit_code=None,
                timed_out=True,
                output_tail="",
            )
            remediations.note(conn, third, "killed after 30 s")
            got = [
                [first, second, third] == [1, 2, 3],
                remediations.interrupt_unfinished(conn, 5_000),
                remediations.resume_unsettled(conn, 6_000),
                remediations.started_since(conn, "api", 999),
                remediations.started_since(conn, "api", 1_000),
                remediations.for_incident(conn, "api", "hub/api/1"),
                remediations.started_from(conn, "web", 0),
            ]
            remediations.settle(conn, first, "verified")
            got.append(remediations.for_incident(conn, "api", "hub/api/1"))
            found[side.name] = got
        finally:
            conn.close()
    assert_same(found["sqlite"], found["postgresql"], "remediations")
    assert found["sqlite"][0]  # ids from 1 on both


def test_the_publisher_refreshes_from_postgresql(sides: tuple[Side, Side]) -> None:
    """The page's publisher and /metrics' keeper see the writer's commits (PostgreSQL's
    data version is the write-ahead log's position) and refresh to what SQLite's show."""
    lite, pg = sides
    _fed(lite, pg, 60)
    wall = {"now": _at(61)}

    async def scenario() -> None:
        publishers = {
            s.name: Publisher(
                s.config, min_age=0, max_age=3600, check_every=0.001, wall=lambda: wall["now"]
            )
            for s in (lite, pg)
        }
        keepers = {
            s.name: Keeper(_config_of(s), check_every=0.001, wall=lambda: wall["now"])
            for s in (lite, pg)
        }
        runners = []
        try:
            for publisher in publishers.values():
                await publisher.start()
            assert publishers["sqlite"].latest == publishers["postgresql"].latest
            for keeper in keepers.values():
                await keeper.refresh()
            runners = [asyncio.create_task(p.run()) for p in publishers.values()]
            runners += [asyncio.create_task(k.run()) for k in keepers.values()]
            wall["now"] = _at(91)
            await asyncio.to_thread(both, lite, pg, lambda side: feed(side, 60, 90))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            for side in (lite, pg):
                want = await asyncio.to_thread(_built, side, _at(91))
                want = attach(want, side.config.notices, side.config)  # as the live page
                want = dataclasses.replace(want, subscribe=True)
                while publishers[side.name].latest != want:  # it saw the last commit
                    assert loop.time() < deadline, f"{side.name}: no refresh"
                    await asyncio.sleep(0.005)
            assert publishers["sqlite"].latest == publishers["postgresql"].latest
            now_ms = to_ms(_at(91))
            for side in (lite, pg):  # /metrics' readings alike
                metrics = await asyncio.to_thread(_read, side, _at(91))
                while exposition(keepers[side.name].frame, None, now_ms) != metrics:
                    assert loop.time() < deadline, f"{side.name}: no metrics read"
                    await asyncio.sleep(0.005)
        finally:
            for runner in runners:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
            for publisher in publishers.values():
                await publisher.close()
            for keeper in keepers.values():
                await keeper.close()

    try:
        asyncio.run(scenario())
    finally:
        both(lite, pg, Side.close)


def _built(side: Side, now: dt.datetime) -> Snapshot:
    conn = side.connect()
    try:
        return build_snapshot(conn, side.config, now)
    finally:
        conn.close()


def _read(side: Side, now: dt.datetime) -> str:
    """/metrics' families from a fresh read of the side's database."""
    conn = side.connect()
    try:
        return exposition(Readings().refresh(conn, side.config, now), None, to_ms(now))
    finally:
        conn.close()


def _config_of(side: Side) -> Callable[[], Config]:
    return lambda: side.config
