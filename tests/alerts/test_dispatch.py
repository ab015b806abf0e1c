"""The outbox and the dispatcher end to end: real writer, real SQLite, a loopback sink."""

from __future__ import annotations

import datetime as dt
import logging
import pathlib

import pytest

from prober.results import Certificate, Outcome
from tests.alerts.rig import Rig, alert_rows, settle, write_config
from tests.support.sink import Sink, running_sink

MONITORS = """
[defaults]
down_after = 1
notify = ["hook"]

[[notifiers]]
id = "hook"
type = "webhook"
url = "{url}"
{notifier_extra}

[[monitors]]
id = "api"
name = "API"
type = "http"
url = "http://127.0.0.1:9/"
{monitor_extra}
"""


def config(tmp_path: pathlib.Path, sink: Sink, *, wait: str = '"100ms"', notifier_extra: str = "",
           monitor_extra: str = "", more: str = "", **settings: str):  # type: ignore[no-untyped-def]  # fmt: skip
    body = MONITORS.format(url=sink.url, notifier_extra=notifier_extra, monitor_extra=monitor_extra)
    return write_config(tmp_path, body + more, alert_group_wait=wait, **settings)


async def test_opened_then_resolved_each_sent_once(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            [opened] = await sink.wait_for(1)
            await rig.down("api")  # still down: nothing new
            await rig.up("api")
            received = await sink.wait_for(2)
            await settle(0.5)
    assert len(sink.received) == 2
    first, second = (r.json() for r in received)
    assert first["kind"] == "opened"
    assert first["title"] == "[Status] DOWN: API"
    [event] = first["events"]  # type: ignore[misc]
    assert event["monitor"] == "api"
    assert event["cause"] == "status: saw 503, wanted [200]"
    assert event["link"] == "https://status.test/monitors/api"
    assert opened.headers["Idempotency-Key"] == first["idempotency_key"]
    assert second["kind"] == "resolved"
    [event] = second["events"]  # type: ignore[misc]
    assert event["duration_s"] == 0 and event["until"] is not None
    assert alert_rows(cfg) == [("opened", "api", "sent", 1), ("resolved", "api", "sent", 1)]


async def test_receiver_down_for_a_while_gets_it_once_after_retries(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        sink.answers = [(503, {}), (502, {}), (503, {})]
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            received = await sink.wait_for(4)
            await settle(0.6)
    assert len(sink.received) == 4  # three failures, one success, nothing after
    assert len({r.headers["Idempotency-Key"] for r in received}) == 1
    assert len({r.body for r in received}) == 1  # the same message every time
    assert rig.dispatcher.delivery.retried["hook"] == 3
    assert rig.dispatcher.delivery.sent["hook"] == 1
    assert alert_rows(cfg) == [("opened", "api", "sent", 4)]


async def test_429_waits_as_long_as_retry_after_says(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        sink.answers = [(429, {"Retry-After": "1"})]
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:  # backoff alone would retry after 50 ms
            await rig.down("api")
            first, second = await sink.wait_for(2)
    assert second.at - first.at >= 0.95
    assert alert_rows(cfg) == [("opened", "api", "sent", 2)]


async def test_400_is_permanent_no_retry_storm(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_sink() as sink:
        sink.answers = [(400, {})]
        cfg = config(tmp_path, sink)
        with caplog.at_level(logging.ERROR, logger="prober.alerts.dispatcher"):
            async with Rig(cfg) as rig:
                await rig.down("api")
                await sink.wait_for(1)
                await settle(1.0)
                await rig.up("api")  # its opening failed for good: the recovery is still news
                await sink.wait_for(2)
    assert len(sink.received) == 2
    assert [r.json()["kind"] for r in sink.received] == ["opened", "resolved"]
    assert alert_rows(cfg)[0] == ("opened", "api", "failed", 1)
    assert "alert failed for good notifier=hook kind=opened" in caplog.text
    assert "HTTP 400" in caplog.text
    assert sink.url not in caplog.text


async def test_restart_while_down_sends_nothing_again(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            await sink.wait_for(1)
        async with Rig(cfg) as rig:
            await rig.down("api")
            await rig.down("api")
            await settle(0.6)
            assert len(sink.received) == 1
            await rig.up("api")
            await sink.wait_for(2)
            await settle(0.4)
    assert [r.json()["kind"] for r in sink.received] == ["opened", "resolved"]


async def test_recovery_while_the_prober_was_down_is_sent(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            await sink.wait_for(1)
        await settle(0.2)  # the prober is off; the service recovers meanwhile
        async with Rig(cfg) as rig:
            await rig.up("api")  # the first result after the restart
            await sink.wait_for(2)
            await settle(0.3)
    assert [r.json()["kind"] for r in sink.received] == ["opened", "resolved"]


TWENTY = "".join(
    f'\n[[monitors]]\nid = "m{i:02d}"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n'
    for i in range(20)
)


async def test_twenty_monitors_failing_together_make_one_message(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, wait='"700ms"', more=TWENTY)
        async with Rig(cfg) as rig:
            for i in range(20):  # one after the other, inside the group wait
                await rig.down(f"m{i:02d}")
            [message] = await sink.wait_for(1)
            await settle(1.0)
    assert len(sink.received) == 1
    body = message.json()
    assert body["title"] == "[Status] DOWN: 20 monitors"
    assert sorted(e["monitor"] for e in body["events"]) == [f"m{i:02d}" for i in range(20)]  # type: ignore[union-attr, index]


DEPENDENT = """
[[monitors]]
id = "web"
name = "Web"
type = "http"
url = "http://127.0.0.1:9/"
depends_on = ["api"]
"""


async def test_a_dependent_under_a_down_parent_is_not_alerted(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("prober.alerts.plan.HOLD_MS", 200)
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, wait='"300ms"', more=DEPENDENT)
        async with Rig(cfg) as rig:
            await rig.down("web")  # the dependent's check happens to fail first
            await rig.down("api")
            [message] = await sink.wait_for(1)
            await rig.up("web")  # recovers under its parent: still nothing for it
            await settle(0.8)
            assert len(sink.received) == 1
            await rig.up("api")
            await sink.wait_for(2)
            await settle(0.5)
    body = message.json()
    assert body["title"] == "[Status] DOWN: API"
    [event] = body["events"]  # type: ignore[misc]
    assert event["dependents"] == ["Web"]
    assert "Also down, depending on it: Web" in body["text"]  # type: ignore[operator]
    assert [r.json()["kind"] for r in sink.received] == ["opened", "resolved"]
    assert [r.json()["events"][0]["monitor"] for r in sink.received] == ["api", "api"]  # type: ignore[index]
    kinds = {(k, m): s for k, m, s, _ in alert_rows(cfg)}
    assert kinds[("opened", "web")] == "suppressed"
    assert kinds[("resolved", "web")] == "suppressed"


async def test_a_dependent_still_down_after_its_parent_recovers_is_alerted(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("prober.alerts.plan.HOLD_MS", 200)
    async with running_sink() as sink:
        # a short interval: a dispatcher pass that falls between the parent's recovery and
        # the child's next check holds the opening until about one interval later
        more = DEPENDENT.replace("depends_on", 'interval = "1s"\ndepends_on')
        cfg = config(tmp_path, sink, wait='"200ms"', more=more)
        async with Rig(cfg) as rig:
            await rig.down("api", "web")
            await sink.wait_for(1)
            await rig.up("api")
            await rig.down("web")  # its own check after the parent's recovery decides
            received = await sink.wait_for(3)
            await settle(0.5)
    got = sorted((r.json()["kind"], r.json()["events"][0]["monitor"]) for r in received)  # type: ignore[index]
    assert got == [("opened", "api"), ("opened", "web"), ("resolved", "api")]


def _window(minutes_before: int, seconds_after: float) -> str:
    now = dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(minutes=minutes_before)).isoformat()
    end = (now + dt.timedelta(seconds=seconds_after)).isoformat()
    return f'\n[[maintenance]]\ntitle = "upgrade"\nmonitors = ["api"]\nstart = "{start}"\nend = "{end}"\n'


async def test_maintenance_silences_then_sends_what_is_still_open(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, more=_window(5, 1.5))
        async with Rig(cfg) as rig:
            await rig.down("api")
            await settle(1.0)
            assert sink.received == []  # inside the window
            [message] = await sink.wait_for(1, within=5)
            await settle(0.3)
    assert message.json()["kind"] == "opened"
    assert alert_rows(cfg) == [("opened", "api", "sent", 1)]


async def test_an_incident_over_within_maintenance_is_never_sent(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, more=_window(5, 1.0))
        async with Rig(cfg) as rig:
            await rig.down("api")
            await settle(0.3)
            await rig.up("api")
            await settle(1.6)  # past the window's end
    assert sink.received == []
    assert [s for _, _, s, _ in alert_rows(cfg)] == ["suppressed", "suppressed"]


async def test_reminders_while_still_down_and_none_after(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, notifier_extra='repeat = "1s"')
        async with Rig(cfg) as rig:
            await rig.down("api")
            received = await sink.wait_for(3, within=6)  # opened, then two reminders
            await rig.up("api")
            await settle(1.5)
    kinds = [r.json()["kind"] for r in sink.received]
    assert kinds[:3] == ["opened", "reminder", "reminder"]
    assert kinds[-1] == "resolved" and "reminder" not in kinds[3:-1]
    assert received[1].json()["title"] == "[Status] STILL DOWN: API"
    assert len({r.headers["Idempotency-Key"] for r in sink.received}) == len(sink.received)


async def test_events_filter_per_notifier(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, notifier_extra='events = ["resolved"]')
        async with Rig(cfg) as rig:
            await rig.down("api")
            await settle(0.5)
            await rig.up("api")
            await settle(0.5)
    # only what the notifier asked for; a recovery needs no opening to pair with
    assert [r.json()["kind"] for r in sink.received] == ["resolved"]
    assert alert_rows(cfg) == [("resolved", "api", "sent", 1)]


TLS = """
[[monitors]]
id = "cert"
name = "Cert"
type = "tls"
host = "127.0.0.1"
port = 9
warn_days = 10
down_days = 2
"""


async def test_a_certificate_entering_warn_days_is_announced_once(tmp_path: pathlib.Path) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=5)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=60)
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, more=TLS)
        async with Rig(cfg) as rig:
            await rig.result("cert", Outcome.UP, certificate=Certificate(later, "a", "ca"))
            await rig.result("cert", Outcome.DEGRADED, certificate=Certificate(soon, "a", "ca"))
            await rig.result("cert", Outcome.DEGRADED, certificate=Certificate(soon, "a", "ca"))
            [message] = await sink.wait_for(1)
            await settle(0.5)
    assert len(sink.received) == 1
    body = message.json()
    assert body["kind"] == "cert_expiring"
    assert body["title"] == "[Status] CERTIFICATE EXPIRING: Cert"


async def test_the_prober_network_down_is_one_message(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, more=TWENTY)
        async with Rig(cfg) as rig:
            await rig.network(True)
            await rig.network(True)  # the same verdict again: nothing
            [down] = await sink.wait_for(1)
            await rig.network(False)
            _, back = await sink.wait_for(2)
            await settle(0.3)
    assert len(sink.received) == 2
    assert down.json()["title"] == "[Status] PROBER NETWORK DOWN"
    assert back.json()["title"] == "[Status] PROBER NETWORK BACK"


async def test_hostile_error_text_arrives_as_one_escaped_line(tmp_path: pathlib.Path) -> None:
    hostile = 'body: "<script>alert(1)</script>"\n\r\x00 *bold* <!channel> @everyone' + "x" * 5000
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api", error=hostile)
            [message] = await sink.wait_for(1)
    cause = message.json()["events"][0]["cause"]  # type: ignore[index]
    assert isinstance(cause, str)
    assert "\n" not in cause and "\r" not in cause and "\x00" not in cause
    assert cause.startswith('body: "<script>alert(1)</script>" *bold*')
    assert len(cause) <= 300
