"""The kept snapshot equals a full build at every step, whatever was written in between."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import sqlite3
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from prober import history
from prober.config import load_config
from prober.config.load import Config
from prober.results import CheckResult, Outcome
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec
from prober.store.upkeep import Upkeep
from prober.store.writer import Observation, ResultWriter
from prober.timeline import to_ms
from statuspage.build import build_snapshot
from statuspage.incremental import Incremental
from statuspage.publisher import Publisher
from statuspage.snapshot import Snapshot, State
from tests.support.history import Live, Row

SEOUL = ZoneInfo("Asia/Seoul")  # local midnight is 15:00 UTC
START = dt.datetime(2026, 11, 18, 0, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
CONFIG = """
[settings]
timezone = "Asia/Seoul"
history_days = 3
retention_days = 1

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
id = "b"
type = "http"
url = "http://127.0.0.1:9/"

[[monitors]]
id = "c"
group = "G"
type = "tcp"
host = "127.0.0.1"
port = 9

[[maintenance]]
title = "Swap disks"
monitors = ["b", "hidden"]
start = "2026-11-20T14:30:00Z"
end = "2026-11-20T15:30:00Z"
"""
RELOADED = CONFIG.replace('name = "Alpha"', 'name = "Alpha 2"') + (
    '\n[[monitors]]\nid = "d"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n'
)
UP, DOWN = CheckResult(Outcome.UP, 40.0), CheckResult(Outcome.DOWN, 3.0, error="refused")


class World:
    """A real database written by the real writer; snapshots kept and built in full."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp
        (tmp / "monitors.toml").write_text(CONFIG)
        self.config: Config = load_config(tmp / "monitors.toml")
        open_engine(self.config.database_path).dispose()
        self.writer = self._writer()
        self.kept = Incremental()
        self.conn = connect_raw(self.config.database_path)
        self.other = connect_raw(self.config.database_path)

    def _writer(self) -> ResultWriter:
        specs = [TrackSpec.of(m) for m in self.config.monitors]
        writer = ResultWriter(self.config.database_path, "default", specs)
        writer.start()
        return writer

    def feed(
        self, start: dt.datetime, end: dt.datetime, *, skip: tuple[str, ...] = (), **results: str
    ) -> None:
        """One result a minute for every monitor in [start, end); `results` maps a monitor to
        "down" (default: up); `skip` writes nothing for those."""
        at = start
        while at < end:
            for m in ("a", "hidden", "b", "c"):
                if m not in skip:
                    result = DOWN if results.get(m) == "down" else UP
                    self.writer.submit(Observation(m, at, result))
            at += MINUTE
        assert self.writer.flush(30)

    def check(self, now: dt.datetime, *, full: bool = False) -> Snapshot:
        kept = self.kept.refresh(self.conn, self.config, now)
        assert self.kept.full is full
        expected = build_snapshot(self.other, self.config, now)
        for got, want in zip(kept.monitors, expected.monitors, strict=True):
            for field in got.__dataclass_fields__:
                assert getattr(got, field) == getattr(want, field), (got.id, field)
        assert kept == expected
        return kept

    def close(self) -> None:
        self.writer.close()
        self.conn.close()
        self.other.close()


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[World]:
    w = World(tmp_path)
    w.feed(START, START + dt.timedelta(hours=27))  # up to 2026-11-19 03:00
    w.feed(START + dt.timedelta(hours=27), START + dt.timedelta(hours=28), skip=("c",))
    w.feed(START + dt.timedelta(hours=28), dt.datetime(2026, 11, 19, 12, 0, tzinfo=dt.UTC))
    w.feed(
        dt.datetime(2026, 11, 19, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 19, 12, 30, tzinfo=dt.UTC),
        a="down",
    )
    w.feed(dt.datetime(2026, 11, 19, 12, 30, tzinfo=dt.UTC), T1)
    yield w
    w.close()


