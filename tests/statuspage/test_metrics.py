"""/metrics from a Snapshot: the text a Prometheus server scrapes, parsed back as it parses it;
and the metrics listener that serves it (own app, bearer token, gzip, cached off the loop)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gzip
import pathlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from pytest_aiohttp import AiohttpClient

from prober.config import load_config
from prober.store.db import open_engine
from statuspage.app import SCRAPES, create_metrics_app
from statuspage.metrics import (
    MONITOR_FAMILIES,
    PAGE_FAMILIES,
    Scrapes,
    SnapshotCollector,
    add_to,
    exposition,
)
from statuspage.publisher import Publisher
from statuspage.snapshot import Group, Overall, Snapshot, State
from tests.statuspage.factory import HOSTILE, NOW, monitor, sample

Scraped = dict[str, list[Sample]]


def scrape(snapshot: Snapshot | None) -> tuple[str, Scraped]:
    registry = CollectorRegistry(auto_describe=True)
    add_to(registry, lambda: snapshot)
    text = generate_latest(registry).decode()
    return text, {f.name: f.samples for f in text_string_to_metric_families(text)}


def series(scraped: Scraped, metric: str, monitor_id: str, **labels: str) -> list[float]:
    """The values of `metric` for one monitor whose labels include `labels`."""
    return [
        s.value
        for s in scraped.get(metric, [])
        if s.labels.get("monitor") == monitor_id
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def one(scraped: Scraped, metric: str, monitor_id: str, **labels: str) -> float:
    found = series(scraped, metric, monitor_id, **labels)
    assert len(found) == 1, (metric, monitor_id, labels, found)
    return found[0]


@pytest.fixture(scope="module")
def scraped() -> Scraped:
    return scrape(sample())[1]


def test_down_monitor(scraped: Scraped) -> None:
    assert one(scraped, "probe_success", "api") == 0
    assert one(scraped, "monitor_up", "api") == 0
    assert one(scraped, "probe_http_status_code", "api") == 503
    assert one(scraped, "probe_duration_seconds", "api") == pytest.approx(0.042)
    assert one(scraped, "monitor_incidents_open", "api") == 1
    assert one(scraped, "monitor_stale", "api") == 0
    assert one(scraped, "monitor_last_check_timestamp_seconds", "api") == pytest.approx(
        (NOW - dt.timedelta(seconds=20)).timestamp()
    )
    assert {
        s.labels["state"]: s.value for s in scraped["monitor_state"] if s.labels["monitor"] == "api"
    } == {"up": 0, "degraded": 0, "down": 1, "maintenance": 0, "unknown": 0}


def test_uptime_ratios_and_certificate(scraped: Scraped) -> None:
    assert one(scraped, "monitor_uptime_ratio", "api", window="24h") == pytest.approx(0.9826)
    assert one(scraped, "monitor_uptime_ratio", "api", window="90d") == pytest.approx(0.9998)
    expiry = one(scraped, "probe_ssl_earliest_cert_expiry", "api")
    assert expiry == (NOW + dt.timedelta(days=40)).timestamp()
    assert series(scraped, "probe_ssl_earliest_cert_expiry", "db") == []


def test_unknown_values_are_absent_not_zero(scraped: Scraped) -> None:
    # cron: stale, state unknown, no 24h uptime, no latency, no status code
    assert series(scraped, "monitor_uptime_ratio", "cron", window="24h") == []
    assert one(scraped, "monitor_uptime_ratio", "cron", window="7d") == pytest.approx(0.85)
    assert series(scraped, "monitor_up", "cron") == []
    assert one(scraped, "probe_success", "cron") == 0
    assert one(scraped, "monitor_stale", "cron") == 1
    assert one(scraped, "monitor_state", "cron", state="unknown") == 1
    assert series(scraped, "probe_duration_seconds", "cron") == []
    assert series(scraped, "probe_http_status_code", "cron") == []
    assert one(scraped, "monitor_incidents_open", "cron") == 0


def test_maintenance_and_degraded(scraped: Scraped) -> None:
    assert one(scraped, "monitor_up", "db") == 1
    assert series(scraped, "probe_success", "db") == []  # the state hides the last check
    assert one(scraped, "monitor_state", "db", state="maintenance") == 1
    assert one(scraped, "probe_success", "web") == 1
    assert one(scraped, "monitor_up", "web") == 1
    assert one(scraped, "probe_duration_seconds", "web") == pytest.approx(0.812)
    assert one(scraped, "monitor_incidents_open", "web") == 0  # resolved


def test_never_checked_monitor_has_no_probe_success() -> None:
    fresh = monitor("new", state=State.UNKNOWN, checked_at=None, latency_ms=None, status_code=None)
    snapshot = dataclasses.replace(sample(), groups=(Group("", (fresh,)),))
    _, scraped = scrape(snapshot)
    assert series(scraped, "probe_success", "new") == []
    assert series(scraped, "monitor_last_check_timestamp_seconds", "new") == []
    assert one(scraped, "monitor_state", "new", state="unknown") == 1


def test_labels_and_escaping() -> None:
    awkward = 'back\\slash "q"\nnew line'
    snapshot = sample()
    odd = monitor("odd", name=awkward, group=awkward)
    snapshot = dataclasses.replace(snapshot, groups=(*snapshot.groups, Group(awkward, (odd,))))
    text, scraped = scrape(snapshot)

    web = next(s for s in scraped["monitor_up"] if s.labels["monitor"] == "web")
    assert web.labels == {
        "monitor": "web",
        "name": HOSTILE,
        "group": "Frontend <&>",
        "type": "http",
    }
    assert '\\"quoted\\"' in text and "<script>" in text  # text format: quotes escaped only
    odd_up = next(s for s in scraped["monitor_up"] if s.labels["monitor"] == "odd")
    assert odd_up.labels["name"] == awkward and odd_up.labels["group"] == awkward
    assert "back\\\\slash" in text and "\\nnew line" in text
    assert one(scraped, "monitor_up", "db", name="Database", group="Backend", type="tcp") == 1


def test_label_sets_are_identical_within_each_family(scraped: Scraped) -> None:
    for name, samples in scraped.items():
        assert len({frozenset(s.labels) for s in samples}) == 1, name
    assert set(scraped) == set(MONITOR_FAMILIES) | set(PAGE_FAMILIES)
    assert {s.labels["monitor"] for s in scraped["monitor_state"]} == {"api", "db", "web", "cron"}


def test_page_families(scraped: Scraped) -> None:
    overall = {s.labels["state"]: s.value for s in scraped["status_page_overall"]}
    assert overall == {o.value: (1.0 if o is Overall.PARTIAL_OUTAGE else 0.0) for o in Overall}
    (generated,) = scraped["status_page_generated_timestamp_seconds"]
    assert generated.value == NOW.timestamp() and generated.labels == {}


def test_help_and_type_for_every_family() -> None:
    text, _ = scrape(sample())
    for name in (*MONITOR_FAMILIES, *PAGE_FAMILIES):
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} gauge" in text


def test_no_snapshot_yet_means_no_samples() -> None:
    text, scraped = scrape(None)
    assert text == ""
    assert scraped == {}


def test_reads_the_current_snapshot_at_each_scrape() -> None:
    current: list[Snapshot | None] = [None]
    registry = CollectorRegistry(auto_describe=True)
    collector = add_to(registry, lambda: current[0])
    assert isinstance(collector, SnapshotCollector)
    assert generate_latest(registry) == b""
    current[0] = sample()
    assert b'probe_success{group="Backend",monitor="api"' in generate_latest(registry)
    empty = dataclasses.replace(sample(), groups=())
    current[0] = empty
    names = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert names >= set(PAGE_FAMILIES)


def test_exposition_is_what_generate_latest_writes() -> None:
    """The metrics listener writes the page's families directly (fast); the text is the
    collector's, byte for byte: hostile names, every state, no snapshot."""
    sampled = sample()
    odd = dataclasses.replace(
        sampled.monitors[0], id="x", name='back\\slash "q"\nline {x} }{', group="g\\", type="http"
    )
    with_odd = dataclasses.replace(
        sampled, groups=(*sampled.groups, Group(name="g\\", monitors=(odd,)))
    )
    for snapshot in (sampled, with_odd, dataclasses.replace(sampled, groups=()), None):
        assert exposition(snapshot) == scrape(snapshot)[0]


