"""Several locations end to end: a real `prober run` hub (seoul) and two real `prober agent`
processes (frankfurt, virginia) on loopback, probing one target whose answer depends on
the asking location (tests.support.places), alerts to a loopback webhook.

What the issue asks of quorum verdicts: one location's broken view is a regional problem
(no incident, no alert); two of three open one incident and one alert, back-dated; a
killed agent makes its location unknown, never downtime; an agent cut off from the hub
delivers every queued result once, in order, after which the verdict timeline is what a
re-derivation from the stored results gives, and a late batch that moves the incident's
start sends no second alert.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pathlib
import signal
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from prober.config.load import load_config
from prober.config.locations import COMBINED
from prober.store.engine import Connection, Database, connect
from prober.store.ledger import TrackSpec, rebuild_combined
from tests.support.net import free_port
from tests.support.places import Hook, Proxy, Target, running
from tests.support.proc import ProberRun, until

AGENTS = ("frankfurt", "virginia")
TOKENS = {name: f"{name}-token-{'x' * 32}" for name in AGENTS}


class Places:
    """The hub, its agents (each behind a proxy the test can cut) and what they share."""

    def __init__(
        self, tmp: pathlib.Path, target: Target, hook: Hook, loop: Any, database: str = ""
    ) -> None:
        self.tmp = tmp
        self.database = database or f"sqlite:///{tmp / 'hub.db'}"  # or a PostgreSQL URL
        self.target = target
        self.hook = hook
        self.loop = loop
        self.port = free_port()
        self.env = {
            **os.environ,
            **{f"{n.upper()}_TOKEN": t for n, t in TOKENS.items()},
            "PROBER_AGENT_RETRY": "0.2s",
            "PROBER_AGENT_RETRY_MAX": "0.5s",
            "PROBER_AGENT_REFETCH": "1s",
        }
        agents = "".join(
            f'[[agents]]\nlocation = "{n}"\ntoken = "${{{n.upper()}_TOKEN}}"\n' for n in AGENTS
        )
        self.config = tmp / "monitors.toml"
        self.config.write_text(
            f"""
[settings]
location = "seoul"
listen = "127.0.0.1:{self.port}"
database = "{self.database}"
alert_group_wait = "0s"
{agents}
[defaults]
interval = "1s"
timeout = "0.8s"
down_after = "2s"
notify = ["hook", "regional"]

[[monitors]]
id = "api"
type = "http"
url = "http://127.0.0.1:{target.port}/"

[[notifiers]]
id = "hook"
type = "webhook"
url = "{hook.url()}"

[[notifiers]]
id = "regional"
type = "webhook"
url = "{hook.url("/regional")}"
events = ["regional"]
"""
        )
        self.hub = ProberRun(["run", "-c", str(self.config)], tmp, env=self.env)
        self.hub.wait_for("prober running")
        self.proxies: dict[str, Proxy] = {}
        self.agents: dict[str, ProberRun] = {}
        for name in AGENTS:
            proxy = Proxy(self.port)
            loop.call(proxy.start())
            self.proxies[name] = proxy
            self.start_agent(name)

    def start_agent(self, name: str) -> None:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        path = folder / "agent.toml"
        path.write_text(
            f"""