def test_steps_match_a_full_build(world: World) -> None:
    first = world.check(T1 + dt.timedelta(seconds=30), full=True)
    assert world.kept.full_builds == 1
    # time passes, nothing written
    world.check(T1 + dt.timedelta(seconds=50))
    # new results: state, checked_at, latency and today's bar move on
    world.feed(T1, T1 + 10 * MINUTE)
    now = T1 + dt.timedelta(minutes=10, seconds=5)
    snap = world.check(now)
    a = snap.monitor("a")
    assert a is not None and first.monitor("a") is not None
    assert a.checked_at == T1 + 9 * MINUTE
    # an incident opens (back-dated to the first failure) and resolves
    world.feed(T1 + 10 * MINUTE, T1 + 16 * MINUTE, a="down")
    snap = world.check(T1 + dt.timedelta(minutes=16, seconds=1))
    a = snap.monitor("a")
    assert a is not None and a.state is State.DOWN
    assert snap.incidents[0].end is None
    world.feed(T1 + 16 * MINUTE, T1 + 20 * MINUTE)
    snap = world.check(T1 + dt.timedelta(minutes=20, seconds=1))
    assert snap.incidents[0].end is not None
    # a coverage gap: c stays silent past its coverage (stale), then comes back
    world.feed(T1 + 20 * MINUTE, T1 + 30 * MINUTE, skip=("c",))
    snap = world.check(T1 + dt.timedelta(minutes=30, seconds=1))
    c = snap.monitor("c")
    assert c is not None and c.stale
    world.feed(T1 + 30 * MINUTE, T1 + 34 * MINUTE)
    world.check(T1 + dt.timedelta(minutes=34))
    # maintenance starts (14:30 UTC) and runs over local midnight (15:00 UTC)
    world.feed(T1 + 34 * MINUTE, T1 + 60 * MINUTE)
    midnight = dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC)
    snap = world.check(midnight)  # exactly midnight: today is an empty day
    assert snap.monitor("b") is not None
    world.feed(midnight, midnight + 6 * MINUTE)
    snap = world.check(midnight + dt.timedelta(minutes=6, seconds=1))
    assert snap.monitors[0].days[-1].date == dt.date(2026, 11, 21)
    # upkeep rolls an hour up (14:00-15:00 UTC): its latency points now come from rollups
    loc, mids = _ids(world.other)
    Upkeep(loc, mids, SEOUL, grace_s=60, retention_days=1).run(
        world.other, to_ms(midnight + 2 * MINUTE)
    )
    world.check(midnight + dt.timedelta(minutes=6, seconds=30))
    world.feed(midnight + 6 * MINUTE, midnight + 70 * MINUTE)
    world.check(midnight + dt.timedelta(minutes=70))


def test_incident_back_dated_into_a_closed_day(world: World) -> None:
    """An incident confirmed after local midnight starts yesterday: yesterday's closed bar
    is redone, the days before it are kept (the closed bars' partial redo)."""
    midnight = dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC)
    world.check(T1 + dt.timedelta(seconds=30), full=True)
    world.feed(T1, midnight - MINUTE)
    world.check(midnight - dt.timedelta(seconds=30))
    world.feed(midnight - MINUTE, midnight + MINUTE, a="down")
    world.check(midnight + dt.timedelta(minutes=1, seconds=1))
    world.feed(midnight + MINUTE, midnight + 6 * MINUTE, a="down")
    snap = world.check(midnight + dt.timedelta(minutes=6, seconds=1))
    assert snap.incidents[0].start < midnight
    world.feed(midnight + 6 * MINUTE, midnight + 9 * MINUTE)
    world.check(midnight + dt.timedelta(minutes=9, seconds=1))


def test_config_reload(world: World) -> None:
    world.check(T1, full=True)
    world.feed(T1, T1 + 5 * MINUTE)
    (world.tmp / "monitors.toml").write_text(RELOADED)
    world.config = load_config(world.tmp / "monitors.toml")
    snap = world.check(T1 + 5 * MINUTE, full=True)
    assert [m.id for m in snap.monitors] == ["a", "c", "b", "d"]
    world.feed(T1 + 5 * MINUTE, T1 + 8 * MINUTE)
    world.check(T1 + 8 * MINUTE)


