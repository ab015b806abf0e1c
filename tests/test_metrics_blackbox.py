"""/metrics in blackbox_exporter's meanings, and the SLO counters against the report.

A real database written by the real writer (the live ledger: incidents, coverage,
transitions in the result's transaction), read by statuspage.readings as the metrics
listener reads it; the counters' growth between two moments compared with the report's
accounting of the window between them; then `prober run` itself, scraped on loopback,
its body parsed with prometheus_client's parsers and checked by promtool.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import pathlib
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from prober import timeline
from prober.config import load_config
from prober.config.load import Config
from prober.config.monitors import Monitor
from prober.report.compute import Reader
from prober.results import CheckResult, Outcome, Phases
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from prober.timeline import to_ms
from statuspage.build import build_snapshot
from statuspage.metrics import FAMILIES, FrameCollector, exposition
from statuspage.readings import Counted, Frame, Readings
from tests.support.history import every, write
from tests.support.net import free_port
from tests.support.proc import ProberRun, http_target, until

START = dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
CONFIG = """
[settings]
timezone = "Europe/Berlin"
location = "fra"

[[monitors]]
id = "a"
name = "Alpha"
group = "Backend"
type = "http"
url = "https://127.0.0.1:9/"
down_after = "3m"
up_after = 3

[[monitors]]
id = "hidden"
type = "tcp"
host = "127.0.0.1"
port = 9
public = false
down_after = 1

[[monitors]]
id = "m"
type = "http"
url = "http://127.0.0.1:9/"

[[maintenance]]
title = "Swap disks"
monitors = ["m", "hidden"]
start = "2026-11-20T00:20:00Z"
end = "2026-11-20T00:30:30Z"
"""
UP = CheckResult(
    Outcome.UP,
    41.0,
    status_code=200,
    phases=Phases(dns_ms=1.0, connect_ms=2.0, tls_ms=5.0, first_byte_ms=30.0),
    details={"tls_version": "TLSv1.3"},
)
DOWN = CheckResult(Outcome.DOWN, 3.0, error="connection refused", phases=Phases(dns_ms=1.0))
UNKNOWN = CheckResult(Outcome.UNKNOWN, 900.0, error="prober overloaded")
RESULTS = {"up": UP, "down": DOWN, "unknown": UNKNOWN}

# a's minutes from START: "u" up, "d" down, "?" unknown, "." nothing (a coverage gap)
A_SCRIPT = (
    "uuuuu"  # up
    "duu"  # a blip (down_after 3m: never confirmed)
    "dddddd"  # a failure run: pending for 3 minutes, then an incident from its first down
    "uud"  # a recovery streak broken by a down (up_after 3)
    "uuuu"  # recovered: the incident ends at the streak's first success
    "?u"  # an unknown result
    "......"  # silence past the coverage (2 x 60 s): unknown time
    "uuuuuuuuu"
)


class World:
    """A database written by the real writer, read as the metrics listener reads it."""

    def __init__(self, tmp: pathlib.Path) -> None:
        (tmp / "monitors.toml").write_text(
            CONFIG.replace("[settings]", f'[settings]\ndatabase = "sqlite:///{tmp}/p.db"')
        )
        self.config: Config = load_config(tmp / "monitors.toml")
        open_engine(self.config.database_path).dispose()
        specs = [TrackSpec.of(m) for m in self.config.monitors]
        self.writer = ResultWriter(self.config.database_path, "fra", specs)
        self.writer.start()
        self.kept = Readings()
        self.conn = connect_raw(self.config.database_path)
        self.other = connect_raw(self.config.database_path)

    def feed(self, at: dt.datetime, **outcomes: str) -> None:
        for monitor, outcome in outcomes.items():
            self.writer.submit(Observation(monitor, at, RESULTS[outcome]))
        assert self.writer.flush(30)

    def read(self, now: dt.datetime) -> Frame:
        """The kept readings, held equal to readings read afresh."""
        kept = self.kept.refresh(self.conn, self.config, now)
        fresh = Readings().refresh(self.other, self.config, now)
        now_ms = to_ms(now)
        assert exposition(kept, None, now_ms) == exposition(fresh, None, now_ms)
        return kept

    def close(self) -> None:
        self.writer.close()
        self.conn.close()
        self.other.close()


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _counted(frame: Frame) -> dict[str, Counted | None]:
    return {r.id: r.counted for r in frame.readings}


def _report(world: World, monitor: str, lo: int, hi: int, now: dt.datetime) -> timeline.Accounting:
    """The monthly report's accounting (prober.report.compute) of [lo, hi)."""
    reader = Reader(world.other, world.config, now)
    return _account(reader, next(m for m in world.config.monitors if m.id == monitor), lo, hi)


