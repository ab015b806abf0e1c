"""The metrics listener: its own app, bearer token, gzip, OpenMetrics when asked, bodies
rendered off the loop and shared (statuspage.scrapes); the page's banner families. What
the per-monitor families mean: tests/test_metrics_blackbox.py."""

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
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from pytest_aiohttp import AiohttpClient

from prober.config import load_config
from prober.results import CheckResult, Outcome
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from statuspage.app import KEEPER, SCRAPES, create_metrics_app
from statuspage.metrics import PAGE_FAMILIES, exposition
from statuspage.publisher import Publisher
from statuspage.scrapes import Scrapes
from statuspage.snapshot import Overall
from tests.statuspage.factory import NOW, sample


def test_page_families() -> None:
    text = exposition(None, sample(), 0)
    scraped = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert set(scraped) == set(PAGE_FAMILIES)
    overall = {s.labels["state"]: s.value for s in scraped["status_page_overall"]}
    assert overall == {o.value: (1.0 if o is Overall.PARTIAL_OUTAGE else 0.0) for o in Overall}
    (generated,) = scraped["status_page_generated_timestamp_seconds"]
    assert generated.value == NOW.timestamp() and generated.labels == {}


def test_nothing_read_yet_means_no_samples() -> None:
    assert exposition(None, None, 0) == ""
    assert exposition(None, dataclasses.replace(sample(), groups=()), 0) != ""


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


async def test_scrapes_render_at_most_once_per_max_age_and_version_off_the_loop() -> None:
    clock, counting, prepared, version = Clock(), Counting(), [], [1]
    registry = CollectorRegistry()
    registry.register(counting)

    async def prepare() -> None:
        prepared.append(clock.now)

    scrapes = Scrapes(
        lambda _: generate_latest(registry), prepare, version=lambda: version[0], clock=clock
    )
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
    version[0] = 2  # new readings: rendered again once the body is 2 s old
    clock.now += 1.9
    assert (await scrapes.get()).body.endswith(b"renders 2.0\n")
    clock.now += 0.1
    assert (await scrapes.get()).body.endswith(b"renders 3.0\n")
    assert (await scrapes.get(openmetrics=True)).body.endswith(b"renders 4.0\n")  # its own
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
            '[[monitors]]\nid = "db"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n\n'
            '[[monitors]]\nid = "secret"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n'
            "public = false\n"
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
    text = await response.text()
    assert 'monitor_state{location="default",monitor="api",state="unknown"} 1.0' in text
    assert 'prober_monitor_info{group="",monitor="db",name="db",type="tcp"} 1.0' in text
    assert 'monitor_stale{location="default",monitor="secret"} 0.0' in text  # private too
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


async def test_openmetrics_when_the_scraper_asks(
    page: Callable[[str], Publisher], aiohttp_client: AiohttpClient
) -> None:
    scrapes = CollectorRegistry()
    scrapes.register(Counting())
    client = await aiohttp_client(create_metrics_app(page(""), scrapes))
    asked = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert asked.headers["Content-Type"] == (
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )
    body = await asked.text()
    families = {f.name: f for f in om_parser.text_string_to_metric_families(body)}
    assert families["prober_monitor"].type == "info"
    assert families["prober_unknown_seconds"].type == "counter"
    assert families["renders"].type == "gauge"  # the registry's families too
    assert body.endswith("# EOF\n") and body.count("# EOF") == 1
    plain = await client.get("/metrics")
    assert plain.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert "# EOF" not in await plain.text()


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


async def test_scrapes_never_read_the_database_the_keeper_does(
    page: Callable[[str], Publisher], aiohttp_client: AiohttpClient
) -> None:
    """A scrape renders the kept readings; the keeper reads in the background when a
    commit happened (PRAGMA data_version), whatever the scrapers do."""
    publisher = page("")
    app = create_metrics_app(publisher)
    client = await aiohttp_client(app)
    keeper = app[KEEPER]
    assert (await client.get("/metrics")).status == 200  # the first: read first
    reads = keeper.reads
    for _ in range(20):
        assert (await client.get("/metrics")).status == 200
    assert keeper.reads == reads  # nothing committed: nothing read
    writer = ResultWriter(
        publisher.config.database_path,
        "default",
        [TrackSpec.of(m) for m in publisher.config.monitors],
    )
    writer.start()
    try:
        writer.submit(Observation("secret", dt.datetime.now(dt.UTC), CheckResult(Outcome.UP, 5.0)))
        assert writer.flush(30)
    finally:
        writer.close()

    async def shown() -> bool:
        text = await (await client.get("/metrics")).text()
        return 'probe_success{location="default",monitor="secret"} 1.0' in text

    deadline = asyncio.get_running_loop().time() + 30
    while not await shown():
        assert asyncio.get_running_loop().time() < deadline, "never read"
        await asyncio.sleep(0.05)
    assert keeper.reads > reads
