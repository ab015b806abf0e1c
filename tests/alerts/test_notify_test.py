"""`prober notify-test ID` and alert delivery in /metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
from typing import Any

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
    body: Any = received.json()
    assert body["test"] is True
    assert body["kind"] == "test"
    assert body["title"] == (
        "TEST from prober [Acme]: this is a test of notifier hook, nothing is down"
    )
    assert body["text"].startswith("TEST from prober [Acme]: ")
    assert [e["monitor"] for e in body["events"]] == [None]  # no monitor is involved
    assert "DOWN" not in received.body.decode()
    assert "is down since" not in received.body.decode()  # an outage's words
    assert "X-Prober-Signature" in received.headers


SLACK = """
[[notifiers]]
id = "chat"
type = "slack"
url = "http://127.0.0.1:{port}/services/T0/B0/XYZ"
"""


async def test_notify_test_to_slack_reads_as_a_test_in_the_preview(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_sink() as sink:
        cfg = write_config(tmp_path, SLACK.format(port=sink.port), title='"Acme"')
        code = await _cli("notify-test", "chat", "-c", str(cfg.path))
    assert code == 0, capsys.readouterr()
    [received] = sink.received
    body: Any = received.json()
    preview = "TEST from prober [Acme]: this is a test of notifier chat, nothing is down"
    assert body["text"] == preview  # what a notification or a channel list shows
    assert body["blocks"][0]["text"]["text"] == f"*{preview}*"
    assert body["blocks"][1]["text"]["text"].startswith("Nothing is down: prober notify-test")
    assert "DOWN" not in received.body.decode()
    assert "is down since" not in received.body.decode()  # an outage's words


def test_every_channel_says_test_first_and_nothing_of_an_outage() -> None:
    from prober.alerts.channels import discord, email, ntfy, pagerduty, slack, telegram, webhook
    from prober.alerts.message import notify_test_message
    from tests.alerts import test_payloads as p

    now = dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC)
    message = notify_test_message("ops", now, title_prefix="Acme", link="https://s.test/")
    title = "TEST from prober [Acme]: this is a test of notifier ops, nothing is down"
    assert message.title == title
    first_words = {
        "slack": only(slack.build_payload(message, p.SLACK)).payload()["text"],
        "discord": only(discord.build_payload(message, p.DISCORD)).payload()["content"],
        "telegram": only(telegram.build_payload(message, p.TELEGRAM)).payload()["text"],
        "ntfy": only(ntfy.build_payload(message, p.NTFY)).payload()["title"],
        "webhook": only(webhook.build_payload(message, p.WEBHOOK)).payload()["title"],
        "email": email.build_payload(message, p.EMAIL)["Subject"],
    }
    assert first_words["telegram"].startswith(f"<b>{title}</b>")
    assert first_words["discord"].startswith("TEST from prober \\[Acme\\]: ")  # escaped
    for kind in ("slack", "ntfy", "webhook", "email"):
        assert first_words[kind] == title, kind
    [pd] = pagerduty.build_payload(message, p.PAGERDUTY)
    event = pd.payload()
    assert event["event_action"] == "trigger"
    assert event["dedup_key"].startswith("prober-test-")  # never a real incident's key
    assert event["payload"]["summary"].startswith("[TEST] [Acme] Nothing is down: ")
    bodies = [
        only(slack.build_payload(message, p.SLACK)).body,
        only(discord.build_payload(message, p.DISCORD)).body,
        only(telegram.build_payload(message, p.TELEGRAM)).body,
        only(ntfy.build_payload(message, p.NTFY)).body,
        only(webhook.build_payload(message, p.WEBHOOK)).body,
        pd.body,
        email.build_payload(message, p.EMAIL).as_bytes(),
    ]
    for body in bodies:
        assert b"DOWN" not in body
        assert b"is down since" not in body


def only(requests: list[Any]) -> Any:
    assert len(requests) == 1
    return requests[0]


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