def test_import_and_prune_force_a_full_build(world: World) -> None:
    world.check(T1, full=True)
    world.check(T1 + MINUTE)
    world.writer.close()
    # the prober is stopped (long enough for an import to be allowed)
    world.other.execute("DELETE FROM meta WHERE key = 'heartbeat'")
    csv = world.tmp / "history.csv"
    rows = [
        f"c,{(START + dt.timedelta(hours=27, minutes=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},down,,x"
        for i in range(30)
    ]
    csv.write_text("monitor,timestamp,outcome,latency_ms,error\n" + "\n".join(rows) + "\n")
    history.import_results(world.config, csv, now=T1 + MINUTE)
    snap = world.check(T1 + 2 * MINUTE, full=True)
    assert any(i.monitor_id == "c" for i in snap.incidents)  # the imported outage
    world.check(T1 + 3 * MINUTE)
    assert history.prune(world.config, now=T1 + 3 * MINUTE) > 0
    world.check(T1 + 4 * MINUTE, full=True)
    world.writer = world._writer()  # closed by the fixture


def test_publisher_refreshes_incrementally_and_on_reload(world: World) -> None:
    clock = {"now": T1}

    async def scenario() -> None:
        publisher = Publisher(
            world.config, min_age=0, max_age=0, check_every=0.001, wall=lambda: clock["now"]
        )
        await publisher.start()
        assert publisher.latest == build_snapshot(world.other, world.config, T1)
        runner = asyncio.create_task(publisher.run())
        try:
            world.feed(T1, T1 + 3 * MINUTE)
            clock["now"] = T1 + 3 * MINUTE
            builds, deadline = publisher.builds, asyncio.get_running_loop().time() + 10
            while publisher.builds < builds + 2:  # one that began after the writes
                assert asyncio.get_running_loop().time() < deadline, "no refresh"
                await asyncio.sleep(0.001)
            await _settled(publisher, world, 3)
            (world.tmp / "monitors.toml").write_text(RELOADED)
            world.config = load_config(world.tmp / "monitors.toml")
            publisher.reconfigure(world.config)
            await _settled(publisher, world, 4)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await publisher.close()

    asyncio.run(scenario())


async def _settled(publisher: Publisher, world: World, monitors: int) -> None:
    """Wait (bounded) until the publisher shows `monitors` monitors and its snapshot equals
    a full build at its `now`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        latest = publisher.latest
        assert latest is not None
        if len(latest.monitors) == monitors:
            assert latest == build_snapshot(world.other, world.config, latest.generated_at)
            return
        builds = publisher.builds
        while publisher.builds == builds:
            assert loop.time() < deadline, "no refresh"
            await asyncio.sleep(0.001)


def _ids(conn: sqlite3.Connection) -> tuple[int, list[int]]:
    (loc,) = conn.execute("SELECT id FROM location WHERE name = 'default'").fetchone()
    return loc, [mid for (mid,) in conn.execute("SELECT id FROM monitor")]


def test_publisher_builds_nothing_for_nobody(world: World) -> None:
    """No request for IDLE_AFTER: no refresh and no render, however much the data moves.
    The first request after the quiet spell catches up before it is answered."""
    from statuspage import publisher as module

    wall = {"now": T1}
    ticks = {"now": 0.0}

    async def scenario() -> None:
        publisher = Publisher(
            world.config,
            min_age=0,
            max_age=0,
            check_every=0.001,
            clock=lambda: ticks["now"],
            wall=lambda: wall["now"],
        )
        await publisher.start()
        try:
            ticks["now"] += module.IDLE_AFTER + 1  # nobody asked meanwhile
            world.feed(T1, T1 + 3 * MINUTE)
            wall["now"] = T1 + 3 * MINUTE
            builds = publisher.builds
            assert publisher.idle
            assert not await publisher._due()  # the refresher's question: data moved, but no
            snapshot = await publisher.current()  # a visitor
            assert publisher.builds == builds + 1 and not publisher.idle
            assert snapshot == build_snapshot(world.other, world.config, wall["now"])
        finally:
            await publisher.close()

    asyncio.run(scenario())


AGENTS = """
[settings]
timezone = "Asia/Seoul"
history_days = 3
location = "seoul"

[[agents]]
location = "frankfurt"
token = "9f1c2b7a4e6d8c0b1a3f5e7d9c2b4a6f"

[[monitors]]
id = "multi"
type = "http"
url = "http://127.0.0.1:9/"

[[monitors]]
id = "away"
type = "http"
url = "http://127.0.0.1:9/"
locations = ["frankfurt"]

