"""The web app end to end: every route from a real database, caching, 404s, and leaks."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import pathlib
import sqlite3

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from prober.alerts.outbox import Outbox, Routes
from prober.checks.runner import run_check
from prober.checks.session import open_shared
from prober.config import load_config
from prober.config.load import Config
from prober.config.monitors import HttpMonitor, PushMonitor
from prober.push import PushHub
from prober.results import Certificate, CheckResult, Outcome
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from prober.timeline import to_ms
from statuspage.app import create_app
from statuspage.health import Health
from statuspage.publisher import Publisher

SECRETS = ("s3cr3t-url-pass", "tok-9f8e7d6c5b4a", "hdr-0a1b2c3d4e5f", "internal-db.corp.example")
CONFIG = """
[settings]
title = "Acme <Status>"
public_url = "https://status.example.com"
timezone = "Asia/Seoul"
public_reports = true

[[monitors]]
id = "api"
name = "API <script>alert(1)</script>"
group = "Backend \\"core\\""
type = "http"
url = "https://user:s3cr3t-url-pass@api.internal-db.corp.example/health?token=tok-9f8e7d6c5b4a"
headers = { Authorization = "Bearer hdr-0a1b2c3d4e5f" }
interval = "1m"

[[monitors]]
id = "web"
name = "Web"
type = "http"
url = "http://127.0.0.1:9/"
interval = "1m"