def _account(reader: Reader, m: Monitor, lo: int, hi: int) -> timeline.Accounting:
    stored = reader.stored(m, lo, hi)
    target = m.sla_target or reader.config.settings.sla_target
    spans = reader.incident_spans(stored)
    return timeline.account((lo, hi), stored.known, spans, stored.maintenance, target)


def test_counters_only_grow_and_equal_the_report_between_any_two_moments(world: World) -> None:
    moments: list[tuple[dt.datetime, dict[str, Counted | None]]] = []
    for i, step in enumerate(A_SCRIPT):
        at = START + i * MINUTE
        outcomes = {"hidden": "down" if 10 <= i < 14 else "up", "m": "up"}
        if step != ".":
            outcomes["a"] = {"u": "up", "d": "down", "?": "unknown"}[step]
        world.feed(at, **outcomes)
        frame = world.read(at + dt.timedelta(seconds=1))
        counted = _counted(frame)
        if moments:
            for monitor, now in counted.items():
                before = moments[-1][1][monitor]
                assert now is not None and before is not None
                assert now.settled_ms >= before.settled_ms, (i, monitor)
                assert now.monitored_ms >= before.monitored_ms, (i, monitor)
                assert now.down_ms >= before.down_ms, (i, monitor)
                assert now.unknown_ms >= before.unknown_ms, (i, monitor)
        moments.append((at, counted))
    end = START + len(A_SCRIPT) * MINUTE
    seen_down = seen_unknown = seen_maintenance = False
    for i, (_, early) in enumerate(moments):
        for _, late in moments[i + 1 :: 3]:
            for monitor in ("a", "hidden", "m"):
                one, two = early[monitor], late[monitor]
                assert one is not None and two is not None
                acc = _report(world, monitor, one.settled_ms, two.settled_ms, end)
                monitored = (two.monitored_ms - one.monitored_ms) / 1000
                down = (two.down_ms - one.down_ms) / 1000
                unknown = (two.unknown_ms - one.unknown_ms) / 1000
                assert monitored == pytest.approx(acc.monitored_seconds, abs=1e-3)
                assert down == pytest.approx(acc.downtime_seconds, abs=1e-3)
                assert unknown == pytest.approx(acc.unknown_seconds, abs=1e-3)
                if monitored:
                    assert acc.uptime_percent is not None
                    assert 100 * (1 - down / monitored) == pytest.approx(acc.uptime_percent)
                seen_down |= down > 0
                seen_unknown |= unknown > 0
                seen_maintenance |= acc.maintenance_seconds > 0
    assert seen_down and seen_unknown and seen_maintenance  # the script covers each kind


