"""`prober notify-test ID` and alert delivery in /metrics."""

from __future__ import annotations

import asyncio
import pathlib

import aiohttp
import prometheus_client
import pytest

from prober import metrics
from prober.cli import main
from tests.alerts.rig import Rig, write_config
from tests.support.sink import running_sink

NOTIFIERS = """
[[notifiers]]
id = "hook"
type = "webhook"
url = "{url}"
secret = "s3cret-signing-key"

[[monitors]]
id = "api"
type = "http"
url = "http://127.0.0.1:9/"
down_after = 1
notify = ["hook"]
"""


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_notify_test_sends_a_marked_message_and_prints_the_answer(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_sink() as sink:
        cfg = write_config(tmp_path, NOTIFIERS.format(url=sink.url), title='"Acme"')
        code = await _cli("notify-test", "hook", "-c", str(cfg.path))
    assert code == 0
    assert capsys.readouterr().out == "hook (webhook): sent: HTTP 200: ok\n"
    [received] = sink.received
    body = received.json()
    assert body["test"] is True
    assert body["title"] == "[TEST] [Acme] DOWN: Test alert from prober: nothing is down"
    assert "X-Prober-Signature" in received.headers


async def test_notify_test_exits_1_with_the_channels_answer(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_sink() as sink:
        sink.answers = [(404, {})]
        cfg = write_config(tmp_path, NOTIFIERS.format(url=sink.url))
        code = await _cli("notify-test", "hook", "-c", str(cfg.path))
    assert code == 1
    out = capsys.readouterr().out
    assert out == "hook (webhook): FAILED: HTTP 404: no (permanent)\n"


async def test_notify_test_unreachable_and_unknown_notifier(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, NOTIFIERS.format(url="http://127.0.0.1:9/hook"))
    assert await _cli("notify-test", "hook", "-c", str(cfg.path)) == 1
    assert "FAILED" in capsys.readouterr().out
    assert await _cli("notify-test", "nope", "-c", str(cfg.path)) == 1
    assert "no notifier 'nope' (known: hook)" in capsys.readouterr().err


async def test_metrics_count_deliveries_retries_and_queue(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        sink.answers = [(503, {})]
        cfg = write_config(tmp_path, NOTIFIERS.format(url=sink.url), alert_group_wait='"50ms"')
        async with Rig(cfg) as rig:
            registry = metrics.registry(rig.dispatcher.delivery, ["hook"])
            await rig.down("api")
            await sink.wait_for(2)
            await asyncio.sleep(0.3)
            text = prometheus_client.generate_latest(registry).decode()
    assert 'prober_alerts_sent_total{notifier="hook"} 1.0' in text
    assert 'prober_alerts_retried_total{notifier="hook"} 1.0' in text
    assert 'prober_alerts_failed_total{notifier="hook"} 0.0' in text
    assert "prober_alerts_queue_depth 0.0" in text


async def test_metrics_route_serves_the_registry(tmp_path: pathlib.Path) -> None:
    from prober.alerts.dispatcher import Delivery
    from prober.store.db import open_engine
    from statuspage.app import create_metrics_app
    from statuspage.publisher import Publisher

    cfg = write_config(tmp_path, NOTIFIERS.format(url="http://127.0.0.1:9/"))
    delivery = Delivery()
    delivery.sent["hook"] += 3
    engine = open_engine(cfg.database_path)
    publisher = Publisher(cfg)
    app = create_metrics_app(publisher, metrics.registry(delivery, ["hook"]))
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as r,
        ):
            text = await r.text()
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
    finally:
        await runner.cleanup()
        await publisher.close()
        engine.dispose()
    assert 'prober_alerts_sent_total{notifier="hook"} 3.0' in text