[[monitors]]
id = "secret-db"
name = "Internal DB"
type = "tcp"
host = "internal-db.corp.example"
port = 5432
public = false
"""
NOW = dt.datetime.now(dt.UTC)


def _config(tmp_path: pathlib.Path) -> Config:
    path = tmp_path / "monitors.toml"
    path.write_text(CONFIG)
    return load_config(path)


def _write(config: Config) -> None:
    open_engine(config.database_path).dispose()
    writer = ResultWriter(
        config.database_path, "default", [TrackSpec.of(m) for m in config.monitors]
    )
    writer.start()
    leak = (
        "connect to api.internal-db.corp.example (10.1.2.3:443) failed; "
        "https://user:s3cr3t-url-pass@api.internal-db.corp.example/?token=tok-9f8e7d6c5b4a"
    )
    cert = Certificate(NOW + dt.timedelta(days=30), "api", "ca")
    for minutes in range(30, 0, -1):
        at = NOW - dt.timedelta(minutes=minutes)
        down = 10 <= minutes <= 20
        api = (
            CheckResult(Outcome.DOWN, 5.0, error=leak)
            if down
            else CheckResult(Outcome.UP, 40.0, status_code=200, certificate=cert)
        )
        writer.submit(Observation("api", at, api))
        writer.submit(Observation("web", at, CheckResult(Outcome.UP, 20.0, status_code=200)))
        writer.submit(Observation("secret-db", at, CheckResult(Outcome.DOWN, 1.0, error=leak)))
    assert writer.flush(10)
    writer.close()


@pytest.fixture
async def client(tmp_path: pathlib.Path, aiohttp_client) -> TestClient:  # type: ignore[no-untyped-def]
    config = _config(tmp_path)
    _write(config)
    app = create_app(config, Health(lambda: True, lambda: True))
    result: TestClient = await aiohttp_client(app)
    return result


PUBLIC_ROUTES = [
    "/",
    "/?lang=ko",
    "/monitors/api",
    "/monitors/web?lang=ko",
    "/api/v1/status",
    "/api/v1/monitors/api/days?days=30",
    "/api/v1/incidents",
    "/api/v2/summary.json",
    "/api/v2/status.json",
    "/api/v2/components.json",
    "/api/v2/incidents.json",
    "/api/v2/incidents/unresolved.json",
    "/api/v2/scheduled-maintenances.json",
    "/api/v2/scheduled-maintenances/upcoming.json",
    "/api/v2/scheduled-maintenances/active.json",
    "/feed.atom",
    "/feed.rss",
    "/monitors/api/feed.atom",
    "/badge/api/status.svg",
    "/badge/api/uptime.svg?window=7d",
    "/badge/api/response.svg",
    f"/reports/{NOW:%Y-%m}.json",
    f"/reports/{NOW:%Y-%m}.csv",
    f"/reports/{NOW:%Y-%m}.html",
]


async def test_every_public_route_answers_and_leaks_nothing(client: TestClient) -> None:
    for route in PUBLIC_ROUTES:
        response = await client.get(route)
        body = await response.text()
        assert response.status == 200, (route, body[:200])
        for secret in (*SECRETS, "10.1.2.3", "Internal DB", "secret-db"):
            assert secret not in body, (route, secret)
        kind = response.headers["Content-Type"]
        if not kind.startswith(("text/plain", "text/csv")):  # plain data: not markup
            assert "<script>alert(1)</script>" not in body, route
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")


async def test_content_types(client: TestClient) -> None:
    expected = {
        "/": "text/html",
        "/api/v1/status": "application/json",
        "/api/v2/summary.json": "application/json",
        "/feed.atom": "application/atom+xml",
        "/feed.rss": "application/rss+xml",
        "/badge/api/status.svg": "image/svg+xml",
        f"/reports/{NOW:%Y-%m}.csv": "text/csv",
    }
    for route, kind in expected.items():
        response = await client.get(route)
        assert response.headers["Content-Type"].startswith(kind), route


async def test_metrics_are_not_on_the_public_listener(client: TestClient) -> None:
    """They cover private monitors too: statuspage.app.create_metrics_app, its own listener."""
    for method in ("GET", "HEAD", "POST"):
        assert (await client.request(method, "/metrics")).status == 404, method


async def test_private_and_unknown_monitors_are_404_everywhere(client: TestClient) -> None:
    for monitor in ("secret-db", "nope"):
        for route in (
            f"/monitors/{monitor}",
            f"/monitors/{monitor}/feed.atom",
            f"/api/v1/monitors/{monitor}/days",
            f"/badge/{monitor}/status.svg",
            f"/badge/{monitor}/uptime.svg",
            f"/badge/{monitor}/response.svg",
        ):
            response = await client.get(route)
            assert response.status == 404, route
    status = await (await client.get("/api/v1/status")).json()
    assert [m["id"] for m in status["monitors"]] == ["api", "web"]


async def test_etag_304_gzip_and_cache_headers(client: TestClient) -> None:
    first = await client.get("/", headers={"Accept-Encoding": "gzip"})
    assert first.status == 200
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.headers["Cache-Control"] == "public, max-age=10"
    assert first.headers["Vary"] == "Accept-Encoding"
    assert "Last-Modified" in first.headers
    etag = first.headers["ETag"]
    again = await client.get("/", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    plain = await client.get("/", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["ETag"] == etag
    raw = await client.get(
        "/api/v2/summary.json", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )  # type: ignore[call-arg]
    body = await raw.read()
    data = json.loads(
        gzip.decompress(body) if raw.headers.get("Content-Encoding") == "gzip" else body
    )
    assert data["page"]["name"] == "Acme <Status>"
    assert raw.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_burst_renders_once(tmp_path: pathlib.Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    config = _config(tmp_path)
    _write(config)
    publisher = Publisher(config)
    client: TestClient = await aiohttp_client(
        create_app(config, Health(lambda: True, lambda: True), publisher=publisher)
    )
    responses = await asyncio.gather(*(client.get("/") for _ in range(50)))
    assert {r.status for r in responses} == {200}
    assert len({r.headers["ETag"] for r in responses}) == 1
    assert publisher.builds == 1


async def test_bad_parameters(client: TestClient) -> None:
    assert (await client.get("/badge/api/uptime.svg?window=1y")).status == 400
    assert (await client.get("/api/v1/monitors/api/days?days=abc")).status == 400
    assert (await client.get("/reports/2026-13.json")).status == 404


async def test_reports_are_404_unless_public(tmp_path: pathlib.Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "monitors.toml"
    path.write_text(CONFIG.replace("public_reports = true", "public_reports = false"))
    config = load_config(path)
    _write(config)
    client: TestClient = await aiohttp_client(
        create_app(config, Health(lambda: True, lambda: True))
    )
    assert (await client.get(f"/reports/{NOW:%Y-%m}.json")).status == 404


async def test_report_holds_only_public_monitors(client: TestClient) -> None:
    report = await (await client.get(f"/reports/{NOW:%Y-%m}.json")).json()
    assert [m["id"] for m in report["monitors"]] == ["api", "web"]


async def test_healthz_reports_each_problem(tmp_path: pathlib.Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    config = _config(tmp_path)
    open_engine(config.database_path).dispose()
    healthy: TestClient = await aiohttp_client(
        create_app(config, Health(lambda: True, lambda: True))
    )
    response = await healthy.get("/healthz")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {
        "status": "ok",
        "problems": [],
        "scheduler_running": True,
        "database_writable": True,
        "loop_lag_ms": 0.0,
        "last_result_age_s": None,
        "writer_queue": 0,
        "alert_queue": 0,
        "overloaded_checks": 0,
    }
    sick: TestClient = await aiohttp_client(
        create_app(config, Health(lambda: False, lambda: False))
    )
    response = await sick.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert (body["status"], body["problems"]) == (
        "unhealthy",
        ["scheduler not running", "database not taking writes"],
    )
    assert (body["scheduler_running"], body["database_writable"]) == (False, False)
    css = await sick.get("/static/style.css")
    assert css.status == 200


# --- target content and hidden characters (issue 18, finding 4) ---------------------------

LEAK = "BODY-LEAK-4242"  # what the target's body says
WANTED = "WANTED-KW-7731"  # the keyword the operator looks for
PUSH_TOKEN = "push-token-0123456789abcdef"
# TOML escapes: U+202E reverses what follows, U+200B and U+2066 hide
LEAK_CONFIG = r"""
[settings]
title = "Acme\u202e Status"
timezone = "Asia/Seoul"
public_reports = true