[[monitors]]
id = "home"
type = "tcp"
host = "127.0.0.1"
port = 9
locations = ["seoul"]
"""


class Places:
    """A hub with an agent: `multi` is probed from seoul (the hub) and frankfurt, its
    verdict kept under `*`, its latency read from seoul; `away` only from frankfurt."""

    def __init__(self, tmp: pathlib.Path) -> None:
        (tmp / "monitors.toml").write_text(AGENTS)
        self.config = load_config(tmp / "monitors.toml")
        open_engine(self.config.database_path).dispose()
        self.conn = connect_raw(self.config.database_path)
        self.other = connect_raw(self.config.database_path)
        self.live = Live(self.other, self.config)
        self.kept = Incremental()

    def feed(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        down: tuple[str, ...] = (),
        silent: tuple[str, ...] = (),
        verdict: Outcome = Outcome.UP,
    ) -> None:
        """A result a minute from each (monitor, location) not `silent` ("multi@seoul"),
        down where listed in `down`; multi's combined verdict `verdict` at each minute."""
        rows, verdicts, at = [], [], start
        while at < end:
            for place in ("multi@seoul", "multi@frankfurt", "away@frankfurt", "home@seoul"):
                monitor, location = place.split("@")
                if place in silent:
                    continue
                if place in down:
                    rows.append(Row(monitor, location, at, Outcome.DOWN, 3.0, "refused"))
                else:
                    latency = 90.0 if location == "frankfurt" else 40.0
                    rows.append(Row(monitor, location, at, Outcome.UP, latency))
            verdicts.append(("multi", at, verdict))
            at += MINUTE
        self.live.feed(rows, verdicts)

    def check(self, now: dt.datetime, *, full: bool = False) -> Snapshot:
        kept = self.kept.refresh(self.conn, self.config, now)
        assert self.kept.full is full
        expected = build_snapshot(self.other, self.config, now)
        for got, want in zip(kept.monitors, expected.monitors, strict=True):
            for field in got.__dataclass_fields__:
                assert getattr(got, field) == getattr(want, field), (got.id, field)
        assert kept == expected
        return kept


def test_a_monitor_probed_from_several_places(tmp_path: pathlib.Path) -> None:
    """Its verdict (state, incidents, bars, uptime) from `*`, its latency and last check
    from the hub's own results; kept and full builds agree at every step, also when only
    the agent's results (and the combined verdict) move."""
    w = Places(tmp_path)
    w.feed(START, T1)
    snap = w.check(T1 + dt.timedelta(seconds=30), full=True)
    multi = snap.monitor("multi")
    assert multi is not None and multi.state is State.UP
    assert {p.avg_ms for p in multi.latency if p.avg_ms is not None} == {40.0}  # seoul's
    away = snap.monitor("away")
    assert away is not None and {p.avg_ms for p in away.latency if p.avg_ms} == {90.0}
    w.feed(T1, T1 + 5 * MINUTE)
    w.check(T1 + dt.timedelta(minutes=5, seconds=1))
    # both places fail, the quorum agrees: an incident under `*`, back-dated
    both = ("multi@seoul", "multi@frankfurt")
    w.feed(T1 + 5 * MINUTE, T1 + 10 * MINUTE, down=both, verdict=Outcome.DOWN)
    snap = w.check(T1 + dt.timedelta(minutes=10, seconds=1))
    multi = snap.monitor("multi")
    assert multi is not None and multi.state is State.DOWN
    assert [(i.monitor_id, i.start) for i in snap.incidents] == [("multi", T1 + 5 * MINUTE)]
    # the hub's own probe stops; frankfurt's results and the combined verdict go on: the
    # incident ends though no new result of the hub's came in
    w.feed(T1 + 10 * MINUTE, T1 + 12 * MINUTE, silent=("multi@seoul",))
    snap = w.check(T1 + dt.timedelta(minutes=12, seconds=1))
    assert snap.incidents[0].end == T1 + 10 * MINUTE
    w.feed(T1 + 12 * MINUTE, T1 + 20 * MINUTE, silent=("multi@seoul",))
    snap = w.check(T1 + dt.timedelta(minutes=20, seconds=1))
    multi = snap.monitor("multi")
    assert multi is not None and multi.uptime["24h"] is not None
    w.feed(T1 + 20 * MINUTE, T1 + 25 * MINUTE)
    w.check(T1 + dt.timedelta(minutes=25))
    w.conn.close()
    w.other.close()
