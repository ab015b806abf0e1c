"""The web app as it stands for the probe engine: /healthz, the minimal page, headers."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient

from prober.checks.result import CheckResult, Outcome
from prober.config import load_config
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from statuspage.app import create_app
from statuspage.health import Health

CONFIG = """
[settings]
title = "Acme <Status>"

[[monitors]]
id = "api"
name = "API <b>"
type = "tcp"
host = "127.0.0.1"
port = 1

[[monitors]]
id = "secret-db"
name = "Internal DB"
type = "tcp"
host = "127.0.0.1"
port = 2
public = false
"""


@pytest.fixture
def app_factory(tmp_path: pathlib.Path) -> Callable[[Health], object]:
    path = tmp_path / "monitors.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    engine = open_engine(config.database_path)
    writer = ResultWriter(
        config.database_path,
        "default",
        [TrackSpec.plain("api", "tcp"), TrackSpec.plain("secret-db", "tcp")],
    )
    writer.start()
    writer.submit(
        Observation(
            "api",
            dt.datetime.now(dt.UTC),
            CheckResult(Outcome.DOWN, 1.0, error="connection refused"),
        )
    )
    writer.flush(5)
    writer.close()
    return lambda health: create_app(config, engine, health)


async def test_healthz_reports_each_problem(aiohttp_client, app_factory) -> None:  # type: ignore[no-untyped-def]
    healthy: TestClient = await aiohttp_client(app_factory(Health(lambda: True, lambda: True)))
    response = await healthy.get("/healthz")
    assert response.status == 200
    assert await response.text() == "ok\n"

    sick: TestClient = await aiohttp_client(app_factory(Health(lambda: False, lambda: False)))
    response = await sick.get("/healthz")
    assert response.status == 503
    assert await response.text() == "unhealthy: scheduler not running; database not taking writes\n"


async def test_page_escapes_names_hides_private_monitors_and_sets_headers(
    aiohttp_client, app_factory
) -> None:  # type: ignore[no-untyped-def]
    client: TestClient = await aiohttp_client(app_factory(Health(lambda: True, lambda: True)))
    response = await client.get("/")
    body = await response.text()
    assert response.status == 200
    assert "Acme &lt;Status&gt;" in body
    assert "API &lt;b&gt;" in body
    assert "state-down" in body
    assert "Internal DB" not in body
    assert "connection refused" not in body  # raw error text never reaches the page
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    missing = await client.get("/nope")
    assert missing.status == 404
    assert missing.headers["X-Content-Type-Options"] == "nosniff"
    css = await client.get("/static/style.css")
    assert css.status == 200