[[notifiers]]
id = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"

[[monitors]]
id = "orders"
name = "Orders\u202e IPA\u200b"
group = "Shop\u2066"
type = "http"
url = "BASE/json"
json = ['status == "ok"']
notify = ["hook"]

[[monitors]]
id = "shop"
name = "Shop"
type = "http"
url = "BASE/text"
contains = ["WANTED-KW-7731"]

[[monitors]]
id = "told"
name = "Told"
type = "http"
url = "BASE/json"
json = ['status == "ok"']
public_cause = "Planned upstream work"

[[monitors]]
id = "backup"
name = "Nightly backup"
type = "push"
period = "1h"
token = "push-token-0123456789abcdef"
"""
LEAK_ROUTES = [
    "/",
    "/?lang=ko",
    *(f"/monitors/{m}" for m in ("orders", "shop", "told", "backup")),
    "/api/v1/status",
    "/api/v1/monitors/orders/days?days=30",
    "/api/v1/incidents",
    "/api/v2/summary.json",
    "/api/v2/components.json",
    "/api/v2/incidents.json",
    "/api/v2/incidents/unresolved.json",
    "/feed.atom",
    "/feed.rss",
    "/badge/orders/status.svg",
    f"/reports/{NOW:%Y-%m}.json",
    f"/reports/{NOW:%Y-%m}.csv",
    f"/reports/{NOW:%Y-%m}.html",
]


async def _checked(tmp_path: pathlib.Path) -> tuple[Config, dict[str, CheckResult]]:
    """The config against a loopback target, and each http monitor's real check of it."""

    async def document(request: web.Request) -> web.Response:
        return web.json_response({"status": LEAK})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {LEAK}")

    target = web.Application()
    target.router.add_get("/json", document)
    target.router.add_get("/text", text)
    async with TestServer(target, host="127.0.0.1") as server:
        path = tmp_path / "monitors.toml"
        path.write_text(LEAK_CONFIG.replace("BASE", str(server.make_url("/")).rstrip("/")))
        config = load_config(path)
        async with open_shared() as shared:
            checked = {
                m.id: await run_check(m, shared)
                for m in config.monitors
                if isinstance(m, HttpMonitor)
            }
    return config, checked