[settings]
location = "{name}"
database = "sqlite:///{folder / "agent.db"}"
[hub]
url = "http://127.0.0.1:{self.proxies[name].port}"
token = "${{{name.upper()}_TOKEN}}"
"""
        )
        agent = ProberRun(["agent", "-c", str(path)], folder, env=self.env)
        agent.wait_for("prober agent running")
        self.agents[name] = agent

    def cut(self, name: str, cut: bool) -> None:
        self.loop.call(self.proxies[name].set_cut(cut))

    def close(self) -> None:
        for agent in self.agents.values():
            with contextlib.suppress(Exception):
                agent.stop()
        with contextlib.suppress(Exception):
            self.hub.stop()
        for proxy in self.proxies.values():
            self.loop.call(proxy.stop())

    # -- reading the hub's database (read-only, as the page does) -------------------------

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        if self.database.startswith("postgresql:"):
            pg = connect(Database(self.database))
            try:
                return [tuple(row) for row in pg.execute(sql, args).fetchall()]
            finally:
                pg.close()
        conn = sqlite3.connect(f"file:{self.tmp / 'hub.db'}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def incidents(self) -> list[tuple[int, int | None]]:
        return [
            (start, end)
            for start, end in self.query(
                "SELECT start_ms, end_ms FROM incident i JOIN location l ON l.id = i.location_id"
                " WHERE l.name = ? ORDER BY start_ms",
                COMBINED,
            )
        ]

    def regional(self) -> list[str]:
        rows = self.query(
            "SELECT state FROM monitor_state s JOIN location l ON l.id = s.location_id"
            " WHERE l.name = ?",
            COMBINED,
        )
        if not rows:
            return []
        state = json.loads(rows[0][0])
        return list(state["regional"]["locations"]) if state.get("regional") else []

    def results(self, where: str, since_ms: int = 0) -> list[tuple[int, int]]:
        return [
            (ts, outcome)
            for ts, outcome in self.query(
                "SELECT ts_ms, outcome FROM result r JOIN location l ON l.id = r.location_id"
                " WHERE l.name = ? AND ts_ms >= ? ORDER BY ts_ms",
                where,
                since_ms,
            )
        ]

    def first_down(self, where: str, since_ms: int) -> int:
        return next(ts for ts, outcome in self.results(where, since_ms) if outcome == 3)

    def public(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def monitor_v1(self) -> dict[str, Any]:
        (monitor,) = self.public("/api/v1/status")["monitors"]
        assert isinstance(monitor, dict)
        return monitor

    def combined_state(self) -> dict[str, Any]:
        (row,) = self.query(
            "SELECT state FROM monitor_state s JOIN location l ON l.id = s.location_id"
            " WHERE l.name = ?",
            COMBINED,
        )
        value = json.loads(row[0])
        assert isinstance(value, dict)
        return value


@pytest.fixture(params=["sqlite", "postgresql"])
def places(tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[Places]:
    """A hub on each engine: the same verdicts, incidents and alerts."""
    database = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    target, hook = Target(), Hook()
    with running(target, hook) as loop:
        setup = Places(tmp_path, target, hook, loop, database)
        try:
            # every location has reported and the verdict is up
            until(lambda: target.seen >= {"seoul", *AGENTS}, within=30)
            until(lambda: all(setup.results(n) for n in ("seoul", *AGENTS)), within=30)
            yield setup
        finally:
            setup.close()


def now_ms() -> int:
    return round(time.time() * 1000)


def holds(places: Places, predicate: Callable[[], object], checks: int) -> None:
    """The predicate stays true while `checks` more of the hub's own results come in (one
    a second): long enough for what would break it to happen, however busy the machine."""
    seen = len(places.results("seoul"))

    def through() -> bool:
        assert predicate()
        return len(places.results("seoul")) >= seen + checks

    until(through, within=60)


def test_one_location_is_regional_two_are_an_incident_with_one_alert(places: Places) -> None:
    t0 = now_ms()
    places.target.break_for("frankfurt")
    until(lambda: places.regional() == ["frankfurt"], within=20)
    # down_after is 2s: past it, the notifier that asks for regional problems hears of it
    # once; the others hear nothing, and there is no incident
    until(lambda: places.hook.kinds("/regional") == ["regional"], within=20)
    (regional,) = places.hook.alerts("/regional")
    assert "fails from frankfurt" in regional["text"]
    holds(places, lambda: places.incidents() == [] and places.hook.alerts() == [], 3)
    # the page shows it: degraded with the failing location, never down
    until(lambda: places.monitor_v1()["regional"] == ["frankfurt"], within=30)
    assert places.monitor_v1()["state"] == "degraded"
    (component,) = places.public("/api/v2/components.json")["components"]
    assert component["status"] == "degraded_performance"
    assert "failing from frankfurt" in component["description"]
    assert places.incidents() == []
    places.target.break_for("virginia")
    until(lambda: places.incidents() != [], within=20)
    until(lambda: places.hook.kinds() == ["opened"], within=20)
    ((start, end),) = places.incidents()
    assert end is None
    # back-dated to when the quorum was met: virginia's first failure (frankfurt's, alone,
    # was regional and is never downtime)
    assert start == places.first_down("virginia", t0)
    assert start > places.first_down("frankfurt", t0)
    until(lambda: places.monitor_v1()["state"] == "down", within=30)
    places.target.mend()
    until(lambda: places.hook.kinds() == ["opened", "resolved"], within=20)
    opened, resolved = places.hook.alerts()
    assert opened["events"][0]["incident"] == resolved["events"][0]["incident"]
    holds(places, lambda: len(places.hook.alerts()) == 2, 2)
    until(lambda: places.monitor_v1()["state"] == "up", within=30)
    assert places.monitor_v1()["regional"] == []
    assert places.hook.kinds("/regional") == ["regional"]


def test_killed_agents_make_their_locations_unknown_never_downtime(places: Places) -> None:
    for name in AGENTS:
        places.agents[name].stop(signal.SIGKILL)
    places.target.break_for("seoul")
    t0 = now_ms()
    until(lambda: len(places.results("seoul", t0)) >= 5, within=20)
    until(lambda: places.combined_state()["tracker"]["status"] == "unknown", within=20)
    holds(places, lambda: places.incidents() == [] and places.hook.alerts() == [], 3)


def test_cut_off_agent_delivers_its_queue_and_the_past_is_rederived_without_a_second_alert(
    places: Places,
) -> None:
    """Virginia is cut off; during the cut it fails first, seoul next, frankfurt last. The
    hub opens the incident when seoul and frankfurt agree (virginia's location lapsed). When
    virginia's queue arrives, its earlier failure moves the quorum's moment back to seoul's
    first failure: the incident's start moves, and no second alert is sent."""
    places.cut("virginia", True)
    t0 = now_ms()
    until(lambda: places.combined_state()["verdicts"]["horizon_ms"] > t0 + 3_000, within=20)
    places.target.break_for("virginia")
    until(lambda: now_ms() > t0 + 5_000, within=10)
    places.target.break_for("seoul")
    until(lambda: any(o == 3 for _, o in places.results("seoul", t0)), within=20)
    until(lambda: now_ms() > places.first_down("seoul", t0) + 3_000, within=10)
    places.target.break_for("frankfurt")
    until(lambda: places.hook.kinds() == ["opened"], within=20)
    ((start, _),) = places.incidents()
    assert start == places.first_down("frankfurt", t0)

    places.cut("virginia", False)
    seoul_first = places.first_down("seoul", t0)
    until(lambda: places.incidents() == [(seoul_first, None)], within=30)
    # every queued result arrived once, in order: one a second, no gap, no repeat
    stamps = [ts for ts, _ in places.results("virginia", t0)]
    assert len(stamps) == len(set(stamps))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps and max(gaps) < 2_000, gaps
    # the timeline is what re-deriving from the stored results gives
    config = load_config(places.config, env=places.env)
    spec = TrackSpec.of(config.monitors[0])
    copy: Connection
    if places.database.startswith("postgresql:"):  # re-derived in a transaction undone
        copy = connect(Database(places.database))
    else:
        copy = sqlite3.connect(places.tmp / "copy.db", isolation_level=None)
        source = sqlite3.connect(f"file:{places.tmp / 'hub.db'}?mode=ro", uri=True)
        source.backup(copy)
        source.close()
    ids = {name: lid for lid, name in copy.execute("SELECT id, name FROM location")}
    ((mid,),) = copy.execute("SELECT id FROM monitor WHERE slug = 'api'").fetchall()
    (horizon,) = copy.execute(
        "SELECT as_of_ms FROM monitor_state WHERE monitor_id = ? AND location_id = ?",
        (mid, ids[COMBINED]),
    ).fetchone()
    timeline = "SELECT ts_ms, old, new FROM transition WHERE location_id = ? AND ts_ms < ?"
    settled = horizon - 2_000  # moments the live ledger had judged for good
    live = copy.execute(timeline, (ids[COMBINED], settled)).fetchall()
    copy.execute("BEGIN IMMEDIATE")
    rebuild_combined(copy, spec, mid, ids, horizon)
    assert copy.execute(timeline, (ids[COMBINED], settled)).fetchall() == live
    copy.execute("ROLLBACK")
    copy.close()

    places.target.mend()
    until(lambda: places.hook.kinds() == ["opened", "resolved"], within=20)
    opened, resolved = places.hook.alerts()
    assert opened["events"][0]["incident"] == resolved["events"][0]["incident"]
