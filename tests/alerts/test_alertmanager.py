"""The Alertmanager notifier: its payloads pinned, its config checked, and the dispatcher's
re-sends, resolutions and maintenance silences through the outbox to a loopback sink.
(A real Alertmanager receives them in tests/alerts/test_alertmanager_live.py.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pathlib
from typing import Any

import pytest
from pydantic import ValidationError

from prober.alerts.channels import alertmanager
from prober.alerts.message import Event, Kind, Message, notify_test_message
from prober.config.settings import AlertmanagerNotifier
from prober.results import Outcome
from tests.alerts.rig import Rig, alert_rows, settle, write_config
from tests.alerts.test_payloads import HOSTILE, HOSTILE_NAME, SEOUL, SINCE
from tests.support.sink import Received, Sink, running_sink

AM = AlertmanagerNotifier.model_validate(
    {"id": "am", "type": "alertmanager", "url": "http://am.example:9093/prefix/"}
)
LABELLED = AlertmanagerNotifier.model_validate(
    {
        "id": "am",
        "type": "alertmanager",
        "url": "http://am.example:9093",
        "labels": {"severity": "page", "team": "web"},
    }
)
UNTIL = SINCE + dt.timedelta(minutes=7, seconds=30)


def opening(kind: Kind = Kind.OPENED, until: dt.datetime | None = None) -> Message:
    api = Event(
        kind, "api", "API", SINCE, cause="status 503 not in [200]", until=until,
        link="https://status.example.com/monitors/api", dependents=("Checkout",),
        incident_key="seoul/api/1", location="seoul",
    )  # fmt: skip
    web = Event(
        kind, "web", "Web", SINCE, cause="timed out", until=until, incident_key="seoul/web/1",
        location="seoul", parents=("api", "db"),
    )  # fmt: skip
    return Message(kind, (api, web), key="k", title_prefix="Acme", zone=SEOUL)


def body(message: Message, notifier: AlertmanagerNotifier = AM) -> Any:
    [request] = alertmanager.build_payload(message, notifier)
    assert request.headers["Content-Type"] == "application/json"
    return json.loads(request.body)


# --- payloads -------------------------------------------------------------------------


def test_an_opening_is_one_post_of_alerts_without_an_end() -> None:
    [request] = alertmanager.build_payload(opening(), AM)
    assert request.url == "http://am.example:9093/prefix/api/v2/alerts"
    assert json.loads(request.body) == [
        {
            "labels": {
                "alertname": "ProbeDown",
                "monitor": "api",
                "location": "seoul",
                "severity": "critical",
            },
            "annotations": {
                "summary": "API is down since 2026-11-23 13:05 KST: status 503 not in [200]."
                " Also down, depending on it: Checkout",
                "title": "[Acme] DOWN: 2 monitors",
                "monitor_name": "API",
                "cause": "status 503 not in [200]",
                "dependents": "Checkout",
            },
            "startsAt": "2026-11-23T04:05:00.000Z",
            "generatorURL": "https://status.example.com/monitors/api",
        },
        {
            "labels": {
                "alertname": "ProbeDown",
                "monitor": "web",
                "location": "seoul",
                "severity": "critical",
                "depends_on": "api,db",
            },
            "annotations": {
                "summary": "Web is down since 2026-11-23 13:05 KST: timed out",
                "title": "[Acme] DOWN: 2 monitors",
                "monitor_name": "Web",
                "cause": "timed out",
            },
            "startsAt": "2026-11-23T04:05:00.000Z",
        },
    ]


def test_a_reminder_is_the_same_alert_again() -> None:
    again = body(opening(Kind.REMINDER, until=UNTIL))
    first = body(opening())
    assert [a["labels"] for a in again] == [a["labels"] for a in first]
    assert [a["startsAt"] for a in again] == [a["startsAt"] for a in first]
    assert all("endsAt" not in a for a in again)


def test_a_resolution_ends_the_alert_at_the_first_success() -> None:
    ended = body(opening(Kind.RESOLVED, until=UNTIL))
    assert [a["labels"] for a in ended] == [a["labels"] for a in body(opening())]
    assert [(a["startsAt"], a["endsAt"]) for a in ended] == [
        ("2026-11-23T04:05:00.000Z", "2026-11-23T04:12:30.000Z")
    ] * 2


def test_labels_are_added_and_severity_replaced() -> None:
    [api, _] = body(opening(), LABELLED)
    assert api["labels"] == {
        "alertname": "ProbeDown",
        "monitor": "api",
        "location": "seoul",
        "severity": "page",
        "team": "web",
    }


def test_certificate_network_and_test_alerts() -> None:
    cert = Message(
        Kind.CERT_EXPIRING,
        (Event(Kind.CERT_EXPIRING, "api", "API", SINCE, cert_expires=UNTIL, location="x"),),
        key="c",
    )
    [alert] = body(cert)
    assert alert["labels"] == {
        "alertname": "ProbeCertificateExpiring",
        "monitor": "api",
        "location": "x",
        "severity": "warning",
    }
    back = Message(
        Kind.PROBER_NETWORK,
        (Event(Kind.PROBER_NETWORK, "", "x", SINCE, until=UNTIL, location="x"),),
        key="n",
    )
    [alert] = body(back)
    assert alert["labels"] == {"alertname": "ProberNetworkDown", "location": "x",
                               "severity": "critical"}  # fmt: skip
    assert alert["endsAt"] == "2026-11-23T04:12:30.000Z"
    [alert] = body(notify_test_message("am", SINCE, title_prefix="Acme"))
    assert alert["labels"] == {"alertname": "ProberTest", "severity": "critical"}
    assert (alert["startsAt"], alert["endsAt"]) == (
        "2026-11-23T04:05:00.000Z",
        "2026-11-23T04:10:00.000Z",
    )
    assert alert["annotations"]["title"].startswith("TEST from prober [Acme]")


def test_a_window_is_one_silence_of_its_monitors_here() -> None:
    windows = Message(
        Kind.SILENCE,
        (
            Event(
                Kind.SILENCE,
                "",
                "DB upgrade",
                SINCE,
                until=UNTIL,
                location="seoul",
                scope=("api", "db"),
            ),
            Event(Kind.SILENCE, "", "Everything", SINCE, until=UNTIL, scope=("*",)),
        ),
        key="s",
    )
    first, second = alertmanager.build_payload(windows, AM)
    assert first.url == second.url == "http://am.example:9093/prefix/api/v2/silences"
    assert first.payload() == {
        "matchers": [
            {"name": "monitor", "value": "api|db", "isRegex": True, "isEqual": True},
            {"name": "location", "value": "seoul", "isRegex": False, "isEqual": True},
        ],
        "startsAt": "2026-11-23T04:05:00.000Z",
        "endsAt": "2026-11-23T04:12:30.000Z",
        "createdBy": "prober",
        "comment": "Maintenance: DB upgrade",
    }
    assert second.payload()["matchers"] == [  # type: ignore[index]
        {"name": "monitor", "value": ".+", "isRegex": True, "isEqual": True}
    ]


def test_hostile_text_stays_in_bounded_annotations() -> None:
    events = tuple(
        Event(
            Kind.OPENED,
            f"shop{i}",
            HOSTILE_NAME,
            SINCE,
            cause=HOSTILE,
            location="here",
            dependents=(HOSTILE_NAME,) * 30,
        )
        for i in range(3)
    )
    alerts = body(Message(Kind.OPENED, events, key="h", title_prefix=HOSTILE_NAME))
    for i, alert in enumerate(alerts):
        assert alert["labels"] == {"alertname": "ProbeDown", "monitor": f"shop{i}",
                                   "location": "here", "severity": "critical"}  # fmt: skip
        for value in alert["annotations"].values():
            assert value.isprintable() and len(value) <= 1000
        assert alert["annotations"]["cause"].startswith('"quoted" new line <script>')


# --- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"labels": {"monitor": "x"}}, "'monitor' is set by prober"),
        ({"labels": {"alertname": "x"}}, "'alertname' is set by prober"),
        ({"labels": {"bad-name": "x"}}, "'bad-name' is not a Prometheus label name"),
        ({"labels": {"__name__": "x"}}, "'__name__' is not a Prometheus label name"),
        ({"repeat": "10m"}, "repeat must be at most"),
        ({"url": "am.example:9093"}, "must be http:// or https://"),
    ],
)
def test_config_refuses(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertmanagerNotifier.model_validate(
            {"id": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093", **fields}
        )


def test_config_defaults() -> None:
    assert AM.repeat == 60.0
    assert AM.events == ["opened", "resolved", "reminder"]
    assert AM.silences is False and AM.labels == {}


# --- through the outbox ---------------------------------------------------------------

MONITORS = """
[defaults]
down_after = 1
notify = ["am"]