def _write_checked(config: Config, checked: dict[str, CheckResult]) -> None:
    """The checks' results as a 10-minute outage each, and the job's failure reports."""
    open_engine(config.database_path).dispose()
    writer = ResultWriter(
        config.database_path,
        "default",
        [TrackSpec.of(m) for m in config.monitors],
        timezone=config.settings.timezone,
        outbox=Outbox(config.settings.location, Routes.of(config)),
    )
    writer.start()
    for minutes in range(30, 0, -1):
        at = NOW - dt.timedelta(minutes=minutes)
        for mid, result in checked.items():
            down = 10 <= minutes <= 20
            up = CheckResult(Outcome.UP, 20.0, status_code=200)
            writer.submit(Observation(mid, at, result if down else up))
    hub = PushHub(
        [m for m in config.monitors if isinstance(m, PushMonitor)],
        {"backup": PUSH_TOKEN},
        config.settings.timezone,
        lambda mid, at, result: writer.submit(Observation(mid, at, result)),
    )
    hub.restore({}, to_ms(NOW - dt.timedelta(minutes=30)))
    for minutes in (15, 10):
        at_ms = to_ms(NOW - dt.timedelta(minutes=minutes))
        said = {"msg": "backup to db-master:5432 failed"}
        assert hub.receive(PUSH_TOKEN, "fail", said, at_ms).status == 200
    assert writer.flush(10)
    writer.close()


async def test_target_words_reach_no_public_route(tmp_path: pathlib.Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    """Nor hidden characters: what the checks saw of a loopback target stays in the
    operator's incident and alert; the public reads the failure class."""
    config, checked = await _checked(tmp_path)
    assert {mid: r.outcome for mid, r in checked.items()} == dict.fromkeys(
        ("orders", "shop", "told"), Outcome.DOWN
    )
    _write_checked(config, checked)
    client: TestClient = await aiohttp_client(
        create_app(config, Health(lambda: True, lambda: True))
    )
    for route in LEAK_ROUTES:
        response = await client.get(route)
        body = await response.text()
        assert response.status == 200, (route, body[:200])
        for secret in (LEAK, WANTED, "db-master", "\u202e", "\u200b", "\u2066"):
            assert secret not in body, (route, secret)

    incidents = (await (await client.get("/api/v1/incidents")).json())["incidents"]
    assert {i["monitor"]: (i["name"], i["cause"]) for i in incidents} == {
        "orders": ("Orders IPA", "JSON assertion failed"),
        "shop": ("Shop", "keyword check failed"),
        "told": ("Told", "Planned upstream work"),
        "backup": ("Nightly backup", "job reported failure: backup to [host] failed"),
    }
    status = await (await client.get("/api/v1/status")).json()
    assert status["title"] == "Acme Status"

    # the operator's own channels keep the whole story: the incident and its alert
    conn = sqlite3.connect(config.database_path)
    try:
        stored = dict(
            conn.execute(
                "SELECT m.slug, i.cause FROM incident AS i JOIN monitor AS m ON m.id = i.monitor_id"
            ).fetchall()
        )
        alerts = [json.loads(data) for (data,) in conn.execute("SELECT data FROM alert")]
    finally:
        conn.close()
    assert LEAK in stored["orders"]
    assert alerts and all(LEAK in alert["cause"] for alert in alerts)  # opened, resolved
    assert WANTED in stored["shop"]
    assert stored["backup"] == "backup to db-master:5432 failed"