def test_counters_wait_for_a_pending_verdict(world: World) -> None:
    """While a failure run is unconfirmed, or an incident's recovery streak is under way,
    the counters stand at the run's first down / the streak's first success."""
    script = "uuudddduuu"  # pending from minute 3, confirmed at 6, streak at 7
    settled = []
    for i, step in enumerate(script):
        world.feed(START + i * MINUTE, a="up" if step == "u" else "down")
        counted = _counted(world.read(START + i * MINUTE + dt.timedelta(seconds=1)))["a"]
        assert counted is not None
        settled.append((counted.settled_ms - to_ms(START)) // 60_000)
    assert settled == [0, 1, 2, 3, 3, 3, 6, 7, 7, 9]
    assert counted.down_ms == 4 * 60_000  # the incident: minutes 3 to 7


# -- what a scrape shows, from the same readings ---------------------------------------


def _scrape(frame: Frame, now: dt.datetime) -> dict[str, list[Sample]]:
    text = exposition(frame, None, to_ms(now))
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _one(scraped: dict[str, list[Sample]], name: str, monitor: str, **labels: str) -> float:
    found = [
        s.value
        for s in scraped.get(name, [])
        if s.labels.get("monitor") == monitor
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, monitor, labels, found)
    return found[0]


def _none(scraped: dict[str, list[Sample]], name: str, monitor: str) -> bool:
    return not [s for s in scraped.get(name, []) if s.labels.get("monitor") == monitor]


def test_a_down_check_is_probe_success_0_at_once_while_the_page_waits(world: World) -> None:
    for i in range(3):
        world.feed(START + i * MINUTE, a="up", hidden="up", m="up")
    world.feed(START + 3 * MINUTE, a="down", hidden="up", m="up")
    now = START + 3 * MINUTE + dt.timedelta(seconds=1)
    scraped = _scrape(world.read(now), now)
    assert _one(scraped, "probe_success", "a") == 0
    assert _one(scraped, "probe_http_status_code", "a") == 0  # no response came
    assert (
        _one(scraped, "probe_http_ssl", "a") == 0 and _one(scraped, "probe_http_version", "a") == 0
    )
    assert _one(scraped, "probe_http_duration_seconds", "a", phase="resolve") == 0.001
    assert _one(scraped, "probe_http_duration_seconds", "a", phase="connect") == 0
    assert _one(scraped, "monitor_up", "a") == 1  # down_after 3m: not an incident yet
    assert _one(scraped, "monitor_state", "a", state="up") == 1  # as the page shows it
    assert _one(scraped, "probe_success", "hidden") == 1  # private monitors too
    page = build_snapshot(world.other, world.config, now)
    for view in page.monitors:  # the page's view, as the page shows it
        assert _one(scraped, "monitor_state", view.id, state=view.state.value) == 1
        for window, percent in view.uptime.items():
            if percent is not None:
                got = _one(scraped, "monitor_uptime_ratio", view.id, window=window)
                assert got == pytest.approx(percent / 100)


def test_probe_families_of_an_answered_check_and_none_while_unknown(world: World) -> None:
    world.feed(START, a="up", hidden="up", m="up")
    now = START + dt.timedelta(seconds=1)
    scraped = _scrape(world.read(now), now)
    assert _one(scraped, "probe_success", "a") == 1
    assert _one(scraped, "probe_http_status_code", "a") == 200
    assert _one(scraped, "probe_duration_seconds", "a") == 0.041
    phases = {
        s.labels["phase"]: s.value
        for s in scraped["probe_http_duration_seconds"]
        if s.labels["monitor"] == "a"
    }
    assert phases == pytest.approx(
        {"resolve": 0.001, "connect": 0.002, "tls": 0.005, "processing": 0.03, "transfer": 0.003}
    )
    assert _one(scraped, "probe_http_ssl", "a") == 1
    assert _one(scraped, "probe_http_version", "a") == 1.1
    assert _one(scraped, "probe_http_redirects", "a") == 0
    assert _one(scraped, "probe_tls_version_info", "a", version="TLS 1.3") == 1
    assert _one(scraped, "probe_dns_lookup_time_seconds", "a") == 0.001
    assert _none(scraped, "probe_http_status_code", "hidden")  # a tcp check: no HTTP
    world.feed(START + MINUTE, a="unknown", hidden="up", m="up")
    later = START + MINUTE + dt.timedelta(seconds=1)
    scraped = _scrape(world.read(later), later)
    for name in FAMILIES:
        if name.startswith("probe_"):
            assert _none(scraped, name, "a"), name
    assert _one(scraped, "monitor_state", "a", state="unknown") == 1
    stale = START + 4 * MINUTE  # hidden's newest result is older than 2 x 60 s
    scraped = _scrape(world.read(stale), stale)
    assert _none(scraped, "probe_success", "hidden")
    assert _one(scraped, "monitor_stale", "hidden") == 1


def test_every_series_is_labelled_monitor_and_location_only(world: World) -> None:
    world.feed(START, a="up", hidden="down", m="up")
    now = START + dt.timedelta(seconds=1)
    scraped = _scrape(world.read(now), now)
    for name, samples in scraped.items():
        for s in samples:
            if name == "prober_monitor_info":  # the text format's name of the info
                expected = {"monitor", "name", "group", "type"}
            else:
                expected = {"monitor", "location"} | ({FAMILIES[name].label} - {None})
            assert set(s.labels) == expected, (name, s.labels)
            if "location" in s.labels:
                assert s.labels["location"] == "fra"
    info = {s.labels["monitor"]: s.labels for s in scraped["prober_monitor_info"]}
    assert info["a"] == {"monitor": "a", "name": "Alpha", "group": "Backend", "type": "http"}
    assert set(info) == {"a", "hidden", "m"}


def test_exposition_is_what_prometheus_client_writes(world: World) -> None:
    """Both formats, byte for byte, with names that need escaping."""
    world.feed(START, a="up", hidden="down", m="unknown")
    now = START + dt.timedelta(seconds=1)
    frame = world.read(now)
    first = frame.readings[0]
    odd = dataclasses.replace(
        first,
        id='x"\\\n',
        name='back\\slash "q"\nline {x} }{',
        group="g\\",
        location='l"\\',
        probes=tuple(('p"\\', last) for _, last in first.probes),
    )
    frame = dataclasses.replace(frame, readings=(*frame.readings, odd))
    page = build_snapshot(world.other, world.config, now)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FrameCollector(lambda: frame, lambda: page, lambda: to_ms(now)))
    text = generate_latest(registry).decode()
    assert exposition(frame, page, to_ms(now)) == text
    om = om_exposition.generate_latest(registry).decode()
    assert exposition(frame, page, to_ms(now), openmetrics=True) + "# EOF\n" == om
    assert {f.name for f in om_parser.text_string_to_metric_families(om)} >= set(FAMILIES)