[[notifiers]]
id = "am"
type = "alertmanager"
url = "{url}"
repeat = "1s"
{notifier_extra}

[[monitors]]
id = "db"
type = "tcp"
host = "127.0.0.1"
port = 9

[[monitors]]
id = "api"
name = "API"
type = "http"
url = "http://127.0.0.1:9/"
depends_on = ["db"]
"""


def config(tmp_path: pathlib.Path, sink: Sink, notifier_extra: str = "", more: str = "") -> Any:
    base = f"http://127.0.0.1:{sink.port}/am"
    body = MONITORS.format(url=base, notifier_extra=notifier_extra) + more
    return write_config(tmp_path, body, alert_group_wait='"100ms"')


def alerts(received: list[Received]) -> list[tuple[str, str, bool]]:
    """(path, monitor, ended) of every alert posted."""
    return [
        (r.path, a["labels"]["monitor"], "endsAt" in a)
        for r in received
        if r.path.endswith("/alerts")
        for a in json.loads(r.body)
    ]


async def test_resent_every_repeat_while_open_then_ended(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            await sink.wait_for(4, within=10)  # the opening, then three re-sends
            await rig.up("api")
            await settle(1.5)
    posted = alerts(sink.received)
    assert posted[-1] == ("/am/api/v2/alerts", "api", True)
    assert posted[:-1] == [("/am/api/v2/alerts", "api", False)] * (len(posted) - 1)
    first = json.loads(sink.received[0].body)[0]
    last = json.loads(sink.received[-1].body)[0]
    assert (
        first["labels"]
        == last["labels"]
        == {
            "alertname": "ProbeDown",
            "monitor": "api",
            "location": "default",
            "severity": "critical",
            "depends_on": "db",
        }
    )
    assert first["startsAt"] == last["startsAt"]
    assert first["generatorURL"] == "https://status.test/monitors/api"
    # re-sends leave one row behind, not one a minute
    kinds = [kind for kind, _, _, _ in alert_rows(cfg)]
    assert kinds.count("reminder") == 1 and kinds[0] == "opened" and kinds[-1] == "resolved"


def _window(start: dt.timedelta, end: dt.timedelta) -> str:
    now = dt.datetime.now(dt.UTC)
    return (
        f'\n[[maintenance]]\ntitle = "DB upgrade"\nmonitors = ["api", "db"]\n'
        f'start = "{(now + start).isoformat()}"\nend = "{(now + end).isoformat()}"\n'
    )


async def test_a_window_running_at_start_becomes_one_silence(tmp_path: pathlib.Path) -> None:
    window = _window(dt.timedelta(minutes=-5), dt.timedelta(hours=1))
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, "silences = true", more=window)
        async with Rig(cfg):
            [posted] = await sink.wait_for(1)
            await settle(0.5)
        async with Rig(cfg):  # a restart: the silence is in the outbox, sent already
            await settle(1.0)
    assert len(sink.received) == 1
    assert posted.path == "/am/api/v2/silences"
    silence = json.loads(posted.body)
    assert silence["matchers"] == [
        {"name": "monitor", "value": "api|db", "isRegex": True, "isEqual": True},
        {"name": "location", "value": "default", "isRegex": False, "isEqual": True},
    ]
    assert silence["comment"] == "Maintenance: DB upgrade"
    assert alert_rows(cfg) == [("silence", "", "sent", 1)]


async def test_no_silence_unless_asked(tmp_path: pathlib.Path) -> None:
    window = _window(dt.timedelta(minutes=-5), dt.timedelta(hours=1))
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, more=window)
        async with Rig(cfg):
            await settle(1.0)
    assert sink.received == [] and alert_rows(cfg) == []


@pytest.mark.parametrize("silences", [True, False])
async def test_a_window_starting_during_an_incident(tmp_path: pathlib.Path, silences: bool) -> None:
    """The silence goes out when the window starts. Re-sends go on under a silence (the
    alert stays in Alertmanager, silenced); without one they stop, as reminders do."""
    extra = "silences = true" if silences else ""
    async with running_sink() as sink, Rig(config(tmp_path, sink, extra)) as rig:
        await rig.result("db", Outcome.UP)
        await rig.down("api")
        await sink.wait_for(2)  # the opening and a re-send, before any window
        # a window from a second from now: reloaded into the running dispatcher
        starts = asyncio.get_running_loop().time() + 1.0
        window = _window(dt.timedelta(seconds=1), dt.timedelta(hours=1))
        rig.dispatcher.reconfigure(config(tmp_path, sink, extra, more=window))
        while asyncio.get_running_loop().time() < starts + 4.0:
            await settle(0.2)
    paths = [r.path for r in sink.received]
    # a re-send claimed just before the window started may arrive a little after it
    later = [r.path for r in sink.received if r.at > starts + 2.0]
    assert "/am/api/v2/alerts" in [r.path for r in sink.received if r.at < starts]
    if silences:
        assert paths.count("/am/api/v2/silences") == 1
        [silence] = [r for r in sink.received if r.path.endswith("/silences")]
        assert silence.at >= starts
        assert "/am/api/v2/alerts" in later
    else:
        assert "/am/api/v2/silences" not in paths
        assert later == []