# -- the metrics listener: statuspage.app.create_metrics_app and statuspage.metrics.Scrapes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting(Collector):
    """One family whose value counts the renders; records the thread each ran on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.current_thread().name)
        yield GaugeMetricFamily("renders", "Renders so far", value=len(self.threads))


async def test_scrapes_render_at_most_once_per_max_age_off_the_loop() -> None:
    clock, counting, prepared = Clock(), Counting(), []
    registry = CollectorRegistry()
    registry.register(counting)

    async def prepare() -> None:
        prepared.append(clock.now)

    scrapes = Scrapes(lambda: generate_latest(registry), prepare, clock=clock)
    together = await asyncio.gather(*(scrapes.get() for _ in range(8)))
    assert {e.body for e in together} == {
        b"# HELP renders Renders so far\n# TYPE renders gauge\nrenders 1.0\n"
    }
    assert (scrapes.renders, prepared) == (1, [1000.0])  # eight scrapers, one render
    clock.now += 4.9
    assert (await scrapes.get()).body.endswith(b"renders 1.0\n")  # kept: under 5 s old
    clock.now += 0.1
    fresh = await scrapes.get()
    assert fresh.body.endswith(b"renders 2.0\n") and fresh.at == 1005.0
    assert gzip.decompress(fresh.gzipped) == fresh.body
    assert threading.current_thread().name not in counting.threads  # never on the loop


@pytest.fixture
async def page(tmp_path: pathlib.Path) -> AsyncIterator[Callable[[str], Publisher]]:
    """A Publisher over an empty database, from a config with `settings` lines."""
    made: list[Publisher] = []

    def make(settings: str) -> Publisher:
        path = tmp_path / "monitors.toml"
        path.write_text(
            f'[settings]\ndatabase = "sqlite:///{tmp_path / "p.db"}"\n{settings}\n\n'
            '[[monitors]]\nid = "api"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n\n'
            '[[monitors]]\nid = "db"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n'
        )
        config = load_config(path)
        open_engine(config.database_path).dispose()
        made.append(Publisher(config))
        return made[-1]

    yield make
    for publisher in made:
        await publisher.close()


async def test_metrics_listener_serves_metrics_and_nothing_else(
    page: Callable[[str], Publisher], aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(create_metrics_app(page("")))
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert response.headers["Cache-Control"] == "no-store"
    assert 'monitor_state{group="",monitor="api"' in await response.text()
    for path in ("/", "/healthz", "/api/v1/status", "/push/x", "/metrics/"):
        assert (await client.get(path)).status == 404, path
    assert (await client.post("/metrics")).status == 405


async def test_metrics_are_gzipped_when_asked(
    page: Callable[[str], Publisher], aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(create_metrics_app(page("")))
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    zipped = await client.get(
        "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(await zipped.read()) == await plain.read()


async def test_metrics_token_is_a_bearer_token(
    page: Callable[[str], Publisher], aiohttp_client: AiohttpClient
) -> None:
    scrapes = CollectorRegistry()
    counting = Counting()
    scrapes.register(counting)
    publisher = page('metrics = { listen = "127.0.0.1:9108", token = "s3cret-metrics-token" }')
    client = await aiohttp_client(create_metrics_app(publisher, scrapes))
    for authorization in (
        None,
        "Bearer wrong-token",
        "Bearer s3cret-metrics-tokenX",
        "Basic czNjcmV0LW1ldHJpY3MtdG9rZW4=",
        "s3cret-metrics-token",
        "Bearer ",
        "Bearer s3cret-métrics-token",
    ):
        headers = {} if authorization is None else {"Authorization": authorization}
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401, authorization
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
        assert "renders" not in await response.text()
    assert counting.threads == []  # refused before anything is rendered
    for authorization in ("Bearer s3cret-metrics-token", "bearer  s3cret-metrics-token "):
        response = await client.get("/metrics", headers={"Authorization": authorization})
        assert response.status == 200, authorization


async def test_a_slow_render_never_holds_the_loop(
    page: Callable[[str], Publisher], aiohttp_client: AiohttpClient
) -> None:
    """While a render is stuck (a collector waits), the same loop answers other requests
    and other scrapers join the render in progress rather than starting their own."""
    started, release = threading.Event(), threading.Event()

    class Stuck(Collector):
        def collect(self) -> Iterator[Metric]:
            started.set()
            # on the loop, this would wait out its 30 s: nothing could release it
            yield GaugeMetricFamily("released", "Whether it was let go", value=release.wait(30))

    registry = CollectorRegistry()
    registry.register(Stuck())
    app = create_metrics_app(page(""), registry)
    client = await aiohttp_client(app)
    scrapers = [asyncio.ensure_future(client.get("/metrics")) for _ in range(8)]
    assert await asyncio.to_thread(started.wait, 30)
    assert (await client.get("/elsewhere")).status == 404  # the loop is free meanwhile
    release.set()
    bodies = {await (await scraper).text() for scraper in scrapers}
    assert len(bodies) == 1 and "released 1.0" in bodies.pop()
    assert app[SCRAPES].renders == 1