# -- prober run, scraped ----------------------------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), response.read()


def _families(body: bytes) -> dict[str, list[Sample]]:
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


@pytest.fixture
def run(tmp_path: pathlib.Path) -> Iterator[tuple[ProberRun, int]]:
    refused, metrics, listen = free_port(), free_port(), free_port()
    with http_target(tmp_path / "www") as target:
        (tmp_path / "monitors.toml").write_text(
            textwrap.dedent(f"""
            [settings]
            listen = "127.0.0.1:{listen}"
            metrics = {{ listen = "127.0.0.1:{metrics}" }}
            database = "sqlite:///data/prober.db"

            [defaults]
            interval = "1s"
            timeout = "900ms"

            [[monitors]]
            id = "ok"
            type = "http"
            url = "http://127.0.0.1:{target}/ok"

            [[monitors]]
            id = "refused"
            type = "http"
            url = "http://127.0.0.1:{refused}/"
            down_after = "1h"

            [[monitors]]
            id = "private"
            type = "tcp"
            host = "127.0.0.1"
            port = {target}
            public = false
            """)
        )
        proc = ProberRun(["run", "-c", "monitors.toml"], tmp_path)
        try:
            proc.wait_for("prober running")
            yield proc, metrics
        finally:
            assert proc.stop() == 0


def test_prober_run_serves_blackbox_meanings_on_the_metrics_listener(
    run: tuple[ProberRun, int],
) -> None:
    _, port = run
    url = f"http://127.0.0.1:{port}/metrics"
    found: dict[str, list[Sample]] = {}

    def every_monitor_probed() -> bool:
        nonlocal found
        found = _families(_get(url)[1])
        probed = {s.labels["monitor"] for s in found.get("probe_success", [])}
        return probed == {"ok", "refused", "private"}

    until(every_monitor_probed, within=60, every=0.2)
    assert _one(found, "probe_success", "ok") == 1
    assert _one(found, "probe_success", "refused") == 0  # at once, though down_after is 1h
    assert _one(found, "probe_http_status_code", "refused") == 0  # connection refused
    assert _one(found, "monitor_up", "refused") == 1  # the page's view: not confirmed
    phases = {
        s.labels["phase"]
        for s in found["probe_http_duration_seconds"]
        if s.labels["monitor"] == "ok"
    }
    assert phases == {"resolve", "connect", "tls", "processing", "transfer"}
    assert _one(found, "probe_http_duration_seconds", "ok", phase="connect") > 0
    assert _one(found, "probe_http_duration_seconds", "ok", phase="processing") > 0
    assert _one(found, "probe_success", "private") == 1  # every monitor: the operators' view

    # the counters grow as results come
    first = _one(found, "prober_monitored_seconds", "ok")
    until(lambda: _one(_families(_get(url)[1]), "prober_monitored_seconds", "ok") > first)

    _, body = _get(url)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == b""  # not even a lint warning

    zipped_headers, zipped = _get(url, {"Accept-Encoding": "gzip"})
    assert zipped_headers["Content-Encoding"] == "gzip"
    assert _families(gzip.decompress(zipped)).keys() == _families(body).keys()

    # what Prometheus itself asks for
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    om_headers, om = _get(url, {"Accept": accept})
    assert om_headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    parsed = {f.name: f for f in om_parser.text_string_to_metric_families(om.decode())}
    assert parsed["prober_monitored_seconds"].type == "counter"
    assert parsed["prober_monitor"].type == "info"
    assert om.endswith(b"# EOF\n")


def test_counters_survive_a_restart(tmp_path: pathlib.Path) -> None:
    """Read from the store: a new reader (a restarted web process) starts where the
    old one stood."""
    world = World(tmp_path)
    try:
        for i in range(5):
            world.feed(START + i * MINUTE, a="up", hidden="up", m="up")
        now = START + 5 * MINUTE
        before = _counted(world.read(now))
        conn = connect_raw(world.config.database_path)
        try:
            again = _counted(Readings().refresh(conn, world.config, now + MINUTE))
        finally:
            conn.close()
        assert again == before
    finally:
        world.close()


AGENTS = """
[settings]
timezone = "Asia/Seoul"
location = "seoul"

[[agents]]
location = "frankfurt"
token = "9f1c2b7a4e6d8c0b1a3f5e7d9c2b4a6f"

[[monitors]]
id = "api"
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
locations = ["frankfurt"]
"""


def test_several_locations_probes_each_and_counts_the_verdict(tmp_path: pathlib.Path) -> None:
    """probe_* at every location probing a monitor; the page's view and the counters where
    its verdict is kept: `*` for a quorum's, the one location's otherwise."""
    (tmp_path / "monitors.toml").write_text(
        AGENTS.replace("[settings]", f'[settings]\ndatabase = "sqlite:///{tmp_path}/p.db"')
    )
    config = load_config(tmp_path / "monitors.toml")
    open_engine(config.database_path).dispose()
    step = dt.timedelta(minutes=5)
    end = START + dt.timedelta(hours=6)
    outage = [(START + dt.timedelta(hours=2), START + dt.timedelta(hours=2, minutes=30))]
    rows = [
        *every("api", "seoul", START, end, step, down=outage),
        *every("api", "frankfurt", START, end - step, step),  # a result behind
        *every("web", "frankfurt", START, end, step, down=outage),
    ]
    combined = [(r.at, r.outcome) for r in rows if r.monitor == "api" and r.location == "seoul"]
    conn = connect_raw(config.database_path)
    try:
        write(conn, config, rows, combined={"api": combined})
        frame = Readings().refresh(conn, config, end)
        scraped = _scrape(frame, end)
        assert {
            (s.labels["monitor"], s.labels["location"]): s.value for s in scraped["probe_success"]
        } == {("api", "seoul"): 1, ("api", "frankfurt"): 1, ("web", "frankfurt"): 1}
        assert {s.labels["location"] for s in scraped["monitor_state"]} == {"*", "frankfurt"}
        reader = Reader(conn, config, end)
        for r in frame.readings:
            assert r.counted is not None
            m = next(m for m in config.monitors if m.id == r.id)
            first = to_ms(START)
            acc = _account(reader, m, first, r.counted.settled_ms)
            assert r.counted.monitored_ms / 1000 == pytest.approx(acc.monitored_seconds)
            assert r.counted.down_ms / 1000 == pytest.approx(acc.downtime_seconds)
            assert acc.downtime_seconds == 1800
        assert {r.id: r.location for r in frame.readings} == {"api": "*", "web": "frankfurt"}
    finally:
        conn.close()
